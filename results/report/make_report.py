#!/usr/bin/env python3
"""Render the listen-queue loss report from the stored run records alone.

    python3 -m results.report.make_report [--data results/report/data] [--out results/report]

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
from pathlib import Path

# The statistics (report_stats.py) and the plots (report_plots.py); this file writes the text.
from results.report.report_plots import (plot_across, plot_attribution, plot_latency,
                                         plot_loss, plot_shapes)
from results.report.report_stats import (STRATEGY_TEXT, across_cell, across_kernels,
                                         comparable_key, comparable_label, fmt_ci, fmt_norm, grid_points,
                                         kernel_notes, normalised,
                                         load_documents, load_label, shape_stats, shutdown_effect,
                                         usable, where_measured)
from results.report.report_udp import (UDP_STRATEGY_TEXT, udp_across, udp_across_cell, udp_html, udp_md,
                                       udp_point_label, udp_rows)
from results.report.report_stats import wilson  # noqa: F401  (results/tests use it from here)
from results.report.report_compare import (FOCUS, FOCUS_LABEL, FOCUS_STRATEGIES, GOAL, findings,
                                           pairwise, precision_table)


# --- text ----------------------------------------------------------------------------

# Which measure a comparison uses (issue 18 item 6); the columns are report_stats.normalised's.
MEASURES = (
    "Which measure: every comparison in the tables (strategy with strategy, kernel with kernel at one grid point) "
    "uses failed per 100,000 attempts, which holds only where the load is alike; each figure carries its load "
    "(attempts/s), the children queued in the old generation's accept queues just before a deploy (sock_diag, mean "
    "per deploy), and two normalised measures for comparing machines, kernels of different speed and published "
    "figures: failed per child queued at close (the children the closing listeners held: orphaned plus migrated; "
    "the number in brackets) and failed per deploy per 1,000 attempts/s of load.")


def seed_norm(a: dict) -> str:
    """The seed swap's loss with its load, its queues and the normalised measures."""
    if "norm" not in a:
        return ""
    load, queued, per_q, per_1k = fmt_norm(a["norm"])
    return (f" (a) at load {load} attempts/s, {queued} children queued per swap; failed per child queued at close "
            f"{per_q}, per swap per 1,000 attempts/s {per_1k}.")


def magnitude_text(busy: dict) -> tuple[str, str] | None:
    """(i) at the published magnitude: 20 lost in one deploy of start_server under ab -c 20."""
    a, g = busy.get("a_close"), busy.get("g_handover")
    if not a or "per_swap" not in a:
        return None
    m = a["per_swap"][0]
    q = a.get("queued_before")
    queued = f"{q[0]:.1f} children queued on the old listener just before its close (sock_diag, mean)" if q else \
        "the queue before the close not observable"
    verdict = ("reproduced at its magnitude" if m >= 10 else
               "NOT reproduced at its magnitude" + (": the old listener's queue was not full when it closed" if q and q[0] < 10 else ""))
    hand = (f"; (g) lost {g['failed']} of {g['attempts']} over {g['swaps']} swaps" if g and "per_swap" in g else "")
    return ("(i) at the published magnitude (start_server under ab -c 20: 20 lost in one deploy, its prefork "
            "workers busy, the old queue full)",
            f"{verdict}: one listener per generation spending 5 ms per request, 20 in flight: (a) lost "
            f"{fmt_ci(*a['per_swap'])} connections per swap over {a['swaps']} swaps ({a['failed']} of "
            f"{a['attempts']} attempts), {queued}{hand}." + seed_norm(a))


def direction_texts(seed: dict, blocked: dict, nginx: dict, busy: dict | None = None) -> list[tuple[str, str]]:
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
                    f"{'not observable' if orph is None else orph}." + seed_norm(a)))
    mag = magnitude_text(busy or {})
    if mag:
        out.append(mag)
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


def guest_notes(docs: list[dict]) -> list[str]:
    """What a guest's figures mean, from the guests' own environment records."""
    envs = [d.get("environment") or {} for d in docs]
    vcpus = sorted({e.get("vcpus", 1) for e in envs if e.get("where") == "guest"})
    if not vcpus:
        return []
    cpus = " or ".join(str(v) for v in vcpus)
    return [
        f"Guest kernels run in a qemu guest with {cpus} vCPU(s), emulated (TCG) where KVM cannot run them: the load "
        "generator, the 4 workers of (ii) and (iii) and the kernel share those CPUs, and the rates are each guest's "
        "own ceiling (stated per kernel), a small fraction of the host's." + (
            " With one vCPU, (iii) compares scheduling on one CPU, not accepting in parallel." if 1 in vcpus else ""),
        "A guest's grid points have few repeats (the focus point more, see 'Precision and kernel comparisons'): "
        "a difference between two kernels is a finding only where the comparison table calls it significant.",
    ]


MACHINE_NOTES = [
    "Client, servers and kernel share the machine's CPUs over loopback: the load generator competes with the "
    "servers it measures, so throughput is bounded by the machine, not by the accept path alone.",
    "One load-generator thread; the ceiling above is what it reached against one listener.",
    "The load generator against the tools users know: bench/vs_tools.py runs it, wrk and ab against one nginx, "
    "interleaved, and bench/README.md keeps the measured ratios.",
    "Listeners are processes of this harness (poll() or epoll, accept4, a fixed 4-byte request and 8-byte reply), "
    "not nginx; 'shared' is the accept_mutex-off shape, and EPOLLEXCLUSIVE is the nearest to nginx's accept mutex "
    "(one worker woken per connection), not the mutex itself.",
    "A stall is a worker that stops accepting for 100 ms every 500 ms (ListenerGroup::stall), not a blocking "
    "disk read: it delays connections queued on its own listener, and nothing it had already accepted.",
    "Runs whose ledger did not reconcile are left out. With SIGKILL (b) this happens when the kill lands between a "
    "reply's send() and the server's count of it: the client was served, the dead server cannot say so.",
]


def focus_norms(docs: list[dict]) -> dict[tuple[str, str], dict]:
    """The load, queues and normalised measures of each kernel's focus-point runs, so the
    precision table's figures carry them as every other loss figure does."""
    out = {}
    for doc in docs:
        for st in FOCUS_STRATEGIES:
            runs = [r for r in doc["runs"] if r["experiment"] == "grid" and r.get("strategy") == st and usable(r)
                    and comparable_key(r) == FOCUS]
            if runs:
                out[(doc["kernel_release"], st)] = normalised(runs)
    return out


def precision_md(prec: list[dict], pairs: list[dict], norms: dict | None = None) -> list[str]:
    norms = norms or {}
    md = ["## Precision and kernel comparisons", "",
          f"At the focus point ({FOCUS_LABEL}), failed per 100,000 attempts per run, strategies a, b and h. "
          f"Goal: the 95% t interval's half-width at most {GOAL:.0%} of the mean; where it is not met, the repeats "
          "the measured spread says it would take (half-width shrinking as 1/sqrt(n)). A kernel that lost nothing "
          "in every run has no relative width.", "",
          "| kernel | strategy | runs | mean [95% t] | half-width / mean | goal met | repeats for the goal | load/s "
          "| queued at deploy | failed per queued child (queued) | failed per deploy per 1k/s |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in prec:
        ratio = "n/a (no loss)" if r["ratio"] is None and r["mean"] == 0 else (
            "n/a" if r["ratio"] is None else f"{100 * r['ratio']:.0f}%")
        md.append(f"| {r['kernel']} | {r['strategy']} | {r['n']} | {fmt_ci(r['mean'], r['lo'], r['hi'])} | {ratio} | "
                  f"{'yes' if r['met'] else 'no'} | {r['needed'] if r['needed'] is not None else 'n/a'} | "
                  + (" | ".join(fmt_norm(norms[(r["kernel"], r["strategy"])])) if (r["kernel"], r["strategy"]) in norms
                     else "n/a | n/a | n/a | n/a") + " |")
    md += ["", "Kernel against kernel at the focus point, guests with guests (the host runs at another speed): "
           "two-sided permutation test on the difference of the mean run rates, p-values Holm-adjusted over the "
           "table; significant when the adjusted p is below 0.05. The measure compared is failed per 100,000 "
           "attempts; the kernels' loads are in the precision table's load/s column, and where they differ a "
           "difference of the rate can be one of load as well as of kernel: failed per queued child, which the load "
           "does not scale, tells them apart.", ""]
    if pairs:
        md += ["| strategy | kernel A | kernel B | mean A | mean B | runs A/B | p | p (Holm) | significant |",
               "|---|---|---|---|---|---|---|---|---|"]
        md += [f"| {p['strategy']} | {p['a']} | {p['b']} | {p['mean_a']:.1f} | {p['mean_b']:.1f} | {p['n_a']}/{p['n_b']} | "
               f"{p['p']:.3f} | {p['p_holm']:.3f} | {'yes' if p['significant'] else 'no'} |" for p in pairs]
    else:
        md.append("No two kernels measured in the same kind of place have two or more runs at the focus point.")
    return md + [""]


def across_tables(table: dict, rels: list[str], label, strategies, cell, md: list[str], body: list[str]) -> None:
    """One table per comparable point (its label from `label`): a row per strategy (in the
    order of `strategies`), a column per kernel, each cell written by `cell`; appended to the
    Markdown lines and the HTML parts. The TCP and the UDP tables across kernels share it."""
    for key in sorted(table):
        md += [f"### {label(key)}", "", "| strategy | " + " | ".join(rels) + " |", "|---|" + "---|" * len(rels)]
        rows_html = ["<tr><th>strategy</th>" + "".join(f"<th>{html.escape(r)}</th>" for r in rels) + "</tr>"]
        for st in [s for s in strategies if s in table[key]]:
            cells = [cell(table[key][st].get(r)) for r in rels]
            md.append(f"| {st} | " + " | ".join(cells) + " |")
            rows_html.append(f"<tr><td>{st}</td>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
        md.append("")
        body.append(f"<h3>{html.escape(label(key))}</h3><table>" + "".join(rows_html) + "</table>")


def render(docs: list[dict], out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    md: list[str] = ["# Listen-queue loss report", ""]
    body: list[str] = []
    summary = {"kernels": {}}
    md += ["How: `reuseport-check report` (docs/report.md); rendered by results/report/make_report.py from "
           "data/*.json alone.", "",
           "Failed per 100,000 attempts: mean over repeats of each run's rate, 95% Student-t interval over the "
           "repeats (losses cluster at deploys, so the run is the unit); pooled: all attempts of the point with a "
           "95% Wilson interval (assumes independent attempts, so too narrow here).", "",
           MEASURES, ""]
    rows_by_kernel = {d["kernel_release"]: grid_points(d) for d in docs}
    prec, pairs = precision_table(docs), pairwise(docs)
    found = findings(docs, rows_by_kernel, pairs)
    md += ["## Findings", ""] + [f"- {f}" for f in found] + [""]
    body.append("<h2>Findings</h2><ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in found) + "</ul>")
    summary["findings"] = found
    norms = focus_norms(docs)
    md += precision_md(prec, pairs, norms)
    body.append("<h2>Precision and kernel comparisons</h2><pre>" + html.escape("\n".join(precision_md(prec, pairs, norms)))
                + "</pre>")
    summary["precision"], summary["pairwise"] = prec, pairs
    table = across_kernels(docs)
    if table:
        rels = [d["kernel_release"] for d in docs]
        plot = plot_across(docs, table, out)
        md += ["## Across kernels", "",
               "Where each kernel was measured: " + "; ".join(
                   f"{d['kernel_release']} {where_measured(d)}, profile {d['profile']}, ceiling "
                   f"{d.get('ceiling', {}).get('served_per_second', 0):.0f} connections/s" for d in docs) + ".", "",
               "Failed per 100,000 attempts, mean [95% t over repeats] (failed/attempts of the usable runs; the load, "
               "the children queued at a deploy and the two normalised measures, as the tables below). "
               "Kernels measured in different places (host, emulated guest) differ in speed as well as in "
               "code: compare guests with guests.", ""]
        body.append("<h2>Across kernels</h2><p>" + html.escape(md[-3]) + "</p><p>" + html.escape(md[-1]) + "</p>")
        across_tables(table, rels, comparable_label, STRATEGY_TEXT, across_cell, md, body)
        if plot:
            md += [f"Plot: [{plot}]({plot})", ""]
            body.append(f'<p><img src="{html.escape(plot)}" alt="{html.escape(plot)}"></p>')
        summary["across_kernels"] = {comparable_label(k): v for k, v in table.items()}
    utable = udp_across(docs)
    if utable:
        rels = [d["kernel_release"] for d in docs]
        md += ["## UDP strategies across kernels", "",
               "Lost datagrams per 100,000 sent and broken flows per 100 flows, mean [95% t over repeats], with the "
               "kernel's causes of the lost ones (per-kernel tables below).", ""]
        body.append("<h2>UDP strategies across kernels</h2><p>" + html.escape(md[-2]) + "</p>")
        across_tables(utable, rels, udp_point_label, UDP_STRATEGY_TEXT, udp_across_cell, md, body)
        summary["udp_across_kernels"] = {udp_point_label(k): v for k, v in utable.items()}
    for doc in docs:
        rel = doc["kernel_release"]
        rows = rows_by_kernel[rel]
        runs = doc["runs"]
        counts = {
            "runs": len(runs),
            "used": sum(1 for r in runs if usable(r)),
            "unreconciled": sum(1 for r in runs if r.get("status") == "ok" and not r.get("reconciled")),
            "errors": sum(1 for r in runs if r.get("status") == "error"),
            "unavailable": sum(1 for r in runs if r.get("status") == "unavailable"),
        }
        seed = shape_stats(doc, "seed")
        busy = shape_stats(doc, "seed_busy")
        blocked = shape_stats(doc, "blocked_worker")
        nginx = shape_stats(doc, "nginx_shape")
        ceiling = doc.get("ceiling", {}).get("served_per_second")
        summary["kernels"][rel] = {"counts": counts, "rows": rows, "seed": seed, "seed_busy": busy, "blocked_worker": blocked,
                                   "nginx_shape": nginx}
        plots = [p for p in (plot_loss(doc, rows, out, "closed"), plot_loss(doc, rows, out, "open"),
                             plot_attribution(doc, rows, out), plot_latency(doc, out),
                             plot_shapes(doc, seed, blocked, nginx, out)) if p]
        head = (f"Kernel {rel} (upstream {doc.get('kernel_version', '?')}), {where_measured(doc)}, "
                f"{doc['machine']}, profile "
                f"{doc['profile']}, {doc['started_at']} to {doc.get('finished_at', '?')}. Ceiling "
                f"{ceiling:.0f} connections/s (closed loop, 64 in flight, one listener, 1 s)."
                if ceiling else f"Kernel {rel}, {doc['machine']}, profile {doc['profile']}.")
        for part in doc.get("parts", []):
            head += (f" Its {', '.join(part['experiments'])} runs come from {part['file']} ({part['where']}, profile "
                     f"{part['profile']}, {part['started_at']} to {part.get('finished_at') or '?'}"
                     + ("" if part.get("complete") else ", not complete") + ").")
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
        for title, text in direction_texts(seed, blocked, nginx, busy):
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
               "| orphaned | other RST | timeouts | not attributed | listen overflows | load/s | queued at deploy "
               "| failed per queued child (queued) | failed per deploy per 1k/s |",
               "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            if "mean" not in r:
                md.append(f"| {r['strategy']} | {load_label(r['params'])} | {r['params']['backlog']} | "
                          f"{r['params']['work_us']} | 0/{r['runs']} | n/a | n/a | | | | | | | | | | |")
                continue
            a = r["attribution"]
            md.append(f"| {r['strategy']} | {load_label(r['params'])} | {r['params']['backlog']} | "
                      f"{r['params']['work_us']} | {r['used']}/{r['runs']} | {fmt_ci(r['mean'], r['lo'], r['hi'])} | "
                      f"{r['pooled']:.1f} [{r['wilson_lo']:.1f}, {r['wilson_hi']:.1f}] | {r['failed']}/{r['attempts']} | "
                      f"{a['orphaned']} | {a['other_rst']} | {a['timeouts']} | {a['unexplained']} | "
                      f"{a['listen_overflows']} | " + " | ".join(fmt_norm(r["norm"])) + " |")
        urows = udp_rows(doc)
        summary["kernels"][rel]["udp"] = urows
        md += [""] + udp_md(urows)
        md += ["", "Plots: " + ", ".join(f"[{p}]({p})" for p in plots), ""]
        body.append(f"<h2>{html.escape(rel)}</h2><p>{html.escape(head)}</p><p>{html.escape(excl)}</p>")
        body.append("<h3>Published shapes</h3><ul>" + "".join(
            f"<li><b>{html.escape(t)}</b>: {html.escape(x)}</li>" for t, x in direction_texts(seed, blocked, nginx, busy)) + "</ul>")
        body.extend(f'<p><img src="{html.escape(p)}" alt="{html.escape(p)}"></p>' for p in plots)
        tbl = ["<table><tr><th>strategy</th><th>load</th><th>backlog</th><th>work us</th><th>runs</th>"
               "<th>failed per 100k, mean [95% t]</th><th>pooled [95% Wilson]</th><th>orphaned</th><th>other RST</th>"
               "<th>timeouts</th><th>not attributed</th><th>listen overflows</th><th>load/s</th><th>queued at deploy</th>"
               "<th>failed per queued child (queued)</th><th>failed per deploy per 1k/s</th></tr>"]
        for r in rows:
            a = r.get("attribution", {})
            tbl.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in (
                r["strategy"], load_label(r["params"]), r["params"]["backlog"], r["params"]["work_us"],
                f"{r['used']}/{r['runs']}", fmt_ci(r.get("mean"), r.get("lo"), r.get("hi")),
                f"{r['pooled']:.1f} [{r['wilson_lo']:.1f}, {r['wilson_hi']:.1f}]" if "mean" in r else "n/a",
                a.get("orphaned", ""), a.get("other_rst", ""), a.get("timeouts", ""), a.get("unexplained", ""),
                a.get("listen_overflows", ""), *(fmt_norm(r["norm"]) if "norm" in r else [""] * 4))) + "</tr>")
        tbl.append("</table>")
        body.append("<h3>Failed per 100,000 attempts</h3>" + "".join(tbl))
        body.append(udp_html(urows))
    md += ["## Strategies", ""] + [f"- `{k}`: {v}" for k, v in {**STRATEGY_TEXT, **UDP_STRATEGY_TEXT}.items()]
    machine_notes = MACHINE_NOTES + guest_notes(docs)
    md += ["", "## Where this machine differs from the published set-ups", ""] + [f"- {n}" for n in machine_notes]
    (out / "summary.md").write_text("\n".join(md) + "\n")
    page = ["<!doctype html><html><head><meta charset='utf-8'><title>reuseport-check: listen-queue loss report</title>",
            "<style>body{font-family:sans-serif;max-width:1300px;margin:auto}table{border-collapse:collapse;"
            "font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:100%}</style></head><body>",
            "<h1>Listen-queue loss report</h1>",
            "<p>Rendered from data/*.json by make_report.py; see summary.md for the same numbers as text. Failed per "
            "100,000 attempts: mean over repeats with a 95% Student-t interval over the repeats; pooled: 95% Wilson "
            "interval, which assumes independent attempts and is too narrow for losses that cluster at deploys.</p>",
            f"<p>{html.escape(MEASURES)}</p>"]
    page += body
    page += ["<h2>Strategies</h2><ul>"] + [f"<li><code>{k}</code>: {html.escape(v)}</li>" for k, v in
                                         {**STRATEGY_TEXT, **UDP_STRATEGY_TEXT}.items()] + ["</ul>"]
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
