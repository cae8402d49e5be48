"""The figures of README.md and docs/*.md, made from the committed results.

    /usr/bin/python3 -m results.figures           # rewrite the marked blocks
    /usr/bin/python3 -m results.figures --check   # exit 1 if a block differs (a test runs this)

A figure in the prose is a block between `<!-- figures:NAME -->` and `<!-- /figures:NAME -->`;
BLOCKS[NAME] makes its text from the newest committed host results
(results/<release>/results.json whose `matrix.kernel` is "running"), from
results/<release>/repeat20.json, from the report's data or from results/servers/servers.json.
A number typed into a document by hand goes stale the next time the matrix runs; a block is
remade from the same files the reader can open.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import sys
import textwrap
from functools import cache
from pathlib import Path
from typing import Callable

# `run`'s table and the numbers of a paragraph (figures.compact etc. are used from here too),
# and the paragraphs of docs/semantics.md.
from .figures_format import (FiguresError, compact, count, span, summary, table,  # noqa: F401
                             total, verdicts)
from .figures_semantics import SEMANTICS
from .figures_servers import servers_table, servers_udp_table

RESULTS = Path(__file__).resolve().parent
REPO = RESULTS.parent
DOCUMENTS = ("README.md", "docs/semantics.md", "docs/report.md", "docs/deploy.md")
BLOCK_RE = re.compile(r"(<!-- figures:(?P<name>[a-z0-9_]+) -->\n)(?P<body>.*?)(<!-- /figures:(?P=name) -->)",
                      re.S)
WIDTH = 92  # the docs' line length


# ---------------------------------------------------------------------------------------
# The committed data.


DATA = RESULTS  # where the committed results are read (tests point it elsewhere)


def host_results() -> tuple[Path, dict]:
    return _host_results(DATA)


@cache
def _host_results(root: Path) -> tuple[Path, dict]:
    """The newest committed results of the host's own kernel (the matrix's "running")."""
    docs = []
    for path in sorted(root.glob("*/results.json")):
        doc = json.loads(path.read_text())
        if (doc.get("matrix") or {}).get("kernel") == "running":
            docs.append((doc.get("finished_at") or "", path, doc))
    if not docs:
        raise FiguresError(f"no committed results of the running kernel under {root}")
    _, path, doc = max(docs, key=lambda d: d[0])
    return path, doc


def repeat_results() -> tuple[Path, dict]:
    root = DATA
    paths = sorted(root.glob("*/repeat*.json"))
    if not paths:
        raise FiguresError(f"no committed repeat results under {root}")
    return paths[-1], json.loads(paths[-1].read_text())


def rel(path: Path) -> str:
    return f"results/{path.relative_to(DATA)}"


# ---------------------------------------------------------------------------------------
# README.md: two rows of `run`'s table (results/figures_format.py prints it).


SAMPLE_ROWS = ("close_listener_with_queued_children/tcp4_close_k2_b8_migrate0",
               "close_listener_with_queued_children/tcp4_close_k2_b8_migrate1")


def run_sample() -> str:
    path, doc = host_results()
    records = doc["records"]
    # The widths are those of the whole run: the rows shown are cut from its table.
    lines = table(records)
    rows = {f"{r['case']}/{r['variant']}": line for r, line in zip(records, lines[1:])}
    missing = [v for v in SAMPLE_ROWS if v not in rows]
    if missing:
        raise FiguresError(f"{rel(path)} has no record of {', '.join(missing)}")
    kernel = doc["kernel"]
    body = [f"reuseport-check: {len(records)} variant(s) x 1 repeat(s) on kernel {kernel}", "...",
            lines[0], *(rows[v] for v in SAMPLE_ROWS), "...", summary(records, kernel)]
    intro = (f"Example of `run` on this project's development machine: two rows of the "
             f"{len(records)}, from `{rel(path)}` (`python3 -m results.figures` cuts them "
             "from the committed records):")
    return textwrap.fill(intro, WIDTH) + "\n\n" + "\n".join("    " + x for x in body) + "\n"


# ---------------------------------------------------------------------------------------
# "Measured here" in docs/semantics.md: one block per case (figures_semantics.py has
# the paragraphs).


def recs(case: str, pattern: str = "*") -> list[dict]:
    _, doc = host_results()
    out = [r for r in doc["records"] if r["case"] == case and fnmatch.fnmatchcase(r["variant"], pattern)]
    if not out:
        raise FiguresError(f"no record of {case}/{pattern} in the host results")
    return out


def measured(case: str, text: str, heading: str = "") -> str:
    path, doc = host_results()
    rs = recs(case)
    head = heading or f"{doc['kernel']}, `{rel(path)}`, {len(rs)} variants: {verdicts(rs)}"
    return textwrap.fill(f"**Measured here ({head}).** {text}", WIDTH) + "\n"


def paragraph(case: str, f: Callable) -> Callable[[], str]:
    """The block of a paragraph of figures_semantics.py: "Measured here" over the case's records."""
    def make() -> str:
        return measured(case, f(case, recs(case), recs))
    return make


def m_migrate_bpf_program() -> str:
    c = "migrate_bpf_program"
    path, doc = host_results()
    rpath, rep = repeat_results()
    runs = {k: v for k, v in rep["per_variant"].items() if k.startswith(c + "/")}
    n_runs = sum(sum(v.values()) for v in runs.values())
    n_pass = sum(v.get("PASS", 0) for v in runs.values())
    pick, drop = recs(c, "*_pick_*"), recs(c, "*_drop_*")
    head = (f"{doc['kernel']}, `{rel(path)}`: {verdicts(recs(c))}; {rep['kernel']}, "
            f"`{rel(rpath)}`: {n_pass} of {n_runs} PASS in {rep['records'] // rep['variants']} "
            f"repeats x {len(runs)} variants")
    return measured(c, (
        f"pick: the target (backlog {span(pick, 'target_backlog')}) held exactly Q right after "
        f"the close in {count(pick, lambda o: o['target_queue_after_close'] == o['queued_at_close'])}"
        f" variants (Q = {span(pick, 'queued_at_close', either=True)}); Q program migrations in "
        f"{count(pick, lambda o: o['program_migrated'] == o['queued_at_close'])}, "
        f"TCPMigrateReqSuccess = Q in "
        f"{count(pick, lambda o: o['netstat_migrate_req_success'] == o['queued_at_close'])}, "
        f"TCPMigrateReqFailure {total(pick, 'netstat_migrate_req_failure')}, orphans "
        f"{total(pick, 'kernel_orphaned_children')}, resets {total(pick, 'client_resets')}, "
        f"every attempt served by the target in "
        f"{count(pick, lambda o: o['served_by_target'] == o['attempts'])}. drop: Q client "
        f"resets = Q kernel orphans = Q orphan RSTs = Q program drops = TCPMigrateReqFailure "
        f"in {count(drop, lambda o: o['client_resets'] == o['queued_at_close'] == o['kernel_orphaned_children'] == o['kernel_orphan_resets'] == o['program_migrate_dropped'] == o['netstat_migrate_req_failure'])}"
        f" variants (Q = {span(drop, 'queued_at_close', either=True)}), TCPMigrateReqSuccess "
        f"{total(drop, 'netstat_migrate_req_success')}, the {span(drop, 'extra_attempts')} "
        f"other attempts served, {total(drop, 'lost_other')} lost otherwise; the target's "
        f"queue read {span(drop, 'target_queue_after_close')}."), heading=head)


# ---------------------------------------------------------------------------------------
# docs/report.md: how long the committed report took (results/report/data/*.json).


def _utc(t: str) -> "datetime":
    from datetime import datetime, timezone
    return datetime.strptime(t, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def report_timings() -> str:
    every = [json.loads(p.read_text()) for p in sorted((DATA / "report" / "data").glob("*.json"))]
    if not every:
        raise FiguresError(f"no report data under {DATA}/report/data")
    # Parts of the plan measured apart (report --experiments) are told on their own.
    docs = [d for d in every if not d.get("experiments")]
    parts = [d for d in every if d.get("experiments")]
    minutes = lambda d: (_utc(d["finished_at"]) - _utc(d["started_at"])).total_seconds() / 60
    host = [d for d in docs if d["environment"]["where"] == "host"]
    guests = [d for d in docs if d["environment"]["where"] == "guest"]
    if len(host) != 1 or not guests:
        raise FiguresError("the report data needs one host document and guests")
    h = host[0]
    accels = sorted({str(d["environment"].get("accel")).upper() for d in guests})
    g_runs = sorted({len(d["runs"]) for d in guests})
    span_min = f"{min(map(minutes, guests)):.1f} to {max(map(minutes, guests)):.1f}"
    g_start = min(_utc(d["started_at"]) for d in guests)
    g_end = max(_utc(d["finished_at"]) for d in guests)
    guests_text = (f"each of the {len(guests)} guests ({'/'.join(accels)}, {guests[0]['profile']} profile) "
                   f"{' or '.join(map(str, g_runs))} runs in {span_min} minutes")
    if _utc(h["finished_at"]) < g_start or _utc(h["started_at"]) > g_end:
        # Not one `report --kernels all`: the host's document was measured on its own.
        text = (f"The committed report (`results/report/data/`, on this machine): the host "
                f"({h['kernel_release']}, {h['profile']} profile) {len(h['runs'])} runs in "
                f"{minutes(h):.1f} minutes, measured on its own (`report --host-only --profile "
                f"{h['profile']}`, {h['started_at'][:16].replace('T', ' ')} UTC); {guests_text} "
                f"(`report --kernels all`), {(g_end - g_start).total_seconds() / 60:.1f} minutes from "
                f"the first guest run's start to the last one's end.")
    else:
        whole = (max(_utc(d["finished_at"]) for d in docs) -
                 min(_utc(d["started_at"]) for d in docs)).total_seconds() / 60
        text = (f"The committed report (`results/report/data/`, `report --kernels all` on this "
                f"machine): the host ({h['kernel_release']}, {h['profile']} profile) "
                f"{len(h['runs'])} runs in {minutes(h):.1f} minutes; {guests_text}; {whole:.1f} minutes "
                f"from the first run's start to the last one's end.")
    for kinds in sorted({",".join(d["experiments"]) for d in parts}):
        same = [d for d in parts if ",".join(d["experiments"]) == kinds]
        span = (max(_utc(d["finished_at"]) for d in same) -
                min(_utc(d["started_at"]) for d in same)).total_seconds() / 60
        text += (f" The {kinds} runs were measured again apart (`--experiments {kinds}`, laid over "
                 f"those documents): {len(same)} kernels, {sum(len(d['runs']) for d in same)} runs, "
                 f"{span:.1f} minutes.")
    return textwrap.fill(text, WIDTH) + "\n"


BLOCKS: dict[str, Callable[[], str]] = {
    "report_timings": report_timings,
    "run_sample": run_sample,
    **{case: paragraph(case, f) for case, f in SEMANTICS.items()},
    "migrate_bpf_program": m_migrate_bpf_program,
    "servers_table": lambda: servers_table(DATA / "servers" / "servers.json"),
    "servers_udp_table": lambda: servers_udp_table(DATA / "servers" / "servers_udp.json"),
}


# ---------------------------------------------------------------------------------------
# Filling the blocks.


def fill(text: str, where: str = "") -> str:
    """text with every marked block remade; an unknown block name is an error."""
    def one(m: re.Match) -> str:
        name = m.group("name")
        if name not in BLOCKS:
            raise FiguresError(f"{where}: unknown figures block '{name}'; known: {', '.join(BLOCKS)}")
        return m.group(1) + BLOCKS[name]() + m.group(4)
    return BLOCK_RE.sub(one, text)


def blocks_in(text: str) -> list[str]:
    return [m.group("name") for m in BLOCK_RE.finditer(text)]


def main(argv: list[str] | None = None, root: Path = REPO) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m results.figures", description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block is stale")
    args = ap.parse_args(argv)
    stale = []
    for name in DOCUMENTS:
        path = root / name
        text = path.read_text()
        try:
            new = fill(text, name)
        except FiguresError as e:
            print(f"figures: {e}", file=sys.stderr)
            return 2
        if new != text:
            stale.append(name)
            if not args.check:
                path.write_text(new)
    verb = "stale" if args.check else "rewritten"
    for name in stale:
        print(f"figures: {name} {verb}")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
