"""The statistics of the listen-queue loss report (make_report.py): what the stored run
records of one kernel, or of several, add up to. Nothing here draws or writes anything.

The statistics are those make_report.py's docstring states: per grid point, the mean over
repeats of each run's failed-per-100,000 with a 95% Student-t interval, beside the pooled
rate with a 95% Wilson interval; runs that are not usable are left out and counted apart.
"""
from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from pathlib import Path

STRATEGY_TEXT = {
    "a_close": "overlap, close() the old listeners",
    "b_kill": "overlap, SIGKILL the old processes",
    "c_graceful": "overlap, SIGTERM: accept what is queued, close",
    "d_migrate_sysctl": "tcp_migrate_req=1, then (a)",
    "e_migrate_bpf": "sk_reuseport/migrate program to the new generation, then (a)",
    "f_steer_drain": "sk_reuseport steers new connections to the new generation; old drains, closes",
    "g_handover": "the new generation inherits the sockets (pidfd_getfd); no group change",
    "h_shutdown_drain": "shutdown() the old listeners, accept what remains, close",
}
SHARING_TEXT = {
    "shared": "one socket, 4 workers poll() it",
    "shared_epollexclusive": "one socket, 4 workers, EPOLLEXCLUSIVE",
    "reuseport": "4 SO_REUSEPORT listeners, one per worker",
}
# Two-sided 97.5% quantiles of Student's t by degrees of freedom.
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
        10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110,
        18: 2.101, 19: 2.093, 20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}


def t975(df: int) -> float:
    if df in T975:
        return T975[df]
    keys = sorted(k for k in T975 if k <= df)
    return T975[keys[-1]] if keys else 1.96


def mean_ci(values: list[float]) -> tuple[float, float | None, float | None]:
    """Mean and its 95% Student-t interval; no interval from fewer than two values."""
    m = statistics.fmean(values)
    if len(values) < 2:
        return m, None, None
    h = t975(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return m, m - h, m + h


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def per100k(run: dict) -> float:
    return 1e5 * run["failed"] / run["attempts"] if run["attempts"] else 0.0


def usable(run: dict) -> bool:
    return run.get("status") == "ok" and run.get("reconciled", False)


def load_label(p: dict) -> str:
    if p["mode"] == "closed":
        return f"closed {p['concurrency']}"
    return f"open {p['rate']:.0f}/s"


def point_key(run: dict) -> tuple:
    p = run["params"]
    return (p["mode"], p["concurrency"] or 0, p["rate"] or 0, p["backlog"], p["work_us"])


def kval(run: dict, key: str):
    return run.get("kernel_counts", {}).get(key)


def attribution(run: dict) -> dict:
    """The client's failures, split by what the kernel counted.

    orphaned: RSTs sent by children orphaned in a closed listener's accept queue (each one
    a client reset); other_rst: the remaining RSTs clients received (a handshake meeting
    the closing listener, a killed process's connections); timeouts: connect and response
    timeouts (listen overflows dropped their SYN or ACK); the rest is unexplained. A kernel
    count that was not observable leaves its share unexplained.
    """
    named = run.get("attribution")
    if named is not None:
        # Runs measured since issue 14 carry every failure's named cause (probes/attribution.h):
        # the columns are those causes, and "unexplained" is what none of them names.
        c = named["causes"]
        return {
            "orphaned": c["orphaned_in_accept_queue"],
            # the server's own closes before answering (EOF, no RST) go with the other RSTs: the
            # server ended them, not the listen queue
            "other_rst": c["request_of_closed_listener"] + c["closed_by_owner"] + c["no_listener"]
            + c["refused_by_steering"] + c.get("closed_before_answering", 0),
            "timeouts": c["syn_retries_exhausted"] + c["ack_dropped_on_full_queue"],
            "unexplained": named["unattributed"] + (run["failed"] - named["client_visible"]),
            **{f"cause_{k}": v for k, v in c.items()},
            "listen_overflows": kval(run, "netstat_listen_overflows"),
            "orphaned_children": kval(run, "kernel_orphaned_children"),
            "migrated": kval(run, "netstat_migrate_req_success"),
        }
    failed = run["failed"]
    o = run["outcomes"]
    orphan = kval(run, "kernel_orphan_resets")
    received = kval(run, "kernel_resets_received")
    orphaned = min(failed, orphan) if orphan is not None else 0
    other = 0
    if received is not None:
        other = min(failed - orphaned, max(0, received - (orphan or 0)))
    timeouts = min(failed - orphaned - other, o["connect_timeout"] + o["response_timeout"])
    return {
        "orphaned": orphaned,
        "other_rst": other,
        "timeouts": timeouts,
        "unexplained": failed - orphaned - other - timeouts,
        "listen_overflows": kval(run, "netstat_listen_overflows"),
        "orphaned_children": kval(run, "kernel_orphaned_children"),
        "migrated": kval(run, "netstat_migrate_req_success"),
    }


def normalised(ok: list[dict]) -> dict:
    """What a loss figure needs to travel between machines, over the usable runs of a point.

    load_per_s: attempts per second of load (mean over runs); queued_before: children in
    the old generation's accept queues just before it was retired (sock_diag, mean per
    deploy); queued_at_close: the children the closing listeners held as they closed, i.e.
    those the kernel orphaned plus those it migrated (sum over runs); per_queued: failed per
    such child (pooled); per_1k: failed per deploy per 1,000 attempts/s of load (mean over
    runs). A count the kernel could not observe makes its measure None, never 0.
    """
    out: dict = {"load_per_s": None, "queued_before": None, "queued_at_close": None, "per_queued": None,
                 "per_1k": None}
    rates = [r["attempts"] / r["load_seconds"] for r in ok if r.get("load_seconds")]
    if rates:
        out["load_per_s"] = statistics.fmean(rates)
    deploys = [d for r in ok for d in r.get("deploys") or []]
    queued = [d["queued_before"] for d in deploys if d.get("queued_before") is not None]
    if queued:
        out["queued_before"] = statistics.fmean(queued)
    at_close = []
    for d in deploys:
        k = d.get("kernel") or {}
        orphaned, migrated = k.get("kernel_orphaned_children"), k.get("netstat_migrate_req_success")
        at_close.append(None if orphaned is None else orphaned + (migrated or 0))
    if deploys and None not in at_close:
        out["queued_at_close"] = sum(at_close)
        failed = sum(r["failed"] for r in ok)
        out["per_queued"] = failed / out["queued_at_close"] if out["queued_at_close"] else None
    per_1k = [r["failed"] / len(r["deploys"]) / (r["attempts"] / r["load_seconds"] / 1000)
              for r in ok if r.get("deploys") and r.get("load_seconds") and r["attempts"]]
    if per_1k:
        out["per_1k"] = statistics.fmean(per_1k)
    return out


def fmt_norm(n: dict) -> list[str]:
    """The normalised measures as the report's columns: load, queued at deploy, failed per
    queued child at close (with that count), failed per deploy per 1,000/s."""
    def f(v, spec):
        return "n/a" if v is None else format(v, spec)
    per_q = "n/a" if n["queued_at_close"] is None else (
        f"{f(n['per_queued'], '.2f')} ({n['queued_at_close']})" if n["queued_at_close"] else "0 queued")
    return [f(n["load_per_s"], ",.0f"), f(n["queued_before"], ".1f"), per_q, f(n["per_1k"], ".3f")]


def load_documents(data_dir: Path) -> list[dict]:
    """One document per kernel. A part (`report --experiments`, data/<release>.<kinds>.json)
    is laid over the whole document of its kernel: its runs replace that document's runs of
    the same experiments, and the document lists the part under "parts". A part with no
    whole document stands alone."""
    wholes, parts = [], []
    for path in sorted(data_dir.glob("*.json")):
        doc = json.loads(path.read_text())
        if doc.get("schema") != "reuseport-check/report-runs/1":
            raise SystemExit(f"make_report: {path}: not a report-runs/1 document")
        doc["_file"] = path.name
        (parts if doc.get("experiments") else wholes).append(doc)
    if not wholes and not parts:
        raise SystemExit(f"make_report: no data/*.json in {data_dir}")
    by_release = {d["kernel_release"]: d for d in wholes}
    for part in sorted(parts, key=lambda d: d.get("started_at", "")):
        base = by_release.get(part["kernel_release"])
        if base is None:
            by_release[part["kernel_release"]] = part
            wholes.append(part)
            continue
        kinds = set(part["experiments"])
        base["runs"] = [r for r in base["runs"] if r.get("experiment") not in kinds] + part["runs"]
        base.setdefault("parts", []).append({
            "file": part["_file"], "experiments": part["experiments"], "profile": part.get("profile"),
            "started_at": part.get("started_at"), "finished_at": part.get("finished_at"),
            "complete": part.get("complete"), "where": where_measured(part)})
    return sorted(wholes, key=version_key)


def version_key(doc: dict) -> tuple:
    """Oldest kernel first: by the upstream version, then the release string."""
    nums = []
    for part in str(doc.get("kernel_version") or doc["kernel_release"]).split("-")[0].split("."):
        nums.append(int(part) if part.isdigit() else 0)
    return tuple(nums), doc["kernel_release"]


def where_measured(doc: dict) -> str:
    env = doc.get("environment") or {}
    if env.get("where") == "guest":
        pkg = f", Debian {env['package']}={env['version']}" if env.get("package") else ""
        return (f"in a {env.get('vcpus', 1)}-vCPU qemu guest ({env.get('accel') or '?'}, "
                f"{env.get('memory_mb', '?')} MB{pkg})")
    return "on the host"


def grid_points(doc: dict) -> list[dict]:
    """One row per strategy x grid point, with the statistics the report shows."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in doc["runs"]:
        if r["experiment"] == "grid":
            groups[(r["strategy"],) + point_key(r)].append(r)
    rows = []
    for key, runs in sorted(groups.items()):
        ok = [r for r in runs if usable(r)]
        row = {
            "kernel": doc["kernel_release"], "strategy": key[0], "params": runs[0]["params"],
            "runs": len(runs), "used": len(ok),
            "unreconciled": sum(1 for r in runs if r.get("status") == "ok" and not r.get("reconciled")),
            "errors": sum(1 for r in runs if r.get("status") == "error"),
            "unavailable": sum(1 for r in runs if r.get("status") == "unavailable"),
        }
        if ok:
            m, lo, hi = mean_ci([per100k(r) for r in ok])
            k = sum(r["failed"] for r in ok)
            n = sum(r["attempts"] for r in ok)
            wl, wh = wilson(k, n)
            att = defaultdict(int)
            for r in ok:
                for a, v in attribution(r).items():
                    att[a] += v or 0
            row.update(mean=m, lo=lo, hi=hi, failed=k, attempts=n, pooled=1e5 * k / n if n else 0.0,
                       wilson_lo=1e5 * wl, wilson_hi=1e5 * wh, attribution=dict(att), norm=normalised(ok))
        rows.append(row)
    return rows


def fmt_ci(m, lo, hi) -> str:
    if m is None:
        return "n/a"
    if lo is None:
        return f"{m:.1f} (one run)"
    return f"{m:.1f} [{max(0.0, lo):.1f}, {hi:.1f}]"


def shape_stats(doc: dict, experiment: str) -> dict[str, dict]:
    out = {}
    by: dict[str, list[dict]] = defaultdict(list)
    for r in doc["runs"]:
        if r["experiment"] == experiment:
            by[r["sharing"] or r["strategy"]].append(r)
    for name, runs in by.items():
        ok = [r for r in runs if usable(r)]
        s = {"runs": len(runs), "used": len(ok), "params": runs[0]["params"]}
        if ok:
            for metric in ("max", "p99", "stddev", "mean", "p50"):
                s[metric] = mean_ci([r["latency_ms"]["all"][metric] for r in ok])
            s["rps"] = mean_ci([r["served_per_second"] for r in ok])
            s["failed"] = sum(r["failed"] for r in ok)
            s["attempts"] = sum(r["attempts"] for r in ok)
            if experiment in ("seed", "seed_busy"):
                swaps = [d["failed"] for r in ok for d in r["deploys"]]
                s["per_swap"] = mean_ci([float(x) for x in swaps])
                s["swaps"] = len(swaps)
                s["client_resets"] = sum(r["outcomes"]["reset_after_connect"] + r["outcomes"]["reset_before_connect"]
                                         for r in ok)
                orphans = [kval(r, "kernel_orphan_resets") for r in ok]
                s["kernel_orphan_resets"] = None if None in orphans else sum(orphans)
                queued = [d["queued_before"] for r in ok for d in r["deploys"] if d.get("queued_before") is not None]
                s["queued_before"] = mean_ci([float(q) for q in queued]) if queued else None
                s["deploy_p99"] = mean_ci([r["latency_ms"]["during_deploys"].get("p99", 0.0) for r in ok])
                s["norm"] = normalised(ok)
        out[name] = s
    return out


def shutdown_effect(doc: dict) -> dict | None:
    """Over the usable h_shutdown_drain runs whose kernel counts were observable."""
    tot = {"deploys": 0, "queued": 0, "orphaned": 0, "orphan_resets": 0}
    for r in doc["runs"]:
        if r.get("strategy") != "h_shutdown_drain" or not usable(r):
            continue
        for d in r["deploys"]:
            k = d["kernel"]
            if d["queued_before"] is None or k["kernel_orphaned_children"] is None or k["kernel_orphan_resets"] is None:
                continue
            tot["deploys"] += 1
            tot["queued"] += d["queued_before"]
            tot["orphaned"] += k["kernel_orphaned_children"]
            tot["orphan_resets"] += k["kernel_orphan_resets"]
    return tot if tot["deploys"] else None


def kernel_notes(doc: dict) -> list[str]:
    """What the data itself says about this kernel that a reader needs to read the tables."""
    notes = []
    d = [r for r in doc["runs"] if r.get("strategy") == "d_migrate_sysctl" and usable(r)]
    if d and all(kval(r, "netstat_migrate_req_success") is None for r in d):
        lost = sum(r["failed"] for r in d)
        notes.append(f"d_migrate_sysctl ran with net.ipv4.tcp_migrate_req=1 (the sysctl exists here), but this kernel "
                     f"has no TcpExt TCPMigrateReq counters, i.e. no request migration: its {len(d)} runs lost {lost} "
                     f"connections (compare a_close).")
    return notes


def comparable_key(run: dict) -> tuple:
    """A grid point across kernels: open-loop rates are fractions of each kernel's own ceiling."""
    p = run["params"]
    load = ("closed", p["concurrency"]) if p["mode"] == "closed" else ("open", p["rate_fraction_of_ceiling"])
    return load + (p["backlog"], p["work_us"])


def comparable_label(key: tuple) -> str:
    mode, x, backlog, work = key
    load = f"closed {x}" if mode == "closed" else f"open {100 * x:.0f}% of ceiling"
    return f"{load}, backlog {backlog}, work {work} us"


def across_kernels(docs: list[dict]) -> dict:
    """Per grid point that two or more kernels ran: strategy -> kernel -> cell."""
    if len(docs) < 2:
        return {}
    points: dict[tuple, dict[str, dict[str, dict]]] = defaultdict(lambda: defaultdict(dict))
    for doc in docs:
        groups: dict[tuple, list[dict]] = defaultdict(list)
        for r in doc["runs"]:
            if r["experiment"] == "grid":
                groups[(comparable_key(r), r["strategy"])].append(r)
        for (key, strategy), runs in groups.items():
            ok = [r for r in runs if usable(r)]
            cell = {"runs": len(runs), "used": len(ok),
                    "unavailable": next((r.get("error", "") for r in runs if r.get("status") == "unavailable"), None)}
            if ok:
                cell["mean"], cell["lo"], cell["hi"] = mean_ci([per100k(r) for r in ok])
                cell["failed"] = sum(r["failed"] for r in ok)
                cell["attempts"] = sum(r["attempts"] for r in ok)
                cell["norm"] = normalised(ok)
            points[key][strategy][doc["kernel_release"]] = cell
    return {k: v for k, v in points.items() if len({rel for cells in v.values() for rel in cells}) >= 2}


def across_cell(cell: dict | None) -> str:
    if cell is None:
        return "not run"
    if cell.get("unavailable") is not None and "mean" not in cell:
        return "unavailable"
    if "mean" not in cell:
        return f"0/{cell['runs']} usable"
    load, queued, per_q, per_1k = fmt_norm(cell["norm"])
    return (f"{fmt_ci(cell['mean'], cell['lo'], cell['hi'])} ({cell['failed']}/{cell['attempts']}; load {load}/s, "
            f"queued {queued}, per queued child {per_q}, per 1k/s {per_1k})")

