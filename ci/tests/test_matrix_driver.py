"""The kernel matrix driver (ci/matrix): records back from serial output, kernel names,
and real guests: 5.10 and 6.12 pass a case while a kernel whose boot is broken on purpose
shows ERROR with its console log, and the run goes on with the others. What it writes
(results/<release>/results.json, `matrix --json`, junit.xml) is held to results/schemas and
read back with junitparser."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from xml.etree import ElementTree

import pytest

from ci.matrix import driver
from ci.matrix.driver import DriverError, parse_kernels, parse_progress, parse_results
from ci.vm.kernels import load_matrix
from results.junit import read_junit
from results import schemas

REPO = Path(__file__).resolve().parents[2]
CASE = "close_listener_with_queued_children"
# Two variants of the first case, IPv4/close and IPv6/SIGKILL, without migration: their
# expected outcome is the same on every kernel of the matrix.
VARIANTS = [f"{CASE}/tcp4_close_k2_b8_migrate0", f"{CASE}/tcp6_sigkill_k2_b8_migrate0"]


def doc(*records):
    return {"schema": "reuseport-check/results/1", "kernel": "5.10.0-43-cloud-amd64",
            "records": list(records)}


def rec(variant, verdict="PASS"):
    return {"case": CASE, "variant": variant, "kernel": "5.10.0-43-cloud-amd64",
            "repeat": 0, "expected": {}, "observed": {}, "verdict": verdict, "reason": "",
            "source": "x", "duration_s": 1.0}


# ---------------------------------------------------------------------------------------
# Parsing what comes back on ttyS1.


def test_records_are_parsed_from_between_the_markers():
    body = json.dumps(doc(rec("a"), rec("b", "SKIP")), indent=2)
    output = (f"\x1b[32mPASS \x1b[0m [1/2] {CASE}/a (1.0s)\nnoise {{ not json\n"
              f"{driver.BEGIN}\n{body}\n{driver.END}\n")
    got = parse_results(output)
    assert [r["variant"] for r in got["records"]] == ["a", "b"]
    assert got["records"][1]["verdict"] == "SKIP"


@pytest.mark.parametrize("output, message", [
    ("PASS  [1/2] c/v (1.0s)\n", "marker missing"),
    (f"{driver.BEGIN}\n{{\"records\": [", "cut off"),
    (f"{driver.BEGIN}\n{{\"records\": [}}\n{driver.END}\n", "not valid JSON"),
    (f"{driver.BEGIN}\n[1, 2]\n{driver.END}\n", "no records list"),
])
def test_incomplete_or_broken_results_are_an_error_not_a_record(output, message):
    with pytest.raises(ValueError, match=message):
        parse_results(output)


def test_progress_lines_tell_where_a_run_stopped():
    output = (f"reuseport-check: 3 variant(s)\n\x1b[1;31mERROR\x1b[0m [1/3] {CASE}/a (8.1s)\n"
              "      error: sock_diag dump: No such file or directory (ENOENT)\n"
              f"XFAIL [2/3] {CASE}/b (0.5s)\n")
    assert parse_progress(output) == [("ERROR", CASE, "a"), ("XFAIL", CASE, "b")]


def test_guest_script_loads_modules_in_order_and_prints_the_json_between_markers():
    script = driver.guest_script(["c/*v*"], ["/rp/mod/inet_diag.ko", "/rp/mod/tcp_diag.ko"])
    lines = script.splitlines()
    assert lines[0].startswith("insmod /rp/mod/inet_diag.ko")
    assert lines[1].startswith("insmod /rp/mod/tcp_diag.ko")
    assert f"{driver.GUEST_BIN} run --json {driver.GUEST_JSON} -j 2 --case 'c/*v*'" in script
    assert script.index(driver.BEGIN) < script.index(driver.END)
    assert lines[-1] == "exit $rc"


def test_results_document_is_sorted_and_names_its_kernel():
    run = driver.KernelRun("5.10", "5.10.0-43-cloud-amd64", True, doc=doc(),
                           records=[rec("b"), rec("a")], package="p", version="1")
    out, notes = driver.results_document(run)
    assert [r["variant"] for r in out["records"]] == ["a", "b"]
    assert out["matrix"] == {"kernel": "5.10", "package": "p", "version": "1"}
    assert [e["records"] for e in out["runs"]] == [[f"{CASE}/a #0", f"{CASE}/b #0"]]
    assert notes == []


# ---------------------------------------------------------------------------------------
# Merging a run into results/<release>/results.json: a narrower run keeps the others.

RELEASE = "5.10.0-43-cloud-amd64"


def full_doc(command, when, *records):
    return {"schema": "reuseport-check/results/1", "tool": "reuseport-check", "kernel": RELEASE,
            "machine": "x86_64", "started_at": when, "finished_at": when, "complete": True,
            "command": command, "expectations": "built in", "records": list(records)}


def kernel_run(command, when, *records):
    return driver.KernelRun("5.10", RELEASE, True, doc=full_doc(command, when, *records),
                            records=list(records), package="p", version="1")


def refs_by_run(written):
    return [(e["command"][-1], e["records"]) for e in written["runs"]]


def test_a_subset_run_keeps_the_records_it_did_not_run_and_replaces_those_it_did(tmp_path):
    first = kernel_run(["run", "all"], "2026-11-30T10:00:00Z",
                       rec("a"), rec("b", "SKIP"), rec("c"))
    driver.write_results(tmp_path, first)
    subset = kernel_run(["run", "b"], "2026-11-30T11:00:00Z", rec("b", "FAIL"))
    path = driver.write_results(tmp_path, subset)

    written = json.loads(path.read_text())
    assert schemas.errors(written, "results") == []
    assert [(r["variant"], r["verdict"]) for r in written["records"]] == \
        [("a", "PASS"), ("b", "FAIL"), ("c", "PASS")]
    assert refs_by_run(written) == [("all", [f"{CASE}/a #0", f"{CASE}/c #0"]),
                                    ("b", [f"{CASE}/b #0"])]
    assert written["command"] == ["run", "b"]  # the top level is the newest run's
    assert written["runs"][0]["finished_at"] == "2026-11-30T10:00:00Z"

    # A run that replaces every record of an older run leaves no entry for it.
    again = kernel_run(["run", "a,c"], "2026-11-30T12:00:00Z", rec("a"), rec("c", "XFAIL"))
    written = json.loads(driver.write_results(tmp_path, again).read_text())
    assert schemas.errors(written, "results") == []
    assert refs_by_run(written) == [("b", [f"{CASE}/b #0"]),
                                    ("a,c", [f"{CASE}/a #0", f"{CASE}/c #0"])]
    assert [r["verdict"] for r in written["records"]] == ["PASS", "FAIL", "XFAIL"]


def test_repeats_are_separate_records(tmp_path):
    r0, r1 = rec("a"), dict(rec("a"), repeat=1)
    driver.write_results(tmp_path, kernel_run(["run", "x2"], "2026-11-30T10:00:00Z", r0, r1))
    written = json.loads(driver.write_results(
        tmp_path, kernel_run(["run", "x1"], "2026-11-30T11:00:00Z",
                             dict(r0, verdict="FAIL"))).read_text())
    assert [(r["repeat"], r["verdict"]) for r in written["records"]] == [(0, "FAIL"), (1, "PASS")]
    assert refs_by_run(written) == [("x2", [f"{CASE}/a #1"]), ("x1", [f"{CASE}/a #0"])]


def test_a_file_written_before_runs_existed_becomes_the_first_run(tmp_path):
    legacy = dict(full_doc(["run", "old"], "2026-11-23T20:28:26Z", rec("a"), rec("b")),
                  matrix={"kernel": "5.10", "package": "p", "version": "0"})
    del legacy["started_at"]  # older documents lack it
    (tmp_path / RELEASE).mkdir()
    (tmp_path / RELEASE / "results.json").write_text(json.dumps(legacy))
    written = json.loads(driver.write_results(
        tmp_path, kernel_run(["run", "new"], "2026-11-30T11:00:00Z", rec("b"))).read_text())
    assert schemas.errors(written, "results") == []
    old_entry = written["runs"][0]
    assert old_entry == {"command": ["run", "old"], "started_at": None,
                         "finished_at": "2026-11-23T20:28:26Z", "expectations": "built in",
                         "matrix": {"kernel": "5.10", "package": "p", "version": "0"},
                         "records": [f"{CASE}/a #0"]}


def test_records_of_another_kernel_are_never_merged(tmp_path):
    logged = []
    (tmp_path / RELEASE).mkdir()
    other = dict(full_doc(["run", "copied"], "2026-11-30T10:00:00Z", dict(rec("a"), kernel="6.1.0")),
                 kernel="6.1.0", matrix={"kernel": "6.1", "package": None, "version": None})
    (tmp_path / RELEASE / "results.json").write_text(json.dumps(other))
    written = json.loads(driver.write_results(
        tmp_path, kernel_run(["run", "b"], "2026-11-30T11:00:00Z", rec("b")),
        log=logged.append).read_text())
    assert [r["variant"] for r in written["records"]] == ["b"]
    assert refs_by_run(written) == [("b", [f"{CASE}/b #0"])]
    assert "of kernel '6.1.0', not 5.10.0-43-cloud-amd64: its 1 record(s) are not kept" in logged[0]

    # The right kernel at the top, one record of another inside: that record goes.
    mixed = full_doc(["run", "mixed"], "2026-11-30T10:00:00Z", rec("a"), dict(rec("c"), kernel="6.1.0"))
    (tmp_path / RELEASE / "results.json").write_text(json.dumps(mixed))
    logged.clear()
    written = json.loads(driver.write_results(
        tmp_path, kernel_run(["run", "b"], "2026-11-30T11:00:00Z", rec("b")),
        log=logged.append).read_text())
    assert [(r["variant"], r["kernel"]) for r in written["records"]] == \
        [("a", RELEASE), ("b", RELEASE)]
    assert refs_by_run(written) == [("mixed", [f"{CASE}/a #0"]), ("b", [f"{CASE}/b #0"])]
    assert "1 old record(s) of another kernel (6.1.0) are not kept" in logged[0]


def test_an_unreadable_results_file_is_moved_aside_not_lost(tmp_path):
    (tmp_path / RELEASE).mkdir()
    (tmp_path / RELEASE / "results.json").write_text('{"records": [')
    logged = []
    path = driver.write_results(tmp_path, kernel_run(["run", "b"], "2026-11-30T11:00:00Z",
                                                      rec("b")), log=logged.append)
    aside = list((tmp_path / RELEASE).glob("results.json.unreadable-*"))
    assert [p.read_text() for p in aside] == ['{"records": [']
    assert "not readable as JSON" in logged[0] and aside[0].name in logged[0]
    assert [r["variant"] for r in json.loads(path.read_text())["records"]] == ["b"]


# ---------------------------------------------------------------------------------------
# Kernel names.


def test_kernel_names_are_checked_against_the_matrix():
    matrix = load_matrix()
    assert parse_kernels("all", matrix) == list(matrix)
    assert parse_kernels("6.12, 5.10,6.12", matrix) == ["6.12", "5.10"]
    with pytest.raises(DriverError, match=r"unknown kernel\(s\) 9.9, 4.19; known kernels: "
                                          r"running, 5.10, 6.1, 6.12, 6.17, 7.2"):
        parse_kernels("9.9,5.10,4.19", matrix)


def pytest_driver(*args, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "pytest", str(REPO / "ci/matrix"), "-q",
                           "-p", "no:cacheprovider", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_driver_rejects_unknown_kernels_as_usage_error(tmp_path):
    r = pytest_driver("--kernels", "5.10,9.9", "--results-dir", str(tmp_path),
                      "--no-build", env={"RP_STATIC_BIN": sys.executable}, timeout=60)
    assert r.returncode == 4, r.stdout + r.stderr
    assert "unknown kernel(s) 9.9; known kernels: running, 5.10" in r.stderr
    assert "Traceback" not in r.stdout + r.stderr


def test_matrix_command_rejects_unknown_kernels_with_exit_2(tmp_path, cli):
    if subprocess.run([cli, "matrix", "--help"], capture_output=True).returncode != 0:
        pytest.skip(f"{cli} predates the matrix command")
    r = subprocess.run([cli, "matrix", "--kernels", "9.9", "--results-dir", str(tmp_path)],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "RP_SOURCE_DIR": str(REPO)})
    assert r.returncode == 2, r.stdout + r.stderr
    assert "unknown kernel(s) 9.9; known kernels: running, 5.10, 6.1, 6.12, 6.17, 7.2" \
        in r.stderr


def test_matrix_command_on_the_running_kernel_writes_json_results_and_junit(tmp_path, static_binary, cli, require_root):
    """No guest: `matrix --kernels running` runs the static binary on the host, through the
    same pytest plugin, and writes the three documents a CI job reads."""
    results, out = tmp_path / "results", tmp_path / "matrix.json"
    r = subprocess.run([cli, "matrix", "--kernels", "running", "--case", VARIANTS[0],
                        "--results-dir", str(results), "--json", str(out)],
                       capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
                       env={**os.environ, "RP_SOURCE_DIR": str(REPO), "RP_STATIC_BIN": str(static_binary)})
    assert r.returncode == 0, r.stdout + r.stderr
    release = os.uname().release

    doc = json.loads(out.read_text())
    assert schemas.errors(doc, "matrix") == []
    assert doc["kernels"] == [{"name": "running", "release": release, "error": ""}]
    assert [(x["case"] + "/" + x["variant"], x["kernel"], x["verdict"]) for x in doc["records"]] == \
        [(VARIANTS[0], release, "PASS")]

    written = json.loads((results / release / "results.json").read_text())
    assert schemas.errors(written, "results") == []
    assert written["matrix"] == {"kernel": "running", "package": None, "version": None}
    assert written["records"] == doc["records"]

    suites, cases = read_junit(results / "junit.xml")
    assert [(s.tests, s.failures, s.errors, s.skipped) for s in suites] == [(1, 0, 0, 0)], suites
    # "@kernel-running": the xdist_group that keeps a kernel's items on one worker.
    assert [(name.split("::")[1].split("@")[0], c.outcome) for name, c in cases.items()] == \
        [(f"test_variant[running-{VARIANTS[0]}]", "passed")]


def test_matrix_case_x_leaves_the_other_variants_records_in_place(tmp_path, static_binary, cli, require_root):
    """`matrix --case X` twice with different X into one results dir: the file holds the
    union, `runs` names the run of each record, and running X again replaces X's record."""
    results = tmp_path / "results"
    release = os.uname().release
    path = results / release / "results.json"

    def matrix(variant: str, n: int) -> dict:
        out = tmp_path / f"matrix{n}.json"
        r = subprocess.run([cli, "matrix", "--kernels", "running", "--case", variant,
                            "--results-dir", str(results), "--json", str(out)],
                           capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
                           env={**os.environ, "RP_SOURCE_DIR": str(REPO),
                                "RP_STATIC_BIN": str(static_binary)})
        assert r.returncode == 0, r.stdout + r.stderr
        [record] = json.loads(out.read_text())["records"]
        assert f"{record['case']}/{record['variant']}" == variant
        return record

    first = matrix(VARIANTS[0], 1)
    second = matrix(VARIANTS[1], 2)
    written = json.loads(path.read_text())
    assert schemas.errors(written, "results") == []
    assert written["records"] == [first, second]  # VARIANTS are in sorted order
    assert [e["records"] for e in written["runs"]] == [[f"{VARIANTS[0]} #0"], [f"{VARIANTS[1]} #0"]]
    assert [e["command"][-2:] for e in written["runs"]] == \
        [["--case", VARIANTS[0]], ["--case", VARIANTS[1]]]

    third = matrix(VARIANTS[0], 3)
    written = json.loads(path.read_text())
    assert schemas.errors(written, "results") == []
    assert written["records"] == [third, second]
    assert [e["records"] for e in written["runs"]] == [[f"{VARIANTS[1]} #0"], [f"{VARIANTS[0]} #0"]]
    # The replaced record is the third run's, not the first's: its run started after the
    # second run finished.
    assert written["runs"][1]["started_at"] >= written["runs"][0]["finished_at"]
    assert written["started_at"] == written["runs"][1]["started_at"]


# ---------------------------------------------------------------------------------------
# Real guests.


@pytest.mark.vm
@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="qemu missing")
def test_guests_pass_and_a_broken_kernel_errors_without_stopping_the_others(
        matrix_with_a_broken_kernel, static_binary, processes_mentioning):
    tmp, cache = matrix_with_a_broken_kernel
    results = tmp / "results"
    events = tmp / "events.jsonl"
    args = ["--matrix", str(tmp / "kernels.toml"), "--kernels", "broken,5.10,6.12",
            "--results-dir", str(results), "--junitxml", str(tmp / "junit.xml"),
            "--no-build", "-n", "2", "--dist", "loadgroup"]
    for v in VARIANTS:
        args += ["--case", v]
    r = pytest_driver(*args, env={"RP_CACHE_DIR": str(cache), "RP_STATIC_BIN": str(static_binary),
                                  "RP_MATRIX_EVENTS": str(events)})
    out = r.stdout + r.stderr
    assert r.returncode == 1, out  # the broken kernel's errors, nothing else
    assert "Traceback" not in out
    assert processes_mentioning(str(tmp)) == [], "qemu left running"

    cases = ElementTree.parse(tmp / "junit.xml").getroot().iter("testcase")
    outcome = {}
    for tc in cases:
        name = tc.get("name").split("@")[0]
        kind = [c.tag for c in tc if c.tag in ("failure", "error", "skipped")]
        outcome[name] = (kind[0] if kind else "passed", tc)
    assert len(outcome) == 3 * len(VARIANTS)
    for v in VARIANTS:
        for k in ("5.10", "6.12"):
            assert outcome[f"test_variant[{k}-{v}]"][0] == "passed", out
        kind, tc = outcome[f"test_variant[broken-{v}]"]
        assert kind == "error", out  # setup error: infrastructure, never a failure
        message = tc.find("error").get("message")
        assert "kernel broken: phase boot" in message
        assert "console log: " in message and str(results / "runs" / "broken") in message

    # The same file through junitparser: one suite whose counts are its testcases', the
    # broken kernel's items errors (never failures), the others passed.
    suites, cases = read_junit(tmp / "junit.xml")
    assert [(s.tests, s.failures, s.errors, s.skipped) for s in suites] == \
        [(3 * len(VARIANTS), 0, len(VARIANTS), 0)], suites
    by_item = {name.split("::")[1].split("@")[0]: c for name, c in cases.items()}
    for v in VARIANTS:
        for k in ("5.10", "6.12"):
            assert by_item[f"test_variant[{k}-{v}]"].outcome == "passed"
        assert by_item[f"test_variant[broken-{v}]"].outcome == "error"
        assert "kernel broken: phase boot" in by_item[f"test_variant[broken-{v}]"].message

    for k, series in (("5.10", "5.10."), ("6.12", "6.12.")):
        files = list(results.glob(f"{series}*/results.json"))
        assert len(files) == 1, list(results.iterdir())
        written = json.loads(files[0].read_text())
        assert schemas.errors(written, "results") == []
        assert written["matrix"]["kernel"] == k
        assert sorted(f"{x['case']}/{x['variant']}" for x in written["records"]) == sorted(VARIANTS)
        assert all(x["kernel"] == files[0].parent.name for x in written["records"])
    assert not list(results.glob("9.9*")), "no results file for a kernel that did not run"

    lines = [json.loads(x) for x in events.read_text().splitlines()]
    errors = [e for e in lines if e["ev"] == "record" and e["kernel"] == "broken"]
    assert {e["record"]["verdict"] for e in errors} == {"ERROR"} and len(errors) == len(VARIANTS)


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # it ended meanwhile
        return b""


@pytest.mark.vm
@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="qemu missing")
def test_a_sigkilled_matrix_leaves_no_guest_running(tmp_path, static_binary, processes_mentioning, cli, require_root):
    """SIGKILL `reuseport-check matrix` while two guests run cases: its pytest gets SIGTERM
    (the parent-death signal it was spawned with), the xdist workers die with pytest and the
    qemus with their workers. Nothing that mentions the run's directory is left a few
    seconds later (before the workers had a parent-death signal, qemus ran on for 5-25 s here)."""
    proc = subprocess.Popen([cli, "matrix", "--kernels", "6.12,6.1", "--case", "close_listener_with_queued_children",
                             "--results-dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                            env={**os.environ, "RP_SOURCE_DIR": str(REPO), "RP_STATIC_BIN": str(static_binary)})
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            qemus = [p for p in processes_mentioning(str(tmp_path)) if b"qemu-system" in cmdline(p)]
            if len(qemus) == 2:
                break
            assert proc.poll() is None, "matrix ended before both guests ran"
            time.sleep(0.5)
        assert len(qemus) == 2, "the guests never started"
        time.sleep(8)  # booted, into the cases
    finally:
        proc.kill()
        proc.wait()
    # A SIGKILLed process's children get their parent-death signal at once; 2 s is slack for
    # a loaded machine, far below the 15-25 s the guests lived on without it.
    deadline = time.monotonic() + 2
    while processes_mentioning(str(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_mentioning(str(tmp_path)) == [], "left running after the SIGKILL"


@pytest.mark.vm
@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="qemu missing")
def test_a_guest_that_hangs_after_some_cases_keeps_their_records(tmp_path, static_binary,
                                                                 monkeypatch):
    """The guest runs a few variants and then hangs (a sleep standing for a kernel that
    stops answering). The driver ends it at its idle limit (idle x the guest's own scale),
    says so, and keeps the records the guest streamed on ttyS2 before: real verdicts, not
    ERRORs. The console's tail comes with the run's error records."""
    real_script = driver.guest_script

    def hanging(globs, modules, vcpus=2, host_us=None):
        # After the cases, before the document comes back: the journal has it all.
        return real_script(globs, modules, vcpus, host_us).replace("rc=$?", "rc=$?; sleep 1000")

    monkeypatch.setattr(driver, "guest_script", hanging)
    selection = ["bind_rules/tcp4_*"]
    n = len(driver.list_variants(static_binary, selection))
    run = driver.run_guest("5.10", selection, n, binary=static_binary, workdir=tmp_path,
                           timeouts=driver.Timeouts(run=600, idle=1.0))
    assert not run.ok
    assert "no output in phase run" in run.error and "x the guest's measured scale" in run.error
    assert f"{n} record(s) kept from the guest's journal" in run.error
    assert sorted(r["variant"] for r in run.records) == \
        sorted(v for _, v in driver.list_variants(static_binary, selection))
    assert {r["verdict"] for r in run.records} == {"PASS"}
    assert all(r["kernel"] == run.release for r in run.records)
    assert run.timeout_scale is not None and run.vcpus == 2
    broken = driver.error_record(run, "c", "v", run.error)
    assert "console_tail" in broken or not run.console_log.read_text().strip()
