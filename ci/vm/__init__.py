"""The VM layer of the kernel matrix: fetch a kernel, build an initramfs, boot it in qemu.

    from ci.vm import load_matrix, fetch_kernel, run_in_vm
    result = run_in_vm("6.12", ["uname", "-r"])
    if result.ok: print(result.exit_code, result.output)
"""

from .initramfs import InitramfsError, build_initramfs
from .kernels import (FetchError, FetchedKernel, Kernel, MatrixError, VmError, cache_dir,
                      fetch_kernel, load_matrix)
from .qemu import Timeouts, VmResult, build_command, run_in_vm

__all__ = ["FetchError", "FetchedKernel", "InitramfsError", "Kernel", "MatrixError",
           "Timeouts", "VmError", "VmResult", "build_command", "build_initramfs",
           "cache_dir", "fetch_kernel", "load_matrix", "run_in_vm"]
