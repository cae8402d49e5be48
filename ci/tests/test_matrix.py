"""The kernel matrix file and fetching, without network."""

import json
import subprocess
from pathlib import Path

import pytest

from ci.vm import kernels
from ci.vm.kernels import FetchError, MatrixError, fetch_kernel, load_matrix

GOOD_ENTRY = '''
[[kernel]]
name = "6.12"
suite = "trixie"
package = "linux-image-6.12.*+deb13-cloud-amd64"
version = "newest"
vmlinuz = "boot/vmlinuz-*"
series = "6.12"
'''


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "matrix.toml"
    path.write_text(text)
    return path


def test_project_matrix_loads_every_kernel():
    matrix = load_matrix()
    assert list(matrix) == ["running", "5.10", "6.1", "6.12", "6.17", "7.2"]
    assert matrix["running"].is_host
    assert matrix["5.10"].security and not matrix["6.12"].security
    assert matrix["7.2"].vmlinuz == "usr/lib/modules/*/vmlinuz"


def test_unknown_key_is_rejected_naming_file_entry_and_key(tmp_path):
    path = write(tmp_path, GOOD_ENTRY + 'flavour = "cloud"\n')
    with pytest.raises(MatrixError) as e:
        load_matrix(path)
    assert str(path) in str(e.value)
    assert "kernel #1 ('6.12')" in str(e.value)
    assert "unknown key(s) flavour" in str(e.value)


def test_missing_field_is_rejected(tmp_path):
    path = write(tmp_path, GOOD_ENTRY.replace('series = "6.12"\n', ""))
    with pytest.raises(MatrixError, match=r"kernel #1 \('6.12'\): missing field\(s\) series"):
        load_matrix(path)


def test_host_entry_takes_no_package_fields(tmp_path):
    path = write(tmp_path, '[[kernel]]\nname = "running"\nkind = "host"\nsuite = "x"\n')
    with pytest.raises(MatrixError, match="unknown key.*suite.*for kind 'host'"):
        load_matrix(path)


@pytest.mark.parametrize("change, message", [
    (('version = "newest"', 'version = 3'), "version must be a non-empty string"),
    (('kind', 'kind'), None),
    (('vmlinuz = "boot/vmlinuz-*"', 'vmlinuz = "boot/vmlinuz"'), "exactly one"),
    (('suite = "trixie"', 'suite = "Trixie Main"'), "not a Debian suite"),
    (('name = "6.12"', 'name = ""'), "name must be a non-empty string"),
])
def test_bad_values_are_rejected(tmp_path, change, message):
    if message is None:
        text = GOOD_ENTRY + 'kind = "vm"\n'
        message = "kind must be"
    else:
        text = GOOD_ENTRY.replace(*change)
    with pytest.raises(MatrixError, match=message):
        load_matrix(write(tmp_path, text))


def test_duplicate_names_and_bad_toml_are_rejected(tmp_path):
    with pytest.raises(MatrixError, match="duplicate name '6.12'"):
        load_matrix(write(tmp_path, GOOD_ENTRY * 2))
    with pytest.raises(MatrixError, match="not valid TOML"):
        load_matrix(write(tmp_path, "[[kernel]\n"))
    with pytest.raises(MatrixError, match="unknown top-level"):
        load_matrix(write(tmp_path, GOOD_ENTRY + "[defaults]\n"))
    with pytest.raises(MatrixError, match="cannot read"):
        load_matrix(tmp_path / "absent.toml")


def test_host_and_unknown_kernels_are_not_fetched():
    with pytest.raises(FetchError, match="host's running kernel"):
        fetch_kernel("running")
    with pytest.raises(FetchError, match="unknown kernel '9.9'"):
        fetch_kernel("9.9")


def test_archive_uris_come_from_the_machine_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("RP_DEBIAN_MIRROR", raising=False)
    monkeypatch.delenv("RP_DEBIAN_SECURITY_MIRROR", raising=False)
    etc = tmp_path / "etc"
    (etc / "sources.list.d").mkdir(parents=True)
    (etc / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n"
        "Components: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n")
    (etc / "sources.list.d" / "other.list").write_text(
        "deb [signed-by=/x.gpg] https://vendor.example/apt stable main\n")
    assert kernels.archive_uris(etc) == ("http://mirror.example/debian",
                                         "http://mirror.example/debian-security")
    assert kernels.archive_uris(tmp_path / "none") == (kernels.FALLBACK_MIRROR,
                                                       kernels.FALLBACK_SECURITY_MIRROR)


def make_deb(tmp_path: Path, name: str, files: dict[str, bytes]) -> Path:
    root = tmp_path / f"{name}-root"
    for rel, content in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(content)
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: 1.0-1\nArchitecture: amd64\n"
        "Maintainer: test <t@example.invalid>\nDescription: test\n")
    deb = tmp_path / f"{name}_1.0-1_amd64.deb"
    subprocess.run(["dpkg-deb", "-Zgzip", "--root-owner-group", "-b", str(root), str(deb)],
                   check=True, capture_output=True)
    return deb


class FakeApt:
    """Stands in for PrivateApt: counts calls instead of reaching the archive."""

    calls: list[str] = []
    debs: dict[str, Path] = {}

    def __init__(self, root, suite):
        self.suite = suite

    def update(self, uri, force=False):
        self.calls.append("update")

    def pkgnames(self, prefix):
        self.calls.append("pkgnames")
        return [n for n in self.debs if n.startswith(prefix)] + [prefix + "virtual"]

    def madison(self, names):
        self.calls.append("madison")
        versions = {"linux-image-9.1.0-1-cloud": "9.1.1-1", "linux-image-9.1.0-2-cloud": "9.1.2-1"}
        return [(n, versions.get(n, "1.0-1")) for n in names if n in self.debs]

    def download(self, package, version, dest):
        self.calls.append(f"download {package}")
        target = dest / self.debs[package].name
        target.write_bytes(self.debs[package].read_bytes())
        return target


@pytest.fixture
def fake_apt(tmp_path, monkeypatch, private_cache):
    FakeApt.calls = []
    FakeApt.debs = {
        "linux-image-9.1.0-1-cloud": make_deb(tmp_path, "linux-image-9.1.0-1-cloud",
                                              {"boot/vmlinuz-9.1.0-1-cloud": b"old"}),
        "linux-image-9.1.0-2-cloud": make_deb(tmp_path, "linux-image-9.1.0-2-cloud",
                                              {"boot/vmlinuz-9.1.0-2-cloud": b"new",
                                               "boot/config-9.1.0-2-cloud": b"x"}),
        "linux-binary-9.2.0": make_deb(tmp_path, "linux-binary-9.2.0",
                                       {"usr/lib/modules/9.2.0+deb14/vmlinuz": b"split"}),
    }
    monkeypatch.setattr(kernels, "PrivateApt", FakeApt)
    return FakeApt


def entry(**fields):
    base = dict(name="9.1", suite="testing", package="linux-image-9.1.0-*-cloud",
                version="newest", vmlinuz="boot/vmlinuz-*", series="9.1")
    base.update(fields)
    return kernels.Kernel(**base)


def test_pattern_resolves_to_newest_and_second_fetch_is_offline(fake_apt, private_cache):
    got = fetch_kernel(entry())
    assert (got.package, got.version, got.release) == \
        ("linux-image-9.1.0-2-cloud", "9.1.2-1", "9.1.0-2-cloud")
    assert got.vmlinuz.read_bytes() == b"new"
    assert "download linux-image-9.1.0-2-cloud" in fake_apt.calls
    meta = json.loads((private_cache / "kernels/9.1/meta.json").read_text())
    assert meta["release"] == "9.1.0-2-cloud"
    fake_apt.calls.clear()
    again = fetch_kernel(entry())
    assert again == got and fake_apt.calls == []


def test_split_layout_takes_the_release_from_the_modules_dir(fake_apt):
    got = fetch_kernel(entry(name="9.2", package="linux-binary-9.2.0", series="9.2",
                             vmlinuz="usr/lib/modules/*/vmlinuz"))
    assert got.release == "9.2.0+deb14" and got.vmlinuz.read_bytes() == b"split"


def test_package_without_the_vmlinuz_is_a_clear_error(fake_apt):
    with pytest.raises(FetchError, match=r"package linux-binary-9.2.0 has no file matching "
                                         r"'boot/vmlinuz-\*' \(vmlinuz-like files: "
                                         r"usr/lib/modules/9.2.0\+deb14/vmlinuz\)"):
        fetch_kernel(entry(name="9.2", package="linux-binary-9.2.0", series="9.2"))


def test_no_matching_package_or_wrong_series_is_a_clear_error(fake_apt):
    with pytest.raises(FetchError, match=r"no package matching 'linux-image-7\.\*' "
                                         r"in suite testing"):
        fetch_kernel(entry(package="linux-image-7.*"))
    with pytest.raises(FetchError, match="version 9.9-1"):
        fetch_kernel(entry(version="9.9-1"))
    with pytest.raises(FetchError, match="holds release 9.1.0-2-cloud, not series 9.3"):
        fetch_kernel(entry(series="9.3"))
