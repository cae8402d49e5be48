"""Kernels the user has as files: a bare image (bzImage / vmlinuz) with or without its
modules tree, or a linux-image .deb. Nothing is downloaded for them.

The matrix needs two things of a kernel: the image qemu boots and the sock_diag modules
(inet_diag, tcp_diag, udp_diag) the guest loads. A file that lacks the modules is still
run: the cases that need sock_diag then SKIP, naming CONFIG_INET_DIAG (the `sock_diag`
feature of cases/lib/kernel.cc); the FetchedKernel's notes say what was missing.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Callable

from ci.matrix.common import DIAG_MODULES
from ci.matrix.modules import _decompress
from ci.vm.kernels import (FetchedKernel, FetchError, Kernel, MatrixError, cache_dir, check_local,
                            deb_data)

_KO_SUFFIXES = ("", ".xz", ".gz", ".zst")
# A module's path in a package: lib/modules/<release>/kernel/net/ipv4/<name>.ko[.xz|...]
_DEB_MODULE_RE = re.compile(r"(?:usr/)?lib/modules/([^/]+)/kernel/net/ipv4/(" +
                            "|".join(DIAG_MODULES) + r")\.ko(\.xz|\.gz|\.zst)?$")
# The classic layout (boot/vmlinuz-<release>) and the split one of 7.x.
_DEB_VMLINUZ_RE = re.compile(r"(?:boot/vmlinuz-([^/]+)|(?:usr/)?lib/modules/([^/]+)/vmlinuz)$")


def image_release(path: Path) -> str | None:
    """The release an x86 boot image states in its setup header, None if it states none.

    Documentation/arch/x86/boot.rst: "HdrS" at 0x202, protocol >= 2.00, and at 0x20E the
    offset (from 0x200) of the version string, "6.12.48+deb13-cloud-amd64 (...) #1 ...".
    """
    try:
        with open(path, "rb") as f:
            head = f.read(0x10000)
    except OSError:
        return None
    if len(head) < 0x210 or head[0x202:0x206] != b"HdrS":
        return None
    pointer = int.from_bytes(head[0x20E:0x210], "little")
    if pointer == 0 or pointer + 0x200 >= len(head):
        return None
    text = head[pointer + 0x200:].split(b"\0", 1)[0].decode(errors="replace").split()
    return text[0] if text and re.fullmatch(r"\d+\.\d+[^\s]*", text[0]) else None


def vermagic_release(ko: bytes) -> str | None:
    """The release a module was built for (its modinfo vermagic, "6.12.48+deb13... SMP ...")."""
    m = re.search(rb"vermagic=([^\s\0]+)", ko)
    return m.group(1).decode(errors="replace") if m else None


def _key_dir(kernel: Kernel) -> Path:
    # One directory per file version: a rebuilt image at the same path gets fresh modules.
    st = os.stat(kernel.path)
    key = hashlib.sha256(repr((kernel.kind, kernel.path, kernel.modules, st.st_size,
                               st.st_mtime_ns)).encode()).hexdigest()[:12]
    safe = re.sub(r"[^A-Za-z0-9._+-]", "_", kernel.name)
    return cache_dir() / "local" / f"{safe}-{key}"


def _missing_note(kernel: Kernel, have: list[str], where: str) -> tuple[str, ...]:
    missing = [m for m in DIAG_MODULES if m not in have]
    if not missing:
        return ()
    return (f"kernel {kernel.name}: {where} has no {', '.join(missing)} module: the cases that "
            "need sock_diag SKIP unless the kernel has it built in (CONFIG_INET_DIAG=y)",)


def _prepare_image(kernel: Kernel, log: Callable[[str], None]) -> FetchedKernel:
    image = Path(kernel.path)
    release, release_from = image_release(image), "the image's boot header"
    modules: list[Path] = []
    if not kernel.modules:
        notes = (f"kernel {kernel.name}: no modules tree given (--modules): the cases that "
                 "need sock_diag SKIP unless the kernel has it built in (CONFIG_INET_DIAG=y)",)
        return FetchedKernel(kernel, image, release, None, None, release_from=release_from,
                             modules=(), notes=notes)
    tree = Path(kernel.modules)
    found: dict[str, bytes] = {}
    for m in DIAG_MODULES:
        for suffix in _KO_SUFFIXES:
            f = tree / "kernel" / "net" / "ipv4" / f"{m}.ko{suffix}"
            if f.is_file():
                found[m] = _decompress(f.name, f.read_bytes())
                break
    mdir = _key_dir(kernel) / "modules"
    shutil.rmtree(mdir, ignore_errors=True)
    mdir.mkdir(parents=True)
    for m, data in found.items():
        (mdir / f"{m}.ko").write_bytes(data)
        modules.append(mdir / f"{m}.ko")
    # The modules say which release they load into; a guest that reports another one ran
    # the wrong pair (run_guest compares), whatever the image's header said.
    for m, data in found.items():
        if (vm := vermagic_release(data)) is not None:
            if release is not None and vm != release:
                raise FetchError(f"kernel {kernel.name}: the modules in {tree} are for release "
                                 f"{vm}, the image {image} is {release}")
            release, release_from = vm, f"the modules' vermagic ({tree})"
            break
    log(f"{kernel.name}: modules {', '.join(found) or 'none'} from {tree}")
    return FetchedKernel(kernel, image, release, None, None, release_from=release_from,
                         modules=tuple(modules),
                         notes=_missing_note(kernel, list(found), f"modules tree {tree}"))


def deb_fields(path: Path | str) -> tuple[str, str]:
    """(Package, Version) of a .deb; FetchError for a file dpkg-deb cannot read."""
    try:
        proc = subprocess.run(["dpkg-deb", "-f", str(path), "Package", "Version"],
                              capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise FetchError("dpkg-deb not found: reading a kernel .deb needs dpkg") from None
    fields = dict(re.findall(r"^(\w+): (.*)$", proc.stdout, re.M))
    if proc.returncode != 0 or "Package" not in fields or "Version" not in fields:
        raise FetchError(f"{path} is not a Debian package: "
                         f"{(proc.stderr.strip().splitlines() or ['no Package/Version'])[-1]}")
    return fields["Package"], fields["Version"]


def _prepare_deb(kernel: Kernel, log: Callable[[str], None]) -> FetchedKernel:
    deb = Path(kernel.path)
    package, version = deb_fields(deb)
    kdir = _key_dir(kernel)
    shutil.rmtree(kdir, ignore_errors=True)
    (kdir / "modules").mkdir(parents=True)
    release, vmlinuz_names, found = None, [], {}
    with deb_data(deb, f"kernel {kernel.name}") as tar:
        for member in tar:
            name = member.name.removeprefix("./")
            if not member.isfile():
                continue
            if (m := _DEB_VMLINUZ_RE.match(name)) and release is None:
                release = m.group(1) or m.group(2)
                vmlinuz_names.append(name)
                with open(kdir / "vmlinuz", "wb") as out:
                    shutil.copyfileobj(tar.extractfile(member), out)
            elif m := _DEB_MODULE_RE.match(name):
                found[m.group(2)] = (m.group(1),
                                     _decompress(name, tar.extractfile(member).read()))
    if release is None:
        mods = f" (it holds the modules of {next(iter(found.values()))[0]})" if found else ""
        raise FetchError(f"kernel {kernel.name}: {deb.name} ({package} {version}) holds no "
                         f"kernel image (boot/vmlinuz-* or usr/lib/modules/*/vmlinuz){mods}; "
                         "for the split layout of 7.x give the linux-binary-* package")
    modules = []
    for m in DIAG_MODULES:
        if m in found and found[m][0] == release:
            (kdir / "modules" / f"{m}.ko").write_bytes(found[m][1])
            modules.append(kdir / "modules" / f"{m}.ko")
    have = [p.stem for p in modules]
    where = f"{deb.name}" + (" (the split layout keeps the modules in "
                             f"linux-modules-{release})" if vmlinuz_names[0].endswith("/vmlinuz")
                             else "")
    log(f"{kernel.name}: {package} {version}, release {release}, modules "
        f"{', '.join(have) or 'none'}")
    return FetchedKernel(kernel, kdir / "vmlinuz", release, package, version,
                         release_from=f"the package {deb.name}", modules=tuple(modules),
                         notes=_missing_note(kernel, have, where))


def prepare_local(kernel: Kernel, log: Callable[[str], None]) -> FetchedKernel:
    """The FetchedKernel of a local kernel: its image, and its diag modules decompressed."""
    try:
        check_local(kernel)
    except MatrixError as e:
        raise FetchError(str(e)) from None
    if kernel.kind == "image":
        return _prepare_image(kernel, log)
    return _prepare_deb(kernel, log)


def local_kernels(items: list[tuple[str, str]], taken: set[str] = frozenset()) -> list[Kernel]:
    """Kernels from the command line, in order: ("image", PATH), ("deb", FILE), each
    optionally followed by ("modules", DIR) (an image only) and ("name", NAME).

    Names default to image:<basename> and deb:<package>_<version>. MatrixError for a
    missing file, a misplaced option or a name used twice (also one of `taken`).
    """
    kernels: list[Kernel] = []
    current: dict[str, str] | None = None
    names: set[str] = set(taken)

    def close() -> None:
        if current is None:
            return
        base = os.path.basename(current["path"])
        kernel = Kernel(**{**current, "name": current["name"] or
                           (f"image:{base}" if current["kind"] == "image" else f"deb:{base}")})
        check_local(kernel)
        if not current["name"] and kernel.kind == "deb-file":
            try:
                name = "deb:%s_%s" % deb_fields(kernel.path)
            except FetchError as e:
                raise MatrixError(str(e)) from None
            kernel = Kernel(**{**current, "name": name})
        if kernel.name in names:
            raise MatrixError(f"kernel name {kernel.name!r} is used twice: give "
                              "--kernel-name after the --kernel-image or --kernel-deb")
        names.add(kernel.name)
        kernels.append(kernel)

    for what, value in items:
        if what in ("image", "deb"):
            close()
            current = {"name": "", "kind": "image" if what == "image" else "deb-file",
                       "path": os.path.abspath(os.path.expanduser(value))}
        elif current is None:
            raise MatrixError(f"--{'modules' if what == 'modules' else 'kernel-name'} "
                              f"{value} comes before any --kernel-image or --kernel-deb")
        elif what == "modules":
            if current["kind"] != "image":
                raise MatrixError(f"--modules {value} follows a --kernel-deb: a .deb brings "
                                  "its own modules")
            if current.get("modules"):
                raise MatrixError(f"--modules {value}: this --kernel-image has modules already")
            current["modules"] = os.path.abspath(os.path.expanduser(value))
        elif what == "name":
            if current["name"]:
                raise MatrixError(f"--kernel-name {value}: this kernel has a name already")
            if not value.strip() or value != value.strip() or "/" in value:
                raise MatrixError(f"--kernel-name {value!r}: a name is non-empty, without "
                                  "surrounding whitespace or '/'")
            current["name"] = value
    close()
    return kernels
