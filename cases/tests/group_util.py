"""What the `group` tests share: a network namespace of the test's own, `group --watch`
started and stopped, and the counts of a watch document added up per socket."""
import contextlib
import os
import signal
import subprocess
import time

from netns_util import kill_netns_processes


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
