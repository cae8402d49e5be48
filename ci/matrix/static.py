"""The statically linked reuseport-check that goes into the guests, and its variants."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import threading
from pathlib import Path
from typing import Callable, Iterable

from ci.matrix.common import REPO, DriverError

# ---------------------------------------------------------------------------------------
# The static binary.


def static_build_dir() -> Path:
    return Path(os.environ.get("RP_STATIC_BUILD_DIR") or REPO / "build-static")


def is_static_elf(path: Path) -> bool:
    """True for an ELF64 executable without a PT_INTERP (no dynamic loader needed)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2:
            return False
        phoff, = struct.unpack_from("<Q", head, 32)
        phentsize, phnum = struct.unpack_from("<HH", head, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != 3 for i in range(phnum))


def _run_logged(argv: list[str], what: str, timeout: float) -> None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise DriverError(f"{what}: {argv[0]} not found (ci/setup.sh installs it)") from None
    except subprocess.TimeoutExpired:
        raise DriverError(f"{what}: timed out after {timeout:.0f} s") from None
    if proc.returncode != 0:
        tail = "\n  ".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise DriverError(f"{what} failed (exit {proc.returncode}):\n  {tail}")


def ensure_static_binary(*, build: bool = True,
                         log: Callable[[str], None] = lambda m: None) -> Path:
    """The statically linked reuseport-check that goes into the guests.

    $RP_STATIC_BIN names a ready binary. Otherwise it is build-static/bin/reuseport-check
    ($RP_STATIC_BUILD_DIR), configured with -DRP_STATIC=ON on first use and brought up
    to date with ninja on every call (a no-op when nothing changed).
    """
    if env := os.environ.get("RP_STATIC_BIN"):
        binary = Path(env)
        if not binary.is_file():
            raise DriverError(f"RP_STATIC_BIN={env}: no such file")
    else:
        bdir = static_build_dir()
        binary = bdir / "bin" / "reuseport-check"
        if build:
            cache = bdir / "CMakeCache.txt"
            if cache.is_file() and "RP_STATIC:BOOL=ON" not in cache.read_text(errors="replace"):
                raise DriverError(f"{bdir} is configured without -DRP_STATIC=ON; "
                                  "point RP_STATIC_BUILD_DIR at another directory")
            if not (bdir / "build.ninja").is_file():
                bpf = "ON" if os.access("/sys/kernel/btf/vmlinux", os.R_OK) else "OFF"
                log(f"configuring the static guest binary in {bdir} (-DRP_STATIC=ON)")
                _run_logged(["cmake", "-S", str(REPO), "-B", str(bdir), "-G", "Ninja",
                             "-DCMAKE_BUILD_TYPE=RelWithDebInfo", "-DRP_STATIC=ON",
                             f"-DRP_ENABLE_BPF={bpf}", "-DRP_ENABLE_BENCHMARKS=OFF"],
                            "cmake (static build)", 600)
            log(f"building {binary} (ninja -j2 reuseport-check)")
            _run_logged(["ninja", "-C", str(bdir), "-j2", "reuseport-check"],
                        "ninja (static build)", 3600)
        if not binary.is_file():
            raise DriverError(f"{binary} is missing: build it with `cmake -S . -B {bdir} "
                              f"-G Ninja -DRP_STATIC=ON && ninja -C {bdir} reuseport-check`, "
                              "or set RP_STATIC_BIN")
    if not is_static_elf(binary):
        raise DriverError(f"{binary} is not a statically linked ELF executable: the busybox "
                          "guests have no shared libraries (configure with -DRP_STATIC=ON)")
    return binary


def guest_copy(binary: Path) -> Path:
    """The binary without debug info and symbols (76 MB -> 5.9 MB): the uncompressed
    initramfs is unpacked into guest memory at every boot."""
    out = binary.with_name(binary.name + ".guest")
    if not out.is_file() or out.stat().st_mtime < binary.stat().st_mtime:
        # Per process and thread: the guests of one driver (report, deploy --kernels) start
        # in threads, and two stripping at once with one name lost the race (FileNotFoundError).
        tmp = out.with_name(out.name + f".{os.getpid()}.{threading.get_ident()}")
        _run_logged(["strip", "--strip-all", "-o", str(tmp), str(binary)], "strip", 120)
        os.replace(tmp, out)
    return out


def list_variants(binary: Path, globs: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(case, variant) of every selected variant, from `reuseport-check list`."""
    argv = [str(binary), "list"]
    for g in globs:
        argv += ["--case", g]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise DriverError(f"{binary} list: {e}") from None
    if proc.returncode != 0:
        raise DriverError(proc.stderr.strip() or f"{binary} list: exit {proc.returncode}")
    out, case = [], None
    for line in proc.stdout.splitlines():
        if m := re.match(r"^(\S+) \(\d+ variants?\)$", line):
            case = m.group(1)
        elif line.startswith("  ") and case:
            out.append((case, line.strip()))
    if not out:
        raise DriverError(f"{binary} list printed no variants")
    return out
