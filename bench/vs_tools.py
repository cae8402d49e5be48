#!/usr/bin/python3
"""This project's load generator against wrk and ab, on the same nginx, interleaved.

    bench/vs_tools.py [--rounds 6] [--seconds 3] [--concurrency 8,50,200] [--threads 2]

nginx (2 workers, `listen ... reuseport`, `return 200`, no access log) runs in a network
namespace of its own; every tool sends GET / with Connection: close (ab: HTTP/1.0, which
closes too) at the same concurrency, wrk and ours with the same threads (ab has one). Per
round the tools take turns at every concurrency (ours, wrk, ab, then the next), so a change
in the machine's load hits them alike; the order turns from one round and level to the next
(ours-wrk-ab, wrk-ab-ours, ab-ours-wrk), so no tool always runs after the same one. Prints
each measurement, then per concurrency the medians of completed requests per second and the
ratios ours/wrk and ours/ab. A ratio is taken per round (the two tools ran within seconds of
each other, so the machine's load was alike) and its spread is given as the median and the
range over the rounds, plus how many rounds were at or above 1.0: a median over 3 noisy
rounds alone would hide a tool that is ahead only sometimes. Last, the CPU time each tool
took per completed request (its own user + system time) and the ratio wrk/ours, which the
machine's other load disturbs far less than the rates.

Ours is bench_loadgen_http (the `deploy` load generator: every attempt gets one outcome in
its ledger); a run in which any tool saw failures says so beside its number. Needs root,
nginx, wrk and ab (ci/setup.sh installs them) and a build (RP_BUILD_DIR, default build/).
Not a test: it prints numbers and exits 0 unless a tool could not run.
"""
import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PORT = 47380

NGINX_CONF = """\
daemon off;
worker_processes 2;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {dir}; proxy_temp_path {dir}; fastcgi_temp_path {dir};
  uwsgi_temp_path {dir}; scgi_temp_path {dir};
  server {{
    listen 127.0.0.1:{port} reuseport backlog=4096;
    location / {{ return 200 "ok\\n"; }}
  }}
}}
"""


def die(msg: str) -> None:
    sys.exit(f"vs_tools.py: {msg}")


def in_ns(pid: int, *argv: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["nsenter", "-t", str(pid), "-n", *argv], capture_output=True, text=True, **kw)


def run_ours(bench: Path, ns: int, c: int, threads: int, seconds: float) -> tuple[float, int, str]:
    r = in_ns(ns, str(bench), str(PORT), str(threads), str(c), str(seconds), timeout=seconds + 60)
    if r.returncode != 0:
        die(f"bench_loadgen_http: {r.stderr.strip()}")
    j = json.loads(r.stdout)
    return j["per_second"], j["served"], f"{j['failed']} failed" if j["failed"] else ""


def run_wrk(ns: int, c: int, threads: int, seconds: float) -> tuple[float, int, str]:
    r = in_ns(ns, "wrk", f"-t{threads}", f"-c{c}", f"-d{seconds}s", "-H", "Connection: close",
              f"http://127.0.0.1:{PORT}/", timeout=seconds + 60)
    m = re.search(r"Requests/sec:\s+([\d.]+)", r.stdout)
    n = re.search(r"(\d+) requests in", r.stdout)
    if r.returncode != 0 or not m or not n:
        die(f"wrk: {r.stdout.strip()} {r.stderr.strip()}")
    notes = [x.strip() for x in r.stdout.splitlines() if "Socket errors" in x or "Non-2xx" in x]
    return float(m.group(1)), int(n.group(1)), "; ".join(notes)


def run_ab(ns: int, c: int, threads: int, seconds: float) -> tuple[float, int, str]:
    r = in_ns(ns, "ab", "-q", "-c", str(c), "-t", str(seconds), "-n", "100000000",
              f"http://127.0.0.1:{PORT}/", timeout=seconds + 60)
    m = re.search(r"Requests per second:\s+([\d.]+)", r.stdout)
    n = re.search(r"Complete requests:\s+(\d+)", r.stdout)
    if not m or not n:
        die(f"ab: {r.stdout.strip()[-300:]} {r.stderr.strip()[-300:]}")
    failed = re.search(r"Failed requests:\s+(\d+)", r.stdout)
    return float(m.group(1)), int(n.group(1)), f"{failed.group(1)} failed" if failed and failed.group(1) != "0" else ""


def cpu_of(fn, *args) -> tuple[float, int, str, float]:
    """fn's result and the CPU time (user + system) its tool took per completed request, in
    us. nsenter execs the tool, so the tool is the child whose usage RUSAGE_CHILDREN adds;
    the kernel's work for the tool's sockets that runs in its context (loopback delivers in
    the sender's softirq) is in it too, as it is for every tool."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    rate, done, note = fn(*args)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return rate, done, note, cpu * 1e6 / done if done else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--concurrency", default="8,50,200")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    if a.rounds < 1 or a.seconds < 1 or a.threads < 1:
        die("--rounds, --seconds and --threads must be at least 1")
    try:
        levels = [int(x) for x in a.concurrency.split(",")]
    except ValueError:
        die(f"--concurrency {a.concurrency!r}: expected numbers separated by commas, e.g. 8,50,200")
    if any(c < a.threads for c in levels):
        die(f"--concurrency {a.concurrency}: every level must be at least --threads ({a.threads})")
    if os.geteuid() != 0:
        die("needs root (it makes a network namespace)")
    for tool in ("nginx", "wrk", "ab", "nsenter", "unshare"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            die(f"{tool} is not installed (ci/setup.sh installs nginx-light, wrk, apache2-utils)")
    bench = Path(os.environ.get("RP_BUILD_DIR", REPO / "build")) / "bin" / "bench_loadgen_http"
    if not bench.exists():
        die(f"no {bench}; build first (ninja -C build bench_loadgen_http) or set RP_BUILD_DIR")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    tools = {"ours": lambda ns, c: run_ours(bench, ns, c, a.threads, a.seconds),
             "wrk": lambda ns, c: run_wrk(ns, c, a.threads, a.seconds),
             "ab": lambda ns, c: run_ab(ns, c, a.threads, a.seconds)}
    got = {(t, c): [] for t in tools for c in levels}
    cpu = {(t, c): [] for t in tools for c in levels}
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=tmp, port=PORT))
        # The namespace lives as long as this process: its anchor dies with us (-k).
        anchor = subprocess.Popen(["unshare", "-n", "--kill-child", "sleep", "infinity"])
        server = None
        try:
            time.sleep(0.1)
            in_ns(anchor.pid, "ip", "link", "set", "lo", "up", check=True)
            in_ns(anchor.pid, "sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65000", check=True)
            server = subprocess.Popen(["nsenter", "-t", str(anchor.pid), "-n", nginx, "-c", str(conf), "-p", tmp],
                                      stderr=subprocess.PIPE, text=True)
            for _ in range(100):
                if in_ns(anchor.pid, "ss", "-Hltn", f"sport = :{PORT}").stdout.strip():
                    break
                time.sleep(0.05)
            else:
                die("nginx did not listen: " + (Path(tmp) / "error.log").read_text()[-500:])
            print(f"nginx 2 workers on 127.0.0.1:{PORT}; {a.rounds} round(s) of {a.seconds} s per tool "
                  f"and concurrency; threads: ours and wrk {a.threads}, ab 1")
            names = list(tools)
            for rnd in range(a.rounds):
                for i, c in enumerate(levels):
                    # The order turns with the round and the level: every tool runs first,
                    # second and third equally often at each level (over 3k rounds), so
                    # what one tool leaves behind (TIME_WAIT sockets, a busy core) does not
                    # always fall on the same next tool.
                    k = (rnd + i) % len(names)
                    for name in names[k:] + names[:k]:
                        fn = tools[name]
                        rate, _, note, us = cpu_of(fn, anchor.pid, c)
                        got[(name, c)].append(rate)
                        cpu[(name, c)].append(us)
                        print(f"round {rnd + 1} c={c:<4} {name:5s} {rate:10.0f} req/s {us:6.1f} us CPU/req {note}",
                              flush=True)
        finally:
            if server:
                server.terminate()
                server.wait()
            anchor.kill()
            anchor.wait()
    print()
    for line in summary(got, levels, a.rounds):
        print(line)
    print()
    for line in cpu_summary(cpu, levels, a.rounds):
        print(line)


def ratio_spread(num: list[float], den: list[float]) -> tuple[float, float, float, int]:
    """Per-round ratios num/den: median, min, max and the rounds at or above 1.0."""
    r = [o / w for o, w in zip(num, den)]
    return statistics.median(r), min(r), max(r), sum(1 for x in r if x >= 1.0)


def summary(got: dict, levels: list[int], rounds: int) -> list[str]:
    out = [f"medians over {rounds} round(s), requests/s; ratios per round: median [min, max], rounds >= 1.0",
           f"{'c':>5} {'ours':>8} {'wrk':>8} {'ab':>8}  {'ours/wrk':<24} {'ours/ab':<24}"]
    for c in levels:
        m = {t: statistics.median(got[(t, c)]) for t in ("ours", "wrk", "ab")}
        cols = []
        for other in ("wrk", "ab"):
            med, lo, hi, ahead = ratio_spread(got[("ours", c)], got[(other, c)])
            cols.append(f"{med:.2f} [{lo:.2f}, {hi:.2f}] {ahead}/{rounds}")
        out.append(f"{c:>5} {m['ours']:>8.0f} {m['wrk']:>8.0f} {m['ab']:>8.0f}  {cols[0]:<24} {cols[1]:<24}")
    return out


def cpu_summary(cpu: dict, levels: list[int], rounds: int) -> list[str]:
    """CPU per request is far less noisy than the rate on a shared machine: a tool that
    waits for a core loses rate but not CPU per request."""
    out = [f"CPU time per request, us (medians over {rounds} round(s)); wrk/ours per round: median [min, max], "
           "rounds >= 1.0 (ours cheaper)",
           f"{'c':>5} {'ours':>8} {'wrk':>8} {'ab':>8}  {'wrk/ours':<24}"]
    for c in levels:
        m = {t: statistics.median(cpu[(t, c)]) for t in ("ours", "wrk", "ab")}
        med, lo, hi, ahead = ratio_spread(cpu[("wrk", c)], cpu[("ours", c)])
        out.append(f"{c:>5} {m['ours']:>8.1f} {m['wrk']:>8.1f} {m['ab']:>8.1f}  "
                   f"{med:.2f} [{lo:.2f}, {hi:.2f}] {ahead}/{rounds}")
    return out

if __name__ == "__main__":
    main()
