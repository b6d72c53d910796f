"""Append one transcribed upstream case to derive_pmrm_cases.json (maintainer helper)."""
import json
import sys
from pathlib import Path

p = Path(__file__).with_name("derive_pmrm_cases.json")
cases = json.loads(p.read_text()) if p.exists() else []
new = json.loads(sys.stdin.read())
names = {c["name"] for c in cases}
for c in (new if isinstance(new, list) else [new]):
    if c["name"] in names:
        cases = [x for x in cases if x["name"] != c["name"]]
    cases.append(c)
p.write_text(json.dumps(cases, indent=1) + "\n")
print(len(cases), "cases")
