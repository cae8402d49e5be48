// The ledger: every connection attempt the load generator starts ends with exactly one
// outcome, and the counts must reconcile with what the servers say they served.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace rp {

enum class Outcome : uint8_t {
  Served,                 // the reply (with the serving listener's id) arrived
  ResetBeforeConnect,     // ECONNRESET while the handshake was still in progress
  ResetAfterConnect,      // ECONNRESET or EPIPE after connect() had completed
  Refused,                // ECONNREFUSED: no socket listened
  ConnectTimeout,         // the handshake did not complete in time
  ResponseTimeout,        // connected, but no complete reply in time
  ClosedWithoutResponse,  // orderly EOF before a complete reply
  OtherError,             // any other errno (kept in Attempt::err)
  kCount
};
constexpr size_t kOutcomeCount = static_cast<size_t>(Outcome::kCount);

// Stable, machine-readable names: "served", "reset_after_connect", ...
const char* outcome_name(Outcome o);

// Where in its life a client connection was when an error struck.
enum class Phase : uint8_t { Connecting, Connected };

// Maps an errno seen in `phase` to its outcome. EPIPE can only come from a write on a
// connected socket whose peer reset it.
Outcome classify_error(int err, Phase phase);

struct Attempt {
  uint32_t id = 0;
  Outcome outcome = Outcome::OtherError;
  int32_t listener = -1;  // the serving listener's id, for Served (Wire protocol replies name it)
  int32_t err = 0;
  uint16_t source_port = 0;  // 0 when not recorded
  uint16_t http_status = 0;  // the response's status code (HTTP load), 0 otherwise
  uint64_t start_ns = 0;     // CLOCK_MONOTONIC
  uint64_t connected_ns = 0; // 0 when the handshake never completed
  uint64_t end_ns = 0;
};

class Ledger {
 public:
  void add(const Attempt& a);
  void merge(const Ledger& other);
  void note_started(uint64_t n = 1) { started_ += n; }

  uint64_t started() const { return started_; }
  uint64_t total() const { return attempts_.size(); }
  uint64_t count(Outcome o) const { return counts_[static_cast<size_t>(o)]; }
  uint64_t failed() const { return total() - count(Outcome::Served); }
  const std::map<int32_t, uint64_t>& served_by_listener() const { return served_by_; }
  const std::map<int32_t, uint64_t>& errnos() const { return errnos_; }
  // Served attempts by the response's status code (HTTP load).
  std::map<uint16_t, uint64_t> served_by_http_status() const;
  const std::vector<Attempt>& attempts() const { return attempts_; }

 private:
  uint64_t started_ = 0;
  std::vector<Attempt> attempts_;
  std::array<uint64_t, kOutcomeCount> counts_{};
  std::map<int32_t, uint64_t> served_by_;
  std::map<int32_t, uint64_t> errnos_;  // OtherError only
};

// Checks the ledger's invariants: attempts started = attempts with an outcome = sum of the
// outcome counts; served as counted by the clients = served as counted by the servers, per
// listener. Returns one line per count that is off, naming it; empty when all reconcile.
std::vector<std::string> reconcile(const Ledger& clients, const std::map<int32_t, uint64_t>& served_by_servers);

}  // namespace rp
