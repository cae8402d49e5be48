// Turning what a scenario saw into the named counts of a record.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "harness/ledger.h"
#include "harness/server.h"
#include "probes/kernel_sampler.h"

namespace rp::cases {

// attempts, served, one count per outcome (by its stable name), client_resets (reset before
// or after connect), failed, and ledger_mismatches from reconcile() against the servers.
nlohmann::json ledger_counts(const Ledger& clients, const ListenerGroup& servers);

// For cases whose clients count answers themselves (UDP, fixed flows): answered, served (by
// all listeners) and ledger_mismatches when the two differ.
nlohmann::json answer_counts(uint64_t answered, const ListenerGroup& servers);

// Puts `key`: the children orphaned per listener (the probe's count keyed by the closing
// listener's cookie) of the only listener of the port that closed during the scenario,
// which is the victim when the case samples before closing the rest. Null with the reason
// in kernel_not_observable (kernel) or kernel_errors (ours: no or several closed listeners).
void put_orphans_of_only_closed(nlohmann::json& record, const std::string& key,
                                const rp::probes::KernelCounts& kernel);

// TcpExt.TCPSynRetrans of the calling thread's network namespace: SYNs the clients sent
// again. Each one is looked up (and any steering program runs) once more, so a count of
// program runs per connection adds it. Throws when the counter cannot be read.
uint64_t syn_retransmits();

}  // namespace rp::cases
