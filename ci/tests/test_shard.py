"""`matrix --shard K/N`: the split (ci/matrix/shard.py) and the pytest plugin's items.

The split must be the same on every machine whatever the order of its command line, hold
every kernel x variant item in exactly one shard, keep shards within one item of each
other, and boot as few kernels as it can (each kernel a shard touches costs a boot)."""

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from ci.matrix.common import DriverError
from ci.matrix.shard import parse_shard, shard_items

REPO = Path(__file__).resolve().parents[2]
KERNELS = ["running", "5.10", "6.1", "6.12", "6.17", "7.2"]
VARIANTS = [(f"case{c}", f"v{v}") for c in range(7) for v in range(5)]


@pytest.mark.parametrize("spec, expected", [("1/1", (1, 1)), ("2/3", (2, 3)), (" 3 / 3 ", (3, 3)),
                                            ("10/12", (10, 12))])
def test_good_specs_parse(spec, expected):
    assert parse_shard(spec) == expected


@pytest.mark.parametrize("spec", ["0/2", "3/2", "abc", "1/0", "0/0", "-1/2", "1/2/3", "1", "", "1.5/2",
                                  "1/x"])
def test_bad_specs_are_one_usage_error(spec):
    with pytest.raises(DriverError, match=r"expected K/N with 1 <= K <= N"):
        parse_shard(spec)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 16, 300])
def test_every_item_is_in_exactly_one_shard_and_shards_differ_by_at_most_one(n):
    everything = [(k, cv) for k in KERNELS for cv in VARIANTS]
    seen, sizes = [], []
    for index in range(1, n + 1):
        held = shard_items(KERNELS, VARIANTS, index, n)
        items = [(k, cv) for k, cvs in held.items() for cv in cvs]
        assert all(cvs for cvs in held.values()), "a kernel with nothing to run is absent"
        seen += items
        sizes.append(len(items))
    assert sorted(seen) == sorted(everything)
    assert len(seen) == len(set(seen))
    assert max(sizes) - min(sizes) <= 1, sizes


@pytest.mark.parametrize("n", [2, 3, 4, 7])
def test_the_split_ignores_the_order_of_the_command_line(n):
    rng = random.Random(n)
    for _ in range(5):
        kernels, variants = KERNELS[:], VARIANTS[:]
        rng.shuffle(kernels)
        rng.shuffle(variants)
        for index in range(1, n + 1):
            assert shard_items(kernels, variants, index, n) == shard_items(KERNELS, VARIANTS, index, n)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 6, 7, 12])
def test_boots_are_the_kernels_plus_at_most_one_per_cut(n):
    boots = sum(len(shard_items(KERNELS, VARIANTS, index, n)) for index in range(1, n + 1))
    assert len(KERNELS) <= boots <= len(KERNELS) + n - 1
    if len(KERNELS) % n == 0:  # whole kernels per shard: each booted once
        assert boots == len(KERNELS)


def test_more_shards_than_items_leaves_some_empty():
    held = [shard_items(["running"], [("c", "v1"), ("c", "v2")], index, 3) for index in (1, 2, 3)]
    assert held == [{}, {"running": [("c", "v1")]}, {"running": [("c", "v2")]}]


# ---------------------------------------------------------------------------------------
# The plugin: the items pytest collects under --shard, without running any.


def collect(*args: str) -> list[str]:
    """The item ids of `pytest ci/matrix --collect-only` (the catalogue from the static
    binary's `list`; nothing runs, nothing boots)."""
    from ci.matrix.static import ensure_static_binary
    try:
        binary = ensure_static_binary(build=False)
    except DriverError as e:
        pytest.skip(f"no static binary to list the catalogue: {e}")
    r = subprocess.run([sys.executable, "-m", "pytest", str(REPO / "ci/matrix"), "--collect-only", "-q",
                        "-p", "no:cacheprovider", "--no-build", "--results-dir", "/nonexistent", *args],
                       capture_output=True, text=True, timeout=120, cwd=REPO, stdin=subprocess.DEVNULL,
                       env={**os.environ, "RP_STATIC_BIN": str(binary), "RP_MATRIX_EVENTS": ""})
    return r, [line.split("::", 1)[1] for line in r.stdout.splitlines() if "::test_variant[" in line]


def test_the_plugin_collects_each_item_in_exactly_one_shard():
    sel = ["--kernels", "running,5.10,6.12", "--case", "bind_rules", "--case", "same_euid_rule"]
    r, whole = collect(*sel)
    assert r.returncode == 0 and whole, r.stdout + r.stderr
    shards = []
    for index in (1, 2, 3):
        # Kernels and cases in another order on each "machine": the same split.
        r, items = collect("--shard", f"{index}/3", "--kernels", "6.12,running,5.10",
                           "--case", "same_euid_rule", "--case", "bind_rules")
        assert r.returncode == 0, r.stdout + r.stderr
        shards.append(items)
    assert sorted(sum(shards, [])) == sorted(whole)
    assert len(set(sum(shards, []))) == len(whole)
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    # Each of the three kernels in one shard only: three boots in all.
    kernels = [{i.split("[")[1].split("-")[0] for i in items} for items in shards]
    assert sum(map(len, kernels)) == 3, kernels


@pytest.mark.parametrize("spec", ["0/2", "3/2", "abc"])
def test_the_plugin_takes_a_bad_shard_as_usage_error(spec):
    r, _ = collect("--kernels", "running", "--case", "bind_rules", "--shard", spec)
    assert r.returncode == 4, r.stdout + r.stderr  # pytest's usage error
    assert f"--shard '{spec}': expected K/N with 1 <= K <= N" in r.stderr
    assert "Traceback" not in r.stdout + r.stderr


@pytest.mark.parametrize("spec", ["0/2", "3/2", "abc"])
def test_matrix_command_takes_a_bad_shard_as_one_line_and_exit_2(cli, tmp_path, spec):
    r = subprocess.run([cli, "matrix", "--shard", spec, "--results-dir", str(tmp_path)],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert "--shard" in lines[0] and "expected K/N with 1 <= K <= N" in lines[0], r.stderr
    assert not (tmp_path / "runs" / "matrix-pytest.log").exists(), "pytest was started"


def test_a_shard_holding_nothing_boots_nothing_and_exits_0(cli, tmp_path, require_root):
    """More shards than items: shard 1/2 of one item is empty. No kernel runs, the --json
    document says which shard it was, and `merge` takes it with the other shard."""
    from ci.matrix.static import ensure_static_binary
    try:
        binary = ensure_static_binary(build=False)
    except DriverError as e:
        pytest.skip(f"no static binary: {e}")
    env = {**os.environ, "RP_SOURCE_DIR": str(REPO), "RP_STATIC_BIN": str(binary)}
    dirs = []
    for k in (1, 2):
        d = tmp_path / f"shard{k}"
        r = subprocess.run([cli, "matrix", "--kernels", "running", "--case", "bind_rules/tcp4_both_reuseport",
                            "--shard", f"{k}/2", "--results-dir", str(d), "--json", str(d / "matrix.json")],
                           capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        dirs.append(d)
    import json
    empty = json.loads((dirs[0] / "matrix.json").read_text())
    assert (empty["kernels"], empty["records"], empty["shard"]["index"]) == ([], [], 1)
    assert not list(dirs[0].glob("*/results.json"))
    r = subprocess.run([cli, "merge", *map(str, dirs), "--results-dir", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "matrix: 1 kernel(s) x 1 variant(s)" in r.stdout
