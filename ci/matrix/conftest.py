"""pytest plugin of the kernel matrix: options, one boot per kernel, one item per variant.

    /usr/bin/python3 -m pytest ci/matrix --kernels 5.10,6.12 --case 'close_*' -n 2 --dist loadgroup

Items are test_kernels.py::test_variant[<kernel>/<case>/<variant>]. A kernel's items all
use one session fixture (`kernel_run`): it boots the kernel once and runs every selected
variant; `xdist_group` keeps those items on one pytest-xdist worker, so with -n 2 two
kernels boot at a time. A kernel that does not boot, panics or hangs makes its items
ERROR (setup), with the console log's path; a variant whose record says FAIL, XPASS or
ERROR fails its item.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from ci.matrix import driver
from ci.matrix.shard import parse_shard, shard_items
from ci.vm.kernels import VmError
from ci.vm.local_kernels import local_kernels
from ci.vm import qemu
from ci.vm.qemu import Timeouts


def pytest_addoption(parser):
    g = parser.getgroup("kernel matrix")
    g.addoption("--kernels", default=None, metavar="LIST",
                help="kernels of ci/kernels.toml, comma separated (default: all, incl. "
                     "'running', the host's own kernel; none when --kernel-image or "
                     "--kernel-deb is given)")
    # Your own kernels: one list, in command-line order, so that a --modules or
    # --kernel-name belongs to the --kernel-image / --kernel-deb before it.
    for opt, what, metavar, text in LOCAL_OPTIONS:
        g.addoption(opt, action="append", dest="rp_local", default=None, metavar=metavar,
                    type=lambda v, what=what: (what, v), help=text)
    g.addoption("--case", action="append", default=[], metavar="GLOB", dest="rp_case",
                help="cases or CASE/VARIANT globs as `reuseport-check run --case` takes "
                     "them (repeatable; default: all)")
    g.addoption("--results-dir", default=str(driver.REPO / "results"), metavar="DIR",
                help="results/<release>/results.json go here, logs under DIR/runs/ "
                     "(default: results/)")
    g.addoption("--matrix", default=None, metavar="TOML", help="another kernel matrix file")
    g.addoption("--boot-timeout", type=float, default=60.0, metavar="S",
                help="qemu start -> kernel up, seconds (default 60)")
    g.addoption("--run-timeout", type=float, default=None, metavar="S",
                help="the whole catalogue of one kernel, seconds (default 60 + 20 per "
                     "variant)")
    g.addoption("--vcpus", type=int, default=qemu.DEFAULT_VCPUS, metavar="N",
                help=f"CPUs of each guest (default {qemu.DEFAULT_VCPUS}; under TCG run as "
                     "ci/vm/accel.toml says for this QEMU)")
    g.addoption("--shard", default=None, metavar="K/N", dest="rp_shard",
                help="run only shard K of N of the kernel x case/variant items (the same "
                     "split on every machine: ci/matrix/shard.py); `reuseport-check merge` "
                     "puts the shards' results back together")
    g.addoption("--no-build", action="store_true",
                help="use the static binary as it is ($RP_STATIC_BIN or "
                     "build-static/bin/reuseport-check), do not run ninja")


LOCAL_OPTIONS = (
    ("--kernel-image", "image", "PATH",
     "a kernel image (bzImage/vmlinuz) to boot, named image:<basename> (repeatable)"),
    ("--modules", "modules", "DIR",
     "the modules tree (/lib/modules/<release>) of the --kernel-image before it"),
    ("--kernel-deb", "deb", "FILE",
     "a linux-image .deb to boot, named deb:<package>_<version> (repeatable)"),
    ("--kernel-name", "name", "NAME",
     "the name of the --kernel-image or --kernel-deb before it"),
)


def _say(config, msg: str) -> None:
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        tr.write_line(f"matrix: {msg}")
    else:
        print(f"matrix: {msg}", file=sys.stderr)


def pytest_configure(config):
    config.addinivalue_line("markers", "xdist_group(name): pytest-xdist loadgroup")
    try:
        matrix = driver.load_matrix(config.getoption("--matrix"))
        local = local_kernels(config.getoption("rp_local") or [], taken=set(matrix))
        spec = config.getoption("--kernels")
        kernels = driver.parse_kernels(spec, matrix) if spec or not local else []
        matrix.update((k.name, k) for k in local)
        kernels += [k.name for k in local]
        shard = config.getoption("rp_shard")
        shard = parse_shard(shard) if shard is not None else None
    except VmError as e:
        raise pytest.UsageError(str(e)) from None
    controller = not hasattr(config, "workerinput")
    if not controller:
        # A worker dies with the pytest that started it, and its qemus with it: a SIGKILL of
        # `reuseport-check matrix` (whose pytest gets SIGTERM) leaves no guest running on.
        qemu.die_with_parent()
    if not 1 <= config.getoption("--vcpus") <= 64:
        raise pytest.UsageError(f"--vcpus must be 1 to 64, not {config.getoption('--vcpus')}")
    try:
        binary = driver.ensure_static_binary(
            build=controller and not config.getoption("--no-build"),
            log=lambda m: _say(config, m))
        variants = driver.list_variants(binary, config.getoption("rp_case"))
    except driver.DriverError as e:
        if "no case matches" in str(e):
            raise pytest.UsageError(str(e)) from None
        pytest.exit(f"matrix: {e}", returncode=3)
    plan = {"ev": "plan", "kernels": kernels, "variants": [f"{c}/{v}" for c, v in variants]}
    items = None
    if shard:
        # The whole plan goes along, so that `merge` can tell a missing shard; this run's
        # table and items are the shard's kernels and variants.
        items = shard_items(kernels, variants, *shard)
        plan["shard"] = {"index": shard[0], "count": shard[1], "kernels": plan["kernels"],
                         "variants": plan["variants"]}
        kernels = [k for k in kernels if k in items]
        held = {cv for k in kernels for cv in items[k]}
        variants = [cv for cv in variants if cv in held]
        plan.update(kernels=kernels, variants=[f"{c}/{v}" for c, v in variants],
                    items={k: len(items[k]) for k in kernels})
    config._rp = {"matrix": matrix, "kernels": kernels, "binary": binary,
                  "variants": variants, "items": items,
                  "results": Path(config.getoption("--results-dir"))}
    if controller:
        driver.emit(plan)
    if items is not None and not kernels:
        # More shards than items. pytest-xdist stumbles over a session without items, and a
        # shard with nothing to do has not failed: its --json says which shard it was.
        pytest.exit(f"matrix: shard {shard[0]}/{shard[1]} holds none of the "
                    f"{len(plan['shard']['kernels']) * len(plan['shard']['variants'])} "
                    "kernel x case/variant item(s)", returncode=0)


def pytest_collection_modifyitems(config, items):
    """Under --shard, the kernel x variant items that another shard holds."""
    held = getattr(config, "_rp", {}).get("items")
    if held is None:
        return
    keep, drop = [], []
    for item in items:
        params = getattr(item, "callspec", None) and item.callspec.params
        if params and "case_variant" in params and \
                tuple(params["case_variant"]) not in held.get(params["kernel_run"], ()):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_generate_tests(metafunc):
    if "kernel_run" not in metafunc.fixturenames:
        return
    rp = metafunc.config._rp
    metafunc.parametrize(
        "kernel_run",
        [pytest.param(k, id=k, marks=pytest.mark.xdist_group(name=f"kernel-{k}"))
         for k in rp["kernels"]],
        indirect=True, scope="session")
    metafunc.parametrize("case_variant", rp["variants"],
                         ids=[f"{c}/{v}" for c, v in rp["variants"]])


@pytest.fixture(scope="session")
def kernel_run(request) -> driver.KernelRun:
    rp = request.config._rp
    name = request.param
    globs = request.config.getoption("rp_case")
    selected = rp["variants"]
    if rp["items"] is not None:  # exactly this shard's variants of the kernel
        selected = rp["items"][name]
        globs = [f"{c}/{v}" for c, v in selected]
    n = len(selected)
    run_timeout = request.config.getoption("--run-timeout") or driver.run_timeout(n)
    timeouts = Timeouts(boot=request.config.getoption("--boot-timeout"), run=run_timeout,
                        idle=driver.IDLE_S)
    run = driver.run_kernel(name, globs, n, binary=rp["binary"],
                            runs_dir=rp["results"] / "runs", matrix=rp["matrix"],
                            timeouts=timeouts,
                            vcpus=request.config.getoption("--vcpus"))
    written = driver.write_results(rp["results"], run, log=lambda m: _say(request.config, m)) \
        if run.ok else None
    driver.emit({"ev": "kernel", "kernel": name, "state": "done" if run.ok else "error",
                 "release": run.release, "error": run.error, "results": str(written or ""),
                 "boot_s": run.boot_time, "first_result_s": run.first_result_time,
                 "duration_s": round(run.duration, 2), "vcpus": run.vcpus,
                 "tcg_thread": run.tcg_thread, "timeout_scale": run.timeout_scale,
                 "console_log": str(run.console_log or run.output_log or "")})
    if not run.records:
        reason = f"kernel {name}: {run.error} ({run.where()})"
        for case, variant in selected:
            driver.emit({"ev": "record", "kernel": name,
                         "record": driver.error_record(run, case, variant, reason)})
        pytest.fail(reason, pytrace=False)
    return run


@pytest.fixture
def record(kernel_run: driver.KernelRun, case_variant) -> dict:
    case, variant = case_variant
    rec = kernel_run.record(case, variant)
    if rec is None:
        why = kernel_run.error or "the run wrote no record for it"
        reason = f"kernel {kernel_run.name}: no record for {case}/{variant}: {why} " \
                 f"({kernel_run.where()})"
        driver.emit({"ev": "record", "kernel": kernel_run.name,
                     "record": driver.error_record(kernel_run, case, variant, reason)})
        pytest.fail(reason, pytrace=False)
    driver.emit({"ev": "record", "kernel": kernel_run.name, "record": rec})
    return rec
