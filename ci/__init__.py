"""The Python side of reuseport-check's CI: ci.vm (fetch a kernel, build an initramfs, boot
it in qemu) and ci.matrix (the kernel matrix driver and its pytest plugin).

The source tree is the one import root (pytest.ini: pythonpath = .): a module's import name
is its path, `ci/matrix/driver.py` is `ci.matrix.driver`.
"""
