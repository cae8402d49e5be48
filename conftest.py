"""Fixtures every test directory shares (cases/tests, ci/tests, results/tests): the
reuseport-check binary of this tree ($RP_BUILD_DIR, else build/) and a root check."""

import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def cli():
    path = pathlib.Path(os.environ.get("RP_BUILD_DIR", REPO / "build")) / "bin" / "reuseport-check"
    if not path.exists():
        pytest.fail(f"{path} is missing: build first (ci/setup.sh)")
    return str(path)


@pytest.fixture
def require_root():
    if os.geteuid() != 0:
        pytest.skip("needs root")
