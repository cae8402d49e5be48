"""reuseport-check group: the members of a port's reuseport group(s), their owners and their
shares, against our own `serve`, UDP sockets of a helper process, and two nginx generations
on one port (the issue's done-when). Every test runs its servers in a network namespace of
its own (an `unshare -n sleep` anchor) and kills what it started, also on failure.

1. usage errors, unknown namespace/process, an empty port, an unprivileged run: exit 2 and
   one line on stderr;
2. serve --workers N: N members of one kernel group, each held by serve's pid, and the
   children the probe counted per member add up to the load's connections;
3. UDP: the members of three processes, grouped by the kernel, datagrams per member add up
   to what was sent;
4. nginx A and B on one port: both generations in one group, each member with a share > 0
   under load, and the shares' counts add up to the load's connections.
"""
import contextlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest
from netns_util import kill_netns_processes

from results.schemas import errors

HERE = pathlib.Path(__file__).parent


def run(*args, timeout=60):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


@contextlib.contextmanager
def namespace():
    """A fresh network namespace with lo up, held by a sleeping anchor; every process in it
    is killed on the way out."""
    anchor = subprocess.Popen(["unshare", "-n", "sleep", "300"])
    try:
        deadline = time.monotonic() + 10
        while os.stat(f"/proc/{anchor.pid}/ns/net").st_ino == os.stat("/proc/self/ns/net").st_ino:
            assert time.monotonic() < deadline, "unshare did not make a namespace"
            time.sleep(0.01)
        subprocess.run(["nsenter", "-t", str(anchor.pid), "-n", "ip", "link", "set", "lo", "up"], check=True)
        yield anchor.pid
    finally:
        kill_netns_processes(anchor.pid)
        anchor.kill()
        anchor.wait()


def in_ns(anchor, *cmd, **kw):
    return subprocess.Popen(["nsenter", "-t", str(anchor), "-n", *cmd], **kw)


def wait_for_members(cli, anchor, port, n, udp=False):
    """Polls `group` until the port has n members (servers start asynchronously)."""
    deadline = time.monotonic() + 20
    while True:
        r = run(cli, "group", "--port", str(port), "--pid", str(anchor), "--interval", "0.05",
                *(["--udp"] if udp else []))
        if r.returncode == 0 and f"{n} member(s)" in r.stdout:
            return r
        assert time.monotonic() < deadline, (r.stdout, r.stderr)
        time.sleep(0.1)


def start_watch(cli, anchor, port, out, udp=False, interval="0.5"):
    w = subprocess.Popen([cli, "group", "--port", str(port), "--pid", str(anchor), "--watch", "--interval", interval,
                          "--json", str(out), *(["--udp"] if udp else [])], stdout=subprocess.PIPE, text=True)
    first = w.stdout.readline()  # printed once the counters are attached: the baseline is taken
    assert "port" in first and "shares over" in first, first
    return w


def stop_watch(w):
    w.send_signal(signal.SIGINT)
    text, _ = w.communicate(timeout=60)
    assert w.returncode == 0, text
    return text


def totals_by_cookie(doc):
    """cookie -> new connections/datagrams over the whole watch: the members' counts plus
    those of sockets that left during an interval."""
    total = {}
    for s in doc["samples"]:
        for m in s["members"]:
            assert m["new"] is not None, m
            total[m["cookie"]] = total.get(m["cookie"], 0) + m["new"]
        for g in s["gone"]:
            total[g["cookie"]] = total.get(g["cookie"], 0) + g["new"]
    return total


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


# -- 4. two nginx generations ----------------------------------------------------------

NGINX_CONF = """
worker_processes 2;
daemon {daemon};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{port} reuseport;
    location / {{ return 200 "ok {name}\\n"; }}
  }}
}}
"""


def nginx_prefix(tmp, name, port, daemon="off"):
    prefix = tmp / name
    (prefix / "logs").mkdir(parents=True)
    (prefix / "nginx.conf").write_text(NGINX_CONF.format(prefix=prefix, port=port, name=name, daemon=daemon))
    return prefix


def wait_for_file(path):
    deadline = time.monotonic() + 10
    while not path.exists() or not path.read_text().strip():
        assert time.monotonic() < deadline, f"{path} did not appear: nginx did not start"
        time.sleep(0.02)
    return int(path.read_text())


@pytest.mark.skipif(not shutil.which("nginx") and not pathlib.Path("/usr/sbin/nginx").exists(),
                    reason="nginx (Debian package nginx-light) is not installed")
def test_two_nginx_generations_and_their_shares(cli, require_root, tmp_path):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    port = 47716
    with namespace() as ns:
        masters, procs = {}, {}
        for gen in ("a", "b"):
            prefix = nginx_prefix(tmp_path, gen, port)
            # nsenter execs nginx (daemon off): the Popen is the master.
            procs[gen] = in_ns(ns, nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf"))
            masters[gen] = wait_for_file(prefix / "nginx.pid")
            assert masters[gen] == procs[gen].pid
        wait_for_members(cli, ns, port, 4)
        out = tmp_path / "group.json"
        w = start_watch(cli, ns, port, out)
        load = in_ns(ns, sys.executable, str(HERE / "http_load.py"), str(port), "8", "2",
                     stdout=subprocess.PIPE, text=True)
        clients = json.loads(load.communicate(timeout=60)[0])
        # The swap's end: A quits (its listeners close at once) while group still watches.
        os.kill(masters["a"], signal.SIGQUIT)
        procs["a"].wait(timeout=60)
        text = stop_watch(w)
        print(text)
        (tmp_path / "group.txt").write_text(text)
        doc = json.loads(out.read_text())
        assert errors(doc, "group") == [], errors(doc, "group")
        # The last sample was taken after A had gone: only B's members, and A's left.
        after = doc["samples"][-1]
        assert {o["pid"] for m in after["members"] for o in m["owners"] if o["ppid"] != masters["b"]} == \
            {masters["b"]}, after["members"]
        left = [c["cookie"] for c in doc["changes"] if c["event"] == "left"]
        assert len(after["members"]) == 2 and len(left) == 2, (after["members"], doc["changes"])
        assert f"left: cookie {left[0]}" in text
        # The busiest sample had both generations.
        last = max(doc["samples"], key=lambda s: len(s["members"]))
        # nginx with `reuseport` opens one socket per worker in the master, and the workers
        # inherit them (nginx-light 1.22 on this machine: every worker of a generation holds
        # all of its generation's sockets). A member belongs to exactly one generation: its
        # owners are that master and workers whose parent it is.
        assert len(last["members"]) == 4, text
        by_master = {}
        for m in last["members"]:
            pids = {o["pid"] for o in m["owners"]}
            master = [g for g, p in masters.items() if p in pids]
            assert len(master) == 1, (m["owners"], masters)
            workers = [o for o in m["owners"] if o["pid"] != masters[master[0]]]
            assert workers and all(o["ppid"] == masters[master[0]] for o in workers), m["owners"]
            by_master.setdefault(master[0], []).append(m["cookie"])
        assert sorted(len(v) for v in by_master.values()) == [2, 2], by_master
        assert sorted(left) == sorted(by_master["a"]), (left, by_master)
        assert len(last["groups"]) == 1 and last["groups"][0]["kernel_num_socks"] == 4, last["groups"]
        assert clients["served"] == clients["attempts"] > 0, clients
        total = totals_by_cookie(doc)
        assert sum(total.values()) == clients["attempts"], (total, clients)
        assert all(total[c] > 0 for c in total), total
        # The busiest interval: every member of both generations got a share of it.
        busiest = max(doc["samples"], key=lambda s: s["groups"][0]["new"] or 0)
        assert all(m["share"] > 0 for m in busiest["members"]), busiest["members"]
        assert abs(sum(m["share"] for m in busiest["members"]) - 1) < 1e-9


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
    # An eBPF socket filter named rp_grp_steer: r0 = 0; exit. bpf(BPF_PROG_LOAD) by hand.
    insns = ctypes.create_string_buffer(struct.pack("<BBhi", 0xb7, 0, 0, 0) + struct.pack("<BBhi", 0x95, 0, 0, 0))
    lic = ctypes.create_string_buffer(b"GPL")
    attr = struct.pack("<IIQQIIQII16s", 1, 2, ctypes.addressof(insns), ctypes.addressof(lic), 0, 0, 0, 0, 0,
                       b"rp_grp_steer").ljust(128, b"\0")
    buf = ctypes.create_string_buffer(attr, len(attr))
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.syscall(321, 5, buf, len(attr))  # SYS_bpf, BPF_PROG_LOAD
    if fd < 0:
        raise OSError(ctypes.get_errno(), "bpf(BPF_PROG_LOAD)")
    socks[0].setsockopt(socket.SOL_SOCKET, 52, struct.pack("i", fd))  # SO_ATTACH_REUSEPORT_EBPF
os.write(1, b"ready\n")
time.sleep(300)
"""


@pytest.mark.parametrize("kind", ["cbpf", "ebpf"])
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


@pytest.mark.skipif(not shutil.which("nginx") and not pathlib.Path("/usr/sbin/nginx").exists(),
                    reason="nginx (Debian package nginx-light) is not installed")
def test_nginx_binary_upgrade_shares_the_sockets_between_generations(cli, require_root, tmp_path):
    """nginx's USR2 upgrade: the new master inherits the old one's listeners, so the group
    does not change; each member is held by both generations until the old one quits."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    port = 47719
    with namespace() as ns:
        # Daemonized: nginx ignores USR2 in a master whose parent is still the one that
        # started it (it takes itself for a new binary whose old master lives).
        prefix = nginx_prefix(tmp_path, "a", port, daemon="on")
        in_ns(ns, nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf")).wait(timeout=30)
        old = wait_for_file(prefix / "nginx.pid")
        wait_for_members(cli, ns, port, 2)
        out = tmp_path / "group.json"
        w = start_watch(cli, ns, port, out)
        os.kill(old, signal.SIGUSR2)
        wait_for_file(prefix / "nginx.pid.oldbin")
        deadline = time.monotonic() + 20
        while (new := wait_for_file(prefix / "nginx.pid")) == old:
            assert time.monotonic() < deadline, "the new master did not write its pid"
            time.sleep(0.05)
        # The new master has started when its own workers hold the sockets.
        deadline = time.monotonic() + 20
        while True:
            r = run(cli, "group", "--port", str(port), "--pid", str(ns), "--interval", "0.05",
                    "--json", str(tmp_path / "poll.json"))
            if r.returncode == 0 and all(any(o["ppid"] == new for o in m["owners"]) for m in
                                         json.loads((tmp_path / "poll.json").read_text())["samples"][0]["members"]):
                break
            assert time.monotonic() < deadline, r.stdout
            time.sleep(0.1)
        assert f"{new} nginx (ppid {old}," in r.stdout, r.stdout  # the new generation has its own entry
        load = in_ns(ns, sys.executable, str(HERE / "http_load.py"), str(port), "8", "1.5",
                     stdout=subprocess.PIPE, text=True)
        clients = json.loads(load.communicate(timeout=60)[0])
        os.kill(old, signal.SIGQUIT)
        deadline = time.monotonic() + 60
        while pathlib.Path(f"/proc/{old}").exists():  # reparented to init, which reaps it
            assert time.monotonic() < deadline, "the old master did not quit"
            time.sleep(0.05)
        text = stop_watch(w)
        print(text)
        doc = json.loads(out.read_text())
        assert errors(doc, "group") == [], errors(doc, "group")
        assert doc["changes"] == [], doc["changes"]  # the same two sockets throughout
        # Some sample had both masters on every member.
        def masters_of(m):
            return {o["pid"] for o in m["owners"]} & {old, new}
        assert any(all(masters_of(m) == {old, new} for m in s["members"]) for s in doc["samples"]), text
        last = doc["samples"][-1]
        assert all(masters_of(m) == {new} for m in last["members"]), last["members"]
        assert clients["served"] == clients["attempts"] > 0, clients
        total = totals_by_cookie(doc)
        assert len(total) == 2 and all(v > 0 for v in total.values()), total
        assert sum(total.values()) == clients["attempts"], (total, clients)
