#!/usr/bin/env python3
"""Reads imaptest's output (tests/imaptest/run.sh and bench/imap/run.sh use it).

    imaptest_report.py tests  OUTPUT_FILE          scripted tests (test=DIR): JSON summary
    imaptest_report.py stress OUTPUT_FILE SECS     stress run: JSON with totals and rates

tests: {"groups": N, "failed": F, "skipped": S, "passed": N-F-S, "failed_groups": [...],
        "base_failed": a, "base_total": b, "ext_failed": c, "ext_total": d, "complete": bool}
stress: {"totals": {"Logi": n, ...}, "rates": {"Logi": n/SECS, ...}, "errors": E,
         "error_lines": [first 20], "error_kinds": [[count, normalized line], ...top 10],
         "complete": bool}
"complete" is false when the summary lines are missing (imaptest crashed or was killed).
"""
import json
import re
import sys


def tests(text):
    r = {"groups": 0, "failed": 0, "skipped": 0, "passed": 0, "failed_groups": [],
         "base_failed": 0, "base_total": 0, "ext_failed": 0, "ext_total": 0, "complete": False}
    m = re.search(r"^(\d+) test groups: (\d+) failed, (\d+) skipped", text, re.M)
    if m:
        r["groups"], r["failed"], r["skipped"] = map(int, m.groups())
        r["passed"] = r["groups"] - r["failed"] - r["skipped"]
        r["complete"] = True
    m = re.search(r"^base protocol: (\d+)/(\d+) individual commands failed", text, re.M)
    if m:
        r["base_failed"], r["base_total"] = map(int, m.groups())
    else:
        r["complete"] = False
    m = re.search(r"^extensions: (\d+)/(\d+) individual commands failed", text, re.M)
    if m:
        r["ext_failed"], r["ext_total"] = map(int, m.groups())
    else:
        r["complete"] = False
    seen = []
    for m in re.finditer(r"^\*\*\* Test (\S+)", text, re.M):
        if m.group(1) not in seen:
            seen.append(m.group(1))
    r["failed_groups"] = seen
    return r


def stress(text, secs):
    lines = text.splitlines()
    r = {"totals": {}, "rates": {}, "errors": 0, "error_lines": [], "complete": False}
    for i, line in enumerate(lines):
        if line.strip() == "Totals:" and i + 1 < len(lines):
            names = lines[i + 1].split()
            for row in lines[i + 2:]:
                toks = row.split()
                if toks and all(t.isdigit() for t in toks) and len(toks) == len(names):
                    r["totals"] = dict(zip(names, map(int, toks)))
                    r["complete"] = True
                    break
    r["rates"] = {k: v / secs for k, v in r["totals"].items()}
    errs = [l for l in lines if re.match(r"^(Error|Panic|Fatal)\b", l)]
    r["errors"] = len(errs)
    r["error_lines"] = errs[:20]
    kinds = {}
    for l in errs:
        k = re.sub(r"\S+\[\d+\]", "USER[N]", l)          # user1@example.test[12]
        k = re.sub(r"\b\d+\.\d+\b", "T", k)             # command tags 12.3
        k = re.sub(r"\b\d+\b", "N", k)[:160]
        kinds[k] = kinds.get(k, 0) + 1
    r["error_kinds"] = sorted(([n, k] for k, n in kinds.items()), reverse=True)[:10]
    return r


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("tests", "stress"):
        sys.exit(__doc__)
    text = open(sys.argv[2], errors="replace").read()
    if sys.argv[1] == "tests":
        print(json.dumps(tests(text)))
    else:
        print(json.dumps(stress(text, float(sys.argv[3]))))
