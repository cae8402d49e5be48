// Turning what a scenario saw into the named counts of a record.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
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
// Puts the attribution of the record's client failures (its outcome counts, as
// ledger_counts() wrote them) to named causes (probes/attribution.h): "cause_<name>" for
// every cause and "unattributed", which the expectations hold to 0; how the RSTs were told
// apart goes to kernel_sources. steering_refusals: the case's steering program's count of
// SYNs it refused, when it attached one.
void put_attribution(nlohmann::json& record, const rp::probes::KernelCounts& kernel,
                     std::optional<uint64_t> steering_refusals = std::nullopt);

}  // namespace rp::cases
