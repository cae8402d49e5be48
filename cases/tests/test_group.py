"""reuseport-check group: the members of a port's reuseport group(s), their owners and their
shares, against our own `serve`, UDP sockets of helper processes and sockets with steering
programs. Every test runs its servers in a network namespace of its own (an
`unshare -n sleep` anchor, group_util.namespace) and kills what it started, also on failure.

1. usage errors, unknown namespace/process, an empty port, an unprivileged run: exit 2 and
   one line on stderr;
2. serve --workers N: N members of one kernel group, each held by serve's pid, and the
   children the probe counted per member add up to the load's connections;
3. UDP: the members of three processes, grouped by the kernel, datagrams per member add up
   to what was sent; IPv4 and dual-stack IPv6 sockets on one port are two groups;
4. the group's steering program (classic and eBPF), and the inferred path of a kernel
   without socket iterators.
The nginx generations are in test_group_nginx.py.
"""
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest
from group_util import in_ns, namespace, run, start_watch, stop_watch, totals_by_cookie, wait_for_members

from results.schemas import errors

HERE = pathlib.Path(__file__).parent


# -- 1. bad input ------------------------------------------------------------------------

@pytest.mark.parametrize("args,msg", [
    ([], "--port is required"),
    (["--port", "0"], "--port: Value 0 not in range 1 to 65535"),
    (["--port=70000"], "--port: Value 70000 not in range 1 to 65535"),
    (["--port", "80", "--netns", "a", "--pid", "1"], "--netns excludes --pid"),
    (["--port", "80", "--pid", "1x"], "--pid: needs a process id, got '1x'"),
    (["--port", "80", "--duration", "5"], "--duration requires --watch"),
    (["--port", "80", "--interval", "0"], "--interval: needs a positive number of seconds"),
    (["--port", "80", "--bogus"], "not expected: --bogus"),
])
def test_bad_usage(cli, args, msg):
    r = run(cli, "group", *args)
    assert r.returncode == 2, r
    assert msg in r.stderr, r.stderr
    assert r.stdout == ""


def test_help_keeps_the_examples_and_exit_statuses(cli):
    r = run(cli, "group", "--help")
    assert r.returncode == 0, r
    for text in ("--port", "--netns", "--pid", "--udp", "--watch", "--interval", "--duration", "--json", "Examples:",
                 "group --port 53 --udp --netns dns", "Exit status:", "group.schema.json", "CAP_SYS_PTRACE"):
        assert text in r.stdout, text


def test_unwritable_json_exits_2_before_anything(cli, tmp_path):
    r = run(cli, "group", "--port", "80", "--json", "/nonexistent-dir/g.json")
    assert r.returncode == 2 and "cannot write" in r.stderr and "/nonexistent-dir/g.json" in r.stderr, r
    assert r.stdout == ""


def test_unknown_namespace_or_process(cli, require_root):
    r = run(cli, "group", "--port", "80", "--netns", "no-such-netns-rp")
    assert r.returncode == 2 and "no network namespace named 'no-such-netns-rp'" in r.stderr, r
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = run(cli, "group", "--port", "80", "--pid", "999999999")
    assert r.returncode == 2 and "no process 999999999" in r.stderr, r
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_nothing_on_the_port_names_what_listens(cli, require_root, tmp_path):
    with namespace() as ns:
        serve = in_ns(ns, cli, "serve", "--port", "47711", "--workers", "1", stdout=subprocess.DEVNULL)
        wait_for_members(cli, ns, 47711, 1)
        r = run(cli, "group", "--port", "47712", "--pid", str(ns))
        assert r.returncode == 2, r
        assert "nothing listens on TCP port 47712" in r.stderr and "TCP listens on: 47711" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        r = run(cli, "group", "--port", "47711", "--pid", str(ns), "--udp")
        assert r.returncode == 2 and "no UDP socket is bound there at all" in r.stderr, r.stderr
        serve.kill()
        serve.wait()


def test_unprivileged_run_exits_2(cli, require_root):
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is missing")
    r = run("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", cli, "group", "--port", "80")
    assert r.returncode == 2, r
    assert "group needs root" in r.stderr and "CAP_NET_ADMIN" in r.stderr, r.stderr


# -- 2. our own server ------------------------------------------------------------------

def test_serve_workers_are_one_kernel_group_held_by_serve(cli, require_root, tmp_path):
    port, n = 47713, 3
    with namespace() as ns:
        serve = in_ns(ns, cli, "serve", "--port", str(port), "--workers", str(n), "--http",
                      "--pidfile", str(tmp_path / "serve.pid"), stdout=subprocess.DEVNULL)
        wait_for_members(cli, ns, port, n)
        serve_pid = int((tmp_path / "serve.pid").read_text())
        out = tmp_path / "group.json"
        w = start_watch(cli, ns, port, out)
        load = in_ns(ns, sys.executable, str(HERE / "http_load.py"), str(port), "4", "1.5",
                     stdout=subprocess.PIPE, text=True)
        clients = json.loads(load.communicate(timeout=60)[0])
        text = stop_watch(w)
        doc = json.loads(out.read_text())
        assert errors(doc, "group") == [], errors(doc, "group")
        assert doc["complete"] is True and doc["watch"] is True and doc["protocol"] == "tcp"
        last = doc["samples"][-1]
        assert len(last["members"]) == n, text
        assert {m["inode"] for m in last["members"]} == {m["inode"] for m in doc["samples"][0]["members"]}
        for m in last["members"]:
            assert [o["pid"] for o in m["owners"]] == [serve_pid], m
            assert m["address"] == "127.0.0.1" and m["family"] == "inet" and m["backlog"] == 128, m
            assert m["reuseport"] is True and m["incoming_cpu"] is not None, m
        # 6.18 has the socket iterator: the grouping is the kernel's, with its own count.
        assert len(last["groups"]) == 1, last["groups"]
        g = last["groups"][0]
        assert g["source"] == "kernel" and g["kernel_num_socks"] == n and g["program"] == "none", g
        assert clients["served"] == clients["attempts"] > 0, clients
        total = totals_by_cookie(doc)
        assert sum(total.values()) == clients["attempts"], (total, clients)
        assert all(v > 0 for v in total.values()), total
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=30)


# -- 3. UDP ------------------------------------------------------------------------------

UDP_SERVER = r"""
import os, signal, socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
def sock():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", port))
    return s
kids = []
for i in range(n):
    pid = os.fork()
    if pid == 0:
        s = sock()
        os.write(1, f"{os.getpid()}\n".encode())  # one write: the children print at once
        while True:
            s.recv(2048)
    kids.append(pid)
signal.pause()
"""


def test_udp_members_of_several_processes_and_their_datagrams(cli, require_root, tmp_path):
    port, n, datagrams = 47714, 3, 600
    with namespace() as ns:
        srv = in_ns(ns, sys.executable, "-c", UDP_SERVER, str(port), str(n), stdout=subprocess.PIPE, text=True)
        pids = {int(srv.stdout.readline()) for _ in range(n)}
        wait_for_members(cli, ns, port, n, udp=True)
        out = tmp_path / "group.json"
        w = start_watch(cli, ns, port, out, udp=True)
        # One datagram per source socket: the hash spreads the sources over the members.
        send = ("import socket\n"
                f"for i in range({datagrams}):\n"
                "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                f"    s.sendto(b'x', ('127.0.0.1', {port}))\n"
                "    s.close()\n")
        subprocess.run(["nsenter", "-t", str(ns), "-n", sys.executable, "-c", send], check=True, timeout=60)
        stop_watch(w)
        doc = json.loads(out.read_text())
        assert errors(doc, "group") == [], errors(doc, "group")
        last = doc["samples"][-1]
        assert len(last["members"]) == n
        assert {m["owners"][0]["pid"] for m in last["members"]} == pids, last["members"]
        for m in last["members"]:
            assert m["protocol"] == "udp" and m["backlog"] is None and m["receive_queue_bytes"] is not None, m
            assert m["drops"] == 0, m
        assert len(last["groups"]) == 1 and last["groups"][0]["source"] == "kernel", last["groups"]
        assert last["groups"][0]["kernel_num_socks"] == n
        total = totals_by_cookie(doc)
        assert sum(total.values()) == datagrams, total
        assert all(v > 0 for v in total.values()), total
        srv.kill()
        srv.wait()


def test_netns_by_name(cli, require_root, tmp_path):
    """--netns NAME: the namespace `ip netns add` made, bound under /run/netns."""
    name = f"rp-group-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    serve = None
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        serve = subprocess.Popen(["ip", "netns", "exec", name, cli, "serve", "--port", "47715", "--workers", "2",
                                  "--pidfile", str(tmp_path / "p")], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            r = run(cli, "group", "--port", "47715", "--netns", name, "--interval", "0.05",
                    "--json", str(tmp_path / "g.json"))
            if r.returncode == 0 and "2 member(s)" in r.stdout:
                break
            assert time.monotonic() < deadline, r
            time.sleep(0.1)
        assert f"network namespace {name}" in r.stdout, r.stdout
        doc = json.loads((tmp_path / "g.json").read_text())
        assert errors(doc, "group") == [] and doc["watch"] is False and len(doc["samples"]) == 1
        pid = int((tmp_path / "p").read_text())
        assert all(m["owners"][0]["pid"] == pid for m in doc["samples"][0]["members"])
        # Not the host's port: the host has nothing there.
        assert run(cli, "group", "--port", "47715").returncode == 2
    finally:
        if serve:
            serve.kill()
            serve.wait()
        subprocess.run(["ip", "netns", "del", name])


# -- 5. the steering program, and a kernel without socket iterators -------------------

STEERED = r"""
import ctypes, os, socket, struct, sys, time
port, kind = int(sys.argv[1]), sys.argv[2]
socks = []
for i in range(2):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", port))
    s.listen(8)
    socks.append(s)
socks[1].setsockopt(socket.SOL_SOCKET, 49, 0)  # SO_INCOMING_CPU: CPU 0
ret0 = struct.pack("HBBI", 0x06, 0, 0, 0)  # classic BPF: ret #0 (the group's socket 0)
if kind == "cbpf":
    ins = ctypes.create_string_buffer(ret0)
    socks[0].setsockopt(socket.SOL_SOCKET, 51, struct.pack("HxxxxxxQ", 1, ctypes.addressof(ins)))  # ..._CBPF
else:
    # bpf(BPF_PROG_LOAD) by hand, r0 = 0 (ebpf: a socket filter; the group's socket 0) or 1
    # (sk_reuseport: SK_PASS, the hash decides) then exit, named rp_grp_steer.
    # ebpf: BPF_PROG_TYPE_SOCKET_FILTER (1); sk_reuseport: BPF_PROG_TYPE_SK_REUSEPORT (21)
    # with expected_attach_type BPF_SK_REUSEPORT_SELECT_OR_MIGRATE (40).
    ptype, attach, r0 = (1, 0, 0) if kind == "ebpf" else (21, 40, 1)
    insns = ctypes.create_string_buffer(struct.pack("<BBhi", 0xb7, 0, 0, r0) + struct.pack("<BBhi", 0x95, 0, 0, 0))
    lic = ctypes.create_string_buffer(b"GPL")
    attr = struct.pack("<IIQQIIQII16sII", ptype, 2, ctypes.addressof(insns), ctypes.addressof(lic), 0, 0, 0, 0, 0,
                       b"rp_grp_steer", 0, attach).ljust(128, b"\0")
    buf = ctypes.create_string_buffer(attr, len(attr))
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.syscall(321, 5, buf, len(attr))  # SYS_bpf, BPF_PROG_LOAD
    if fd < 0:
        raise OSError(ctypes.get_errno(), "bpf(BPF_PROG_LOAD)")
    socks[0].setsockopt(socket.SOL_SOCKET, 52, struct.pack("i", fd))  # SO_ATTACH_REUSEPORT_EBPF
os.write(1, b"ready\n")
time.sleep(300)
"""


@pytest.mark.parametrize("kind", ["cbpf", "ebpf", "sk_reuseport"])
def test_the_groups_steering_program(cli, require_root, tmp_path, kind):
    port = 47717
    with namespace() as ns:
        srv = in_ns(ns, sys.executable, "-c", STEERED, str(port), kind, stdout=subprocess.PIPE, text=True)
        assert srv.stdout.readline() == "ready\n"
        out = tmp_path / "g.json"
        r = run(cli, "group", "--port", str(port), "--pid", str(ns), "--interval", "0.05", "--json", str(out))
        assert r.returncode == 0, r
        doc = json.loads(out.read_text())
        assert errors(doc, "group") == [], errors(doc, "group")
        [g] = doc["samples"][0]["groups"]
        assert sorted(m["incoming_cpu"] for m in doc["samples"][0]["members"]) == [-1, 0]
        if kind == "cbpf":
            assert g["program"] == {"id": None, "type": "classic", "attach_type": "", "name": ""}, g
            assert "classic BPF (SO_ATTACH_REUSEPORT_CBPF; it has no id)" in r.stdout, r.stdout
        elif kind == "sk_reuseport":
            prog = g["program"]
            assert prog["type"] == "sk_reuseport" and prog["attach_type"] == "sk_reuseport_select_or_migrate", g
            assert prog["name"] == "rp_grp_steer" and prog["id"] > 0, g
            assert f"id {prog['id']} sk_reuseport/sk_reuseport_select_or_migrate 'rp_grp_steer'" in r.stdout, r.stdout
        else:
            prog = g["program"]
            assert prog["type"] == "socket_filter" and prog["name"] == "rp_grp_steer" and prog["id"] > 0, g
            shown = run("bpftool", "prog", "show", "id", str(prog["id"]))
            assert shown.returncode != 0 or "rp_grp_steer" in shown.stdout, shown  # bpftool, where present
            assert f"id {prog['id']} socket_filter 'rp_grp_steer'" in r.stdout, r.stdout
        srv.kill()
        srv.wait()


def test_without_socket_iterators_groups_are_inferred_and_said_so(cli, require_root, tmp_path):
    """RP_TEST_GROUP_NO_ITER takes the path of a kernel before 5.9 on this one: the group is
    inferred (and labelled so), the program is not observable with the reason, and
    SO_REUSEPORT / SO_INCOMING_CPU come from a pidfd_getfd(2) duplicate."""
    port = 47718
    with namespace() as ns:
        srv = in_ns(ns, sys.executable, "-c", STEERED, str(port), "cbpf", stdout=subprocess.PIPE, text=True)
        assert srv.stdout.readline() == "ready\n"
        out = tmp_path / "g.json"
        r = subprocess.run([cli, "group", "--port", str(port), "--pid", str(ns), "--interval", "0.05", "--json", str(out)],
                           capture_output=True, text=True, timeout=60, env=dict(os.environ, RP_TEST_GROUP_NO_ITER="1"))
        assert r.returncode == 0, r
        doc = json.loads(out.read_text())
        assert errors(doc, "group") == [], errors(doc, "group")
        [g] = doc["samples"][0]["groups"]
        assert g["source"] == "inferred" and g["label"].startswith("inferred tcp4 127.0.0.1:47718"), g
        assert g["program"] is None and "not observable here" in g["program_why"], g
        assert "not observable here" in doc["not_observable"]["program"]
        assert "n/a program: not observable here" in r.stdout, r.stdout
        assert all(m["reuseport"] is True for m in doc["samples"][0]["members"])
        assert sorted(m["incoming_cpu"] for m in doc["samples"][0]["members"]) == [-1, 0]
        assert "pidfd_getfd" in doc["sources"]["incoming_cpu"]
        srv.kill()
        srv.wait()


DUAL = r"""
import os, socket, sys, time
port = int(sys.argv[1])
keep = []
for family, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET, "127.0.0.1"),
                     (socket.AF_INET6, "::"), (socket.AF_INET6, "::")):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind((addr, port))
    keep.append(s)
os.write(1, b"ready\n")
time.sleep(300)
"""


def test_ipv4_and_dual_stack_ipv6_on_one_port_are_two_groups(cli, require_root, tmp_path):
    port = 47720
    with namespace() as ns:
        srv = in_ns(ns, sys.executable, "-c", DUAL, str(port), stdout=subprocess.PIPE, text=True)
        assert srv.stdout.readline() == "ready\n"
        for env in ({}, {"RP_TEST_GROUP_NO_ITER": "1"}):  # the kernel's answer, then the inference
            out = tmp_path / "g.json"
            r = subprocess.run([cli, "group", "--udp", "--port", str(port), "--pid", str(ns), "--interval", "0.05",
                                "--json", str(out)], capture_output=True, text=True, timeout=60,
                               env=dict(os.environ, **env))
            assert r.returncode == 0, r
            doc = json.loads(out.read_text())
            assert errors(doc, "group") == [], errors(doc, "group")
            s = doc["samples"][0]
            assert len(s["groups"]) == 2 and all(len(g["members"]) == 2 for g in s["groups"]), s["groups"]
            by_cookie = {m["cookie"]: m for m in s["members"]}
            for g in s["groups"]:
                fams = {(by_cookie[c]["family"], by_cookie[c]["address"], by_cookie[c]["v6only"]) for c in g["members"]}
                assert fams in ({("inet", "127.0.0.1", None)}, {("inet6", "::", False)}), fams
            assert "[::]:47720" in r.stdout and " no " in r.stdout, r.stdout  # the v6only column
        srv.kill()
        srv.wait()


def test_a_killed_watch_leaves_a_whole_document(cli, require_root, tmp_path):
    """The document is replaced atomically after every interval: SIGKILL leaves one that
    follows the schema, marked incomplete, with the samples taken so far."""
    port = 47721
    with namespace() as ns:
        in_ns(ns, cli, "serve", "--port", str(port), "--workers", "2", stdout=subprocess.DEVNULL)
        wait_for_members(cli, ns, port, 2)
        out = tmp_path / "g.json"
        w = subprocess.Popen([cli, "group", "--port", str(port), "--pid", str(ns), "--watch", "--interval", "0.1",
                              "--json", str(out)], stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while not out.exists() or len(json.loads(out.read_text())["samples"]) < 3:
                assert time.monotonic() < deadline, "no third sample"
                time.sleep(0.05)
            w.kill()
            w.wait()
            doc = json.loads(out.read_text())
            assert errors(doc, "group") == [], errors(doc, "group")
            assert doc["complete"] is False and len(doc["samples"]) >= 3
        finally:
            if w.poll() is None:
                w.kill()
                w.wait()
