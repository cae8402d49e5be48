#!/usr/bin/env python3
"""Render the listen-queue loss report from the stored run records alone.

    python3 results/report/make_report.py [--data results/report/data] [--out results/report]

Input: one JSON document per kernel (data/<release>.json, written by
`reuseport-check report`): the machine, the measured ceiling, and one aggregated record per
run. Output: index.html, summary.md and PNG plots in --out. Nothing is measured here and
nothing is taken from anywhere but those files, so the report can be regenerated (and
checked, results/tests) from the data alone.

Statistics, stated in the report as well:
  * failed per 100,000 attempts, per grid point: the mean over repeats of each run's rate,
    with a 95% Student-t interval over the repeats (the runs are the independent units:
    losses cluster at deploys, so attempts are not independent draws);
  * beside it the pooled rate (all attempts of the point) with a 95% Wilson interval,
    which would hold for independent attempts and is therefore too narrow here;
  * runs whose ledger did not reconcile, that failed, or whose strategy the kernel lacks,
    are left out of every figure and counted apart.
"""
from __future__ import annotations

import argparse
import html
import json
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

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


def load_documents(data_dir: Path) -> list[dict]:
    docs = []
    for path in sorted(data_dir.glob("*.json")):
        doc = json.loads(path.read_text())
        if doc.get("schema") != "reuseport-check/report-runs/1":
            raise SystemExit(f"make_report: {path}: not a report-runs/1 document")
        doc["_file"] = path.name
        docs.append(doc)
    if not docs:
        raise SystemExit(f"make_report: no data/*.json in {data_dir}")
    return sorted(docs, key=version_key)


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
                       wilson_lo=1e5 * wl, wilson_hi=1e5 * wh, attribution=dict(att))
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
            if experiment == "seed":
                swaps = [d["failed"] for r in ok for d in r["deploys"]]
                s["per_swap"] = mean_ci([float(x) for x in swaps])
                s["swaps"] = len(swaps)
                s["client_resets"] = sum(r["outcomes"]["reset_after_connect"] + r["outcomes"]["reset_before_connect"]
                                         for r in ok)
                orphans = [kval(r, "kernel_orphan_resets") for r in ok]
                s["kernel_orphan_resets"] = None if None in orphans else sum(orphans)
                s["deploy_p99"] = mean_ci([r["latency_ms"]["during_deploys"].get("p99", 0.0) for r in ok])
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
            points[key][strategy][doc["kernel_release"]] = cell
    return {k: v for k, v in points.items() if len({rel for cells in v.values() for rel in cells}) >= 2}


def across_cell(cell: dict | None) -> str:
    if cell is None:
        return "not run"
    if cell.get("unavailable") is not None and "mean" not in cell:
        return "unavailable"
    if "mean" not in cell:
        return f"0/{cell['runs']} usable"
    return f"{fmt_ci(cell['mean'], cell['lo'], cell['hi'])} ({cell['failed']}/{cell['attempts']})"


# --- plots ---------------------------------------------------------------------------

def save(fig, out: Path, name: str) -> str:
    """Lays the figure out, writes it as out/name (PNG) and frees it; returns name."""
    fig.tight_layout()
    fig.savefig(out / name, dpi=90)
    plt.close(fig)
    return name


def plot_across(docs: list[dict], table: dict, out: Path) -> str | None:
    if not table:
        return None
    keys = sorted(table, key=lambda k: (k[0], k[1], k[2], k[3]))
    rels = [d["kernel_release"] for d in docs]
    fig, axes = plt.subplots(len(keys), 1, figsize=(12, 3.2 * len(keys)), squeeze=False)
    w = 0.8 / len(rels)
    for ax, key in zip(axes[:, 0], keys):
        names = [s for s in STRATEGY_TEXT if s in table[key]]
        for i, rel in enumerate(rels):
            ys, lo, hi, xs = [], [], [], []
            for j, s in enumerate(names):
                c = table[key][s].get(rel)
                if not c or "mean" not in c:
                    continue
                xs.append(j + (i - (len(rels) - 1) / 2) * w)
                ys.append(c["mean"])
                lo.append(c["mean"] - max(0.0, c["lo"]) if c["lo"] is not None else 0)
                hi.append(c["hi"] - c["mean"] if c["hi"] is not None else 0)
            ax.bar(xs, ys, width=w, yerr=[lo, hi], capsize=2, label=rel)
        ax.set_xticks(range(len(names)), names, fontsize=8)
        ax.set_yscale("symlog", linthresh=10)
        ax.set_ylabel("failed per 100,000")
        ax.set_title(comparable_label(key), fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].legend(fontsize=7, ncol=min(6, len(rels)))
    fig.suptitle("Across kernels: failed per 100,000 attempts, mean and 95% t-interval over repeats "
                 "(10 deploys per run)", fontsize=9)
    return save(fig, out, "loss_across_kernels.png")


def plot_loss(doc: dict, rows: list[dict], out: Path, mode: str) -> str | None:
    rows = [r for r in rows if r["params"]["mode"] == mode and "mean" in r]
    if not rows:
        return None
    panels = sorted({(r["params"]["backlog"], r["params"]["work_us"]) for r in rows})
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False, sharey=True)
    xkey = "concurrency" if mode == "closed" else "rate"
    for ax, (backlog, work) in zip(axes[0], panels):
        for s in STRATEGY_TEXT:
            pts = sorted((r["params"][xkey], r) for r in rows
                         if r["strategy"] == s and r["params"]["backlog"] == backlog and r["params"]["work_us"] == work)
            if not pts:
                continue
            xs = [x for x, _ in pts]
            ys = [r["mean"] for _, r in pts]
            err = [[r["mean"] - max(0.0, r["lo"]) if r["lo"] is not None else 0 for _, r in pts],
                   [r["hi"] - r["mean"] if r["hi"] is not None else 0 for _, r in pts]]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=s)
        ax.set_title(f"backlog {backlog}, work {work} us", fontsize=9)
        ax.set_xlabel("attempts in flight" if mode == "closed" else "attempts per second")
        if mode == "closed":
            ax.set_xscale("log", base=2)
        ax.set_yscale("symlog", linthresh=1)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("failed per 100,000 attempts")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.suptitle(f"{doc['kernel_release']}: {mode} loop, 10 deploys per run, mean and 95% t-interval over repeats",
                 fontsize=9)
    return save(fig, out, f"loss_{mode}_{doc['kernel_release']}.png")


def plot_attribution(doc: dict, rows: list[dict], out: Path) -> str | None:
    tot: dict[str, dict] = {}
    for r in rows:
        if "attribution" not in r:
            continue
        t = tot.setdefault(r["strategy"], defaultdict(int))
        for k, v in r["attribution"].items():
            t[k] += v or 0
    if not tot:
        return None
    names = [s for s in STRATEGY_TEXT if s in tot]
    fig, ax = plt.subplots(figsize=(8, 3.8))
    bottom = [0] * len(names)
    for part, label in (("orphaned", "orphaned in a closed listener's queue (kernel)"),
                        ("other_rst", "other RSTs clients received (kernel)"),
                        ("timeouts", "connect/response timeouts (overflows)"),
                        ("unexplained", "not attributed")):
        vals = [tot[s][part] for s in names]
        ax.bar(names, vals, bottom=bottom, label=label)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_ylabel("failed attempts, all grid runs")
    ax.set_title(f"{doc['kernel_release']}: what the kernel says about every loss", fontsize=9)
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.legend(fontsize=7)
    return save(fig, out, f"attribution_{doc['kernel_release']}.png")


def plot_latency(doc: dict, out: Path) -> str | None:
    by: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in doc["runs"]:
        if r["experiment"] != "grid" or not usable(r) or r["params"]["mode"] != "closed":
            continue
        for phase in ("steady", "during_deploys"):
            lat = r["latency_ms"][phase]
            if lat.get("n"):
                by[r["strategy"]][phase + "_p99"].append(lat["p99"])
                by[r["strategy"]][phase + "_max"].append(lat["max"])
    if not by:
        return None
    names = [s for s in STRATEGY_TEXT if s in by]
    fig, ax = plt.subplots(figsize=(8, 3.8))
    w = 0.2
    for i, (key, label) in enumerate((("steady_p99", "p99 steady"), ("during_deploys_p99", "p99 during deploys"),
                                      ("steady_max", "max steady"), ("during_deploys_max", "max during deploys"))):
        vals = [statistics.median(by[s][key]) if by[s][key] else 0 for s in names]
        ax.bar([j + (i - 1.5) * w for j in range(len(names))], vals, width=w, label=label)
    ax.set_xticks(range(len(names)), names, rotation=30, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("latency, ms (median over runs)")
    ax.set_title(f"{doc['kernel_release']}: connection latency, closed-loop grid runs", fontsize=9)
    ax.legend(fontsize=7)
    return save(fig, out, f"latency_{doc['kernel_release']}.png")


def plot_shapes(doc: dict, seed: dict, blocked: dict, nginx: dict, out: Path) -> str | None:
    if not (seed or blocked or nginx):
        return None
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))

    def bars(ax, stats, metrics, title, ylabel):
        names = [n for n in ("shared", "shared_epollexclusive", "reuseport", "a_close", "g_handover") if n in stats]
        w = 0.8 / max(1, len(metrics))
        for i, (m, label) in enumerate(metrics):
            ys, errs = [], [[], []]
            for n in names:
                mm, lo, hi = stats[n].get(m, (0.0, None, None))
                ys.append(mm)
                errs[0].append(mm - max(0.0, lo) if lo is not None else 0)
                errs[1].append(hi - mm if hi is not None else 0)
            ax.bar([j + (i - (len(metrics) - 1) / 2) * w for j in range(len(names))], ys, width=w, yerr=errs,
                   capsize=3, label=label)
        ax.set_xticks(range(len(names)), names, fontsize=8, rotation=15)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)

    bars(axes[0], seed, [("per_swap", "lost per swap (t-interval over swaps)")], "(i) swap under 20 in flight",
         "connections")
    bars(axes[1], blocked, [("max", "max"), ("p99", "p99"), ("stddev", "stddev")],
         "(ii) one of 4 workers stalls", "latency, ms")
    bars(axes[2], nginx, [("rps", "served/s")], "(iii) 4 workers, 64 in flight", "connections per second")
    fig.suptitle(f"{doc['kernel_release']}: the published shapes, mean and 95% t-interval over repeats", fontsize=9)
    return save(fig, out, f"shapes_{doc['kernel_release']}.png")


# --- text ----------------------------------------------------------------------------

def direction_texts(seed: dict, blocked: dict, nginx: dict) -> list[tuple[str, str]]:
    out = []
    a, g = seed.get("a_close"), seed.get("g_handover")
    if a and g and "per_swap" in a and "per_swap" in g:
        ok = a["per_swap"][0] > 0 and g["failed"] == 0
        orph = a.get("kernel_orphan_resets")
        out.append(("(i) start_server-style swap, 20 in flight",
                    f"{'reproduced' if ok else 'NOT reproduced'}: (a) lost {fmt_ci(*a['per_swap'])} connections per "
                    f"swap over {a['swaps']} swaps ({a['failed']} of {a['attempts']} attempts); (g) lost {g['failed']} "
                    f"of {g['attempts']} over {g['swaps']} swaps. Client resets in (a): {a['client_resets']}; RSTs of "
                    f"children orphaned in the closed listener's queue (kernel): "
                    f"{'not observable' if orph is None else orph}."))
    sh, ex, rp = blocked.get("shared"), blocked.get("shared_epollexclusive"), blocked.get("reuseport")
    if sh and rp and "max" in sh and "max" in rp:
        ok = rp["max"][0] > sh["max"][0] and rp["stddev"][0] > sh["stddev"][0]
        ex_text = (f"; EPOLLEXCLUSIVE max {ex['max'][0]:.2f} ms, stddev {ex['stddev'][0]:.2f} ms" if ex and "max" in ex
                   else "")
        out.append(("(ii) a blocked worker (Cloudflare 2017: max 72.65 ms shared vs 144.55 ms reuseport, "
                    "stddev 1.58 vs 25.27 ms)",
                    f"{'direction reproduced' if ok else 'direction NOT reproduced'}: shared max "
                    f"{sh['max'][0]:.2f} ms, p99 {sh['p99'][0]:.2f} ms, stddev {sh['stddev'][0]:.2f} ms; reuseport max "
                    f"{rp['max'][0]:.2f} ms, p99 {rp['p99'][0]:.2f} ms, stddev {rp['stddev'][0]:.2f} ms{ex_text} "
                    f"(means over {rp['used']} runs)."))
    sh, ex, rp = nginx.get("shared"), nginx.get("shared_epollexclusive"), nginx.get("reuseport")
    if sh and rp and "rps" in sh and "rps" in rp:
        ok = rp["rps"][0] > max(sh["rps"][0], ex["rps"][0] if ex and "rps" in ex else 0)
        spread = rp["stddev"][0] < min(sh["stddev"][0], ex["stddev"][0] if ex and "stddev" in ex else math.inf)
        parts = [f"{n} {s['rps'][0]:.0f}/s, latency mean {s['mean'][0]:.2f} ms, stddev {s['stddev'][0]:.2f} ms, "
                 f"p99 {s['p99'][0]:.2f} ms" for n, s in (("shared", sh), ("shared+EPOLLEXCLUSIVE", ex), ("reuseport", rp))
                 if s and "rps" in s]
        out.append(("(iii) nginx 1.9.1 shape (reuseport: more requests per second, less latency spread)",
                    f"requests per second: {'higher with reuseport' if ok else 'NOT higher with reuseport'}; latency "
                    f"spread: {'smaller with reuseport' if spread else 'NOT smaller with reuseport'}. " + "; ".join(parts) + "."))
    return out


GUEST_NOTES = [
    "Guest kernels run in a qemu guest with one vCPU, emulated (TCG) where KVM cannot run them: the load "
    "generator, the 4 workers of (ii) and (iii) and the kernel share that one CPU. (iii) then compares scheduling "
    "on one CPU, not accepting in parallel, and the rates are each guest's own ceiling (stated per kernel), a "
    "small fraction of the host's.",
    "The guest profile has 3 repeats per point (5 for the seed swap): a guest's intervals are wide, and a "
    "difference between two kernels whose intervals overlap is not a finding.",
]

MACHINE_NOTES = [
    "Client, servers and kernel share the machine's CPUs over loopback: the load generator competes with the "
    "servers it measures, so throughput is bounded by the machine, not by the accept path alone.",
    "One load-generator thread; the ceiling above is what it reached against one listener.",
    "Listeners are processes of this harness (poll() or epoll, accept4, a fixed 4-byte request and 8-byte reply), "
    "not nginx; 'shared' is the accept_mutex-off shape, and EPOLLEXCLUSIVE is the nearest to nginx's accept mutex "
    "(one worker woken per connection), not the mutex itself.",
    "A stall is a worker that stops accepting for 100 ms every 500 ms (ListenerGroup::stall), not a blocking "
    "disk read: it delays connections queued on its own listener, and nothing it had already accepted.",
    "Runs whose ledger did not reconcile are left out. With SIGKILL (b) this happens when the kill lands between a "
    "reply's send() and the server's count of it: the client was served, the dead server cannot say so.",
]


def render(docs: list[dict], out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    md: list[str] = ["# Listen-queue loss report", ""]
    body: list[str] = []
    summary = {"kernels": {}}
    md += ["How: `reuseport-check report` (docs/report.md); rendered by results/report/make_report.py from "
           "data/*.json alone.", "",
           "Failed per 100,000 attempts: mean over repeats of each run's rate, 95% Student-t interval over the "
           "repeats (losses cluster at deploys, so the run is the unit); pooled: all attempts of the point with a "
           "95% Wilson interval (assumes independent attempts, so too narrow here).", ""]
    table = across_kernels(docs)
    if table:
        rels = [d["kernel_release"] for d in docs]
        plot = plot_across(docs, table, out)
        md += ["## Across kernels", "",
               "Where each kernel was measured: " + "; ".join(
                   f"{d['kernel_release']} {where_measured(d)}, profile {d['profile']}, ceiling "
                   f"{d.get('ceiling', {}).get('served_per_second', 0):.0f} connections/s" for d in docs) + ".", "",
               "Failed per 100,000 attempts, mean [95% t over repeats] (failed/attempts of the usable runs). "
               "Kernels measured in different places (host, emulated guest) differ in speed as well as in "
               "code: compare guests with guests.", ""]
        body.append("<h2>Across kernels</h2><p>" + html.escape(md[-3]) + "</p><p>" + html.escape(md[-1]) + "</p>")
        for key in sorted(table):
            md += [f"### {comparable_label(key)}", "", "| strategy | " + " | ".join(rels) + " |",
                   "|---|" + "---|" * len(rels)]
            rows_html = ["<tr><th>strategy</th>" + "".join(f"<th>{html.escape(r)}</th>" for r in rels) + "</tr>"]
            for st in [s for s in STRATEGY_TEXT if s in table[key]]:
                cells = [across_cell(table[key][st].get(r)) for r in rels]
                md.append(f"| {st} | " + " | ".join(cells) + " |")
                rows_html.append(f"<tr><td>{st}</td>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
            md.append("")
            body.append(f"<h3>{html.escape(comparable_label(key))}</h3><table>" + "".join(rows_html) + "</table>")
        if plot:
            md += [f"Plot: [{plot}]({plot})", ""]
            body.append(f'<p><img src="{html.escape(plot)}" alt="{html.escape(plot)}"></p>')
        summary["across_kernels"] = {comparable_label(k): v for k, v in table.items()}
    for doc in docs:
        rel = doc["kernel_release"]
        rows = grid_points(doc)
        runs = doc["runs"]
        counts = {
            "runs": len(runs),
            "used": sum(1 for r in runs if usable(r)),
            "unreconciled": sum(1 for r in runs if r.get("status") == "ok" and not r.get("reconciled")),
            "errors": sum(1 for r in runs if r.get("status") == "error"),
            "unavailable": sum(1 for r in runs if r.get("status") == "unavailable"),
        }
        seed = shape_stats(doc, "seed")
        blocked = shape_stats(doc, "blocked_worker")
        nginx = shape_stats(doc, "nginx_shape")
        ceiling = doc.get("ceiling", {}).get("served_per_second")
        summary["kernels"][rel] = {"counts": counts, "rows": rows, "seed": seed, "blocked_worker": blocked,
                                   "nginx_shape": nginx}
        plots = [p for p in (plot_loss(doc, rows, out, "closed"), plot_loss(doc, rows, out, "open"),
                             plot_attribution(doc, rows, out), plot_latency(doc, out),
                             plot_shapes(doc, seed, blocked, nginx, out)) if p]
        head = (f"Kernel {rel} (upstream {doc.get('kernel_version', '?')}), {where_measured(doc)}, "
                f"{doc['machine']}, profile "
                f"{doc['profile']}, {doc['started_at']} to {doc.get('finished_at', '?')}. Ceiling "
                f"{ceiling:.0f} connections/s (closed loop, 64 in flight, one listener, 1 s)."
                if ceiling else f"Kernel {rel}, {doc['machine']}, profile {doc['profile']}.")
        excl = (f"Runs: {counts['runs']}; used {counts['used']}; left out: {counts['unreconciled']} whose ledger did "
                f"not reconcile, {counts['errors']} errors, {counts['unavailable']} with a strategy this kernel "
                f"cannot run.")
        loads = [r["loadavg_1min_before"] for r in runs if r.get("loadavg_1min_before", -1) >= 0]
        notes = list(doc.get("operator_notes", [])) + kernel_notes(doc)
        if loads:
            notes.append(f"1-minute load average before each run: {min(loads):.2f} to {max(loads):.2f} (median "
                         f"{statistics.median(loads):.2f}) on this machine; anything above its CPU count means the "
                         f"runs competed with other work.")
        md += [f"## {rel}", "", head, "", excl, ""] + [f"Note: {n}" for n in notes] + ([""] if notes else [])
        body.extend(f"<p><i>Note: {html.escape(n)}</i></p>" for n in notes)
        if doc.get("strategies_unavailable"):
            md += ["Unavailable here: " + "; ".join(f"{k}: {v}" for k, v in doc["strategies_unavailable"].items()), ""]
        md += ["### Published shapes", ""]
        for title, text in direction_texts(seed, blocked, nginx):
            md += [f"- **{title}**: {text}"]
        sd = shutdown_effect(doc)
        if sd:
            md += ["", f"- **What shutdown() does to the accept queue** (h_shutdown_drain, {sd['deploys']} deploys): "
                   f"sock_diag saw {sd['queued']} children queued on the old listeners just before shutdown() (they "
                   f"were still accepting); the kernel counted {sd['orphaned']} children orphaned and "
                   f"{sd['orphan_resets']} RSTs from them in those deploys: shutdown() of a listener resets its "
                   f"queue like close() does, so the drain after it has nothing left to save."]
            body.append(f"<p><b>What shutdown() does to the accept queue</b>: {sd['queued']} children queued before "
                        f"shutdown(), {sd['orphaned']} orphaned and {sd['orphan_resets']} reset by the kernel "
                        f"({sd['deploys']} deploys).</p>")
        md += ["", "### Failed per 100,000 attempts", "",
               "| strategy | load | backlog | work us | runs used/all | mean [95% t] | pooled [95% Wilson] | failed/attempts "
               "| orphaned | other RST | timeouts | not attributed | listen overflows |",
               "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            if "mean" not in r:
                md.append(f"| {r['strategy']} | {load_label(r['params'])} | {r['params']['backlog']} | "
                          f"{r['params']['work_us']} | 0/{r['runs']} | n/a | n/a | | | | | | |")
                continue
            a = r["attribution"]
            md.append(f"| {r['strategy']} | {load_label(r['params'])} | {r['params']['backlog']} | "
                      f"{r['params']['work_us']} | {r['used']}/{r['runs']} | {fmt_ci(r['mean'], r['lo'], r['hi'])} | "
                      f"{r['pooled']:.1f} [{r['wilson_lo']:.1f}, {r['wilson_hi']:.1f}] | {r['failed']}/{r['attempts']} | "
                      f"{a['orphaned']} | {a['other_rst']} | {a['timeouts']} | {a['unexplained']} | "
                      f"{a['listen_overflows']} |")
        md += ["", "Plots: " + ", ".join(f"[{p}]({p})" for p in plots), ""]
        body.append(f"<h2>{html.escape(rel)}</h2><p>{html.escape(head)}</p><p>{html.escape(excl)}</p>")
        body.append("<h3>Published shapes</h3><ul>" + "".join(
            f"<li><b>{html.escape(t)}</b>: {html.escape(x)}</li>" for t, x in direction_texts(seed, blocked, nginx)) + "</ul>")
        body.extend(f'<p><img src="{html.escape(p)}" alt="{html.escape(p)}"></p>' for p in plots)
        tbl = ["<table><tr><th>strategy</th><th>load</th><th>backlog</th><th>work us</th><th>runs</th>"
               "<th>failed per 100k, mean [95% t]</th><th>pooled [95% Wilson]</th><th>orphaned</th><th>other RST</th>"
               "<th>timeouts</th><th>not attributed</th><th>listen overflows</th></tr>"]
        for r in rows:
            a = r.get("attribution", {})
            tbl.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in (
                r["strategy"], load_label(r["params"]), r["params"]["backlog"], r["params"]["work_us"],
                f"{r['used']}/{r['runs']}", fmt_ci(r.get("mean"), r.get("lo"), r.get("hi")),
                f"{r['pooled']:.1f} [{r['wilson_lo']:.1f}, {r['wilson_hi']:.1f}]" if "mean" in r else "n/a",
                a.get("orphaned", ""), a.get("other_rst", ""), a.get("timeouts", ""), a.get("unexplained", ""),
                a.get("listen_overflows", ""))) + "</tr>")
        tbl.append("</table>")
        body.append("<h3>Failed per 100,000 attempts</h3>" + "".join(tbl))
    md += ["## Strategies", ""] + [f"- `{k}`: {v}" for k, v in STRATEGY_TEXT.items()]
    machine_notes = MACHINE_NOTES + (GUEST_NOTES if any((d.get("environment") or {}).get("where") == "guest"
                                                        for d in docs) else [])
    md += ["", "## Where this machine differs from the published set-ups", ""] + [f"- {n}" for n in machine_notes]
    (out / "summary.md").write_text("\n".join(md) + "\n")
    page = ["<!doctype html><html><head><meta charset='utf-8'><title>reuseport-check: listen-queue loss report</title>",
            "<style>body{font-family:sans-serif;max-width:1300px;margin:auto}table{border-collapse:collapse;"
            "font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:100%}</style></head><body>",
            "<h1>Listen-queue loss report</h1>",
            "<p>Rendered from data/*.json by make_report.py; see summary.md for the same numbers as text. Failed per "
            "100,000 attempts: mean over repeats with a 95% Student-t interval over the repeats; pooled: 95% Wilson "
            "interval, which assumes independent attempts and is too narrow for losses that cluster at deploys.</p>"]
    page += body
    page += ["<h2>Strategies</h2><ul>"] + [f"<li><code>{k}</code>: {html.escape(v)}</li>" for k, v in
                                         STRATEGY_TEXT.items()] + ["</ul>"]
    page += ["<h2>Where this machine differs</h2><ul>"] + [f"<li>{html.escape(n)}</li>" for n in machine_notes]
    page += ["</ul></body></html>"]
    (out / "index.html").write_text("\n".join(page) + "\n")
    return summary


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = Path(__file__).resolve().parent
    ap.add_argument("--data", type=Path, default=here / "data")
    ap.add_argument("--out", type=Path, default=here)
    ap.add_argument("--summary-json", type=Path, help="also write the computed statistics here")
    args = ap.parse_args(argv)
    summary = render(load_documents(args.data), args.out)
    if args.summary_json:
        args.summary_json.write_text(json.dumps(summary, indent=1, default=str))
    print(f"make_report: wrote {args.out / 'index.html'}, {args.out / 'summary.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
