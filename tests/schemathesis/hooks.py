"""Generators for the OpenAPI document's own string formats.

The document declares what a regular expression can say of `phone` and
`crawl_url` (trimmed, length, no control character); whether a number is
valid (libphonenumber's metadata) or a URL's host is public is the format's
definition, which no pattern captures. These strategies draw values of each
format, so schema-valid bodies are accepted bodies.
"""

from hypothesis import strategies as st

import schemathesis

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
