"""The guest's measured speed (ci/matrix/speed.py), the console tail of a guest's ERRORs, and
what the results say of how a guest ran."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ci.matrix import driver, speed
from ci.matrix.results import KernelRun, add_console_tail, error_record, results_document
from ci.vm.initramfs import find_busybox
from results import schemas


def sh(script: str) -> str:
    return subprocess.run([str(find_busybox()), "sh", "-c", script], capture_output=True,
                          text=True, check=True).stdout


@pytest.mark.parametrize("guest_ms, host_us", [
    (10, 3000), (300, 3000), (600, 2500), (2000, 3000), (100000, 10), (1, 100000)])
def test_the_guests_shell_computes_the_scale_python_expects(guest_ms, host_us):
    out = sh(f"g={guest_ms}\n" + "\n".join(speed.scale_lines(host_us, 2)) +
             "\necho env=$RP_TIMEOUT_SCALE")
    got = speed.scale_of(out)
    want = speed.expected_scale(guest_ms, host_us)
    assert got == {"scale": want, "guest_ms": guest_ms, "host_us": host_us, "copies": 2}
    assert f"env={want}" in out
    assert speed.MIN_SCALE <= want <= speed.MAX_SCALE


def test_the_scale_follows_the_ratio_and_is_clamped():
    # 60 times slower than the host (what TCG measured here) is the scale the catalogue was
    # validated at; KVM (about the host's speed) is 1; past 100 the cases refuse it.
    assert speed.expected_scale(180, 3000) == 10
    assert speed.expected_scale(3, 3000) == 1
    assert speed.expected_scale(10 ** 6, 1) == 100
    assert speed.scale_of("no line here") is None


def test_the_whole_measurement_runs_in_busybox_and_prints_one_line():
    # On the host the "guest" is the host: the scale comes out at 1 (or a little more on a
    # loaded machine), never absurd.
    out = sh("\n".join(speed.guest_lines(2, speed.host_us())))
    got = speed.scale_of(out)
    assert got is not None and got["copies"] == 2 and 1 <= got["scale"] <= 10, out


def test_the_guest_script_measures_itself_instead_of_a_constant_scale():
    script = driver.guest_script(["c/*"], [], vcpus=4, host_us=2500)
    assert "RP_TIMEOUT_SCALE=10" not in script
    assert "for c in $(seq 4)" in script  # as many copies as CPUs, as many as run at once
    assert f"{driver.GUEST_BIN} run --json {driver.GUEST_JSON} -j 4 " in script  # one variant per vCPU
    measured = script.index("export RP_TIMEOUT_SCALE=$s")
    assert measured < script.index(f"{driver.GUEST_BIN} run")


def make_run(tmp_path: Path, console: str | None) -> KernelRun:
    log = None
    if console is not None:
        log = tmp_path / "console.tcg.log"
        log.write_text(console)
    return KernelRun("6.12", "6.12.1-test", True, console_log=log, accel="tcg", vcpus=2,
                     tcg_thread="single", timeout_scale=9, package="p", version="1",
                     doc={"kernel": "6.12.1-test", "records": []})


def test_errors_of_a_guest_carry_the_consoles_last_lines(tmp_path):
    lines = [f"[ {i}.0] line {i}" for i in range(50)]
    run = make_run(tmp_path, "\n".join(lines) + "\n")
    rec = {"case": "c", "variant": "v", "kernel": "6.12.1-test", "repeat": 1, "expected": {},
           "observed": {}, "verdict": "ERROR", "reason": "timed out", "source": "s",
           "duration_s": 1.0}
    ok = dict(rec, verdict="PASS", variant="w")
    run.records = [rec, ok]
    add_console_tail(run)
    assert rec["console_tail"].splitlines() == lines[-20:]
    assert "console_tail" not in ok
    assert schemas.errors(rec, "run-record") == []
    boot_failed = error_record(run, "c", "x", "kernel 6.12: phase boot")
    assert boot_failed["console_tail"].endswith("line 49")
    assert "console_tail" not in error_record(make_run(tmp_path / "none", None), "c", "x", "r")


def test_the_results_say_how_the_guest_ran(tmp_path):
    run = make_run(tmp_path, "")
    doc, _ = results_document(run)
    assert doc["matrix"] == {"kernel": "6.12", "package": "p", "version": "1", "accel": "tcg",
                             "vcpus": 2, "tcg_thread": "single", "timeout_scale": 9}
    host = KernelRun("running", "6.18", True, doc={"kernel": "6.18", "records": []})
    assert results_document(host)[0]["matrix"] == {"kernel": "running", "package": None,
                                                   "version": None}
