"""One item per kernel x case x variant: its record's verdict must be PASS, XFAIL or SKIP.

The parametrization and the fixtures are in conftest.py; booting in driver.py, parsing
in results.py.
"""

from ci.matrix.common import GOOD_VERDICTS


def test_variant(record):
    assert record["verdict"] in GOOD_VERDICTS, \
        f"{record['verdict']} on {record['kernel']}: {record.get('reason', '')}"
