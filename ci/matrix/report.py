"""The listen-queue loss report over the kernel matrix (`reuseport-check report --kernels`).

    /usr/bin/python3 -m ci.matrix.report --kernels all --host-binary build/bin/reuseport-check

The host kernel ("running") runs `reuseport-check report --host-only --no-render` directly,
first and alone, so that no guest competes with it for the CPUs. Every Debian kernel is then
booted once (qemu, KVM tried first, TCG otherwise) with the static reuseport-check, which
runs the same command inside the guest; the data document comes back on ttyS1 between two
markers and is stored as <out>/data/<release>.json with an `environment` object saying where
it was measured (host, or guest: accelerator, vCPUs, memory). Then make_report.py renders
every document of <out>/data side by side.

Exit status: 0 when every kernel produced its data and no run ended in an error; 1 when a
kernel did not boot, hung, or some runs failed (what did come back is kept and rendered);
2 on bad usage (unknown kernel or profile) or a missing prerequisite.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

from ci.matrix import driver
from ci.vm.kernels import VmError
from ci.vm.qemu import Timeouts, die_with_parent

BEGIN = "RP-REPORT-DATA-BEGIN"
END = "RP-REPORT-DATA-END"
GUEST_OUT = "/tmp/report"
PROFILES = ("quick", "full", "guest")
# A guest run's own limits (run_isolated: 90 s per run, 30 s for the ceiling) are scaled by
# this; the load itself is timed by the wall clock, so the runs take about as long as on the
# host, and only process and namespace set-up is slower under TCG.
GUEST_TIMEOUT_SCALE = 3
# Whole report in one guest, by profile (the runs are bounded one by one as well).
RUN_TIMEOUT = {"guest": 1800.0, "quick": 3600.0, "full": 6 * 3600.0}
GUEST_MEMORY_MB = 512
# Two vCPUs, as the matrix's guests: the worker shapes (ii) and (iii) need a second CPU to
# compare accepting in parallel with sharing one (issue 18).
GUEST_VCPUS = 2
# Lines of the report's progress worth passing on ("[12/100] grid a_close ...", "report: ...").
PROGRESS = re.compile(r"^(\[\d+/\d+\] .*|report: .*|reuseport-check: .*)$")


class ReportError(Exception):
    """Bad usage or a missing prerequisite: one message, exit 2."""


def report_argv(binary: str, profile: str, out: str, repeats: int | None,
                experiments: list[str] | None = None) -> list[str]:
    argv = [binary, "report", "--host-only", "--no-render", "--profile", profile, "--out", out]
    if repeats:
        argv += ["--repeats", str(repeats)]
    if experiments:
        argv += ["--experiments", ",".join(experiments)]
    return argv


def data_name(release: str, experiments: list[str] | None) -> str:
    """The data document's file name, as the report writes it (cli/report_runs.cc):
    <release>.json for the whole plan, <release>.<k1>+<k2>.json for a part of it."""
    return f"{release}.{'+'.join(experiments)}.json" if experiments else f"{release}.json"


def guest_script(profile: str, repeats: int | None, modules: list[str],
                 experiments: list[str] | None = None) -> str:
    lines = [f"insmod {shlex.quote(m)} || echo 'RP-REPORT-WARN: insmod {m} failed'"
             for m in modules]
    lines += [f"export RP_TIMEOUT_SCALE={GUEST_TIMEOUT_SCALE}",
              shlex.join(report_argv(driver.GUEST_BIN, profile, GUEST_OUT, repeats, experiments)),
              "rc=$?",
              f"for f in {GUEST_OUT}/data/*.json; do [ -f \"$f\" ] || continue; "
              f"echo; echo {BEGIN}; cat \"$f\"; echo; echo {END}; done",
              "exit $rc"]
    return "\n".join(lines) + "\n"


class _Say:
    """Prefixed progress lines on stderr, one writer at a time."""

    def __init__(self):
        self._lock = threading.Lock()

    def __call__(self, who: str, msg: str) -> None:
        with self._lock:
            print(f"{who}: {msg}", file=sys.stderr, flush=True)


class _Tail:
    """Passes on the progress lines a guest writes to its output log while it runs."""

    def __init__(self, workdir: Path, who: str, say: _Say):
        self._workdir, self._who, self._say = workdir, who, say
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.lines = 0

    def __enter__(self) -> "_Tail":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._poll()

    def _poll(self) -> None:
        # One output log per accelerator tried (a failed KVM boot leaves its own): the
        # newest is the one running.
        text = ""
        try:
            logs = sorted(self._workdir.glob("output.*.log"), key=lambda p: p.stat().st_mtime)
            if logs:
                text = logs[-1].read_text(errors="replace")
        except OSError:
            pass
        lines = [ln.strip() for ln in text.splitlines()]
        lines = [ln for ln in lines if PROGRESS.match(ln)]
        for ln in lines[self.lines:]:
            self._say(self._who, ln)
        self.lines = max(self.lines, len(lines))

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            self._poll()


def store(doc: dict, out: Path) -> Path:
    release = doc.get("kernel_release")
    if not isinstance(release, str) or not release or "/" in release:
        raise ValueError(f"the document names no usable kernel release ({release!r})")
    experiments = doc.get("experiments")
    if experiments is not None and (not isinstance(experiments, list)
                                    or not all(isinstance(k, str) and k.isidentifier() for k in experiments)):
        raise ValueError(f"the document names unusable experiments ({experiments!r})")
    dest = out / "data" / data_name(release, experiments)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}")
    tmp.write_text(json.dumps(doc, separators=(",", ":")))
    os.replace(tmp, dest)
    return dest


def errors_in(doc: dict) -> int:
    return sum(1 for r in doc.get("runs", []) if r.get("status") == "error")


def failures_in(doc: dict) -> str:
    """Why the report exited 1, from its document: runs that ended in an error, and runs
    whose ledger did not reconcile (the report's exit status counts both)."""
    runs = doc.get("runs", [])
    unreconciled = sum(1 for r in runs if r.get("status") == "ok" and r.get("reconciled") is not True)
    return f"{errors_in(doc)} run(s) ended in an error, {unreconciled} did not reconcile"


def run_host_report(binary: str, profile: str, repeats: int | None, out: Path,
                    say: _Say, experiments: list[str] | None = None) -> tuple[bool, str]:
    """The running kernel: the dynamic binary on the host, its progress passed through."""
    if os.geteuid() != 0:
        return False, "the running kernel's report needs root (network namespaces, sysctls, BPF)"
    release = os.uname().release
    say("running", f"report on the host kernel {release}, profile {profile}")
    # It dies with this driver: a killed `report --kernels` left it running until its next
    # line of progress met the closed pipe.
    proc = subprocess.Popen(report_argv(binary, profile, str(out), repeats, experiments),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
    for line in proc.stdout:
        say("running", line.rstrip())
    rc = proc.wait()
    path = out / "data" / data_name(release, experiments)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return False, f"exit {rc}, no data ({e.__class__.__name__}: {e})"
    doc["environment"] = {"where": "host", "vcpus": os.cpu_count()}
    store(doc, out)
    if rc != 0:
        return False, f"exit {rc}, {failures_in(doc)}; data kept in {path}"
    return True, str(path)


def run_guest_report(name: str, *, binary: Path, matrix: dict, profile: str,
                     repeats: int | None, out: Path, runs_dir: Path, timeouts: Timeouts,
                     say: _Say, experiments: list[str] | None = None) -> tuple[bool, str]:
    workdir = runs_dir / f"report-{name}"
    tail = _Tail(workdir, name, say)
    say(name, f"booting (profile {profile})")
    boot = driver.boot_guest(name, lambda mods: guest_script(profile, repeats, mods, experiments),
                             binary=binary, workdir=workdir, matrix=matrix, timeouts=timeouts,
                             memory_mb=GUEST_MEMORY_MB, watch=lambda: tail,
                             vcpus=GUEST_VCPUS,
                             log=lambda m: say(name, m))
    result = boot.result
    if result is None:
        return False, boot.error
    where = f"console log: {result.console_log}"
    try:
        doc = driver.between_markers(result.output, BEGIN, END)
    except ValueError as e:
        why = f"exit {result.exit_code}" if result.ok else f"phase {result.phase}: {result.error}"
        return False, f"{why}; {e} ({where})"
    if not isinstance(doc, dict) or doc.get("schema") != "reuseport-check/report-runs/1":
        schema = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        return False, f"the guest sent a document of schema {schema!r}, not a report ({where})"
    if result.release and doc.get("kernel_release") != result.release:
        return False, (f"the document is for {doc.get('kernel_release')}, the guest runs "
                       f"{result.release} ({where})")
    doc["environment"] = {"where": "guest", "accel": result.accel, "vcpus": result.vcpus,
                          "memory_mb": GUEST_MEMORY_MB, "matrix_kernel": name,
                          "package": boot.fetched.package, "version": boot.fetched.version,
                          "boot_s": result.boot_time,
                          "timeout_scale": GUEST_TIMEOUT_SCALE}
    path = store(doc, out)
    if not result.ok:
        return False, (f"phase {result.phase}: {result.error}; the runs that finished are kept "
                       f"in {path} ({where})")
    if result.exit_code != 0:
        return False, (f"exit {result.exit_code}, {failures_in(doc)}; "
                       f"data kept in {path} ({where})")
    return True, str(path)


def render(out: Path, python: str) -> bool:
    out = out.resolve()  # the module runs at the top of the tree, the import root
    proc = subprocess.run([python, "-P", "-m", "results.report.make_report", "--data", str(out / "data"),
                           "--out", str(out)], stdin=subprocess.DEVNULL, cwd=driver.REPO,
                          env={**os.environ, "PYTHONPATH": str(driver.REPO)})
    return proc.returncode == 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="reuseport-check report --kernels",
        description="The listen-queue loss report over the kernels of ci/kernels.toml.")
    ap.add_argument("--kernels", default="all", help="comma-separated names (default: all)")
    ap.add_argument("--profile", default="quick", choices=PROFILES,
                    help="the host kernel's profile (default quick)")
    ap.add_argument("--guest-profile", default="guest", choices=PROFILES,
                    help="the guest kernels' profile (default guest)")
    ap.add_argument("--repeats", type=int, default=None, help="repeats per grid point")
    ap.add_argument("--experiments", default=None,
                    help="only these experiments, comma separated (the binary checks the names)")
    ap.add_argument("--out", type=Path, default=driver.REPO / "results" / "report")
    ap.add_argument("--no-render", action="store_true")
    ap.add_argument("--runs-dir", type=Path, default=driver.REPO / "results" / "runs",
                    help="the guests' console and output logs (default results/runs)")
    ap.add_argument("-j", "--jobs", type=int, default=1,
                    help="guests at a time (default 1: guests competing for the CPUs show "
                         "in their numbers)")
    ap.add_argument("--host-binary", default=str(driver.REPO / "build" / "bin" / "reuseport-check"))
    ap.add_argument("--python", default="/usr/bin/python3", help="runs make_report.py")
    ap.add_argument("--matrix", default=None, help="another kernel matrix file")
    ap.add_argument("--boot-timeout", type=float, default=60.0)
    ap.add_argument("--run-timeout", type=float, default=None,
                    help="one guest's whole report, seconds (default by profile: guest 1800, "
                         "quick 3600, full 21600)")
    ap.add_argument("--no-build", action="store_true",
                    help="use the static binary as it is, do not run ninja")
    args = ap.parse_args(argv)
    if args.repeats is not None and not 1 <= args.repeats <= 1000:
        ap.error(f"--repeats needs 1-1000, got {args.repeats}")
    if not 1 <= args.jobs <= 16:
        ap.error(f"-j needs 1-16, got {args.jobs}")
    if args.experiments is not None:
        args.experiments = [k for k in args.experiments.split(",") if k]
        if not args.experiments or not all(re.fullmatch(r"[a-z_]+", k) for k in args.experiments):
            ap.error(f"--experiments needs names such as udp_grid,seed, got {','.join(args.experiments)!r}")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    say = _Say()
    try:
        matrix = driver.load_matrix(args.matrix)
        names = driver.parse_kernels(args.kernels, matrix)
    except VmError as e:
        print(f"reuseport-check report: {e}", file=sys.stderr)
        return 2
    hosts = [n for n in names if matrix[n].is_host]
    guests = [n for n in names if not matrix[n].is_host]
    if hosts and not os.access(args.host_binary, os.X_OK):
        print(f"reuseport-check report: {args.host_binary}: not an executable (--host-binary)",
              file=sys.stderr)
        return 2
    binary = None
    if guests:
        try:
            binary = driver.ensure_static_binary(build=not args.no_build,
                                                 log=lambda m: say("build", m))
        except driver.DriverError as e:
            print(f"reuseport-check report: {e}", file=sys.stderr)
            return 2
    args.out.mkdir(parents=True, exist_ok=True)
    outcome: dict[str, tuple[bool, str]] = {}
    t0 = time.monotonic()
    for name in hosts:
        outcome[name] = run_host_report(args.host_binary, args.profile, args.repeats, args.out,
                                        say, args.experiments)
    timeouts = Timeouts(boot=args.boot_timeout,
                        run=args.run_timeout or RUN_TIMEOUT[args.guest_profile])
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(run_guest_report, name, binary=binary, matrix=matrix,
                               profile=args.guest_profile, repeats=args.repeats, out=args.out,
                               runs_dir=args.runs_dir, timeouts=timeouts, say=say,
                               experiments=args.experiments): name
                   for name in guests}
        for fut in concurrent.futures.as_completed(futures):
            name = futures[fut]
            try:
                outcome[name] = fut.result()
            except (VmError, OSError, ValueError) as e:
                outcome[name] = (False, f"{e.__class__.__name__}: {e}")
            say(name, ("done: " if outcome[name][0] else "FAILED: ") + outcome[name][1])
    minutes = (time.monotonic() - t0) / 60
    bad = [n for n in names if not outcome[n][0]]
    print(f"report: {len(names)} kernel(s) in {minutes:.1f} min; "
          + (f"failed: {', '.join(bad)}" if bad else "every kernel's data is in")
          + f" ({args.out / 'data'})", file=sys.stderr)
    for n in bad:
        print(f"  {n}: {outcome[n][1]}", file=sys.stderr)
    rendered = True
    if not args.no_render and any((args.out / "data").glob("*.json")):
        rendered = render(args.out, args.python)
    return 0 if not bad and rendered else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
