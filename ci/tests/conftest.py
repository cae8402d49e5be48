import os
import sys
from pathlib import Path

import pytest

CI_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(CI_DIR))


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "vm: boots real kernels in qemu (fetches them on first use); "
                   "deselect with -m 'not vm'")


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """A cache dir of the test's own, and no KVM verdict carried over."""
    from vm import qemu
    monkeypatch.setenv("RP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("RP_ACCEL", raising=False)
    qemu._verdict.clear()
    yield tmp_path / "cache"
    qemu._verdict.clear()


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
