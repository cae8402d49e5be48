"""Measures the reload and upgrade modes of real servers (results/servers/modes.py) with
`reuseport-check deploy` on the running kernel and writes results/servers/servers.json.

    /usr/bin/python3 -m results.servers.measure [--deploys 10] [--modes ID,...] [--out PATH]
    /usr/bin/python3 -m results.servers.measure --combine RUN.json RUN.json ... [--out PATH]
    /usr/bin/python3 -m results.servers.measure --udp [--deploys 10] [--out PATH]

With --udp the UDP modes (modes.py UDP_MODES) are measured instead, each deploy a
`reuseport-check deploy --udp --udp-request dns:a.test --load rate:2000` run, into
results/servers/servers_udp.json: per deploy the datagrams sent, lost and late, the
kernel's causes of the lost ones, what the udp_drops probe saw purged with a closed
socket's queue, and the port's sockets when the deploy began.

Every deploy is one `reuseport-check deploy --http / --load closed:32` run (its own network
and PID namespace; the server and every process it started are killed at its end). The
modes take turns (round 1: every mode once, round 2: ...), so a change in the machine's
load hits them alike. What is kept of each deploy: attempts, lost, the kernel's causes
(the deploy's attribution), the listener closes and orphaned children the probe counted,
the load rate (attempts over the sampled span) and the accept queues of the port's
listeners at the last sample before the deploy command started and at their fullest
while it ran. A deploy that ends in exit 2 (the deploy's own error) is kept as an error with
its message, never as a number. Needs root, a build (RP_BUILD_DIR, default build/) and
the servers (ci/setup.sh installs nginx-light, haproxy and caddy).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results.servers.modes import MODES, UDP_MODES

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "results" / "servers" / "servers.json"
OUT_UDP = REPO / "results" / "servers" / "servers_udp.json"
LOAD = "closed:32"
# UDP: DNS queries over 16 flows at 2,000/s; an answer later than 0.2 s counts as late.
UDP_LOAD, UDP_FLOWS, UDP_REQUEST, UDP_REPLY_TIMEOUT_S = "rate:2000", 16, "dns:a.test", 0.2
WARMUP_S, SETTLE_S = 1, 2
SCHEMA = "reuseport-check/servers/1"


def die(msg: str) -> None:
    sys.exit(f"measure: {msg}")


def utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def versions() -> dict[str, str]:
    """Each server's version as it reports it (the first dotted number of its output)."""
    def version(argv: list[str]) -> str:
        r = subprocess.run(argv, capture_output=True, text=True)
        m = re.search(r"\d+\.\d+[\w.+~-]*", r.stdout + r.stderr)
        return m.group(0) if r.returncode == 0 and m else f"not runnable: {argv[0]}"
    return {"nginx": version(["/usr/sbin/nginx", "-v"]), "HAProxy": version(["/usr/sbin/haproxy", "-v"]),
            "Caddy": version(["/usr/bin/caddy", "version"])}


def udp_versions() -> dict[str, str]:
    r = subprocess.run(["/usr/sbin/unbound", "-V"], capture_output=True, text=True)
    m = re.search(r"Version (\d+\.\d+[\w.+~-]*)", r.stdout + r.stderr)
    return {"unbound": m.group(1) if m else "not runnable: /usr/sbin/unbound"}


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "unknown")
    return {"cpus": os.cpu_count(), "cpu_model": model, "kernel": platform.release()}


def queues(listeners: list[list], deploy_s: float) -> tuple[int, int]:
    """Accept queues summed over the port's listeners: at the last sample at or before the
    deploy command's start, and the largest sample from then to its end."""
    before = [q for t, _, q in listeners if t <= 0]
    during = [q for t, _, q in listeners if 0 <= t <= deploy_s]
    return (before[-1] if before else 0), max(during, default=0)


def summarise(doc: dict) -> dict:
    """The part of one deploy document the table needs; the rest is left in the run's JSON."""
    att = doc["attribution"]
    span = doc["listeners"][-1][0] - doc["listeners"][0][0] if len(doc["listeners"]) > 1 else 0.0
    at_start, peak = queues(doc["listeners"], doc["deploy"]["duration_s"])
    kt = doc["kernel_totals"]
    return {
        "attempts": doc["totals"]["attempts"],
        "lost": doc["totals"]["lost"],
        "causes": {k: v for k, v in att["causes"].items() if v},
        "unattributed": att["unattributed"],
        # The client's side of the losses: which outcome each lost attempt had, so that an
        # unattributed one can be read (a timeout, a reset, a close without an answer).
        # A served attempt with a status outside 2xx/3xx is lost too, under http_bad_status.
        "outcomes": {k: v for k, v in [*doc["totals"]["outcomes"].items(), ("http_bad_status",
                                                                          doc["totals"]["http_bad_status"])]
                     if v and k != "served"},
        "listener_closes": kt.get("kernel_listener_closes"),
        "orphaned_children": kt.get("kernel_orphaned_children"),
        "migrated": kt.get("netstat_migrate_req_success"),
        "deploy_s": round(doc["deploy"]["duration_s"], 3),
        "load_span_s": round(span, 3),
        "load_per_s": round(doc["totals"]["attempts"] / span, 1) if span > 0 else None,
        "queued_at_deploy": at_start,
        "queued_peak_during_deploy": peak,
        "verdict": doc["verdict"],
    }


def summarise_udp(doc: dict) -> dict:
    """One UDP deploy document, as the UDP table needs it."""
    att, dg = doc["attribution"], doc["datagrams"]
    members = doc["members"]  # [t, sockets, queued bytes], t relative to the deploy's start
    span = members[-1][0] - members[0][0] if len(members) > 1 else 0.0
    before = [m for m in members if m[0] <= 0]
    return {
        "datagrams": dg["sent"],
        "lost": dg["lost"],
        "late": dg["late"],
        "causes": {k: v for k, v in att["causes"].items() if v},
        "unattributed": att["unattributed"],
        "queue_purged": doc["kernel_totals"].get("udp_queue_purged"),
        "sockets_at_deploy": before[-1][1] if before else 0,
        "deploy_s": round(doc["deploy"]["duration_s"], 3),
        "load_span_s": round(span, 3),
        "load_per_s": round(dg["sent"] / span, 1) if span > 0 else None,
        "verdict": doc["verdict"],
    }


def deploy_once(check: Path, start: str, deploy: str, work: Path, udp: bool = False) -> tuple[dict | None, str]:
    out = work / "deploy.json"
    out.unlink(missing_ok=True)
    if udp:
        load = ["--udp", "--udp-request", UDP_REQUEST, "--port", "8053", "--flows", str(UDP_FLOWS),
                "--load", UDP_LOAD, "--reply-timeout", str(UDP_REPLY_TIMEOUT_S)]
    else:
        load = ["--port", "8080", "--http", "/", "--load", LOAD]
    argv = [str(check), "deploy", *load, "--warmup", str(WARMUP_S), "--settle", str(SETTLE_S), "--max-lost", "0",
            "--start", start, "--deploy", deploy, "--json", str(out)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if r.returncode not in (0, 1) or not out.exists():
        tail = (r.stdout + r.stderr).strip().splitlines()[-3:]
        return None, f"exit {r.returncode}: " + " | ".join(tail)
    doc = json.loads(out.read_text())
    return (summarise_udp(doc) if udp else summarise(doc)), ""


def absolute(command: str) -> str:
    word, *rest = command.split(" ", 1)  # the script, then its arguments
    return " ".join([str(REPO / word), *rest])


def combine(paths: list[Path]) -> dict:
    """One document from several runs of this script: their deploys per mode, one after the
    other. Only runs of the same modes (same commands), load, machine and server versions
    combine; anything else is a different measurement and is refused."""
    docs = [json.loads(p.read_text()) for p in paths]
    same = ("schema", "machine", "servers", "load", "warmup_s", "settle_s", "protocol", "flows", "request",
            "reply_timeout_s")
    for p, d in zip(paths[1:], docs[1:]):
        for key in same:
            if d.get(key) != docs[0].get(key):
                die(f"--combine: {p} differs from {paths[0]} in {key}")
        if [{k: v for k, v in m.items() if k not in ("deploys", "errors")} for m in d["modes"]] != \
                [{k: v for k, v in m.items() if k not in ("deploys", "errors")} for m in docs[0]["modes"]]:
            die(f"--combine: {p} measured other modes than {paths[0]}")
    out = {k: docs[0][k] for k in ("schema", "machine", "servers", "load", "warmup_s", "settle_s")}
    for key in ("protocol", "flows", "request", "reply_timeout_s"):
        if key in docs[0]:
            out[key] = docs[0][key]
    out["runs"] = [r for d in docs for r in d.get("runs") or [{"started_at": d["started_at"],
                                                                "finished_at": d["finished_at"],
                                                                "deploys_per_mode": d["deploys_per_mode"]}]]
    out["started_at"] = min(d["started_at"] for d in docs)
    out["finished_at"] = max(d["finished_at"] for d in docs)
    out["deploys_per_mode"] = sum(d["deploys_per_mode"] for d in docs)
    if any(d.get("complete") is False for d in docs):
        die("--combine: " + ", ".join(str(p) for p, d in zip(paths, docs) if d.get("complete") is False)
            + " did not finish (\"complete\": false)")
    out["modes"] = [{**m, "deploys": [x for d in docs for x in d["modes"][i]["deploys"]],
                     "errors": [x for d in docs for x in d["modes"][i]["errors"]]}
                    for i, m in enumerate(docs[0]["modes"])]
    return out


def write(doc: dict, out: Path, quiet: bool = False) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(doc, indent=1) + "\n")
    tmp_out.replace(out)
    if not quiet:
        print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m results.servers.measure", description=__doc__.split("\n\n")[0])
    ap.add_argument("--deploys", type=int, default=10, help="deploys per mode (default 10)")
    ap.add_argument("--modes", default="", help="comma-separated mode ids (default: all)")
    ap.add_argument("--out", type=Path, default=None, help="default results/servers/servers.json, "
                    "with --udp servers_udp.json")
    ap.add_argument("--udp", action="store_true", help="the UDP modes (unbound) instead")
    ap.add_argument("--combine", type=Path, nargs="+", metavar="JSON",
                    help="measure nothing: write the deploys of these runs of this script as one document")
    a = ap.parse_args(argv)
    if a.out is None:
        a.out = OUT_UDP if a.udp else OUT
    if a.combine:
        missing = [str(p) for p in a.combine if not p.is_file()]
        if missing:
            die(f"--combine: no such file: {', '.join(missing)}")
        write(combine(a.combine), a.out)
        return 0
    table = UDP_MODES if a.udp else MODES
    known = [m[0] for m in table]
    chosen = [x for x in a.modes.split(",") if x] or known
    unknown = [x for x in chosen if x not in known]
    if unknown:
        die(f"--modes: unknown {', '.join(unknown)}; known: {', '.join(known)}")
    if a.deploys < 2:
        die(f"--deploys {a.deploys}: an interval needs at least 2 deploys per mode")
    if os.geteuid() != 0:
        die("needs root (deploy makes network and PID namespaces)")
    check = Path(os.environ.get("RP_BUILD_DIR", REPO / "build")) / "bin" / "reuseport-check"
    if not check.exists():
        die(f"no {check}; build first (ninja -C build reuseport-check) or set RP_BUILD_DIR")
    tools = ("/usr/sbin/unbound",) if a.udp else ("/usr/sbin/nginx", "/usr/sbin/haproxy", "/usr/bin/caddy",
                                                    "/usr/bin/pgrep")
    for tool in tools:
        if not Path(tool).exists():
            die(f"{tool} is not installed (ci/setup.sh installs the servers)")
    modes = [m for m in table if m[0] in chosen]
    doc = {"schema": SCHEMA, "started_at": utc(), "finished_at": None, "machine": machine(),
           "servers": udp_versions() if a.udp else versions(), "load": UDP_LOAD if a.udp else LOAD,
           "warmup_s": WARMUP_S, "settle_s": SETTLE_S,
           "deploys_per_mode": a.deploys,
           "modes": [{"id": i, "server": s, "mode": m, "sockets": k, "start": st, "deploy": d,
                      "deploys": [], "errors": []} for i, s, m, k, st, d in modes]}
    if a.udp:
        doc.update(protocol="udp", flows=UDP_FLOWS, request=UDP_REQUEST, reply_timeout_s=UDP_REPLY_TIMEOUT_S)

    # Written before the first deploy (an --out that cannot be written fails now, not after
    # an hour) and after every round, "complete": false until the last: a killed run keeps
    # its whole rounds.
    def save(rounds: int, complete: bool) -> None:
        doc.update(deploys_per_mode=rounds, finished_at=utc(), complete=complete)
        try:
            write(doc, a.out, quiet=not complete)
        except OSError as e:
            die(f"--out {a.out}: {e.strerror or e}")
    save(0, False)
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(a.deploys):
            for entry in doc["modes"]:
                rec, err = deploy_once(check, absolute(entry["start"]), absolute(entry["deploy"]), Path(tmp), a.udp)
                if rec is None:
                    entry["errors"].append(err)
                    print(f"round {rnd + 1} {entry['id']:20s} ERROR {err}", flush=True)
                    continue
                entry["deploys"].append(rec)
                if a.udp:
                    print(f"round {rnd + 1} {entry['id']:20s} {rec['datagrams']:6d} datagrams {rec['lost']:4d} lost "
                          f"{rec['causes'] or ''} purged {rec['queue_purged']} sockets {rec['sockets_at_deploy']}",
                          flush=True)
                else:
                    print(f"round {rnd + 1} {entry['id']:20s} {rec['attempts']:6d} attempts {rec['lost']:4d} lost "
                          f"{rec['causes'] or ''} closes {rec['listener_closes']} queued {rec['queued_at_deploy']}",
                          flush=True)
            save(rnd + 1, rnd + 1 == a.deploys)
    return 0


if __name__ == "__main__":
    sys.exit(main())
