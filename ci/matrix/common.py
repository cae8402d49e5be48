"""What the matrix modules share: paths, the guest's names and markers, the verdicts,
DriverError, progress events and the lock files.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ci.vm.kernels import VmError

CI_DIR = Path(__file__).resolve().parent.parent
REPO = CI_DIR.parent

GUEST_BIN = "/rp/bin/reuseport-check"
GUEST_JSON = "/tmp/results.json"
BEGIN = "RP-MATRIX-RESULTS-BEGIN"
END = "RP-MATRIX-RESULTS-END"
# The cases find a full accept queue through sock_diag (NETLINK_SOCK_DIAG, inet_diag):
# the Debian -cloud kernels build it as modules (CONFIG_INET_DIAG=m), and the busybox
# initramfs has none, so they are copied from the kernel's package. Load order matters:
# tcp_diag and udp_diag need inet_diag's symbols.
DIAG_MODULES = ("inet_diag", "tcp_diag", "udp_diag")
GOOD_VERDICTS = ("PASS", "XFAIL", "SKIP")
VERDICTS = ("PASS", "FAIL", "XFAIL", "XPASS", "SKIP", "ERROR")
# One progress line of `reuseport-check run`, colours or not.
PROGRESS_RE = re.compile(r"^(?:\x1b\[[0-9;]*m)?(PASS|FAIL|XFAIL|XPASS|SKIP|ERROR)\s*(?:\x1b\[0m)?"
                         r"\s+\[(\d+)/(\d+)\] (\S+?)/(\S+) \(", re.M)


class DriverError(VmError):
    """Bad input or a missing prerequisite: reported as one message, never a traceback."""


# ---------------------------------------------------------------------------------------
# Progress events: JSON lines appended to $RP_MATRIX_EVENTS (the `matrix` command reads
# them). Short lines written with one write() on an O_APPEND file do not interleave
# between pytest-xdist workers.


def emit(event: dict) -> None:
    path = os.environ.get("RP_MATRIX_EVENTS")
    if not path:
        return
    line = (json.dumps(event, separators=(",", ":")) + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError:
        pass  # progress is a courtesy; the results do not depend on it



@contextmanager
def _locked(path: Path) -> Iterator[None]:
    # The same lock files as vm.kernels: pytest-xdist workers fetch concurrently.
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def write_json_durably(dest: Path, doc: dict) -> None:
    """Write doc to dest through a temporary file that is on disk before the rename: a
    crash at any moment leaves the old file or the new one, never an empty one."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(json.dumps(doc, indent=1) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, dest)
