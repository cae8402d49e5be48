"""The newc writer, checked by the cpio tool itself."""

import os
import shutil
import subprocess
import time

import pytest

from ci.vm.initramfs import InitramfsError, Newc, build_initramfs

needs_cpio = pytest.mark.skipif(shutil.which("cpio") is None, reason="cpio not installed")


def cpio_list(path) -> list[str]:
    proc = subprocess.run(["cpio", "-t", "--quiet"], stdin=open(path, "rb"),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


@needs_cpio
def test_odd_sizes_and_names_stay_aligned(tmp_path):
    archive = Newc()
    for n in range(1, 9):
        archive.file(f"d{n}/" + "x" * n, b"y" * n, 0o600)
    archive.symlink("a/link", "/d1/x")
    (tmp_path / "t.cpio").write_bytes(archive.getvalue())
    names = cpio_list(tmp_path / "t.cpio")
    assert names[:2] == ["d1", "d1/x"] and "a/link" in names and len(names) == 18


@needs_cpio
def test_initramfs_unpacks_with_init_busybox_and_payload(tmp_path):
    script = tmp_path / "payload.sh"
    script.write_text("echo hi\n")
    script.chmod(0o750)
    start = time.monotonic()
    cpio = build_initramfs(tmp_path / "run.cpio", [(script, "/rp/bin/payload.sh")],
                           data={"rp/cmd": b"uname -r"})
    elapsed = time.monotonic() - start
    names = cpio_list(cpio)
    for expected in ("init", "bin/busybox", "bin/sh", "bin/mount", "sbin/ip",
                     "rp/bin/payload.sh", "rp/cmd", "proc", "sys", "dev", "tmp"):
        assert expected in names
    out = tmp_path / "root"
    out.mkdir()
    subprocess.run(["cpio", "-idm", "--quiet", "--no-absolute-filenames"],
                   stdin=open(cpio, "rb"), cwd=out, check=True)
    assert (out / "rp/bin/payload.sh").read_text() == "echo hi\n"
    assert (out / "rp/bin/payload.sh").stat().st_mode & 0o777 == 0o750
    assert os.readlink(out / "bin/sh") == "/bin/busybox"
    assert (out / "init").read_bytes().startswith(b"#!/bin/sh")
    assert (out / "init").stat().st_mode & 0o111
    assert elapsed < 1.0, f"building took {elapsed:.3f} s"


@needs_cpio
def test_dynamic_binary_brings_its_libraries(tmp_path):
    dynamic = shutil.which("true")
    if b"statically linked" in subprocess.run(["file", "-L", dynamic],
                                              capture_output=True).stdout:
        pytest.skip(f"{dynamic} is static here")
    names = cpio_list(build_initramfs(tmp_path / "run.cpio", [(dynamic, "/rp/bin/true")]))
    assert any(n.endswith("/libc.so.6") for n in names), names
    assert any("ld-linux" in n for n in names), names


def test_unreadable_file_and_bad_paths_are_errors(tmp_path):
    with pytest.raises(InitramfsError, match="cannot read .*absent"):
        build_initramfs(tmp_path / "x.cpio", [(tmp_path / "absent", "/rp/absent")])
    archive = Newc()
    with pytest.raises(InitramfsError, match="bad guest path"):
        archive.file("/", b"")
    archive.file("rp/once", b"")
    with pytest.raises(InitramfsError, match="added twice"):
        archive.file("/rp/once", b"")
