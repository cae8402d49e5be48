"""`reuseport-check group --udp` against unbound from Debian's archive (`so-reuseport: yes`,
one UDP socket per thread): both sockets are members of one kernel group held by the one
unbound process, DNS queries from fresh source ports spread over them, and a reload (HUP)
keeps the same sockets (unbound 1.17 reuses its listening ports across a reload), so the
group shows no join or leave. unbound runs in a network namespace of the test's own, answers
from a local zone and never sends a query anywhere."""
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest
from group_util import in_ns, namespace, start_watch, stop_watch, totals_by_cookie, wait_for_members

from results.schemas import errors

UNBOUND = shutil.which("unbound") or "/usr/sbin/unbound"
PORT = 47722

CONF = """server:
  interface: 127.0.0.1
  port: {port}
  so-reuseport: yes
  num-threads: 2
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "{dir}"
  pidfile: "{dir}/unbound.pid"
  logfile: "{dir}/unbound.log"
  use-syslog: no
  do-tcp: no
  module-config: "iterator"
  access-control: 127.0.0.0/8 allow
  local-zone: "test." static
  local-data: "a.test. A 10.0.0.1"
remote-control:
  control-enable: no
"""

# n queries for a.test, each from a socket of its own (a new source port), each answered.
QUERIES = r"""
import socket, struct, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
answered = 0
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    q = struct.pack(">HHHHHH", i & 0xffff, 0x0100, 1, 0, 0, 0) + b"\x01a\x04test\x00" + struct.pack(">HH", 1, 1)
    s.sendto(q, ("127.0.0.1", port))
    answered += s.recv(512)[:2] == q[:2]
    s.close()
print(answered)
"""


def query(ns, n):
    r = subprocess.run(["nsenter", "-t", str(ns), "-n", sys.executable, "-c", QUERIES, str(PORT), str(n)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return int(r.stdout)


@pytest.mark.skipif(not pathlib.Path(UNBOUND).exists(), reason="unbound (Debian package unbound) is not installed")
def test_unbound_threads_sockets_and_a_reload(cli, require_root, tmp_path):
    (tmp_path / "unbound.conf").write_text(CONF.format(port=PORT, dir=tmp_path))
    log = tmp_path / "unbound.log"
    with namespace() as ns:
        server = in_ns(ns, UNBOUND, "-d", "-c", str(tmp_path / "unbound.conf"))
        wait_for_members(cli, ns, PORT, 2, udp=True)
        out = tmp_path / "group.json"
        w = start_watch(cli, ns, PORT, out, udp=True)
        assert query(ns, 300) == 300
        os.kill(server.pid, signal.SIGHUP)
        deadline = time.monotonic() + 30
        while log.read_text().count("start of service") < 2:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        assert query(ns, 100) == 100
        text = stop_watch(w)
        print(text)
        doc = json.loads(out.read_text())
        assert errors(doc, "group") == [], errors(doc, "group")
        assert doc["changes"] == [], doc["changes"]  # the reload kept its sockets
        for s in doc["samples"]:
            assert len(s["members"]) == 2 and len(s["groups"]) == 1, s
            assert all([o["pid"] for o in m["owners"]] == [server.pid] for m in s["members"]), s["members"]
            assert s["groups"][0]["source"] == "kernel" and s["groups"][0]["kernel_num_socks"] == 2
        total = totals_by_cookie(doc)
        assert sum(total.values()) == 400 and all(v > 0 for v in total.values()), total
        assert all(m["drops"] == 0 for m in doc["samples"][-1]["members"])
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
