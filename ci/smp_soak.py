"""Boot SMP guests many times under each TCG thread model and count the boots that break.

    /usr/bin/python3 -m ci.smp_soak --kernels 6.12,7.2 --boots 8
    /usr/bin/python3 -m ci.smp_soak --kernels 6.12 --boots 4 --case 'hash_spread' --json soak.json

The choice of ci/vm/accel.toml rests on this: multi-threaded TCG runs a guest's vCPUs on
host threads of their own, and QEMU 7.2 crashed a 6.12 guest that way (an int3 Oops in
udp6_ehashfn while the kernel patched its own code: cross-modifying code under MTTCG);
single-threaded TCG runs all vCPUs on one host thread. Boots alternate between the
models (single, multi, single, ...) so that the machine's load hits both alike. Each boot
runs --case in a 2-vCPU guest; the default selection is the cases that flip static keys
and attach BPF programs (text patching) and send UDP over IPv6. A boot is "clean" when
the catalogue ran to its end and the console has no Oops, BUG or panic; otherwise the
console's telling line is printed. Not a test: it prints a table and exits 0 unless a
kernel could not be fetched.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ci.matrix import driver
from ci.vm import qemu
from ci.vm.kernels import VmError

DEFAULT_CASES = ["hash_spread", "sk_reuseport_select", "bpf_steering", "dual_stack_preference",
                 "incoming_cpu"]
BAD_CONSOLE = re.compile(r"Oops|BUG:|Kernel panic|general protection|RIP: ")


def classify(run: driver.KernelRun) -> tuple[str, str]:
    """("clean" | "oops" | "error", the telling line)."""
    console = ""
    if run.console_log:
        try:
            console = Path(run.console_log).read_text(errors="replace")
        except OSError:
            pass
    bad = [line.strip() for line in console.splitlines() if BAD_CONSOLE.search(line)]
    if bad:
        return "oops", bad[0]
    if not run.ok:
        return "error", run.error
    worst = [r for r in run.records if r.get("verdict") in ("ERROR", "FAIL", "XPASS")]
    if worst:
        return "error", f"{len(worst)} record(s) {worst[0]['verdict']}: {worst[0]['case']}/" \
                        f"{worst[0]['variant']}"
    return "clean", ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernels", default="6.12", help="guest kernels of ci/kernels.toml")
    ap.add_argument("--boots", type=int, default=8, help="boots per kernel and thread model")
    ap.add_argument("--vcpus", type=int, default=2)
    ap.add_argument("--threads", default="single,multi", help="TCG thread models to compare")
    ap.add_argument("--case", action="append", default=None, help="the selection each boot runs")
    ap.add_argument("--json", help="write every boot's outcome here as it comes (JSON lines)")
    args = ap.parse_args()
    log = lambda m: print(f"# {m}", file=sys.stderr)  # noqa: E731
    threads = [t.strip() for t in args.threads.split(",") if t.strip()]
    if any(t not in ("single", "multi") for t in threads) or args.boots < 1:
        print("error: --threads takes single and/or multi, --boots at least 1", file=sys.stderr)
        return 2
    try:
        matrix = driver.load_matrix()
        names = [n for n in driver.parse_kernels(args.kernels, matrix) if not matrix[n].is_host]
        binary = driver.ensure_static_binary(log=log)
        globs = args.case or DEFAULT_CASES
        n_variants = len(driver.list_variants(binary, globs))
    except VmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = open(args.json, "a") if args.json else None
    version = qemu.qemu_version(qemu.QEMU)
    print(f"QEMU {version}, {args.vcpus} vCPUs, {n_variants} variants per boot, "
          f"{args.boots} boots per kernel x model")
    outcomes: dict[tuple[str, str], list[tuple[str, float, str]]] = {}
    with tempfile.TemporaryDirectory(prefix="rp-smp-soak.") as tmp:
        for i in range(args.boots):
            for name in names:
                for thread in threads:
                    workdir = Path(tmp) / f"{name}-{thread}-{i}"
                    t0 = time.monotonic()
                    run = driver.run_guest(name, globs, n_variants, binary=binary,
                                           workdir=workdir, matrix=matrix, vcpus=args.vcpus,
                                           tcg_thread=thread, log=log)
                    wall = time.monotonic() - t0
                    kind, line = classify(run)
                    outcomes.setdefault((name, thread), []).append((kind, wall, line))
                    print(f"{name:6} {thread:6} boot {i + 1}: {kind:5} {wall:6.1f} s {line}",
                          flush=True)
                    if out:
                        out.write(json.dumps({"kernel": name, "release": run.release,
                                              "thread": thread, "vcpus": args.vcpus,
                                              "qemu": version, "boot": i + 1, "outcome": kind,
                                              "wall_s": round(wall, 2), "detail": line}) + "\n")
                        out.flush()
    print(f"\n{'kernel':6} {'thread':6} {'boots':>5} {'clean':>5} {'oops':>5} {'error':>5} "
          f"{'median s':>8}")
    for (name, thread), rows in outcomes.items():
        kinds = [k for k, _, _ in rows]
        print(f"{name:6} {thread:6} {len(rows):5} {kinds.count('clean'):5} "
              f"{kinds.count('oops'):5} {kinds.count('error'):5} "
              f"{statistics.median(w for _, w, _ in rows):8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
