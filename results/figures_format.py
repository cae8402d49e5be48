"""Formatting for results/figures.py: `run`'s table as the program prints it, and the
helpers that turn a case's records into the numbers of a "Measured here" paragraph.

Nothing here reads a file: the records come from the caller (results/figures.py reads them).
"""

from __future__ import annotations

import json
from typing import Callable, Iterable


class FiguresError(Exception):
    pass


# ---------------------------------------------------------------------------------------
# `run`'s table, as cli/run.cc (print_table, compact) prints it.


def _dump(v) -> str:
    # nlohmann::json::dump(): compact, the same as json.dumps for the counts, strings and
    # booleans the records hold.
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def compact(expected: dict, observed: dict) -> str:
    """The counts the expectation names, as observed; "!=X", "<min", ">max" where they
    differ, "?" where the kernel could not observe it (cli/run.cc compact())."""
    parts = []
    for k in sorted(expected):  # nlohmann's objects iterate in key order
        want, got = expected[k], observed.get(k)
        s = f"{k}={'?' if got is None else _dump(got)}"
        if got is not None:
            if isinstance(want, dict):
                number = isinstance(got, (int, float)) and not isinstance(got, bool)
                if number and isinstance(want.get("min"), (int, float)) and got < want["min"]:
                    s += "<" + _dump(want["min"])
                if number and isinstance(want.get("max"), (int, float)) and got > want["max"]:
                    s += ">" + _dump(want["max"])
            elif got != want or isinstance(got, bool) != isinstance(want, bool):
                s += "!=" + _dump(want)
        parts.append(s)
    return " ".join(parts)


def table(records: list[dict], repeat: int = 1) -> list[str]:
    """The lines of `run`'s table for these records, in their order (trailing blanks cut:
    the program pads the header to the widest row)."""
    wcase = max([4] + [len(r["case"]) + 1 + len(r["variant"]) for r in records])
    out = [f"{'case/variant':<{wcase}}  {'verdict':<7}  "
           "observed (!=X, <min, >max where it differs; ? not observable)"]
    for r in records:
        cv = f"{r['case']}/{r['variant']}" + (f" #{r['repeat']}" if repeat > 1 else "")
        obs = "skipped: " + r["reason"] if r["verdict"] == "SKIP" else \
            compact(r["expected"], r["observed"])
        out.append(f"{cv:<{wcase}}  {r['verdict']:<7}  {obs}".rstrip())
    return out


def summary(records: list[dict], kernel: str) -> str:
    n = {v: sum(1 for r in records if r["verdict"] == v)
         for v in ("PASS", "FAIL", "XFAIL", "XPASS", "SKIP", "ERROR")}
    return (f"summary: {n['PASS']} passed, {n['FAIL']} failed, {n['XFAIL']} xfail, "
            f"{n['XPASS']} xpass, {n['SKIP']} skipped, {n['ERROR']} errors (kernel {kernel})")



# ---------------------------------------------------------------------------------------
# The numbers of a case's records.


def obs(rs: Iterable[dict], key: str) -> list:
    return [r["observed"].get(key) for r in rs]


def num(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)


def span(rs: list[dict], key: str, fmt: Callable = num, either: bool = False) -> str:
    """"v" when every record observed v, else "lo-hi" (or the distinct values: either, or
    values that are not numbers)."""
    vals = obs(rs, key)
    if any(v is None for v in vals):
        raise FiguresError(f"{key} not observed in {len(rs)} record(s) of {rs[0]['case']}")
    if any(isinstance(v, (dict, list)) for v in vals):  # compared as JSON
        distinct = [json.loads(t) for t in sorted({json.dumps(v, sort_keys=True) for v in vals})]
        return " or ".join(fmt(v) for v in distinct)
    distinct = sorted(set(vals), key=lambda v: (isinstance(v, str), v))
    if len(distinct) == 1:
        return fmt(distinct[0])
    if not either and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in distinct):
        return f"{fmt(distinct[0])}-{fmt(distinct[-1])}"
    return " or ".join(fmt(v) for v in distinct)


def total(rs: list[dict], key: str) -> str:
    return num(sum(v or 0 for v in obs(rs, key)))


def count(rs: list[dict], pred: Callable[[dict], bool]) -> str:
    """"all N" or "k of N": in how many records pred holds."""
    k = sum(1 for r in rs if pred(r["observed"]))
    return f"all {len(rs)}" if k == len(rs) else f"{k} of {len(rs)}"


def verdicts(rs: list[dict]) -> str:
    by: dict[str, int] = {}
    for r in rs:
        by[r["verdict"]] = by.get(r["verdict"], 0) + 1
    return ", ".join(f"{n} {v}" for v, n in sorted(by.items(), key=lambda x: -x[1]))


def quoted(v) -> str:
    return f"`{v}`"


def pct(v: float) -> str:
    return f"{100 * v:.1f}%"



def obs_all(rs: list[dict]) -> list[dict]:
    return [r["observed"] for r in rs]

