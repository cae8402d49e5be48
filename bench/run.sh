#!/usr/bin/env bash
# Runs the benchmarks side by side (interleaved repetitions, one process each) and prints
# the ratios the project holds itself to. Needs root and a build in build/.
#   bench/run.sh [repetitions]   (default: 5 for the load generator, 9 for the probe)
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-5}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
build/bin/bench_loadgen --benchmark_repetitions="$reps" --benchmark_enable_random_interleaving=true \
  --benchmark_format=json --benchmark_out="$out" --benchmark_out_format=json >/dev/null
/usr/bin/python3 - "$out" <<'PY'
import json, statistics, sys
runs = [b for b in json.load(open(sys.argv[1]))["benchmarks"] if b.get("run_type") == "iteration"]
by = {}
for b in runs:
    by.setdefault(b["run_name"], []).append(b["conns_per_s"])
med = {k: statistics.median(v) for k, v in by.items()}
for k, v in sorted(med.items()):
    print(f"{k:45s} {v:9.0f} conns/s  (median of {len(by[k])}; min {min(by[k]):.0f}, max {max(by[k]):.0f})")
print()
for t, pairs in ((1, ["1/inflight:1", "1/inflight:16"]), (2, ["2/inflight:2", "2/inflight:32"])):
    bare = med[f"BM_BareLoop/threads:{t}/real_time"]
    for p in pairs:
        lg = med[f"BM_LoadGenerator/threads:{p}/real_time"]
        print(f"load generator threads:{p:14s} / bare loop threads:{t}: {lg / bare:.3f}x  (target >= 0.95)")
PY

# The probe's cost is a difference of about 1% between noisy rates: it gets 9 repetitions
# (issue 14) unless a count is given.
probe_reps=${1:-9}
if [[ -x build/bin/bench_probe_cost ]]; then
  echo
  build/bin/bench_probe_cost --benchmark_repetitions="$probe_reps" --benchmark_enable_random_interleaving=true \
    --benchmark_format=json --benchmark_out="$out" --benchmark_out_format=json >/dev/null
  /usr/bin/python3 - "$out" <<'PY'
import json, statistics, sys
runs = [b for b in json.load(open(sys.argv[1]))["benchmarks"] if b.get("run_type") == "iteration"]
by, run_time = {}, {}
for b in runs:
    if "conns_per_s" in b:
        by.setdefault(b["run_name"], []).append(b["conns_per_s"])
    else:  # BM_ProbeRunTime: the kernel's own run time of the programs, per connection
        run_time.setdefault(b["run_name"].split("/")[1], []).append(b)
def pick(variant):
    return next(v for k, v in by.items() if k.startswith(f"BM_ConnectionRate/probes:{variant}/"))
names = {0: "without probe", 1: "every program", 2: "cases/watch/deploy", 3: "group (children)"}
off = pick(0)
for variant, name in names.items():
    v = pick(variant)
    print(f"{name:20s} {statistics.median(v):9.0f} conns/s  (median of {len(v)}; min {min(v):.0f}, max {max(v):.0f})")
print()
# The ratio of medians, and the wall time each connection gains (1/rate_on - 1/rate_off:
# the load runs two client threads, so this is time per connection, not CPU time).
# Spread: the ratios of the i-th repetitions of both, smallest and largest.
for variant in (1, 2, 3):
    on = pick(variant)
    ratio = statistics.median(on) / statistics.median(off)
    ns = 1e9 / statistics.median(on) - 1e9 / statistics.median(off)
    pairs = sorted(a / b for a, b in zip(on, off))
    print(f"{names[variant]:20s} / without: {ratio:.3f}x  (cost {100 * (1 - ratio):.1f}%, {ns:+.0f} ns per connection; "
          f"per-repetition ratios {pairs[0]:.3f}..{pairs[-1]:.3f}, median {statistics.median(pairs):.3f}; target <= 1%)")
print()
# BPF_ENABLE_STATS adds its own clock reads to every run (tens of ns here), so these bound
# the programs' time from above; the runs per connection are exact.
for variant in (1, 2, 3):
    bs = run_time.get(f"probes:{variant}", [])
    if bs:
        runs_pc = statistics.median(b["bpf_runs_per_conn"] for b in bs)
        ns_pc = statistics.median(b["bpf_ns_per_conn"] for b in bs)
        print(f"{names[variant]:20s} program runs per connection {runs_pc:5.1f}, their run time {ns_pc:6.0f} ns per connection")
PY
fi
