"""Run the reuseport-check catalogue on one kernel of the matrix and get its records back.

A guest kernel is booted once for all its selected cases: the static reuseport-check and
the sock_diag modules go into the initramfs, `reuseport-check run --json` runs in the
guest, and the JSON comes back on ttyS1 between two markers. The host kernel ("running")
runs the same binary directly. Nothing here raises for a VM that fails: a KernelRun
carries the error, the console log and whatever records did come back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shlex
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

# The shared names, the static binary, the modules and the results documents live in
# their own modules; they are re-exported here, where the tests and the plugin look.
from ci.matrix.common import (  # noqa: F401
    BEGIN, CI_DIR, DIAG_MODULES, END, GOOD_VERDICTS, GUEST_BIN, GUEST_JSON, PROGRESS_RE, REPO,
    VERDICTS, DriverError, _locked, emit)
from ci.matrix import speed
from ci.matrix.modules import _decompress, _module_package, fetch_modules  # noqa: F401
from ci.matrix.results import (  # noqa: F401
    KernelRun, _read_old, add_console_tail, console_tail, _run_entry, _sorted_records, between_markers, error_record,
    parse_progress, parse_results, record_ref, results_document, write_results)
from ci.matrix.static import (  # noqa: F401
    _run_logged, ensure_static_binary, guest_copy, is_static_elf, list_variants,
    static_build_dir)
from ci.vm.kernels import (  # noqa: F401
    FetchedKernel, Kernel, PrivateApt, VmError, archive_uris, cache_dir, check_local,
    fetch_kernel, load_matrix)
from ci.vm.qemu import DEFAULT_VCPUS, Timeouts, VmResult, run_in_vm


def guest_script(globs: Iterable[str], modules: Iterable[str], vcpus: int = DEFAULT_VCPUS,
                 host_us: int | None = None) -> str:
    run = [GUEST_BIN, "run", "--json", GUEST_JSON]
    # One variant per vCPU, not `run`'s default of four: under TCG a guest's CPUs are the
    # bottleneck, not timers. Measured on 6.1 (2 vCPUs, alone): -j 2 153 s, 307 PASS 12 XFAIL;
    # -j 8 154 s and 12 FAIL (SYNs retransmitted by starved clients ran steering programs
    # twice, and queues filled late).
    run += ["-j", str(max(1, vcpus))]
    for g in globs:
        run += ["--case", g]
    lines = [f"insmod {shlex.quote(m)} || echo 'RP-MATRIX-WARN: insmod {m} failed'"
             for m in modules]
    # The cases' own timeouts scale with how much slower than the host the guest is,
    # measured here with as many copies at once as the guest has CPUs (speed.py).
    lines += speed.guest_lines(vcpus, host_us)
    # Every record also goes out on ttyS2 the moment `run` journals it: a guest that hangs
    # or dies later still gave the host what it finished (journal_records).
    lines += [f"stty raw -echo </dev/ttyS2 2>/dev/null && "
              f"{{ tail -F -n +1 {GUEST_JSON}.jsonl >/dev/ttyS2 2>/dev/null & rp_tail=$!; }}",
              shlex.join(run), "rc=$?", '[ -z "$rp_tail" ] || kill $rp_tail',
              f"if [ -f {GUEST_JSON} ]; then echo; echo {BEGIN}; cat {GUEST_JSON}; "
              f"echo; echo {END}; fi",
              "exit $rc"]
    return "\n".join(lines) + "\n"


class _Watcher:
    """Tails a growing output file: when the first record appeared, how many are done."""

    def __init__(self, pattern: Callable[[], list[Path]], name: str, total: int):
        self._pattern, self._name, self._total = pattern, name, total
        self._start = time.monotonic()
        self.first_result: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "_Watcher":
        self._start = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def _loop(self) -> None:
        done = -1
        while not self._stop.wait(0.05):
            n = 0
            for p in self._pattern():
                try:
                    n = max(n, len(PROGRESS_RE.findall(p.read_text(errors="replace"))))
                except OSError:
                    pass
            if n > 0 and self.first_result is None:
                self.first_result = time.monotonic() - self._start
            if n != done:
                if n > 0:
                    emit({"ev": "progress", "kernel": self._name, "done": n,
                          "total": self._total})
                done = n


def run_timeout(n_variants: int) -> float:
    # The backstop for a whole catalogue (a variant takes 0.5-8 s under TCG). A hung guest
    # ends long before, by the idle limit (IDLE_S x the guest's measured scale).
    return 60.0 + 20.0 * n_variants


# No new line from the guest for this long, times its measured RP-SCALE, and it is hung:
# a variant's own limit (run_isolated, 60 s x scale) fires before, and prints an ERROR line.
IDLE_S = 90.0


@dataclasses.dataclass
class GuestBoot:
    """One boot of a guest kernel with a script: what was fetched and what qemu did."""

    fetched: FetchedKernel | None
    result: VmResult | None
    error: str = ""  # set when the kernel could not be fetched or qemu not started
    duration: float = 0.0


def boot_guest(name: str, make_script: Callable[[list[str]], str], *, binary: Path,
               workdir: Path, timeouts: Timeouts, matrix: dict[str, Kernel] | None = None,
               vmlinuz: Path | None = None, initrd: Path | None = None,
               memory_mb: int = 256, watch: Callable[[], object] | None = None,
               vcpus: int = DEFAULT_VCPUS, tcg_thread: str | None = None,
               extra_files: Iterable[tuple[Path, str]] = (),
               log: Callable[[str], None] = lambda m: None) -> GuestBoot:
    """Fetch `name`, put the stripped static binary and the kernel's diag modules into a
    fresh initramfs and run make_script(<the modules' paths in the guest>) in it.

    extra_files: (host path, guest path) pairs to put in too (a dynamically linked ELF
    brings its loader and libraries: ci/vm/initramfs.py).

    watch: a context manager factory held open while qemu runs (progress tailers).
    vmlinuz / initrd replace the fetched kernel or the generated initramfs (tests).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    for old in workdir.glob("*.log"):
        old.unlink()
    try:
        fetched = fetch_kernel(name, matrix=matrix, log=log)
        if vmlinuz is not None:
            fetched = dataclasses.replace(fetched, vmlinuz=vmlinuz)
        emit({"ev": "kernel", "kernel": name, "state": "modules", "release": fetched.release})
        modules = fetch_modules(fetched, log=log) if initrd is None else []
        for note in fetched.notes:
            log(note)
            emit({"ev": "note", "kernel": name, "note": note})
    except VmError as e:
        return GuestBoot(None, None, error=str(e))
    files = [(guest_copy(binary), GUEST_BIN)]
    guest_modules = [f"/rp/mod/{m.name}" for m in modules]
    files += list(zip(modules, guest_modules))
    files += list(extra_files)
    emit({"ev": "kernel", "kernel": name, "state": "booting", "release": fetched.release})
    t0 = time.monotonic()
    with (watch() if watch else contextlib.nullcontext()):
        try:
            result = run_in_vm(fetched, make_script(guest_modules), files=files,
                               timeouts=timeouts, workdir=workdir, initrd=initrd,
                               memory_mb=memory_mb, vcpus=vcpus, tcg_thread=tcg_thread,
                               log=log)
        except VmError as e:
            return GuestBoot(fetched, None, error=str(e), duration=time.monotonic() - t0)
    return GuestBoot(fetched, result, duration=result.duration)


def run_guest(name: str, globs: list[str], n_variants: int, *, binary: Path, workdir: Path,
              matrix: dict[str, Kernel] | None = None, timeouts: Timeouts | None = None,
              vmlinuz: Path | None = None, initrd: Path | None = None,
              vcpus: int = DEFAULT_VCPUS, tcg_thread: str | None = None,
              log: Callable[[str], None] = lambda m: None) -> KernelRun:
    """Boot `name` once and run the selected cases in it.

    vmlinuz / initrd replace the fetched kernel or the generated initramfs (tests).
    """
    watcher = _Watcher(lambda: list(workdir.glob("output.*.log")), name, n_variants)
    boot = boot_guest(name, lambda mods: guest_script(globs, mods, vcpus), binary=binary,
                      workdir=workdir, matrix=matrix,
                      timeouts=timeouts or Timeouts(run=run_timeout(n_variants), idle=IDLE_S),
                      vmlinuz=vmlinuz, initrd=initrd, watch=lambda: watcher, vcpus=vcpus,
                      tcg_thread=tcg_thread, log=log)
    fetched, result = boot.fetched, boot.result
    if result is None:
        return KernelRun(name, fetched.release if fetched else None, False, error=boot.error,
                         duration=boot.duration)
    run = KernelRun(name, result.release or fetched.release, False,
                    console_log=result.console_log, output_log=result.output_log,
                    accel=result.accel, package=fetched.package, version=fetched.version,
                    boot_time=result.boot_time, first_result_time=watcher.first_result,
                    duration=result.duration, vcpus=result.vcpus,
                    tcg_thread=result.tcg_thread, timeout_scale=result.scale)
    run.progress = parse_progress(result.output)
    # A bare image may not state its release: then the guest's answer is the only one.
    if result.release and fetched.release and result.release != fetched.release:
        run.error = (f"the guest reports release {result.release}, {fetched.release_from} "
                     f"{fetched.release}")
        return run
    try:
        run.doc = parse_results(result.output)
        run.records = run.doc["records"]
        add_console_tail(run)
    except ValueError as e:
        if result.ok:
            run.error = f"exit {result.exit_code}, {e}"
        else:
            run.error = f"phase {result.phase}: {result.error}"
        if run.progress:
            run.error += (f" (after {len(run.progress)} of {n_variants} variants; "
                          f"last: {run.progress[-1][1]}/{run.progress[-1][2]})")
        # What the guest finished before it went: real records, kept; the rest ERROR.
        run.records = journal_records(result.journal_log, run.release)
        if run.records:
            run.error += f"; {len(run.records)} record(s) kept from the guest's journal"
            add_console_tail(run)
        return run
    if not run.release:  # results/<release>/ needs it; the boot marker always carries it
        run.error = "the guest did not report its release (uname -r)"
        return run
    run.ok = True
    return run


def journal_records(journal: Path | None, release: str | None) -> list[dict]:
    """The records the guest streamed on ttyS2 (one JSON line each, as `run` journals
    them); a line cut off by the end of the guest is not one."""
    if journal is None:
        return []
    try:
        text = journal.read_bytes().decode(errors="replace")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and "verdict" in rec and rec.get("kernel") == release:
            out.append(rec)
    return out


def run_host(globs: list[str], n_variants: int, *, binary: Path, workdir: Path,
             timeout: float | None = None) -> KernelRun:
    """The same catalogue on the machine's own kernel, no VM."""
    release = os.uname().release
    workdir.mkdir(parents=True, exist_ok=True)
    out_path, json_path = workdir / "output.log", workdir / "results.json"
    json_path.unlink(missing_ok=True)
    if os.geteuid() != 0:
        return KernelRun("running", release, False, output_log=out_path,
                         error="the running kernel's cases need root (network namespaces, "
                               "sysctls): run as root or leave 'running' out of --kernels")
    argv = [str(binary), "run", "--json", str(json_path)]
    for g in globs:
        argv += ["--case", g]
    timeout = timeout or run_timeout(n_variants)
    emit({"ev": "kernel", "kernel": "running", "state": "running", "release": release})
    t0 = time.monotonic()
    with open(out_path, "wb") as out, \
            _Watcher(lambda: [out_path], "running", n_variants) as watch:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
            error = ""
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc, error = None, f"timeout: the run took longer than {timeout:.0f} s"
    run = KernelRun("running", release, False, output_log=out_path,
                    first_result_time=watch.first_result, duration=time.monotonic() - t0)
    run.progress = parse_progress(out_path.read_text(errors="replace"))
    try:
        run.doc = json.loads(json_path.read_text())
        run.records = run.doc["records"]
        if run.doc.get("complete") is False:  # `run` was killed: keep what it finished
            raise ValueError("incomplete")
        run.ok = True
    except (OSError, ValueError, KeyError) as e:
        run.error = error or f"exit {rc}, no results written ({e.__class__.__name__})"
    return run


def run_kernel(name: str, globs: list[str], n_variants: int, *, binary: Path,
               runs_dir: Path, matrix: dict[str, Kernel],
               log: Callable[[str], None] = lambda m: None,
               vcpus: int = DEFAULT_VCPUS, **kw) -> KernelRun:
    """run_host or run_guest; vcpus is the guest's (the host has its own CPUs)."""
    workdir = runs_dir / name
    if matrix[name].is_host:
        return run_host(globs, n_variants, binary=binary, workdir=workdir,
                        timeout=kw.get("timeouts").run if kw.get("timeouts") else None)
    return run_guest(name, globs, n_variants, binary=binary, workdir=workdir, matrix=matrix,
                     log=log, vcpus=vcpus, **kw)



def parse_kernels(spec: str | None, matrix: dict[str, Kernel]) -> list[str]:
    """"5.10,6.12" -> names, "all" (or None) -> every kernel; unknown names are an error."""
    if spec is None or spec.strip() in ("", "all"):
        names = list(matrix)
    else:
        names = [s.strip() for s in spec.split(",") if s.strip()]
        unknown = [n for n in names if n not in matrix]
        if unknown:
            raise DriverError(f"unknown kernel(s) {', '.join(unknown)}; known kernels: "
                              f"{', '.join(matrix)} (ci/kernels.toml)")
        names = list(dict.fromkeys(names))
    for n in names:
        check_local(matrix[n])  # a missing image or .deb is bad input, before any boot
    return names


__all__ = ["DriverError", "GuestBoot", "KernelRun", "between_markers", "boot_guest", "emit", "ensure_static_binary", "error_record",
           "fetch_modules", "guest_script", "is_static_elf", "list_variants", "load_matrix",
           "parse_kernels", "parse_progress", "parse_results", "record_ref", "run_guest",
           "run_host", "run_kernel", "results_document", "write_results"]
