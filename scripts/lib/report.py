"""Small readers of the load tool's JSON reports and the server's documents, for the scripts
(so that no Python is embedded in bash).

    report.py field FILE EXPR       evaluates EXPR with the report as `d` (a dict)
    report.py statuses FILE         "endpoint: {status: count} ... | errors N"
    report.py only-503 FILE         exits 1 when a 5xx other than 503 was answered
    report.py cache-entries         (stdin: /debug/health) the entries of every cache together
    report.py sweeper               (stdin: /debug/health) "N sweeps, last removed {...}"
    report.py since T0              seconds since the epoch time T0, to 0.01
    report.py rss-growth CSV        RSS at start, after warm-up and at the end of a soak
    report.py token-formats JWT OPAQUE   (two token answers) fails unless the first access token
                                    is a JWT and the second is not
    report.py resource-tokens DIR   the summary of scripts/bench-resource-tokens: ratios, goals
"""
import glob
import os
import csv
import json
import sys
import time


def main(argv):
    cmd, args = argv[1], argv[2:]
    if cmd == "field":
        d = json.load(open(args[0]))
        print(eval(args[1], {}, {"d": d}))  # the expression is the calling script's own
    elif cmd == "statuses":
        d = json.load(open(args[0]))
        print(" ".join(f"{k}: {v['by_status']}" for k, v in d["endpoints"].items()), "| errors", d["errors"])
    elif cmd == "only-503":
        d = json.load(open(args[0]))
        bad = {s: n for e in d["endpoints"].values() for s, n in e["by_status"].items()
               if s.startswith("5") and s != "503"}
        if bad:
            sys.exit(f"unexpected 5xx: {bad}")
    elif cmd == "cache-entries":
        print(sum(c["entries"] for c in json.load(sys.stdin)["caches"].values()))
    elif cmd == "sweeper":
        s = json.load(sys.stdin)["sweeper"]
        print(s["runs"], "sweeps, last removed", s["last_removed"])
    elif cmd == "since":
        print(round(time.time() - float(args[0]), 2))
    elif cmd == "rss-growth":
        rows = list(csv.DictReader(open(args[0])))
        rss = [int(r["rss_kib"]) for r in rows]
        half = rss[len(rss) // 2:]
        print(f"RSS: start {rss[0]} KiB, after warm-up {half[0]} KiB, end {rss[-1]} KiB, "
              f"growth over the second half {100 * (half[-1] - half[0]) / max(half[0], 1):.1f}%")
    elif cmd == "token-formats":
        jwt, opaque = (json.loads(a)["access_token"] for a in args[:2])
        if jwt.count(".") != 2 or opaque.count(".") != 0:
            sys.exit(f"expected a JWT and an opaque token, got {jwt[:40]}... and {opaque[:40]}...")
        print(f"token formats: JWT ({len(jwt)} bytes) and opaque ({len(opaque)} bytes)")
    elif cmd == "resource-tokens":
        resource_tokens(args[0])
    else:
        sys.exit(f"unknown command {cmd}")


def resource_tokens(out):
    """The table of scripts/bench-resource-tokens: each run against the mean of the baseline's
    runs (throughput, and server CPU per answer), and the goals of issue 12."""
    runs = {}
    for path in sorted(glob.glob(os.path.join(out, "sat-*.json"))):
        runs[os.path.basename(path)[4:-5]] = json.load(open(path))

    def cpu(d):
        return (d.get("server_cpu") or {}).get("cpu_us_per_ok")

    base = [runs[n] for n in ("baseline", "baseline-2") if n in runs]
    base_ok = sum(d["total_ok_per_sec"] for d in base) / max(len(base), 1)
    base_cpus = [cpu(d) for d in base if cpu(d)]
    base_cpu = sum(base_cpus) / len(base_cpus) if base_cpus else None
    each = ", ".join(f"{d['total_ok_per_sec']:,.0f}" for d in base)
    print(f"baseline: {each} ok/s (mean {base_ok:,.0f}), server {base_cpu or 0:.1f} us per answer")
    print(f"{'run':<24} {'ok/s':>9} {'ratio':>6} {'cpu ratio':>9} {'us/answer':>9} {'tool cores':>10} {'errors':>6}")
    for name, d in runs.items():
        c = cpu(d)
        tool = (d.get("client_cpu") or {}).get("cores_busy")
        print(f"{name:<24} {d['total_ok_per_sec']:>9,.0f} {d['total_ok_per_sec'] / base_ok:>6.3f} "
              f"{(base_cpu / c) if c and base_cpu else 0:>9.3f} {c or 0:>9.1f} {tool or 0:>10.2f} {d['errors']:>6}")

    def goal(text, value, target):
        print(f"{text}: {value:.3f} (goal >= {target}) {'met' if value >= target else 'MISSED'}")

    print()
    if "cc-jwt-ES256" in runs:
        goal("client_credentials, ES256 JWT / baseline", runs["cc-jwt-ES256"]["total_ok_per_sec"] / base_ok, 0.3)
    for name in runs:
        if name.startswith("userinfo-dpop-"):
            goal(f"userinfo with a DPoP proof ({name[14:]}) / baseline", runs[name]["total_ok_per_sec"] / base_ok, 0.25)
    pg = {k: [d["total_ok_per_sec"] for n, d in runs.items() if n.startswith(f"pg-cc-{k}-")] for k in ("opaque", "jwt")}
    if pg["opaque"] and pg["jwt"]:
        ratio = (sum(pg["jwt"]) / len(pg["jwt"])) / (sum(pg["opaque"]) / len(pg["opaque"]))
        goal("PostgreSQL client_credentials, JWT / opaque (means)", ratio, 3)
    errors = sum(d["errors"] for d in runs.values())
    print(f"errors in all runs: {errors}")


if __name__ == "__main__":
    main(sys.argv)
