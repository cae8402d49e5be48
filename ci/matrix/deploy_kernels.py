"""Your server and deploy procedure on every kernel (`reuseport-check deploy --kernels`).

    /usr/bin/python3 -m ci.matrix.deploy_kernels --kernels 5.10,6.12,running \\
        --host-binary build/bin/reuseport-check [--json OUT] [--junit OUT] \\
        [--guest-path PATH]... -- <the deploy's own options: --port, --start, --deploy, ...>

"running" runs `reuseport-check deploy` on this machine. Every other kernel of
ci/kernels.toml is booted once (qemu, KVM tried first, TCG otherwise; 2 vCPUs, 1 GiB) with
the static reuseport-check, which runs the same deploy inside; its JSON comes back on ttyS1
between two markers.

What goes into a guest (the choice, and why): an initramfs built from the closure of what
the commands name, not the host's root filesystem shared into the guest. The Debian cloud
kernels have no 9p, and bookworm has no virtiofsd (ci/vm notes), so a shared root would work
on no kernel of the matrix here. The closure is: every word of --start and --deploy that is
an existing absolute path, the first word of each command when it names a program on PATH,
every --guest-path (a file, or a directory taken whole), each ELF executable with the
loader and libraries ldd lists for it, and the host's /etc/passwd, /etc/group and
/etc/nsswitch.conf, so that a server can drop privileges to its user. Each lands at its
host path. The guest mounts /proc, /sys, /dev, /tmp and /run (ci/vm/init.sh) and gets
/dev/shm, /var/{log,lib,cache,tmp}; PATH is the user's, then /bin:/sbin:/usr/bin:/usr/sbin;
busybox provides the shell and its tools. Inside, `deploy` runs the commands in a network and PID namespace
of its own and kills what they started, as on the host.

Exit status: 0 when every kernel lost at most --max-lost; 1 when one lost more, or a kernel
could not run the deploy (did not boot, hung, the deploy said 2); 2 on bad usage.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from ci.matrix import driver
from ci.matrix.common import write_json_durably
from ci.vm.kernels import VmError
from ci.vm.local_kernels import local_kernels
from ci.vm.qemu import Timeouts

BEGIN, END = "RP-DEPLOY-JSON-BEGIN", "RP-DEPLOY-JSON-END"
SCHEMA = "reuseport-check/deploy-kernels/1"
GUEST_MEMORY_MB = 1024
GUEST_VCPUS = 2
ETC = ("/etc/passwd", "/etc/group", "/etc/nsswitch.conf")
NOT_COPIED = ("/proc/", "/sys/", "/dev/")


class UsageError(Exception):
    """Bad usage: one message, exit 2."""


def option(args: list[str], name: str) -> str | None:
    """The value of --name in a deploy's options (--name V or --name=V), else None."""
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(name + "="):
            return a[len(name) + 1:]
    return None


def words(command: str) -> list[str]:
    try:
        return shlex.split(command)
    except ValueError:
        return command.split()


def closure(commands: list[str], guest_paths: list[str]) -> list[tuple[Path, str]]:
    """(host path, guest path) of what the commands name and the --guest-path entries."""
    picked: dict[str, Path] = {}

    def add(path: Path, why: str) -> None:
        p = str(path)
        if p.startswith(NOT_COPIED):
            raise UsageError(f"{why}: {p} cannot go into a guest (a /proc, /sys or /dev path)")
        if path.is_file():
            picked.setdefault(p, path)
        elif path.is_dir():
            for root, _, names in os.walk(path):
                for n in names:
                    f = Path(root) / n
                    if f.is_file():
                        picked.setdefault(str(f), f)
        else:
            raise UsageError(f"{why}: {p} does not exist")

    for cmd in commands:
        ws = words(cmd)
        for i, w in enumerate(ws):
            if w.startswith("/") and Path(w).exists():
                add(Path(w), "a path in a command")
            elif i == 0 and "/" not in w and "=" not in w:
                found = shutil.which(w)
                if found:
                    add(Path(found), f"the program {w}")
    for g in guest_paths:
        add(Path(g).absolute(), "--guest-path")
    for e in ETC:
        if Path(e).is_file():
            picked.setdefault(e, Path(e))
    return [(path, guest) for guest, path in sorted(picked.items())]


# The guest mounts tmpfs on these at boot (ci/vm/init.sh), over what the initramfs put there:
# files of the closure under them travel under SHADOW and are copied into place.
MOUNTED = ("/tmp/", "/run/")
SHADOW = "/rp/shadow"


def placed(files: list[tuple[Path, str]]) -> tuple[list[tuple[Path, str]], list[str]]:
    """The files with those under MOUNTED moved to SHADOW, and the guest paths to copy back."""
    out, back = [], []
    for host, guest in files:
        if guest.startswith(MOUNTED):
            out.append((host, SHADOW + guest))
            back.append(guest)
        else:
            out.append((host, guest))
    return out, back


def guest_script(deploy_args: list[str], modules: list[str], shadowed: list[str] = ()) -> str:
    lines = [f"insmod {shlex.quote(m)} || echo 'RP-DEPLOY-WARN: insmod {m} failed'" for m in modules]
    for g in shadowed:
        lines.append(f"mkdir -p {shlex.quote(os.path.dirname(g))} && cp -p {shlex.quote(SHADOW + g)} {shlex.quote(g)}")
    # The user's PATH first (the closure put their programs at their host paths), then the
    # guest's own.
    path = [p for p in os.environ.get("PATH", "").split(":") if p.startswith("/")]
    lines += [f"export PATH={shlex.quote(':'.join(path + ['/bin', '/sbin', '/usr/bin', '/usr/sbin']))}",
              "mkdir -p /dev/shm /var/log /var/lib /var/cache /var/tmp",
              "mount -t tmpfs tmpfs /dev/shm",
              shlex.join([driver.GUEST_BIN, "deploy", *deploy_args, "--json", "/tmp/deploy.json"]),
              "rc=$?",
              f"if [ -f /tmp/deploy.json ]; then echo; echo {BEGIN}; cat /tmp/deploy.json; echo; echo {END}; fi",
              "exit $rc"]
    return "\n".join(lines) + "\n"


def verdict(exit_code: int | None, doc: dict | None) -> str:
    if exit_code == 0 and doc is not None:
        return "PASS"
    if exit_code == 1 and doc is not None:
        return "FAIL"
    return "ERROR"


def run_host(binary: str, deploy_args: list[str], say) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "deploy.json"
        say("running", "deploy on this machine")
        proc = subprocess.run([binary, "deploy", *deploy_args, "--json", str(out)], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True)
        doc = json.loads(out.read_text()) if out.is_file() else None
    entry = {"kernel": "running", "release": os.uname().release, "exit_code": proc.returncode,
             "environment": {"where": "host", "cpus": os.cpu_count()}, "deploy": doc,
             "output": (proc.stdout + proc.stderr)[-4000:]}
    entry["verdict"] = verdict(proc.returncode, doc)
    entry["error"] = "" if entry["verdict"] != "ERROR" else (proc.stderr.strip().splitlines() or ["no report"])[-1]
    return entry


def run_guest(name: str, *, binary: Path, matrix: dict, deploy_args: list[str],
              files: list[tuple[Path, str]], runs_dir: Path, timeouts: Timeouts, say) -> dict:
    workdir = runs_dir / f"deploy-{name}"
    say(name, f"booting ({len(files)} file(s) of yours in the initramfs)")
    files, shadowed = placed(files)
    boot = driver.boot_guest(name, lambda mods: guest_script(deploy_args, mods, shadowed), binary=binary,
                             workdir=workdir, matrix=matrix, timeouts=timeouts,
                             memory_mb=GUEST_MEMORY_MB, vcpus=GUEST_VCPUS, extra_files=files,
                             log=lambda m: say(name, m))
    entry = {"kernel": name, "release": None, "exit_code": None, "deploy": None, "output": "",
             "environment": {"where": "guest", "vcpus": GUEST_VCPUS, "memory_mb": GUEST_MEMORY_MB}}
    result = boot.result
    if result is None:
        return {**entry, "verdict": "ERROR", "error": boot.error}
    entry.update(release=result.release, exit_code=result.exit_code if result.ok else None,
                 output=result.output[-4000:])
    entry["environment"].update(accel=result.accel, package=boot.fetched.package,
                                version=boot.fetched.version, console_log=str(result.console_log))
    try:
        entry["deploy"] = driver.between_markers(result.output, BEGIN, END)
    except ValueError as e:
        why = f"exit {result.exit_code}" if result.ok else f"phase {result.phase}: {result.error}"
        return {**entry, "verdict": "ERROR", "error": f"{why}; {e} (console: {result.console_log})"}
    entry["verdict"] = verdict(entry["exit_code"], entry["deploy"])
    entry["error"] = "" if entry["verdict"] != "ERROR" else (
        f"exit {result.exit_code}: " + ((result.output.strip().splitlines() or ["no output"])[-1]))
    return entry


def hint(entry: dict) -> dict:
    """A program killed by SIGILL in a TCG guest ran an instruction its CPU model lacks."""
    if entry["verdict"] == "ERROR" and "signal ILL" in entry.get("output", "") + entry.get("error", "") \
            and entry["environment"].get("accel") == "tcg":
        entry["error"] += ("; SIGILL: the TCG guest's CPU (-cpu max,-cx16, ci/vm/qemu.py: QEMU 7.2's cmpxchg16b "
                           "crashed 6.12 boots) lacks an instruction the program uses (HAProxy needs cmpxchg16b); "
                           "a KVM host runs it")
    return entry


def totals(doc: dict | None) -> dict:
    """attempts and lost of a deploy's JSON: connections, or with --udp datagrams."""
    if doc and "datagrams" in doc:
        return {"attempts": doc["datagrams"]["sent"], "lost": doc["datagrams"]["lost"]}
    return (doc or {}).get("totals", {})


def causes(doc: dict | None) -> str:
    """The lost connections (or datagrams) by the kernel's cause, as the deploy's JSON names
    them; for --udp also the broken flows ("n/a" when the answers do not name the member)."""
    if not doc:
        return "-"
    named = doc.get("attribution", {}).get("causes") if isinstance(doc.get("attribution"), dict) else None
    if isinstance(named, dict):
        parts = [f"{k} {v}" for k, v in named.items() if v]
        un = doc["attribution"].get("unattributed")
        if un:
            parts.append(f"unattributed {un}")
        if "flows" in doc:
            broken = doc["flows"].get("broken")
            parts.append(f"broken flows {'n/a' if broken is None else broken}")
        return ", ".join(parts) or "none"
    k = doc.get("kernel_totals", {})

    def na(key: str) -> str:
        return "n/a" if k.get(key) is None else str(k[key])
    return (f"orphaned {na('kernel_orphaned_children')}, other RSTs {na('kernel_other_resets_sent')}, "
            f"overflow drops {na('kernel_listen_overflow_drops')}")


def table(entries: list[dict]) -> str:
    rows = [("kernel", "release", "attempts", "lost", "causes", "verdict")]
    for e in entries:
        t = totals(e.get("deploy"))
        rows.append((e["kernel"], e.get("release") or "-", str(t.get("attempts", "-")), str(t.get("lost", "-")),
                     causes(e.get("deploy")), e["verdict"]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def write_junit(path: Path, entries: list[dict]) -> None:
    suite = ET.Element("testsuite", name="deploy-kernels", tests=str(len(entries)),
                       failures=str(sum(e["verdict"] == "FAIL" for e in entries)),
                       errors=str(sum(e["verdict"] == "ERROR" for e in entries)))
    for e in entries:
        case = ET.SubElement(suite, "testcase", classname="deploy", name=e["kernel"])
        t = totals(e.get("deploy"))
        if e["verdict"] == "FAIL":
            ET.SubElement(case, "failure", message=f"lost {t.get('lost')} of {t.get('attempts')}").text = causes(e["deploy"])
        elif e["verdict"] == "ERROR":
            ET.SubElement(case, "error", message=e["error"][:500]).text = e.get("output", "")[-2000:]
    tmp = path.with_name(path.name + ".tmp")
    ET.ElementTree(suite).write(tmp, encoding="unicode")
    tmp.replace(path)


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    if "--" in argv:
        i = argv.index("--")
        own, deploy_args = argv[:i], argv[i + 1:]
    else:
        own, deploy_args = argv, []
    ap = argparse.ArgumentParser(prog="reuseport-check deploy --kernels",
                                 description="The deploy on every kernel of ci/kernels.toml.")
    ap.add_argument("--kernels", default="none",
                    help="comma-separated names, or all; none: only --kernel-image/--kernel-deb")
    for opt, what in (("--kernel-image", "image"), ("--modules", "modules"), ("--kernel-deb", "deb"),
                      ("--kernel-name", "name")):
        ap.add_argument(opt, action="append", dest="local", default=[],
                        type=lambda v, what=what: (what, v), help=f"as `matrix {opt}` (in order)")
    ap.add_argument("--host-binary", default=str(driver.REPO / "build" / "bin" / "reuseport-check"))
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--junit", type=Path, default=None)
    ap.add_argument("--guest-path", action="append", default=[])
    ap.add_argument("--runs-dir", type=Path, default=driver.REPO / "results" / "runs")
    ap.add_argument("-j", "--jobs", type=int, default=1, help="guests at a time (default 1)")
    ap.add_argument("--matrix", default=None, help="another kernel matrix file")
    ap.add_argument("--run-timeout", type=float, default=600.0, help="one guest's deploy, seconds")
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args(own)
    for banned in ("--json", "--junit", "--host-net"):
        if option(deploy_args, banned) is not None or banned in deploy_args:
            ap.error(f"{banned} belongs to deploy --kernels itself, not to the per-kernel deploy")
    if not option(deploy_args, "--start") or not option(deploy_args, "--deploy"):
        ap.error("the deploy needs --start CMD and --deploy CMD after --")
    return args, deploy_args


def main(argv: list[str]) -> int:
    args, deploy_args = parse_args(argv)
    lock = threading.Lock()

    def say(name: str, msg: str) -> None:
        with lock:
            print(f"deploy: {name}: {msg}", file=sys.stderr, flush=True)

    try:
        matrix = driver.load_matrix(args.matrix)
        local = local_kernels(args.local, taken=set(matrix))
        names = [] if args.kernels == "none" else driver.parse_kernels(args.kernels, matrix)
        matrix.update((k.name, k) for k in local)
        names += [k.name for k in local]
        if not names:
            raise UsageError("no kernel: give --kernels, --kernel-image or --kernel-deb")
        files = closure([option(deploy_args, "--start"), option(deploy_args, "--deploy")], args.guest_path)
    except (VmError, UsageError) as e:
        print(f"reuseport-check deploy: {e}", file=sys.stderr)
        return 2
    for out in (args.json, args.junit):
        if out is not None and not os.access(out.parent if str(out.parent) else Path("."), os.W_OK):
            print(f"reuseport-check deploy: cannot write {out}", file=sys.stderr)
            return 2
    guests = [n for n in names if not matrix[n].is_host]
    binary = None
    if guests:
        try:
            binary = driver.ensure_static_binary(build=not args.no_build, log=lambda m: say("build", m))
        except driver.DriverError as e:
            print(f"reuseport-check deploy: {e}", file=sys.stderr)
            return 2
    entries: dict[str, dict] = {}

    def save() -> None:
        done = [entries[n] for n in names if n in entries]
        if args.json:
            write_json_durably(args.json, {"schema": SCHEMA, "complete": len(done) == len(names),
                                           "deploy_args": deploy_args, "kernels": done})
        if args.junit:
            write_junit(args.junit, done)

    t0 = time.monotonic()
    for name in names:  # the host first and alone: no guest competes with it for the CPUs
        if matrix[name].is_host:
            entries[name] = run_host(args.host_binary, deploy_args, say)
            say(name, entries[name]["verdict"])
            save()
    timeouts = Timeouts(run=args.run_timeout)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {pool.submit(run_guest, n, binary=binary, matrix=matrix, deploy_args=deploy_args,
                               files=files, runs_dir=args.runs_dir, timeouts=timeouts, say=say): n
                   for n in guests}
        for fut in concurrent.futures.as_completed(futures):
            n = futures[fut]
            try:
                entries[n] = hint(fut.result())
            except (VmError, OSError, ValueError) as e:
                entries[n] = {"kernel": n, "release": None, "exit_code": None, "deploy": None, "output": "",
                              "environment": {"where": "guest"}, "verdict": "ERROR",
                              "error": f"{e.__class__.__name__}: {e}"}
            say(n, entries[n]["verdict"] + (f": {entries[n]['error']}" if entries[n]["error"] else ""))
            save()
    done = [entries[n] for n in names]
    print(table(done))
    print(f"deploy: {len(done)} kernel(s) in {(time.monotonic() - t0) / 60:.1f} min", file=sys.stderr)
    return 0 if all(e["verdict"] == "PASS" for e in done) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
