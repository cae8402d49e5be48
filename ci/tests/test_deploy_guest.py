"""`reuseport-check deploy` in a 5.10 guest: a kernel without SO_NETNS_COOKIE, where the
reuseport probe tells the deploy's network namespace by its inode. The naive swap of
docs/examples/serve loses connections; the probe's counts come back as numbers and
reconcile with what the clients saw, as on the host (cases/tests/test_deploy.py)."""

import shlex
import shutil
from pathlib import Path

import pytest

from ci.matrix import driver
from ci.vm.qemu import Timeouts
from results.schemas import errors

SERVE = driver.REPO / "docs" / "examples" / "serve"
BEGIN, END = "RP-DEPLOY-JSON-BEGIN", "RP-DEPLOY-JSON-END"


def guest_script(modules: list[str]) -> str:
    # The example scripts go in as they are; sock_diag needs the diag modules.
    lines = [f"insmod {shlex.quote(m)}" for m in modules]
    for name in ("start.sh", "swap.sh"):
        lines += [f"cat > /{name} <<'RP_EOF'", (SERVE / name).read_text().rstrip("\n"), "RP_EOF",
                  f"chmod +x /{name}"]
    lines += [shlex.join([driver.GUEST_BIN, "deploy", "--port", "8080",
                          # A slow server (2 listeners, 10 ms per accept: about 200
                          # connections/s against 32 in flight): its queues hold
                          # children whenever generation 1 closes, however slow the
                          # guest. At 1 ms a loaded TCG guest kept them empty (0 lost).
                          "--start", "/start.sh --accept-delay-ms 10",
                          "--deploy", "/swap.sh --accept-delay-ms 10",
                          "--warmup", "1", "--settle", "1", "--json", "/out.json"]),
              "rc=$?",
              f"echo; echo {BEGIN}; cat /out.json; echo; echo {END}",
              "exit $rc"]
    return "\n".join(lines) + "\n"


@pytest.mark.vm
@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="qemu missing")
def test_deploy_in_a_5_10_guest_reports_the_probes_counts(static_binary, tmp_path):
    boot = driver.boot_guest("5.10", guest_script, binary=static_binary, workdir=tmp_path,
                             timeouts=Timeouts(run=300.0), memory_mb=512)
    assert boot.result is not None, boot.error
    result = boot.result
    assert result.ok, f"phase {result.phase}: {result.error} (console: {result.console_log})"
    rep = driver.between_markers(result.output, BEGIN, END)
    assert result.exit_code == 1, result.output  # lost more than --max-lost 0
    assert errors(rep, "deploy") == []
    assert rep["kernel"].startswith("5.10."), rep["kernel"]
    t, k = rep["totals"], rep["kernel_totals"]
    print(f"# 5.10 guest ({result.accel}): attempts {t['attempts']}, lost {t['lost']}, "
          f"orphans {k['kernel_orphaned_children']}, orphan RSTs {k['kernel_orphan_resets']}, "
          f"other RSTs {k['kernel_other_resets_sent']}, "
          f"filter {rep['kernel_namespace_filter']!r}, outcomes {t['outcomes']}, "
          f"attribution {rep['attribution']}")
    assert isinstance(k["kernel_orphaned_children"], int), (k, rep["kernel_not_observable"])
    assert isinstance(k["kernel_orphan_resets"], int), (k, rep["kernel_not_observable"])
    assert rep["kernel_namespace_filter"].startswith("netns inode "), rep["kernel_namespace_filter"]
    assert t["lost"] > 0 and t["lost"] == t["attempts"] - t["served"], t
    # The orphans' RSTs are most of the losses, and every RST a client got the kernel counted.
    # Not every loss is an RST: in one CI run 3 of 34 were not (which outcome, that run did not
    # print; the line above now prints the outcomes and the attribution), and in 1 of
    # 10 runs here one more was lost than orphaned: a request still in SYN_RECV when its
    # listener closed, whose final ACK found no listener and got an RST, which the probe counts
    # among the other RSTs sent. So the reconciliation is the attribution's: every loss has one
    # named cause and none is left unattributed.
    resets = t["outcomes"]["reset_after_connect"] + t["outcomes"]["reset_before_connect"]
    assert k["kernel_orphaned_children"] == k["kernel_orphan_resets"], k
    assert k["kernel_resets_received"] == resets, (t, k)
    assert k["kernel_orphan_resets"] <= resets <= k["kernel_orphan_resets"] + k["kernel_other_resets_sent"], (t, k)
    a = rep["attribution"]
    assert a["client_visible"] == t["lost"] - t["http_bad_status"], (a, t)
    assert sum(a["causes"].values()) + a["unattributed"] == a["client_visible"], a
    assert a["unattributed"] == 0, (a, t)
    assert a["causes"]["orphaned_in_accept_queue"] == k["kernel_orphan_resets"], a
    assert k["kernel_listener_closes"] == 2, k
