"""The JUnit XML the program writes (deploy --junit, matrix's results/junit.xml through
pytest --junitxml), read with junitparser into what a test asserts on.

    suites, cases = read_junit(path)
    suites == [Suite(name, tests, failures, errors, skipped)]
    cases == {"<classname>::<name>": Case(outcome, message)}   outcome: passed|failure|error|skipped

The suite's own counts are checked against its testcases here, so a test that reads a file
through this has checked that the counts a CI server shows are the file's testcases.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from junitparser import Error, Failure, JUnitXml, Skipped, TestSuite


@dataclass(frozen=True)
class Suite:
    name: str
    tests: int
    failures: int
    errors: int
    skipped: int


@dataclass(frozen=True)
class Case:
    outcome: str  # passed, failure, error or skipped
    message: str | None


def _outcome(case) -> Case:
    # A pytest item can fail in its call and error in its teardown: the error is the
    # infrastructure's and counts first, as pytest's own summary counts it.
    results = case.result
    for kind, cls in (("error", Error), ("failure", Failure), ("skipped", Skipped)):
        for r in results:
            if isinstance(r, cls):
                return Case(kind, r.message)
    return Case("passed", None)


def read_junit(path: str | Path) -> tuple[list[Suite], dict[str, Case]]:
    xml = JUnitXml.fromfile(str(path))
    suites = [xml] if isinstance(xml, TestSuite) else list(xml)
    out_suites, cases = [], {}
    for s in suites:
        tally = {"failure": 0, "error": 0, "skipped": 0, "passed": 0}
        n = 0
        for tc in s:
            c = _outcome(tc)
            key = f"{tc.classname}::{tc.name}"
            if key in cases:
                raise ValueError(f"{path}: testcase {key} appears twice")
            cases[key] = c
            tally[c.outcome] += 1
            n += 1
        suite = Suite(s.name, int(s.tests), int(s.failures), int(s.errors), int(s.skipped))
        if (suite.tests, suite.failures, suite.errors, suite.skipped) != \
                (n, tally["failure"], tally["error"], tally["skipped"]):
            raise ValueError(f"{path}: testsuite '{s.name}' says tests={suite.tests} "
                             f"failures={suite.failures} errors={suite.errors} skipped={suite.skipped}, "
                             f"its testcases are {n}: {tally}")
        out_suites.append(suite)
    return out_suites, cases
