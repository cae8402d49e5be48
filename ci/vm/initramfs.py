"""A small uncompressed initramfs per run: busybox-static, /init, and the payload files.

The archive is written in the "newc" cpio format (070701) that the kernel unpacks:
a 110-byte ASCII header of 13 hex fields, the NUL-terminated name padded to 4 bytes,
then the data padded to 4 bytes, ended by an entry named TRAILER!!!.
"""

from __future__ import annotations

import functools
import os
import re
import stat
import subprocess
from pathlib import Path, PurePosixPath
from typing import Iterable

from .kernels import VmError

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
INIT_SCRIPT = Path(__file__).resolve().parent / "init.sh"
# Directories every guest has, whether or not a file lands in them.
BASE_DIRS = ("bin", "sbin", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "run",
             "etc", "root", "rp")


class InitramfsError(VmError):
    pass


class Newc:
    """Accumulates entries; parents are added before their children, each once."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._paths: set[str] = set()
        self._ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", nlink: int = 1) -> None:
        encoded = name.encode() + b"\0"
        fields = (self._ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self._ino += 1
        self._chunks += [header, encoded, _pad(len(header) + len(encoded)), data,
                         _pad(len(data))]

    def _parents(self, path: str) -> None:
        parts = PurePosixPath(path).parts[:-1]
        for i in range(1, len(parts) + 1):
            self.dir("/".join(parts[:i]))

    def dir(self, path: str, mode: int = 0o755) -> None:
        path = _norm(path)
        if path in self._paths:
            return
        self._parents(path)
        self._paths.add(path)
        self._entry(path, stat.S_IFDIR | mode, nlink=2)

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        path = _norm(path)
        if path in self._paths:
            raise InitramfsError(f"initramfs: {path} added twice")
        self._parents(path)
        self._paths.add(path)
        self._entry(path, stat.S_IFREG | mode, data)

    def symlink(self, path: str, target: str) -> None:
        path = _norm(path)
        if path in self._paths:
            return
        self._parents(path)
        self._paths.add(path)
        self._entry(path, stat.S_IFLNK | 0o777, target.encode())

    def __contains__(self, path: str) -> bool:
        return _norm(path) in self._paths

    def getvalue(self) -> bytes:
        trailer = Newc()
        trailer._ino = 0
        trailer._entry("TRAILER!!!", 0)
        return b"".join(self._chunks + trailer._chunks)


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 4)


def _norm(path: str) -> str:
    norm = os.path.normpath("/" + str(path)).lstrip("/")
    if not norm or norm.startswith(".."):
        raise InitramfsError(f"initramfs: bad guest path {path!r}")
    return norm


def find_busybox() -> Path:
    for candidate in BUSYBOX_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return Path(candidate)
    raise InitramfsError("busybox not found: install busybox-static")


@functools.lru_cache(maxsize=None)
def busybox_applets(busybox: Path) -> tuple[str, ...]:
    """All applets of the host busybox, as "dir/name" under the guest root."""
    proc = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise InitramfsError(f"{busybox} --list-full failed; is it busybox-static?")
    return tuple(line.strip() for line in proc.stdout.splitlines() if line.strip())


@functools.lru_cache(maxsize=64)
def _shared_libraries(path: str, mtime: float) -> tuple[str, ...]:
    """The loader and libraries a dynamic ELF needs, from ldd; () when static."""
    del mtime  # only part of the cache key
    proc = subprocess.run(["ldd", path], capture_output=True, text=True,
                          env={"LC_ALL": "C", "PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    if proc.returncode != 0 or "not a dynamic executable" in proc.stdout + proc.stderr \
            or "statically linked" in proc.stdout:
        return ()
    libs = []
    for line in proc.stdout.splitlines():
        if "not found" in line:
            raise InitramfsError(f"initramfs: {path} needs a missing library: "
                                 f"{line.strip()}")
        m = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
        if m:
            libs.append(m.group(1))
    return tuple(libs)


def _is_elf(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def build_initramfs(dest: Path | str, files: Iterable[tuple[Path | str, str]] = (),
                    *, data: dict[str, bytes] | None = None,
                    busybox: Path | None = None) -> Path:
    """Write the cpio to dest and return it.

    files: (host path, guest path) pairs; a dynamically linked ELF also brings its
    loader and libraries (found with ldd) at their host paths. data: guest path ->
    contents, for small generated files.
    """
    busybox = busybox or find_busybox()
    archive = Newc()
    for d in BASE_DIRS:
        archive.dir(d)
    archive.file("bin/busybox", busybox.read_bytes(), 0o755)
    for applet in busybox_applets(busybox):
        if applet not in ("bin/busybox", "init", "linuxrc"):
            archive.symlink(applet, "/bin/busybox")
    archive.file("init", INIT_SCRIPT.read_bytes(), 0o755)
    libraries: set[str] = set()
    for host, guest in files:
        host = Path(host)
        try:
            st = host.stat()
            content = host.read_bytes()
        except OSError as e:
            raise InitramfsError(f"initramfs: cannot read {host}: {e.strerror}") from None
        archive.file(guest, content, stat.S_IMODE(st.st_mode))
        if st.st_mode & 0o111 and _is_elf(host):
            libraries.update(_shared_libraries(str(host), st.st_mtime))
    for lib in sorted(libraries):
        real = Path(lib).resolve()
        if lib not in archive:
            archive.file(lib, real.read_bytes(), stat.S_IMODE(real.stat().st_mode))
    for guest, content in (data or {}).items():
        archive.file(guest, content, 0o644)
    dest = Path(dest)
    dest.write_bytes(archive.getvalue())
    return dest
