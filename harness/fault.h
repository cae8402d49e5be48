// Faults on listeners while the load runs: at a time, after K completed attempts, or when a
// listener's accept queue is full; close(), shutdown(), SIGKILL, SIGTERM with drain, a drain,
// a stall, and the hot deploy (start a new generation on the port, then retire the old).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "harness/loadgen.h"
#include "harness/server.h"

namespace rp {

struct Trigger {
  enum class Kind { AtTime, AfterCompleted, WhenQueueFull };
  Kind kind = Kind::AtTime;
  std::chrono::milliseconds at{0};  // AtTime: since the injector started
  uint64_t completed = 0;           // AfterCompleted
  // WhenQueueFull: the (first) target's accept queue holds more than its backlog.

  static Trigger at_time(std::chrono::milliseconds t) { return {Kind::AtTime, t, 0}; }
  static Trigger after_completed(uint64_t k) { return {Kind::AfterCompleted, {}, k}; }
  static Trigger when_queue_full() { return {Kind::WhenQueueFull, {}, 0}; }
  std::string str() const;
};

enum class FaultKind { Close, Shutdown, Kill, Terminate, Drain, Stall, HotDeploy };
const char* to_string(FaultKind k);

struct Fault {
  Fault() = default;
  Fault(FaultKind k, Trigger t, std::vector<int> targets)
      : kind(k), trigger(std::move(t)), listeners(std::move(targets)) {}

  FaultKind kind = FaultKind::Close;
  Trigger trigger;
  std::vector<int> listeners;          // the targets (the old generation for HotDeploy)
  std::chrono::milliseconds stall{0};  // Stall
  // HotDeploy: start these listeners, wait `overlap`, then apply `retire` to `listeners`.
  std::vector<ListenerSpec> new_generation;
  std::chrono::milliseconds overlap{0};
  FaultKind retire = FaultKind::Close;
};

struct FaultEvent {
  FaultKind kind;
  int listener;                  // the listener acted on (or started, for a new generation)
  uint64_t at_ns;                // since the injector started
  uint64_t completed_before;     // attempts completed by then
  std::optional<uint32_t> queued_before;  // its accept queue just before (TCP), from sock_diag
  // Requests in SYN_RECV on its port just before (TCP; every listener of the port), from
  // sock_diag: a close migrates or drops them as it does the queued children.
  std::optional<uint32_t> requests_before;
  std::string note;
};

// Applies the faults in order, each once its trigger fires; returns what it did. Throws when
// a trigger has not fired within `trigger_timeout` or before the load finished (a case
// whose precondition never came about must not pass silently).
std::vector<FaultEvent> inject(ListenerGroup& group, const LoadGenerator& load, const std::vector<Fault>& faults,
                               std::chrono::milliseconds trigger_timeout = std::chrono::seconds(10));

}  // namespace rp
