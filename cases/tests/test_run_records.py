"""`run` keeps what it measured: records journaled as they come, a document that is valid
whenever it exists, and --resume that completes a killed run without running again what
it had finished."""
import json
import os
import pathlib
import re
import signal
import subprocess
import time

import pytest

from results.schemas import errors
# 16 variants of about 1 s each: long enough to kill mid-way, short enough for a test.
SELECTION = "close_listener_with_queued_children/tcp4_*"
ONE_VARIANT = "close_listener_with_queued_children/tcp4_close_k2_b8_migrate0"


def run(*args, timeout=180):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


def check_record(rec):
    assert errors(rec, "run-record") == [], rec
    assert rec["verdict"] in {"PASS", "FAIL", "XFAIL", "XPASS", "SKIP", "ERROR"}
    assert isinstance(rec["repeat"], int) and rec["repeat"] >= 0


def journal(path):
    """The records of a journal; every line must be whole but a torn last one."""
    text = pathlib.Path(path).read_text()
    lines = text.split("\n")
    whole, tail = lines[:-1], lines[-1]
    recs = [json.loads(line) for line in whole]
    return recs, tail


def key(rec):
    return (rec["case"], rec["variant"], rec["repeat"])


def descendants(pid):
    """pid's descendants now, with the network namespace each is in."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = pathlib.Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = {}, [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            try:
                out[c] = os.readlink(f"/proc/{c}/ns/net")
            except OSError:
                continue
            todo.append(c)
    return out


def alive(pid):
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"  # a zombie holds no namespace and runs nothing


def netns_in_use(ns):
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.readlink(f"/proc/{d}/ns/net") == ns:
                    return True
            except OSError:
                pass
    return False


def started_variants(stdout):
    return re.findall(r"^\w+ +\[(\d+)/(\d+)\] (\S+) \(", stdout, re.M)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_killed_run_keeps_its_records_and_resume_completes_it(cli, require_root, tmp_path, jobs):
    doc = tmp_path / "out.json"
    jl = tmp_path / "out.json.jsonl"
    total = len([l for l in run(cli, "list", "--case", SELECTION).stdout.splitlines() if l.startswith("  ")])
    assert total >= 8
    log = open(tmp_path / "first.log", "w")
    p = subprocess.Popen([cli, "run", "-j", jobs, "--case", SELECTION, "--json", str(doc)], stdout=log,
                         stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    kids = {}
    while time.monotonic() < deadline:
        n = len(journal(jl)[0]) if jl.exists() else 0
        kids = descendants(p.pid)
        # Kill it while a case (and its namespace) is running; with -j 2, two at once (a
        # case's child in a namespace of its own under each worker).
        namespaces = {ns for ns in kids.values() if ns != os.readlink("/proc/self/ns/net")}
        if n >= 3 and len(namespaces) >= int(jobs):
            break
        assert p.poll() is None, (tmp_path / "first.log").read_text()
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)  # the run only: its cases must go with it by themselves
    p.wait()
    log.close()

    # Nothing of the killed run survives it: processes, network namespaces.
    ours = os.readlink("/proc/self/ns/net")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(k) for k in kids):
        time.sleep(0.05)
    assert not [k for k in kids if alive(k)], kids
    assert not [ns for ns in set(kids.values()) if ns != ours and netns_in_use(ns)]

    # Its finished records are whole lines, each a record; the document (written at the
    # start, so it exists) is valid JSON and says it is incomplete.
    recs, tail = journal(jl)
    assert 3 <= len(recs) < total and tail == ""
    for rec in recs:
        check_record(rec)
    first = json.loads(doc.read_text())
    assert first["complete"] is False and first["finished_at"] is None and first["started_at"]
    assert errors(first, "run") == []  # an incomplete document follows the schema too
    assert all(r in recs for r in first["records"])

    # A torn last line (a write the kill interrupted) must not stop the resume.
    with open(jl, "a") as f:
        f.write(json.dumps(recs[0])[:40])

    r = run(cli, "run", "-j", jobs, "--case", SELECTION, "--resume", str(jl))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{len(recs)} record(s) kept (a torn last line skipped), {total - len(recs)} to run" in r.stdout
    ran = started_variants(r.stdout)
    assert len(ran) == total - len(recs), r.stdout  # the kept ones did not run again
    assert {v for _, _, v in ran}.isdisjoint(f"{x['case']}/{x['variant']}" for x in recs)
    assert f"summary: {total} passed, 0 failed" in r.stdout

    final = json.loads(doc.read_text())  # without --json, resume writes where the run wrote
    assert final["complete"] is True and final["finished_at"]
    assert errors(final, "run") == []
    assert final["resumed_from"] == {"file": str(jl), "records": len(recs)}
    assert sorted(map(key, final["records"])) == sorted({key(x) for x in final["records"]})
    assert len(final["records"]) == total
    assert all(x["verdict"] == "PASS" for x in final["records"])
    for kept in recs:  # copied as they were, not measured again
        assert kept in final["records"]
    after, tail = journal(jl)
    assert tail == "" and sorted(map(key, after)) == sorted(map(key, final["records"]))


def test_resume_from_a_document_runs_only_the_missing_repeats(cli, require_root, tmp_path):
    doc = tmp_path / "r.json"
    r = run(cli, "run", "--case", ONE_VARIANT, "--repeat=2", f"--json={doc}")
    assert r.returncode == 0, r.stdout + r.stderr
    full = json.loads(doc.read_text())
    assert full["complete"] is True and [x["repeat"] for x in full["records"]] == [0, 1]
    assert len(journal(str(doc) + ".jsonl")[0]) == 2

    # An old-style document of one record and no journal: repeat #1 is missing.
    old = tmp_path / "old.json"
    half = dict(full, records=full["records"][:1])
    old.write_text(json.dumps(half))
    out = tmp_path / "new.json"
    r = run(cli, "run", "--case", ONE_VARIANT, "--repeat", "2", "--resume", str(old), "--json", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert [v for _, _, v in started_variants(r.stdout)] == [ONE_VARIANT]
    new = json.loads(out.read_text())
    assert [x["repeat"] for x in new["records"]] == [0, 1]
    assert new["records"][0] == full["records"][0]
    assert json.loads(old.read_text()) == half  # the file resumed from is left alone


def test_parallel_run_is_the_serial_run_in_catalogue_order_with_alone_cases_last(cli, require_root, tmp_path):
    # incoming_cpu declares RP_RUNS_ALONE; the other two come after it in the catalogue, so
    # a run that ignored the declaration would finish incoming_cpu variants before theirs.
    sel = ["--case", "incoming_cpu", "--case", "same_euid_rule", "--case", "time_wait_rebind", "--repeat", "2"]
    listed = run(cli, "list", *sel[:-2])
    assert listed.returncode == 0, listed.stderr
    counts = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+) \((\d+) variants\)$", listed.stdout, re.M)}
    assert set(counts) == {"incoming_cpu", "same_euid_rule", "time_wait_rebind"}, listed.stdout
    docs = {}
    for jobs in ("1", "2"):
        doc = tmp_path / f"j{jobs}.json"
        r = run(cli, "run", "-j", jobs, *sel, "--json", str(doc))
        assert r.returncode == 0, r.stdout + r.stderr
        docs[jobs] = json.loads(doc.read_text())
        finished = [v.split("/")[0] for _, _, v in started_variants(r.stdout)]
        assert len(finished) == len(docs[jobs]["records"]) == 2 * sum(counts.values()), r.stdout
        if jobs == "2":
            alone = counts["incoming_cpu"]
            assert f"2 at a time; {alone} variant(s) of cases that run alone after them" in r.stdout
            assert finished[-2 * alone:] == ["incoming_cpu"] * (2 * alone) and \
                "incoming_cpu" not in finished[:-2 * alone], finished
    # Same records in the same order (repeat by repeat, catalogue order), same verdicts;
    # each case x variant x repeat exactly once.
    assert [(key(x), x["verdict"]) for x in docs["2"]["records"]] == \
        [(key(x), x["verdict"]) for x in docs["1"]["records"]]
    assert len({key(x) for x in docs["2"]["records"]}) == len(docs["2"]["records"])
    assert errors(docs["2"], "run") == []


@pytest.mark.parametrize("change,args,says", [
    (lambda r: dict(r, kernel="2.6.32-other"), [], "from kernel 2.6.32-other"),
    (lambda r: dict(r, repeat=3), ["--repeat", "2"], "--repeat 4"),
    (lambda r: dict(r, variant="no_such_variant"), [], "outside this selection"),
    (lambda r: dict(r, verdict="MAYBE"), [], "unknown verdict 'MAYBE'"),
])
def test_resume_refuses_records_it_cannot_count(cli, tmp_path, change, args, says):
    rec = {"case": "close_listener_with_queued_children", "variant": "tcp4_close_k2_b8_migrate0",
           "kernel": os.uname().release, "repeat": 0, "expected": {}, "observed": {}, "verdict": "PASS",
           "reason": "", "source": "", "duration_s": 1.0}
    f = tmp_path / "x.json.jsonl"
    other = dict(rec, variant="tcp4_close_k2_b8_migrate1")
    f.write_text(json.dumps(rec) + "\n" + json.dumps(change(other)) + "\n")
    r = run(cli, "run", "--case", "close_listener_with_queued_children", "--resume", str(f), *args)
    assert r.returncode == 2, r
    assert len(r.stderr.splitlines()) == 2 and says in r.stderr.splitlines()[0], r.stderr  # + where the usage is
    assert r.stdout == "" and not (tmp_path / "x.json").exists()


def test_resume_of_a_missing_file_says_so(cli, tmp_path):
    r = run(cli, "run", "--resume", str(tmp_path / "none.json"))
    assert r.returncode == 2 and "none.json" in r.stderr.splitlines()[0]


def test_a_full_disk_stops_the_run_and_keeps_whole_records(cli, require_root, tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    # Room for the first document and a few records, not for eight.
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20k", "tmpfs", str(full)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        r = run(cli, "run", "--case", "close_listener_with_queued_children/tcp4_*_migrate0", "--json",
                str(full / "c.json"))
        recs, tail = journal(full / "c.json.jsonl")
    finally:
        subprocess.run(["umount", str(full)])
    assert r.returncode == 2, r.stdout + r.stderr
    assert "c.json.jsonl: No space left on device; no further case runs" in r.stderr
    ran = started_variants(r.stdout)
    assert 1 <= len(recs) <= len(ran) < 8  # stopped, and what was written is whole records
    for rec in recs:
        check_record(rec)
    assert "a case ended without a verdict" not in r.stdout


def test_default_jobs_is_four_per_cpu_at_most_64(cli, require_root, tmp_path):
    """Variants mostly wait on the kernel's timers, so `run` without -j runs 4 per usable CPU."""
    want = min(64, 4 * len(os.sched_getaffinity(0)))
    r = run(cli, "run", "--case", "bind_rules", "--json", str(tmp_path / "d.json"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"reuseport-check: {want} at a time;" in r.stdout, r.stdout
