"""The PNG plots of the listen-queue loss report (make_report.py), drawn from the
statistics of report_stats.py."""
from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from results.report.report_stats import STRATEGY_TEXT, comparable_label, usable  # noqa: E402


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

