"""results/servers/servers.json, the real servers' table: the committed file follows its
schema and is consistent in itself and with results/servers/modes.py; each consistency
rule fails on a document that breaks it; the table's figures follow the data. No timing is
checked."""
import copy
import json
from pathlib import Path

import pytest

from results import figures_servers as fs
from results.schemas import errors
from results.servers import measure
from results.servers.check import problems
from results.servers.modes import MODES

COMMITTED = Path(__file__).resolve().parents[1] / "servers" / "servers.json"


@pytest.fixture(scope="module")
def doc():
    return json.loads(COMMITTED.read_text())


def test_the_committed_file_follows_the_schema(doc):
    assert errors(doc, "servers") == []


def test_the_committed_file_is_consistent(doc):
    assert problems(doc) == []


def test_every_mode_was_measured(doc):
    assert [m["id"] for m in doc["modes"]] == [m[0] for m in MODES]
    assert len({m["server"] for m in doc["modes"]}) >= 3  # the issue asks for three servers at least


def first(doc, mid):
    return next(m for m in doc["modes"] if m["id"] == mid)


def broken(doc, change):
    bad = copy.deepcopy(doc)
    change(bad)
    return bad


def set_in(path, value):
    def change(d):
        at = d
        for p in path[:-1]:
            at = at[p]
        at[path[-1]] = value
    return change


def kept_mode_closes(d):
    next(m for m in d["modes"] if m["sockets"] == "kept")["deploys"][0]["listener_closes"] = 3


def lost_without_cause(d):
    x = d["modes"][0]["deploys"][0]
    x["lost"] += 1
    x["verdict"] = "fail"


def pass_with_loss(d):
    x = d["modes"][0]["deploys"][0]
    x["lost"] += 1
    x["causes"]["no_listener"] = x["causes"].get("no_listener", 0) + 1
    x["verdict"] = "pass"


def orphans_beyond_kernel(d):
    x = d["modes"][0]["deploys"][0]
    x["lost"] += 5
    x["causes"]["orphaned_in_accept_queue"] = x["causes"].get("orphaned_in_accept_queue", 0) + 5
    x["orphaned_children"] = 0
    x["verdict"] = "fail"


def more_lost_than_attempts(d):
    x = next(x for m in d["modes"] for x in m["deploys"] if x["lost"])
    x["attempts"] = x["lost"] - 1


def outcomes_not_lost(d):
    x = next(x for m in d["modes"] for x in m["deploys"] if x["lost"])
    x["outcomes"] = {"reset_after_connect": x["lost"] + 1}


BROKEN = {
    "a kept mode closed a listener": (kept_mode_closes, "keeps its sockets"),
    "a loss with no cause": (lost_without_cause, "every loss has one cause"),
    "pass with a loss": (pass_with_loss, "verdict pass"),
    "orphans the kernel did not count": (orphans_beyond_kernel, "the kernel orphaned"),
    "another procedure": (lambda d: d["modes"][0].update(deploy="docs/examples/nginx/swap.sh"), "differs from modes.py"),
    "an unknown mode": (lambda d: d["modes"][0].update(id="lighttpd_reload"), "not a mode"),
    "a deploy missing": (lambda d: d["modes"][0]["deploys"].pop(), "deploys_per_mode"),
    "a load rate that is not attempts over span": (
        lambda d: d["modes"][0]["deploys"][0].update(load_per_s=d["modes"][0]["deploys"][0]["load_per_s"] * 2),
        "is not attempts / load_span_s"),
    "more lost than attempts": (more_lost_than_attempts, "> attempts"),
    "fewer than 2 rounds": (lambda d: d.update(deploys_per_mode=1), "an interval needs at least 2"),
    "a run that did not finish": (lambda d: d.update(complete=False), "not complete"),
    "outcomes that are not the lost": (outcomes_not_lost, "the lost outcomes add up to"),
}


@pytest.mark.parametrize("name", BROKEN)
def test_each_rule_fails_on_a_document_that_breaks_it(doc, name):
    change, words = BROKEN[name]
    found = problems(broken(doc, change))
    assert any(words in p for p in found), found


@pytest.mark.parametrize("path, value", [
    (["modes", 0, "deploys", 0, "lost"], "3"),
    (["modes", 0, "sockets"], "reused"),
    (["modes", 0, "deploys", 0, "causes", "orphaned_in_accept_queue"], 0),
    (["modes", 0, "start"], "/tmp/start.sh"),
    (["load"], "32"),
])
def test_the_schema_rejects_a_broken_document(doc, path, value):
    assert errors(broken(doc, set_in(path, value)), "servers")


def deploy(attempts, lost, closes=1, migrated=0, **causes):
    return {"attempts": attempts, "lost": lost, "causes": causes, "unattributed": 0, "listener_closes": closes,
            "orphaned_children": lost, "migrated": migrated, "load_per_s": 10000.0, "queued_at_deploy": 3}


def test_lost_per_100k_is_the_mean_over_deploys_with_a_t_interval():
    # 10 and 30 per 100,000: mean 20, t(1) = 12.706, sd 14.14, half-width 127.06 -> [0 (clipped), 147.1].
    assert fs.lost_per_100k([deploy(10000, 1), deploy(10000, 3)]) == "20.0 [0.0, 147.1]"
    # Zero in 300,000 attempts: the 3/n upper bound, 1.0 per 100,000.
    assert fs.lost_per_100k([deploy(100000, 0), deploy(200000, 0)]) == "0 (upper 95% 1.0)"


def test_lossless_says_what_was_measured():
    assert fs.lossless([deploy(1000, 0, closes=0)] * 3) == "yes: 0 lost in 3, no listener closed"
    assert fs.lossless([deploy(1000, 0), deploy(1000, 2)]).startswith("no: lost in 1 of 2")
    assert "not shown lossless" in fs.lossless([deploy(1000, 0, closes=2)] * 2)
    assert "migrated 5" in fs.lossless([deploy(1000, 0, closes=2, migrated=5)])
    assert "not observable" in fs.lossless([deploy(1000, 0, closes=None)])


def test_the_table_follows_the_data(doc, tmp_path):
    d = copy.deepcopy(doc)
    mode = d["modes"][0]
    for x in mode["deploys"]:
        x.update(lost=7, causes={"orphaned_in_accept_queue": 7}, orphaned_children=7, listener_closes=1, verdict="fail")
    path = tmp_path / "servers.json"
    path.write_text(json.dumps(d))
    row = next(line for line in fs.servers_table(path).splitlines() if f"`{mode['deploy'].removeprefix('docs/examples/')}`" in line)
    assert f"orphaned_in_accept_queue {7 * len(mode['deploys'])}" in row
    assert f"no: lost in {len(mode['deploys'])} of {len(mode['deploys'])}" in row


@pytest.mark.parametrize("argv, words", [
    (["--modes", "lighttpd_reload"], "unknown lighttpd_reload"),
    (["--deploys", "1"], "at least 2 deploys"),
])
def test_bad_usage_is_one_line_and_nonzero(argv, words):
    with pytest.raises(SystemExit) as e:
        measure.main(argv)
    assert isinstance(e.value.code, str) and words in e.value.code and "\n" not in e.value.code


def one_run(doc):
    """A document as one run of measure.py writes it (no runs list)."""
    d = copy.deepcopy(doc)
    d.pop("runs", None)
    return d


def test_combine_puts_the_runs_deploys_one_after_the_other(doc, tmp_path):
    a, b = one_run(doc), one_run(doc)
    b["started_at"], b["finished_at"] = "2030-01-01T00:00:00Z", "2030-01-01T00:10:00Z"
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    out = measure.combine([tmp_path / "a.json", tmp_path / "b.json"])
    assert out["deploys_per_mode"] == 2 * a["deploys_per_mode"]
    assert [len(m["deploys"]) for m in out["modes"]] == [2 * len(m["deploys"]) for m in a["modes"]]
    assert len(out["runs"]) == 2 and out["finished_at"] == "2030-01-01T00:10:00Z"
    assert errors(out, "servers") == [] and problems(out) == []
    out["runs"][0]["deploys_per_mode"] += 1
    assert any("the runs add up to" in p for p in problems(out))


@pytest.mark.parametrize("change, words", [
    (lambda d: d.update(load="closed:64"), "differs from"),
    (lambda d: d["modes"][0].update(deploy="docs/examples/nginx/swap.sh busy"), "other modes"),
])
def test_combine_refuses_runs_of_another_measurement(doc, tmp_path, change, words):
    a, b = one_run(doc), one_run(doc)
    change(b)
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    with pytest.raises(SystemExit) as e:
        measure.combine([tmp_path / "a.json", tmp_path / "b.json"])
    assert words in str(e.value.code)
