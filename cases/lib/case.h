// The frame every conformance case runs in: look up what the running kernel should do,
// run the scenario isolated (own process group, network namespace, timeout), judge what it
// observed, emit the record, and tell GoogleTest.
#pragma once

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "cases/lib/record.h"

namespace rp::cases {

// What a scenario returns: named counts, and the ledger's reconciliation. A non-empty
// "ledger_mismatches" list fails the case whatever the expectations say: counts that do not
// add up cannot be compared with anything.
using Scenario = std::function<nlohmann::json()>;

// Call as the whole body of a TEST_P. Returns the record it emitted (or, for a kept or
// dropped run, the record it did not run).
Record run_case(const std::string& case_name, const std::string& variant, const Scenario& scenario,
                std::chrono::milliseconds timeout = std::chrono::seconds(60));

// What run_case does with a case x variant x repeat before it runs anything. The CLI
// decides: `run --resume` keeps the records an earlier run finished (they are neither run
// again nor emitted: the CLI has them), and a run that can no longer save its records stops
// running cases rather than measure what it would lose. Without a planner, everything runs.
// Under `run -j N` every worker process walks the whole selection and runs only what it
// claimed first; what another worker runs is Elsewhere: no record here, no GoogleTest result.
enum class Plan { Run, Keep, Drop, Elsewhere };
using Planner = std::function<Plan(const std::string& case_name, const std::string& variant, int repeat)>;
void set_planner(Planner planner);

// A case whose verdict needs the machine to itself (it pins threads to CPUs, or counts what
// happens within a time window) declares so in its own file, with the reason in a comment:
//   RP_RUNS_ALONE(incoming_cpu);
// `run -j N` then runs its variants after the parallel ones, one at a time, nothing beside.
bool declare_runs_alone(const char* case_name);
bool runs_alone(const std::string& case_name);
#define RP_RUNS_ALONE(NAME) \
  [[maybe_unused]] static const bool rp_runs_alone_##NAME = ::rp::cases::declare_runs_alone(#NAME)

// How much slower than the host this machine runs: $RP_TIMEOUT_SCALE (1..100; the matrix
// sets 10 in emulated guests), 1 otherwise. Case timeouts and windows are multiplied by it.
int timeout_scale();

// "close_listener_with_queued_children" from the running test's suite name, and the variant
// from its parameter name ("Variants/x.run/tcp4_close" -> "tcp4_close").
std::string current_case_name();
std::string current_variant();

}  // namespace rp::cases
