"""The figures of README.md and docs/*.md, made from the committed results.

    /usr/bin/python3 -m results.figures           # rewrite the marked blocks
    /usr/bin/python3 -m results.figures --check   # exit 1 if a block differs (a test runs this)

A figure in the prose is a block between `<!-- figures:NAME -->` and `<!-- /figures:NAME -->`;
BLOCKS[NAME] makes its text from the newest committed host results
(results/<release>/results.json whose `matrix.kernel` is "running") or from
results/<release>/repeat20.json. A number typed into a document by hand goes stale the next
time the matrix runs; a block is remade from the same files the reader can open.
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
from typing import Callable, Iterable

RESULTS = Path(__file__).resolve().parent
REPO = RESULTS.parent
DOCUMENTS = ("README.md", "docs/semantics.md", "docs/report.md")
BLOCK_RE = re.compile(r"(<!-- figures:(?P<name>[a-z0-9_]+) -->\n)(?P<body>.*?)(<!-- /figures:(?P=name) -->)",
                      re.S)
WIDTH = 92  # the docs' line length


class FiguresError(Exception):
    pass


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
# `run`'s table, as cli/run.cc (print_table, compact) prints it.


def _dump(v) -> str:
    # nlohmann::json::dump(): compact, the same as json.dumps for the counts, strings and
    # booleans the records hold.
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def compact(expected: dict, observed: dict) -> str:
    """The counts the expectation names, as observed; "!=X", "<min", ">max" where they
    differ, "?" where the kernel could not observe it (cli/run.cc compact())."""
    parts = []
    for k in sorted(expected):  # nlohmann's objects iterate in key order
        want, got = expected[k], observed.get(k)
        s = f"{k}={'?' if got is None else _dump(got)}"
        if got is not None:
            if isinstance(want, dict):
                number = isinstance(got, (int, float)) and not isinstance(got, bool)
                if number and isinstance(want.get("min"), (int, float)) and got < want["min"]:
                    s += "<" + _dump(want["min"])
                if number and isinstance(want.get("max"), (int, float)) and got > want["max"]:
                    s += ">" + _dump(want["max"])
            elif got != want or isinstance(got, bool) != isinstance(want, bool):
                s += "!=" + _dump(want)
        parts.append(s)
    return " ".join(parts)


def table(records: list[dict], repeat: int = 1) -> list[str]:
    """The lines of `run`'s table for these records, in their order (trailing blanks cut:
    the program pads the header to the widest row)."""
    wcase = max([4] + [len(r["case"]) + 1 + len(r["variant"]) for r in records])
    out = [f"{'case/variant':<{wcase}}  {'verdict':<7}  "
           "observed (!=X, <min, >max where it differs; ? not observable)"]
    for r in records:
        cv = f"{r['case']}/{r['variant']}" + (f" #{r['repeat']}" if repeat > 1 else "")
        obs = "skipped: " + r["reason"] if r["verdict"] == "SKIP" else \
            compact(r["expected"], r["observed"])
        out.append(f"{cv:<{wcase}}  {r['verdict']:<7}  {obs}".rstrip())
    return out


def summary(records: list[dict], kernel: str) -> str:
    n = {v: sum(1 for r in records if r["verdict"] == v)
         for v in ("PASS", "FAIL", "XFAIL", "XPASS", "SKIP", "ERROR")}
    return (f"summary: {n['PASS']} passed, {n['FAIL']} failed, {n['XFAIL']} xfail, "
            f"{n['XPASS']} xpass, {n['SKIP']} skipped, {n['ERROR']} errors (kernel {kernel})")


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
# "Measured here" in docs/semantics.md: one block per case.


def recs(case: str, pattern: str = "*") -> list[dict]:
    _, doc = host_results()
    out = [r for r in doc["records"] if r["case"] == case and fnmatch.fnmatchcase(r["variant"], pattern)]
    if not out:
        raise FiguresError(f"no record of {case}/{pattern} in the host results")
    return out


def obs(rs: Iterable[dict], key: str) -> list:
    return [r["observed"].get(key) for r in rs]


def num(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)


def span(rs: list[dict], key: str, fmt: Callable = num, either: bool = False) -> str:
    """"v" when every record observed v, else "lo-hi" (or the distinct values: either, or
    values that are not numbers)."""
    vals = obs(rs, key)
    if any(v is None for v in vals):
        raise FiguresError(f"{key} not observed in {len(rs)} record(s) of {rs[0]['case']}")
    if any(isinstance(v, (dict, list)) for v in vals):  # compared as JSON
        distinct = [json.loads(t) for t in sorted({json.dumps(v, sort_keys=True) for v in vals})]
        return " or ".join(fmt(v) for v in distinct)
    distinct = sorted(set(vals), key=lambda v: (isinstance(v, str), v))
    if len(distinct) == 1:
        return fmt(distinct[0])
    if not either and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in distinct):
        return f"{fmt(distinct[0])}-{fmt(distinct[-1])}"
    return " or ".join(fmt(v) for v in distinct)


def total(rs: list[dict], key: str) -> str:
    return num(sum(v or 0 for v in obs(rs, key)))


def count(rs: list[dict], pred: Callable[[dict], bool]) -> str:
    """"all N" or "k of N": in how many records pred holds."""
    k = sum(1 for r in rs if pred(r["observed"]))
    return f"all {len(rs)}" if k == len(rs) else f"{k} of {len(rs)}"


def verdicts(rs: list[dict]) -> str:
    by: dict[str, int] = {}
    for r in rs:
        by[r["verdict"]] = by.get(r["verdict"], 0) + 1
    return ", ".join(f"{n} {v}" for v, n in sorted(by.items(), key=lambda x: -x[1]))


def quoted(v) -> str:
    return f"`{v}`"


def pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def measured(case: str, text: str, heading: str = "") -> str:
    path, doc = host_results()
    rs = recs(case)
    head = heading or f"{doc['kernel']}, `{rel(path)}`, {len(rs)} variants: {verdicts(rs)}"
    return textwrap.fill(f"**Measured here ({head}).** {text}", WIDTH) + "\n"


def m_close_listener() -> str:
    c = "close_listener_with_queued_children"
    m0, m1 = recs(c, "*migrate0"), recs(c, "*migrate1")
    return measured(c, (
        f"Backlog B held B+1 children (queued_at_close = backlog + 1 in "
        f"{count(m0 + m1, lambda o: o['queued_at_close'] == o['backlog'] + 1)} variants: "
        f"{span(m0, 'queued_at_close', either=True)}). Migration off: client resets = queued = kernel "
        f"orphans = orphan RSTs in "
        f"{count(m0, lambda o: o['client_resets'] == o['queued_at_close'] == o['kernel_orphaned_children'] == o['kernel_orphan_resets'])}"
        f" variants, every other attempt served ({total(m0, 'lost_other')} lost otherwise). "
        f"Migration on: {total(m1, 'client_resets')} client resets, TCPMigrateReqSuccess = "
        f"queued in {count(m1, lambda o: o['netstat_migrate_req_success'] == o['queued_at_close'])}, "
        f"every attempt served in {count(m1, lambda o: o['served'] == o['attempts'])}."))


def m_hash_spread() -> str:
    c = "hash_spread"
    rs, tcp, udp = recs(c), recs(c, "tcp*"), recs(c, "udp*")
    return measured(c, (
        f"Largest share deviation {span(rs, 'max_share_deviation', pct)}, chi-square "
        f"{span(rs, 'chi_square')}; {total(rs, 'tuples_moved')} tuples moved of "
        f"{span(tcp, 'tuples_rechecked')} (TCP) and {span(udp, 'tuples_rechecked')} (UDP) "
        f"rechecked; {span(udp, 'one_port_answered')} of {span(udp, 'one_port_datagrams')} "
        f"datagrams of one port at {span(udp, 'one_port_listeners')} listener. The load "
        f"generator reuses a source port once its last connection is gone: TCP took "
        f"{span(tcp, 'attempts')} connections to see {span(tcp, 'distinct_source_ports')} "
        f"distinct ports ({span(tcp, 'load_port_reused')} reused one, "
        f"{total(tcp, 'load_port_reused_moved')} of those at another listener), so the case "
        f"runs rounds of connections until 20,000 distinct ports were seen."))


def m_group_change_remap() -> str:
    c = "group_change_remap"
    parts = []
    for proto in ("udp4", "udp6", "tcp4", "tcp6"):
        add = recs(c, f"{proto}_add")
        moves = ", ".join(span(recs(c, f"{proto}_close_{s}"), "moved_fraction")
                          for s in ("slot0", "slot1", "slot3"))
        parts.append(f"{proto}: {span(add, 'moved_fraction')} (add, "
                     f"{span(add, 'moved_to_new_fraction')} to the new socket), {moves}")
    return measured(c, (
        f"Moved fraction (add; close slot 0, 1, 3) {'; '.join(parts)}; "
        f"{total(recs(c), 'impossible_transitions')} impossible transitions."))


def m_bpf_steering() -> str:
    c = "bpf_steering"
    rs = recs(c)
    return measured(c, (
        f"Index 2: every flow at listener 2 in "
        f"{count(rs, lambda o: o['steered_to_target'] == o['flows'])} variants; index 7 and "
        f"after detach: {total(rs, 'fallback_differs_from_hash')} and "
        f"{total(rs, 'detached_differs_from_hash')} flows differ from the hash's choice; the "
        f"bind after attach: {span(rs, 'attach_before_bind_bind')} (TCP and UDP). The eBPF "
        f"program ran once per datagram ({span(recs(c, 'udp*_ebpf'), 'program_runs')} runs for "
        f"{span(recs(c, 'udp*_ebpf'), 'flows')} flows in the two phases with a program) and "
        f"once per SYN ({span(recs(c, 'tcp*_ebpf'), 'program_runs')} for "
        f"{span(recs(c, 'tcp*_ebpf'), 'flows')} flows): the handshake's "
        f"final ACK finds the request socket and does not consult the group."))


def m_sk_reuseport_select() -> str:
    c = "sk_reuseport_select"
    sel, tdrop, udrop = recs(c, "*_select"), recs(c, "tcp*_drop"), recs(c, "udp*_drop")
    return measured(c, (
        f"select: every flow at the chosen listener in both phases in "
        f"{count(sel, lambda o: o['on_slot1_listener'] == o['on_slot3_listener'] == o['flows'])}"
        f" variants ({span(recs(c, 'tcp*_select'), 'flows')} TCP, "
        f"{span(recs(c, 'udp*_select'), 'flows')} UDP flows); one program selection per SYN "
        f"or datagram in {count(sel, lambda o: o['program_selected'] == o['answered'])}. drop: "
        f"a dropped SYN is not silent: the kernel answers with a RST, "
        f"{span(tdrop, 'dropped_refused')} of {span(tdrop, 'dropped_attempts')} TCP clients "
        f"got ECONNREFUSED ({span(tdrop, 'program_drops')} program drops); "
        f"{total(udrop, 'dropped_answered')} UDP datagrams answered, "
        f"{span(udrop, 'program_drops')} drops; SK_PASS again: all flows at slot 2 in "
        f"{count(tdrop + udrop, lambda o: o['after_pass_on_slot2_listener'] == o['flows'])}."))


def m_incoming_cpu() -> str:
    c = "incoming_cpu"
    rs = recs(c)
    per_cpu = span(rs, "accepted_per_client_cpu",
                   lambda v: ", ".join(f"`{k}: {v[k]}`" for k in sorted(v)))
    return measured(c, (
        f"{span(rs, 'to_listener_of_their_cpu')} of {span(rs, 'connections')} connections at "
        f"the listener of their client's CPU ({per_cpu}), "
        f"{span(rs, 'children_with_client_cpu')} accepted children reporting the client's "
        f"CPU."))


def m_migrated_wakeup() -> str:
    c = "migrated_wakeup"
    rs = recs(c)
    return measured(c, (
        f"Waiter asleep in {count(rs, lambda o: o['waiter_was_asleep'] is True)}, woke=true in "
        f"{count(rs, lambda o: o['woke'] is True)} (accept: "
        f"{span(recs(c, '*accept'), 'waiter_result', quoted)}; epoll_wait: "
        f"{span(recs(c, '*epoll'), 'waiter_result', quoted)}), {span(rs, 'migrated')} of "
        f"{span(rs, 'children')} children migrated to B."))


def _rows(case: str, rows: Iterable[str], key: str) -> str:
    return ", ".join(f"{row} {span(recs(case, '*_' + row), key)}" for row in rows)


def m_bind_rules() -> str:
    return measured("bind_rules", "As claimed, every row.")


def m_same_euid_rule() -> str:
    c = "same_euid_rule"
    return measured(c, (
        f"{_rows(c, ('same_uid', 'other_uid', 'root_socket_then_setuid', 'other_fsuid'), 'second_bind')}"
        f" (second bind), for all four protocol/family pairs."))


def m_time_wait_rebind() -> str:
    c = "time_wait_rebind"
    rs = recs(c)

    def row(pattern: str) -> str:
        r = recs(c, pattern)
        return (f"plain {span(r, 'bind_plain')}, `SO_REUSEADDR` {span(r, 'bind_reuseaddr')}, "
                f"`SO_REUSEPORT` {span(r, 'bind_reuseport')} (and listen "
                f"{span(r, 'listen_reuseport')})")
    return measured(c, (
        f"{span(rs, 'time_wait_on_port')} TIME_WAIT socket, {span(rs, 'listeners_on_port')} "
        f"listeners on the port. Listener with `SO_REUSEPORT` only: "
        f"{row('*_listener_reuseport')}. Listener with both: "
        f"{row('*_listener_reuseport_reuseaddr')}."))


def m_unix() -> str:
    c = "unix_reuseport_rejected"
    rs = recs(c)
    return measured(c, (
        f"setsockopt on: {span(rs, 'setsockopt_on')}, flag reads {span(rs, 'flag_after')}, "
        f"off: {span(rs, 'setsockopt_off')}, second bind to the same abstract address: "
        f"{span(rs, 'second_bind')}."))


def m_dual_stack() -> str:
    c = "dual_stack_preference"
    rs = recs(c)
    return measured(c, (
        f"{span(rs, 'served_by_preferred')} of {span(rs, 'attempts')} connections (TCP) and "
        f"datagrams (UDP) reached the preferred socket in "
        f"{count(rs, lambda o: o['served_by_preferred'] == o['attempts'])} variants; the "
        f"other served {total(rs, 'served_by_other')}."))


def m_listen_after_shutdown() -> str:
    c = "listen_after_shutdown"
    rs = recs(c)
    lost = sum(sum(o.get(k) or 0 for k in ("lost_before", "lost_after_shutdown",
                                          "lost_after_relisten")) for o in obs_all(rs))
    return measured(c, (
        f"Before: A {span(rs, 'a_before')}, B {span(rs, 'b_before')}. After shutdown: A "
        f"{span(rs, 'a_after_shutdown')}, B {span(rs, 'b_after_shutdown')}. listen() "
        f"{span(rs, 'relisten')}; after it A {span(rs, 'a_after_relisten')}, B "
        f"{span(rs, 'b_after_relisten')}; {lost} lost in any phase."))


def obs_all(rs: list[dict]) -> list[dict]:
    return [r["observed"] for r in rs]


def m_listener_shutdown_and_kill() -> str:
    c = "listener_shutdown_and_kill"
    s0, s1 = recs(c, "*_shutdown_migrate0"), recs(c, "*_shutdown_migrate1")
    k0, k1 = recs(c, "*_sigkill_*_migrate0"), recs(c, "*_sigkill_*_migrate1")
    return measured(c, (
        f"shutdown, migrate=0: {span(s0, 'queued_at_fault')} queued, "
        f"{span(s0, 'client_resets')} client resets = {span(s0, 'kernel_orphaned_children')} "
        f"kernel orphans = {span(s0, 'kernel_resets_received')} RSTs received, "
        f"{total(s0, 'lost_other')} lost otherwise; migrate=1: {total(s1, 'client_resets')} "
        f"resets, {span(s1, 'netstat_migrate_req_success')} migrations. SIGKILL, migrate=0: "
        f"{span(k0, 'queued_at_fault')} queued, {span(k0, 'client_resets')} resets; "
        f"migrate=1: {total(k1, 'client_resets')} resets, every attempt served in "
        f"{count(k1, lambda o: o['served'] == o['attempts'])} variants, but TcpExt TCPMigrateReqSuccess "
        f"read {span(k1, 'netstat_migrate_req_success')} for {span(k1, 'queued_at_fault')} "
        f"queued children."))


def m_syn_recv_on_close() -> str:
    c = "syn_recv_on_close"
    rs = recs(c)
    m0, k2m1, alone1 = recs(c, "*_migrate0"), recs(c, "*_k2_migrate1"), recs(c, "*_alone_migrate1")
    return measured(c, (
        f"{span(rs, 'syn_recv_before_close')} requests in SYN_RECV before the close in "
        f"{count(rs, lambda o: o['syn_recv_before_close'] == o['requests'])} variants. "
        f"migrate=0: {span(m0, 'final_ack_resets')} RSTs for {span(m0, 'requests')} final "
        f"ACKs (k2 and alone); migrate=1 with a second listener: "
        f"{span(k2m1, 'accepted_by_other')} children accepted there, "
        f"{span(k2m1, 'final_ack_resets')} RSTs; migrate=1 alone: "
        f"{span(alone1, 'final_ack_resets')} RSTs."))


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
    docs = [json.loads(p.read_text()) for p in sorted((DATA / "report" / "data").glob("*.json"))]
    if not docs:
        raise FiguresError(f"no report data under {DATA}/report/data")
    minutes = lambda d: (_utc(d["finished_at"]) - _utc(d["started_at"])).total_seconds() / 60
    host = [d for d in docs if d["environment"]["where"] == "host"]
    guests = [d for d in docs if d["environment"]["where"] == "guest"]
    if len(host) != 1 or not guests:
        raise FiguresError("the report data needs one host document and guests")
    h = host[0]
    accels = sorted({str(d["environment"].get("accel")).upper() for d in guests})
    g_runs = sorted({len(d["runs"]) for d in guests})
    span_min = f"{min(map(minutes, guests)):.1f} to {max(map(minutes, guests)):.1f}"
    whole = (max(_utc(d["finished_at"]) for d in docs) -
             min(_utc(d["started_at"]) for d in docs)).total_seconds() / 60
    text = (f"The committed report (`results/report/data/`, `report --kernels all` on this "
            f"machine): the host ({h['kernel_release']}, {h['profile']} profile) "
            f"{len(h['runs'])} runs in {minutes(h):.1f} minutes; each of the {len(guests)} "
            f"guests ({'/'.join(accels)}, {guests[0]['profile']} profile) "
            f"{' or '.join(map(str, g_runs))} runs in {span_min} minutes; {whole:.1f} minutes "
            f"from the first run's start to the last one's end.")
    return textwrap.fill(text, WIDTH) + "\n"


BLOCKS: dict[str, Callable[[], str]] = {
    "report_timings": report_timings,
    "run_sample": run_sample,
    "close_listener_with_queued_children": m_close_listener,
    "hash_spread": m_hash_spread,
    "group_change_remap": m_group_change_remap,
    "bpf_steering": m_bpf_steering,
    "sk_reuseport_select": m_sk_reuseport_select,
    "incoming_cpu": m_incoming_cpu,
    "migrated_wakeup": m_migrated_wakeup,
    "bind_rules": m_bind_rules,
    "same_euid_rule": m_same_euid_rule,
    "time_wait_rebind": m_time_wait_rebind,
    "unix_reuseport_rejected": m_unix,
    "dual_stack_preference": m_dual_stack,
    "listen_after_shutdown": m_listen_after_shutdown,
    "listener_shutdown_and_kill": m_listener_shutdown_and_kill,
    "syn_recv_on_close": m_syn_recv_on_close,
    "migrate_bpf_program": m_migrate_bpf_program,
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
