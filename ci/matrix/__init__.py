"""The kernel matrix driver: every case of reuseport-check on every kernel of ci/kernels.toml.

driver.py does the work (static binary, modules, one boot per kernel, records back from
the serial line); conftest.py + test_kernels.py turn it into pytest items, one per
kernel x case x variant. See ci/matrix/README.md.
"""
