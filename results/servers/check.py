"""Internal consistency of results/servers/servers.json beyond its schema: what a deploy
document's numbers must satisfy between themselves and against results/servers/modes.py.
Returns the problems as sentences; none means consistent. No timing is checked.
"""
from __future__ import annotations

from pathlib import Path

from results.servers.modes import MODES, UDP_MODES

REPO = Path(__file__).resolve().parents[2]


def deploy_problems(where: str, d: dict, sockets: str) -> list[str]:
    out = []
    if d["lost"] > d["attempts"]:
        out.append(f"{where}: lost {d['lost']} > attempts {d['attempts']}")
    named = sum(d["causes"].values()) + d["unattributed"]
    if named != d["lost"]:
        out.append(f"{where}: causes + unattributed = {named}, lost = {d['lost']} (every loss has one cause)")
    if "outcomes" in d and sum(d["outcomes"].values()) != d["lost"]:
        out.append(f"{where}: the lost outcomes add up to {sum(d['outcomes'].values())}, lost = {d['lost']}")
    if (d["verdict"] == "fail") != (d["lost"] > 0):
        out.append(f"{where}: verdict {d['verdict']} with {d['lost']} lost at --max-lost 0")
    orphaned = d["causes"].get("orphaned_in_accept_queue", 0)
    if d["orphaned_children"] is not None and orphaned > d["orphaned_children"]:
        out.append(f"{where}: {orphaned} lost as orphaned, but the kernel orphaned {d['orphaned_children']}")
    if d["orphaned_children"] and not d["listener_closes"]:
        out.append(f"{where}: {d['orphaned_children']} orphaned children without a listener close")
    if sockets == "kept" and d["listener_closes"]:
        out.append(f"{where}: {d['listener_closes']} listener closes in a mode that keeps its sockets "
                   f"(modes.py says kept: the procedure or the claim is wrong)")
    if d["queued_peak_during_deploy"] < 0 or d["queued_at_deploy"] < 0:
        out.append(f"{where}: a negative queue")
    if d["load_per_s"] is not None and d["load_span_s"] > 0:
        # Both are rounded when stored (the span to 1 ms): 1e-3 of the rate covers that.
        expect = d["attempts"] / d["load_span_s"]
        if abs(d["load_per_s"] - expect) > 1e-3 * expect:
            out.append(f"{where}: load_per_s {d['load_per_s']} is not attempts / load_span_s ({expect:.1f})")
    return out


def udp_deploy_problems(where: str, d: dict, sockets: str) -> list[str]:
    out = []
    if "datagrams" not in d:
        return [f"{where}: a TCP deploy in a UDP document"]
    if d["lost"] > d["datagrams"]:
        out.append(f"{where}: lost {d['lost']} > datagrams {d['datagrams']}")
    if d["lost"] + d["late"] > d["datagrams"]:
        out.append(f"{where}: lost {d['lost']} + late {d['late']} > datagrams {d['datagrams']} (one outcome each)")
    named = sum(d["causes"].values()) + d["unattributed"]
    if named != d["lost"]:
        out.append(f"{where}: causes + unattributed = {named}, lost = {d['lost']} (every loss has one cause)")
    if (d["verdict"] == "fail") != (d["lost"] > 0):
        out.append(f"{where}: verdict {d['verdict']} with {d['lost']} lost at --max-lost 0")
    purged = d["causes"].get("queue_purged_at_close", 0)
    if d["queue_purged"] is None and purged:
        out.append(f"{where}: {purged} lost as purged at close where purges are not observable")
    if d["queue_purged"] is not None and purged > d["queue_purged"]:
        out.append(f"{where}: {purged} lost as purged at close, but the probe saw {d['queue_purged']} purged")
    if sockets == "kept" and d["queue_purged"]:
        out.append(f"{where}: {d['queue_purged']} datagrams purged with a closed socket in a mode that keeps its "
                   f"sockets (modes.py says kept: the procedure or the claim is wrong)")
    if d["load_per_s"] is not None and d["load_span_s"] > 0:
        expect = d["datagrams"] / d["load_span_s"]
        if abs(d["load_per_s"] - expect) > 1e-3 * expect:
            out.append(f"{where}: load_per_s {d['load_per_s']} is not datagrams / load_span_s ({expect:.1f})")
    return out


def problems(doc: dict) -> list[str]:
    out = []
    udp = doc.get("protocol") == "udp"
    modes = {m[0]: m for m in (UDP_MODES if udp else MODES)}
    for entry in doc["modes"]:
        mid = entry["id"]
        if mid not in modes:
            out.append(f"{mid}: not a {'UDP ' if udp else ''}mode of results/servers/modes.py")
            continue
        _, server, mode, sockets, start, deploy = modes[mid]
        if (entry["server"], entry["mode"], entry["sockets"], entry["start"], entry["deploy"]) != \
                (server, mode, sockets, start, deploy):
            out.append(f"{mid}: differs from modes.py (measured with another procedure: measure again)")
        for cmd in (entry["start"], entry["deploy"]):
            if not (REPO / cmd.split(" ")[0]).is_file():
                out.append(f"{mid}: {cmd.split(' ')[0]} does not exist")
        n = len(entry["deploys"]) + len(entry["errors"])
        if n != doc["deploys_per_mode"]:
            out.append(f"{mid}: {n} deploys and errors, deploys_per_mode {doc['deploys_per_mode']}")
        if len(entry["deploys"]) < 2:
            out.append(f"{mid}: {len(entry['deploys'])} deploys measured: no interval")
        for i, d in enumerate(entry["deploys"]):
            if udp:
                out += udp_deploy_problems(f"{mid} deploy {i + 1}", d, entry["sockets"])
            elif "datagrams" in d:
                out.append(f"{mid} deploy {i + 1}: a UDP deploy in a TCP document")
            else:
                out += deploy_problems(f"{mid} deploy {i + 1}", d, entry["sockets"])
    if "runs" in doc and sum(r["deploys_per_mode"] for r in doc["runs"]) != doc["deploys_per_mode"]:
        out.append(f"the runs add up to {sum(r['deploys_per_mode'] for r in doc['runs'])} deploys per mode, "
                   f"deploys_per_mode {doc['deploys_per_mode']}")
    if doc.get("complete") is False:
        out.append(f"not complete: measure.py stopped after {doc['deploys_per_mode']} round(s) (killed, or still running)")
    if doc["deploys_per_mode"] < 2:
        out.append(f"deploys_per_mode {doc['deploys_per_mode']}: an interval needs at least 2")
    if doc["started_at"] > doc["finished_at"]:
        out.append("finished before it started")
    return out
