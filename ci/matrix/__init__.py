"""The kernel matrix driver: every case of reuseport-check on every kernel of ci/kernels.toml.

driver.py does the work (one boot per kernel, records back from the serial line), with
static.py (the static guest binary), modules.py (the sock_diag modules), results.py
(KernelRun, parsing, the merged results files) and common.py (shared names); driver.py
re-exports them all. conftest.py + test_kernels.py turn it into pytest items, one per
kernel x case x variant. See ci/matrix/README.md.
"""
