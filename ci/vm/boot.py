"""Boot one kernel of the matrix and run a command in it, for humans.

    python3 -m ci.vm.boot --kernel 6.12 -- uname -r
    python3 -m ci.vm.boot --kernel 7.2 --file build/bin/rp-cases:/rp/bin/rp-cases -- /rp/bin/rp-cases
    python3 -m ci.vm.boot --list
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ci.vm.kernels import VmError, fetch_kernel, load_matrix
from ci.vm.qemu import Timeouts, run_in_vm


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernel", "-k", help="name in ci/kernels.toml")
    ap.add_argument("--matrix", type=Path, help="another matrix file")
    ap.add_argument("--list", action="store_true", help="list the matrix and exit")
    ap.add_argument("--fetch-only", action="store_true")
    ap.add_argument("--file", "-f", action="append", default=[], metavar="HOST:GUEST",
                    help="copy a host file into the guest (repeatable)")
    ap.add_argument("--accel", default="auto", choices=("auto", "kvm", "tcg"))
    ap.add_argument("--timeout", type=float, default=120.0, help="run phase timeout (s)")
    ap.add_argument("--verbose", "-v", action="store_true", help="full kernel log on ttyS0")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("command", nargs="*", default=["uname", "-r"])
    args = ap.parse_args(argv)
    try:
        matrix = load_matrix(args.matrix)
        if args.list:
            for k in matrix.values():
                print(f"{k.name:8} {k.kind:4} {k.suite:18} {k.package}")
            return 0
        if not args.kernel:
            ap.error("--kernel is required")
        log = lambda msg: print(f"# {msg}", file=sys.stderr)
        fetched = fetch_kernel(args.kernel, matrix=matrix, log=log)
        if args.fetch_only:
            print(fetched.vmlinuz)
            return 0
        files = []
        for spec in args.file:
            host, sep, guest = spec.partition(":")
            files.append((host, guest if sep else "/rp/bin/" + Path(host).name))
        result = run_in_vm(fetched, args.command, files=files, accel=args.accel,
                           timeouts=Timeouts(run=args.timeout), verbose=args.verbose,
                           log=log)
    except VmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_json(), indent=1))
    else:
        sys.stdout.write(result.output)
        boot = f"{result.boot_time:.2f} s" if result.boot_time is not None else "-"
        print(f"# {result.kernel} {result.release} accel={result.accel} phase={result.phase} "
              f"status={result.status} exit={result.exit_code} boot={boot} "
              f"total={result.duration:.2f} s", file=sys.stderr)
        for note in result.notes:
            print(f"# note: {note}", file=sys.stderr)
        if not result.ok:
            print(f"# error: {result.error}\n# console: {result.console_log}", file=sys.stderr)
    if not result.ok:
        return 2
    return result.exit_code if 0 <= result.exit_code < 256 else 1


if __name__ == "__main__":
    sys.exit(main())
