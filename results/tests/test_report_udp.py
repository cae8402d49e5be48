"""The UDP deploy strategies in the loss report: the stored records hold to the schema and
to their own ledger, and make_report.py shows what they hold.

The fixture (data/report_udp_small.json) is a cut of real `report --host-only --repeats 1`
runs on 6.18: the ceiling, one TCP grid run (a_close) and the UDP runs (udp_grid) of two
such reports, the second's as repeat 1; u_steer_id's runs are repeats 0 and 1 of a later
`report --host-only --experiments udp_grid` (2026-12-01). The expected numbers are computed here from the
JSON, independently of report_udp.py.
"""
import copy
import json
import re
import shutil
import statistics
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
FIXTURE = HERE / "data" / "report_udp_small.json"
SCHEMA = HERE.parent / "schemas" / "report-data.schema.json"
CAUSES = ("no_socket", "receive_buffer_full", "other_receive_errors", "queue_purged_at_close")

pytest.importorskip("matplotlib")


def doc():
    return json.loads(FIXTURE.read_text())


def udp_runs(d):
    return [r for r in d["runs"] if r["experiment"] == "udp_grid"]


def errors(d, _name="report-data"):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA.read_text())
    return [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(d)]


def make_report_main(data, out):
    from results.report import make_report
    return make_report.main(["--data", str(data), "--out", str(out)])


def render(root, docs):
    from results.report import make_report
    (root / "data").mkdir()
    for i, d in enumerate(docs):
        (root / "data" / f"{i}.json").write_text(json.dumps(d))
    assert make_report.main(["--data", str(root / "data"), "--out", str(root)]) == 0
    return (root / "summary.md").read_text()


def test_the_fixture_holds_to_the_schema_and_a_broken_udp_run_does_not():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA.read_text())
    jsonschema.validate(doc(), schema)
    for breakage in ("drop causes", "tcp strategy", "rate in closed loop"):
        d = doc()
        r = udp_runs(d)[0]
        if breakage == "drop causes":
            del r["causes"]
        elif breakage == "tcp strategy":
            r["strategy"] = "a_close"
        else:
            r["params"]["rate"] = 5000.0
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(d, schema)


def test_every_udp_run_reconciles_and_its_causes_add_up_to_its_losses():
    runs = udp_runs(doc())
    assert {r["strategy"] for r in runs} == {"u_close", "u_drain", "u_keep_open", "u_steer_id"}
    for r in runs:
        assert r["status"] == "ok" and r["reconciled"], r["mismatches"]
        d, f = r["datagrams"], r["flows"]
        assert d["answered"] + d["late"] + d["lost"] == d["sent"]
        assert f["stayed"] + f["moved"] + f["lost"] + f["moved_and_lost"] == f["total"]
        assert r["broken_flows"] == f["moved"] + f["moved_and_lost"]
        assert sum(r["causes"][c] or 0 for c in CAUSES) + r["unattributed"] == d["lost"]
        assert sum(r["served_by_member"].values()) == d["answered"] + d["late"]
        assert sum(x["lost"] for x in r["deploys"]) <= d["lost"]


def rows_of(md, rel):
    section = md.split(f"## {rel}", 1)[1].split("### UDP deploy strategies", 1)[1].split("\n## ", 1)[0]
    return {(m.group(1), m.group(2)): m.groups() for m in
            re.finditer(r"^\| (u_\w+) \| (64 flows, [^|]+) \| (\d+)/(\d+) \| ([^|]+) \| (\d+)/(\d+) \| (\d+) \| "
                        r"([^|]+) \| (\d+)/(\d+) \| ([^|]+) \| (\d+) \|$", section, re.M)}


def test_the_udp_table_shows_the_means_counts_and_causes_of_the_json(tmp_path):
    d = doc()
    rows = rows_of(render(tmp_path, [d]), d["kernel_release"])
    groups = {}
    for r in udp_runs(d):
        per_generation = ", per generation" if r["strategy"] == "u_steer_id" else ""
        groups.setdefault((r["strategy"], f"64 flows, closed {r['params']['in_flight']}/flow{per_generation}"),
                          []).append(r)
    assert set(rows) == set(groups)
    for key, runs in groups.items():
        g = rows[key]
        assert (int(g[2]), int(g[3])) == (len(runs), len(runs))
        lost = statistics.fmean(1e5 * r["datagrams"]["lost"] / r["datagrams"]["sent"] for r in runs)
        assert float(g[4].split()[0]) == pytest.approx(lost, abs=0.06)
        assert (int(g[5]), int(g[6])) == (sum(r["datagrams"]["lost"] for r in runs),
                                          sum(r["datagrams"]["sent"] for r in runs))
        assert int(g[7]) == sum(r["datagrams"]["late"] for r in runs)
        broken = statistics.fmean(100 * r["broken_flows"] / r["flows"]["total"] for r in runs)
        assert float(g[8].split()[0]) == pytest.approx(broken, abs=0.06)
        assert (int(g[9]), int(g[10])) == (sum(r["broken_flows"] for r in runs), sum(r["flows"]["total"] for r in runs))
        assert f"unattributed {sum(r['unattributed'] for r in runs)}" in g[11]
        for c in CAUSES:
            n = sum(r["causes"][c] or 0 for r in runs)
            if n:
                assert f"{c} {n}" in g[11]


def test_steer_id_flows_live_one_generation_and_the_records_say_so():
    """u_steer_id's loads: 64 fresh flows per generation (11 with 10 deploys), every one
    answered by its own generation's member only (the program: each id given a slot once,
    none found empty); the other strategies' 64 flows live the whole run."""
    for r in udp_runs(doc()):
        p = r["params"]
        if r["strategy"] == "u_steer_id":
            assert p["flow_lifetime"] == "generation"
            assert r["flows"]["total"] == p["flows"] * (p["deploys"] + 1)
            assert r["broken_flows"] == 0 and r["datagrams"]["lost"] == 0
            assert r["program"]["assigned"] == r["flows"]["total"]
            assert r["program"]["empty_slot"] == 0
        else:
            assert r["flows"]["total"] == p["flows"]
            assert r.get("program") is None


def test_an_unavailable_udp_strategy_shows_the_kernels_reason_not_a_zero(tmp_path):
    d = doc()
    why = "the kernel refuses it: sk_reuseport: BPF_PROG_LOAD of a minimal program: EINVAL"
    d["strategies_unavailable"] = {"u_steer_id": why}
    for i, r in enumerate(d["runs"]):
        if r.get("strategy") == "u_steer_id":
            d["runs"][i] = {k: r[k] for k in ("experiment", "strategy", "sharing", "params", "repeat",
                                                "kernel_release")}
            d["runs"][i].update(status="unavailable", error=why)
    assert errors(d) == []
    md = render(tmp_path, [d])
    rows = [line for line in md.splitlines() if line.startswith("| u_steer_id |")]
    assert rows and all(f"| unavailable: {why} |" in line for line in rows), rows


def test_a_cause_this_kernel_cannot_observe_is_shown_as_such_not_as_zero(tmp_path):
    d = doc()
    for r in udp_runs(d):
        left = r["causes"]["queue_purged_at_close"] or 0
        r["causes"]["queue_purged_at_close"] = None
        r["unattributed"] += left
    rows = rows_of(render(tmp_path, [d]), d["kernel_release"])
    for g in rows.values():
        assert "queue_purged_at_close n/a" in g[11]


def test_the_udp_strategies_across_kernels(tmp_path):
    host = doc()
    guest = copy.deepcopy(host)
    guest["kernel_release"], guest["kernel_version"] = "6.12.117+deb13-cloud-amd64", "6.12.117"
    for r in guest["runs"]:
        r["kernel_release"] = guest["kernel_release"]
        if r["experiment"] == "udp_grid" and r["strategy"] == "u_drain":
            r["datagrams"]["lost"] += 10
            r["datagrams"]["sent"] += 10
            r["unattributed"] += 10
    md = render(tmp_path, [host, guest])
    section = md.split("## UDP strategies across kernels", 1)[1].split("\n## ", 1)[0]
    assert f"| strategy | {guest['kernel_release']} | {host['kernel_release']} |" in section
    point = section.split("### UDP, 64 flows, closed 1/flow, work 0 us", 1)[1].split("###", 1)[0]
    row = re.search(r"^\| u_drain \| (.*) \| (.*) \|$", point, re.M)
    assert row, point
    for cell, d in zip(row.groups(), (guest, host)):
        runs = [r for r in udp_runs(d) if r["strategy"] == "u_drain" and r["params"]["in_flight"] == 1]
        k, n = sum(r["datagrams"]["lost"] for r in runs), sum(r["datagrams"]["sent"] for r in runs)
        assert f"({k}/{n})" in cell
        assert f"unattributed {sum(r['unattributed'] for r in runs)}" in cell


def test_one_kernel_has_no_udp_across_kernels_section(tmp_path):
    assert "## UDP strategies across kernels" not in render(tmp_path, [doc()])


def test_a_part_of_the_plan_is_laid_over_its_kernels_whole_document(tmp_path):
    """`report --experiments udp_grid` writes data/<release>.udp_grid.json: its UDP runs
    replace the whole document's, every other run stays, and the kernel's section says
    where the part came from."""
    from results.report.report_stats import load_documents
    whole = doc()
    part = copy.deepcopy(whole)
    part["experiments"] = ["udp_grid"]
    part["started_at"], part["finished_at"] = "2026-12-01T03:00:00Z", "2026-12-01T03:02:00Z"
    part["runs"] = [r for r in part["runs"] if r["experiment"] == "udp_grid"]
    for r in part["runs"]:
        r["datagrams"]["lost"] += 7
        r["datagrams"]["sent"] += 7
        r["unattributed"] += 7
    assert errors(part, "report-data") == []
    data = tmp_path / "data"
    data.mkdir()
    rel = whole["kernel_release"]
    (data / f"{rel}.json").write_text(json.dumps(whole))
    (data / f"{rel}.udp_grid.json").write_text(json.dumps(part))
    docs = load_documents(data)
    assert len(docs) == 1
    merged = docs[0]
    others = [r for r in whole["runs"] if r["experiment"] != "udp_grid"]
    assert [r for r in merged["runs"] if r["experiment"] != "udp_grid"] == others
    assert udp_runs(merged) == part["runs"]
    assert merged["parts"][0]["file"] == f"{rel}.udp_grid.json"
    # Rendered: the UDP table counts the part's losses, and the header names the part.
    assert make_report_main(data, tmp_path) == 0
    md = (tmp_path / "summary.md").read_text()
    assert f"Its udp_grid runs come from {rel}.udp_grid.json" in md
    rows = rows_of(md, rel)
    runs = [r for r in part["runs"] if r["strategy"] == "u_drain" and r["params"]["in_flight"] == 1]
    g = rows[("u_drain", "64 flows, closed 1/flow")]
    assert (int(g[5]), int(g[6])) == (sum(r["datagrams"]["lost"] for r in runs),
                                      sum(r["datagrams"]["sent"] for r in runs))


def test_a_part_with_no_whole_document_stands_alone(tmp_path):
    from results.report.report_stats import load_documents
    part = doc()
    part["experiments"] = ["udp_grid"]
    part["runs"] = udp_runs(part)
    (tmp_path / "x.udp_grid.json").write_text(json.dumps(part))
    docs = load_documents(tmp_path)
    assert len(docs) == 1 and docs[0]["runs"] == part["runs"] and "parts" not in docs[0]


def test_a_part_naming_an_unknown_experiment_breaks_the_schema():
    part = doc()
    part["experiments"] = ["udp_gird"]
    assert errors(part, "report-data") != []
