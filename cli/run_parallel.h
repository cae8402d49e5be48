// `run -j N`: the selection's GoogleTest run, spread over N worker processes.
//
// Every worker is a fork of `run` taken just before RUN_ALL_TESTS and runs RUN_ALL_TESTS
// over the same filter; the case x variant x repeat items are claimed from a table in shared
// memory (one atomic flag each), so each runs exactly once, on whichever worker reaches it
// first: a worker that finishes a short variant takes the next free one (no static split to
// be unbalanced by one 5 s variant). A worker runs an item as `run` does serially (run_case
// -> run_isolated: its own child, network namespace and timeout) and sends the record back
// to `run` over its own pipe, one JSON line per record. `run` alone owns the console, the
// journal and document, the table and the exit status, as in a serial run.
//
// Items of cases that declared RP_RUNS_ALONE run after the parallel phase, in one worker,
// one at a time with nothing beside them.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "cases/lib/record.h"

namespace rp::cli {

// The CPUs this process may run on (sched_getaffinity).
int usable_cpus();

// The default of -j: kJobsPerCpu per usable CPU, at most kMaxDefaultJobs. Most variants
// wait on the kernel's timers (a SYN dropped at a full queue is retried after 1 s, a
// SYN+ACK timer, a probe's attach) rather than on the CPUs, so one variant per CPU leaves
// them idle: the catalogue here (2 CPUs) took 44.7 s at -j 2, 25.2 s at -j 4 and 17.4 s at
// -j 8 with the same verdicts (bench/run_jobs.py measures it again, interleaved).
inline constexpr int kJobsPerCpu = 4;
inline constexpr int kMaxDefaultJobs = 64;
int default_jobs();

struct ParallelRun {
  // The items, in catalogue order: GoogleTest full name, case, variant.
  struct Item {
    std::string full, case_name, variant;
    bool alone = false;
  };
  std::vector<Item> items;
  int repeat = 1;
  int jobs = 2;
  // Already finished (--resume): not run, not claimed.
  std::function<bool(const std::string& case_name, const std::string& variant, int repeat)> kept;
  // In `run`, as records arrive; `finished` returns false once records can no longer be
  // saved, and the workers then start nothing new.
  std::function<void(const std::string& case_name, const std::string& variant)> starting;
  std::function<bool(const rp::cases::Record&)> finished;
  // In the worker, when run_case emitted a record (GoogleTest's failure for it is reported).
  std::function<void()> record_seen_in_worker;
};

// Runs both phases and returns "" when every worker ended normally, otherwise what went
// wrong (a worker killed by a signal: its item in flight has no record, which `run`
// reports as a case without a verdict).
std::string run_parallel(const ParallelRun& run);

}  // namespace rp::cli
