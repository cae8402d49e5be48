"""Which kernel differences the report's data can carry (make_report.py): the precision of
the focus point's means, the repeats a wider goal would take, pairwise kernel comparisons
with a test, and the findings the report opens with. Nothing here draws or writes.

The focus point is closed loop, 20 in flight, backlog 16, work 0 us, where the profiles give
strategies a (close), b (SIGKILL) and h (shutdown, then drain) their focus repeats
(cli/report_runs.cc, Profile::focus_repeats). The unit is the run: each run's failed per
100,000 attempts, as in the rest of the report (losses cluster at deploys).

  * Precision goal: the 95% Student-t interval's half-width at most 30% of the mean. Where it
    is not met, the repeats it would take are estimated from the measured spread, assuming
    the half-width shrinks as 1/sqrt(n) (n_needed = n * (ratio / 0.30)^2, rounded up; the
    t quantile's own shrinking makes this a slight overestimate).
  * Pairwise comparison: kernel against kernel, strategy by strategy, at the focus point,
    only between kernels measured in the same kind of place (guests with guests; the host
    is faster than any emulated guest, so a difference there is the machine's as much as
    the kernel's). The test is a two-sided permutation test on the difference of the mean
    run rates (exact when the relabellings are few, else 20,000 random ones from a fixed
    seed), which assumes no distribution for rates that are mostly small counts. The
    p-values of one table are adjusted by Holm's method; a difference is significant when
    its adjusted p-value is below 0.05.
"""
from __future__ import annotations

import itertools
import math
import random
import statistics

from results.report.report_stats import comparable_key, mean_ci, per100k, usable

FOCUS = ("closed", 20, 16, 0)
FOCUS_LABEL = "closed 20 in flight, backlog 16, work 0 us"
FOCUS_STRATEGIES = ("a_close", "b_kill", "h_shutdown_drain")
GOAL = 0.30
ALPHA = 0.05
ROUNDS = 20000
SEED = 20261130


def place(doc: dict) -> str:
    return (doc.get("environment") or {}).get("where") or "host"


def focus_rates(doc: dict, strategy: str) -> list[float]:
    """Failed per 100,000 attempts of each usable run of `strategy` at the focus point."""
    return [per100k(r) for r in doc["runs"]
            if r["experiment"] == "grid" and r.get("strategy") == strategy and usable(r)
            and comparable_key(r) == FOCUS]


def precision(values: list[float], goal: float = GOAL) -> dict:
    """The interval of the mean, its half-width as a fraction of the mean, whether that meets
    `goal`, and the repeats that would (None when it cannot be estimated: fewer than two
    runs, or no loss at all, where no relative width exists)."""
    out = {"n": len(values), "mean": None, "lo": None, "hi": None, "ratio": None, "met": False, "needed": None}
    if not values:
        return out
    m, lo, hi = mean_ci(values)
    out.update(mean=m, lo=lo, hi=hi)
    if lo is None or m <= 0:
        return out
    ratio = (hi - m) / m
    out["ratio"] = ratio
    out["met"] = ratio <= goal
    out["needed"] = len(values) if out["met"] else math.ceil(len(values) * (ratio / goal) ** 2)
    return out


def permutation_p(x: list[float], y: list[float], rounds: int = ROUNDS, seed: int = SEED) -> float:
    """Two-sided permutation p-value for the difference of the means of x and y."""
    if not x or not y:
        raise ValueError("a permutation test needs runs on both sides")
    pooled = list(x) + list(y)
    n, k = len(pooled), len(x)
    total = sum(pooled)
    observed = abs(statistics.fmean(x) - statistics.fmean(y))
    eps = 1e-9 * max(1.0, observed)

    def diff(sx: float) -> float:
        return abs(sx / k - (total - sx) / (n - k))

    if math.comb(n, k) <= rounds:
        hits = count = 0
        for idx in itertools.combinations(range(n), k):
            count += 1
            hits += diff(sum(pooled[i] for i in idx)) >= observed - eps
        return hits / count
    rng = random.Random(seed)
    hits = 0
    for _ in range(rounds):
        hits += diff(sum(rng.sample(pooled, k))) >= observed - eps
    return (hits + 1) / (rounds + 1)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjustment, in the input's order."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted = [0.0] * len(pvalues)
    running = 0.0
    m = len(pvalues)
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def precision_table(docs: list[dict]) -> list[dict]:
    rows = []
    for doc in docs:
        for st in FOCUS_STRATEGIES:
            vals = focus_rates(doc, st)
            if vals:
                rows.append({"kernel": doc["kernel_release"], "place": place(doc), "strategy": st,
                             **precision(vals)})
    return rows


def pairwise(docs: list[dict]) -> list[dict]:
    """Every pair of kernels measured in the same kind of place, per focus strategy."""
    rows = []
    for st in FOCUS_STRATEGIES:
        rates = [(d, focus_rates(d, st)) for d in docs]
        for (da, xa), (db, xb) in itertools.combinations(rates, 2):
            if place(da) != place(db) or len(xa) < 2 or len(xb) < 2:
                continue
            rows.append({"strategy": st, "a": da["kernel_release"], "b": db["kernel_release"],
                         "mean_a": statistics.fmean(xa), "mean_b": statistics.fmean(xb),
                         "n_a": len(xa), "n_b": len(xb), "p": permutation_p(xa, xb)})
    for row, adj in zip(rows, holm([r["p"] for r in rows])):
        row["p_holm"] = adj
        row["significant"] = adj < ALPHA
    return rows


def lossless(doc: dict) -> dict[str, tuple[int, int]]:
    """Strategies that lost nothing in any usable grid run of this kernel: runs, attempts."""
    by: dict[str, list[dict]] = {}
    for r in doc["runs"]:
        if r["experiment"] == "grid" and usable(r):
            by.setdefault(r["strategy"], []).append(r)
    return {st: (len(rs), sum(r["attempts"] for r in rs)) for st, rs in by.items()
            if rs and all(r["failed"] == 0 for r in rs)}


def findings(docs: list[dict], rows_by_kernel: dict[str, list[dict]], pairs: list[dict]) -> list[str]:
    """Short statements a reader can cite, each from the data below it in the report."""
    out = []
    for doc in docs:
        rel = doc["kernel_release"]
        parts = []
        for st, what in (("a_close", "close()"), ("b_kill", "SIGKILL"), ("h_shutdown_drain", "shutdown()")):
            rs = [r for r in rows_by_kernel.get(rel, []) if r["strategy"] == st and "mean" in r]
            if not rs:
                continue
            failed = sum(r["failed"] for r in rs)
            orphaned = sum(r["attribution"].get("orphaned", 0) for r in rs)
            parts.append(f"{what} lost {failed} connections over {sum(r['used'] for r in rs)} runs, {orphaned} of "
                         f"them children reset in the closed listener's accept queue")
        free = lossless(doc)
        ok = ", ".join(f"{st} ({n} runs, {att} attempts)" for st, (n, att) in sorted(free.items()))
        out.append(f"{rel} ({'host' if place(doc) == 'host' else 'guest'}): " + "; ".join(parts)
                   + f". Lossless in every run: {ok or 'none'}.")
    sig = [p for p in pairs if p["significant"]]
    if pairs:
        if sig:
            out.append("Significant kernel differences at the focus point (" + FOCUS_LABEL + ", Holm-adjusted "
                       "permutation test, p < 0.05): " + "; ".join(
                           f"{p['strategy']} {p['a']} {p['mean_a']:.1f} vs {p['b']} {p['mean_b']:.1f} per 100,000 "
                           f"(p {p['p_holm']:.3f})" for p in sig) + ".")
        else:
            out.append(f"No kernel difference at the focus point ({FOCUS_LABEL}) is significant over "
                       f"{len(pairs)} comparisons (Holm-adjusted permutation test, p < 0.05).")
    return out
