"""`reuseport-check watch` against a real server from Debian's packages: two nginx masters
on one port with `listen ... reuseport`, the blog posts' hand-over (start B, then QUIT A)
under HTTP load. A's worker is paused (SIGSTOP) long enough for its accept queue to fill,
as a busy worker's would; when A quits, those never-accepted children are reset. watch,
attached from outside, must count as many orphans and orphan RSTs as the clients saw
resets."""
import json
import os
import pathlib
import signal
import shutil
import subprocess
import sys
import time

import pytest
from netns_util import kill_netns_processes

from results.schemas import errors

HERE = pathlib.Path(__file__).parent
PORT = 47600

CONF = """
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
events {{ worker_connections {conns}; }}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{port} reuseport backlog=16;
    location / {{ return 200 "ok {name}\\n"; }}
  }}
}}
"""


def nginx_conf(tmp, name, conns):
    prefix = tmp / name
    (prefix / "logs").mkdir(parents=True)
    conf = prefix / "nginx.conf"
    conf.write_text(CONF.format(prefix=prefix, port=PORT, name=name, conns=conns))
    return prefix, conf


def wait_for(path, timeout=5):
    deadline = time.time() + timeout
    while not path.exists() or not path.read_text().strip():
        assert time.time() < deadline, f"{path} did not appear: nginx did not start"
        time.sleep(0.02)


def in_ns(pid, *cmd, **kw):
    return subprocess.run(["nsenter", "-t", str(pid), "-n", *cmd], **kw)


@pytest.mark.skipif(not shutil.which("nginx") and not pathlib.Path("/usr/sbin/nginx").exists(),
                    reason="nginx (Debian package nginx-light) is not installed")
def test_watch_counts_nginx_handover_resets(cli, require_root, tmp_path):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    anchor = subprocess.Popen(["unshare", "-n", "sleep", "120"])
    watch = load = None
    servers = []
    try:
        time.sleep(0.1)
        in_ns(anchor.pid, "ip", "link", "set", "lo", "up", check=True)
        pa, ca = nginx_conf(tmp_path, "a", 1024)
        pb, cb = nginx_conf(tmp_path, "b", 1024)
        servers.append(subprocess.Popen(["nsenter", "-t", str(anchor.pid), "-n", nginx, "-p", str(pa), "-c", str(ca)]))
        wait_for(pa / "nginx.pid")
        out = tmp_path / "watch.json"
        watch = subprocess.Popen([cli, "watch", "--port", str(PORT), "--pid", str(anchor.pid), "--duration", "6",
                                  "--interval", "0.5", "--json", str(out)], stdout=subprocess.PIPE, text=True)
        assert "watching TCP port" in watch.stdout.readline()
        load = subprocess.Popen(["nsenter", "-t", str(anchor.pid), "-n", sys.executable, str(HERE / "http_load.py"),
                                 str(PORT), "64", "4"], stdout=subprocess.PIPE, text=True)
        time.sleep(1.0)
        pid_a = int((pa / "nginx.pid").read_text())
        worker_a = int(subprocess.run(["pgrep", "-P", str(pid_a)], capture_output=True, text=True).stdout.split()[0])
        os.kill(worker_a, signal.SIGSTOP)
        time.sleep(0.5)  # the queue (backlog 16) fills: 64 clients keep connecting
        servers.append(subprocess.Popen(["nsenter", "-t", str(anchor.pid), "-n", nginx, "-p", str(pb), "-c", str(cb)]))
        wait_for(pb / "nginx.pid")
        os.kill(pid_a, signal.SIGQUIT)
        time.sleep(0.2)
        os.kill(worker_a, signal.SIGCONT)
        clients = json.loads(load.communicate(timeout=30)[0])
        text, _ = watch.communicate(timeout=30)
        doc = json.loads(out.read_text())
        assert errors(doc, "watch") == []
        totals = doc["totals"]
        print(clients, totals)
        assert watch.returncode == 0, text
        assert clients["served"] > 0
        # A quit with children in its queue: the hand-over lost them, and each sent one RST.
        assert totals["kernel_orphaned_children"] > 0, (clients, totals)
        assert totals["kernel_orphan_resets"] == totals["kernel_orphaned_children"], totals
        # Every RST the port sent reached a waiting client, and the clients saw exactly the
        # RSTs the kernel delivered. The "other" RSTs are clients whose handshake completed
        # by syncookie while A's queue was full (TCPReqQFullDoCookies): no child existed
        # for them, so they are not orphans, but they are lost with A all the same.
        # A RST that reaches a client before its connect() call returns is an ECONNRESET from
        # connect() (a RST in SYN_SENT would be ECONNREFUSED): the handshake had completed, so
        # it is one of the port's RSTs like those that reach a client reading its answer.
        resets = clients["resets"] + clients["resets_in_connect"]
        assert resets == totals["kernel_orphan_resets"] + totals["kernel_other_resets_sent"], (clients, totals)
        assert resets == totals["kernel_resets_received"], (clients, totals)
        # Every reset the clients saw under exactly one named cause, none unattributed; the
        # RSTs that reached clients which had already closed are not among them.
        a = totals["attribution"]
        print(a)
        assert a["client_visible"] == resets - totals["kernel_resets_received_closed"], (clients, a)
        assert sum(a["causes"].values()) + a["unattributed"] == a["client_visible"], a
        assert a["unattributed"] == 0, (clients, a)
        assert a["causes"]["orphaned_in_accept_queue"] == totals["kernel_orphan_resets"], a
        assert totals["listeners_left"] >= 1 and totals["listeners_joined"] >= 1, totals
    finally:
        for p in (load, watch):
            if p and p.poll() is None:
                p.kill()
                p.wait()
        # nginx daemonized: its processes left our process group, not the namespace.
        kill_netns_processes(anchor.pid)
        for p in servers:
            p.wait()
        anchor.kill()
        anchor.wait()
