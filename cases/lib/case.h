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

// Call as the whole body of a TEST_P. Returns the record it emitted.
Record run_case(const std::string& case_name, const std::string& variant, const Scenario& scenario,
                std::chrono::milliseconds timeout = std::chrono::seconds(60));

// How much slower than the host this machine runs: $RP_TIMEOUT_SCALE (1..100; the matrix
// sets 10 in emulated guests), 1 otherwise. Case timeouts and windows are multiplied by it.
int timeout_scale();

// "close_listener_with_queued_children" from the running test's suite name, and the variant
// from its parameter name ("Variants/x.run/tcp4_close" -> "tcp4_close").
std::string current_case_name();
std::string current_variant();

}  // namespace rp::cases
