"""Every metric of the reference's section 5 is in a scrape of the server, with its type and labels.

    python3 scripts/lib/check_scrape.py REFERENCE_JSON METRICS_TXT
"""
import json, re, sys

contract = json.load(open(sys.argv[1]))
types, samples = {}, {}
for line in open(sys.argv[2], encoding="utf-8"):
    line = line.strip()
    if not line:
        continue
    if line.startswith("# TYPE "):
        _, _, name, typ = line.split(None, 3)
        types[name] = typ
        continue
    if line.startswith("#"):
        continue
    m = re.match(r"([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+\S+", line)
    if not m:
        sys.exit(f"cannot read sample line {line!r}")
    labels = set(re.findall(r'([A-Za-z_]\w*)="(?:\\.|[^"\\])*"', m.group(2) or ""))
    samples.setdefault(m.group(1), []).append(labels)

errors = []
for name, spec in contract.items():
    want = set(spec["labels"])
    if types.get(name) != spec["type"]:
        errors.append(f"{name}: TYPE is {types.get(name)!r} in the scrape, the contract says {spec['type']}")
    series = {name: want}
    if spec["type"] == "histogram":
        series = {name + "_bucket": want | {"le"}, name + "_sum": want, name + "_count": want}
    for s, labels in series.items():
        if s not in samples:
            errors.append(f"{s}: missing from the scrape")
            continue
        for got in samples[s]:
            if got != labels:
                errors.append(f"{s}: a series has labels {sorted(got)}, the contract says {sorted(labels)}")
                break
for e in errors:
    print("ERROR:", e, file=sys.stderr)
if errors:
    sys.exit(1)
print(f"all {len(contract)} metrics of docs/reference.md section 5 are in the scrape with their type and labels")
