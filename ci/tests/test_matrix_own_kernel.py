"""Your own kernel in the matrix: kind "image" / "deb-file" entries, --kernel-image,
--modules, --kernel-deb and --kernel-name, and what a kernel without sock_diag modules gives.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ci.matrix import driver
from ci.vm import kernels
from ci.vm.kernels import FetchError, MatrixError, fetch_kernel, load_matrix
from ci.vm.local_kernels import image_release, local_kernels, vermagic_release

REPO = Path(__file__).resolve().parents[2]
SOCK_DIAG_VARIANT = "time_wait_rebind/tcp4_listener_reuseport"
CASES = ["bind_rules/tcp4_*", SOCK_DIAG_VARIANT]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "matrix.toml"
    path.write_text(text)
    return path


def cached_debian_kernel(series: str) -> tuple[Path, Path]:
    """(vmlinuz, modules dir) of a Debian kernel the matrix fetched before; skip without."""
    kdir = kernels.cache_dir() / "kernels" / series
    mods = sorted((kdir / "modules").glob("*/inet_diag.ko"))
    if not (kdir / "vmlinuz").is_file() or not mods:
        pytest.skip(f"no cached {series} kernel: run `reuseport-check matrix --kernels {series}` once")
    return kdir / "vmlinuz", mods[0].parent


def fake_deb(tmp_path: Path, package: str, files: dict[str, bytes]) -> Path:
    root = tmp_path / package
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN/control").write_text(
        f"Package: {package}\nVersion: 1.0-1\nArchitecture: amd64\nMaintainer: t <t@t>\n"
        "Description: test\n")
    out = tmp_path / f"{package}.deb"
    subprocess.run(["dpkg-deb", "-Zgzip", "--build", str(root), str(out)], check=True,
                   capture_output=True)
    return out


# ---------------------------------------------------------------------------------------
# ci/kernels.toml entries.


def test_image_and_deb_file_entries_load_with_paths_relative_to_the_matrix(tmp_path):
    path = write(tmp_path, '[[kernel]]\nname = "mine"\nkind = "image"\npath = "bzImage"\n'
                           'modules = "mods/6.12.0"\n\n'
                           '[[kernel]]\nname = "pkg"\nkind = "deb-file"\npath = "/x/l.deb"\n')
    m = load_matrix(path)
    assert m["mine"].path == str(tmp_path / "bzImage")
    assert m["mine"].modules == str(tmp_path / "mods/6.12.0")
    assert m["mine"].is_local and m["pkg"].is_local and not m["mine"].is_host
    assert m["pkg"].path == "/x/l.deb" and m["pkg"].modules == ""


@pytest.mark.parametrize("entry, message", [
    ('kind = "image"\npath = "b"\nsuite = "trixie"', r"unknown key\(s\) suite for kind 'image'"),
    ('kind = "deb-file"\npath = "b"\nmodules = "m"', r"unknown key\(s\) modules for kind 'deb-file'"),
    ('kind = "image"\nmodules = "m"', r"missing field\(s\) path"),
    ('kind = "deb-file"', r"missing field\(s\) path"),
    ('kind = "image"\npath = ""', "path must be a non-empty string"),
    ('kind = "tarball"\npath = "b"', "kind must be one of 'deb', 'host', 'image', 'deb-file'"),
])
def test_bad_local_entries_are_rejected(tmp_path, entry, message):
    path = write(tmp_path, f'[[kernel]]\nname = "mine"\n{entry}\n')
    with pytest.raises(MatrixError, match=message):
        load_matrix(path)


def test_a_missing_file_of_a_selected_kernel_is_a_usage_error_before_any_boot(tmp_path):
    path = write(tmp_path, '[[kernel]]\nname = "mine"\nkind = "image"\npath = "nope"\n'
                           '[[kernel]]\nname = "running"\nkind = "host"\n')
    m = load_matrix(path)  # loading does not look at files: only what is selected must exist
    assert driver.parse_kernels("running", m) == ["running"]
    with pytest.raises(MatrixError, match=f"^kernel mine: kernel image {tmp_path}/nope does "
                                          "not exist$"):
        driver.parse_kernels("all", m)


def test_project_matrix_documents_the_new_kinds():
    text = (REPO / "ci/kernels.toml").read_text()
    assert 'kind = "image"' in text and 'kind = "deb-file"' in text
    assert all(not k.is_local for k in load_matrix().values())  # docs only, no user entries


# ---------------------------------------------------------------------------------------
# The command line's kernels.


def test_options_pair_in_order_and_names_are_derived(tmp_path):
    a, b = tmp_path / "a" / "bzImage", tmp_path / "b" / "bzImage"
    for f in (a, b):
        f.parent.mkdir()
        f.write_bytes(b"x")
    deb = fake_deb(tmp_path, "linux-image-9.9.9-test", {"boot/vmlinuz-9.9.9-test": b"x"})
    ks = local_kernels([("image", str(a)), ("modules", str(tmp_path)), ("deb", str(deb)),
                        ("image", str(b)), ("name", "b")])
    assert [(k.name, k.kind, k.path, k.modules) for k in ks] == [
        ("image:bzImage", "image", str(a), str(tmp_path)),
        ("deb:linux-image-9.9.9-test_1.0-1", "deb-file", str(deb), ""),
        ("b", "image", str(b), "")]


@pytest.mark.parametrize("items, message", [
    ([("modules", "/")], "--modules / comes before any --kernel-image"),
    ([("name", "x")], "--kernel-name x comes before any"),
    ([("image", "{img}"), ("image", "{img}")], "kernel name 'image:bzImage' is used twice"),
    ([("image", "{img}"), ("name", "6.12")], "kernel name '6.12' is used twice"),
    ([("deb", "{img}")], "is not a Debian package"),
    ([("image", "{img}"), ("modules", "{tmp}/nope")], "modules tree {tmp}/nope does not exist"),
    ([("image", "{tmp}/nope")], "kernel image {tmp}/nope does not exist"),
    ([("image", "{tmp}")], "kernel image {tmp} is not a file"),
])
def test_bad_command_line_kernels_are_one_line_errors(tmp_path, items, message):
    img = tmp_path / "bzImage"
    img.write_bytes(b"not a kernel")
    fill = {"img": str(img), "tmp": str(tmp_path)}
    items = [(w, v.format(**fill)) for w, v in items]
    with pytest.raises(MatrixError) as e:
        local_kernels(items, taken={"6.12"})
    assert message.format(**fill) in str(e.value) and "\n" not in str(e.value)


# ---------------------------------------------------------------------------------------
# What a local kernel brings: its release, its modules, and notes on what is missing.


def test_a_debian_image_states_its_release_and_its_modules_agree():
    vmlinuz, mods = cached_debian_kernel("6.12")
    assert image_release(vmlinuz) == mods.name
    assert vermagic_release((mods / "inet_diag.ko").read_bytes()) == mods.name
    assert image_release(REPO / "ci/kernels.toml") is None


def test_an_image_with_its_modules_tree_brings_the_diag_modules(tmp_path, monkeypatch):
    vmlinuz, mods = cached_debian_kernel("6.12")
    monkeypatch.setenv("RP_CACHE_DIR", str(tmp_path / "cache"))
    tree = tmp_path / mods.name / "kernel/net/ipv4"
    tree.mkdir(parents=True)
    # As a distribution installs them: compressed, here with xz.
    for m in ("inet_diag", "tcp_diag"):
        subprocess.run(["xz", "-k", "-c", str(mods / f"{m}.ko")], check=True,
                       stdout=open(tree / f"{m}.ko.xz", "wb"))
    [k] = local_kernels([("image", str(vmlinuz)), ("modules", str(tmp_path / mods.name))])
    f = fetch_kernel(k)
    assert f.release == mods.name and f.vmlinuz == vmlinuz and f.package is None
    assert [p.name for p in f.modules] == ["inet_diag.ko", "tcp_diag.ko"]
    assert f.modules[0].read_bytes() == (mods / "inet_diag.ko").read_bytes()
    assert driver.fetch_modules(f) == list(f.modules)
    assert len(f.notes) == 1 and "has no udp_diag module" in f.notes[0]

    [bare] = local_kernels([("image", str(vmlinuz))])
    f = fetch_kernel(bare)
    assert f.modules == () and "no modules tree given" in f.notes[0]
    assert f.release == mods.name and f.release_from == "the image's boot header"


def test_modules_of_another_release_are_refused(tmp_path, monkeypatch):
    vmlinuz, _ = cached_debian_kernel("6.12")
    _, other = cached_debian_kernel("5.10")
    monkeypatch.setenv("RP_CACHE_DIR", str(tmp_path / "cache"))
    [k] = local_kernels([("image", str(vmlinuz)), ("modules", str(tmp_path))])
    (tmp_path / "kernel/net/ipv4").mkdir(parents=True)
    shutil.copy(other / "inet_diag.ko", tmp_path / "kernel/net/ipv4/inet_diag.ko")
    with pytest.raises(FetchError, match=f"modules in {tmp_path} are for release {other.name}, "
                                         "the image .* is 6.12"):
        fetch_kernel(k)


def test_a_split_layout_deb_boots_without_modules_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("RP_CACHE_DIR", str(tmp_path / "cache"))
    rel = "7.2.1+deb14-cloud-amd64"
    binary = fake_deb(tmp_path, f"linux-binary-{rel}", {f"usr/lib/modules/{rel}/vmlinuz": b"K"})
    [k] = local_kernels([("deb", str(binary))])
    f = fetch_kernel(k)
    assert (f.release, f.package, f.version) == (rel, f"linux-binary-{rel}", "1.0-1")
    assert f.vmlinuz.read_bytes() == b"K" and f.modules == ()
    assert f"the split layout keeps the modules in linux-modules-{rel}" in f.notes[0]

    modules = fake_deb(tmp_path, f"linux-modules-{rel}",
                       {f"usr/lib/modules/{rel}/kernel/net/ipv4/inet_diag.ko": b"M"})
    [k] = local_kernels([("deb", str(modules))])
    with pytest.raises(FetchError, match=r"holds no kernel image .*it holds the modules of "
                                         f"{re.escape(rel)}.*give the linux-binary-\\* package"):
        fetch_kernel(k)


# ---------------------------------------------------------------------------------------
# Bad input through the driver and the command.


def pytest_driver(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "pytest", str(REPO / "ci/matrix"), "-q",
                           "-p", "no:cacheprovider", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_driver_rejects_a_missing_image_as_usage_error(tmp_path):
    r = pytest_driver("--kernel-image", str(tmp_path / "nope"), "--results-dir", str(tmp_path),
                      "--no-build", env={"RP_STATIC_BIN": sys.executable})
    assert r.returncode == 4, r.stdout + r.stderr
    assert f"kernel image:nope: kernel image {tmp_path}/nope does not exist" in r.stderr
    assert "Traceback" not in r.stdout + r.stderr


@pytest.mark.parametrize("args, message", [
    (["--kernel-image", "{tmp}/nope"], "kernel image {tmp}/nope does not exist"),
    (["--kernel-deb", "{tmp}/nope.deb"], "kernel package {tmp}/nope.deb does not exist"),
    (["--modules", "{tmp}", "--kernel-image", "{tmp}/x"], "--modules {tmp} comes before any"),
])
def test_matrix_command_rejects_bad_kernel_files_with_exit_2(tmp_path, cli, args, message):
    (tmp_path / "x").write_bytes(b"x")
    r = subprocess.run([cli, "matrix", *[a.format(tmp=tmp_path) for a in args],
                        "--results-dir", str(tmp_path / "results")],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "RP_SOURCE_DIR": str(REPO)})
    assert r.returncode == 2, r.stdout + r.stderr
    assert message.format(tmp=tmp_path) in r.stderr
    assert "Traceback" not in r.stdout + r.stderr


# ---------------------------------------------------------------------------------------
# Real guests: one matrix run boots the same Debian image with and without its modules,
# a Debian .deb, and a file that is not a kernel.


@pytest.fixture(scope="session")
def debian_deb() -> Path:
    """A real linux-image .deb (5.10 cloud), fetched once through the matrix's private apt."""
    deb_dir = kernels.cache_dir() / "debs"
    found = sorted(deb_dir.glob("linux-image-5.10.*-cloud-amd64-unsigned_*.deb"))
    if found:
        return found[-1]
    k = load_matrix()["5.10"]
    try:
        fetched = fetch_kernel(k)
        main, security = kernels.archive_uris()
        apt = kernels.PrivateApt(kernels.cache_dir() / "apt" / k.suite, k.suite)
        apt.update(security if k.security else main)
        deb_dir.mkdir(parents=True, exist_ok=True)
        return apt.download(fetched.package, fetched.version, deb_dir)
    except kernels.VmError as e:
        pytest.skip(f"no Debian .deb: {e}")


@pytest.mark.vm
@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="qemu missing")
def test_own_kernels_run_and_a_kernel_without_sock_diag_skips_naming_the_option(
        tmp_path, cli, static_binary, debian_deb, processes_mentioning):
    vmlinuz, mods = cached_debian_kernel("6.12")
    image = tmp_path / "vmlinuz-mine"  # a plain file, as a kernel developer has one
    shutil.copy(vmlinuz, image)
    tree = tmp_path / "lib/modules" / mods.name / "kernel/net/ipv4"
    tree.mkdir(parents=True)
    for ko in mods.glob("*.ko"):
        shutil.copy(ko, tree / ko.name)
    junk = tmp_path / "not-a-kernel"
    junk.write_bytes(b"\0" * 4096)
    results, out_json = tmp_path / "results", tmp_path / "matrix.json"
    argv = [cli, "matrix", "--kernel-image", str(image), "--modules", str(tree.parents[2]),
            "--kernel-name", "with-modules", "--kernel-image", str(image),
            "--kernel-deb", str(debian_deb), "--kernel-image", str(junk),
            "--results-dir", str(results), "--json", str(out_json), "-j", "2"]
    for c in CASES:
        argv += ["--case", c]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=1500,
                       env={**os.environ, "RP_SOURCE_DIR": str(REPO),
                            "RP_STATIC_BIN": str(static_binary)})
    out = r.stdout + r.stderr
    assert r.returncode == 1, out  # the junk file's ERRORs, nothing else
    assert "Traceback" not in out
    assert processes_mentioning(str(tmp_path)) == [], "qemu left running"

    doc = json.loads(out_json.read_text())
    package, version = subprocess.run(["dpkg-deb", "-f", str(debian_deb), "Package", "Version"],
                                      capture_output=True, text=True).stdout.split("\n")[:2]
    deb_name = f"deb:{package.split(': ')[1]}_{version.split(': ')[1]}"
    assert [k["name"] for k in doc["kernels"]] == \
        ["with-modules", "image:vmlinuz-mine", deb_name, "image:not-a-kernel"]
    # Two kernels here share a release, which is all a record says: the events name them.
    events = [json.loads(x) for x in (results / "runs/matrix-events.jsonl").read_text().splitlines()]
    verdicts = {(e["kernel"], f"{e['record']['case']}/{e['record']['variant']}"):
                (e["record"]["verdict"], e["record"].get("reason", ""))
                for e in events if e["ev"] == "record"}
    listed = subprocess.run([cli, "list", "--case", CASES[0]], capture_output=True, text=True)
    bind_variants = int(re.search(r"\((\d+) variants\)", listed.stdout)[1])
    n = len([v for v in verdicts if v[0] == "with-modules"])
    assert n == bind_variants + 1, verdicts  # bind_rules/tcp4_* and the sock_diag variant
    for name in ("with-modules", "image:vmlinuz-mine", deb_name):
        got = {v: verdicts[(name, v)] for (k, v) in verdicts if k == name}
        assert all(verdict == "PASS" for c, (verdict, _) in got.items()
                   if c.startswith("bind_rules/")), (name, got)
        assert "ERROR" not in {verdict for verdict, _ in got.values()}, (name, got)
    assert verdicts[("with-modules", SOCK_DIAG_VARIANT)][0] == "PASS"
    assert verdicts[(deb_name, SOCK_DIAG_VARIANT)][0] == "PASS"
    verdict, reason = verdicts[("image:vmlinuz-mine", SOCK_DIAG_VARIANT)]
    assert verdict == "SKIP" and "sock_diag absent" in reason and "CONFIG_INET_DIAG" in reason

    junk_rows = {v: x for (k, v), x in verdicts.items() if k == "image:not-a-kernel"}
    assert junk_rows and {v for v, _ in junk_rows.values()} == {"ERROR"}
    assert all("phase boot" in why for _, why in junk_rows.values()), junk_rows
    # Both images are the same release: one results file holds the last of them.
    assert (results / mods.name / "results.json").is_file()
    assert list(results.glob("5.10.*/results.json"))
