"""Every metric name the dashboard and the alert rules use is in the reference's section 5 (or a
recording rule); writes the dashboard's expressions as a rules file for promtool.

    python3 scripts/lib/check_metric_names.py REFERENCE_JSON DASHBOARD RULES OUT_EXPRS_YML
"""
import json, re, sys
import yaml

contract = json.load(open(sys.argv[1]))
dashboard = json.load(open(sys.argv[2]))
rules = yaml.safe_load(open(sys.argv[3]))
errors = []

# --- The dashboard's shape.
if dashboard.get("schemaVersion") != 39:
    errors.append(f"dashboard: schemaVersion is {dashboard.get('schemaVersion')!r}, expected 39")
tvars = dashboard.get("templating", {}).get("list", [])
ds_vars = [v["name"] for v in tvars if v.get("type") == "datasource" and v.get("query") == "prometheus"]
if not ds_vars:
    errors.append("dashboard: no templated datasource variable of type prometheus")
ds_refs = {"${%s}" % n for n in ds_vars} | {"$%s" % n for n in ds_vars}

def panels_of(ps):
    for p in ps:
        yield p
        yield from panels_of(p.get("panels", []))

exprs = []  # (where, expr)
ids = set()
count = 0
for p in panels_of(dashboard.get("panels", [])):
    where = f"dashboard panel {p.get('id')} {p.get('title')!r}"
    if p.get("id") in ids:
        errors.append(f"{where}: duplicate panel id")
    ids.add(p.get("id"))
    if "gridPos" not in p:
        errors.append(f"{where}: no gridPos")
    if p.get("type") == "row":
        if p.get("targets"):
            errors.append(f"{where}: a row has targets")
        continue
    count += 1
    if (p.get("datasource") or {}).get("uid") not in ds_refs:
        errors.append(f"{where}: datasource is not the templated prometheus one")
    targets = p.get("targets") or []
    if not targets:
        errors.append(f"{where}: no targets")
    for t in targets:
        e = (t.get("expr") or "").strip()
        if not e:
            errors.append(f"{where}: target {t.get('refId')} has an empty expr")
        else:
            exprs.append((where, e))
if count == 0:
    errors.append("dashboard: no panels")
for v in tvars:
    if v.get("type") != "query":
        continue
    q = v.get("query")
    q = q.get("query", "") if isinstance(q, dict) else (q or "")
    m = re.match(r"\s*label_values\(\s*(.+?)\s*,\s*\w+\s*\)\s*$", q)
    if m:
        exprs.append((f"dashboard variable {v['name']}", m.group(1)))
    elif q.strip():
        exprs.append((f"dashboard variable {v['name']}", q))

# --- The rules' shape.
recorded = set()
alerts = 0
for g in rules.get("groups", []):
    for r in g.get("rules", []):
        where = f"rules group {g.get('name')} " + (f"record {r['record']}" if "record" in r else f"alert {r.get('alert')}")
        if "record" in r:
            recorded.add(r["record"])
        else:
            alerts += 1
            if "for" not in r:
                errors.append(f"{where}: no for:")
            if not (r.get("labels") or {}).get("severity"):
                errors.append(f"{where}: no labels.severity")
            ann = r.get("annotations") or {}
            for k in ("summary", "description"):
                if not ann.get(k):
                    errors.append(f"{where}: no annotations.{k}")
        exprs.append((where, str(r.get("expr", ""))))
if alerts == 0:
    errors.append("rules: no alerting rules")

# --- Metric names used by every expression.
allowed = set()
for name, spec in contract.items():
    allowed.add(name)
    if spec["type"] == "histogram":
        allowed |= {name + s for s in ("_bucket", "_count", "_sum")}
allowed |= recorded

KEYWORDS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk",
    "topk", "quantile", "limitk", "limit_ratio", "by", "without", "on", "ignoring", "group_left",
    "group_right", "bool", "and", "or", "unless", "offset", "atan2", "inf", "nan",
}

def metric_names(expr):
    s = re.sub(r"\$\{[^}]*\}|\$\w+", " ", expr)                         # Grafana variables
    s = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', s)  # strings
    s = re.sub(r"\{[^}]*\}", " ", s)                                     # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)                                    # ranges, subqueries
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = []
    for m in re.finditer(r"(?<![\w.:])([A-Za-z_:][\w:]*)", s):
        tok = m.group(1)
        if re.match(r"\s*\(", s[m.end():]) or tok.lower() in KEYWORDS:
            continue  # a function or aggregation, or a keyword
        names.append(tok)
    return names

used = set()
for where, e in exprs:
    names = metric_names(e)
    if not names:
        errors.append(f"{where}: no metric name found in {e!r}")
    for n in names:
        used.add(n)
        if n not in allowed:
            errors.append(f"{where}: metric {n!r} is not in docs/reference.md section 5 (nor a recording rule)")

# The dashboard's expressions as recording rules, for `promtool check rules` to parse them, with
# Grafana's variables replaced by what they expand to.
with open(sys.argv[4], "w") as f:
    f.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, (where, e) in enumerate(x for x in exprs if x[0].startswith("dashboard")):
        e = re.sub(r"\$__\w+", "5m", e)
        e = re.sub(r"\$\{\w+\}|\$\w+", ".*", e)
        f.write(f"      - record: dashboard:expr:{i}\n        expr: {json.dumps(e)}\n")

for e in errors:
    print("ERROR:", e, file=sys.stderr)
if errors:
    sys.exit(1)
print(f"{count} dashboard panels and {alerts} alerts, {len(exprs)} expressions, "
      f"{len(used - recorded)} metric names used, all in the contract")
