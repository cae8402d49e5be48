#!/usr/bin/python3
"""`run -j N` against `run -j 1`: the whole catalogue's wall time at each -j, measured in
rounds that interleave the values (j1, j2, j4, j1, j2, j4, ...) so that a change in the
machine's load hits them all alike; prints each time, the medians and their ratio to -j 1,
and whether every run gave the same verdict per case x variant as the first -j 1 run.
Needs root and a build (RP_BUILD_DIR, default build/).

    bench/run_jobs.py [--rounds 3] [--jobs 1,2,4,8] [--case GLOB]...
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--jobs", default="1,2,4,8", help="comma-separated -j values (1 is the reference)")
    ap.add_argument("--case", action="append", default=[], help="passed to run --case")
    a = ap.parse_args()
    jobs = [int(j) for j in a.jobs.split(",")]
    if 1 not in jobs:
        jobs.insert(0, 1)
    cli = pathlib.Path(os.environ.get("RP_BUILD_DIR", REPO / "build")) / "bin" / "reuseport-check"
    if not cli.exists():
        sys.exit(f"run_jobs.py: no {cli}; build first or set RP_BUILD_DIR")
    cases = [x for c in a.case for x in ("--case", c)]
    times = {j: [] for j in jobs}
    reference, differ, slowest = None, [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(a.rounds):
            for j in jobs:
                doc = pathlib.Path(tmp) / f"r{rnd}-j{j}.json"
                t0 = time.monotonic()
                r = subprocess.run([str(cli), "run", "-j", str(j), "--json", str(doc), *cases],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                wall = time.monotonic() - t0
                if r.returncode == 2:
                    sys.exit(f"run_jobs.py: run -j {j} refused: {r.stderr.strip()}")
                recs = json.loads(doc.read_text())["records"]
                verdicts = {(x["case"], x["variant"]): x["verdict"] for x in recs}
                times[j].append(wall)
                if reference is None:
                    reference = verdicts
                diff = sorted(f"{c}/{v}: {reference.get((c, v))} -> {verdicts.get((c, v))}"
                              for c, v in set(reference) | set(verdicts) if reference.get((c, v)) != verdicts.get((c, v)))
                differ += [f"round {rnd} -j {j}: {d}" for d in diff]
                top = max(recs, key=lambda x: x["duration_s"])
                slowest[j] = (top["case"] + "/" + top["variant"], top["duration_s"])
                print(f"round {rnd}  -j {j}: {wall:6.1f} s  {len(recs)} records, exit {r.returncode}, "
                      f"{len(diff)} verdict(s) differ from the first -j 1", flush=True)
    print()
    base = statistics.median(times[1])
    for j in jobs:
        med = statistics.median(times[j])
        print(f"-j {j}: median {med:6.1f} s (min {min(times[j]):.1f}, max {max(times[j]):.1f})  "
              f"-j 1 / -j {j} = {base / med:.2f}x  longest variant {slowest[j][0]} {slowest[j][1]:.1f} s")
    print(f"\nload average now: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPU(s)")
    print("verdicts: identical in every run" if not differ else "verdicts that differ:\n  " + "\n  ".join(differ))
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
