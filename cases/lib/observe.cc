#include "cases/lib/observe.h"

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

}  // namespace rp::cases
