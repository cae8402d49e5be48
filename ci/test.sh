#!/usr/bin/env bash
# The test command: unit tests and case programs under CTest, then the Python tests of the
# pytest driver. Needs root (network namespaces, sysctls, BPF). Exit status non-zero when a
# test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $(id -u) != 0 ]]; then
  echo "ci/test.sh: the tests create network namespaces and load BPF programs: run as root" >&2
  exit 2
fi
ctest --test-dir build --output-on-failure -j2 --timeout 300

if true; then
  rc=0
  # pytest.ini names the tests (cases/tests results/tests ci/tests) and the import root.
  /usr/bin/python3 -m pytest -q || rc=$?
  # 5: no tests collected, which is not a failure of the tests that exist.
  if ((rc != 0 && rc != 5)); then exit $rc; fi
fi
