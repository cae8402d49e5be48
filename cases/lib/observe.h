// Turning what a scenario saw into the named counts of a record.
#pragma once

#include <nlohmann/json.hpp>

#include "harness/ledger.h"
#include "harness/server.h"

namespace rp::cases {

// attempts, served, one count per outcome (by its stable name), client_resets (reset before
// or after connect), failed, and ledger_mismatches from reconcile() against the servers.
nlohmann::json ledger_counts(const Ledger& clients, const ListenerGroup& servers);

// For cases whose clients count answers themselves (UDP, fixed flows): answered, served (by
// all listeners) and ledger_mismatches when the two differ.
nlohmann::json answer_counts(uint64_t answered, const ListenerGroup& servers);

}  // namespace rp::cases
