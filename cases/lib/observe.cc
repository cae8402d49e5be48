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

}  // namespace rp::cases
