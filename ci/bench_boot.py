"""Boot each kernel of the matrix N times and print the median boot times.

    python3 -m ci.bench_boot            # every guest kernel, 3 boots each, 2 at a time
    python3 -m ci.bench_boot -n 5 -j 1 6.12 7.2

"boot" is qemu start -> RP-BOOTED (kernel up, /init running); "result" is qemu
start -> RP-EXIT of a trivial command (`uname -r`), i.e. the fixed cost of one run.
Two VMs at a time fit 2 cores; more gives nothing on this machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ci.vm.kernels import VmError, fetch_kernel, load_matrix
from ci.vm.qemu import run_in_vm


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kernels", nargs="*", help="names in ci/kernels.toml (default: all guests)")
    ap.add_argument("-n", type=int, default=3, help="boots per kernel")
    ap.add_argument("-j", type=int, default=2, help="VMs at a time")
    ap.add_argument("--accel", default="auto", choices=("auto", "kvm", "tcg"))
    args = ap.parse_args()
    try:
        matrix = load_matrix()
        names = args.kernels or [k.name for k in matrix.values() if not k.is_host]
        fetched = {n: fetch_kernel(n, matrix=matrix,
                                   log=lambda m: print(f"# {m}", file=sys.stderr))
                   for n in names}
    except VmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="rp-bench.") as tmp:
        # Interleaved, so parallel VMs are different kernels as in a matrix run.
        jobs = [(n, i) for i in range(args.n) for n in names]
        if args.accel == "auto" and jobs:
            # One boot first, so the KVM probe is paid once and not by parallel boots.
            first = [jobs.pop(0)]
        else:
            first = []

        def one(job):
            n, i = job
            return n, run_in_vm(fetched[n], "uname -r", accel=args.accel,
                                workdir=Path(tmp) / f"{n}-{i}")

        wall = time.monotonic()
        results = [one(j) for j in first]
        with ThreadPoolExecutor(max_workers=args.j) as pool:
            results += list(pool.map(one, jobs))
        wall = time.monotonic() - wall
    print(f"{'kernel':8} {'release':30} {'accel':5} {'ok':>5} {'boot med':>9} "
          f"{'result med':>10} {'min':>6} {'max':>6}")
    failed = 0
    for n in names:
        rs = [r for name, r in results if name == n]
        ok = [r for r in rs if r.ok]
        failed += len(rs) - len(ok)
        accels = ",".join(sorted({r.accel for r in rs if r.accel}))
        release = ok[0].release if ok else "-"
        if ok:
            boots = [r.boot_time for r in ok]
            ends = [r.result_time for r in ok]
            print(f"{n:8} {release:30} {accels:5} {len(ok):>2}/{len(rs):<2} "
                  f"{statistics.median(boots):8.2f}s {statistics.median(ends):9.2f}s "
                  f"{min(ends):5.2f}s {max(ends):5.2f}s")
        else:
            print(f"{n:8} {release:30} {accels:5} {0:>2}/{len(rs):<2}")
        for r in rs:
            if not r.ok:
                print(f"#   {n}: {r.phase}: {r.error}")
    print(f"# {len(results)} boots in {wall:.1f} s wall, {args.j} at a time "
          f"({wall / max(1, len(results)):.2f} s per boot)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
