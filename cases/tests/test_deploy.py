"""reuseport-check deploy (and serve): bad input is a clear error with exit 2 and leaves no
process; the project's own server loses connections on a naive swap (exit 1, client resets
= the kernel's orphans) and none with tcp_migrate_req=1 (exit 0); the nginx examples of
docs/deploy.md run and reconcile. Every --json follows results/schemas/deploy.schema.json,
and every --junit is one testsuite with one testcase whose outcome is the run's (passed,
failure for lost connections, error when the deploy could not be run)."""
import json
import os
import pathlib
import shutil
import signal
import subprocess
import time

import pytest
from junitparser import JUnitXml

from results.junit import Suite, read_junit
from results.schemas import errors

REPO = pathlib.Path(__file__).resolve().parents[2]
SERVE = REPO / "docs" / "examples" / "serve"
NGINX = REPO / "docs" / "examples" / "nginx"
FAST = ["--warmup", "0.5", "--settle", "0.5"]


def run(*args, timeout=60):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


def leftovers(pattern):
    """Processes whose command line matches `pattern` (pgrep -f), other than pgrep itself."""
    r = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True)
    return [l for l in r.stdout.splitlines() if "pgrep" not in l]


def junit_case(path):
    """The one testcase of deploy's JUnit document, read with a JUnit parser."""
    suites = list(JUnitXml.fromfile(str(path)))
    assert [s.name for s in suites] == ["reuseport-check deploy"], suites
    cases = list(suites[0])
    assert [(c.classname, c.name) for c in cases] == [("reuseport-check", "deploy")], cases
    return cases[0]


def deploy(cli, port, start, dep, *extra, timeout=60):
    return run(cli, "deploy", "--port", str(port), "--start", start, "--deploy", dep, *extra, timeout=timeout)


def report(path):
    """The --json document, held to its schema."""
    rep = json.loads(path.read_text())
    assert errors(rep, "deploy") == []
    return rep


def junit_outcome(path, tests=1):
    """deploy's --junit: one testsuite 'reuseport-check deploy' with one testcase 'deploy'."""
    suites, cases = read_junit(path)
    assert [s.name for s in suites] == ["reuseport-check deploy"] and suites[0].tests == tests, suites
    assert list(cases) == ["reuseport-check::deploy"], cases
    return suites[0], cases["reuseport-check::deploy"]


@pytest.mark.parametrize("args,msg", [
    ([], "deploy needs --start"),
    (["--start", "x"], "deploy needs --deploy"),
    (["--start", "x", "--deploy", "y"], "deploy needs --port"),
    (["--start", "x", "--deploy", "y", "--port", "0"], "--port: needs 1-65535, got '0'"),
    (["--start", "x", "--deploy", "y", "--port", "80", "--load", "many"], "--load: takes closed:N or rate:R, got 'many'"),
    (["--start", "x", "--deploy", "y", "--port", "80", "--load", "rate:0"], "--load: rate:R needs a positive number R, got 'rate:0'"),
    (["--start", "x", "--deploy", "y", "--port", "80", "--load=closed:0"], "--load: closed:N needs N in 1-8192, got 'closed:0'"),
    (["--start", "x", "--deploy", "y", "--port", "80", "--http", "index.html"], "must start with '/'"),
    (["--start", "x", "--deploy", "y", "--port", "80", "--http", "/", "--request", "/etc/hostname"], "exclusive"),
    (["--start", "x", "--deploy", "y", "--port", "80", "--request", "/nonexistent/req"], "cannot read /nonexistent/req"),
    (["--start", "x", "--deploy", "y", "--port", "80", "--settle", "-1"], "--settle: needs a number of seconds >= 0"),
    (["--start", "x", "--deploy", "y", "--port", "80", "--host", "localhost"], "--host: needs an IPv4 or IPv6"),
    (["--start", "x", "--deploy", "y", "--port", "80", "--bogus"], "--bogus"),
])
def test_bad_usage(cli, args, msg):
    r = run(cli, "deploy", *args)
    assert r.returncode == 2, r
    assert msg in r.stderr, r.stderr


@pytest.mark.parametrize("args,msg", [
    ([], "--port is required"),
    (["--port", "70000"], "--port: Value 70000 not in range 1 to 65535"),
    (["--port", "80", "--workers", "0"], "--workers: Value 0 not in range 1 to 256"),
    (["--port", "80", "--host", "nowhere"], "--host needs an IPv4 or IPv6"),
])
def test_serve_bad_usage(cli, args, msg):
    r = run(cli, "serve", *args)
    assert r.returncode == 2, r
    assert msg in r.stderr, r.stderr


def test_start_command_that_exits(cli, require_root):
    r = deploy(cli, 47600, "echo cannot open config >&2; exit 3", "true", *FAST)
    assert r.returncode == 2, r
    assert "the start command exited with status 3 before port 47600 listened" in r.stderr, r.stderr
    assert "| cannot open config" in r.stderr, r.stderr


def test_port_that_never_listens(cli, require_root):
    r = deploy(cli, 47601, "echo starting; exec sleep 31.7", "true", "--listen-timeout", "1", *FAST)
    assert r.returncode == 2, r
    assert "nothing listened on port 47601 within 1 s" in r.stderr, r.stderr
    assert "is still running" in r.stderr and "| starting" in r.stderr, r.stderr
    assert "nothing listens in the deploy's network namespace" in r.stderr, r.stderr
    assert not leftovers("sleep 31.7")


def test_server_on_another_port(cli, require_root):
    r = deploy(cli, 47602, '"$RP_CHECK" serve --port 47603', "true", "--listen-timeout", "1", *FAST)
    assert r.returncode == 2, r
    assert "TCP ports listening in the deploy's network namespace: 47603" in r.stderr, r.stderr
    assert not leftovers("serve --port 47603")


def test_deploy_command_that_fails(cli, require_root, tmp_path):
    junit = tmp_path / "deploy.xml"
    r = deploy(cli, 47604, '"$RP_CHECK" serve --port 47604', "echo no such unit >&2; exit 4", *FAST,
               "--junit", str(junit))
    assert r.returncode == 2, r
    assert "the deploy command exited with status 4" in r.stderr and "| no such unit" in r.stderr, r.stderr
    suite, outcome = junit_outcome(junit)
    assert suite == Suite("reuseport-check deploy", tests=1, failures=0, errors=1, skipped=0)
    assert outcome.outcome == "error" and "exited with status 4" in outcome.message
    case = junit_case(junit)
    assert [type(x).__name__ for x in case.result] == ["Error"] and "exited with status 4" in case.result[0].message
    assert not leftovers("serve --port 47604")


def test_deploy_command_that_hangs(cli, require_root):
    r = deploy(cli, 47605, '"$RP_CHECK" serve --port 47605', "sleep 32.9 & exec sleep 33.1", "--deploy-timeout", "1", *FAST)
    assert r.returncode == 2, r
    assert "the deploy command did not end within 1 s (--deploy-timeout)" in r.stderr, r.stderr
    assert not leftovers("serve --port 47605") and not leftovers("sleep 3[23]")


def signal_during_deploy(cli, port, tag, sig, workdir_file=None):
    """Runs a deploy whose server daemonizes `sleep <tag>.3` and whose deploy command is
    `sleep <tag>.5`; sends `sig` to reuseport-check once the deploy command runs. Returns
    (exit status, stdout after that point, stderr). The start command writes RP_WORKDIR to
    `workdir_file` if one is given."""
    note = f'echo "$RP_WORKDIR" > {workdir_file}; ' if workdir_file else ""
    p = subprocess.Popen([cli, "deploy", "--port", str(port), "--start",
                          note + f'"$RP_CHECK" serve --port {port} & (setsid sleep {tag}.3 &) ; wait',
                          "--deploy", f"exec sleep {tag}.5", "--warmup", "0.3"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in p.stdout:
            if "running the deploy command" in line:
                break
        time.sleep(0.3)
        assert leftovers(f"sleep {tag}.3") and leftovers(f"sleep {tag}.5"), "the commands did not start"
        p.send_signal(sig)
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return p.returncode, out, err


def test_sigterm_cleans_up(cli, require_root):
    """SIGTERM to the deploy command itself, during the deploy: exit 2, nothing left, the
    daemonized part of the server included."""
    rc, out, err = signal_during_deploy(cli, 47606, 34, signal.SIGTERM)
    assert rc == 2, err
    assert "interrupted by SIGTERM" in err, err
    assert "sleep" in out and "reuseport-check" in out, out  # the cleanup names what it killed
    assert not leftovers("serve --port 47606") and not leftovers("sleep 34")


def test_sigkill_of_deploy_leaves_nothing(cli, require_root, tmp_path):
    """SIGKILL to the deploy command itself: nothing of it can run, yet the server, what it
    daemonized (setsid, reparented away) and the deploy command all die with it: they ran
    in a PID namespace whose init dies with deploy. Its work directory (RP_WORKDIR) goes too:
    a keeper outside the namespace removes it (a SIGKILLed deploy used to leave it in /tmp)."""
    note = tmp_path / "workdir"
    rc, _, _ = signal_during_deploy(cli, 47607, 35, signal.SIGKILL, workdir_file=note)
    assert rc == -signal.SIGKILL
    workdir = pathlib.Path(note.read_text().strip())
    assert workdir.name.startswith("rp-deploy."), workdir
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (leftovers("serve --port 47607") or leftovers("sleep 35")
                                           or leftovers("deploy --port 47607") or workdir.exists()):
        time.sleep(0.1)
    assert not workdir.exists(), f"{workdir} outlived the SIGKILLed deploy"
    assert not leftovers("serve --port 47607") and not leftovers("sleep 35")
    assert not leftovers("deploy --port 47607"), "the deploy worker outlived its parent"


def test_commands_see_their_own_pid_namespace(cli, require_root, tmp_path):
    """Pidfiles, pgrep, kill and /proc agree inside the deploy: the commands have a /proc of
    their PID namespace."""
    pidfile = tmp_path / "serve.pid"
    r = deploy(cli, 47608, f'"$RP_CHECK" serve --port 47608 --pidfile {pidfile}',
               f'kill -0 "$(cat {pidfile})" || exit 7; '
               f'[ "$(pgrep -f "^[^ ]*reuseport-check serve --port 47608")" = "$(cat {pidfile})" ] || exit 8',
               *FAST)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "the deploy command exited with status 0" in r.stdout


def assert_attributed(rep):
    """Every lost connection has exactly one named cause: the causes plus unattributed add up
    to the connections the clients lost (HTTP answers with a bad status are the server's own),
    and unattributed is 0."""
    a = rep["attribution"]
    lost = rep["totals"]["lost"] - rep["totals"]["http_bad_status"]
    assert a["client_visible"] == lost, (a, rep["totals"])
    assert sum(a["causes"].values()) + a["unattributed"] == a["client_visible"], a
    assert a["unattributed"] == 0, a
    return a


def test_naive_swap_loses_and_the_kernel_says_why(cli, require_root, tmp_path):
    """A slow server (1 ms per accept) is swapped naively: its queued children are reset,
    and every reset the clients saw is a child the kernel orphaned in a closed listener."""
    out, junit = tmp_path / "deploy.json", tmp_path / "deploy.xml"
    r = deploy(cli, 47607, f"{SERVE}/start.sh --accept-delay-ms 1", f"{SERVE}/swap.sh --accept-delay-ms 1",
               *FAST, "--json", str(out), "--junit", str(junit))
    assert r.returncode == 1, r.stdout + r.stderr
    rep = report(out)
    t, k = rep["totals"], rep["kernel_totals"]
    assert t["lost"] > 0 and t["lost"] == t["attempts"] - t["served"], t
    assert t["outcomes"]["reset_after_connect"] + t["outcomes"]["reset_before_connect"] == t["lost"], t
    assert k["kernel_orphaned_children"] == k["kernel_orphan_resets"] == k["kernel_resets_received"] == t["lost"], (t, k)
    assert k["kernel_listener_closes"] == 2, k
    a = assert_attributed(rep)
    assert a["causes"]["orphaned_in_accept_queue"] == t["lost"], a
    assert "orphaned_in_accept_queue" in r.stdout and "unattributed 0" in r.stdout, r.stdout
    # Per closed listener, by cookie: the two listeners of the old server, whose orphans add up.
    by_listener = rep["kernel_orphans_by_listener"]
    if by_listener is None:
        assert "not observable" in rep["kernel_orphans_by_listener_source"], rep
    else:
        assert len(by_listener) == 2 and sum(by_listener.values()) == k["kernel_orphaned_children"], by_listener
    assert any(row["client_lost"] and row["kernel"].get("kernel_orphaned_children") for row in rep["timeline"]), rep["timeline"]
    assert rep["verdict"] == "fail"
    suite, outcome = junit_outcome(junit)
    assert suite == Suite("reuseport-check deploy", tests=1, failures=1, errors=0, skipped=0)
    assert outcome.outcome == "failure" and outcome.message.startswith(f"{t['lost']} of {t['attempts']} connections lost")
    case = junit_case(junit)
    assert [type(x).__name__ for x in case.result] == ["Failure"], case.result
    assert f"{t['lost']} of {t['attempts']} connections lost" in case.result[0].message
    assert "children orphaned" in r.stdout
    assert not leftovers(f"serve --port {47607}")


def test_swap_with_migration_loses_nothing(cli, require_root, tmp_path):
    out, junit = tmp_path / "deploy.json", tmp_path / "deploy.xml"
    r = deploy(cli, 47608, f"{SERVE}/start.sh --accept-delay-ms 1", f"{SERVE}/swap-migrate.sh --accept-delay-ms 1",
               *FAST, "--json", str(out), "--junit", str(junit))
    assert r.returncode == 0, r.stdout + r.stderr
    rep = report(out)
    assert rep["verdict"] == "pass"
    suite, outcome = junit_outcome(junit)
    assert suite == Suite("reuseport-check deploy", tests=1, failures=0, errors=0, skipped=0)
    assert outcome.outcome == "passed"
    assert rep["totals"]["lost"] == 0 and rep["totals"]["served"] > 0, rep["totals"]
    assert rep["kernel_totals"]["kernel_listener_closes"] == 2
    assert rep["kernel_totals"]["kernel_orphaned_children"] == 0
    assert assert_attributed(rep)["client_visible"] == 0
    assert not leftovers("serve --port 47608")


def test_max_lost_allows_a_budget(cli, require_root, tmp_path):
    out = tmp_path / "deploy.json"
    junit = tmp_path / "deploy.xml"
    r = deploy(cli, 47609, f"{SERVE}/start.sh --accept-delay-ms 1", f"{SERVE}/swap.sh --accept-delay-ms 1",
               *FAST, "--max-lost", "100000", "--json", str(out), "--junit", str(junit))
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(out.read_text())["verdict"] == "pass"
    assert report(out)["totals"]["lost"] > 0  # lost, and within the budget
    case = junit_case(junit)
    assert case.is_passed and not case.result, case.result
    assert case.system_out and "kernel_orphaned_children" in case.system_out, case.system_out


def test_output_paths_are_checked_before_anything_starts(cli, require_root, tmp_path):
    """An unwritable --json or --junit is exit 2 at once: the start command never ran."""
    marker = tmp_path / "started"
    for option in ("--json", "--junit"):
        t0 = time.monotonic()
        r = deploy(cli, 47614, f'touch {marker}; exec "$RP_CHECK" serve --port 47614', "true", *FAST,
                   option, str(tmp_path / "missing" / "out"))
        took = time.monotonic() - t0
        assert r.returncode == 2, r.stdout + r.stderr
        assert f"cannot write {tmp_path / 'missing' / 'out'}" in r.stderr, r.stderr
        assert took < 1.0, took
        assert not marker.exists(), "the start command ran"
        assert not leftovers("serve --port 47614")


def test_options_take_the_equals_form(cli, require_root, tmp_path):
    out = tmp_path / "deploy.json"
    r = run(cli, "deploy", "--port=47615", '--start="$RP_CHECK" serve --port 47615', "--deploy=true",
            "--load=closed:4", "--warmup=0.3", "--settle=0.3", f"--json={out}")
    assert r.returncode == 0, r.stdout + r.stderr
    rep = json.loads(out.read_text())
    assert rep["port"] == 47615 and rep["load"]["concurrency"] == 4 and rep["totals"]["served"] > 0, rep


@pytest.mark.skipif(shutil.which("nginx") is None and not os.path.exists("/usr/sbin/nginx"),
                    reason="nginx is not installed (ci/setup.sh installs nginx-light)")
@pytest.mark.parametrize("script", ["reload.sh", "upgrade.sh", "swap.sh"])
def test_nginx_examples(cli, require_root, tmp_path, script):
    out = tmp_path / "deploy.json"
    port = {"reload.sh": 47610, "upgrade.sh": 47611, "swap.sh": 47612}[script]
    r = deploy(cli, port, f"{NGINX}/start.sh", f"{NGINX}/{script}", "--http", "/", *FAST, "--json", str(out))
    assert r.returncode in (0, 1), r.stdout + r.stderr
    rep = report(out)
    t, k = rep["totals"], rep["kernel_totals"]
    assert t["served"] > 0 and set(t["http_status"]) == {"200"}, t
    resets = t["outcomes"]["reset_after_connect"] + t["outcomes"]["reset_before_connect"]
    assert resets == k["kernel_resets_received"] == k["kernel_orphan_resets"], (t, k)
    assert assert_attributed(rep)["causes"]["orphaned_in_accept_queue"] == resets, rep["attribution"]
    if script in ("reload.sh", "upgrade.sh"):
        # Both hand the listening sockets over (kept by the master, inherited by the new
        # binary): no listener closes, nothing to lose.
        assert k["kernel_listener_closes"] == 0 and r.returncode == 0, r.stdout
    else:
        assert k["kernel_listener_closes"] == 2, k  # instance A's two workers' sockets
    assert not leftovers(f"nginx.*rp-deploy"), "an nginx of the run survived it"
