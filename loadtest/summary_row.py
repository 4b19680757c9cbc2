#!/usr/bin/env python3
"""One TSV row from the load test's summary, the last line it printed (on stdin).

Usage: loadtest ... | python3 loadtest/summary_row.py FIELD...

A FIELD is a key of the summary, with dots into nested objects (`claim_ms.p99`); an object
of counts (`errors`, by status) becomes their sum; `=TEXT` is TEXT itself, a label. When the
run printed no summary (it failed), every field from it is `nan`, which the scripts' checks
(`double_claims` 0, `capital_consistent` True) then refuse.
"""
import json
import sys


def value(summary, field):
    if field.startswith("="):
        return field[1:]
    if summary is None:
        return "nan"
    node = summary
    for key in field.split("."):
        node = node[key]
    return sum(node.values()) if isinstance(node, dict) else node


lines = [line for line in sys.stdin.read().splitlines() if line.strip()]
try:
    summary = json.loads(lines[-1])
except (IndexError, ValueError):
    summary = None
print("\t".join(str(value(summary, field)) for field in sys.argv[1:]))
