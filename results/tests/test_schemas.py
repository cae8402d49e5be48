"""The schemas of results/schemas: every committed document follows its schema, and each
schema rejects a document that breaks it (a count as a string, a missing key, a verdict
that is none of the six), so a passing validation means something.

The program's real output is checked where the tests already produce it:
cases/tests/test_cli.py (run), test_deploy.py (deploy), test_watch.py (watch),
ci/tests/test_matrix_driver.py (matrix, results.json) and test_report_driver.py (report).
"""
import copy
import json
from pathlib import Path

import jsonschema
import pytest

from results.schemas import NAMES, errors, schema, validate

RESULTS = Path(__file__).resolve().parents[1]


def committed(pattern: str) -> list[Path]:
    files = sorted(RESULTS.glob(pattern))
    assert files, f"no committed document matches results/{pattern}"
    return files


@pytest.mark.parametrize("name", sorted(NAMES))
def test_every_schema_is_draft_2020_12(name):
    jsonschema.Draft202012Validator.check_schema(schema(name))
    assert schema(name)["$id"].endswith(f"/{name}.schema.json")


@pytest.mark.parametrize("path", committed("*/results.json"), ids=lambda p: p.parent.name)
def test_committed_results_follow_the_schema(path):
    doc = json.loads(path.read_text())
    assert errors(doc, "results") == []
    assert doc["kernel"] == path.parent.name
    for rec in doc["records"]:
        assert errors(rec, "run-record") == []


@pytest.mark.parametrize("path", committed("report/data/*.json") + committed("tests/data/report_*.json"),
                         ids=lambda p: p.name)
def test_committed_report_data_follows_the_schema(path):
    assert errors(json.loads(path.read_text()), "report-data") == []


# ---------------------------------------------------------------------------------------
# Each schema can fail. Minimal documents of each kind, valid as they are, then broken.

RECORD = {"case": "close_listener_with_queued_children", "variant": "tcp4_close_k2_b8_migrate0",
          "kernel": "6.1.0-50-cloud-amd64", "repeat": 0,
          "expected": {"client_resets": 9, "served": {"min": 1}, "kernel_orphan_resets": None},
          "observed": {"client_resets": 9, "served": 3, "kernel_orphan_resets": None,
                       "kernel_not_observable": {"kernel_orphan_resets": "no BTF"},
                       "ledger_mismatches": []},
          "verdict": "PASS", "reason": "not observable on this kernel: kernel_orphan_resets",
          "source": "net/ipv4/inet_connection_sock.c", "duration_s": 0.5}

RUN = {"schema": "reuseport-check/results/1", "tool": "reuseport-check", "kernel": "6.1.0-50-cloud-amd64",
       "machine": "x86_64", "finished_at": "2026-11-23T19:33:33Z", "command": ["reuseport-check", "run"],
       "expectations": "built in", "records": [RECORD]}

WATCH_COUNTS = {"kernel_listener_closes": 1, "kernel_orphaned_children": 5, "kernel_orphan_resets": 5,
                "kernel_other_resets_sent": 0, "kernel_resets_received": 5, "kernel_migrate_target_found": None,
                "netstat_listen_overflows": 0, "netstat_listen_drops": 0, "netstat_req_q_full_do_cookies": 0,
                "netstat_migrate_req_success": None, "netstat_migrate_req_failure": None, "listeners": 1,
                "accept_queue": 0}
WATCH = {"schema": "reuseport-check/watch/1", "port": 8080, "namespace": "the current network namespace",
         "netns_filter": True, "kernel": "6.1.0", "interval_s": 0.5, "complete": True,
         "samples": [dict(WATCH_COUNTS, t=0.5, joined=0, left=1)],
         "totals": dict(WATCH_COUNTS, listeners_at_start=2, listeners_joined=0, listeners_left=1),
         "sources": {"kernel_listener_closes": "x", "kernel_migrate_target_found": "x",
                     "listeners, accept_queue, joined/left": "x"}}

GROUP_MEMBER = {"cookie": 4097, "inode": 812345, "group": "kernel group 3", "protocol": "tcp", "family": "inet",
                "address": "127.0.0.1", "port": 8080, "v6only": None, "state": 10, "uid": 0, "bound_ifindex": 0,
                "reuseport": True, "backlog": 511, "accept_queue": 0, "receive_queue_bytes": None, "drops": 0,
                "incoming_cpu": -1, "new": 40, "share": 0.5,
                "owners": [{"pid": 120, "ppid": 119, "comm": "nginx", "start_ticks": 5000, "start_time": 1.7e9,
                            "fds": [6]}]}
GROUP = {"schema": "reuseport-check/group/1", "complete": True, "port": 8080, "protocol": "tcp",
         "namespace": "the current network namespace", "kernel": "6.18.0", "interval_s": 1.0, "watch": True,
         "sources": {"group": "x"}, "not_observable": {},
         "changes": [{"t": 1.0, "event": "joined", "cookie": 4097, "member": GROUP_MEMBER},
                     {"t": 2.0, "event": "left", "cookie": 4097, "member": None}],
         "samples": [{"t": 1.0, "members": [GROUP_MEMBER], "joined": [4097], "left": [], "gone": [{"cookie": 4096, "new": 3}],
                      "groups": [{"label": "kernel group 3", "source": "kernel", "reuseport_id": 3,
                                  "kernel_num_socks": 2, "members": [4097], "new": 80,
                                  "program": {"id": 12, "type": "sk_reuseport", "attach_type": "", "name": "x"}}]}]}

OUTCOMES = {"served": 10, "reset_before_connect": 0, "reset_after_connect": 2, "refused": 0, "connect_timeout": 0,
            "response_timeout": 0, "closed_without_response": 0, "other_error": 0}
KERNEL_COUNTERS = ["kernel_listener_closes", "kernel_orphaned_children", "kernel_orphan_resets",
                   "kernel_resets_received", "kernel_other_resets_sent", "kernel_no_socket_drops",
                   "kernel_listen_overflow_drops", "netstat_listen_overflows", "netstat_listen_drops",
                   "netstat_req_q_full_drop", "netstat_migrate_req_success", "netstat_migrate_req_failure",
                   "netstat_abort_on_close"]
ATTRIBUTION = {"method": "socket state and owner", "client_visible": 2, "client_visible_source": "the clients' outcomes",
               "causes": {"orphaned_in_accept_queue": 2, "request_of_closed_listener": 0, "closed_by_owner": 0,
                          "closed_before_answering": 0, "refused_by_steering": 0, "no_listener": 0, "syn_retries_exhausted": 0,
                          "ack_dropped_on_full_queue": 0},
               "evidence": {"orphaned_in_accept_queue": "kernel_orphan_resets"}, "unattributed": 0,
               "unnamed_resets_sent": 0, "not_seen_by_clients": {"listener_fin_resets": 1},
               "not_separated": {"migrated_then_reset": "counted as orphaned"}}
DEPLOY = {"schema": "reuseport-check/deploy/1", "kernel": "6.1.0", "port": 8080, "namespace": "private",
          "start": {"command": "./start.sh"},
          "deploy": {"command": "./swap.sh", "status": "exited with status 0", "duration_s": 0.2, "output_tail": []},
          "load": {"protocol": "wire", "mode": "closed", "concurrency": 8, "rate": 0, "threads": 1, "warmup_s": 0.5,
                   "settle_s": 0.5, "target": "127.0.0.1:8080"},
          "totals": {"attempts": 12, "served": 10, "lost": 2, "http_bad_status": 0, "outcomes": OUTCOMES,
                     "errnos": {}, "http_status": {}},
          "kernel_totals": {k: 0 for k in KERNEL_COUNTERS} | {"kernel_listen_overflow_drops": None},
          "kernel_namespace_filter": "netns inode 4026532118 (no SO_NETNS_COOKIE before 5.14)",
          "kernel_sources": {"kernel_listener_closes": "tracepoint"},
          "kernel_not_observable": {"kernel_listen_overflow_drops": "no BTF"},
          "kernel_errors": {},
          "causes": ["2 reset by the server"],
          "timeline": [{"from_s": 0.0, "to_s": 0.05, "listeners": 1, "accept_queue": 0,
                        "client_lost": {"reset_after_connect": 2}, "kernel": {"kernel_orphaned_children": 2}}],
          "listeners": [[-0.5, 1, 0], [0.0, 2, 0]], "max_lost": 0, "verdict": "fail",
          "attribution": ATTRIBUTION}

DEPLOY_UDP = {"schema": "reuseport-check/deploy-udp/1", "kernel": "6.18.0", "port": 8053, "namespace": "private",
              "start": {"command": "./start.sh"},
              "deploy": {"command": "./swap.sh", "status": "exited with status 0", "duration_s": 0.1, "output_tail": []},
              "load": {"protocol": "udp_flows", "mode": "closed", "flows": 4, "in_flight": 1, "rate": 0, "threads": 1,
                       "reply_timeout_s": 1.0, "warmup_s": 0.5, "settle_s": 0.5, "target": "127.0.0.1:8053"},
              "datagrams": {"sent": 100, "answered": 95, "late": 1, "lost": 4},
              "flows": {"count": 4, "outcomes": {"stayed": 1, "moved": 1, "lost": 1, "moved_and_lost": 1}, "broken": 2,
                        "moves": [{"flow": 1, "at_s": 0.01, "from": 2561, "to": 2816, "moves": 1}],
                        "broken_not_observable": None, "answers_by_member": {"2561": 50, "2816": 46}},
              "request": "flow",
              "kernel_totals": {"udp_no_ports": 3, "udp_rcvbuf_errors": 0, "udp_in_errors": 0, "udp_queue_purged": 1},
              "kernel_drops": [{"function": "udp_destruct_common", "reason": "NOT_SPECIFIED", "count": 1,
                                "purged_at_close": True}],
              "kernel_sources": {"udp_no_ports": "/proc/net/snmp Udp.NoPorts"},
              "kernel_not_observable": {"queue_purged_at_close": "no counter"},
              "attribution": {"lost": 4, "causes": {"no_socket": 3, "receive_buffer_full": 0, "other_receive_errors": 0,
                                         "queue_purged_at_close": 1},
                              "evidence": {"no_socket": "Udp.NoPorts 3"}, "unattributed": 0, "beyond_losses": {}},
              "timeline": [{"from_s": 0.0, "to_s": 0.05, "members": 2, "receive_queue_bytes": 0,
                            "client": {"lost": 4, "moved": 2}, "kernel": {"udp_no_ports": 3}}],
              "members": [[-0.5, 2, 0], [0.0, 4, 768]], "max_lost": 0, "verdict": "fail"}

MATRIX = {"schema": "reuseport-check/matrix/1", "complete": True,
          "kernels": [{"name": "running", "release": "6.1.0", "error": ""}, {"name": "6.12"}],
          "records": [RECORD]}

REPORT = json.loads((RESULTS / "tests" / "data" / "report_small.json").read_text())

RESULTS_MATRIX = {"kernel": "6.1", "package": "p", "version": "1"}
# results/<release>/results.json after two runs merged (ci/matrix/driver.py results_document).
RESULTS_DOC = dict(RUN, matrix=RESULTS_MATRIX, runs=[
    {"command": ["reuseport-check", "run"], "started_at": None, "finished_at": "2026-11-23T19:33:33Z",
     "expectations": "built in", "matrix": RESULTS_MATRIX,
     "records": ["close_listener_with_queued_children/tcp4_close_k2_b8_migrate0 #0"]},
    {"command": ["reuseport-check", "run", "--case", "bind_rules"], "started_at": "2026-11-24T19:33:00Z",
     "finished_at": "2026-11-24T19:33:33Z", "expectations": "built in", "matrix": RESULTS_MATRIX,
     "records": ["bind_rules/tcp4_both_reuseport #0"]}])

DEPLOY_KERNELS = {"schema": "reuseport-check/deploy-kernels/1", "complete": True, "deploy_args": ["--port", "8080"],
                  "kernels": [{"kernel": "6.1", "release": "6.1.0", "verdict": "PASS", "exit_code": 0, "error": "",
                               "environment": {"where": "guest"}, "output": "", "deploy": DEPLOY},
                              {"kernel": "5.10", "release": None, "verdict": "ERROR", "exit_code": None,
                               "error": "did not boot", "environment": {"where": "guest"}, "output": "",
                               "deploy": None}]}
VALID = {"run-record": RECORD, "run": RUN, "results": RESULTS_DOC,
         "watch": WATCH, "group": GROUP, "deploy": DEPLOY, "matrix": MATRIX, "report-data": REPORT,
         "deploy-kernels": DEPLOY_KERNELS, "deploy-udp": DEPLOY_UDP,
         # results/tests/test_servers.py breaks it rule by rule.
         "servers": json.loads((RESULTS / "servers" / "servers.json").read_text())}


def broken(doc, path, value=KeyError):
    """A copy of doc with the item at path (keys and indexes) set to value, or removed."""
    doc = copy.deepcopy(doc)
    *parents, last = path
    at = doc
    for p in parents:
        at = at[p]
    if value is KeyError:
        del at[last]
    else:
        at[last] = value
    return doc


def test_every_schema_has_a_valid_example_here():
    assert set(VALID) == set(NAMES)
    for name, doc in VALID.items():
        assert errors(doc, name) == [], name


def first_ok_deploy_run(doc):
    return next(i for i, r in enumerate(doc["runs"]) if r["status"] == "ok" and r["strategy"])


BROKEN = [
    # (schema, path, value): a count as a string, a required key missing, a value outside its set.
    ("run-record", ["observed", "client_resets"], "9"),
    ("run-record", ["observed", "kernel_orphan_resets"], -1),
    ("run-record", ["verdict"], "OK"),
    ("run-record", ["source"], KeyError),
    ("run-record", ["observed", "Served"], 1),
    ("run", ["records", 0, "repeat"], "0"),
    ("run", ["finished_at"], KeyError),
    ("run", ["schema"], "reuseport-check/results/2"),
    ("run", ["extra"], 1),
    ("run", ["finished_at"], None),  # null only while complete is false
    ("run", ["complete"], "yes"),
    ("results", ["matrix"], KeyError),
    ("results", ["records", 0, "duration_s"], None),
    ("results", ["runs"], []),
    ("results", ["runs", 0, "records"], []),
    ("results", ["runs", 0, "records", 0], "close_listener_with_queued_children/tcp4_close_k2_b8_migrate0"),
    ("results", ["runs", 1, "matrix"], KeyError),
    ("results", ["runs", 1, "matrix", "kernel"], KeyError),
    ("results", ["runs", 1, "command"], []),
    ("results", ["runs", 1, "finished_at"], "yesterday"),
    ("results", ["runs", 1, "host"], "x"),
    ("deploy-udp", ["attribution", "unattributed"], KeyError),  # always present
    ("deploy-udp", ["attribution", "unattributed"], None),
    ("deploy-udp", ["datagrams", "lost"], -1),
    ("deploy-udp", ["timeline", 0, "client", "refused"], 1),
    ("deploy-udp", ["load", "protocol"], "wire"),
    ("deploy-udp", ["request"], "dns"),
    ("deploy-udp", ["attribution", "causes", "queue_purged_at_close"], KeyError),  # null when not observable
    ("deploy-udp", ["kernel_drops", 0, "purged_at_close"], "yes"),
    ("watch", ["samples", 0, "kernel_orphan_resets"], "5"),
    ("watch", ["totals", "netstat_listen_overflows"], -1),
    ("watch", ["complete"], KeyError),
    ("watch", ["totals", "listeners_left"], KeyError),
    ("watch", ["samples", 0, "listeners"], None),
    ("watch", ["samples", 0, "netstat_Bogus"], 0),
    ("group", ["samples", 0, "members", 0, "share"], 1.5),
    ("group", ["samples", 0, "members", 0, "accept_queue"], "0"),
    ("group", ["samples", 0, "groups", 0, "program"], None),  # null needs its program_why
    ("group", ["samples", 0, "groups", 0, "source"], "guessed"),
    ("group", ["changes", 0, "event"], "moved"),
    ("group", ["not_observable"], KeyError),
    ("group", ["samples", 0, "gone", 0, "new"], 0),
    ("deploy", ["totals", "lost"], "2"),
    ("deploy", ["kernel_totals", "kernel_orphan_resets"], KeyError),
    ("deploy", ["kernel_totals", "ListenOverflows"], 0),
    ("deploy", ["kernel_namespace_filter"], "by cookie"),
    ("deploy", ["totals", "outcomes", "served"], None),
    ("deploy", ["verdict"], "PASS"),
    ("deploy", ["listeners", 0], [0.0, 1]),
    ("deploy", ["attribution"], KeyError),
    ("deploy", ["attribution", "unattributed"], KeyError),
    ("deploy", ["attribution", "unattributed"], -1),
    ("deploy", ["attribution", "causes", "no_listener"], KeyError),
    ("deploy", ["attribution", "causes", "Orphans"], 1),
    ("matrix", ["records", 0, "observed", "served"], "3"),
    ("matrix", ["kernels", 0, "name"], KeyError),
    ("matrix", ["complete"], KeyError),
    ("matrix", ["kernels", 1, "release"], "6.12.0"),
    ("report-data", ["ceiling", "served_per_second"], "12995"),
    ("report-data", ["runs", 0, "status"], KeyError),
    ("report-data", ["runs", 0, "kernel_counts", "kernel_orphan_resets"], "0"),
    ("report-data", ["profile"], "medium"),
]


@pytest.mark.parametrize("name, path, value", BROKEN,
                         ids=[f"{n}:{'/'.join(map(str, p))}={'missing' if v is KeyError else json.dumps(v)}"
                              for n, p, v in BROKEN])
def test_a_broken_document_is_rejected(name, path, value):
    doc = VALID[name]
    if name == "report-data" and path[0] == "runs":
        path = ["runs", first_ok_deploy_run(doc), *path[2:]]
    bad = broken(doc, path, value)
    assert errors(bad, name), f"{name} accepted {path} = {value!r}"
    with pytest.raises(jsonschema.ValidationError):
        validate(bad, name)


def test_an_unknown_schema_name_is_an_error():
    with pytest.raises(KeyError, match="no schema 'results/1'"):
        validate({}, "results/1")
