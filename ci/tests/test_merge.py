"""`reuseport-check merge DIR...` on results dirs made here (no guest): what it writes
(results/<release>/results.json, JUnit, --json, held to results/schemas and read back with
junitparser), its exit status, and its refusals: a missing dir, a dir without results,
inputs that disagree, a broken input. test_shard_merge.py merges real shards."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from ci.matrix.merge import MergeError, merge_results
from results import schemas
from results.junit import read_junit

REPO = Path(__file__).resolve().parents[2]
PLAN_KERNELS = ["5.10", "6.12"]
PLAN_VARIANTS = ["c/a", "c/b", "d/a"]
RELEASE = {"5.10": "5.10.0-43-cloud-amd64", "6.12": "6.12.117+deb13-cloud-amd64"}


def record(kernel: str, cv: str, verdict: str = "PASS", repeat: int = 0) -> dict:
    case, variant = cv.split("/")
    return {"case": case, "variant": variant, "kernel": RELEASE.get(kernel, kernel),
            "repeat": repeat, "expected": {}, "observed": {}, "verdict": verdict,
            "reason": "", "source": "x", "duration_s": 0.5}


def results_doc(kernel: str, records: list[dict], finished: str) -> dict:
    matrix = {"kernel": kernel, "package": f"linux-image-{RELEASE[kernel]}", "version": "1"}
    return {"schema": "reuseport-check/results/1", "tool": "reuseport-check",
            "kernel": RELEASE[kernel], "machine": "x86_64", "started_at": finished,
            "finished_at": finished, "complete": True,
            "command": ["/rp/bin/reuseport-check", "run", "--json", "/tmp/results.json"],
            "expectations": "built in", "records": records, "matrix": matrix,
            "runs": [{"command": ["/rp/bin/reuseport-check", "run"], "started_at": finished,
                      "finished_at": finished, "expectations": "built in", "matrix": matrix,
                      "records": [f"{r['case']}/{r['variant']} #{r['repeat']}" for r in records]}]}


def junit_xml(cells: list[tuple[str, str, str]]) -> str:
    cases = ""
    for kernel, cv, verdict in cells:
        inner = "" if verdict in ("PASS", "XFAIL", "SKIP") else \
            f'<failure message="{verdict} on {kernel}">x</failure>'
        cases += (f'<testcase classname="ci.matrix.test_kernels" '
                  f'name="test_variant[{kernel}-{cv}]@kernel-{kernel}" time="0.1">{inner}</testcase>')
    bad = sum(v not in ("PASS", "XFAIL", "SKIP") for _, _, v in cells)
    return (f'<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0" '
            f'failures="{bad}" skipped="0" tests="{len(cells)}" time="1.0" '
            f'timestamp="2026-12-01T10:00:00" hostname="runner">{cases}</testsuite></testsuites>')


def make_shard(root: Path, index: int, cells: list[tuple[str, str, str]], count: int = 2,
               finished: str = "2026-12-01T10:00:00Z", errors: dict | None = None) -> Path:
    """A --results-dir of `matrix --shard index/count ... --json DIR/matrix.json` holding
    `cells` (kernel, case/variant, verdict); `errors` kernels never booted."""
    d = root / f"shard{index}"
    errors = errors or {}
    kernels = list(dict.fromkeys(k for k, _, _ in cells))
    for k in kernels:
        if k in errors:
            continue
        recs = [record(k, cv, v) for kk, cv, v in cells if kk == k]
        (d / RELEASE[k]).mkdir(parents=True, exist_ok=True)
        (d / RELEASE[k] / "results.json").write_text(json.dumps(results_doc(k, recs, finished)))
    d.mkdir(parents=True, exist_ok=True)
    (d / "junit.xml").write_text(junit_xml(cells))
    doc = {"schema": "reuseport-check/matrix/1", "complete": True,
           "kernels": [{"name": k, "release": RELEASE[k], "error": errors.get(k, "")} for k in kernels],
           "records": [record(k, cv, v) for k, cv, v in cells],
           "shard": {"index": index, "count": count, "kernels": PLAN_KERNELS, "variants": PLAN_VARIANTS}}
    assert schemas.errors(doc, "matrix") == []
    (d / "matrix.json").write_text(json.dumps(doc))
    return d


FIRST = [("5.10", "c/a", "PASS"), ("5.10", "c/b", "PASS"), ("5.10", "d/a", "SKIP")]
SECOND = [("6.12", "c/a", "PASS"), ("6.12", "c/b", "XFAIL"), ("6.12", "d/a", "PASS")]


def merge(cli, *args, cwd=None):
    return subprocess.run([cli, "merge", *map(str, args)], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, cwd=cwd, env={**os.environ, "RP_SOURCE_DIR": str(REPO)})


def test_two_shards_merge_into_one_table_junit_json_and_results_files(cli, tmp_path):
    a, b = make_shard(tmp_path, 1, FIRST), make_shard(tmp_path, 2, SECOND)
    out = tmp_path / "out"
    # Relative dirs: the Python runs in the source tree, the paths must still be the user's.
    r = merge(cli, "shard2", "shard1", "--results-dir", "out", "--json", "out/m.json", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr

    table = [line.split() for line in r.stdout.splitlines()]
    assert ["case/variant", "5.10", "6.12"] in table  # the plan's order, not the arguments'
    assert ["*", "c/b", "PASS", "XFAIL"] in table and ["*", "d/a", "SKIP", "PASS"] in table
    assert ["c/a", "PASS", "PASS"] in table
    assert "matrix: 2 kernel(s) x 3 variant(s); 2 row(s) differ between kernels (*); 0 cell(s)" in r.stdout

    doc = json.loads((out / "m.json").read_text())
    assert schemas.errors(doc, "matrix") == []
    assert doc["complete"] is True and "shard" not in doc
    assert doc["kernels"] == [{"name": k, "release": RELEASE[k], "error": ""} for k in PLAN_KERNELS]
    assert doc["records"] == [record(k, cv, v) for k, cv, v in FIRST + SECOND]

    for k, cells in (("5.10", FIRST), ("6.12", SECOND)):
        written = json.loads((out / RELEASE[k] / "results.json").read_text())
        assert schemas.errors(written, "results") == []
        assert written["records"] == [record(k, cv, v) for _, cv, v in cells]

    suites, cases = read_junit(out / "junit.xml")
    assert [(s.tests, s.failures, s.errors, s.skipped) for s in suites] == [(6, 0, 0, 0)]
    assert len(cases) == 6


def test_a_kernel_split_over_two_shards_is_one_file_with_both_runs(tmp_path):
    one = results_doc("5.10", [record("5.10", "c/a"), record("5.10", "d/a")], "2026-12-01T10:00:00Z")
    two = results_doc("5.10", [record("5.10", "c/b", "FAIL")], "2026-12-01T10:05:00Z")
    merged = merge_results([("s2", two), ("s1", one)])
    assert schemas.errors(merged, "results") == []
    assert [(x["case"], x["variant"], x["verdict"]) for x in merged["records"]] == \
        [("c", "a", "PASS"), ("c", "b", "FAIL"), ("d", "a", "PASS")]
    assert [e["records"] for e in merged["runs"]] == [["c/a #0", "d/a #0"], ["c/b #0"]]
    assert merged["finished_at"] == "2026-12-01T10:05:00Z"  # the newest run's fields

    # Into a file already there: the merged records replace its same keys, the others stay.
    old = results_doc("5.10", [record("5.10", "c/a", "FAIL"), record("5.10", "e/z")], "2026-11-01T00:00:00Z")
    merged = merge_results([("s1", one), ("s2", two)], old)
    assert [(x["case"], x["variant"], x["verdict"]) for x in merged["records"]] == \
        [("c", "a", "PASS"), ("c", "b", "FAIL"), ("d", "a", "PASS"), ("e", "z", "PASS")]
    assert [e["records"] for e in merged["runs"]] == [["e/z #0"], ["c/a #0", "d/a #0"], ["c/b #0"]]
    assert schemas.errors(merged, "results") == []


def test_the_same_record_with_two_verdicts_is_refused_naming_both(tmp_path):
    one = results_doc("5.10", [record("5.10", "c/a")], "2026-12-01T10:00:00Z")
    two = results_doc("5.10", [record("5.10", "c/a", "FAIL")], "2026-12-01T10:05:00Z")
    with pytest.raises(MergeError, match=r"kernel 5.10.0-43-cloud-amd64: c/a #0 is PASS in s1 but FAIL in s2"):
        merge_results([("s1", one), ("s2", two)])
    # Alike twice (the same dir given twice): one record, one run naming it.
    merged = merge_results([("s1", one), ("s1 again", one)])
    assert len(merged["records"]) == 1 and [e["records"] for e in merged["runs"]] == [["c/a #0"]]


def test_failing_cells_and_a_failing_junit_exit_1(cli, tmp_path):
    make_shard(tmp_path, 1, FIRST)
    make_shard(tmp_path, 2, [("6.12", "c/a", "FAIL")] + SECOND[1:])
    r = merge(cli, tmp_path / "shard1", tmp_path / "shard2", "--results-dir", tmp_path / "out")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "1 cell(s) FAIL, XPASS or ERROR" in r.stdout
    suites, _ = read_junit(tmp_path / "out" / "junit.xml")
    assert [(s.tests, s.failures) for s in suites] == [(6, 1)]


def test_a_kernel_that_never_booted_shows_error_from_its_shards_document(cli, tmp_path):
    make_shard(tmp_path, 1, FIRST)
    make_shard(tmp_path, 2, [("6.12", cv, "ERROR") for _, cv, _ in SECOND],
               errors={"6.12": "phase boot: no console"})
    r = merge(cli, tmp_path / "shard1", tmp_path / "shard2", "--results-dir", tmp_path / "out")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "error: phase boot: no console" in r.stdout
    assert not (tmp_path / "out" / RELEASE["6.12"]).exists()


def test_a_missing_shard_is_said_and_exits_1_with_an_incomplete_document(cli, tmp_path):
    make_shard(tmp_path, 1, FIRST)
    r = merge(cli, tmp_path / "shard1", "--results-dir", tmp_path / "out", "--json", tmp_path / "m.json")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "shard(s) 2 of 2 missing" in r.stderr
    assert ["c/a", "PASS", "-"] in [line.split() for line in r.stdout.splitlines()]
    doc = json.loads((tmp_path / "m.json").read_text())
    assert doc["complete"] is False and schemas.errors(doc, "matrix") == []


@pytest.mark.parametrize("breakage, message", [
    ("missing", "shard9: no such directory"),
    ("empty", "no results (no <release>/results.json, junit.xml or matrix --json document)"),
    ("conflict", "kernel 6.12: c/b #0 is XFAIL in"),
    ("two releases", "kernel 6.12 is release 6.12.117+deb13-cloud-amd64 in"),
    ("bad results", "not a matrix results file: at records/0: 'verdict' is a required property"),
    ("other plan", "is of another plan than"),
    ("bad json", "not readable as JSON"),
])
def test_inputs_that_cannot_be_merged_are_one_line_exit_2_and_nothing_written(cli, tmp_path, breakage,
                                                                              message):
    dirs = [make_shard(tmp_path, 1, FIRST), make_shard(tmp_path, 2, SECOND)]
    if breakage == "missing":
        dirs.append(tmp_path / "shard9")
    elif breakage == "empty":
        (tmp_path / "shard9").mkdir()
        dirs.append(tmp_path / "shard9")
    elif breakage == "conflict":
        dirs.append(make_shard(tmp_path / "rerun", 2, [("6.12", "c/b", "PASS")]))
    elif breakage == "two releases":
        doc = json.loads((dirs[1] / "matrix.json").read_text())
        doc["kernels"][0]["release"] = "6.12.999"
        for r in doc["records"]:
            r["kernel"] = "6.12.999"
        (tmp_path / "x").mkdir()
        (tmp_path / "x" / "matrix.json").write_text(json.dumps(doc))
        dirs.append(tmp_path / "x")
    elif breakage == "bad results":
        path = dirs[0] / RELEASE["5.10"] / "results.json"
        doc = json.loads(path.read_text())
        del doc["records"][0]["verdict"]
        path.write_text(json.dumps(doc))
    elif breakage == "other plan":
        doc = json.loads((dirs[1] / "matrix.json").read_text())
        doc["shard"]["variants"] = PLAN_VARIANTS[:2]
        (dirs[1] / "matrix.json").write_text(json.dumps(doc))
    elif breakage == "bad json":
        (dirs[1] / RELEASE["6.12"] / "results.json").write_text("{")
    out = tmp_path / "out"
    r = merge(cli, *dirs, "--results-dir", out, "--json", tmp_path / "m.json")
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert not list(out.rglob("*.json")) and not (out / "junit.xml").exists()
    assert not (tmp_path / "m.json").exists()


def test_bad_usage_is_exit_2(cli, tmp_path):
    r = merge(cli)
    assert r.returncode == 2 and "DIR is required" in r.stderr, r.stderr
    (tmp_path / "file").write_text("x")
    make_shard(tmp_path, 1, FIRST)
    r = merge(cli, tmp_path / "shard1", "--results-dir", tmp_path / "file" / "sub")
    assert r.returncode == 2, r.stdout + r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
