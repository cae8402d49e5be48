"""The kernel matrix (ci/kernels.toml) and fetching its kernels from the Debian archive.

Fetching uses a private apt configuration per suite under the cache directory, so the
machine's own apt state is never read or written: its sources, lists, preferences and
trusted keys are all replaced; only /etc/apt/apt.conf.d (proxies) still applies. The
archive URIs are read from the machine's sources at run time.
"""

from __future__ import annotations

import dataclasses
import fcntl
import fnmatch
import functools
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import tomllib
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urlparse

CI_DIR = Path(__file__).resolve().parent.parent
DEFAULT_MATRIX = CI_DIR / "kernels.toml"

# Every suite of the matrix is signed by a key in this keyring (bookworm's
# debian-archive-keyring 2023.3+deb12u2 has the 11, 12 and 13 keys; forky is signed
# with the 13 key). A newer suite signed only by a newer key fails `apt-get update`
# with NO_PUBKEY: install a newer debian-archive-keyring rather than trusting blindly.
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
FALLBACK_MIRROR = "http://deb.debian.org/debian"
FALLBACK_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
# A fresh index is reused for this long, so one session updates each suite once.
LISTS_MAX_AGE_S = 3600.0

_DEB_KEYS = ("name", "kind", "suite", "package", "version", "vmlinuz", "series", "note")
_DEB_REQUIRED = ("name", "suite", "package", "version", "vmlinuz", "series")
_HOST_KEYS = ("name", "kind", "note")
# Kernels the user has as files (ci/vm/local_kernels.py): a bare image, optionally with its
# modules tree, or a linux-image .deb.
_IMAGE_KEYS = ("name", "kind", "path", "modules", "note")
_DEB_FILE_KEYS = ("name", "kind", "path", "note")
_KINDS = {"deb": (_DEB_KEYS, _DEB_REQUIRED), "host": (_HOST_KEYS, ("name",)),
          "image": (_IMAGE_KEYS, ("name", "path")), "deb-file": (_DEB_FILE_KEYS, ("name", "path"))}


class VmError(Exception):
    """An expected failure of the VM layer: reported as a message, never a traceback."""


class MatrixError(VmError):
    pass


class FetchError(VmError):
    pass


@dataclasses.dataclass(frozen=True)
class Kernel:
    name: str
    kind: str = "deb"  # "deb", "host", "image" or "deb-file"
    suite: str = ""
    package: str = ""
    version: str = "newest"
    vmlinuz: str = ""
    series: str = ""
    note: str = ""
    path: str = ""  # image, deb-file: the file (absolute)
    modules: str = ""  # image: its modules tree, /lib/modules/<release> (absolute), or ""

    @property
    def is_host(self) -> bool:
        return self.kind == "host"

    @property
    def is_local(self) -> bool:
        """A kernel the user has as a file: nothing is downloaded for it."""
        return self.kind in ("image", "deb-file")

    @property
    def security(self) -> bool:
        return self.suite.endswith("-security")


@dataclasses.dataclass(frozen=True)
class FetchedKernel:
    kernel: Kernel
    vmlinuz: Path
    # What `uname -r` prints in the guest, taken from the vmlinuz path; for a bare image
    # from its modules' vermagic or its boot header, None when neither tells (the guest's
    # answer is then the only one).
    release: str | None
    package: str | None  # the resolved package name (None for a bare image)
    version: str | None  # its Debian version
    release_from: str = "the package"  # where `release` was read, for messages
    # A local kernel's diag modules, decompressed (None: fetch them from the archive).
    modules: tuple[Path, ...] | None = None
    notes: tuple[str, ...] = ()  # what the kernel's files lack (no modules, ...)


def load_matrix(path: Path | str | None = None) -> dict[str, Kernel]:
    """Parse and validate the matrix; the dict keeps the file's order."""
    path = Path(path) if path is not None else DEFAULT_MATRIX
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise MatrixError(f"{path}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise MatrixError(f"{path}: not valid TOML: {e}") from None
    top_unknown = sorted(set(data) - {"kernel"})
    if top_unknown:
        raise MatrixError(f"{path}: unknown top-level key(s) {', '.join(top_unknown)}; "
                          "only [[kernel]] tables are allowed")
    entries = data.get("kernel")
    if not isinstance(entries, list) or not entries:
        raise MatrixError(f"{path}: no [[kernel]] entries")
    matrix: dict[str, Kernel] = {}
    for i, entry in enumerate(entries, 1):
        kernel = _validate_entry(path, i, entry)
        if kernel.name in matrix:
            raise MatrixError(f"{path}: kernel #{i}: duplicate name {kernel.name!r}")
        matrix[kernel.name] = kernel
    return matrix


def _validate_entry(path: Path, index: int, entry: object) -> Kernel:
    if not isinstance(entry, dict):
        raise MatrixError(f"{path}: kernel #{index}: not a table")
    name = entry.get("name")
    where = f"{path}: kernel #{index}" + (f" ({name!r})" if isinstance(name, str) else "")

    def fail(msg: str) -> MatrixError:
        return MatrixError(f"{where}: {msg}")

    kind = entry.get("kind", "deb")
    if kind not in _KINDS:
        raise fail(f"kind must be one of {', '.join(map(repr, _KINDS))}, not {kind!r}")
    allowed, required = _KINDS[kind]
    unknown = sorted(set(entry) - set(allowed))
    if unknown:
        raise fail(f"unknown key(s) {', '.join(unknown)} for kind {kind!r} "
                   f"(allowed: {', '.join(allowed)})")
    missing = [k for k in required if k not in entry]
    if missing:
        raise fail(f"missing field(s) {', '.join(missing)}")
    for key, value in entry.items():
        if not isinstance(value, str) or (key != "note" and not value.strip()):
            raise fail(f"{key} must be a non-empty string, not {value!r}")
        if key != "note" and value != value.strip():
            raise fail(f"{key} has surrounding whitespace: {value!r}")
    if kind == "deb":
        if entry["vmlinuz"].count("*") != 1:
            raise fail(f"vmlinuz must contain exactly one '*' (the kernel release), "
                       f"not {entry['vmlinuz']!r}")
        if not re.fullmatch(r"[a-z0-9-]+", entry["suite"]):
            raise fail(f"suite {entry['suite']!r} is not a Debian suite name")
        if not re.fullmatch(r"[a-z0-9.+*-]+", entry["package"]):
            raise fail(f"package {entry['package']!r} is not a package name or pattern")
    if kind in ("image", "deb-file"):
        # Relative to the matrix file, so that a matrix and its kernels can move together.
        entry = dict(entry)
        for key in ("path", "modules"):
            if key in entry:
                entry[key] = str((path.parent / os.path.expanduser(entry[key])).absolute())
    return Kernel(**entry)


def check_local(kernel: Kernel) -> None:
    """A local kernel's files exist (before anything boots); MatrixError names the first
    that does not."""
    if not kernel.is_local:
        return
    what = "kernel image" if kernel.kind == "image" else "kernel package"
    if not os.path.isfile(kernel.path):
        why = "is not a file" if os.path.exists(kernel.path) else "does not exist"
        raise MatrixError(f"kernel {kernel.name}: {what} {kernel.path} {why}")
    if kernel.modules and not os.path.isdir(kernel.modules):
        why = "is not a directory" if os.path.exists(kernel.modules) else "does not exist"
        raise MatrixError(f"kernel {kernel.name}: modules tree {kernel.modules} {why}")


def cache_dir() -> Path:
    env = os.environ.get("RP_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "reuseport-check"


# ---------------------------------------------------------------------------------------
# Archive URIs, read from the machine's apt sources.


def _source_uris(etc: Path) -> list[tuple[str, list[str]]]:
    """(uri, suites) for every deb source of the machine, deb822 and one-line styles."""
    found: list[tuple[str, list[str]]] = []
    parts = etc / "sources.list.d"
    files = [etc / "sources.list"] + (sorted(parts.iterdir()) if parts.is_dir() else [])
    for f in files:
        try:
            text = f.read_text(errors="replace")
        except OSError:
            continue
        if f.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    m = re.match(r"([A-Za-z-]+):\s*(.*)", line)
                    if m and not line.startswith("#"):
                        fields[m.group(1).lower()] = m.group(2)
                if "deb" in fields.get("types", "").split():
                    for uri in fields.get("uris", "").split():
                        found.append((uri, fields.get("suites", "").split()))
        elif f.name == "sources.list" or f.suffix == ".list":
            for line in text.splitlines():
                line = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
                if len(line) >= 3 and line[0] == "deb":
                    found.append((line[1], [line[2]]))
    return found


def archive_uris(etc: Path = Path("/etc/apt")) -> tuple[str, str]:
    """(main archive URI, security archive URI) of the machine's Debian mirror."""
    main = os.environ.get("RP_DEBIAN_MIRROR")
    security = os.environ.get("RP_DEBIAN_SECURITY_MIRROR")
    for uri, suites in _source_uris(etc):
        parsed = urlparse(uri)
        if parsed.scheme not in ("http", "https"):
            continue
        last = parsed.path.rstrip("/").rsplit("/", 1)[-1]
        if last == "debian-security" or any(s.endswith("-security") for s in suites):
            security = security or uri.rstrip("/")
        elif last == "debian":
            main = main or uri.rstrip("/")
    return main or FALLBACK_MIRROR, security or FALLBACK_SECURITY_MIRROR


# ---------------------------------------------------------------------------------------
# A private apt configuration for one suite.


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise concurrent fetchers (pytest-xdist workers) on one lock file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class PrivateApt:
    def __init__(self, root: Path, suite: str):
        self.root = root
        self.suite = suite

    def options(self) -> list[str]:
        r = self.root
        opts = {
            "Dir::Etc::SourceList": r / "sources.list",
            "Dir::Etc::SourceParts": r / "empty.d",
            "Dir::Etc::Preferences": r / "preferences",
            "Dir::Etc::PreferencesParts": r / "empty.d",
            "Dir::Etc::Trusted": r / "trusted.gpg",
            "Dir::Etc::TrustedParts": r / "empty.d",
            "Dir::State::Lists": r / "lists",
            "Dir::State::status": "/dev/null",
            "Dir::Cache": r / "cache",
            "APT::Architecture": "amd64",
            "APT::Architectures": "amd64",
            "Acquire::Languages": "none",
            "APT::Get::List-Cleanup": "false",
        }
        if os.geteuid() == 0:
            # The cache lives in root's home, which the _apt sandbox user cannot enter.
            opts["APT::Sandbox::User"] = "root"
        return [arg for k, v in opts.items() for arg in ("-o", f"{k}={v}")]

    def _prepare(self, uri: str) -> None:
        for d in ("empty.d", "lists/partial", "cache/archives/partial"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        line = f"deb [signed-by={KEYRING}] {uri} {self.suite} main\n"
        sources = self.root / "sources.list"
        if not sources.exists() or sources.read_text() != line:
            sources.write_text(line)
            shutil.rmtree(self.root / "lists", ignore_errors=True)
            (self.root / "lists/partial").mkdir(parents=True)

    def update(self, uri: str, *, force: bool = False) -> None:
        self._prepare(uri)
        stamp = self.root / "updated"
        if not force and stamp.exists() and time.time() - stamp.stat().st_mtime < LISTS_MAX_AGE_S:
            return
        proc = self._run(["apt-get", *self.options(), "-q", "update"])
        # apt-get update exits 0 on some fetch failures; "W:"/"E:" lines tell them apart.
        errors = [l for l in proc.stdout.splitlines() + proc.stderr.splitlines()
                  if l.startswith(("E:", "W:", "Err:"))
                  and "unsandboxed" not in l]
        if proc.returncode != 0 or errors:
            raise FetchError(f"apt-get update for suite {self.suite} ({uri}) failed:\n  "
                             + "\n  ".join(errors or proc.stderr.splitlines()[-5:]))
        stamp.touch()

    def madison(self, names: list[str]) -> list[tuple[str, str]]:
        """(package, version) for every version of the named packages in the suite."""
        if not names:
            return []
        proc = self._run(["apt-cache", *self.options(), "madison", *names])
        rows = []
        for line in proc.stdout.splitlines():
            cols = [c.strip() for c in line.split("|")]
            if len(cols) >= 3 and " Packages" in cols[2]:
                rows.append((cols[0], cols[1]))
        return rows

    def pkgnames(self, prefix: str) -> list[str]:
        return self._run(["apt-cache", *self.options(), "pkgnames", prefix]).stdout.split()

    def download(self, package: str, version: str, dest: Path) -> Path:
        proc = self._run(["apt-get", *self.options(), "-q", "download",
                          f"{package}={version}"], cwd=dest)
        debs = list(dest.glob("*.deb"))
        if proc.returncode != 0 or len(debs) != 1:
            errors = [l for l in proc.stderr.splitlines() if l.startswith(("E:", "Err"))]
            raise FetchError(f"cannot download {package}={version} from suite {self.suite}:"
                             "\n  " + "\n  ".join(errors or proc.stderr.splitlines()[-3:]))
        return debs[0]

    @staticmethod
    def _run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(argv, cwd=cwd, capture_output=True, text=True,
                                  stdin=subprocess.DEVNULL, timeout=900)
        except FileNotFoundError:
            raise FetchError(f"{argv[0]} not found: fetching kernels needs apt") from None
        except subprocess.TimeoutExpired:
            raise FetchError(f"{argv[0]} {argv[-1]} timed out") from None


def _version_cmp(a: str, b: str) -> int:
    if a == b:
        return 0
    lt = subprocess.run(["dpkg", "--compare-versions", a, "lt", b]).returncode == 0
    return -1 if lt else 1


# ---------------------------------------------------------------------------------------
# Fetching.


def _spec(kernel: Kernel) -> dict[str, str]:
    return {k: getattr(kernel, k) for k in ("suite", "package", "version", "vmlinuz")}


def _cached(kernel: Kernel, kdir: Path) -> FetchedKernel | None:
    try:
        meta = json.loads((kdir / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    image = kdir / "vmlinuz"
    if meta.get("spec") != _spec(kernel) or not image.is_file() \
            or image.stat().st_size != meta.get("size"):
        return None
    return FetchedKernel(kernel, image, meta["release"], meta["package"], meta["version"])


def fetch_kernel(kernel: Kernel | str, *, matrix: dict[str, Kernel] | None = None,
                 refresh: bool = False,
                 log: Callable[[str], None] | None = None) -> FetchedKernel:
    """Return the kernel's vmlinuz, downloading it on the first call only.

    A second call with an unchanged matrix entry touches no network. `refresh`
    re-resolves "newest" and patterns against a fresh index.
    """
    if isinstance(kernel, str):
        matrix = matrix if matrix is not None else load_matrix()
        if kernel not in matrix:
            raise FetchError(f"unknown kernel {kernel!r}; the matrix has "
                             f"{', '.join(matrix)}")
        kernel = matrix[kernel]
    if kernel.is_host:
        raise FetchError(f"kernel {kernel.name!r} is the host's running kernel; "
                         "it is not fetched or booted")
    if kernel.is_local:
        from ci.vm.local_kernels import prepare_local
        return prepare_local(kernel, log=log or (lambda msg: None))
    log = log or (lambda msg: None)
    root = cache_dir()
    kdir = root / "kernels" / kernel.name
    if not refresh and (hit := _cached(kernel, kdir)):
        return hit
    with _locked(root / "kernels" / f"{kernel.name}.lock"):
        if not refresh and (hit := _cached(kernel, kdir)):
            return hit  # another process fetched it while we waited
        main, security = archive_uris()
        uri = security if kernel.security else main
        apt = PrivateApt(root / "apt" / kernel.suite, kernel.suite)
        try:
            with _locked(root / "apt" / f"{kernel.suite}.lock"):
                log(f"{kernel.name}: apt-get update {kernel.suite} from {uri}")
                apt.update(uri, force=refresh)
            package, version = _resolve(apt, kernel)
            log(f"{kernel.name}: downloading {package}={version}")
            kdir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=kdir, prefix="dl.") as tmp:
                deb = apt.download(package, version, Path(tmp))
                release = _extract_vmlinuz(deb, kernel, package, kdir / "vmlinuz")
        except FetchError as e:
            msg = str(e)
            raise FetchError(msg if msg.startswith("kernel ") else
                             f"kernel {kernel.name}: {msg}") from None
        if not release.startswith(kernel.series + ".") and release != kernel.series:
            raise FetchError(f"kernel {kernel.name}: {package} holds release {release}, "
                             f"not series {kernel.series}")
        meta = {"spec": _spec(kernel), "package": package, "version": version,
                "release": release, "size": (kdir / "vmlinuz").stat().st_size,
                "suite": kernel.suite, "uri": uri, "fetched": time.time()}
        (kdir / "meta.json.tmp").write_text(json.dumps(meta, indent=1) + "\n")
        os.replace(kdir / "meta.json.tmp", kdir / "meta.json")
        log(f"{kernel.name}: {release} -> {kdir / 'vmlinuz'}")
        return FetchedKernel(kernel, kdir / "vmlinuz", release, package, version)


def _resolve(apt: PrivateApt, kernel: Kernel) -> tuple[str, str]:
    if "*" in kernel.package:
        prefix = kernel.package.split("*", 1)[0]
        names = [n for n in apt.pkgnames(prefix) if fnmatch.fnmatchcase(n, kernel.package)]
    else:
        names = [kernel.package]
    rows = apt.madison(names)  # drops names that are only virtual
    if kernel.version != "newest":
        rows = [r for r in rows if r[1] == kernel.version]
    if not rows:
        want = "" if kernel.version == "newest" else f" version {kernel.version}"
        raise FetchError(f"kernel {kernel.name}: no package matching {kernel.package!r}"
                         f"{want} in suite {kernel.suite}")
    return max(rows, key=functools.cmp_to_key(lambda a, b: _version_cmp(a[1], b[1])))


@contextmanager
def deb_data(deb: Path, who: str) -> Iterator[tarfile.TarFile]:
    """The data archive of a .deb (dpkg-deb --fsys-tarfile), as a tar stream to read once,
    in order, to its end. A damaged archive or a failing dpkg-deb is a FetchError naming
    `who` (the kernel) and the package."""
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            yield tar
    except tarfile.TarError as e:
        raise FetchError(f"{who}: {deb.name} is not a valid package: {e}") from None
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace").strip()
        proc.stderr.close()
        proc.wait()
    if proc.returncode != 0:
        raise FetchError(f"{who}: dpkg-deb failed on {deb.name}: {err}")


def _extract_vmlinuz(deb: Path, kernel: Kernel, package: str, dest: Path) -> str:
    """Copy the one file matching kernel.vmlinuz out of the .deb; return the release."""
    pattern = re.compile(re.escape(kernel.vmlinuz).replace(r"\*", "([^/]+)") + "$")
    release = None
    vmlinuz_like = []
    with deb_data(deb, f"kernel {kernel.name}") as tar:
        for member in tar:
            name = member.name.removeprefix("./")
            if "vmlinuz" in name:
                vmlinuz_like.append(name)
            m = pattern.match(name)
            if m and member.isfile() and release is None:
                release = m.group(1)
                src = tar.extractfile(member)
                with open(dest.with_suffix(".tmp"), "wb") as out:
                    shutil.copyfileobj(src, out)
                os.replace(dest.with_suffix(".tmp"), dest)
    if release is None:
        raise FetchError(f"kernel {kernel.name}: package {package} has no file matching "
                         f"{kernel.vmlinuz!r} (vmlinuz-like files: "
                         f"{', '.join(vmlinuz_like) or 'none'})")
    return release
