"""results/figures.py: the figures of README.md and docs/semantics.md are the committed
results' (a block that differs from what the script makes of them fails here), the script's
table is the one `reuseport-check run` prints, and the figures follow the data when it
changes."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from results import figures

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def data(tmp_path, monkeypatch):
    """A copy of the committed results that the test may change; figures reads it."""
    root = tmp_path / "results"
    for path in [*figures.RESULTS.glob("*/*.json"), *figures.RESULTS.glob("report/data/*.json")]:
        dest = root / path.relative_to(figures.RESULTS)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest)
    monkeypatch.setattr(figures, "DATA", root)
    figures._host_results.cache_clear()
    yield root
    figures._host_results.cache_clear()


def host_doc(root):
    path, _ = figures._host_results(root)
    return path, json.loads(path.read_text())


@pytest.mark.parametrize("name", figures.DOCUMENTS)
def test_the_documents_figures_are_what_the_committed_results_say(name):
    text = (REPO / name).read_text()
    assert figures.fill(text, name) == text, \
        f"{name}: figures differ from the committed results; run /usr/bin/python3 -m results.figures"


def test_every_measurement_in_semantics_is_a_generated_block():
    text = (REPO / "docs/semantics.md").read_text()
    outside = figures.BLOCK_RE.sub("", text)
    assert "**Measured here" not in outside
    cases = re.findall(r"\*\*Case\.\*\* `([a-z0-9_]+)`", text)
    assert figures.blocks_in(text) == cases  # one block per case, in the page's order
    assert figures.blocks_in((REPO / "README.md").read_text()) == ["run_sample"]
    assert figures.blocks_in((REPO / "docs/report.md").read_text()) == ["report_timings", "servers_table", "servers_udp_table"]
    assert figures.blocks_in((REPO / "docs/deploy.md").read_text()) == ["servers_table", "servers_udp_table"]


def test_check_exits_1_on_a_stale_figure_and_rewrites_it(tmp_path):
    for name in figures.DOCUMENTS:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    assert figures.main(["--check"], root=tmp_path) == 0
    readme = tmp_path / "README.md"
    stale = re.sub(r"summary: \d+ passed", "summary: 32 passed", readme.read_text(), count=1)
    assert stale != readme.read_text()
    readme.write_text(stale)
    assert figures.main(["--check"], root=tmp_path) == 1
    assert readme.read_text() == stale  # --check changes nothing
    assert figures.main([], root=tmp_path) == 0
    assert figures.main(["--check"], root=tmp_path) == 0
    assert (tmp_path / "README.md").read_text() == (REPO / "README.md").read_text()


def test_an_unknown_block_is_an_error():
    with pytest.raises(figures.FiguresError, match="unknown figures block 'nope'"):
        figures.fill("<!-- figures:nope -->\nx\n<!-- /figures:nope -->\n", "x.md")


def test_figures_follow_the_data(data):
    """Change a count in the newest host results: the block that shows it changes with it,
    and a prose claim that no longer holds for every variant says how many it holds for."""
    before = {name: make() for name, make in figures.BLOCKS.items()}
    path, doc = host_doc(data)
    spread = [r for r in doc["records"] if r["case"] == "hash_spread"]
    chi_before = figures.span(spread, "chi_square")
    passed = sum(r["verdict"] == "PASS" for r in doc["records"])
    for r in doc["records"]:
        if r["case"] == "hash_spread" and r["variant"] == "udp6":
            r["observed"]["chi_square"] = 29.5
        if r["case"] == "close_listener_with_queued_children" and \
                r["variant"] == "tcp6_close_k2_b8_migrate0":
            r["observed"]["client_resets"] = 10
            r["verdict"] = "FAIL"
    path.write_text(json.dumps(doc))
    figures._host_results.cache_clear()
    after = {name: make().replace("\n", " ") for name, make in figures.BLOCKS.items()}
    before = {name: text.replace("\n", " ") for name, text in before.items()}
    # The range as the committed data has it, then with udp6's chi-square raised to 29.5:
    # the new maximum (the other variants' values stay below it).
    chi_after = figures.span(spread, "chi_square")
    assert chi_after.endswith("-29.5") and chi_after != chi_before
    assert f"chi-square {chi_before};" in before["hash_spread"]
    assert f"chi-square {chi_after};" in after["hash_spread"]
    assert "orphan RSTs in all 8 variants" in before["close_listener_with_queued_children"]
    assert "orphan RSTs in 7 of 8 variants" in after["close_listener_with_queued_children"]
    assert "16 variants: 15 PASS, 1 FAIL" in after["close_listener_with_queued_children"]
    assert f"summary: {passed - 1} passed, 1 failed" in after["run_sample"]
    changed = {n for n in figures.BLOCKS if before[n] != after[n]}
    assert changed == {"hash_spread", "close_listener_with_queued_children", "run_sample"}


def test_report_timings_follow_the_data(data):
    path = data / "report" / "data" / "5.10.0-43-cloud-amd64.json"
    assert "173 runs in 8.0 to 10.2 minutes" in figures.report_timings().replace("\n", " ")
    # The host's full profile ran on its own, after the guests: said so, not one span.
    assert "measured on its own (`report --host-only --profile full`" in figures.report_timings().replace("\n", " ")
    # The parts measured apart are told apart, not counted as more guests.
    assert "udp_grid runs were measured again apart" in figures.report_timings().replace("\n", " ")
    parts = sorted((data / "report" / "data").glob("*.udp_grid.json"))
    total = sum(len(json.loads(p.read_text())["runs"]) for p in parts)
    assert f"{len(parts)} kernels, {total} runs" in figures.report_timings().replace("\n", " ")
    pdoc = json.loads(parts[0].read_text())
    pdoc["runs"] = pdoc["runs"][:-1]
    parts[0].write_text(json.dumps(pdoc))
    assert f"{len(parts)} kernels, {total - 1} runs" in figures.report_timings().replace("\n", " ")
    doc = json.loads(path.read_text())
    doc["started_at"], doc["finished_at"] = "2026-11-30T23:42:10Z", "2026-12-01T01:42:10Z"
    path.write_text(json.dumps(doc))
    assert "173 runs in 8.8 to 120.0 minutes" in figures.report_timings().replace("\n", " ")


def test_the_newest_host_results_are_used(data):
    """Of the host's results files the one that finished last (not the last by name)."""
    path, doc = figures.host_results()
    newest = max((json.loads(p.read_text()).get("finished_at"), p) for p in data.glob("*/results.json")
                 if json.loads(p.read_text())["matrix"]["kernel"] == "running")[1]
    assert path == newest
    other = next(p for p in data.glob("*/results.json")
                 if p != path and json.loads(p.read_text())["matrix"]["kernel"] == "running")
    odoc = json.loads(other.read_text())
    odoc["finished_at"] = "2099-01-01T00:00:00Z"
    other.write_text(json.dumps(odoc))
    figures._host_results.cache_clear()
    assert figures.host_results()[0] == other


RECORD = {"case": "c", "variant": "v", "repeat": 0, "verdict": "FAIL", "reason": "r",
          "expected": {"a": 1, "b": {"min": 2}, "c": {"max": 3}, "d": "OK", "e": 5, "f": True},
          "observed": {"a": 2, "b": 1, "c": 4, "d": "OK", "e": None, "f": 1}}


def test_compact_marks_what_differs_as_run_does():
    assert figures.compact(RECORD["expected"], RECORD["observed"]) == \
        'a=2!=1 b=1<2 c=4>3 d="OK" e=? f=1!=true'
    ok = dict(RECORD["observed"], a=1, b=2, c=3, e=5, f=True)
    assert figures.compact(RECORD["expected"], ok) == 'a=1 b=2 c=3 d="OK" e=5 f=true'
    skipped = dict(RECORD, verdict="SKIP", reason="kernel lacks x")
    assert figures.table([skipped])[1].endswith("SKIP     skipped: kernel lacks x")


def test_the_table_is_the_one_run_prints(tmp_path, cli, require_root):
    """figures.table() of a run's records is the table `reuseport-check run` printed."""
    out = tmp_path / "run.json"
    r = subprocess.run([cli, "run", "--case", "close_listener_with_queued_children/tcp4_close_k2_b8_*",
                        "--case", "unix_reuseport_rejected/dgram", "--json", str(out)],
                       capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout + r.stderr
    printed = r.stdout.splitlines()
    start = next(i for i, line in enumerate(printed) if line.startswith("case/variant"))
    end = printed.index("", start)
    doc = json.loads(out.read_text())
    assert [line.rstrip() for line in printed[start:end]] == figures.table(doc["records"])
    assert figures.summary(doc["records"], doc["kernel"]) in printed
    assert f"reuseport-check: {len(doc['records'])} variant(s) x 1 repeat(s) on kernel " \
           f"{doc['kernel']}" in printed


def test_variant_counts_in_the_docs_are_the_catalogues():
    """"`case`, N variants" in semantics.md: N is the number of the case's committed records."""
    _, doc = figures._host_results(figures.RESULTS)
    per_case = {}
    for r in doc["records"]:
        per_case[r["case"]] = per_case.get(r["case"], 0) + 1
    text = (REPO / "docs/semantics.md").read_text()
    claims = re.findall(r"`([a-z0-9_]+)`, (\d+) variants", text)
    assert len(claims) >= 10
    assert [(c, int(n)) for c, n in claims] == [(c, per_case[c]) for c, _ in claims]


def test_the_cases_thresholds_in_the_docs_are_the_cases_own():
    """Thresholds the docs state are those the committed records carry."""
    _, doc = figures._host_results(figures.RESULTS)
    observed = {(r["case"], r["variant"]): r["observed"] for r in doc["records"]}
    hs = [o for (c, _), o in observed.items() if c == "hash_spread"]
    gc = {v: o for (c, v), o in observed.items() if c == "group_change_remap"}
    assert {o["chi_square_limit"] for o in hs} == {30.66}
    assert {o["share_tolerance"] for o in hs} == {0.06}
    assert {o["tolerance"] for v, o in gc.items() if v.startswith("udp")} == {0.04}
    assert {o["tolerance"] for v, o in gc.items() if v.startswith("tcp")} == {0.079}
    semantics = (REPO / "docs/semantics.md").read_text()
    readme = (REPO / "README.md").read_text()
    assert "within +-6% of a quarter" in semantics and "below 30.66" in semantics
    assert "(0.04 for\nUDP, 0.079 for TCP)" in semantics
    assert "each share within 6% and chi-square (3 dof) < 30.66" in readme
