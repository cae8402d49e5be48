"""The report's precision goal, kernel comparisons and findings (results/report/report_compare.py):
each bound is fed an outcome on either side of it."""
import math

import pytest

from results.report import report_compare as rc


def run(strategy: str, failed: int, attempts: int = 100000, backlog: int = 16, status: str = "ok") -> dict:
    return {"experiment": "grid", "strategy": strategy, "status": status, "reconciled": True,
            "failed": failed, "attempts": attempts,
            "params": {"mode": "closed", "concurrency": 20, "backlog": backlog, "work_us": 0,
                       "rate_fraction_of_ceiling": None},
            "attribution": None, "outcomes": {}}


def doc(rel: str, where: str, runs: list[dict]) -> dict:
    return {"kernel_release": rel, "environment": {"where": where}, "runs": runs}


def test_permutation_p_tells_a_clear_difference_from_none():
    assert rc.permutation_p([0, 1, 0, 2, 1, 0], [50, 60, 55, 52, 58, 61]) < 0.01
    assert rc.permutation_p([5, 7, 6, 5, 7, 6], [6, 5, 7, 6, 7, 5]) > 0.5
    # exact: the smallest p of 3 runs against 3 is 2 of 20 relabellings
    assert rc.permutation_p([0, 0, 1], [9, 10, 11]) == pytest.approx(0.1)
    # sampled (C(40, 20) relabellings): deterministic from the fixed seed
    x, y = [float(i % 5) for i in range(20)], [float(i % 5) + 3 for i in range(20)]
    assert rc.permutation_p(x, y) == rc.permutation_p(x, y) < 0.001
    with pytest.raises(ValueError):
        rc.permutation_p([], [1.0])


def test_holm_adjusts_in_step_down_order():
    assert rc.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert rc.holm([0.5]) == [0.5]
    assert all(a <= 1.0 for a in rc.holm([0.9, 0.8, 0.7]))


def test_precision_goal_met_or_the_repeats_it_would_take():
    tight = rc.precision([100, 102, 98, 101, 99])
    assert tight["met"] and tight["ratio"] < rc.GOAL and tight["needed"] == 5
    wide = rc.precision([0, 200, 50, 400])
    assert not wide["met"] and wide["ratio"] > rc.GOAL
    assert wide["needed"] == math.ceil(4 * (wide["ratio"] / rc.GOAL) ** 2) > 4
    nothing = rc.precision([0, 0, 0])
    assert nothing["mean"] == 0 and nothing["ratio"] is None and not nothing["met"] and nothing["needed"] is None
    one = rc.precision([7.0])
    assert one["lo"] is None and one["needed"] is None


def test_pairwise_compares_guests_with_guests_at_the_focus_point_only():
    low = [run("a_close", f) for f in (0, 1, 0, 1, 2, 0, 1, 0)]
    high = [run("a_close", f) for f in (60, 70, 65, 80, 75, 66, 71, 69)]
    off_focus = [run("a_close", 500, backlog=1024) for _ in range(8)]
    docs = [doc("5.10", "guest", low + off_focus), doc("6.12", "guest", high),
            doc("6.18-host", "host", high), doc("7.2", "guest", low)]
    pairs = rc.pairwise(docs)
    assert {(p["a"], p["b"]) for p in pairs} == {("5.10", "6.12"), ("5.10", "7.2"), ("6.12", "7.2")}
    by = {(p["a"], p["b"]): p for p in pairs}
    assert by[("5.10", "6.12")]["significant"] and by[("6.12", "7.2")]["significant"]
    assert not by[("5.10", "7.2")]["significant"]
    assert by[("5.10", "6.12")]["mean_a"] == pytest.approx(0.625)  # off-focus runs left out
    assert all(p["p_holm"] >= p["p"] for p in pairs)


def test_unusable_runs_are_not_compared():
    bad = run("b_kill", 999)
    bad["reconciled"] = False
    assert rc.focus_rates(doc("x", "guest", [bad, run("b_kill", 3)]), "b_kill") == [3.0]


def test_findings_name_lossless_strategies_and_significant_differences():
    low = [run("a_close", f) for f in (0, 1, 0, 1, 2, 0, 1, 0)] + [run("g_handover", 0) for _ in range(3)]
    high = [run("a_close", f) for f in (60, 70, 65, 80, 75, 66, 71, 69)] + [run("g_handover", 1)]
    docs = [doc("5.10", "guest", low), doc("6.12", "guest", high)]
    rows = {d["kernel_release"]: [{"strategy": "a_close", "mean": 1.0, "failed": sum(r["failed"] for r in d["runs"]
                                                                                     if r["strategy"] == "a_close"),
                                   "used": 8, "attribution": {"orphaned": 2}}] for d in docs}
    text = rc.findings(docs, rows, rc.pairwise(docs))
    assert "Lossless in every run: g_handover (3 runs, 300000 attempts)" in text[0]
    assert "Lossless in every run: none" in text[1]
    assert text[-1].startswith("Significant kernel differences") and "5.10" in text[-1]
    same = [doc("a", "guest", low), doc("b", "guest", low)]
    assert rc.findings(same, {}, rc.pairwise(same))[-1].startswith("No kernel difference")


def test_the_published_magnitude_is_called_reproduced_only_at_its_size():
    from results.report.make_report import magnitude_text
    full = {"a_close": {"per_swap": (19.1, 18.6, 19.6), "swaps": 10, "failed": 191, "attempts": 492,
                        "queued_before": (18.2, 17.0, 19.4)},
            "g_handover": {"per_swap": (0.0, 0.0, 0.0), "swaps": 10, "failed": 0, "attempts": 297}}
    title, text = magnitude_text(full)
    assert text.startswith("reproduced at its magnitude") and "19.1 [18.6, 19.6]" in text and "18.2 children" in text
    empty_queue = {"a_close": {**full["a_close"], "per_swap": (0.4, 0.0, 0.9), "queued_before": (0.5, 0.0, 1.0)}}
    assert magnitude_text(empty_queue)[1].startswith("NOT reproduced at its magnitude: the old listener's queue "
                                                     "was not full")
    assert magnitude_text({}) is None
