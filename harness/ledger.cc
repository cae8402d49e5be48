#include "harness/ledger.h"

#include <cerrno>
#include <set>

namespace rp {

const char* outcome_name(Outcome o) {
  switch (o) {
    case Outcome::Served: return "served";
    case Outcome::ResetBeforeConnect: return "reset_before_connect";
    case Outcome::ResetAfterConnect: return "reset_after_connect";
    case Outcome::Refused: return "refused";
    case Outcome::ConnectTimeout: return "connect_timeout";
    case Outcome::ResponseTimeout: return "response_timeout";
    case Outcome::ClosedWithoutResponse: return "closed_without_response";
    case Outcome::OtherError: return "other_error";
    case Outcome::kCount: break;
  }
  return "invalid";
}

Outcome classify_error(int err, Phase phase) {
  switch (err) {
    case ECONNREFUSED: return Outcome::Refused;
    case ECONNRESET: return phase == Phase::Connecting ? Outcome::ResetBeforeConnect : Outcome::ResetAfterConnect;
    case EPIPE: return phase == Phase::Connected ? Outcome::ResetAfterConnect : Outcome::OtherError;
    case ETIMEDOUT: return phase == Phase::Connecting ? Outcome::ConnectTimeout : Outcome::ResponseTimeout;
    default: return Outcome::OtherError;
  }
}

void Ledger::add(const Attempt& a) {
  attempts_.push_back(a);
  ++counts_[static_cast<size_t>(a.outcome)];
  if (a.outcome == Outcome::Served) ++served_by_[a.listener];
  if (a.outcome == Outcome::OtherError) ++errnos_[a.err];
}

void Ledger::merge(const Ledger& other) {
  started_ += other.started_;
  for (const auto& a : other.attempts_) add(a);
}

std::map<uint16_t, uint64_t> Ledger::served_by_http_status() const {
  std::map<uint16_t, uint64_t> by;
  for (const Attempt& a : attempts_)
    if (a.outcome == Outcome::Served) ++by[a.http_status];
  return by;
}

std::vector<std::string> reconcile(const Ledger& clients, const std::map<int32_t, uint64_t>& served_by_servers) {
  std::vector<std::string> off;
  if (clients.started() != clients.total())
    off.push_back("attempts started " + std::to_string(clients.started()) + " != attempts with an outcome " +
                  std::to_string(clients.total()));
  uint64_t sum = 0;
  for (size_t i = 0; i < kOutcomeCount; ++i) sum += clients.count(static_cast<Outcome>(i));
  if (sum != clients.total())
    off.push_back("sum of outcome counts " + std::to_string(sum) + " != attempts " + std::to_string(clients.total()));
  std::set<int32_t> ids;
  for (const auto& [id, n] : clients.served_by_listener()) ids.insert(id);
  for (const auto& [id, n] : served_by_servers) ids.insert(id);
  for (int32_t id : ids) {
    auto c = clients.served_by_listener().count(id) ? clients.served_by_listener().at(id) : 0;
    auto s = served_by_servers.count(id) ? served_by_servers.at(id) : 0;
    if (c != s)
      off.push_back("listener " + std::to_string(id) + ": served seen by clients " + std::to_string(c) +
                    " != served seen by the server " + std::to_string(s));
  }
  return off;
}

}  // namespace rp
