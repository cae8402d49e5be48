"""Boot the kernel uncompressed, through its PVH entry, instead of the bzImage.

A bzImage decompresses itself before the kernel starts; under TCG that costs the better
part of a second per boot (6.12: 2.5 s -> 1.6 s from qemu start to RP-EXIT when qemu loads
the uncompressed vmlinux instead, 3 boots each, interleaved). qemu boots an ELF vmlinux
through the PVH entry point the kernel announces in a Xen ELF note
(XEN_ELFNOTE_PHYS32_ENTRY, CONFIG_PVH), which the Debian kernels have.

The compressed kernel is where the bzImage's setup header says (payload_offset and
payload_length, boot protocol 2.08+, Documentation/arch/x86/boot.rst); it is decompressed
once and cached beside the other cached files. Anything unexpected (an old boot protocol,
an unknown compression, a missing `zstd`/`lz4` program, no PVH note, a truncated ELF)
means: boot the bzImage as before. RP_QEMU_PVH=0 always boots the bzImage.
"""

from __future__ import annotations

import bz2
import hashlib
import lzma
import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

from .kernels import cache_dir

XEN_ELFNOTE_PHYS32_ENTRY = 18
# Magic -> how to decompress. gzip, xz, lzma and bzip2 have Python modules; zstd and lz4
# (the newer Debian kernels use zstd) need their programs, which ci/setup.sh installs.
FORMATS = (
    (b"\x1f\x8b", "gzip"), (b"\xfd7zXZ\x00", "xz"), (b"\x5d\x00\x00", "lzma"),
    (b"BZh", "bzip2"), (b"\x28\xb5\x2f\xfd", "zstd"), (b"\x02\x21\x4c\x18", "lz4"),
)


def payload(bzimage: bytes) -> tuple[str, bytes] | None:
    """(format, compressed kernel) from a bzImage's setup header, or None."""
    if len(bzimage) < 0x250 or bzimage[0x202:0x206] != b"HdrS":
        return None
    version = struct.unpack_from("<H", bzimage, 0x206)[0]
    if version < 0x208:  # payload_offset/length came with 2.08
        return None
    setup_sects = bzimage[0x1F1] or 4
    offset, length = struct.unpack_from("<II", bzimage, 0x248)
    start = (setup_sects + 1) * 512 + offset
    data = bzimage[start:start + length]
    if len(data) != length:
        return None
    for magic, name in FORMATS:
        if data.startswith(magic):
            return name, data
    return None


def _decompress(fmt: str, data: bytes) -> bytes | None:
    try:
        if fmt == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)
        if fmt in ("xz", "lzma"):
            return lzma.LZMADecompressor().decompress(data)
        if fmt == "bzip2":
            return bz2.BZ2Decompressor().decompress(data)
        tool = {"zstd": ["zstd", "-d", "-c", "-q"], "lz4": ["lz4", "-d", "-c", "-q"]}[fmt]
        if shutil.which(tool[0]) is None:
            return None
        # The payload may end in padding that the tool calls an error after the frame it
        # decoded; the ELF check below says whether the kernel came out whole.
        return subprocess.run(tool, input=data, capture_output=True, timeout=120).stdout
    except (lzma.LZMAError, OSError, zlib.error, ValueError, subprocess.TimeoutExpired):
        return None


def pvh_entry(elf: bytes) -> bool:
    """A whole little-endian ELF64 that carries a Xen PHYS32_ENTRY note."""
    if len(elf) < 64 or elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        return False
    phoff, shoff = struct.unpack_from("<QQ", elf, 0x20)
    phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", elf, 0x36)
    if phoff + phnum * phentsize > len(elf) or shoff + shnum * shentsize > len(elf):
        return False  # truncated
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", elf, phoff + i * phentsize)
        if p_type != 4:  # PT_NOTE
            continue
        pos, end = p_offset, min(p_offset + p_filesz, len(elf))
        while pos + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", elf, pos)
            name = elf[pos + 12:pos + 12 + namesz].rstrip(b"\0")
            if name == b"Xen" and ntype == XEN_ELFNOTE_PHYS32_ENTRY:
                return True
            pos += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return False


def _key(vmlinuz: Path) -> str:
    st = vmlinuz.stat()
    return hashlib.sha256(f"{vmlinuz.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:24]


def boot_image(vmlinuz: Path) -> Path:
    """The uncompressed vmlinux with a PVH entry when there is one, else vmlinuz."""
    if os.environ.get("RP_QEMU_PVH", "1") == "0":
        return vmlinuz
    try:
        key = _key(vmlinuz)
        cached = cache_dir() / "pvh" / f"{key}.vmlinux"
        refused = cached.with_suffix(".none")
        if cached.is_file():
            return cached
        if refused.is_file():
            return vmlinuz
        cached.parent.mkdir(parents=True, exist_ok=True)
        found = payload(vmlinuz.read_bytes())
        elf = _decompress(*found) if found else None
        if not elf or not pvh_entry(elf):
            refused.write_text(f"{vmlinuz}: {found[0] if found else 'no payload'}, no PVH\n")
            return vmlinuz
        tmp = cached.with_name(f"{cached.name}.{os.getpid()}")
        tmp.write_bytes(elf)
        os.replace(tmp, cached)  # parallel workers: the last rename wins, both whole
        return cached
    except OSError:
        return vmlinuz
