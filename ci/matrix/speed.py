"""How much slower than the host a guest runs: measured at each boot, not assumed.

The cases' own limits (run_isolated's timeout, the migrate case's stall) are multiplied by
RP_TIMEOUT_SCALE. A constant (it was 10) is wrong both ways: KVM guests run at the host's
speed, TCG guests at a tenth of it or less on a loaded machine, and two variants at once
on a single-threaded TCG guest at half that again. So the same busybox loop, the same
static binary on both sides, is timed on the host once per driver and in the guest right
before the cases run, as many copies at once as the guest runs variants at once; the scale
follows the ratio (WAIT_SHARE says how). The guest prints it on a line of its own:

    RP-SCALE <scale> <guest ms> <host us> <copies>

which the driver reads back (scale_of) to size its own idle limit for the guest.
"""

from __future__ import annotations

import math
import re
import subprocess
import time
from functools import lru_cache

from ci.vm.initramfs import find_busybox

# The speed of ordinary code: shell arithmetic, about 1 ms on the host and 40-100 ms in
# a TCG guest, which delays the guest's first result by that much. Forks were tried as
# well: TCG slows them 20 times more than the rest, and a scale of 34 made limits absurd.
LOOP = "i=0; while [ $i -lt 1000 ]; do i=$((i+1)); done"
HOST_REPEAT = 60  # the host runs it this many times in one shell: 1 ms is below its noise
# The cases spend most of their time waiting on the kernel's timers and the clients'
# retries, which emulation does not slow: the whole catalogue ran clean here at a scale of
# 10 while the loop ran 20 to 100 times slower in the TCG guest than on the host (60 at the
# median, 2 guests and 3 other jobs on 2 cores). So the scale is the loop's ratio / 6.
WAIT_SHARE = 6
MIN_SCALE, MAX_SCALE = 1, 100  # what cases/lib/case.cc accepts
SCALE_RE = re.compile(r"^RP-SCALE (\d+) (\d+) (\d+) (\d+)$", re.M)


def _time(argv: list[str]) -> float:
    t0 = time.monotonic()
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)
    return time.monotonic() - t0


@lru_cache(maxsize=1)
def host_us() -> int:
    """One loop's time on the host in microseconds: the fastest of 5 measurements of
    HOST_REPEAT loops in one shell, less the shell's start (at least 1). The fastest: the
    others measure the machine's other work, which the guest's own measurement also has."""
    busybox = str(find_busybox())
    many = f"for k in $(seq {HOST_REPEAT}); do {LOOP}; done"
    times = []
    for _ in range(5):
        empty = _time([busybox, "sh", "-c", "true"])
        times.append((_time([busybox, "sh", "-c", many]) - empty) / HOST_REPEAT)
    return max(1, round(min(times) * 1e6))


def guest_lines(copies: int, host: int | None = None) -> list[str]:
    """Shell lines for the guest's script: time `copies` loops at once, export the scale.

    /proc/uptime has 10 ms steps; the loop takes seconds under TCG, so that is enough.
    """
    host = host or host_us()
    copies = max(1, copies)
    return [
        # "12.08 ...": whole seconds and hundredths; a leading 0 would read as octal.
        "rp_ms() { read -r up _ </proc/uptime; f=${up#*.}; f=${f#0}; "
        "echo $(( ${up%.*} * 1000 + f * 10 )); }",
        "t0=$(rp_ms)",
        f"for c in $(seq {copies}); do ( {LOOP} ) & done; wait",
        "t1=$(rp_ms)",
        "g=$((t1 - t0)); [ $g -gt 0 ] || g=10",
        *scale_lines(host, copies),
    ]


def scale_lines(host: int, copies: int) -> list[str]:
    """From $g (the guest's ms): the scale, its line, and RP_TIMEOUT_SCALE."""
    return [
        f"s=$(( (g * 1000 + {host} * {WAIT_SHARE} - 1) / ({host} * {WAIT_SHARE}) ))",
        f"[ $s -ge {MIN_SCALE} ] || s={MIN_SCALE}; [ $s -le {MAX_SCALE} ] || s={MAX_SCALE}",
        f"echo \"RP-SCALE $s $g {host} {copies}\"",
        "export RP_TIMEOUT_SCALE=$s",
    ]


def scale_of(output: str) -> dict | None:
    """{"scale", "guest_ms", "host_us", "copies"} of the guest's RP-SCALE line, or None."""
    m = SCALE_RE.search(output)
    if not m:
        return None
    scale, guest, host, copies = (int(g) for g in m.groups())
    return {"scale": scale, "guest_ms": guest, "host_us": host, "copies": copies}


def expected_scale(guest_ms: int, host_us: int) -> int:
    """What guest_lines computes, in Python (the tests check the shell against it)."""
    return min(MAX_SCALE, max(MIN_SCALE, math.ceil(guest_ms * 1000 / (host_us * WAIT_SHARE))))
