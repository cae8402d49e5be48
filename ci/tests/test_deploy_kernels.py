"""`reuseport-check deploy --kernels`: the user's server and deploy procedure in the guests.

The naive swap of docs/examples/serve loses connections on every kernel, the migrating swap
on none from 5.14; nginx (the host's binary and its libraries, put into the guest with
--guest-path) reloads without a loss. One row, one JUnit testcase and one deploy document
per kernel; the exit status is the worst kernel's.
"""

import copy
import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ci.matrix import deploy_kernels
from ci.matrix.driver import REPO
from results.schemas import errors

CLI = REPO / "build" / "bin" / "reuseport-check"
SERVE = REPO / "docs" / "examples" / "serve"
NGINX = REPO / "docs" / "examples" / "nginx"
CADDY = REPO / "docs" / "examples" / "caddy"
# A slow server (10 ms per accept): its queues hold children whenever generation 1 closes,
# however slow the guest (test_deploy_guest.py).
SLOW = "--accept-delay-ms 10"


def deploy(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict, ET.Element]:
    out, junit = tmp_path / "d.json", tmp_path / "d.xml"
    r = subprocess.run([str(CLI), "deploy", *args, "--warmup", "1", "--settle", "1", "--json", str(out),
                        "--junit", str(junit)], capture_output=True, text=True, timeout=900, cwd=tmp_path)
    doc = json.loads(out.read_text())
    assert errors(doc, "deploy-kernels") == [], errors(doc, "deploy-kernels")[:3]
    return r, doc, ET.parse(junit).getroot()


@pytest.mark.vm
@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="qemu missing")
def test_a_losing_and_a_lossless_deploy_on_two_guests_and_the_host(static_binary, tmp_path):
    kernels = "running,5.10,7.2"
    r, doc, junit = deploy(tmp_path, "--kernels", kernels, "-j", "2", "--port", "8080",
                           "--start", f"{SERVE}/start.sh {SLOW}", "--deploy", f"{SERVE}/swap.sh {SLOW}")
    print(r.stdout)
    assert r.returncode == 1, r.stdout + r.stderr  # lost more than --max-lost 0
    assert doc["complete"] and [k["kernel"] for k in doc["kernels"]] == kernels.split(",")
    for k in doc["kernels"]:
        t = k["deploy"]["totals"]
        assert k["verdict"] == "FAIL" and t["lost"] > 0, k["error"] or k["output"]
        assert k["deploy"]["kernel"] == k["release"], k
        assert f"{k['kernel']} " in r.stdout and k["release"] in r.stdout
    assert [c.get("name") for c in junit.iter("testcase")] == kernels.split(",")
    assert len(list(junit.iter("failure"))) == 3

    # The same procedure after tcp_migrate_req=1 (5.14+): nothing lost on 7.2 and here.
    r, doc, junit = deploy(tmp_path, "--kernels", "running,7.2", "--port", "8080", "--guest-path", str(SERVE),
                           "--start", f"{SERVE}/start.sh {SLOW}", "--deploy", f"{SERVE}/swap-migrate.sh {SLOW}")
    print(r.stdout)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [(k["kernel"], k["verdict"], k["deploy"]["totals"]["lost"]) for k in doc["kernels"]] == \
        [("running", "PASS", 0), ("7.2", "PASS", 0)]
    assert not list(junit.iter("failure")) and not list(junit.iter("error"))


SERVE_UDP = REPO / "docs" / "examples" / "serve-udp"


@pytest.mark.vm
@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="qemu missing")
def test_udp_queue_freed_at_close_is_attributed_where_the_kernel_shows_it(static_binary, tmp_path):
    """deploy --udp, a slow serve --udp swapped naively: on both kernels the datagrams freed
    in the closed members' queues are attributed, nothing unattributed, each kernel by its
    own means: on 6.12 tp_btf/sk_data_ready remembers the skbs queued on the port (6.7+);
    5.10 has neither that tracepoint nor SO_NETNS_COOKIE, so the probe traces the sockets'
    destructor (fentry/fexit) and filters the namespace by its inode. The drain swap frees
    nothing at close on either kernel."""
    udp = ["--udp", "--flows", "8", "--reply-timeout", "0.5", "--load", "rate:3000", "--port", "8053"]
    slow = "--read-delay-us 200"
    r, doc, _ = deploy(tmp_path, "--kernels", "5.10,6.12", "-j", "2", *udp,
                       "--start", f"{SERVE_UDP}/start.sh {slow}", "--deploy", f"{SERVE_UDP}/swap.sh")
    print(r.stdout)
    assert r.returncode == 1, r.stdout + r.stderr
    by = {k["kernel"]: k["deploy"] for k in doc["kernels"]}
    for name, d in by.items():
        a = d["attribution"]
        assert sum(v or 0 for v in a["causes"].values()) + a["unattributed"] == d["datagrams"]["lost"], a
        assert a["causes"]["queue_purged_at_close"] > 0, (name, a)
        assert a["unattributed"] == 0, (name, a)
        assert "udp_queue_purged" not in d["kernel_not_observable"], (name, d["kernel_not_observable"])
    assert "sk_data_ready" in by["6.12"]["kernel_sources"]["udp_queue_purged"]
    assert "fentry/fexit udp_destruct" in by["5.10"]["kernel_sources"]["udp_queue_purged"]

    r, doc, _ = deploy(tmp_path, "--kernels", "5.10,6.12", "-j", "2", *udp,
                       "--start", f"{SERVE_UDP}/start.sh --drain {slow}", "--deploy", f"{SERVE_UDP}/swap.sh --drain")
    print(r.stdout)
    for k in doc["kernels"]:
        a = k["deploy"]["attribution"]
        assert a["unattributed"] == 0 and a["causes"]["queue_purged_at_close"] in (0, None), (k["kernel"], a)


def rows(doc: dict) -> list[tuple[str, str, int]]:
    return [(k["kernel"], k["verdict"], k["deploy"]["totals"]["lost"]) for k in doc["kernels"]]


def orphans_named(doc: dict) -> None:
    """Every kernel's losses carry the kernel's causes, children orphaned in a closed queue
    among them, and the causes and the unattributed rest add up to the losses. (Unattributed
    is 0 in the runs measured here, but 1 of 39 was once unattributed in a serve swap on 5.10:
    issue 14's attribution is not finished, so this test does not hold it to 0.)"""
    for k in doc["kernels"]:
        a = k["deploy"]["attribution"]
        assert a["causes"]["orphaned_in_accept_queue"] > 0, (k["kernel"], a)
        assert sum(a["causes"].values()) + a["unattributed"] == k["deploy"]["totals"]["lost"], (k["kernel"], a)


@pytest.mark.vm
@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="qemu missing")
@pytest.mark.skipif(not Path("/usr/sbin/nginx").exists() or not Path("/usr/bin/caddy").exists(),
                    reason="nginx (nginx-light) or caddy is not installed")
def test_real_servers_lose_with_a_losing_procedure_and_not_with_a_lossless_one(static_binary, tmp_path):
    """nginx and Caddy from Debian's archive, their binaries, libraries and configs put into
    the guests: a swap whose old generation is busy loses connections on 5.10 and 6.12 (exit
    1, the kernel's causes named); nginx's reload and Caddy's swap with tcp_migrate_req=1
    (5.14+, so 6.12) lose none (exit 0)."""
    nginx = ["--guest-path", str(NGINX), "--guest-path", "/usr/sbin/nginx", "--guest-path", "/usr/bin/pgrep",
             "--http", "/", "--start", f"{NGINX}/start.sh"]
    caddy = ["--guest-path", str(CADDY), "--guest-path", "/usr/bin/caddy", "--http", "/",
             "--start", f"{CADDY}/start.sh"]
    runs = [(nginx, f"{NGINX}/swap.sh busy", "5.10,6.12", 1), (nginx, f"{NGINX}/reload.sh", "5.10,6.12", 0),
            (caddy, f"{CADDY}/swap.sh kill", "5.10,6.12", 1), (caddy, f"{CADDY}/swap.sh migrate", "6.12", 0)]
    for server, procedure, kernels, want in runs:
        r, doc, junit = deploy(tmp_path, "--kernels", kernels, "-j", "2", "--port", "8080", *server,
                               "--deploy", procedure)
        print(procedure, "\n", r.stdout)
        assert r.returncode == want, (procedure, r.stdout, r.stderr)
        assert [k["kernel"] for k in doc["kernels"]] == kernels.split(",")
        assert all(k["environment"]["where"] == "guest" and k["deploy"]["totals"]["served"] > 0
                   for k in doc["kernels"]), procedure
        if want:
            assert all(v == "FAIL" and lost > 0 for _, v, lost in rows(doc)), (procedure, rows(doc))
            orphans_named(doc)
            assert len(list(junit.iter("failure"))) == len(doc["kernels"])
        else:
            assert all(v == "PASS" and lost == 0 for _, v, lost in rows(doc)), (procedure, rows(doc))


def test_a_guest_without_the_server_is_an_error_not_a_pass(tmp_path, monkeypatch):
    """A guest that ran no deploy (exit 2, no report) is ERROR, and the run's exit 1."""
    monkeypatch.setattr(deploy_kernels.driver, "ensure_static_binary", lambda **kw: Path("/bin/true"))

    class Boot:
        fetched, error = None, "qemu: no such kernel"
        result = None
    monkeypatch.setattr(deploy_kernels.driver, "boot_guest", lambda *a, **kw: Boot())
    out = tmp_path / "d.json"
    rc = deploy_kernels.main(["--kernels", "5.10", "--json", str(out), "--", "--port", "1",
                              "--start", "true", "--deploy", "true"])
    doc = json.loads(out.read_text())
    assert rc == 1 and doc["kernels"][0]["verdict"] == "ERROR" and "no such kernel" in doc["kernels"][0]["error"]
    assert errors(doc, "deploy-kernels") == []


def test_the_schema_holds_each_kernel_to_the_deploy_schema(tmp_path):
    doc = {"schema": deploy_kernels.SCHEMA, "complete": True, "deploy_args": [], "kernels": [
        {"kernel": "running", "release": "x", "verdict": "PASS", "exit_code": 0, "error": "", "output": "",
         "environment": {"where": "host"}, "deploy": {"schema": "not a deploy document"}}]}
    assert errors(doc, "deploy-kernels") != []
    ok = copy.deepcopy(doc)
    ok["kernels"][0]["deploy"] = None
    assert errors(ok, "deploy-kernels") == []


def test_a_udp_deploy_row_counts_datagrams_and_names_broken_flows():
    """deploy --udp documents have datagrams, not connections: the row's attempts and lost
    are the datagrams', the causes end with the broken flows (n/a for DNS, never 0)."""
    from results.tests.test_schemas import DEPLOY_UDP
    entry = {"kernel": "6.12", "release": "6.12.0", "verdict": "FAIL", "deploy": DEPLOY_UDP}
    rows = deploy_kernels.table([entry]).splitlines()
    assert rows[1].split()[:4] == ["6.12", "6.12.0", "100", "4"], rows
    assert deploy_kernels.causes(DEPLOY_UDP) == "no_socket 3, queue_purged_at_close 1, broken flows 2"
    dns = copy.deepcopy(DEPLOY_UDP)
    dns["flows"]["broken"] = None
    dns["attribution"]["unattributed"] = 2
    assert deploy_kernels.causes(dns).endswith("unattributed 2, broken flows n/a")


def test_closure_takes_paths_programs_guest_paths_and_the_users(tmp_path):
    conf = tmp_path / "conf"
    (conf / "sub").mkdir(parents=True)
    (conf / "sub" / "a.conf").write_text("x")
    files = dict((g, h) for h, g in deploy_kernels.closure([f"{SERVE}/start.sh --x 1", "nginx -s reload"],
                                                            [str(conf)]))
    assert f"{SERVE}/start.sh" in files and str(conf / "sub" / "a.conf") in files
    assert "/etc/passwd" in files
    if shutil.which("nginx"):
        assert shutil.which("nginx") in files
    with pytest.raises(deploy_kernels.UsageError, match="does not exist"):
        deploy_kernels.closure([], ["/no/such/path"])
    with pytest.raises(deploy_kernels.UsageError, match="/proc"):
        deploy_kernels.closure([], ["/proc/self/status"])


def test_files_under_the_guests_tmpfs_mounts_are_copied_into_place():
    # The CI clone lives under /tmp, which the guest mounts a tmpfs over at boot: a script
    # put there by the initramfs was "not found".
    files, back = deploy_kernels.placed([(Path("/tmp/x/start.sh"), "/tmp/x/start.sh"),
                                         (Path("/usr/sbin/nginx"), "/usr/sbin/nginx")])
    assert files == [(Path("/tmp/x/start.sh"), "/rp/shadow/tmp/x/start.sh"), (Path("/usr/sbin/nginx"), "/usr/sbin/nginx")]
    assert back == ["/tmp/x/start.sh"]
    script = deploy_kernels.guest_script(["--port", "1"], [], back)
    assert "cp -p /rp/shadow/tmp/x/start.sh /tmp/x/start.sh" in script
    assert script.index("/rp/shadow") < script.index(" deploy ")


@pytest.mark.parametrize("args, says", [
    (["--guest-path", "/etc/hostname"], "need --kernels, --kernel-image or --kernel-deb"),
    (["--modules", "/tmp"], "need --kernels, --kernel-image or --kernel-deb"),
    (["--kernel-image", "/no/such/vmlinuz"], "/no/such/vmlinuz"),
    (["--kernels", "running", "--host-net"], "--host-net and --kernels are exclusive"),
    (["--kernels", "9.99"], "unknown kernel"),
])
def test_bad_usage_is_one_line_and_exit_2(tmp_path, args, says):
    r = subprocess.run([str(CLI), "deploy", "--port", "8080", "--start", "true", "--deploy", "true", *args],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert says in r.stderr, r.stderr


@pytest.mark.vm
@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="qemu missing")
def test_your_own_kernel_image_with_its_modules_tree(static_binary, tmp_path):
    """--kernel-image (a Debian vmlinuz copied to a plain file) with --modules (a modules
    tree holding the sock_diag modules) and --kernel-name, as `matrix` takes them."""
    from ci.vm import kernels
    kdir = kernels.cache_dir() / "kernels" / "6.12"
    mods = sorted((kdir / "modules").glob("*/inet_diag.ko"))
    if not (kdir / "vmlinuz").is_file() or not mods:
        pytest.skip("no cached 6.12 kernel: run `reuseport-check matrix --kernels 6.12` once")
    image = tmp_path / "my-vmlinuz"
    shutil.copy(kdir / "vmlinuz", image)
    tree = tmp_path / "modules" / "kernel" / "net" / "ipv4"
    tree.mkdir(parents=True)
    for ko in mods[0].parent.glob("*.ko"):
        shutil.copy(ko, tree / ko.name)
    r, doc, junit = deploy(tmp_path, "--kernel-image", str(image), "--modules", str(tmp_path / "modules"),
                           "--kernel-name", "mine", "--port", "8080",
                           "--start", f"{SERVE}/start.sh {SLOW}", "--deploy", f"{SERVE}/swap.sh {SLOW}")
    print(r.stdout)
    assert r.returncode == 1, r.stdout + r.stderr
    (k,) = doc["kernels"]
    assert (k["kernel"], k["verdict"]) == ("mine", "FAIL") and k["release"] == mods[0].parent.name, k
    assert k["deploy"]["totals"]["lost"] > 0
    assert [c.get("name") for c in junit.iter("testcase")] == ["mine"]
