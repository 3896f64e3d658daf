"""The metrics of section 5 of docs/reference.md (or any document with such a section), as JSON:
{name: {"type": ..., "labels": [...]}}. Used by scripts/check-operator-files.

    python3 scripts/lib/reference_metrics.py docs/reference.md
"""
import json, re, sys
text = open(sys.argv[1], encoding="utf-8").read()
m = re.search(r"^## 5\..*?$(.*?)(?=^## |\Z)", text, re.S | re.M)
if not m:
    sys.exit("the reference has no section 5")
metrics = {}
for line in m.group(1).splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) != 3 or not cells[0].startswith("`"):
        continue
    names = re.findall(r"`([^`]+)`", cells[0])
    labels = re.findall(r"`([^`]+)`", re.sub(r"\([^)]*\)", "", cells[2]))
    for n in names:
        metrics[n] = {"type": cells[1], "labels": sorted(labels)}
if len(metrics) < 10:
    sys.exit(f"parsed only {len(metrics)} metrics from the reference section 5")
json.dump(metrics, sys.stdout)
