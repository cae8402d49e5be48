"""reuseport-check deploy --udp and serve --udp: bad usage of the new options exits 2 with
one line; the project's own UDP server restarted under UDP flow load loses datagrams that
found no socket, every one attributed (Udp.NoPorts, unattributed 0), exit 1; a swap (a
second generation joins, the first leaves) breaks flows, which the answers show by the
member that sent them; unbound (docs/examples/unbound) restarted loses queries, each with
its cause, and reloaded keeps its sockets. Every --json follows
results/schemas/deploy-udp.schema.json."""
import json
import pathlib
import subprocess

import pytest

from results.junit import Suite, read_junit
from results.schemas import errors

REPO = pathlib.Path(__file__).resolve().parents[2]
SERVE_UDP = REPO / "docs" / "examples" / "serve-udp"
# Open loop: in a closed loop a flow whose datagram was lost waits out the reply timeout
# before it sends again, so a gap of a few ms costs each flow one datagram and no more.
FAST = ["--warmup", "0.5", "--settle", "0.5", "--flows", "16", "--reply-timeout", "0.2", "--load", "rate:20000"]


def run(*args, timeout=60):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


def deploy_udp(cli, port, start, dep, *extra, timeout=60):
    return run(cli, "deploy", "--udp", "--port", str(port), "--start", start, "--deploy", dep, *extra, timeout=timeout)


def report(path):
    """The --json document, held to its schema, with the attribution's sums checked."""
    rep = json.loads(path.read_text())
    assert errors(rep, "deploy-udp") == []
    d, a = rep["datagrams"], rep["attribution"]
    assert d["sent"] == d["answered"] + d["late"] + d["lost"], d
    assert a["lost"] == d["lost"] == sum(a["causes"].values()) + a["unattributed"], a
    return rep


@pytest.mark.parametrize("args,msg", [
    (["--flows", "4"], "--flows needs --udp"),
    (["--reply-timeout", "1"], "--reply-timeout needs --udp"),
    (["--udp", "--flows", "0"], "--flows: needs 1-4096, got '0'"),
    (["--udp", "--flows", "2", "--threads", "3"], "--threads 3 needs at least as many --flows (2)"),
    (["--udp", "--reply-timeout", "0"], "--reply-timeout: needs a positive number of seconds"),
    (["--udp", "--udp-request", "a.test"], "--udp-request: takes dns:NAME, got 'a.test'"),
    (["--udp", "--udp-request", "dns:a..test"], "a DNS label has 1-63 bytes"),
    (["--udp-request", "dns:a.test"], "--udp-request needs --udp"),
    (["--udp", "--http", "/"], "--http is for TCP"),
    (["--udp", "--request", "/etc/hostname"], "--request is for TCP"),
])
def test_deploy_udp_bad_usage(cli, args, msg):
    r = run(cli, "deploy", "--start", "x", "--deploy", "y", "--port", "80", *args)
    assert r.returncode == 2, r
    first, *rest = r.stderr.strip().splitlines()
    assert msg in first and rest == [next(l for l in rest if "--help" in l)], r.stderr


@pytest.mark.parametrize("args,msg", [
    (["--udp", "--http"], "excludes --"),
    (["--udp", "--backlog", "8"], "excludes --"),
    (["--udp", "--accept-delay-ms", "1"], "excludes --"),
    (["--rcvbuf", "4096"], "--rcvbuf needs --udp"),
    (["--udp", "--rcvbuf", "0"], "--rcvbuf: Value 0 not in range"),
])
def test_serve_udp_bad_usage(cli, args, msg):
    r = run(cli, "serve", "--port", "80", *args)
    assert r.returncode == 2, r
    first, *rest = r.stderr.strip().splitlines()
    assert msg in first and rest == [next(l for l in rest if "--help" in l)], r.stderr


def test_udp_port_never_bound(cli, require_root):
    r = deploy_udp(cli, 47640, '"$RP_CHECK" serve --udp --port 47641', "true", "--listen-timeout", "1", *FAST)
    assert r.returncode == 2, r
    assert "no UDP socket was bound to port 47640 within 1 s" in r.stderr, r.stderr
    assert "UDP ports bound in the deploy's network namespace: 47641" in r.stderr, r.stderr


def test_server_that_does_not_answer(cli, require_root):
    # A UDP socket on the port that never reads: the warm-up sees no answer at all.
    sink = "exec python3 -c 'import socket,time; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); " \
           "s.bind((\"127.0.0.1\", 47642)); time.sleep(60)'"
    r = deploy_udp(cli, 47642, sink, "true", "--warmup", "1.5", "--settle", "0.5", "--flows", "4")
    assert r.returncode == 2, r
    assert "none of the datagrams of the warm-up was answered" in r.stderr, r.stderr


def test_restart_loses_datagrams_to_no_socket_all_attributed(cli, require_root, tmp_path):
    out, junit = tmp_path / "restart.json", tmp_path / "restart.xml"
    r = deploy_udp(cli, 47643, str(SERVE_UDP / "start.sh"), str(SERVE_UDP / "restart.sh"), *FAST, "--json", str(out),
                   "--junit", str(junit))
    assert r.returncode == 1, r.stdout + r.stderr
    suites, cases = read_junit(junit)
    assert suites == [Suite("reuseport-check deploy", tests=1, failures=1, errors=0, skipped=0)], suites
    case = cases["reuseport-check::deploy"]
    assert case.outcome == "failure" and "datagrams lost" in case.message and "unattributed 0" in case.message, case
    rep = report(out)
    a = rep["attribution"]
    assert rep["datagrams"]["lost"] > 0, rep["datagrams"]
    assert a["causes"]["no_socket"] > 0 and a["unattributed"] == 0, a
    assert rep["kernel_totals"]["udp_no_ports"] >= a["causes"]["no_socket"]
    # A new process answers after the restart: every flow that still got answers moved.
    assert len(rep["flows"]["answers_by_member"]) == 4, rep["flows"]
    assert rep["flows"]["broken"] > 0
    assert "no_socket" in r.stdout and "unattributed                       0" in r.stdout


# A slow server (a pause before each read) whose queues hold datagrams when it closes.
SLOW = ["--warmup", "0.5", "--settle", "1", "--flows", "16", "--reply-timeout", "0.5", "--load", "rate:10000"]


def test_naive_swap_loses_queued_datagrams_all_attributed(cli, require_root, tmp_path):
    """Generation 1 closes its members at once: what their queues held is freed in the
    socket destructor, seen by the udp_drops probe; the rest overflowed the slow members'
    buffers (Udp.RcvbufErrors); nothing is left unattributed."""
    out = tmp_path / "naive.json"
    r = deploy_udp(cli, 47644, f"{SERVE_UDP / 'start.sh'} --read-delay-us 200", f"{SERVE_UDP / 'swap.sh'}", *SLOW,
                   "--json", str(out))
    assert r.returncode == 1, r.stdout + r.stderr
    rep = report(out)
    a = rep["attribution"]
    assert a["causes"]["queue_purged_at_close"] > 0 and a["unattributed"] == 0, a
    assert a["causes"]["no_socket"] == 0, a  # a member was bound throughout
    assert any(d["function"] == "udp_destruct_common" and d["purged_at_close"] for d in rep["kernel_drops"]), rep["kernel_drops"]
    assert rep["flows"]["broken"] > 0


def test_drain_swap_frees_no_queued_datagram(cli, require_root, tmp_path):
    """The same swap with --drain: generation 1 answers what its queues hold before it
    closes, so nothing is freed at close; its overflow before and during the swap is still
    Udp.RcvbufErrors, and the flows move to generation 2 all the same (a UDP swap without
    steering breaks every flow: the member that answers is another process)."""
    out = tmp_path / "drain.json"
    r = deploy_udp(cli, 47645, f"{SERVE_UDP / 'start.sh'} --drain --read-delay-us 200", f"{SERVE_UDP / 'swap.sh'} --drain",
                   *SLOW, "--json", str(out))
    rep = report(out)
    a = rep["attribution"]
    assert r.returncode == 1, r.stdout + r.stderr  # broken flows count against --max-lost 0
    assert a["causes"]["queue_purged_at_close"] == 0 and a["unattributed"] == 0, a
    assert a["causes"]["no_socket"] == 0, a
    assert rep["flows"]["broken"] == rep["flows"]["count"], rep["flows"]


UNBOUND = REPO / "docs" / "examples" / "unbound"
DNS = ["--udp-request", "dns:a.test", "--warmup", "1", "--settle", "1", "--flows", "16", "--reply-timeout", "0.2",
       "--load", "rate:2000"]


def test_unbound_restart_loses_queries_each_with_its_cause(cli, require_root, tmp_path):
    """unbound from Debian's archive (so-reuseport, 2 threads) stopped then started: queries
    of the gap found no socket (Udp.NoPorts), those its sockets held when it stopped were
    freed at close; none unattributed. A DNS answer names no member: moved flows are not
    observable, reported as null, never 0."""
    out = tmp_path / "unbound-restart.json"
    r = deploy_udp(cli, 47646, str(UNBOUND / "start.sh"), str(UNBOUND / "restart.sh"), *DNS, "--json", str(out))
    assert r.returncode == 1, r.stdout + r.stderr
    rep = report(out)
    a = rep["attribution"]
    assert a["causes"]["no_socket"] > 0 and a["unattributed"] == 0, a
    assert rep["request"] == "dns:a.test"
    assert rep["flows"]["broken"] is None and rep["flows"]["broken_not_observable"], rep["flows"]
    assert "broken flows not observable" in r.stdout, r.stdout


def test_unbound_reload_keeps_its_sockets(cli, require_root, tmp_path):
    """SIGHUP: unbound 1.17 keeps its listening sockets, so no query finds the port empty."""
    out = tmp_path / "unbound-reload.json"
    r = deploy_udp(cli, 47647, str(UNBOUND / "start.sh"), str(UNBOUND / "reload.sh"), *DNS, "--json", str(out))
    rep = report(out)
    a = rep["attribution"]
    assert a["causes"]["no_socket"] == 0 and a["causes"]["queue_purged_at_close"] == 0, a
    assert a["unattributed"] == 0, a
    assert r.returncode == (1 if a["lost"] else 0), r.stdout + r.stderr
