"""results/junit.py: the outcome of each testcase, and a suite whose counts are not its
testcases' is refused (a CI server shows the counts, the testcases say what happened)."""
import pytest

from results.junit import Case, Suite, read_junit

DEPLOY = """<?xml version="1.0" encoding="UTF-8"?>
<testsuite name="reuseport-check deploy" tests="1" failures="{f}" errors="{e}" skipped="0" time="1.000">
  <testcase classname="reuseport-check" name="deploy" time="1.000"{body}
</testsuite>
"""


def write(tmp_path, text):
    path = tmp_path / "j.xml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("f, e, body, outcome", [
    (0, 0, "/>", Case("passed", None)),
    (1, 0, '>\n    <failure message="2 of 12 connections lost">t</failure>\n  </testcase>',
     Case("failure", "2 of 12 connections lost")),
    (0, 1, '>\n    <error message="the deploy command exited with status 4">x</error>\n  </testcase>',
     Case("error", "the deploy command exited with status 4")),
])
def test_outcome_of_deploys_one_testcase(tmp_path, f, e, body, outcome):
    suites, cases = read_junit(write(tmp_path, DEPLOY.format(f=f, e=e, body=body)))
    assert suites == [Suite("reuseport-check deploy", 1, f, e, 0)]
    assert cases == {"reuseport-check::deploy": outcome}


def test_pytest_testsuites_root_and_skips(tmp_path):
    text = ('<?xml version="1.0"?><testsuites><testsuite name="pytest" tests="2" failures="0" '
            'errors="0" skipped="1"><testcase classname="m" name="a"/><testcase classname="m" name="b">'
            '<skipped message="no qemu"/></testcase></testsuite></testsuites>')
    suites, cases = read_junit(write(tmp_path, text))
    assert suites == [Suite("pytest", 2, 0, 0, 1)]
    assert cases == {"m::a": Case("passed", None), "m::b": Case("skipped", "no qemu")}


def test_counts_that_are_not_the_testcases_are_refused(tmp_path):
    path = write(tmp_path, DEPLOY.format(f=0, e=0, body='>\n    <failure message="lost">t</failure>\n  </testcase>'))
    with pytest.raises(ValueError, match="says tests=1 failures=0 errors=0"):
        read_junit(path)
