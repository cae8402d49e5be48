import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def cli():
    path = pathlib.Path(os.environ.get("RP_BUILD_DIR", REPO / "build")) / "bin" / "reuseport-check"
    if not path.exists():
        pytest.fail(f"{path} is missing: build first (ci/setup.sh)")
    return str(path)


@pytest.fixture
def require_root():
    if os.geteuid() != 0:
        pytest.skip("needs root")


def kill_netns_processes(anchor_pid):
    """SIGKILL every process in the network namespace of anchor_pid (daemons such as nginx
    leave their process group, but not their namespace)."""
    try:
        target = os.stat(f"/proc/{anchor_pid}/ns/net").st_ino
    except FileNotFoundError:
        return
    for d in pathlib.Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if os.stat(d / "ns" / "net").st_ino == target:
                os.kill(int(d.name), 9)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            pass
