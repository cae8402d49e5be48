"""The real servers' table (docs/deploy.md, docs/report.md) from results/servers/servers.json,
which results/servers/measure.py writes.

Lost per 100,000 attempts: the mean over deploys of each deploy's rate with a 95% Student-t
interval over the deploys (a deploy is the independent unit: losses cluster at the moment
a listener closes), as the loss report does. Where no deploy lost anything the t-interval
is [0, 0], which says nothing; the table gives instead the one-sided 95% upper bound 3/n
over all n attempts of the mode (zero events in n; it assumes independent attempts).
"""
from __future__ import annotations

import json
import statistics
import textwrap
from collections import Counter
from pathlib import Path

from results.figures_format import FiguresError
from results.report.report_stats import mean_ci

WIDTH = 92  # the docs' line length


def load(path: Path) -> dict:
    if not path.exists():
        raise FiguresError(f"no {path}; run /usr/bin/python3 -m results.servers.measure")
    return json.loads(path.read_text())


def rate(d: dict, of: str = "attempts") -> float:
    return 1e5 * d["lost"] / d[of] if d[of] else 0.0


def lost_per_100k(deploys: list[dict], of: str = "attempts") -> str:
    """`of`: what a deploy lost some of, attempts (TCP) or datagrams (UDP)."""
    total = sum(d[of] for d in deploys)
    if not any(d["lost"] for d in deploys):
        return f"0 (upper 95% {3e5 / total:.1f})" if total else "n/a"
    m, lo, hi = mean_ci([rate(d, of) for d in deploys])
    return f"{m:.1f} [{max(lo, 0.0):.1f}, {hi:.1f}]"


def causes(deploys: list[dict]) -> str:
    total: Counter = Counter()
    for d in deploys:
        total.update(d["causes"])
    parts = [f"{k} {v}" for k, v in total.most_common()]
    unattributed = sum(d["unattributed"] for d in deploys)
    if unattributed:
        parts.append(f"unattributed {unattributed}")
    return ", ".join(parts) or "none"


def observed(deploys: list[dict], key: str) -> list[int] | None:
    """The kernel count of every deploy, or None when some deploy could not observe it."""
    vals = [d[key] for d in deploys]
    return None if any(v is None for v in vals) else vals


def lossless(deploys: list[dict]) -> str:
    n = len(deploys)
    losing = sum(1 for d in deploys if d["lost"])
    if losing:
        return f"no: lost in {losing} of {n}"
    closes = observed(deploys, "listener_closes")
    if closes is None:
        return f"0 lost in {n}; listener closes not observable"
    if not any(closes):
        return f"yes: 0 lost in {n}, no listener closed"
    migrated = sum(observed(deploys, "migrated") or [])
    if migrated:
        return f"0 lost in {n}; listeners closed, the kernel migrated {migrated}"
    return f"0 lost in {n}, but listeners closed ({sum(closes)}): not shown lossless"


def span(vals: list[float], fmt: str = "{:.0f}") -> str:
    lo, hi = min(vals), max(vals)
    return fmt.format(lo) if lo == hi else f"{fmt.format(lo)}-{fmt.format(hi)}"


def per_load(deploys: list[dict]) -> str:
    """Lost per deploy per 1,000 attempts/s of the deploy's own load, mean over deploys: a
    loss that grows with the rate compares across machines of different speed this way."""
    vals = [d["lost"] / (d["load_per_s"] / 1000) for d in deploys if d["load_per_s"]]
    return f"{statistics.fmean(vals):.2f}" if vals else "n/a"


def reading(doc: dict) -> str:
    """Which modes lost, under which causes, and which lost nothing for which reason."""
    losing, by_design, by_luck = [], [], []
    total: Counter = Counter()
    unattributed = 0
    for m in doc["modes"]:
        ds = m["deploys"]
        name = f"{m['server']} {m['mode']}"
        k = sum(1 for d in ds if d["lost"])
        for d in ds:
            total.update(d["causes"])
            unattributed += d["unattributed"]
        if k:
            losing.append(f"{name} ({k} of {len(ds)})")
        elif ds and observed(ds, "listener_closes") is not None and not any(observed(ds, "listener_closes")):
            by_design.append(name)
        elif ds:
            by_luck.append(name)
    parts = []
    if losing:
        causes_text = ", ".join(f"{k} {v}" for k, v in total.most_common()) or "none"
        parts.append(f"Lost connections: {'; '.join(losing)}; all their losses under the kernel's causes "
                     f"{causes_text}, unattributed {unattributed}.")
    unexplained = []
    for m in doc["modes"]:
        for d in m["deploys"]:
            if d["unattributed"]:
                seen = (", ".join(f"{k} {v}" for k, v in d["outcomes"].items()) if "outcomes" in d
                        else "outcomes not kept in that run")
                unexplained.append(f"{m['server']} {m['mode']}: {d['unattributed']} of {d['lost']} lost ({seen})")
    if unexplained:
        parts.append("Unattributed, with the client outcomes of that deploy's losses: " + "; ".join(unexplained) + ".")
    if by_design:
        parts.append(f"No listener closed and nothing was lost: {'; '.join(by_design)}.")
    if by_luck:
        parts.append(f"Nothing lost although listeners closed (what their queues held when they closed was "
                     f"empty, or migrated): {'; '.join(by_luck)}.")
    return textwrap.fill(" ".join(parts), WIDTH)


def row(m: dict) -> str:
    ds = m["deploys"]
    if not ds:
        return f"| {m['server']} | {m['mode']} | `{m['deploy'].removeprefix('docs/examples/')}` | 0 ({len(m['errors'])} errors) | | | | | | | | | |"
    closes = observed(ds, "listener_closes")
    attempts = sum(d["attempts"] for d in ds)
    rates = [d["load_per_s"] for d in ds if d["load_per_s"] is not None]
    runs = f"{len(ds)}" + (f" (+{len(m['errors'])} errors)" if m["errors"] else "")
    return (f"| {m['server']} | {m['mode']} | `{m['deploy'].removeprefix('docs/examples/')}` | {runs} | "
            f"{attempts:,} | {lost_per_100k(ds)} | {span([d['lost'] for d in ds])} | {causes(ds)} | "
            f"{span(closes) if closes is not None else 'n/a'} | "
            f"{statistics.median(rates) / 1000:.1f}k | {span([d['queued_at_deploy'] for d in ds])} | {per_load(ds)} | "
            f"{lossless(ds)} |")


def servers_table(path: Path) -> str:
    doc = load(path)
    per_mode = sorted({len(m["deploys"]) for m in doc["modes"]})
    errors = sum(len(m["errors"]) for m in doc["modes"])
    runs = (f" (runs of {' + '.join(str(r['deploys_per_mode']) for r in doc['runs'])}: "
            + ", ".join(f"{r['started_at'][11:16]}-{r['finished_at'][11:16]}" for r in doc["runs"]) + " UTC)"
            if doc.get("runs") else "")
    head = (f"Measured {doc['finished_at'][:10]} with `/usr/bin/python3 -m results.servers.measure` "
            f"(`results/servers/servers.json`): kernel {doc['machine']['kernel']}, "
            f"{doc['machine']['cpus']} CPUs ({doc['machine']['cpu_model']}); "
            f"{', '.join(f'{k} {v}' for k, v in doc['servers'].items())}; each deploy `reuseport-check deploy --http / "
            f"--load {doc['load']} --warmup {doc['warmup_s']} --settle {doc['settle_s']}`, "
            f"{' or '.join(map(str, per_mode))} deploys per mode, the modes taking turns{runs}; "
            f"{errors} deploy(s) ended in an error. Lost per 100,000 attempts: mean over the deploys "
            f"[95% t-interval]; where none lost anything, the one-sided 95% upper bound over all "
            f"attempts. Load: median attempts per second over a deploy's run. Queued: the "
            f"accept queues of the port at the last 50 ms sample before the deploy command. Lost "
            f"per 1k/s: lost per deploy per 1,000 attempts/s of its load, mean over the deploys.")
    lines = [textwrap.fill(head, WIDTH), "",
             "| server | mode | deploy | deploys | attempts | lost per 100,000 | lost per deploy "
             "| kernel's cause (all deploys) | listener closes | load | queued | lost per 1k/s | lossless |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [row(m) for m in doc["modes"]]
    return "\n".join(lines) + "\n\n" + reading(doc) + "\n"


# --- UDP servers (results/servers/servers_udp.json, measure.py --udp) ---------------------


def udp_lossless(deploys: list[dict], sockets: str) -> str:
    n = len(deploys)
    losing = sum(1 for d in deploys if d["lost"])
    if losing:
        return f"no: lost in {losing} of {n}"
    if sockets == "kept":
        return f"yes: 0 lost in {n}, the sockets kept"
    return f"0 lost in {n}, but sockets closed (their queues were empty when they did): not shown lossless"


def udp_row(m: dict) -> str:
    ds = m["deploys"]
    deploy = m["deploy"].removeprefix("docs/examples/")
    if not ds:
        return f"| {m['server']} | {m['mode']} | `{deploy}` | 0 ({len(m['errors'])} errors) | | | | | | | |"
    purged = observed(ds, "queue_purged")
    rates = [d["load_per_s"] for d in ds if d["load_per_s"] is not None]
    runs = f"{len(ds)}" + (f" (+{len(m['errors'])} errors)" if m["errors"] else "")
    return (f"| {m['server']} | {m['mode']} | `{deploy}` | {runs} | {sum(d['datagrams'] for d in ds):,} | "
            f"{lost_per_100k(ds, 'datagrams')} | {span([d['lost'] for d in ds])} | {causes(ds)} | "
            f"{span(purged) if purged is not None else 'n/a'} | {sum(d['late'] for d in ds)} | "
            f"{statistics.median(rates) / 1000:.1f}k | {udp_lossless(ds, m['sockets'])} |")


def servers_udp_table(path: Path) -> str:
    doc = load(path)
    if doc.get("protocol") != "udp":
        raise FiguresError(f"{path}: not a UDP servers document (measure.py --udp writes one)")
    per_mode = sorted({len(m["deploys"]) for m in doc["modes"]})
    errors = sum(len(m["errors"]) for m in doc["modes"])
    head = (f"Measured {doc['finished_at'][:10]} with `/usr/bin/python3 -m results.servers.measure --udp` "
            f"(`results/servers/servers_udp.json`): kernel {doc['machine']['kernel']}, "
            f"{doc['machine']['cpus']} CPUs ({doc['machine']['cpu_model']}); "
            f"{', '.join(f'{k} {v}' for k, v in doc['servers'].items())}; each deploy `reuseport-check deploy --udp "
            f"--udp-request {doc['request']} --flows {doc['flows']} --load {doc['load']} --reply-timeout "
            f"{doc['reply_timeout_s']:g} --warmup {doc['warmup_s']} "
            f"--settle {doc['settle_s']}`, {' or '.join(map(str, per_mode))} deploys per mode, the modes taking "
            f"turns; {errors} deploy(s) ended in an error. Lost per 100,000 queries: mean over the deploys [95% "
            f"t-interval]; where none lost anything, the one-sided 95% upper bound over all queries. Purged: "
            f"queries freed with a closed socket's queue (the udp_drops probe). Late: answered after "
            f"{doc['reply_timeout_s']:g} s, not lost. Load: median queries per second over a deploy's run. Moved flows are not observable with DNS "
            f"answers (they do not name the socket).")
    lines = [textwrap.fill(head, WIDTH), "",
             "| server | mode | deploy | deploys | queries | lost per 100,000 | lost per deploy "
             "| kernel's cause (all deploys) | purged | late | load | lossless |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [udp_row(m) for m in doc["modes"]]
    return "\n".join(lines) + "\n"
