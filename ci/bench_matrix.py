"""Time the kernel matrix: boot-to-first-result per kernel, and the whole catalogue.

    sudo /usr/bin/python3 -m ci.bench_matrix                 # 3 short boots per kernel + 1 full pass
    sudo /usr/bin/python3 -m ci.bench_matrix -n 5 -j 2 --kernels 5.10,6.12 --case 'close_*'

Part 1, per guest kernel, -n boots of one short variant (--probe-case): "boot" is qemu
start -> RP-BOOTED, "first result" is qemu start -> the first record's progress line.
Part 2: the whole selection (--case, default all) on every kernel incl. "running", -j
kernels at a time, as `reuseport-check matrix` runs it: wall time, and per kernel its boot,
first result, duration, measured timeout scale and verdict counts; then the parallel/serial
ratio, the sum of the kernels' durations (what one kernel after another would take) over
the wall time. Not a test: it prints numbers and exits 0 unless a kernel could not run.
Targets (issue 17): first result <= 2 s after qemu starts, the whole matrix <= 5 min on a
2-core machine.
"""

from __future__ import annotations

import argparse
import collections
import os
import resource
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ci.matrix import driver
from ci.vm.kernels import VmError

# A variant that waits on no timer of its own (the close case it replaced waits out a 1 s SYN
# retry by design): its result comes as soon as the guest is up and `run` has started.
PROBE_CASE = "bind_rules/tcp4_both_reuseport"


def _children_cpu() -> float:
    """User + system seconds of the reaped children (qemu, `run` on the host)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernels", default="all", help="names in ci/kernels.toml (default all)")
    ap.add_argument("--case", action="append", default=[], help="selection for part 2")
    ap.add_argument("--probe-case", default=PROBE_CASE, help="the variant of part 1")
    ap.add_argument("-n", type=int, default=3, help="boots per kernel in part 1 (0: skip)")
    ap.add_argument("-j", type=int, default=2, help="kernels at a time")
    ap.add_argument("--vcpus", type=int, default=2, help="CPUs of each guest")
    ap.add_argument("--skip-full", action="store_true", help="part 1 only")
    args = ap.parse_args()
    log = lambda m: print(f"# {m}", file=sys.stderr)  # noqa: E731
    try:
        matrix = driver.load_matrix()
        names = driver.parse_kernels(args.kernels, matrix)
        binary = driver.ensure_static_binary(log=log)
        probe = driver.list_variants(binary, [args.probe_case])
        full = driver.list_variants(binary, args.case)
    except VmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    guests = [n for n in names if not matrix[n].is_host]
    bad = 0
    with tempfile.TemporaryDirectory(prefix="rp-bench-matrix.") as tmp:
        runs = Path(tmp)
        if args.n > 0 and guests:
            jobs = [(n, i) for i in range(args.n) for n in guests]

            def one(job):
                n, i = job
                return n, driver.run_kernel(n, [args.probe_case], len(probe), binary=binary,
                                            runs_dir=runs / f"probe{i}", matrix=matrix, log=log,
                                            vcpus=args.vcpus)

            one(jobs[0])  # fetches kernels and modules, settles the KVM verdict: not timed
            with ThreadPoolExecutor(max_workers=args.j) as pool:
                results = list(pool.map(one, jobs))
            print(f"part 1: {args.n} boot(s) per kernel of {args.probe_case}, "
                  f"{args.j} at a time")
            print(f"{'kernel':8} {'release':30} {'accel':5} {'ok':>5} {'boot med':>9} "
                  f"{'1st result med':>14} {'min':>6} {'max':>6}")
            for n in guests:
                rs = [r for name, r in results if name == n]
                ok = [r for r in rs if r.ok and r.first_result_time is not None]
                bad += len(rs) - len(ok)
                if not ok:
                    print(f"{n:8} {'-':30} {'-':5} {0:>2}/{len(rs):<2}  "
                          f"{rs[0].error if rs else ''}")
                    continue
                firsts = [r.first_result_time for r in ok]
                print(f"{n:8} {ok[0].release:30} {ok[0].accel or '-':5} {len(ok):>2}/{len(rs):<2} "
                      f"{statistics.median(r.boot_time for r in ok):8.2f}s "
                      f"{statistics.median(firsts):13.2f}s {min(firsts):5.2f}s {max(firsts):5.2f}s")
        if not args.skip_full:
            print(f"\npart 2: {len(full)} variant(s) on {len(names)} kernel(s), "
                  f"{args.j} at a time")

            def whole(n):
                return n, driver.run_kernel(n, args.case, len(full), binary=binary,
                                            runs_dir=runs / "full", matrix=matrix, log=log,
                                            vcpus=args.vcpus)

            wall = time.monotonic()
            cpu = _children_cpu()
            with ThreadPoolExecutor(max_workers=args.j) as pool:
                results = list(pool.map(whole, names))
            wall = time.monotonic() - wall
            cpu = _children_cpu() - cpu
            print(f"{'kernel':8} {'release':30} {'boot':>6} {'1st res':>7} {'duration':>8} "
                  f"{'scale':>5}  verdicts")
            fmt = lambda x: f"{x:5.2f}s" if x is not None else "     -"  # noqa: E731
            for n, r in results:
                counts = collections.Counter(x.get("verdict") for x in r.records)
                summary = " ".join(f"{counts[v]} {v}" for v in driver.VERDICTS if counts[v])
                print(f"{n:8} {r.release or '-':30} {fmt(r.boot_time)} {fmt(r.first_result_time):>7}"
                      f" {r.duration:7.1f}s {r.timeout_scale or '-':>5}  {summary or '-'}"
                      + ("" if r.ok else f"  ERROR: {r.error}"))
                bad += not r.ok
            serial = sum(r.duration for _, r in results)
            print(f"whole matrix: {wall:.1f} s wall ({wall / 60:.1f} min); one kernel after "
                  f"another: {serial:.1f} s; parallel/serial: {wall / serial:.2f} "
                  f"({serial / wall:.2f}x)")
            cores = len(os.sched_getaffinity(0))
            print(f"CPU time of qemu and run: {cpu:.0f} s of {cores} x {wall:.0f} s "
                  f"({100 * cpu / (cores * wall):.0f}% of the machine): near 100% the matrix is "
                  "bound by the CPU work in the guests, not by how it is scheduled")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
