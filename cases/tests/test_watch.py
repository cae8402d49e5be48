"""reuseport-check watch: usage errors, and its counts against a server it does not own."""
import json
import subprocess
import sys
import time

import pytest

from results.schemas import errors


def run(*args, timeout=30):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


# CLI11's messages (cli/common/options.h): each names the option and the bad value.
@pytest.mark.parametrize("args,msg", [
    ([], "--port is required"),
    (["--port", "0"], "--port: Value 0 not in range 1 to 65535"),
    (["--port", "http"], "--port: Value http not in range 1 to 65535"),
    (["--port=70000"], "--port: Value 70000 not in range 1 to 65535"),
    (["--port", "80", "--duration", "-1"], "--duration: needs a positive number of seconds (at most 30 days), got '-1'"),
    (["--port", "80", "--interval=0"], "--interval: needs a positive number of seconds (at most 30 days), got '0'"),
    (["--port", "80", "--netns", "a", "--pid", "1"], "--netns excludes --pid"),
    (["--port", "80", "--pid", "1x"], "--pid: needs a process id, got '1x'"),
    (["--port", "80", "--netns=../x"], "--netns: takes a name as `ip netns list` shows it, got '../x'"),
    (["--port", "80", "--bogus"], "not expected: --bogus"),
])
def test_bad_usage(cli, args, msg):
    r = run(cli, "watch", *args)
    assert r.returncode == 2, r
    assert msg in r.stderr, r.stderr
    assert "watching" not in r.stdout


def test_help_keeps_the_examples_and_exit_statuses(cli):
    r = run(cli, "watch", "--help")
    assert r.returncode == 0, r
    for text in ("--port", "--netns", "--pid", "Examples:", "watch --port 80 --duration 60", "Exit status:",
                 "CAP_NET_ADMIN"):
        assert text in r.stdout, r.stdout


def test_unwritable_json_exits_2_at_once_before_attaching(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    for path in ("/nonexistent-dir/watch.json", str(blocker / "watch.json"), str(tmp_path)):
        t0 = time.monotonic()
        r = run(cli, "watch", "--port", "80", "--duration", "5", "--json", path)
        took = time.monotonic() - t0
        assert r.returncode == 2, r
        assert "cannot write" in r.stderr and path in r.stderr, r.stderr
        assert "watching" not in r.stdout, r.stdout  # nothing attached, no interval waited
        assert took < 1.0, took


def test_equals_spelling_and_a_complete_document(cli, require_root, tmp_path):
    out = tmp_path / "w.json"
    r = run(cli, "watch", "--port=47510", "--duration=0.6", "--interval=0.2", f"--json={out}", "--quiet")
    assert r.returncode == 0, r
    doc = json.loads(out.read_text())
    assert doc["complete"] is True and doc["port"] == 47510 and doc["interval_s"] == 0.2
    assert len(doc["samples"]) >= 2, doc["samples"]
    assert doc["totals"]["listeners_at_start"] == 0 and "kernel_orphan_resets" in doc["totals"]


def test_a_killed_watch_leaves_every_interval_it_finished(cli, require_root, tmp_path):
    """The document is replaced after every interval: SIGKILL leaves a whole one, marked
    incomplete, with the samples taken so far."""
    out = tmp_path / "w.json"
    watch = subprocess.Popen([cli, "watch", "--port", "47511", "--interval", "0.2", "--duration", "60",
                              "--json", str(out), "--quiet"], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        doc = None
        while time.monotonic() < deadline:
            if out.exists():
                doc = json.loads(out.read_text())  # never half a file: replaced atomically
                if len(doc["samples"]) >= 3:
                    break
            time.sleep(0.05)
        assert doc and len(doc["samples"]) >= 3, doc
        watch.kill()
        watch.wait()
        doc = json.loads(out.read_text())
        assert doc["complete"] is False
        assert len(doc["samples"]) >= 3
        assert [s["t"] for s in doc["samples"]] == sorted(s["t"] for s in doc["samples"])
        assert doc["totals"]["listeners_at_start"] == 0
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()


def test_unknown_namespace_or_process(cli, require_root):
    r = run(cli, "watch", "--port", "80", "--netns", "rp-no-such-netns", "--duration", "1")
    assert r.returncode == 2 and "no network namespace named 'rp-no-such-netns'" in r.stderr, r.stderr
    r = run(cli, "watch", "--port", "80", "--pid", "999999999", "--duration", "1")
    assert r.returncode == 2 and "process 999999999" in r.stderr, r.stderr


def test_counts_a_foreign_servers_orphans(cli, require_root, tmp_path):
    """Another process's listener closes with 5 children queued: watch, attached from outside
    through --pid, counts 5 orphans and 5 orphan RSTs, as many as the clients saw."""
    srv = subprocess.Popen(["unshare", "-n", sys.executable, str(__import__("pathlib").Path(__file__).parent / "queued_close_server.py"), "47500", "4"],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    watch = None
    try:
        assert json.loads(srv.stdout.readline())["ready"]
        out = tmp_path / "watch.json"
        watch = subprocess.Popen([cli, "watch", "--port", "47500", "--pid", str(srv.pid), "--duration", "4",
                                  "--interval", "0.5", "--json", str(out)], stdout=subprocess.PIPE, text=True)
        assert "watching TCP port 47500" in watch.stdout.readline()
        srv.stdin.write("fill\n")
        srv.stdin.flush()
        filled = json.loads(srv.stdout.readline())
        assert filled["queued"] == 5, filled
        srv.stdin.write("close\n")
        srv.stdin.flush()
        resets = json.loads(srv.stdout.readline())["client_resets"]
        text, _ = watch.communicate(timeout=20)
        assert watch.returncode == 0, text
        doc = json.loads(out.read_text())
        assert errors(doc, "watch") == []
        assert doc["port"] == 47500 and len(doc["samples"]) >= 2, doc["samples"]
        totals = doc["totals"]
        assert resets == 5
        assert totals["kernel_orphaned_children"] == resets, text
        assert totals["kernel_orphan_resets"] == resets, text
        assert totals["kernel_resets_received"] == resets, text
        assert totals["kernel_listener_closes"] == 1, text
        # Each reset the clients saw has one named cause, the closed listener's queue.
        a = totals["attribution"]
        assert a["client_visible"] == resets and a["unattributed"] == 0, a
        assert a["causes"]["orphaned_in_accept_queue"] == resets, a
        assert sum(a["causes"].values()) == resets, a
        assert "unattributed 0" in text, text
        # Per listener, by cookie: the one that closed orphaned them all (null only where
        # the kernel cannot tell, and then the source says why).
        if totals["orphans_by_listener"] is None:
            assert "not observable" in doc["sources"]["orphans_by_listener"], doc["sources"]
        else:
            assert list(totals["orphans_by_listener"].values()) == [resets], totals["orphans_by_listener"]
            assert "orphans of the listener with cookie" in text, text
        assert totals["listeners_at_start"] == 2 and totals["listeners_left"] == 1, text
        assert "children orphaned in a closed listener's accept queue" in text  # probes/counters.cc's label
    finally:
        if srv.poll() is None:
            srv.kill()
        srv.wait()
        if watch and watch.poll() is None:
            watch.kill()
            watch.wait()
