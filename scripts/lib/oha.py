"""The helpers of scripts/bench-oha.

    oha.py tokens BASE      logs the demo user in and runs one code flow as demo-app (stdlib
                            HTTP only); prints "COOKIE ACCESS_TOKEN AUTHORIZE_QUERY"
    oha.py row NAME CPU_TICKS LOAD_USER LOAD_SYS REPORT
                            one run: answers/s, the server's CPU per answer, the load
                            generator's cores; REPORT is oha's JSON or wrk's output, whose last
                            line is lib/wrk.lua's JSON
    oha.py summary DIR      ratios to the bare hello of the same round, per round and medians
"""
import base64
import hashlib
import http.client
import json
import os
import statistics
import sys
import urllib.parse

CLIENT = ("demo-app", "demo-secret")
REDIRECT = "http://127.0.0.1:9000/callback"
# Issue 15's goals, as ratios to the bare axum hello.
GOALS = {"userinfo": 0.75, "introspect": 0.7, "authorize": 0.5, "token-cc": 0.45}


def tokens(base):
    conn = http.client.HTTPConnection(base.split("//", 1)[1])
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    conn.request("POST", "/auth/login", urllib.parse.urlencode({"username": "alice", "password": "wonderland"}),
                 {**form, "Accept": "application/json"})
    r = conn.getresponse()
    r.read()
    cookie = r.getheader("Set-Cookie").split(";")[0]
    verifier = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = urllib.parse.urlencode({
        "response_type": "code", "client_id": CLIENT[0], "redirect_uri": REDIRECT,
        "scope": "openid profile email", "state": "oha", "code_challenge": challenge,
        "code_challenge_method": "S256",
    })
    conn.request("GET", "/auth/authorize?" + query, headers={"Cookie": cookie})
    r = conn.getresponse()
    r.read()
    code = urllib.parse.parse_qs(urllib.parse.urlparse(r.getheader("Location")).query)["code"][0]
    basic = base64.b64encode(f"{CLIENT[0]}:{CLIENT[1]}".encode()).decode()
    conn.request("POST", "/auth/token", urllib.parse.urlencode({
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier,
    }), {**form, "Authorization": "Basic " + basic})
    r = conn.getresponse()
    access = json.loads(r.read())["access_token"]
    print(cookie, access, query)


def row(name, ticks, load_user, load_sys, path):
    """One run: the generator's report, the server's CPU ticks (utime + stime) over it, and the
    generator's own CPU seconds."""
    with open(path) as f:
        text = f.read()
    lines = text.strip().splitlines()
    if lines and lines[-1].startswith('{"generator":"wrk"'):
        w = json.loads(lines[-1])
        # wrk counts a status of 400 and above as an error (the 302s of authorize are answers),
        # and cuts no request at its deadline.
        bad = w["status_errors"] + w["socket_errors"]
        ok, wall = w["requests"] - w["status_errors"], w["duration_us"] / 1e6
        p50, p99 = w["p50_us"] / 1e3, w["p99_us"] / 1e3
    else:
        d = json.loads(text)
        codes = d["statusCodeDistribution"]
        ok = sum(n for c, n in codes.items() if c[0] in "23")
        # oha cuts the requests in flight at the deadline: not the server's failures.
        errors = {e: n for e, n in d.get("errorDistribution", {}).items() if e != "aborted due to deadline"}
        bad = sum(n for c, n in codes.items() if c[0] not in "23") + sum(errors.values())
        wall = d["summary"]["total"]
        p50, p99 = d["latencyPercentiles"]["p50"] * 1e3, d["latencyPercentiles"]["p99"] * 1e3
    cpu = int(ticks) / os.sysconf("SC_CLK_TCK")
    out = {"name": name, "ok": ok, "bad": bad, "ok_per_sec": ok / wall, "server_cores": cpu / wall,
           "server_us_per_ok": cpu * 1e6 / max(ok, 1),
           "load_cores": (float(load_user) + float(load_sys)) / wall,
           "p50_ms": p50, "p99_ms": p99}
    print(json.dumps(out))


def summary(out):
    rounds = {}
    with open(os.path.join(out, "rows.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            rnd, name = r["name"].split(":", 1)
            rounds.setdefault(rnd, {}).setdefault(name, []).append(r)
    ratios = {}
    print(f"{'round':5} {'endpoint':11} {'ok/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'srv cores':>9} {'srv µs/ok':>9} "
          f"{'load cores':>10} {'ratio':>6} {'cpu ratio':>9}  goal")
    for rnd, runs in sorted(rounds.items()):
        hellos = runs.get("hello", [])
        hello_rate = statistics.mean(h["ok_per_sec"] for h in hellos)
        hello_us = statistics.mean(h["server_us_per_ok"] for h in hellos)
        for name, rs in runs.items():
            for r in rs:
                ratio, cpu_ratio = r["ok_per_sec"] / hello_rate, hello_us / r["server_us_per_ok"]
                goal = GOALS.get(name)
                verdict = "" if goal is None else f">= {goal}: {'met' if cpu_ratio >= goal else 'missed'}"
                print(f"{rnd:5} {name:11} {r['ok_per_sec']:8.0f} {r['p50_ms']:7.3f} {r['p99_ms']:7.3f} {r['server_cores']:9.2f} "
                      f"{r['server_us_per_ok']:9.1f} {r['load_cores']:10.2f} {ratio:6.2f} {cpu_ratio:9.2f}  {verdict}"
                      + (f"  ({r['bad']} failed)" if r["bad"] else ""))
                if name != "hello":
                    ratios.setdefault(name, []).append((ratio, cpu_ratio))
    print("medians over the rounds (ratio to the hello by answers/s; by server CPU per answer):")
    for name, rs in ratios.items():
        goal = GOALS.get(name)
        med = statistics.median(c for _, c in rs)
        print(f"  {name:11} {statistics.median(r for r, _ in rs):.2f} / {med:.2f}"
              + ("" if goal is None else f"  goal {goal}: {'met' if med >= goal else 'missed'}"))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"tokens": tokens, "row": row, "summary": summary}[cmd](*args)
