"""reuseport-check watch: usage errors, and its counts against a server it does not own."""
import json
import subprocess
import sys
import time

import pytest

from results.schemas import errors


def run(*args, timeout=30):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args,msg", [
    ([], "watch needs --port"),
    (["--port", "0"], "--port needs 1-65535"),
    (["--port", "http"], "--port needs 1-65535"),
    (["--port", "80", "--duration", "-1"], "--duration needs a positive number"),
    (["--port", "80", "--netns", "a", "--pid", "1"], "exclusive"),
    (["--port", "80", "--pid", "1x"], "--pid needs a process id"),
    (["--port", "80", "--bogus"], "unknown option '--bogus'"),
])
def test_bad_usage(cli, args, msg):
    r = run(cli, "watch", *args)
    assert r.returncode == 2, r
    assert msg in r.stderr, r.stderr


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
        assert totals["orphaned_children"] == resets, text
        assert totals["orphan_resets"] == resets, text
        assert totals["resets_received"] == resets, text
        assert totals["listener_closes"] == 1, text
        assert totals["listeners_at_start"] == 2 and totals["listeners_left"] == 1, text
        assert "children orphaned in a closed listener's queue" in text
    finally:
        if srv.poll() is None:
            srv.kill()
        srv.wait()
        if watch and watch.poll() is None:
            watch.kill()
            watch.wait()
