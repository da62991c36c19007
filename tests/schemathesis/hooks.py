"""What the run leaves out: bodies the edge refuses for their size alone.

The document's string formats (`phone`, `public-http-url`) have no
generator here: their patterns state only values the server takes
(drawn from them by hypothesis, the .so took 10,000 of each; the phone's
pinned by tests/python/openapi_phone.py), so schemathesis draws from the
patterns themselves, as a run without these hooks does.
"""

import json

import schemathesis
from schemathesis.core import NotSet

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
