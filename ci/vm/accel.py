"""Which accelerator boots a guest, and how: KVM or TCG, TCG's thread model for a guest of
more than one vCPU (accel.toml, per QEMU version), and the KVM verdict remembered per host
boot. ci/vm/qemu.py runs qemu with what this module chooses.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from .kernels import VmError, cache_dir

KVM_DEVICE = "/dev/kvm"

@dataclasses.dataclass(frozen=True)
class Accel:
    name: str
    args: tuple[str, ...]


KVM = Accel("kvm", ("-accel", "kvm", "-cpu", "host"))
# QEMU 7.2 TCG with -cpu max crashed some 6.12 boots early (cmpxchg16b in kmalloc).
TCG = Accel("tcg", ("-accel", "tcg", "-cpu", "max,-cx16"))
ACCELS = {a.name: a for a in (KVM, TCG)}
# Guests get 2 vCPUs unless told otherwise: the CPU cases (SO_INCOMING_CPU, per-CPU
# spreading) need two, and parallel variants in the guest use them.
DEFAULT_VCPUS = 2
ACCEL_DATA = Path(__file__).resolve().parent / "accel.toml"
_qemu_versions: dict[str, str | None] = {}


def qemu_version(qemu: str) -> str | None:
    """"7.2" for QEMU 7.2.x: the key of accel.toml; None when qemu cannot say."""
    if qemu not in _qemu_versions:
        try:
            out = subprocess.run([qemu, "--version"], capture_output=True, text=True,
                                 timeout=10).stdout
            m = re.search(r"version (\d+)\.(\d+)", out)
            _qemu_versions[qemu] = f"{m.group(1)}.{m.group(2)}" if m else None
        except (OSError, subprocess.TimeoutExpired):
            _qemu_versions[qemu] = None
    return _qemu_versions[qemu]


@dataclasses.dataclass(frozen=True)
class SmpChoice:
    """How one accelerator runs a guest of more than one vCPU (an [[smp]] of accel.toml)."""

    accel: str
    qemu: str  # "7.2", or "*" for a QEMU version nobody measured
    thread: str | None  # TCG: "single" or "multi"; None for KVM
    evidence: str


def load_smp_choices(path: Path = ACCEL_DATA) -> list[SmpChoice]:
    import tomllib
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise VmError(f"{path}: {e}") from None
    out = []
    for i, e in enumerate(data.get("smp", [])):
        unknown = set(e) - {"accel", "qemu", "thread", "evidence", "measured"}
        missing = {"accel", "qemu", "evidence"} - set(e)
        if unknown or missing:
            raise VmError(f"{path}: [[smp]] #{i + 1}: unknown keys {sorted(unknown)} or "
                          f"missing keys {sorted(missing)}")
        if e["accel"] == "tcg" and e.get("thread") not in ("single", "multi"):
            raise VmError(f"{path}: [[smp]] #{i + 1}: tcg needs thread = single or multi")
        out.append(SmpChoice(e["accel"], str(e["qemu"]), e.get("thread"), e["evidence"]))
    return out


def smp_choice(accel: str, qemu: str, path: Path = ACCEL_DATA) -> SmpChoice | None:
    """The entry for this accelerator and QEMU version, else its "*" entry."""
    version = qemu_version(qemu)
    entries = [c for c in load_smp_choices(path) if c.accel == accel]
    for want in (version, "*"):
        for c in entries:
            if c.qemu == want:
                return c
    return None


def accel_args(accel: Accel, qemu: str, vcpus: int, tcg_thread: str | None = None) -> list[str]:
    """The accelerator's arguments; for TCG the thread model of accel.toml (or tcg_thread)."""
    args = list(accel.args)
    if accel.name == "tcg":
        thread = tcg_thread
        if thread is None and vcpus > 1:
            choice = smp_choice("tcg", qemu)
            thread = choice.thread if choice else "single"
        if thread is not None:
            if thread not in ("single", "multi"):
                raise VmError(f"unknown TCG thread model {thread!r}: use single or multi")
            args[args.index("tcg")] = f"tcg,thread={thread}"
    return args


# ---------------------------------------------------------------------------------------
# The KVM verdict: tried once per host boot, then remembered (in memory and in a file
# shared by parallel workers), so a matrix pays a KVM failure once, not per kernel.

_verdict: dict[str, bool] = {}


def _verdict_key(qemu: str) -> str:
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot_id = "unknown"
    path = shutil.which(qemu) or qemu
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError:
        mtime = 0
    return f"{boot_id}:{path}:{mtime}"


def _verdict_file() -> Path:
    return cache_dir() / "kvm-verdict.json"


def kvm_verdict(qemu: str) -> bool | None:
    """True: KVM boots kernels here; False: it does not; None: not tried yet."""
    key = _verdict_key(qemu)
    if key in _verdict:
        return _verdict[key]
    try:
        saved = json.loads(_verdict_file().read_text())
        if saved.get("key") == key:
            _verdict[key] = bool(saved["kvm"])
            return _verdict[key]
    except (OSError, ValueError, KeyError):
        pass
    return None


def record_kvm_verdict(qemu: str, works: bool, reason: str = "") -> None:
    key = _verdict_key(qemu)
    _verdict[key] = works
    try:
        f = _verdict_file()
        f.parent.mkdir(parents=True, exist_ok=True)
        tmp = f.with_name(f"{f.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"key": key, "kvm": works, "reason": reason}) + "\n")
        os.replace(tmp, f)
    except OSError:
        pass  # the in-memory verdict still holds for this process


def forget_kvm_verdict() -> None:
    _verdict.clear()
    try:
        _verdict_file().unlink()
    except OSError:
        pass


def accel_choice(qemu: str, accel: str) -> list[Accel]:
    if accel == "auto":
        accel = os.environ.get("RP_ACCEL") or "auto"
    if accel in ACCELS:
        return [ACCELS[accel]]
    if accel != "auto":
        raise VmError(f"unknown accelerator {accel!r}: use kvm, tcg or auto")
    if not os.access(KVM_DEVICE, os.R_OK | os.W_OK):
        return [TCG]
    return {True: [KVM], False: [TCG], None: [KVM, TCG]}[kvm_verdict(qemu)]
