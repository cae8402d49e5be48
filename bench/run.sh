#!/usr/bin/env bash
# Runs the benchmarks side by side (interleaved repetitions, one process each) and prints
# the ratios the project holds itself to. Needs root and a build in build/.
#   bench/run.sh [repetitions]
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

if [[ -x build/bin/bench_probe_cost ]]; then
  echo
  build/bin/bench_probe_cost --benchmark_repetitions="$reps" --benchmark_enable_random_interleaving=true \
    --benchmark_format=json --benchmark_out="$out" --benchmark_out_format=json >/dev/null
  /usr/bin/python3 - "$out" <<'PY'
import json, statistics, sys
runs = [b for b in json.load(open(sys.argv[1]))["benchmarks"] if b.get("run_type") == "iteration"]
by = {}
for b in runs:
    by.setdefault(b["run_name"], []).append(b["conns_per_s"])
def pick(prefix):
    return next(v for k, v in by.items() if k.startswith(prefix))
off = pick("BM_ConnectionRate/probes:0/")
on = pick("BM_ConnectionRate/probes:1/")
for name, v in (("without probes", off), ("with probes", on)):
    print(f"{name:15s} {statistics.median(v):9.0f} conns/s  (median of {len(v)}; min {min(v):.0f}, max {max(v):.0f})")
ratio = statistics.median(on) / statistics.median(off)
print(f"with / without probes: {ratio:.3f}x  (cost {100 * (1 - ratio):.1f}%, target <= 3%)")
PY
fi
