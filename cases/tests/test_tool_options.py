"""serve, report and matrix on their command lines: a bad value names the option and the
value (exit 2), `--x=v` works like `--x v`, an output that cannot be written stops the
command at once with nothing done, and matrix's progress in a log is a handful of lines.

matrix's driver is replaced by a stand-in (--python FAKE) that appends the events the real
one does (ci/matrix/driver.py emit()), so that these tests need neither qemu nor the static
guest binary; test_matrix_on_the_running_kernel runs the real driver when a static binary
is there."""
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
ENV = {**os.environ, "RP_SOURCE_DIR": str(REPO)}


def run(*args, timeout=60, env=None):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=env or ENV)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------
# serve


@pytest.mark.parametrize("args,msg", [
    (["--port", "70000"], "--port: Value 70000 not in range 1 to 65535"),
    (["--port=8080", "--workers=0"], "--workers: Value 0 not in range 1 to 256"),
    (["--port", "8080", "--backlog", "many"], "--backlog: Value many not in range"),
    (["--port", "8080", "--accept-delay-ms=-5"], "--accept-delay-ms: Value -5 not in range 0 to 60000"),
    (["--port", "8080", "--host=not-an-address"], "--host needs an IPv4 or IPv6 address, got 'not-an-address'"),
    (["--workers", "2"], "--port is required"),
])
def test_serve_bad_values_name_option_and_value(cli, args, msg):
    r = run(cli, "serve", *args)
    assert r.returncode == 2, r
    assert msg in r.stderr, r.stderr
    assert "listening" not in r.stdout


def test_serve_equals_spelling(cli, tmp_path):
    port, pidfile = free_port(), tmp_path / "serve.pid"
    p = subprocess.Popen([cli, "serve", f"--port={port}", "--workers=3", "--backlog=16", "--http",
                          f"--pidfile={pidfile}"], stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        assert f"listening on 127.0.0.1:{port} with 3 workers (http)" in line, line
        assert int(pidfile.read_text()) == p.pid
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert c.recv(100).startswith(b"HTTP/1.1 200")
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=10) == 0
        assert not pidfile.exists()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


# ---------------------------------------------------------------------------------------
# report


@pytest.mark.parametrize("args,msg", [
    (["--profile", "huge"], "--profile: huge not in {quick,full,guest}"),
    (["--guest-profile=tiny"], "--guest-profile: tiny not in {quick,full,guest}"),
    (["--repeats", "0"], "--repeats: Value 0 not in range 1 to 1000"),
    (["--jobs=17"], "--jobs: Value 17 not in range 1 to 16"),
    (["--host-only", "--kernels", "5.10"], "--host-only excludes --kernels"),
    (["--kernels=5.10", "--host-only"], "--host-only excludes --kernels"),
])
def test_report_bad_values_name_option_and_value(cli, tmp_path, args, msg):
    r = run(cli, "report", *args, "--out", tmp_path / "out")
    assert r.returncode == 2, r
    assert msg in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()  # usage is checked before anything is made


def test_report_equals_spelling_reaches_the_driver(cli, tmp_path):
    # --kernels=, --out=, --repeats=, -j: parsed and handed to ci/matrix/report.py, whose
    # own check of the kernel names answers.
    r = run(cli, "report", "--kernels=5.10,9.9", f"--out={tmp_path}", "--repeats=2", "-j", "2", "--no-build")
    assert r.returncode == 2, r
    assert "unknown kernel(s) 9.9; known kernels: running, 5.10" in r.stderr, r.stderr


@pytest.mark.parametrize("kernels", [["--host-only"], ["--kernels", "5.10"]])
def test_report_unwritable_out_exits_2_at_once_with_no_run(cli, tmp_path, kernels):
    blocker = tmp_path / "file"
    blocker.write_text("")
    t0 = time.monotonic()
    r = run(cli, "report", *kernels, "--repeats", "1", "--no-render", "--out", blocker / "report")
    took = time.monotonic() - t0
    assert r.returncode == 2, r
    assert "cannot write" in r.stderr and str(blocker) in r.stderr, r.stderr
    assert "ceiling" not in r.stderr and "[1/" not in r.stderr  # no run, no guest
    assert took < 1.0, took


def test_a_killed_report_keeps_the_runs_it_finished(cli, require_root, tmp_path):
    """data/<release>.json is replaced after every run: SIGKILLed mid-way, the report
    leaves a whole document, marked incomplete, with each run it finished."""
    out = tmp_path / "report"
    p = subprocess.Popen([cli, "report", "--host-only", "--repeats", "1", "--no-render", "--out", out],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV,
                         start_new_session=True)
    data = out / "data" / f"{os.uname().release}.json"
    try:
        deadline = time.monotonic() + 120
        doc = None
        while time.monotonic() < deadline and p.poll() is None:
            if data.exists():
                doc = json.loads(data.read_text())  # never half a file
                if len(doc["runs"]) >= 2:
                    break
            time.sleep(0.1)
        assert doc and len(doc["runs"]) >= 2, (doc, p.poll())
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        doc = json.loads(data.read_text())
        assert doc["complete"] is False
        assert doc["schema"] == "reuseport-check/report-runs/1" and doc["ceiling"]["served_per_second"] > 0
        assert len(doc["runs"]) >= 2
        assert all(r["status"] in ("ok", "unavailable", "error") for r in doc["runs"])
        assert [r["repeat"] for r in doc["runs"]] == [0] * len(doc["runs"])
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)  # the isolated run in flight, if it outlived it
        except ProcessLookupError:
            pass
        p.wait()


# ---------------------------------------------------------------------------------------
# matrix, with a stand-in driver

FAKE_DRIVER = textwrap.dedent('''\
    #!/usr/bin/python3
    # Stands in for `python3 -m pytest ci/matrix ...`: appends the events the real driver
    # does, with hundreds of progress events, then ends as MODE says.
    import json, os, sys, time
    mode = os.environ["FAKE_MODE"]
    open(os.environ["FAKE_MARKER"], "w").write(" ".join(sys.argv))
    def emit(ev):
        with open(os.environ["RP_MATRIX_EVENTS"], "a") as f:
            f.write(json.dumps(ev) + "\\n")
    variants = ["c/v1", "c/v2", "c/v3"]
    emit({"ev": "plan", "kernels": ["running", "5.10"], "variants": variants})
    emit({"ev": "kernel", "kernel": "running", "state": "running", "release": "6.9.0-host"})
    for i in range(150):
        emit({"ev": "progress", "kernel": "running", "done": i % 3 + 1, "total": 3})
        time.sleep(0.01)
    emit({"ev": "kernel", "kernel": "running", "state": "done", "release": "6.9.0-host", "error": "",
          "duration_s": 1.5, "console_log": ""})
    for v in variants:
        c, var = v.split("/")
        emit({"ev": "record", "kernel": "running", "record": {"case": c, "variant": var,
              "kernel": "6.9.0-host", "verdict": "SKIP" if var == "v3" else "PASS"}})
    if mode == "hang":
        time.sleep(600)
    emit({"ev": "kernel", "kernel": "5.10", "state": "booting", "release": "5.10.0-43-cloud-amd64"})
    for i in range(150):
        emit({"ev": "progress", "kernel": "5.10", "done": i % 3 + 1, "total": 3})
        time.sleep(0.01)
    emit({"ev": "kernel", "kernel": "5.10", "state": "error", "release": "5.10.0-43-cloud-amd64",
          "error": "phase run: timeout", "console_log": "/x/console.log"})
    for v in variants:
        c, var = v.split("/")
        emit({"ev": "record", "kernel": "5.10", "record": {"case": c, "variant": var,
              "kernel": "5.10.0-43-cloud-amd64", "verdict": "ERROR"}})
    sys.exit(1)
''')


@pytest.fixture
def fake_driver(tmp_path):
    path = tmp_path / "fake-python"
    path.write_text(FAKE_DRIVER)
    path.chmod(0o755)
    marker = tmp_path / "driver-started"
    return path, marker, {**ENV, "FAKE_MODE": "finish", "FAKE_MARKER": str(marker)}


@pytest.mark.parametrize("args,msg", [
    (["-j", "0"], "--jobs: Value 0 not in range 1 to 16"),
    (["--jobs=abc"], "--jobs: Value abc not in range 1 to 16"),
    (["--case"], "--case: 1 required GLOB missing"),
    (["stray"], "not expected: stray"),
    (["--bogus=1"], "not expected: --bogus"),
])
def test_matrix_bad_values_name_option_and_value(cli, fake_driver, tmp_path, args, msg):
    python, marker, env = fake_driver
    r = run(cli, "matrix", "--python", python, "--results-dir", tmp_path / "res", *args, env=env)
    assert r.returncode == 2, r
    assert msg in r.stderr, r.stderr
    assert not marker.exists()


@pytest.mark.parametrize("what", ["--json", "--results-dir"])
def test_matrix_unwritable_output_exits_2_at_once_with_no_guest(cli, fake_driver, tmp_path, what):
    python, marker, env = fake_driver
    blocker = tmp_path / "file"
    blocker.write_text("")
    args = {"--json": ["--json", blocker / "m.json", "--results-dir", tmp_path / "res"],
            "--results-dir": ["--results-dir", blocker / "res"]}[what]
    t0 = time.monotonic()
    r = run(cli, "matrix", "--kernels", "running", *args, "--python", python, env=env)
    took = time.monotonic() - t0
    assert r.returncode == 2, r
    assert "cannot write" in r.stderr and str(blocker) in r.stderr, r.stderr
    assert not marker.exists(), "the driver was started"
    assert took < 1.0, took


def test_matrix_progress_in_a_log_is_a_handful_of_lines(cli, fake_driver, tmp_path):
    """300 progress events (the old matrix printed a line for each) become at most a few
    status lines, plus one line per kernel event; --json= and --results-dir= work."""
    python, marker, env = fake_driver
    out = tmp_path / "m.json"
    r = run(cli, "matrix", "--kernels=running,5.10", f"--json={out}", f"--results-dir={tmp_path / 'res'}",
            "--jobs=2", "--case=c/*", f"--python={python}", env=env)
    assert r.returncode == 1, r  # 5.10's ERROR cells
    assert "--kernels running,5.10" in marker.read_text() and "--case c/*" in marker.read_text()
    lines = r.stdout.splitlines()
    status = [ln for ln in lines if ln.startswith("matrix ") and "[" in ln]
    assert 1 <= len(status) <= 3, r.stdout
    assert "\r" not in r.stdout and "\x1b[" not in r.stdout
    assert "running (6.9.0-host): running 3 variant(s)" in lines, r.stdout
    assert "running (6.9.0-host): finished in 2 s: 2 PASS 1 SKIP" in lines, r.stdout
    assert "5.10 (5.10.0-43-cloud-amd64): booting" in lines, r.stdout
    assert "5.10 (5.10.0-43-cloud-amd64): booted, running 3 variant(s)" in lines, r.stdout
    assert "5.10 (5.10.0-43-cloud-amd64): ERROR: phase run: timeout (log: /x/console.log)" in lines, r.stdout
    # Before the table: the status lines and the six kernel lines, nothing else.
    head = lines[:lines.index("") if "" in lines else len(lines)]
    assert len(head) <= 3 + 5, r.stdout
    doc = json.loads(out.read_text())
    assert doc["complete"] is True
    assert [k["name"] for k in doc["kernels"]] == ["running", "5.10"]
    assert len(doc["records"]) == 6


def test_a_killed_matrix_keeps_the_kernels_it_finished(cli, fake_driver, tmp_path):
    python, marker, env = fake_driver
    out = tmp_path / "m.json"
    p = subprocess.Popen([cli, "matrix", "--json", out, "--results-dir", tmp_path / "res", "--python", python],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**env, "FAKE_MODE": "hang"})
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not out.exists():
            time.sleep(0.05)
        assert out.exists(), "no --json document after the first kernel finished"
        p.kill()
        p.wait()
        doc = json.loads(out.read_text())
        assert doc["complete"] is False
        assert {r["variant"] for r in doc["records"]} == {"v1", "v2", "v3"}
        assert all(r["kernel"] == "6.9.0-host" for r in doc["records"])
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def static_binary():
    env = os.environ.get("RP_STATIC_BIN")
    path = pathlib.Path(env) if env else REPO / "build-static" / "bin" / "reuseport-check"
    return path if path.is_file() else None


@pytest.mark.skipif(static_binary() is None, reason="no static guest binary (build-static/ or $RP_STATIC_BIN)")
def test_matrix_on_the_running_kernel_in_a_log(cli, require_root, tmp_path):
    """The real driver on the machine's kernel (no guest): a pipe gets a few lines."""
    r = subprocess.run([cli, "matrix", "--kernels", "running", "--case", "unix_reuseport_rejected",
                        "--results-dir", tmp_path, "--json", tmp_path / "m.json"],
                       capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
                       env={**ENV, "RP_STATIC_BIN": str(static_binary())})
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert len([ln for ln in lines if ln.startswith("matrix ")]) <= 3, r.stdout
    assert any(ln.startswith("running (") and ": finished" in ln for ln in lines), r.stdout
    doc = json.loads((tmp_path / "m.json").read_text())
    assert doc["complete"] is True and doc["records"]
    assert all(rec["verdict"] in ("PASS", "XFAIL", "SKIP") for rec in doc["records"])
    assert list(tmp_path.glob("*/results.json")), list(tmp_path.iterdir())
