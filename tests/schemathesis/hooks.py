"""Generators for the OpenAPI document's own string formats.

The document declares what a regular expression can say of `phone` and
`crawl_url` (trimmed, length, no control character); whether a number is
valid (libphonenumber's metadata) or a URL's host is public is the format's
definition, which no pattern captures. These strategies draw values of each
format, so schema-valid bodies are accepted bodies. One filter leaves out
the bodies the edge refuses for their size alone (below).
"""

import json

from hypothesis import strategies as st

import schemathesis
from schemathesis.core import NotSet

# French mobile numbers that libphonenumber's metadata calls valid
# (06 and 07 ranges), in E.164 and in national form, spaced or not.
_MOBILE = r"6(?:[0-24-8][0-9]|3[0-8]|9[589])[0-9]{6}|7[3-9][0-9]{7}"
_PHONE = st.one_of(
    st.from_regex(rf"\A\+33(?:{_MOBILE})\Z"),
    st.from_regex(rf"\A0(?:{_MOBILE})\Z"),
    st.from_regex(r"\A0[67] ?[3-8][0-9] ?[0-9]{2} ?[0-9]{2} ?[0-9]{2}\Z").filter(
        lambda s: not s.replace(" ", "").startswith(("069", "063", "070", "071", "072"))
    ),
)

_URL = st.builds(
    lambda scheme, label, tld, path: f"{scheme}://{label}.{tld}{path}",
    st.sampled_from(["http", "https"]),
    st.from_regex(r"\A[a-z](?:[a-z0-9-]{0,20}[a-z0-9])?\Z"),
    st.sampled_from(["fr", "com", "org", "io", "eu"]),
    st.from_regex(r"\A(?:/[a-zA-Z0-9._~-]{0,12}){0,3}\Z"),
)

schemathesis.openapi.format("phone", _PHONE)
schemathesis.openapi.format("public-http-url", _URL)

# The edge answers 413 to a body over --max-body-bytes (64 KiB, run.sh's
# default) before any rule of the schema applies; edge.rs tests that limit.
# A schema cannot state a size in bytes, and the kb step's documents allow
# up to 200,000 characters each, so bodies the edge would refuse for their
# size alone are not sent: they would test the edge, not the schema.
MAX_BODY_BYTES = 64 * 1024


@schemathesis.hook
def filter_case(context, case):
    body = case.body
    if isinstance(body, NotSet) or body is None:
        return True
    try:
        sizes = [
            len(json.dumps(body, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass"))
            for ascii_only in (True, False)
        ]
    except (TypeError, ValueError):
        return True
    return max(sizes) <= MAX_BODY_BYTES
