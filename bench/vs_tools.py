#!/usr/bin/python3
"""This project's load generator against wrk and ab, on the same nginx, interleaved.

    bench/vs_tools.py [--rounds 3] [--seconds 3] [--concurrency 8,50,200] [--threads 2]

nginx (2 workers, `listen ... reuseport`, `return 200`, no access log) runs in a network
namespace of its own; every tool sends GET / with Connection: close (ab: HTTP/1.0, which
closes too) at the same concurrency, wrk and ours with the same threads (ab has one). Per
round the tools take turns at every concurrency (ours, wrk, ab, then the next), so a change
in the machine's load hits them alike. Prints each measurement, then per concurrency the
medians of completed requests per second and the ratios ours/wrk and ours/ab.

Ours is bench_loadgen_http (the `deploy` load generator: every attempt gets one outcome in
its ledger); a run in which any tool saw failures says so beside its number. Needs root,
nginx, wrk and ab (ci/setup.sh installs them) and a build (RP_BUILD_DIR, default build/).
Not a test: it prints numbers and exits 0 unless a tool could not run.
"""
import argparse
import json
import os
import re
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


def run_ours(bench: Path, ns: int, c: int, threads: int, seconds: float) -> tuple[float, str]:
    r = in_ns(ns, str(bench), str(PORT), str(threads), str(c), str(seconds), timeout=seconds + 60)
    if r.returncode != 0:
        die(f"bench_loadgen_http: {r.stderr.strip()}")
    j = json.loads(r.stdout)
    return j["per_second"], f"{j['failed']} failed" if j["failed"] else ""


def run_wrk(ns: int, c: int, threads: int, seconds: float) -> tuple[float, str]:
    r = in_ns(ns, "wrk", f"-t{threads}", f"-c{c}", f"-d{seconds}s", "-H", "Connection: close",
              f"http://127.0.0.1:{PORT}/", timeout=seconds + 60)
    m = re.search(r"Requests/sec:\s+([\d.]+)", r.stdout)
    if r.returncode != 0 or not m:
        die(f"wrk: {r.stdout.strip()} {r.stderr.strip()}")
    notes = [x.strip() for x in r.stdout.splitlines() if "Socket errors" in x or "Non-2xx" in x]
    return float(m.group(1)), "; ".join(notes)


def run_ab(ns: int, c: int, threads: int, seconds: float) -> tuple[float, str]:
    r = in_ns(ns, "ab", "-q", "-c", str(c), "-t", str(seconds), "-n", "100000000",
              f"http://127.0.0.1:{PORT}/", timeout=seconds + 60)
    m = re.search(r"Requests per second:\s+([\d.]+)", r.stdout)
    if not m:
        die(f"ab: {r.stdout.strip()[-300:]} {r.stderr.strip()[-300:]}")
    failed = re.search(r"Failed requests:\s+(\d+)", r.stdout)
    return float(m.group(1)), f"{failed.group(1)} failed" if failed and failed.group(1) != "0" else ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--concurrency", default="8,50,200")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    if os.geteuid() != 0:
        die("needs root (it makes a network namespace)")
    for tool in ("nginx", "wrk", "ab", "nsenter", "unshare"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            die(f"{tool} is not installed (ci/setup.sh installs nginx-light, wrk, apache2-utils)")
    bench = Path(os.environ.get("RP_BUILD_DIR", REPO / "build")) / "bin" / "bench_loadgen_http"
    if not bench.exists():
        die(f"no {bench}; build first (ninja -C build bench_loadgen_http) or set RP_BUILD_DIR")
    levels = [int(x) for x in a.concurrency.split(",")]
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    tools = {"ours": lambda ns, c: run_ours(bench, ns, c, a.threads, a.seconds),
             "wrk": lambda ns, c: run_wrk(ns, c, a.threads, a.seconds),
             "ab": lambda ns, c: run_ab(ns, c, a.threads, a.seconds)}
    got = {(t, c): [] for t in tools for c in levels}
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
            for rnd in range(a.rounds):
                for c in levels:
                    for name, fn in tools.items():
                        rate, note = fn(anchor.pid, c)
                        got[(name, c)].append(rate)
                        print(f"round {rnd + 1} c={c:<4} {name:5s} {rate:10.0f} req/s {note}", flush=True)
        finally:
            if server:
                server.terminate()
                server.wait()
            anchor.kill()
            anchor.wait()
    print("\nmedians (requests/s) and ratios")
    print(f"{'c':>5} {'ours':>10} {'wrk':>10} {'ab':>10} {'ours/wrk':>9} {'ours/ab':>8}")
    for c in levels:
        m = {t: statistics.median(got[(t, c)]) for t in tools}
        print(f"{c:>5} {m['ours']:>10.0f} {m['wrk']:>10.0f} {m['ab']:>10.0f} "
              f"{m['ours'] / m['wrk']:>9.2f} {m['ours'] / m['ab']:>8.2f}")


if __name__ == "__main__":
    main()
