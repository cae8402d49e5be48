"""Real kernels of the matrix booted in qemu. Fetches them on first use (network).

Deselect with -m "not vm". These share the real cache (RP_CACHE_DIR or
~/.cache/reuseport-check) so that kernels are downloaded once.
"""

import shutil
import time

import pytest

from ci.vm.initramfs import Newc, build_initramfs
from ci.vm.kernels import fetch_kernel, load_matrix
from ci.vm.qemu import Timeouts, run_in_vm

pytestmark = [
    pytest.mark.vm,
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                       reason="qemu-system-x86 not installed"),
]

GUEST_KERNELS = [k.name for k in load_matrix().values() if not k.is_host]


@pytest.fixture
def no_leak(tmp_path, processes_mentioning):
    yield tmp_path
    assert processes_mentioning(str(tmp_path)) == [], "qemu left running"


@pytest.mark.parametrize("name", GUEST_KERNELS)
def test_kernel_boots_and_reports_its_release(name, no_leak):
    fetched = fetch_kernel(name)
    result = run_in_vm(fetched, "uname -r; cat /proc/version", workdir=no_leak)
    assert result.ok, f"{result.error} (console: {result.console_log})"
    assert result.exit_code == 0 and result.phase == "run"
    assert result.accel in ("kvm", "tcg")
    assert result.release == fetched.release
    lines = result.output.splitlines()
    assert lines[0] == fetched.release
    assert lines[1].startswith(f"Linux version {fetched.release} ")
    assert 0 < result.boot_time < result.duration


def test_output_exit_code_files_and_long_command(no_leak):
    dynamic = shutil.which("true")
    script = no_leak / "payload.sh"
    script.write_text("#!/bin/sh\necho from-payload\n")
    script.chmod(0o755)
    command = ("/rp/bin/payload.sh; /rp/bin/true-dyn && echo dyn-ok; "
               "test -d /sys/fs/bpf/ && test -e /sys/kernel/tracing/trace && echo fs-ok; "
               "ip -o link show lo | grep -q UP && echo lo-up; "
               "echo to-stderr >&2; printf 'no newline'; exit 7 #" + "x" * 1500)
    result = run_in_vm("6.12", command, workdir=no_leak,
                       files=[(script, "/rp/bin/payload.sh"), (dynamic, "/rp/bin/true-dyn")])
    assert result.ok, result.error
    assert result.exit_code == 7
    assert result.output == "from-payload\ndyn-ok\nfs-ok\nlo-up\nto-stderr\nno newline"


def test_hung_command_is_an_error_in_phase_run(no_leak):
    start = time.monotonic()
    result = run_in_vm("5.10", "echo started; sleep 600", workdir=no_leak,
                       timeouts=Timeouts(run=2))
    assert (result.status, result.phase, result.exit_code) == ("ERROR", "run", None)
    assert result.output == "started\n"
    assert "timeout" in result.error
    assert time.monotonic() - start < 60


def broken_initrds(tmp_path):
    no_init = Newc()
    no_init.file("etc/hostname", b"guest\n")
    (tmp_path / "no-init.cpio").write_bytes(no_init.getvalue())
    good = build_initramfs(tmp_path / "good.cpio").read_bytes()
    (tmp_path / "truncated.cpio").write_bytes(good[:len(good) // 3])
    dying = Newc()
    dying.file("bin/busybox", open("/bin/busybox", "rb").read(), 0o755)
    dying.symlink("bin/sh", "/bin/busybox")
    dying.file("init", b"#!/bin/sh\nexit 3\n", 0o755)
    (tmp_path / "init-exits.cpio").write_bytes(dying.getvalue())
    return tmp_path


@pytest.mark.parametrize("broken", ["no-init", "truncated", "init-exits"])
def test_broken_initramfs_is_an_error_at_boot_with_the_console_saved(broken, no_leak):
    initrd = broken_initrds(no_leak) / f"{broken}.cpio"
    result = run_in_vm("6.12", "true", initrd=initrd, workdir=no_leak / "run",
                       timeouts=Timeouts(boot=60))
    assert (result.status, result.phase, result.exit_code) == ("ERROR", "boot", None)
    assert result.release is None and result.boot_time is None
    console = result.console_log.read_text(errors="replace")
    assert "Kernel panic" in console, console[-2000:]
    assert "Kernel panic" in result.error
    assert initrd.exists(), "a caller's initramfs is not deleted"
