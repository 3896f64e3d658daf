"""Small readers of the load tool's JSON reports and the server's documents, for the scripts
(so that no Python is embedded in bash).

    report.py field FILE EXPR       evaluates EXPR with the report as `d` (a dict)
    report.py statuses FILE         "endpoint: {status: count} ... | errors N"
    report.py only-503 FILE         exits 1 when a 5xx other than 503 was answered
    report.py cache-entries         (stdin: /debug/health) the entries of every cache together
    report.py sweeper               (stdin: /debug/health) "N sweeps, last removed {...}"
    report.py since T0              seconds since the epoch time T0, to 0.01
    report.py rss-growth CSV        RSS at start, after warm-up and at the end of a soak
"""
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
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv)
