"""Boot a kernel in qemu, run one command in it, and tell boot, setup and run apart.

Protocol: the command travels on the kernel command line (rp.cmd=<base64>, or /rp/cmd
in the initramfs when too long), with a random rp.nonce. /init (vm/init.sh) writes
markers carrying the nonce on ttyS1, which qemu writes to a host file polled here:

    RP-BOOTED <nonce> <release>      the kernel is up          -> phase "setup"
    RP-SETUP-DONE <nonce>            mounts and lo are ready   -> phase "run"
    <the command's stdout and stderr, byte for byte>
    \\nRP-EXIT <nonce> <code>         the command ended

A third serial port, ttyS2, goes to journal.<accel>.log: what the guest writes there is the
host's even when the guest hangs or dies (the matrix streams its records through it).

The command may print "RP-SCALE <n> ..." (ci/matrix/speed.py: how many times slower than
the host the guest measured itself): with Timeouts.idle set, the run phase then ends as
hung after idle * n seconds without new output, instead of after a fixed time.

A VM that panics, exits or goes quiet past its phase's timeout is an ERROR at that
phase, never a test failure; qemu is killed and reaped on every path.
"""

from __future__ import annotations

import base64
import ctypes
import dataclasses
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

from . import pvh
# The accelerator's side; its names are qemu's too, where callers and tests look for them.
from .accel import (  # noqa: F401
    ACCEL_DATA, ACCELS, DEFAULT_VCPUS, KVM, KVM_DEVICE, TCG, Accel, SmpChoice, accel_args,
    accel_choice, forget_kvm_verdict, kvm_verdict, load_smp_choices, qemu_version,
    record_kvm_verdict, smp_choice)
from .initramfs import build_initramfs
from .kernels import FetchedKernel, Kernel, VmError, cache_dir, fetch_kernel

QEMU = "qemu-system-x86_64"
POLL_S = 0.01
# x86 COMMAND_LINE_SIZE is 2048; longer commands go into the initramfs instead.
MAX_CMDLINE_COMMAND = 1024
# qboot only loads the -kernel image (no option ROMs, no boot menu): about 0.7 s less
# per TCG boot than SeaBIOS. RP_QEMU_BIOS=default keeps qemu's own firmware.
QBOOT = Path("/usr/share/qemu/qboot.rom")


def _firmware_args() -> list[str]:
    bios = os.environ.get("RP_QEMU_BIOS", "")
    if bios == "default":
        return []
    if bios:
        return ["-bios", bios]
    return ["-bios", str(QBOOT)] if QBOOT.exists() else []


@dataclasses.dataclass(frozen=True)
class Timeouts:
    boot: float = 60.0  # qemu start -> RP-BOOTED under TCG on a loaded 2-core host
    kvm_boot: float = 8.0  # the same under KVM; past it KVM is taken as broken
    setup: float = 20.0
    run: float = 120.0  # the whole run phase
    idle: float | None = None  # run phase: no new output for idle * RP-SCALE seconds -> hung
    shutdown: float = 10.0  # RP-EXIT -> qemu exit; past it qemu is killed, result kept


@dataclasses.dataclass
class VmResult:
    kernel: str
    release: str | None  # `uname -r` in the guest
    accel: str | None  # "kvm" or "tcg": the accelerator of the run reported
    phase: str  # "boot", "setup" or "run": the last phase entered
    status: str  # "OK" (RP-EXIT seen) or "ERROR"
    exit_code: int | None  # the command's, when status is OK
    output: str  # the command's stdout and stderr
    boot_time: float | None  # seconds from qemu start to RP-BOOTED
    result_time: float | None  # seconds from qemu start to RP-EXIT
    duration: float  # seconds from qemu start to its exit
    console_log: Path  # ttyS0: the kernel's messages
    output_log: Path  # ttyS1: markers and command output
    error: str = ""  # why status is ERROR
    notes: list[str] = dataclasses.field(default_factory=list)
    vcpus: int = 1
    tcg_thread: str | None = None  # "single" or "multi" when accel is tcg and said so
    scale: int | None = None  # the RP-SCALE the guest measured, when it printed one
    journal_log: Path | None = None  # ttyS2

    @property
    def ok(self) -> bool:
        return self.status == "OK"

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        for key in ("console_log", "output_log", "journal_log"):
            d[key] = None if d[key] is None else str(d[key])
        return d


@dataclasses.dataclass(frozen=True)
class QemuCommand:
    """The command line as two lists, as virtme-ng and vmtest keep it."""

    qemu_args: list[str]
    kernel_args: list[str]

    def argv(self) -> list[str]:
        return [*self.qemu_args, "-append", " ".join(self.kernel_args)]


def build_command(vmlinuz: Path, initrd: Path, accel: Accel, *, console_log: Path,
                  output_log: Path, nonce: str, command: str | None,
                  journal_log: Path | None = None,
                  memory_mb: int = 256, qemu: str | None = None,
                  verbose: bool = False, vcpus: int = 1, tcg_thread: str | None = None,
                  extra_kernel_args: Sequence[str] = ()) -> QemuCommand:
    """command=None means it is in the initramfs as /rp/cmd."""
    for p in (console_log, output_log, journal_log or output_log):
        if "," in str(p):
            raise VmError(f"qemu cannot take a path with a comma: {p}")
    if not 1 <= vcpus <= 64:
        raise VmError(f"vcpus must be 1 to 64, not {vcpus}")
    qemu = qemu or os.environ.get("RP_QEMU", QEMU)
    qemu_args = [
        qemu,
        *accel_args(accel, qemu, vcpus, tcg_thread),
        "-machine", "pc", *_firmware_args(), "-m", str(memory_mb), "-smp", str(vcpus),
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-serial", f"file:{console_log}",
        "-serial", f"file:{output_log}",
        *(["-serial", f"file:{journal_log}"] if journal_log else []),
        "-kernel", str(vmlinuz), "-initrd", str(initrd),
    ]
    # cryptomgr.notests: the Debian kernels test every crypto algorithm they register;
    # under TCG that is 0.2-0.6 s of each boot (6.12: 2.80 -> 2.24 s to RP-EXIT, 5.10: 1.87 ->
    # 1.71, medians of 4 interleaved), and no case uses the kernel's crypto.
    kernel_args = ["console=ttyS0", "panic=-1", "mitigations=off", "cryptomgr.notests"]
    kernel_args += ["loglevel=7"] if verbose else ["quiet", "loglevel=3"]
    kernel_args += [*extra_kernel_args, f"rp.nonce={nonce}"]
    if command is not None:
        kernel_args.append("rp.cmd=" + base64.b64encode(command.encode()).decode())
    return QemuCommand(qemu_args, kernel_args)


# ---------------------------------------------------------------------------------------
# One qemu run.


def die_with_parent() -> None:
    """SIGKILL this process when the thread that started it dies (PR_SET_PDEATHSIG): qemu
    with the Python process that runs it, an xdist worker with the pytest that started it."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


_SCALE = re.compile(rb"(?:^|\n)RP-SCALE (\d+)[ \n]")


class _Stream:
    """Parses ttyS1 as it grows."""

    def __init__(self, nonce: str):
        n = re.escape(nonce.encode())
        self.booted = re.compile(rb"(?:^|\n)RP-BOOTED " + n + rb" (\S+)\n")
        self.setup_done = re.compile(rb"(?:^|\n)RP-SETUP-DONE " + n + rb"\n")
        self.setup_fail = re.compile(rb"(?:^|\n)RP-SETUP-FAIL " + n + rb" (\S+)\n")
        self.exit = re.compile(rb"\nRP-EXIT " + n + rb" (-?\d+)\n")
        self.buf = bytearray()
        self.release: str | None = None
        self.output_start: int | None = None  # offset just past RP-SETUP-DONE
        self.setup_failed: str | None = None
        self.exit_code: int | None = None
        self.exit_at: int | None = None
        self.scale: int | None = None  # the guest's RP-SCALE, once it printed one
        self._scanned = 0

    def feed(self, data: bytes) -> None:
        if not data:
            return
        self.buf += data
        # Rescan a little before the new data: a marker may straddle two reads.
        start = max(0, self._scanned - 128)
        self._scanned = len(self.buf)
        if self.release is None and (m := self.booted.search(self.buf)):
            self.release = m.group(1).decode(errors="replace")
        if self.output_start is None and self.release is not None:
            if m := self.setup_done.search(self.buf):
                self.output_start = m.end()
            elif m := self.setup_fail.search(self.buf):
                self.setup_failed = m.group(1).decode(errors="replace")
        if self.output_start is not None and self.exit_code is None:
            if m := self.exit.search(self.buf, max(start, self.output_start - 1)):
                self.exit_code, self.exit_at = int(m.group(1)), m.start()
        if self.output_start is not None and self.scale is None:
            if m := _SCALE.search(self.buf, self.output_start - 1):
                self.scale = max(1, int(m.group(1)))

    @property
    def phase(self) -> str:
        if self.release is None:
            return "boot"
        return "setup" if self.output_start is None else "run"

    def output(self) -> str:
        if self.output_start is None:
            return ""
        end = self.exit_at if self.exit_at is not None else len(self.buf)
        return bytes(self.buf[self.output_start:end]).decode(errors="replace")


def _console_hint(console_log: Path) -> str:
    """The most telling line of the kernel log, for the error message."""
    try:
        lines = console_log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    for needle in ("Kernel panic", "No working init", "Initramfs unpacking failed",
                   "BUG:", "Oops", "general protection"):
        for line in lines:
            if needle in line:
                return line.strip()
    return lines[-1].strip() if lines else ""


def boot(kernel_name: str, vmlinuz: Path, initrd: Path, accel: Accel, workdir: Path, *,
         nonce: str, command: str | None, timeouts: Timeouts = Timeouts(),
         boot_timeout: float | None = None, memory_mb: int = 256,
         qemu: str | None = None, verbose: bool = False, vcpus: int = 1,
         tcg_thread: str | None = None,
         extra_kernel_args: Sequence[str] = ()) -> VmResult:
    """Run qemu once with one accelerator; no fallback here."""
    workdir.mkdir(parents=True, exist_ok=True)
    tag = accel.name
    console_log, output_log = workdir / f"console.{tag}.log", workdir / f"output.{tag}.log"
    journal_log = workdir / f"journal.{tag}.log"
    qemu_log = workdir / f"qemu.{tag}.log"
    cmd = build_command(pvh.boot_image(vmlinuz), initrd, accel, console_log=console_log,
                        output_log=output_log, nonce=nonce, command=command,
                        journal_log=journal_log,
                        memory_mb=memory_mb, qemu=qemu, verbose=verbose,
                        vcpus=vcpus, tcg_thread=tcg_thread,
                        extra_kernel_args=extra_kernel_args)
    (workdir / f"cmdline.{tag}").write_text(shlex.join(cmd.argv()) + "\n")
    thread = next((a.split("thread=")[1] for a in cmd.qemu_args if "thread=" in a), None)
    output_log.write_bytes(b"")
    stream = _Stream(nonce)
    result = VmResult(kernel_name, None, accel.name, "boot", "ERROR", None, "", None, None,
                      0.0, console_log, output_log, vcpus=vcpus, tcg_thread=thread,
                      journal_log=journal_log)
    deadlines = {"boot": boot_timeout or timeouts.boot, "setup": timeouts.setup,
                 "run": timeouts.run}
    start = time.monotonic()
    phase_start, phase = start, "boot"
    proc = None
    try:
        with open(qemu_log, "wb") as qlog, open(output_log, "rb") as out:
            try:
                proc = subprocess.Popen(cmd.argv(), stdin=subprocess.DEVNULL, stdout=qlog,
                                        stderr=subprocess.STDOUT,
                                        preexec_fn=die_with_parent)
            except OSError as e:
                result.error = f"cannot start {cmd.qemu_args[0]}: {e.strerror}"
                return result
            exited = None
            last_output = start
            while True:
                exited = proc.poll()
                data = out.read()  # after poll, so a dead qemu's last bytes count
                stream.feed(data)
                now = time.monotonic()
                if data:
                    last_output = now
                if stream.phase != phase:
                    if phase == "boot":
                        result.boot_time = now - start
                    phase, phase_start = stream.phase, now
                if stream.exit_code is not None:
                    result.result_time = now - start
                    break
                if stream.setup_failed or exited is not None:
                    break
                if now - phase_start > deadlines[phase]:
                    result.error = (f"timeout: no progress in phase {phase} after "
                                    f"{deadlines[phase]:.0f} s")
                    break
                idle = timeouts.idle * (stream.scale or 1) if timeouts.idle else None
                if phase == "run" and idle and now - last_output > idle:
                    result.error = (f"timeout: no output in phase run for {idle:.0f} s "
                                    f"({timeouts.idle:.0f} s x the guest's measured scale "
                                    f"{stream.scale or 1})")
                    break
                time.sleep(POLL_S)
            if stream.exit_code is not None and exited is None:
                try:
                    proc.wait(timeout=timeouts.shutdown)
                except subprocess.TimeoutExpired:
                    result.notes.append("qemu did not exit after poweroff; killed")
            stream.feed(out.read())
    finally:
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        result.duration = time.monotonic() - start
    result.phase, result.release, result.output = stream.phase, stream.release, stream.output()
    result.exit_code = stream.exit_code
    result.scale = stream.scale
    if stream.exit_code is not None:
        result.status, result.error = "OK", ""
    elif not result.error:
        if stream.setup_failed:
            result.error = f"setup step {stream.setup_failed} failed in the guest"
        else:
            rc = proc.returncode if proc else None
            how = f"killed by signal {-rc}" if rc is not None and rc < 0 else f"exit code {rc}"
            result.error = f"qemu ended ({how}) in phase {stream.phase}"
            if stream.phase == "run":
                result.error += " before RP-EXIT: output truncated"
    if result.status == "ERROR":
        detail = _qemu_log_tail(qemu_log) or _console_hint(console_log)
        if detail:
            result.error += f": {detail}"
    return result


def _qemu_log_tail(qemu_log: Path) -> str:
    try:
        lines = qemu_log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(lines[-2:])


# ---------------------------------------------------------------------------------------
# The entry point: fetch, build, choose the accelerator, boot.


KEEP_RUNS = 50


def _prune_runs(runs: Path) -> None:
    """Default run directories keep their logs; only the newest KEEP_RUNS stay."""
    try:
        old = sorted(runs.iterdir(), key=lambda p: p.stat().st_mtime)[:-KEEP_RUNS]
    except OSError:
        return
    for d in old:
        shutil.rmtree(d, ignore_errors=True)


def run_in_vm(kernel: str | Kernel | FetchedKernel, command: str | Sequence[str], *,
              files: Iterable[tuple[Path | str, str]] = (),
              timeouts: Timeouts = Timeouts(), accel: str = "auto",
              workdir: Path | str | None = None, memory_mb: int = 256,
              qemu: str | None = None, verbose: bool = False, keep_initrd: bool = False,
              initrd: Path | None = None, extra_kernel_args: Sequence[str] = (),
              vcpus: int = DEFAULT_VCPUS, tcg_thread: str | None = None,
              log: Callable[[str], None] | None = None) -> VmResult:
    """Boot `kernel` with a fresh initramfs holding `files` and run `command`.

    command: a shell string, or an argv list (quoted with shlex). accel: "auto" tries
    KVM, falls back to TCG by itself and remembers the verdict; "kvm"/"tcg" force one
    (so does the RP_ACCEL environment variable). initrd: use this cpio as is (tests).
    vcpus: the guest's CPUs; TCG runs them as ci/vm/accel.toml says for this QEMU
    (tcg_thread overrides it: the SMP soak compares both).
    Raises VmError only for a kernel that cannot be fetched or files that cannot be
    read; anything that goes wrong in qemu is a VmResult with status ERROR.
    """
    log = log or (lambda msg: None)
    fetched = kernel if isinstance(kernel, FetchedKernel) else fetch_kernel(kernel)
    name = fetched.kernel.name
    if not isinstance(command, str):
        command = shlex.join(command)
    qemu = qemu or os.environ.get("RP_QEMU", QEMU)
    nonce = secrets.token_hex(8)
    if workdir is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        workdir = cache_dir() / "runs" / f"{stamp}-{name}-{nonce[:6]}"
        _prune_runs(workdir.parent)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    in_cmdline = len(command.encode()) <= MAX_CMDLINE_COMMAND
    own_initrd = initrd is None
    if own_initrd:
        data = None if in_cmdline else {"rp/cmd": command.encode()}
        initrd = build_initramfs(workdir / "initramfs.cpio", files, data=data)
    notes = []
    try:
        choice = accel_choice(qemu, accel)
        for i, acc in enumerate(choice):
            probing = acc is KVM and len(choice) > 1
            result = boot(name, fetched.vmlinuz, initrd, acc, workdir, nonce=nonce,
                          command=command if in_cmdline else None, timeouts=timeouts,
                          boot_timeout=timeouts.kvm_boot if acc is KVM else None,
                          memory_mb=memory_mb, qemu=qemu, verbose=verbose,
                          vcpus=vcpus, tcg_thread=tcg_thread,
                          extra_kernel_args=extra_kernel_args)
            result.notes[:0] = notes
            if probing and result.phase == "boot" and not result.ok:
                notes.append(f"kvm failed to boot, fell back to tcg: {result.error}")
                log(f"{name}: {notes[-1]}")
                continue
            if probing:
                record_kvm_verdict(qemu, True)
            elif i > 0 and result.phase != "boot":
                # TCG booted what KVM could not: the fault is KVM's, not the kernel's.
                record_kvm_verdict(qemu, False, notes[-1])
            return result
        raise AssertionError("unreachable")
    finally:
        if own_initrd and not keep_initrd:
            initrd.unlink(missing_ok=True)
