"""`reuseport-check group` against nginx from Debian's archive in the middle of its swaps (the
issue's done-when): two generations on one port under HTTP load, each member's share and the
counts against the load; and the USR2 binary upgrade, where both generations hold the same
sockets. Every test runs nginx in a network namespace of its own and kills it after."""
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

        def start(gen):
            prefix = nginx_prefix(tmp_path, gen, port)
            # nsenter execs nginx (daemon off): the Popen is the master.
            procs[gen] = in_ns(ns, nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf"))
            masters[gen] = wait_for_file(prefix / "nginx.pid")
            assert masters[gen] == procs[gen].pid

        # The swap: A runs, group watches, B starts beside A, load, A quits.
        start("a")
        wait_for_members(cli, ns, port, 2)
        out = tmp_path / "group.json"
        w = start_watch(cli, ns, port, out)
        start("b")
        wait_for_members(cli, ns, port, 4)
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
        joined = {c["cookie"]: c["member"] for c in doc["changes"] if c["event"] == "joined"}
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
        # B's sockets were seen joining, with B's master among their owners.
        assert sorted(joined) == sorted(by_master["b"]), (joined, by_master)
        assert all(masters["b"] in {o["pid"] for o in m["owners"]} for m in joined.values()), joined
        assert all(m["group"] == last["groups"][0]["label"] for m in joined.values()), joined  # the kernel's
        assert len(last["groups"]) == 1 and last["groups"][0]["kernel_num_socks"] == 4, last["groups"]
        assert clients["served"] == clients["attempts"] > 0, clients
        total = totals_by_cookie(doc)
        assert sum(total.values()) == clients["attempts"], (total, clients)
        assert all(total[c] > 0 for c in total), total
        # The busiest interval: every member of both generations got a share of it.
        busiest = max(doc["samples"], key=lambda s: s["groups"][0]["new"] or 0)
        assert all(m["share"] > 0 for m in busiest["members"]), busiest["members"]
        assert abs(sum(m["share"] for m in busiest["members"]) - 1) < 1e-9


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
