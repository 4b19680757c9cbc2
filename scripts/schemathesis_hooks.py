"""Schemathesis hooks for scripts/schemathesis.sh.

A claim may wait up to `waitMs` (0..30000) for work before answering 204; generated values
spread over that range would make most claims on an empty queue sleep for seconds. In-range
values are shortened to under 100 ms: the server still parses, range-checks and honours
them, and out-of-range or wrongly typed values (negative data) are sent unchanged.
"""

import schemathesis


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.operation.path != "/api/tasks/claim" or not isinstance(case.body, dict):
        return
    wait = case.body.get("waitMs")
    if isinstance(wait, (int, float)) and not isinstance(wait, bool) and 100 <= wait <= 30000 and wait == int(wait):
        case.body["waitMs"] = int(wait) % 100
