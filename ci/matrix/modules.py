"""The sock_diag modules of a guest kernel, out of the kernel's own package."""

from __future__ import annotations

import gzip
import json
import lzma
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

from ci.matrix.common import DIAG_MODULES, DriverError, _locked
from ci.vm.kernels import FetchedKernel, PrivateApt, archive_uris, cache_dir, deb_data


def _module_package(fetched: FetchedKernel) -> str:
    # The split layout of 7.x keeps the modules in linux-modules-<release>, the classic
    # linux-image-* packages carry them next to the vmlinuz.
    if fetched.kernel.vmlinuz.startswith("usr/lib/modules/"):
        return f"linux-modules-{fetched.release}"
    return fetched.package


def _decompress(name: str, data: bytes) -> bytes:
    if name.endswith(".xz"):
        return lzma.decompress(data)
    if name.endswith(".gz"):
        return gzip.decompress(data)
    if name.endswith(".zst"):
        proc = subprocess.run(["zstd", "-dc"], input=data, capture_output=True, timeout=60)
        if proc.returncode != 0:
            raise DriverError(f"zstd -dc failed on {name} (install zstd)")
        return proc.stdout
    return data


def fetch_modules(fetched: FetchedKernel,
                  log: Callable[[str], None] = lambda m: None) -> list[Path]:
    """The diag modules of this kernel, decompressed, in load order; cached per release.

    A module the package lacks is taken to be built in (nothing to load). A local kernel
    (an image or a .deb the user has) brought its modules, or none, with it.
    """
    if fetched.modules is not None:
        return list(fetched.modules)

    mdir = cache_dir() / "kernels" / fetched.kernel.name / "modules" / fetched.release
    stamp = mdir / "complete.json"
    if stamp.is_file():
        have = json.loads(stamp.read_text())
        return [mdir / f"{m}.ko" for m in have]
    package = _module_package(fetched)
    with _locked(cache_dir() / "kernels" / f"{fetched.kernel.name}.modules.lock"):
        if stamp.is_file():
            return [mdir / f"{m}.ko" for m in json.loads(stamp.read_text())]
        suite = fetched.kernel.suite
        main, security = archive_uris()
        apt = PrivateApt(cache_dir() / "apt" / suite, suite)
        with _locked(cache_dir() / "apt" / f"{suite}.lock"):
            apt.update(security if fetched.kernel.security else main)
        log(f"{fetched.kernel.name}: downloading {package}={fetched.version} for "
            f"{', '.join(DIAG_MODULES)}")
        mdir.mkdir(parents=True, exist_ok=True)
        pattern = re.compile(r"(?:usr/)?lib/modules/[^/]+/kernel/net/ipv4/(" +
                             "|".join(DIAG_MODULES) + r")\.ko(\.xz|\.gz|\.zst)?$")
        found: dict[str, bytes] = {}
        with tempfile.TemporaryDirectory(dir=mdir, prefix="dl.") as tmp:
            deb = apt.download(package, fetched.version, Path(tmp))
            with deb_data(deb, f"kernel {fetched.kernel.name}") as tar:
                for member in tar:
                    name = member.name.removeprefix("./")
                    if (m := pattern.match(name)) and member.isfile():
                        found[m.group(1)] = _decompress(name, tar.extractfile(member).read())
        have = [m for m in DIAG_MODULES if m in found]
        for m in have:
            (mdir / f"{m}.ko").write_bytes(found[m])
        stamp.write_text(json.dumps(have) + "\n")
        log(f"{fetched.kernel.name}: modules {', '.join(have) or 'none (built in)'} "
            f"-> {mdir}")
        return [mdir / f"{m}.ko" for m in have]
