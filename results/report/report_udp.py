"""The UDP deploy strategies of the loss report (experiment "udp_grid"): per kernel and point,
lost datagrams per 100,000 sent and broken flows per 100 flows, each the mean over repeats
of the run's own rate with a 95% Student-t interval over the repeats (as the TCP rows: losses
cluster at deploys, so the run is the unit), and the kernel's causes of the lost datagrams
summed over the usable runs. Nothing here draws or writes anything.
"""
from collections import defaultdict

from results.report.report_stats import fmt_ci, mean_ci, usable

UDP_STRATEGY_TEXT = {
    "u_close": "a new generation of UDP members joins, then the old members are closed at once: what their receive "
               "queues hold is freed with them",
    "u_drain": "the old members connect() to their own address (no other 4-tuple reaches a connected member), "
               "answer what is queued, then close (serve --udp --drain)",
    "u_keep_open": "the old members stop reading but stay open for keep_open_ms (their share of the flows queues "
                   "unread), then close",
    "u_steer_id": "a QUIC server with a connection-id sk_reuseport program: each datagram goes to the member owning "
                  "its flow id, new ids to the current generation; flows live one generation (a load of fresh ids per "
                  "generation, stopped after the overlap), the old members answer what is in flight, then close",
}
CAUSES = ("no_socket", "receive_buffer_full", "other_receive_errors", "queue_purged_at_close")


def lost_per100k(run: dict) -> float:
    d = run["datagrams"]
    return 1e5 * d["lost"] / d["sent"] if d["sent"] else 0.0


def broken_per100(run: dict) -> float:
    f = run["flows"]
    return 100 * run["broken_flows"] / f["total"] if f["total"] else 0.0


def udp_load_label(p: dict) -> str:
    load = f"closed {p['in_flight']}/flow" if p["mode"] == "closed" else f"open {p['rate']:.0f}/s"
    # u_steer_id's flows live one generation: `flows` is per generation's load, not per run.
    per_generation = ", per generation" if p.get("flow_lifetime") == "generation" else ""
    return f"{p['flows']} flows, {load}{per_generation}"


def udp_point(run: dict) -> tuple:
    p = run["params"]
    return (p["mode"], p["in_flight"] or 0, p["rate"] or 0, p["flows"], p["work_us"])


def udp_cell(runs: list[dict]) -> dict:
    ok = [r for r in runs if usable(r)]
    cell = {"runs": len(runs), "used": len(ok),
            "errors": sum(1 for r in runs if r.get("status") == "error"),
            "unreconciled": sum(1 for r in runs if r.get("status") == "ok" and not r.get("reconciled"))}
    unavailable = [r for r in runs if r.get("status") == "unavailable"]
    if unavailable:
        # The kernel refused the strategy: its reason, never a zero.
        cell["unavailable"] = unavailable[0].get("error", "unavailable")
    if not ok:
        return cell
    cell["lost_mean"], cell["lost_lo"], cell["lost_hi"] = mean_ci([lost_per100k(r) for r in ok])
    cell["broken_mean"], cell["broken_lo"], cell["broken_hi"] = mean_ci([broken_per100(r) for r in ok])
    for k in ("sent", "answered", "late", "lost"):
        cell[k] = sum(r["datagrams"][k] for r in ok)
    cell["flows"] = sum(r["flows"]["total"] for r in ok)
    cell["broken"] = sum(r["broken_flows"] for r in ok)
    causes: dict[str, int | None] = {}
    for c in CAUSES:
        vals = [r["causes"].get(c) for r in ok]
        # A cause this kernel could not observe in some run is not summed as if it were 0.
        causes[c] = None if any(v is None for v in vals) else sum(vals)
    cell["causes"] = causes
    cell["unattributed"] = sum(r["unattributed"] for r in ok)
    cell["drained"] = sum(r.get("drained", 0) for r in ok)
    cell["rate"] = sum(r["sent_per_second"] for r in ok) / len(ok)
    return cell


def udp_rows(doc: dict) -> list[dict]:
    """One row per UDP strategy x point of this kernel."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in doc["runs"]:
        if r["experiment"] == "udp_grid":
            groups[(r["strategy"],) + udp_point(r)].append(r)
    order = list(UDP_STRATEGY_TEXT)
    rows = []
    for key, runs in sorted(groups.items(), key=lambda kv: (order.index(kv[0][0]),) + kv[0][1:]):
        rows.append({"strategy": key[0], "params": runs[0]["params"], **udp_cell(runs)})
    return rows


def fmt_causes(cell: dict) -> str:
    parts = [f"{c} {'n/a' if v is None else v}" for c, v in cell["causes"].items() if v is None or v]
    parts.append(f"unattributed {cell['unattributed']}")
    return ", ".join(parts)


UDP_HEADER = ["strategy", "load", "runs used/all", "lost per 100k, mean [95% t]", "lost/sent", "late",
              "broken flows per 100, mean [95% t]", "broken/flows", "causes of the lost (kernel)", "sent/s"]


def udp_row_cells(r: dict) -> list[str]:
    if "lost_mean" not in r:
        first = f"unavailable: {r['unavailable']}" if r.get("unavailable") else "n/a"
        return ([r["strategy"], udp_load_label(r["params"]), f"0/{r['runs']}", first] +
                ["n/a"] * (len(UDP_HEADER) - 4))
    return [r["strategy"], udp_load_label(r["params"]), f"{r['used']}/{r['runs']}",
            fmt_ci(r["lost_mean"], r["lost_lo"], r["lost_hi"]), f"{r['lost']}/{r['sent']}", str(r["late"]),
            fmt_ci(r["broken_mean"], r["broken_lo"], r["broken_hi"]), f"{r['broken']}/{r['flows']}",
            fmt_causes(r), f"{r['rate']:.0f}"]


def udp_md(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    md = ["### UDP deploy strategies", "",
          "Lost datagrams per 100,000 sent and broken flows (answered by another member after a deploy: a QUIC "
          "connection would break) per 100 flows, each the mean over repeats [95% Student-t over the repeats]; the "
          "causes are the kernel's counts in the run's namespace (UDP MIB; the udp_drops probe for queues freed at "
          "close), each at most the losses left. u_steer_id's flows live one generation (a load of fresh ids per "
          "generation), the others' the whole run: its flows are all generations' loads, not comparable flow for "
          "flow.", "",
          "| " + " | ".join(UDP_HEADER) + " |", "|" + "---|" * len(UDP_HEADER)]
    md += ["| " + " | ".join(udp_row_cells(r)) + " |" for r in rows]
    return md + [""]


def udp_html(rows: list[dict]) -> str:
    if not rows:
        return ""
    head = "".join(f"<th>{h}</th>" for h in UDP_HEADER)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in udp_row_cells(r)) + "</tr>" for r in rows)
    return f"<h3>UDP deploy strategies</h3><table><tr>{head}</tr>{body}</table>"


def udp_across(docs: list[dict]) -> dict:
    """Per UDP point that two or more kernels ran: strategy -> kernel -> cell."""
    if len(docs) < 2:
        return {}
    points: dict[tuple, dict[str, dict[str, dict]]] = defaultdict(lambda: defaultdict(dict))
    for doc in docs:
        for r in udp_rows(doc):
            points[udp_point({"params": r["params"]})][r["strategy"]][doc["kernel_release"]] = r
    return {k: v for k, v in points.items() if len({rel for cells in v.values() for rel in cells}) >= 2}


def udp_across_cell(cell: dict | None) -> str:
    if cell is None:
        return "not run"
    if "lost_mean" not in cell:
        return f"unavailable: {cell['unavailable']}" if cell.get("unavailable") else f"0/{cell['runs']} usable"
    return (f"lost {fmt_ci(cell['lost_mean'], cell['lost_lo'], cell['lost_hi'])} per 100k ({cell['lost']}/{cell['sent']}), "
            f"broken {fmt_ci(cell['broken_mean'], cell['broken_lo'], cell['broken_hi'])} per 100 flows; "
            f"{fmt_causes(cell)}")


def udp_point_label(key: tuple) -> str:
    mode, in_flight, rate, flows, work = key
    load = f"closed {in_flight}/flow" if mode == "closed" else f"open {rate:.0f}/s"
    return f"UDP, {flows} flows, {load}, work {work} us"
