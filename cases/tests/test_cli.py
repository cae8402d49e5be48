"""The reuseport-check command line: usage errors, privileges, the JSON it writes."""
import json
import os
import pathlib
import re
import shutil
import subprocess
import time

import pytest

from results.schemas import errors, schema

VERDICTS = {"PASS", "FAIL", "XFAIL", "XPASS", "SKIP", "ERROR"}
ONE_VARIANT = "close_listener_with_queued_children/tcp4_close_k2_b8_migrate0"


def run(*args, user=None, timeout=120):
    cmd = list(args)
    if user:
        cmd = ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups", "--inh-caps=-all"] + cmd
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def test_help_has_examples(cli):
    r = run(cli, "--help")
    assert r.returncode == 0
    assert "Examples:" in r.stdout and "reuseport-check run --case" in r.stdout


@pytest.mark.parametrize("args", [[], ["frobnicate"], ["run", "--repeat", "0"], ["run", "--repeat=0"],
                                  ["run", "--repeat", "x"], ["run", "--repeat", "100001"], ["run", "--bogus"],
                                  ["run", "--json"], ["run", "--resume"], ["run", "stray"], ["list", "--repeat", "2"],
                                  ["help", "frobnicate"]])
def test_bad_usage_exits_2_with_a_message(cli, args):
    r = run(cli, *args)
    assert r.returncode == 2, r
    # "reuseport-check: ..." or, from a subcommand's parser, "reuseport-check run: ..."
    assert re.match(r"reuseport-check( \w+)?: \S", r.stderr), r.stderr
    assert "Traceback" not in r.stderr and "terminate called" not in r.stderr
    assert r.stdout == ""


@pytest.mark.parametrize("args,named", [(["run", "--repeat", "abc"], ["--repeat", "abc"]),
                                        (["run", "--repeat=abc"], ["--repeat", "abc"]),
                                        (["run", "--repeat", "0"], ["--repeat", "0"]),
                                        (["run", "--frobnicate"], ["--frobnicate"]),
                                        (["run", "-j", "0"], ["--jobs", "0"]),
                                        (["run", "-j", "abc"], ["--jobs", "abc"]),
                                        (["run", "--jobs=1025"], ["--jobs", "1025"]),
                                        (["frobnicate"], ["frobnicate"])])
def test_usage_errors_name_the_option_and_the_value(cli, args, named):
    r = run(cli, *args)
    assert r.returncode == 2
    first = r.stderr.splitlines()[0]
    for word in named:
        assert word in first, first


def test_both_option_forms_work(cli):
    spaced = run(cli, "list", "--case", "close_*", "--case", "bind_rules")
    joined = run(cli, "list", "--case=close_*", "--case=bind_rules")
    assert spaced.returncode == joined.returncode == 0
    assert spaced.stdout == joined.stdout
    assert "bind_rules (" in joined.stdout and "close_listener_with_queued_children (" in joined.stdout
    assert "hash_spread" not in joined.stdout


def test_help_of_run_keeps_its_content(cli):
    for args in (["run", "--help"], ["help", "run"]):
        r = run(cli, *args)
        assert r.returncode == 0, r
        for part in ("network namespace of its own", "--case", "--repeat", "--json", "--resume", "--verbose",
                     "Exit status: 0 when every row is PASS", "RP_EXPECTATIONS", "Examples:",
                     "reuseport-check run --case 'close_*' --repeat 20 --json results.json"):
            assert part in r.stdout, part


def test_top_level_help_names_every_command(cli):
    r = run(cli, "help")
    assert r.returncode == 0
    assert r.stdout == run(cli, "--help").stdout
    for c in ("run", "list", "watch", "group", "matrix", "deploy", "serve", "report"):
        assert re.search(rf"^  {c} +\S", r.stdout, re.M), c
        assert f"reuseport-check {c} " in r.stdout


def test_unwritable_json_path_exits_2_before_running_anything(cli, require_root):
    t0 = time.monotonic()
    r = run(cli, "run", "--case", "close_listener_with_queued_children", "--json", "/nonexistent/x.json")
    took = time.monotonic() - t0
    assert r.returncode == 2, r
    assert len(r.stderr.splitlines()) == 1 and "/nonexistent/x.json" in r.stderr, r.stderr
    assert "[1/" not in r.stdout and "summary" not in r.stdout
    assert took < 1.0, took  # the selection takes ~40 s: nothing of it ran


def test_unknown_case_glob_lists_the_known_cases(cli):
    r = run(cli, "run", "--case", "no_such_case*")
    assert r.returncode == 2
    assert "no case matches 'no_such_case*'" in r.stderr
    assert "close_listener_with_queued_children" in r.stderr


def test_list_names_cases_and_variants(cli):
    r = run(cli, "list")
    assert r.returncode == 0
    assert "close_listener_with_queued_children (16 variants)" in r.stdout
    assert "tcp6_sigkill_k4_b128_migrate1" in r.stdout


def test_unprivileged_run_says_root_is_needed(cli, require_root):
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) missing")
    r = run(cli, "run", "--case", ONE_VARIANT, user="nobody")
    assert r.returncode == 2, r
    assert "needs root, or CAP_NET_ADMIN and CAP_SYS_ADMIN" in r.stderr


def check_record(rec):
    required = set(schema("run-record")["required"])
    assert required <= set(rec), required - set(rec)
    assert errors(rec, "run-record") == []
    assert rec["verdict"] in VERDICTS
    assert isinstance(rec["observed"], dict) and isinstance(rec["expected"], dict)
    assert isinstance(rec["repeat"], int) and rec["repeat"] >= 0


def test_run_writes_records_that_follow_the_schema(cli, require_root, tmp_path):
    out = tmp_path / "r.json"
    r = run(cli, "run", "--case", ONE_VARIANT, "--repeat", "2", "--json", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(out.read_text())
    assert set(schema("run")["required"]) <= set(doc)
    assert doc["schema"] == schema("run")["properties"]["schema"]["const"]
    assert errors(doc, "run") == []
    assert [x["repeat"] for x in doc["records"]] == [0, 1]
    for rec in doc["records"]:
        check_record(rec)
        assert rec["verdict"] == "PASS", rec
        obs = rec["observed"]
        assert obs["attempts"] == sum(obs[k] for k in ("served", "reset_before_connect", "reset_after_connect",
                                                        "refused", "connect_timeout", "response_timeout",
                                                        "closed_without_response", "other_error"))
        assert obs["client_resets"] == obs["queued_at_close"] == 9
    assert "summary: 2 passed, 0 failed" in r.stdout


def test_run_json_follows_the_schema_record_by_record(cli, require_root, tmp_path):
    """The whole document against run.schema.json, and each record on its own against
    run-record.schema.json, as a line of run's JSON Lines stream will be."""
    out = tmp_path / "r.json"
    r = run(cli, "run", "--case", "unix_reuseport_rejected", "--json", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(out.read_text())
    assert errors(doc, "run") == []
    assert doc["records"] and {x["case"] for x in doc["records"]} == {"unix_reuseport_rejected"}
    for rec in doc["records"]:
        line = json.dumps(rec, separators=(",", ":"))
        assert "\n" not in line
        assert errors(json.loads(line), "run-record") == []


def test_a_wrong_expectation_fails_the_run(cli, require_root, tmp_path):
    """The verdict comes from the data: expecting zero resets without migration must FAIL."""
    exp = json.loads((pathlib.Path(__file__).resolve().parents[1] / "expectations.json").read_text())
    for e in exp["cases"]["close_listener_with_queued_children"]:
        if e["variants"] == "*_migrate0":
            e["expect"]["client_resets"] = {"max": "$kernel_other_resets_sent - $kernel_listener_fin_resets"}
    f = tmp_path / "exp.json"
    f.write_text(json.dumps(exp))
    r = subprocess.run([cli, "run", "--case", ONE_VARIANT], capture_output=True, text=True, timeout=120,
                       env={"RP_EXPECTATIONS": str(f), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 1, r.stdout
    assert "FAIL" in r.stdout and "client_resets: expected <= 0 ($kernel_other_resets_sent - $kernel_listener_fin_resets), observed 9" in r.stdout


def test_xfail_entry_gives_xfail_and_a_passing_run(cli, require_root, tmp_path):
    """XFAIL only for the outcome the entry says the kernel has instead; another one is FAIL."""
    exp = json.loads((pathlib.Path(__file__).resolve().parents[1] / "expectations.json").read_text())
    # The entry that applies to the running kernel (from 5.12; an earlier one is before it).
    e = next(x for x in exp["cases"]["close_listener_with_queued_children"]
             if x["variants"] == "*_migrate0" and x.get("kernel") != "<5.12")
    real = e["expect"]["client_resets"]
    e["expect"]["client_resets"] = {"max": "$kernel_other_resets_sent - $kernel_listener_fin_resets"}
    e["xfail"] = {"reason": "pretend this kernel differs", "expect": {"client_resets": real},
                  "evidence": "this test"}
    f = tmp_path / "exp.json"
    f.write_text(json.dumps(exp))
    r = subprocess.run([cli, "run", "--case", ONE_VARIANT], capture_output=True, text=True, timeout=120,
                       env={"RP_EXPECTATIONS": str(f), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stdout
    assert "XFAIL" in r.stdout
    e["xfail"]["expect"] = {"client_resets": {"max": 1}}
    f.write_text(json.dumps(exp))
    r = subprocess.run([cli, "run", "--case", ONE_VARIANT], capture_output=True, text=True, timeout=120,
                       env={"RP_EXPECTATIONS": str(f), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 1, r.stdout
    assert "nor the known difference" in r.stdout


def test_a_probe_that_did_not_load_is_an_error_never_a_pass(cli, require_root):
    """The close case's kernel counts are required: without them the verdict is ERROR, with the reason."""
    r = subprocess.run([cli, "run", "--case", ONE_VARIANT], capture_output=True, text=True, timeout=120,
                       env={"RP_TEST_PROBE_FAIL": "1", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 1, r.stdout
    assert "ERROR" in r.stdout and "PASS " not in r.stdout, r.stdout
    assert "required counts not read: kernel_" in r.stdout, r.stdout


def test_malformed_expectations_are_rejected_with_the_place(cli, require_root, tmp_path):
    exp = json.loads((pathlib.Path(__file__).resolve().parents[1] / "expectations.json").read_text())
    exp["cases"]["close_listener_with_queued_children"][0]["kernal"] = ">=5.14"
    f = tmp_path / "exp.json"
    f.write_text(json.dumps(exp))
    r = subprocess.run([cli, "run", "--case", ONE_VARIANT], capture_output=True, text=True, timeout=60,
                       env={"RP_EXPECTATIONS": str(f), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 2
    assert "close_listener_with_queued_children[0]: unknown key 'kernal'" in r.stderr


def netns_holders():
    """{inode of a network namespace: pids holding it} over every task of every process
    (setns moves one thread), every open fd (a namespace file kept open), and the nsfs
    mounts of this mount namespace (pid 0): an unnamed namespace, which `ip netns list`
    never shows, lives only while one of these holds it."""
    held = {}

    def add(link, pid):
        try:
            target = os.readlink(link)
        except OSError:
            return
        m = re.fullmatch(r"net:\[(\d+)\]", target)
        if m:
            held.setdefault(int(m.group(1)), set()).add(pid)

    for proc in pathlib.Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        pid = int(proc.name)
        try:
            tasks = list((proc / "task").iterdir())
            fds = list((proc / "fd").iterdir())
        except OSError:
            continue  # gone meanwhile
        for task in tasks:
            add(task / "ns" / "net", pid)
        for fd in fds:
            add(fd, pid)
    for line in pathlib.Path("/proc/self/mountinfo").read_text().splitlines():
        m = re.search(r" - nsfs \S+ ", line)
        root = line.split()[3]
        mm = re.fullmatch(r"net:\[(\d+)\]", root)
        if m and mm:
            held.setdefault(int(mm.group(1)), set()).add(0)
    return held


def processes_of(exe):
    """Pids whose executable is `exe`: the run forks its cases and never execs, so every
    process of a run is one of these."""
    exe = os.path.realpath(exe)
    pids = set()
    for proc in pathlib.Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if os.readlink(proc / "exe").removesuffix(" (deleted)") == exe:
                    pids.add(int(proc.name))
            except OSError:
                pass
    return pids


def test_the_residue_check_sees_an_unnamed_namespace():
    """What the test below relies on: a namespace no name points to, held by a process."""
    if not shutil.which("unshare") or os.geteuid() != 0:
        pytest.skip("needs root and unshare (util-linux)")
    before = netns_holders()
    p = subprocess.Popen(["unshare", "--net", "sleep", "30"])
    try:
        deadline = time.time() + 5
        while time.time() < deadline:
            new = {ino: pids for ino, pids in netns_holders().items() if ino not in before}
            if any(p.pid in pids for pids in new.values()):
                break
            time.sleep(0.05)
        assert any(p.pid in pids for pids in new.values()), new
        assert p.pid in processes_of("/usr/bin/sleep") | processes_of("/bin/sleep")
    finally:
        p.kill()
        p.wait()


def test_a_run_leaves_nothing_behind(cli, require_root):
    """No namespace, process, or sysctl change survives a run, including a run killed mid-way.
    Other work on the machine may make namespaces meanwhile: a namespace that appeared is
    the run's if a process of the run or a mount holds it (and nothing of the run remains)."""
    import signal

    def migrate():
        return pathlib.Path("/proc/sys/net/ipv4/tcp_migrate_req").read_text()

    ours_before = processes_of(cli)
    assert not ours_before, f"processes of {cli} already running: {ours_before}"
    before_ns = netns_holders()
    before = migrate()
    r = run(cli, "run", "--case", "close_listener_with_queued_children/tcp4_sigkill_k2_b8_migrate1")
    assert r.returncode == 0, r.stdout
    # Killed mid-run: its case children must die with it (they watch their parent).
    # One variant after another (about 1 s each, a SYN retry): still running at 1.5 s.
    p = subprocess.Popen([cli, "run", "-j", "1", "--case", "close_listener_with_queued_children/tcp*_migrate1"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(1.5)
    seen_during = {ino for ino, pids in netns_holders().items() if pids & processes_of(cli)} - set(before_ns)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    deadline = time.time() + 5
    while time.time() < deadline:
        left = processes_of(cli)
        if not left:
            break
        time.sleep(0.1)
    assert not left, f"processes left: {left}"
    # The run did make namespaces of its own (else the check below checks nothing).
    assert seen_during, "no namespace of the killed run was seen while it ran"
    after_ns = netns_holders()
    # A namespace's inode number is freed with it and handed to the next new namespace: in
    # one CI run another process of the machine (pid 324) held a namespace with the number
    # of one the killed run had made. What would be the run's is one a process of the run or
    # a mount (pid 0) still holds; no process of the run is left (checked above).
    ours = processes_of(cli)
    stale = {ino: after_ns[ino] for ino in seen_during & set(after_ns) if 0 in after_ns[ino] or after_ns[ino] & ours}
    assert not stale, stale
    mounted = {ino for ino, pids in after_ns.items() if 0 in pids and ino not in before_ns}
    assert not mounted, f"namespaces bind-mounted by the run: {mounted}"
    assert migrate() == before
