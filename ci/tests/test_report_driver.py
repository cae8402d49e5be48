"""The report over the kernel matrix (ci/matrix/report.py, `reuseport-check report --kernels`):
the guest's script, its data back from serial output, bad input, and a real guest whose
report comes back and renders while a kernel that cannot boot fails alone."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ci.matrix import driver
from ci.matrix import report
from results.schemas import errors

REPO = Path(__file__).resolve().parents[2]
CLI = Path(os.environ.get("RP_BUILD_DIR", REPO / "build")) / "bin" / "reuseport-check"


def test_guest_script_runs_the_report_in_the_guest_and_sends_every_data_file():
    script = report.guest_script("guest", 2, ["/rp/mod/inet_diag.ko", "/rp/mod/tcp_diag.ko"])
    lines = script.splitlines()
    assert lines[0].startswith("insmod /rp/mod/inet_diag.ko ")
    assert lines[1].startswith("insmod /rp/mod/tcp_diag.ko ")
    assert f"export RP_TIMEOUT_SCALE={report.GUEST_TIMEOUT_SCALE}" in lines
    run = next(x for x in lines if x.startswith(driver.GUEST_BIN))
    assert run == (f"{driver.GUEST_BIN} report --host-only --no-render --profile guest "
                   f"--out {report.GUEST_OUT} --repeats 2")
    loop = next(x for x in lines if x.startswith("for f in"))
    assert f"{report.GUEST_OUT}/data/*.json" in loop
    assert loop.index(report.BEGIN) < loop.index("cat ") < loop.index(report.END)
    assert lines[-1] == "exit $rc"


def test_a_part_of_the_plan_goes_to_the_guest_and_comes_back_under_its_own_name(tmp_path):
    script = report.guest_script("guest", None, [], ["udp_grid", "seed"])
    run = next(x for x in script.splitlines() if x.startswith(driver.GUEST_BIN))
    assert run.endswith("--experiments udp_grid,seed")
    path = report.store({"kernel_release": "6.1.0-50-cloud-amd64", "experiments": ["udp_grid", "seed"],
                         "runs": []}, tmp_path)
    # The name the binary gives it (cli/report_runs.cc data_file_name), so that it does
    # not replace the kernel's whole document.
    assert path == tmp_path / "data" / "6.1.0-50-cloud-amd64.udp_grid+seed.json"
    with pytest.raises(ValueError, match="unusable experiments"):
        report.store({"kernel_release": "6.1.0-50-cloud-amd64", "experiments": ["../x"]}, tmp_path)


def test_data_is_taken_from_between_the_report_markers():
    body = json.dumps({"schema": "reuseport-check/report-runs/1", "kernel_release": "6.1.0-50",
                       "runs": []})
    out = f"report: ...\n{report.BEGIN}\n{body}\n{report.END}\nRP-EXIT 0\n"
    assert driver.between_markers(out, report.BEGIN, report.END)["kernel_release"] == "6.1.0-50"
    with pytest.raises(ValueError, match="cut off"):
        driver.between_markers(out[:out.index(report.END)], report.BEGIN, report.END)
    with pytest.raises(ValueError, match="marker missing"):
        driver.between_markers("nothing here", report.BEGIN, report.END)


def test_store_refuses_a_document_without_a_release(tmp_path):
    with pytest.raises(ValueError, match="no usable kernel release"):
        report.store({"kernel_release": "../x"}, tmp_path)
    path = report.store({"kernel_release": "6.1.0-50-cloud-amd64", "runs": []}, tmp_path)
    assert path == tmp_path / "data" / "6.1.0-50-cloud-amd64.json"


def test_failures_in_names_errors_and_runs_that_did_not_reconcile():
    ok = {"status": "ok", "reconciled": True, "mismatches": []}
    doc = {"runs": [ok, {**ok, "reconciled": False, "mismatches": ["x"]}, {"status": "error", "error": "e"},
                    {"status": "unavailable", "error": "u"}, {"status": "ok"}]}
    assert report.failures_in(doc) == "1 run(s) ended in an error, 2 did not reconcile"
    assert report.failures_in({"runs": [ok]}) == "0 run(s) ended in an error, 0 did not reconcile"


def run_cli(*args, timeout=120):
    if not CLI.exists():
        pytest.skip(f"{CLI} is missing: build first (ci/setup.sh)")
    return subprocess.run([str(CLI), "report", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL,
                          env={**os.environ, "RP_SOURCE_DIR": str(REPO)})


@pytest.mark.parametrize("args, message", [
    (["--kernels", "5.10,9.9"], "unknown kernel(s) 9.9; known kernels: running, 5.10"),
    (["--kernels", "5.10", "--guest-profile", "huge"], "--guest-profile: huge not in {quick,full,guest}"),
    (["--kernels", "5.10", "-j", "0"], "--jobs: Value 0 not in range 1 to 16"),
    (["--kernels", "5.10", "--repeats", "0"], "--repeats: Value 0 not in range 1 to 1000"),
    (["--kernels", "5.10", "--experiments", "udp_grid,udp_gird"],
     "--experiments: udp_gird not in {grid,udp_grid,seed,seed_busy,blocked_worker,nginx_shape}"),
    (["--bogus"], "not expected: --bogus"),
])
def test_bad_input_is_exit_2_with_a_message(tmp_path, args, message):
    r = run_cli(*args, "--out", str(tmp_path), "--no-build")
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "data").exists() or not list((tmp_path / "data").iterdir())


@pytest.mark.vm
@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="qemu missing")
def test_a_guest_reports_and_renders_while_a_broken_kernel_fails_alone(
        matrix_with_a_broken_kernel, static_binary, processes_mentioning):
    tmp, cache = matrix_with_a_broken_kernel
    out = tmp / "report"
    r = subprocess.run(
        [sys.executable, "-P", "-m", "ci.matrix.report", "--matrix",
         str(tmp / "kernels.toml"), "--kernels", "broken,6.12", "--repeats", "1", "-j", "2",
         "--out", str(out), "--runs-dir", str(tmp / "runs"), "--no-build"],
        capture_output=True, text=True, timeout=1200, stdin=subprocess.DEVNULL, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "RP_CACHE_DIR": str(cache), "RP_STATIC_BIN": str(static_binary)})
    text = r.stdout + r.stderr
    assert r.returncode == 1, text  # the broken kernel, nothing else
    assert "Traceback" not in text
    assert processes_mentioning(str(tmp)) == [], "qemu left running"
    assert "broken: FAILED: " in text and "failed: broken" in text
    # The guest's progress came through while it ran.
    assert "6.12: [1/" in text and "6.12: done: " in text

    files = list((out / "data").glob("*.json"))
    assert len(files) == 1 and files[0].name.startswith("6.12."), files
    data = json.loads(files[0].read_text())
    assert data["schema"] == "reuseport-check/report-runs/1"
    assert errors(data, "report-data") == []
    assert data["profile"] == "guest"
    assert data["environment"]["where"] == "guest"
    assert data["environment"]["matrix_kernel"] == "6.12"
    assert data["environment"]["accel"] in ("kvm", "tcg")
    assert data["ceiling"]["served_per_second"] > 0
    runs = data["runs"]
    # --repeats 1 on the guest profile: 8 strategies x 3 grid points, 4 UDP strategies x 2
    # points, 2 seed swaps, 2 busy seed swaps (the published magnitude), 6 shapes.
    assert len(runs) == 42
    assert sum(r["experiment"] == "seed_busy" for r in runs) == 2
    assert sum(r["experiment"] == "udp_grid" for r in runs) == 8
    assert {r["status"] for r in runs} == {"ok"}, [r.get("error") for r in runs]
    assert all(r["kernel_release"] == data["kernel_release"] for r in runs)
    # UDP runs count datagrams (results/schemas report-data $defs/udp_run), the others attempts.
    tcp = [r for r in runs if r["experiment"] != "udp_grid"]
    assert all(r["attempts"] > 0 and r["served"] + r["failed"] == r["attempts"] for r in tcp)
    udp = [r["datagrams"] for r in runs if r["experiment"] == "udp_grid"]
    assert all(d["sent"] > 0 and d["answered"] + d["late"] + d["lost"] == d["sent"] for d in udp)
    # Every lost datagram has one cause, or is counted unattributed.
    assert all(sum(v or 0 for v in r["causes"].values()) + r["unattributed"] == r["datagrams"]["lost"]
               for r in runs if r["experiment"] == "udp_grid")
    # Every run's ledger was checked and reconciled (the guest's report would have exited 1
    # otherwise), and the flag agrees with the mismatches the run lists.
    assert [r for r in runs if r["reconciled"] is not True or r["mismatches"] != []] == []
    summary = (out / "summary.md").read_text()
    assert f"## {data['kernel_release']}" in summary
    assert data["environment"]["vcpus"] == 2
    assert "in a 2-vCPU qemu guest" in summary
