import json
import os
import sys
from pathlib import Path

import pytest



@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """A cache dir of the test's own, and no KVM verdict carried over."""
    from ci.vm import accel
    monkeypatch.setenv("RP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("RP_ACCEL", raising=False)
    accel._verdict.clear()
    yield tmp_path / "cache"
    accel._verdict.clear()


@pytest.fixture
def processes_mentioning():
    """A fixture, not an import: cases/tests has a conftest.py of its own."""
    return _processes_mentioning


def _processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains text: a leaked qemu shows up here."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if text.encode() in cmdline:
            pids.append(int(entry.name))
    return pids


@pytest.fixture(scope="session")
def static_binary():
    """The static guest binary, built (or brought up to date) once per session."""
    from ci.matrix import driver
    try:
        return driver.ensure_static_binary(log=lambda m: print(f"# {m}", file=sys.stderr))
    except driver.DriverError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture
def matrix_with_a_broken_kernel(tmp_path, static_binary):
    """A cache and matrix of their own: 5.10 and 6.12 as they are, plus "broken", whose
    vmlinuz is not a kernel. The real kernels are fetched (once) into the real cache."""
    from ci.matrix import driver
    from ci.vm.kernels import cache_dir, fetch_kernel, load_matrix
    real = load_matrix()
    cache = tmp_path / "cache"
    text = ""
    for name in ("5.10", "6.12"):
        fetched = fetch_kernel(name, matrix=real)
        driver.fetch_modules(fetched)
        (cache / "kernels").mkdir(parents=True, exist_ok=True)
        (cache / "kernels" / name).symlink_to(cache_dir() / "kernels" / name)
        k = real[name]
        text += (f'[[kernel]]\nname = "{name}"\nsuite = "{k.suite}"\npackage = "{k.package}"\n'
                 f'version = "{k.version}"\nvmlinuz = "{k.vmlinuz}"\nseries = "{k.series}"\n\n')
    broken = cache / "kernels" / "broken"
    broken.mkdir(parents=True)
    (broken / "vmlinuz").write_bytes(b"MZ this is not a kernel\n" * 64)
    spec = {"suite": "bookworm", "package": "linux-image-broken", "version": "newest",
            "vmlinuz": "boot/vmlinuz-*"}
    (broken / "meta.json").write_text(json.dumps({
        "spec": spec, "package": "linux-image-broken", "version": "1", "release": "9.9.9-broken",
        "size": (broken / "vmlinuz").stat().st_size}))
    (broken / "modules" / "9.9.9-broken").mkdir(parents=True)
    (broken / "modules" / "9.9.9-broken" / "complete.json").write_text("[]\n")
    text += ('[[kernel]]\nname = "broken"\nsuite = "bookworm"\npackage = "linux-image-broken"\n'
             'version = "newest"\nvmlinuz = "boot/vmlinuz-*"\nseries = "9.9"\n')
    (tmp_path / "kernels.toml").write_text(text)
    return tmp_path, cache
