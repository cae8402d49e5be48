"""Shards merged equal one run: `matrix` unsharded, and the same selection as three shards
(`--shard K/3`, each into a results dir of its own as a CI job would), then `merge` of the
three dirs. The same kernels x variants, the same verdicts, the same records in
results/<release>/results.json and in the --json document, the same table, apart from
timings and paths.

Three shards of running + 5.10 so that the cuts fall inside both kernels: 5.10 boots in two
shards with part of its variants each, and its results.json is merged from two runs."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from results import schemas
from results.junit import read_junit

REPO = Path(__file__).resolve().parents[2]
SELECTION = ["--kernels", "running,5.10", "--case", "bind_rules", "--case", "same_euid_rule"]


def matrix(cli, static_binary, results: Path, *args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([cli, "matrix", *SELECTION, *args, "--results-dir", str(results),
                        "--json", str(results / "matrix.json")],
                       capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
                       env={**os.environ, "RP_SOURCE_DIR": str(REPO), "RP_STATIC_BIN": str(static_binary)})
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def table(stdout: str) -> list[str]:
    """The table and its totals: from the header to the closing "matrix:" line."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("case/variant"))
    end = next(i for i, line in enumerate(lines) if line.startswith("matrix: ") and " kernel(s) x " in line)
    return lines[start:end + 1]


def comparable(record: dict) -> tuple:
    return tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in record.items() if k != "duration_s"))


@pytest.mark.vm
@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="qemu missing")
def test_three_shards_merged_equal_one_run(tmp_path, static_binary, cli, require_root):
    whole = matrix(cli, static_binary, tmp_path / "whole")
    shards = [tmp_path / f"shard{k}" for k in (1, 2, 3)]
    shard_runs = [matrix(cli, static_binary, d, "--shard", f"{k}/3") for k, d in enumerate(shards, 1)]
    out = tmp_path / "merged"
    r = subprocess.run([cli, "merge", *map(str, shards), "--results-dir", str(out), "--json", str(out / "matrix.json")],
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                       env={**os.environ, "RP_SOURCE_DIR": str(REPO)})
    assert r.returncode == 0, r.stdout + r.stderr

    # Each shard ran only its part, and the cuts fell inside the kernels.
    docs = [json.loads((d / "matrix.json").read_text()) for d in shards]
    for k, doc in enumerate(docs, 1):
        assert schemas.errors(doc, "matrix") == []
        assert (doc["shard"]["index"], doc["shard"]["count"]) == (k, 3)
    sizes = [len(doc["records"]) for doc in docs]
    assert max(sizes) - min(sizes) <= 1, sizes
    assert [[k["name"] for k in doc["kernels"]] for doc in docs] == [["5.10"], ["running", "5.10"], ["running"]]

    one = json.loads((tmp_path / "whole" / "matrix.json").read_text())
    merged = json.loads((out / "matrix.json").read_text())
    assert schemas.errors(merged, "matrix") == []
    assert merged["kernels"] == one["kernels"] and merged["complete"] is True
    assert [comparable(x) for x in merged["records"]] == [comparable(x) for x in one["records"]]
    assert table(r.stdout) == table(whole.stdout)

    releases = sorted(p.parent.name for p in (tmp_path / "whole").glob("*/results.json"))
    assert releases == sorted(p.parent.name for p in out.glob("*/results.json")) and len(releases) == 2
    for release in releases:
        a = json.loads((tmp_path / "whole" / release / "results.json").read_text())
        b = json.loads((out / release / "results.json").read_text())
        assert schemas.errors(b, "results") == []
        assert [comparable(x) for x in b["records"]] == [comparable(x) for x in a["records"]]
        # The guest's measured speed differs from boot to boot, like durations.
        measured = lambda m: {k: v for k, v in m.items() if k != "timeout_scale"}  # noqa: E731
        assert measured(b["matrix"]) == measured(a["matrix"])
        named = sorted(ref for run in b["runs"] for ref in run["records"])
        assert named == sorted(ref for run in a["runs"] for ref in run["records"])
    # 5.10 ran in shards 1 and 2: two runs in its file, each naming its own records.
    r510 = next(x for x in releases if x.startswith("5.10."))
    assert len(json.loads((out / r510 / "results.json").read_text())["runs"]) == 2

    def outcomes(path):
        _, cases = read_junit(path)
        return {name.split("@")[0]: c.outcome for name, c in cases.items()}
    assert outcomes(out / "junit.xml") == outcomes(tmp_path / "whole" / "junit.xml")
    # One boot per kernel a shard holds (the lines that stay: "5.10 (<release>): booting").
    boots = [[line.split()[0] for line in x.stdout.splitlines() if line.endswith(": booting")]
             for x in shard_runs]
    assert boots == [["5.10"], ["5.10"], []], boots
