"""results/servers/servers_udp.json, the UDP servers' table (measure.py --udp): the committed
file follows the schema and is consistent in itself and with results/servers/modes.py's
UDP_MODES; each UDP rule fails on a document that breaks it; the table follows the data.
No timing is checked."""
import copy
import json
from pathlib import Path

import pytest

from results import figures_servers as fs
from results.schemas import errors
from results.servers import measure
from results.servers.check import problems
from results.servers.modes import UDP_MODES

COMMITTED = Path(__file__).resolve().parents[1] / "servers" / "servers_udp.json"


@pytest.fixture(scope="module")
def doc():
    return json.loads(COMMITTED.read_text())


def test_the_committed_file_follows_the_schema_and_is_consistent(doc):
    assert doc["protocol"] == "udp"
    assert errors(doc, "servers") == []
    assert problems(doc) == []


def test_every_udp_mode_was_measured(doc):
    assert [m["id"] for m in doc["modes"]] == [m[0] for m in UDP_MODES]
    assert all(len(m["deploys"]) >= 2 for m in doc["modes"])


def broken(doc, change):
    bad = copy.deepcopy(doc)
    change(bad)
    return bad


def losing(d):
    """The first deploy of the restart mode (it loses queries while no socket is bound)."""
    return next(m for m in d["modes"] if m["id"] == "unbound_restart")["deploys"][0]


def kept(d):
    return next(m for m in d["modes"] if m["sockets"] == "kept")["deploys"][0]


def loss_without_cause(d):
    x = kept(d)
    x.update(lost=x["lost"] + 1, verdict="fail")


def purge_in_a_kept_mode(d):
    x = kept(d)
    x.update(lost=x["lost"] + 2, verdict="fail", queue_purged=2)
    x["causes"]["queue_purged_at_close"] = x["causes"].get("queue_purged_at_close", 0) + 2


def purged_beyond_the_probe(d):
    x = losing(d)
    x["causes"]["queue_purged_at_close"] = x["causes"].get("queue_purged_at_close", 0) + 1
    x["lost"] += 1
    x["queue_purged"] = 0


def purged_where_not_observable(d):
    x = losing(d)
    x["causes"]["queue_purged_at_close"] = x["causes"].get("queue_purged_at_close", 0) + 1
    x["lost"] += 1
    x["queue_purged"] = None


def a_tcp_deploy(d):
    d["modes"][0]["deploys"][0] = {"attempts": 10, "lost": 0, "causes": {}, "unattributed": 0}


BROKEN = {
    "a loss with no cause": (loss_without_cause, "every loss has one cause"),
    "a kept mode purged a queue": (purge_in_a_kept_mode, "keeps its sockets"),
    "purged beyond what the probe saw": (purged_beyond_the_probe, "but the probe saw"),
    "purged where purges are not observable": (purged_where_not_observable, "not observable"),
    "pass with a loss": (lambda d: losing(d).update(verdict="pass"), "verdict pass"),
    "more lost than sent": (lambda d: losing(d).update(datagrams=losing(d)["lost"] - 1), "> datagrams"),
    "lost and late beyond sent": (lambda d: losing(d).update(late=losing(d)["datagrams"]), "one outcome each"),
    "a load rate that is not datagrams over span": (
        lambda d: losing(d).update(load_per_s=losing(d)["load_per_s"] * 2), "is not datagrams / load_span_s"),
    "a TCP mode in a UDP document": (lambda d: d["modes"][0].update(id="nginx_reload"), "not a UDP mode"),
    "a TCP deploy in a UDP document": (a_tcp_deploy, "a TCP deploy in a UDP document"),
}


@pytest.mark.parametrize("name", BROKEN)
def test_each_udp_rule_fails_on_a_document_that_breaks_it(doc, name):
    change, words = BROKEN[name]
    found = problems(broken(doc, change))
    assert any(words in p for p in found), found


@pytest.mark.parametrize("path, value", [
    (["modes", 0, "deploys", 0, "causes", "orphaned_in_accept_queue"], 1),
    (["modes", 0, "deploys", 0, "late"], -1),
    (["protocol"], "sctp"),
    (["request"], "a.test"),
])
def test_the_schema_rejects_a_broken_udp_document(doc, path, value):
    bad = copy.deepcopy(doc)
    at = bad
    for p in path[:-1]:
        at = at[p]
    at[path[-1]] = value
    assert errors(bad, "servers")


def test_the_udp_table_follows_the_data(doc, tmp_path):
    d = copy.deepcopy(doc)
    mode = next(m for m in d["modes"] if m["id"] == "unbound_swap")
    for x in mode["deploys"]:
        x.update(lost=4, causes={"queue_purged_at_close": 4}, unattributed=0, queue_purged=4, verdict="fail")
    path = tmp_path / "servers_udp.json"
    path.write_text(json.dumps(d))
    table = fs.servers_udp_table(path)
    row = next(line for line in table.splitlines() if "`unbound/swap.sh`" in line)
    n = len(mode["deploys"])
    assert f"queue_purged_at_close {4 * n}" in row
    assert f"no: lost in {n} of {n}" in row
    reload = next(line for line in table.splitlines() if "`unbound/reload.sh`" in line)
    if not any(x["lost"] for x in next(m for m in d["modes"] if m["id"] == "unbound_reload")["deploys"]):
        assert "yes: 0 lost in" in reload
    # A TCP document is not a UDP table.
    tcp = tmp_path / "servers.json"
    tcp.write_text(json.dumps({k: v for k, v in d.items() if k != "protocol"}))
    with pytest.raises(fs.FiguresError, match="not a UDP servers document"):
        fs.servers_udp_table(tcp)


def test_a_tcp_mode_is_unknown_to_measure_udp():
    with pytest.raises(SystemExit) as e:
        measure.main(["--udp", "--modes", "nginx_reload"])
    assert isinstance(e.value.code, str) and "unknown nginx_reload" in e.value.code and "unbound_restart" in e.value.code


def test_a_killed_measurement_keeps_its_whole_rounds(tmp_path, monkeypatch):
    """measure.py writes its document before the first deploy and after every round: killed
    in round 2, the file holds round 1, marked "complete": false (and check.py says so)."""
    import os
    if os.geteuid() != 0:
        pytest.skip("measure.py needs root")
    if not (measure.REPO / "build" / "bin" / "reuseport-check").exists() or not Path("/usr/sbin/unbound").exists():
        pytest.skip("needs the build and unbound (ci/setup.sh)")
    record = json.loads(COMMITTED.read_text())["modes"][1]["deploys"][0]
    calls = []

    def fake_deploy(check, start, deploy, work, udp=False):
        calls.append(deploy)
        if len(calls) > len(UDP_MODES):  # the first deploy of round 2
            raise KeyboardInterrupt
        return dict(record), ""

    monkeypatch.setattr(measure, "deploy_once", fake_deploy)
    out = tmp_path / "run.json"
    with pytest.raises(KeyboardInterrupt):
        measure.main(["--udp", "--deploys", "3", "--out", str(out)])
    d = json.loads(out.read_text())
    assert d["complete"] is False and d["deploys_per_mode"] == 1
    assert [len(m["deploys"]) for m in d["modes"]] == [1] * len(UDP_MODES)
    assert errors(d, "servers") == []
    assert any("not complete" in p for p in problems(d))
    # An --out that cannot be written fails before any deploy.
    calls.clear()
    with pytest.raises(SystemExit) as e:
        measure.main(["--udp", "--deploys", "3", "--out", str(tmp_path / "run.json" / "x.json")])
    assert "--out" in str(e.value.code) and calls == []
