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
import fcntl
import gzip
import json
import lzma
import os
import re
import shlex
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ci.vm.kernels import (FetchedKernel, Kernel, PrivateApt, VmError, archive_uris, cache_dir,
                           fetch_kernel, load_matrix)
from ci.vm.qemu import Timeouts, VmResult, run_in_vm

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
    """The binary without debug info (15 MB -> 3.5 MB): the uncompressed initramfs is
    copied into guest memory at every boot."""
    out = binary.with_name(binary.name + ".guest")
    if not out.is_file() or out.stat().st_mtime < binary.stat().st_mtime:
        tmp = out.with_name(out.name + f".{os.getpid()}")
        _run_logged(["strip", "--strip-debug", "-o", str(tmp), str(binary)], "strip", 120)
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


# ---------------------------------------------------------------------------------------
# sock_diag modules out of the kernel's own package.


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    # The same lock files as vm.kernels: pytest-xdist workers fetch concurrently.
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _module_package(fetched: FetchedKernel) -> str:
    # The split layout of 7.x keeps the modules in linux-modules-<release>, the classic
    # linux-image-* packages carry them next to the vmlinuz.
    if fetched.kernel.vmlinuz.startswith("usr/lib/modules/"):
        return f"linux-modules-{fetched.release}"
    return fetched.package


def _decompress(name: str, data: bytes) -> bytes:
    if name.endswith(".xz"):
        return lzma.decompress(data)
    if name.endswith(".gz"):
        return gzip.decompress(data)
    if name.endswith(".zst"):
        proc = subprocess.run(["zstd", "-dc"], input=data, capture_output=True, timeout=60)
        if proc.returncode != 0:
            raise DriverError(f"zstd -dc failed on {name} (install zstd)")
        return proc.stdout
    return data


def fetch_modules(fetched: FetchedKernel,
                  log: Callable[[str], None] = lambda m: None) -> list[Path]:
    """The diag modules of this kernel, decompressed, in load order; cached per release.

    A module the package lacks is taken to be built in (nothing to load).
    """
    import tarfile

    mdir = cache_dir() / "kernels" / fetched.kernel.name / "modules" / fetched.release
    stamp = mdir / "complete.json"
    if stamp.is_file():
        have = json.loads(stamp.read_text())
        return [mdir / f"{m}.ko" for m in have]
    package = _module_package(fetched)
    with _locked(cache_dir() / "kernels" / f"{fetched.kernel.name}.modules.lock"):
        if stamp.is_file():
            return [mdir / f"{m}.ko" for m in json.loads(stamp.read_text())]
        suite = fetched.kernel.suite
        main, security = archive_uris()
        apt = PrivateApt(cache_dir() / "apt" / suite, suite)
        with _locked(cache_dir() / "apt" / f"{suite}.lock"):
            apt.update(security if fetched.kernel.security else main)
        log(f"{fetched.kernel.name}: downloading {package}={fetched.version} for "
            f"{', '.join(DIAG_MODULES)}")
        mdir.mkdir(parents=True, exist_ok=True)
        pattern = re.compile(r"(?:usr/)?lib/modules/[^/]+/kernel/net/ipv4/(" +
                             "|".join(DIAG_MODULES) + r")\.ko(\.xz|\.gz|\.zst)?$")
        found: dict[str, bytes] = {}
        with tempfile.TemporaryDirectory(dir=mdir, prefix="dl.") as tmp:
            deb = apt.download(package, fetched.version, Path(tmp))
            proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            try:
                with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                    for member in tar:
                        name = member.name.removeprefix("./")
                        if (m := pattern.match(name)) and member.isfile():
                            found[m.group(1)] = _decompress(name,
                                                            tar.extractfile(member).read())
            except tarfile.TarError as e:
                raise DriverError(f"{deb.name}: not a valid package: {e}") from None
            finally:
                proc.stdout.close()
                proc.wait()
        have = [m for m in DIAG_MODULES if m in found]
        for m in have:
            (mdir / f"{m}.ko").write_bytes(found[m])
        stamp.write_text(json.dumps(have) + "\n")
        log(f"{fetched.kernel.name}: modules {', '.join(have) or 'none (built in)'} "
            f"-> {mdir}")
        return [mdir / f"{m}.ko" for m in have]


# ---------------------------------------------------------------------------------------
# One kernel's run.


@dataclasses.dataclass
class KernelRun:
    name: str  # as in ci/kernels.toml
    release: str | None  # uname -r
    ok: bool  # the catalogue ran to its end and its JSON came back
    error: str = ""
    doc: dict | None = None  # the `run --json` document
    records: list[dict] = dataclasses.field(default_factory=list)
    console_log: Path | None = None
    output_log: Path | None = None
    accel: str | None = None
    package: str | None = None
    version: str | None = None
    boot_time: float | None = None  # qemu start -> kernel up
    first_result_time: float | None = None  # qemu start (or process start) -> 1st record
    duration: float = 0.0
    progress: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)

    def record(self, case: str, variant: str) -> dict | None:
        for r in self.records:
            if r.get("case") == case and r.get("variant") == variant:
                return r
        return None

    def where(self) -> str:
        return f"console log: {self.console_log}" if self.console_log else \
            f"output: {self.output_log}"


def between_markers(output: str, begin_marker: str = BEGIN, end_marker: str = END):
    """The JSON document between the last begin marker of the guest's output and its end."""
    begin = output.rfind(begin_marker)
    if begin < 0:
        raise ValueError("no results in the output (marker missing)")
    end = output.find(end_marker, begin)
    if end < 0:
        raise ValueError("the results are cut off (end marker missing)")
    text = output[begin + len(begin_marker):end]
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"the results are not valid JSON: {e}") from None
    return doc


def parse_results(output: str) -> dict:
    """The `run --json` document between the markers of the guest's output."""
    doc = between_markers(output)
    if not isinstance(doc, dict) or not isinstance(doc.get("records"), list):
        raise ValueError("the results have no records list")
    if doc.get("complete") is False:  # written while `run` ran, which then died
        raise ValueError("the run did not complete")
    return doc


def parse_progress(output: str) -> list[tuple[str, str, str]]:
    """(verdict, case, variant) of every progress line, for a run that ended early."""
    return [(m.group(1), m.group(4), m.group(5)) for m in PROGRESS_RE.finditer(output)]


def guest_script(globs: Iterable[str], modules: Iterable[str]) -> str:
    run = [GUEST_BIN, "run", "--json", GUEST_JSON]
    for g in globs:
        run += ["--case", g]
    lines = [f"insmod {shlex.quote(m)} || echo 'RP-MATRIX-WARN: insmod {m} failed'"
             for m in modules]
    # TCG runs the guest ~10x slower than the host: the cases' own timeouts scale with it.
    lines += ["export RP_TIMEOUT_SCALE=10", shlex.join(run), "rc=$?",
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
    # A variant takes 0.5-3 s under TCG and at most ~20 s (its own connect/response
    # timeouts) when the kernel misbehaves; past this the guest is taken as hung.
    return 60.0 + 20.0 * n_variants


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
               log: Callable[[str], None] = lambda m: None) -> GuestBoot:
    """Fetch `name`, put the stripped static binary and the kernel's diag modules into a
    fresh initramfs and run make_script(<the modules' paths in the guest>) in it.

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
    except VmError as e:
        return GuestBoot(None, None, error=str(e))
    files = [(guest_copy(binary), GUEST_BIN)]
    guest_modules = [f"/rp/mod/{m.name}" for m in modules]
    files += list(zip(modules, guest_modules))
    emit({"ev": "kernel", "kernel": name, "state": "booting", "release": fetched.release})
    t0 = time.monotonic()
    with (watch() if watch else contextlib.nullcontext()):
        try:
            result = run_in_vm(fetched, make_script(guest_modules), files=files,
                               timeouts=timeouts, workdir=workdir, initrd=initrd,
                               memory_mb=memory_mb, log=log)
        except VmError as e:
            return GuestBoot(fetched, None, error=str(e), duration=time.monotonic() - t0)
    return GuestBoot(fetched, result, duration=result.duration)


def run_guest(name: str, globs: list[str], n_variants: int, *, binary: Path, workdir: Path,
              matrix: dict[str, Kernel] | None = None, timeouts: Timeouts | None = None,
              vmlinuz: Path | None = None, initrd: Path | None = None,
              log: Callable[[str], None] = lambda m: None) -> KernelRun:
    """Boot `name` once and run the selected cases in it.

    vmlinuz / initrd replace the fetched kernel or the generated initramfs (tests).
    """
    watcher = _Watcher(lambda: list(workdir.glob("output.*.log")), name, n_variants)
    boot = boot_guest(name, lambda mods: guest_script(globs, mods), binary=binary,
                      workdir=workdir, matrix=matrix,
                      timeouts=timeouts or Timeouts(run=run_timeout(n_variants)),
                      vmlinuz=vmlinuz, initrd=initrd, watch=lambda: watcher, log=log)
    fetched, result = boot.fetched, boot.result
    if result is None:
        return KernelRun(name, fetched.release if fetched else None, False, error=boot.error,
                         duration=boot.duration)
    run = KernelRun(name, result.release or fetched.release, False,
                    console_log=result.console_log, output_log=result.output_log,
                    accel=result.accel, package=fetched.package, version=fetched.version,
                    boot_time=result.boot_time, first_result_time=watcher.first_result,
                    duration=result.duration)
    run.progress = parse_progress(result.output)
    if result.release and result.release != fetched.release:
        run.error = (f"the guest reports release {result.release}, the package "
                     f"{fetched.release}")
        return run
    try:
        run.doc = parse_results(result.output)
        run.records = run.doc["records"]
    except ValueError as e:
        if result.ok:
            run.error = f"exit {result.exit_code}, {e}"
        else:
            run.error = f"phase {result.phase}: {result.error}"
        if run.progress:
            run.error += (f" (after {len(run.progress)} of {n_variants} variants; "
                          f"last: {run.progress[-1][1]}/{run.progress[-1][2]})")
        return run
    run.ok = True
    return run


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
               log: Callable[[str], None] = lambda m: None, **kw) -> KernelRun:
    workdir = runs_dir / name
    if matrix[name].is_host:
        return run_host(globs, n_variants, binary=binary, workdir=workdir,
                        timeout=kw.get("timeouts").run if kw.get("timeouts") else None)
    return run_guest(name, globs, n_variants, binary=binary, workdir=workdir, matrix=matrix,
                     log=log, **kw)


def record_ref(r: dict) -> str:
    """A record's key in a results file, as `run` prints it: "case/variant #repeat"."""
    return f"{r.get('case', '')}/{r.get('variant', '')} #{r.get('repeat', 0)}"


def _sorted_records(records: Iterable[dict]) -> list[dict]:
    return sorted(records, key=lambda r: (r.get("case", ""), r.get("variant", ""),
                                          r.get("repeat", 0)))


def _run_entry(doc: dict, matrix: dict, records: Iterable[dict]) -> dict:
    """One item of `runs`: the run that wrote these records and when."""
    return {"command": list(doc.get("command") or ["?"]),
            "started_at": doc.get("started_at"), "finished_at": doc.get("finished_at"),
            "expectations": doc.get("expectations", ""), "matrix": matrix,
            "records": [record_ref(r) for r in _sorted_records(records)]}


def results_document(run: KernelRun, old: dict | None = None) -> tuple[dict, list[str]]:
    """What results/<release>/results.json holds after this run, and notes on what of `old`
    (the file as it was) was not kept.

    A narrower run (`matrix --case GLOB`) must not cost the records of the variants it did
    not run: the run's records replace those of the same case x variant x repeat, the others
    stay, and `runs` says which run wrote which record. The top-level fields are the newest
    run's. Only records of the same kernel release are kept: the file is per release, and a
    record of another kernel in it (a copied file) would be judged as this kernel's.
    """
    matrix = {"kernel": run.name, "package": run.package, "version": run.version}
    doc = dict(run.doc or {})
    doc.pop("runs", None)
    notes: list[str] = []
    fresh = {record_ref(r) for r in run.records}
    kept: list[dict] = []
    runs: list[dict] = []
    if old is not None:
        if old.get("kernel") != run.release:
            notes.append(f"the old file is of kernel {old.get('kernel')!r}, not {run.release}: "
                         f"its {len(old.get('records') or [])} record(s) are not kept")
        else:
            other = [r for r in old["records"] if r.get("kernel") != run.release]
            if other:
                notes.append(f"{len(other)} old record(s) of another kernel "
                             f"({', '.join(sorted({str(r.get('kernel')) for r in other}))}) "
                             "are not kept")
            kept = [r for r in old["records"]
                    if r.get("kernel") == run.release and record_ref(r) not in fresh]
            # A file written before `runs` existed was one run: its top-level fields say which.
            old_runs = old.get("runs") or [_run_entry(old, old.get("matrix") or matrix,
                                                           old["records"])]
            still = {record_ref(r) for r in kept}
            for entry in old_runs:
                refs = [ref for ref in entry.get("records", []) if ref in still]
                if refs:
                    runs.append({**entry, "records": refs})
    doc["records"] = _sorted_records(kept + list(run.records))
    doc["matrix"] = matrix
    doc["runs"] = runs + [_run_entry(doc, matrix, run.records)]
    return doc, notes


def _read_old(dest: Path) -> tuple[dict | None, str]:
    """The results file as it is, or None and why it cannot be merged with."""
    try:
        old = json.loads(dest.read_text())
    except FileNotFoundError:
        return None, ""
    except (OSError, ValueError) as e:
        return None, f"not readable as JSON ({e})"
    if not isinstance(old, dict) or not isinstance(old.get("records"), list) or \
            not all(isinstance(r, dict) for r in old["records"]):
        return None, "not a results document (no records list)"
    return old, ""


def write_results(results_dir: Path, run: KernelRun,
                  log: Callable[[str], None] = lambda m: None) -> Path:
    """Merge the run's records into results/<release>/results.json (results_document).

    A file that cannot be read is moved aside, never silently replaced.
    """
    dest = results_dir / run.release / "results.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Two matrix commands on one kernel must not both read the old file and lose each
    # other's records.
    with _locked(dest.parent / ".results.json.lock"):
        old, why = _read_old(dest)
        if why:
            aside = dest.with_name(f"results.json.unreadable-{int(time.time())}")
            os.replace(dest, aside)
            log(f"{dest}: {why}; moved to {aside.name}")
        doc, notes = results_document(run, old)
        for note in notes:
            log(f"{dest}: {note}")
        tmp = dest.with_name(f".results.json.{os.getpid()}")
        # On disk before the rename: a crash right after must not leave an empty results.json.
        with open(tmp, "w") as f:
            f.write(json.dumps(doc, indent=1) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    return dest


def error_record(run: KernelRun, case: str, variant: str, reason: str) -> dict:
    """A record for a variant whose kernel never produced one (infrastructure ERROR)."""
    return {"case": case, "variant": variant, "kernel": run.release or run.name,
            "repeat": 0, "expected": {}, "observed": {}, "verdict": "ERROR",
            "reason": reason, "source": "", "duration_s": 0.0}


def parse_kernels(spec: str | None, matrix: dict[str, Kernel]) -> list[str]:
    """"5.10,6.12" -> names, "all" (or None) -> every kernel; unknown names are an error."""
    if spec is None or spec.strip() in ("", "all"):
        return list(matrix)
    names = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in matrix]
    if unknown:
        raise DriverError(f"unknown kernel(s) {', '.join(unknown)}; known kernels: "
                          f"{', '.join(matrix)} (ci/kernels.toml)")
    return list(dict.fromkeys(names))


__all__ = ["DriverError", "GuestBoot", "KernelRun", "between_markers", "boot_guest", "emit", "ensure_static_binary", "error_record",
           "fetch_modules", "guest_script", "is_static_elf", "list_variants", "load_matrix",
           "parse_kernels", "parse_progress", "parse_results", "record_ref", "run_guest",
           "run_host", "run_kernel", "results_document", "write_results"]
