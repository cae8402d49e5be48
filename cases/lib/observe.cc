#include "cases/lib/observe.h"

#include "probes/netstat.h"
#include "probes/attribution.h"

namespace rp::cases {

nlohmann::json ledger_counts(const Ledger& l, const ListenerGroup& servers) {
  nlohmann::json j;
  j["attempts"] = l.total();
  for (size_t i = 0; i < kOutcomeCount; ++i) {
    auto o = static_cast<Outcome>(i);
    j[outcome_name(o)] = l.count(o);
  }
  j["client_resets"] = l.count(Outcome::ResetBeforeConnect) + l.count(Outcome::ResetAfterConnect);
  j["failed"] = l.failed();
  nlohmann::json by = nlohmann::json::object();
  for (const auto& [id, n] : l.served_by_listener()) by[std::to_string(id)] = n;
  j["served_by_listener"] = by;
  j["ledger_mismatches"] = reconcile(l, servers.served_by_listener());
  return j;
}

nlohmann::json answer_counts(uint64_t answered, const ListenerGroup& servers) {
  uint64_t served = 0;
  for (const auto& [id, n] : servers.served_by_listener()) served += n;
  nlohmann::json j;
  j["answered"] = answered;
  j["served"] = served;
  j["ledger_mismatches"] = nlohmann::json::array();
  if (served != answered)
    j["ledger_mismatches"].push_back("clients got " + std::to_string(answered) + " answers, listeners sent " +
                                     std::to_string(served));
  return j;
}

void put_orphans_of_only_closed(nlohmann::json& record, const std::string& key,
                                const rp::probes::KernelCounts& kernel) {
  record[key] = nullptr;
  if (!kernel.listener_orphans) {
    record[kernel.listener_orphans_error ? "kernel_errors" : "kernel_not_observable"][key] =
        "orphans per listener: " + kernel.listener_orphans_source;
    return;
  }
  if (kernel.listener_orphans->size() != 1) {
    record["kernel_errors"][key] = "expected exactly one closed listener of the port before the sample, the probe saw " +
                                   std::to_string(kernel.listener_orphans->size());
    return;
  }
  record[key] = kernel.listener_orphans->begin()->second;
  record["kernel_sources"][key] = kernel.listener_orphans_source;
}

uint64_t syn_retransmits() {
  const auto v = rp::probes::netstat::get(rp::probes::netstat::read_current(), "TcpExt", "TCPSynRetrans");
  if (!v) throw std::runtime_error("/proc/net/netstat has no TcpExt TCPSynRetrans");
  return *v;
}

void put_attribution(nlohmann::json& record, const rp::probes::KernelCounts& kernel,
                     std::optional<uint64_t> steering_refusals) {
  rp::probes::ClientFailures f = rp::probes::client_failures(record);
  f.steering_refusals = steering_refusals;
  const auto a = rp::probes::attribute(kernel.values, rp::probes::reset_reason_given(kernel.sources), f);
  for (const auto& [name, n] : a.causes) record["cause_" + name] = n;
  record["unattributed"] = a.unattributed;
  record["kernel_sources"]["unattributed"] =
      "client failures not named by a cause; causes told apart by " + a.method +
      (a.not_observable.empty() ? std::string() : "; " + a.not_observable);
}

}  // namespace rp::cases
