"""ci/vm/pvh.py: the compressed kernel out of a bzImage, and whether it can boot via PVH."""

from __future__ import annotations

import gzip
import lzma
import struct

import pytest

from ci.vm import pvh


def elf(with_note: bool, truncate: int = 0) -> bytes:
    """A minimal ELF64 with one PT_NOTE: Xen PHYS32_ENTRY, or another Xen note."""
    ntype = pvh.XEN_ELFNOTE_PHYS32_ENTRY if with_note else 6
    note = struct.pack("<III", 4, 4, ntype) + b"Xen\0" + struct.pack("<I", 0x1000000)
    phoff, shoff = 64, 64 + 56 + len(note)
    header = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    header += struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, 0x1000000, phoff, shoff, 0, 64, 56, 1,
                          64, 0, 0)
    ph = struct.pack("<IIQQQQQQ", 4, 4, 64 + 56, 0, 0, len(note), len(note), 4)
    out = header + ph + note
    return out[:len(out) - truncate] if truncate else out


def bzimage(payload: bytes, version: int = 0x20F) -> bytes:
    setup = bytearray(3 * 512)  # setup_sects = 2: the protected-mode part starts at 1536
    setup[0x1F1] = 2
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, version)
    struct.pack_into("<II", setup, 0x248, 100, len(payload))
    return bytes(setup) + bytes(100) + payload + b"\0" * 64


@pytest.mark.parametrize("compress, fmt", [(gzip.compress, "gzip"), (lzma.compress, "xz")])
def test_the_payload_is_where_the_setup_header_says(compress, fmt):
    kernel = elf(True)
    found = pvh.payload(bzimage(compress(kernel)))
    assert found is not None and found[0] == fmt
    assert pvh._decompress(*found) == kernel
    assert pvh.pvh_entry(kernel)


def test_no_pvh_note_or_a_truncated_elf_or_an_old_header_is_no_pvh_image(tmp_path, monkeypatch):
    assert not pvh.pvh_entry(elf(False))
    assert not pvh.pvh_entry(elf(True, truncate=8))
    assert pvh.payload(bzimage(gzip.compress(elf(True)), version=0x206)) is None
    assert pvh.payload(b"MZ not a kernel" * 100) is None


def test_boot_image_decompresses_once_and_falls_back_to_the_bzimage(tmp_path, monkeypatch):
    monkeypatch.setenv("RP_CACHE_DIR", str(tmp_path / "cache"))
    good, plain = tmp_path / "good", tmp_path / "plain"
    good.write_bytes(bzimage(gzip.compress(elf(True))))
    plain.write_bytes(bzimage(gzip.compress(elf(False))))
    image = pvh.boot_image(good)
    assert image != good and image.read_bytes() == elf(True)
    assert pvh.boot_image(good) == image  # cached
    assert pvh.boot_image(plain) == plain  # no PVH entry: the bzImage, and remembered
    assert list((tmp_path / "cache" / "pvh").glob("*.none"))
    monkeypatch.setenv("RP_QEMU_PVH", "0")
    assert pvh.boot_image(good) == good
