#!/usr/bin/env bash
# Runs the benchmarks side by side (interleaved repetitions, one process each) and prints
# the ratios the project holds itself to. Needs root and a build in build/.
#   bench/run.sh [repetitions]   (default 5; the probe gets 30 paired rounds per repetition)
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

# The probe's cost (issue 14: at most 1%) is a difference of about 1% between rates that
# drift by more than that from one second to the next: bench_probe_cost_pairs measures it
# in paired rounds (30 per repetition asked for: 150 by default), each variant against the same round's
# run without the probe, with an A/A control. bench_probe_cost gives each program's runs
# per connection and run time, which explain it.
rounds=$(( ${1:-5} * 30 ))
if [[ -x build/bin/bench_probe_cost_pairs ]]; then
  echo
  build/bin/bench_probe_cost_pairs "$rounds" 4000 | sed -n '/rounds of/,$p'
fi
if [[ -x build/bin/bench_probe_cost ]]; then
  echo
  build/bin/bench_probe_cost --benchmark_repetitions=3 --benchmark_enable_random_interleaving=true \
    --benchmark_format=json --benchmark_out="$out" --benchmark_out_format=json >/dev/null
  /usr/bin/python3 - "$out" <<'PY'
import json, statistics, sys
runs = [b for b in json.load(open(sys.argv[1]))["benchmarks"] if b.get("run_type") == "iteration"]
names = {1: "every program", 2: "cases/watch/deploy", 3: "group (children)"}
# BPF_ENABLE_STATS adds its own clock reads to every run (tens of ns here), so the times
# bound the programs' from above; the runs per connection are exact. Each attached program
# costs about its runs times the dispatch of one tracepoint run, whatever its work.
for variant, name in names.items():
    bs = [b for b in runs if b["run_name"].split("/")[1] == f"probes:{variant}"]
    if not bs:
        continue
    med = lambda k: statistics.median(b[k] for b in bs)
    print(f"{name:20s} program runs per connection {med('bpf_runs_per_conn'):5.1f}, "
          f"their run time {med('bpf_ns_per_conn'):6.0f} ns per connection (medians of {len(bs)})")
    progs = sorted(k[5:] for k in bs[0] if k.startswith("runs_"))
    for p in progs:
        r, t = med("runs_" + p), med("ns_" + p)
        if r > 0:
            print(f"    {p:22s} {r:5.1f} runs  {t:6.0f} ns  ({t / r:4.0f} ns per run)")
PY
fi
