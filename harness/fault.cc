#include "harness/fault.h"

#include <stdexcept>
#include <thread>

#include "harness/clock.h"
#include "harness/sockdiag.h"

namespace rp {

std::string Trigger::str() const {
  switch (kind) {
    case Kind::AtTime: return "at " + std::to_string(at.count()) + " ms";
    case Kind::AfterCompleted: return "after " + std::to_string(completed) + " completed attempts";
    case Kind::WhenQueueFull: return "when the accept queue is full";
  }
  return "?";
}

const char* to_string(FaultKind k) {
  switch (k) {
    case FaultKind::Close: return "close";
    case FaultKind::Shutdown: return "shutdown";
    case FaultKind::Kill: return "sigkill";
    case FaultKind::Terminate: return "sigterm";
    case FaultKind::Drain: return "drain";
    case FaultKind::Stall: return "stall";
    case FaultKind::HotDeploy: return "hot_deploy";
  }
  return "?";
}

namespace {

std::optional<ListenInfo> diag(const ListenerGroup& g, int id) {
  const ListenerSpec& s = g.spec(id);
  if (s.socket.proto != Proto::Tcp) return std::nullopt;
  return tcp_listener_by_inode(s.socket.addr.port, g.inode(id));
}

std::optional<uint32_t> requests(const ListenerGroup& g, int id) {
  const ListenerSpec& s = g.spec(id);
  if (s.socket.proto != Proto::Tcp) return std::nullopt;
  return tcp_requests(s.socket.addr.port);
}

bool fired(const Trigger& t, const ListenerGroup& g, const LoadGenerator& load, const Fault& f, uint64_t since_ns) {
  switch (t.kind) {
    case Trigger::Kind::AtTime: return monotonic_ns() - since_ns >= static_cast<uint64_t>(t.at.count()) * 1000000;
    case Trigger::Kind::AfterCompleted: return load.completed() >= t.completed;
    case Trigger::Kind::WhenQueueFull: {
      if (f.listeners.empty()) throw std::invalid_argument("fault: when_queue_full needs a target listener");
      auto d = diag(g, f.listeners.front());
      return d && d->accept_queue > d->backlog;
    }
  }
  return false;
}

void apply(ListenerGroup& g, FaultKind kind, int id, std::chrono::milliseconds stall) {
  switch (kind) {
    case FaultKind::Close: g.close(id); break;
    case FaultKind::Shutdown: g.shutdown(id); break;
    case FaultKind::Kill: g.kill(id); break;
    case FaultKind::Terminate: g.terminate(id); break;
    case FaultKind::Drain: g.drain(id); break;
    case FaultKind::Stall: g.stall(id, stall); break;
    case FaultKind::HotDeploy: throw std::invalid_argument("fault: a hot deploy cannot retire with a hot deploy");
  }
}

}  // namespace

std::vector<FaultEvent> inject(ListenerGroup& g, const LoadGenerator& load, const std::vector<Fault>& faults,
                               std::chrono::milliseconds trigger_timeout) {
  std::vector<FaultEvent> events;
  const uint64_t t0 = monotonic_ns();
  auto event = [&](FaultKind k, int id, std::optional<uint32_t> q, std::string note = {}) {
    events.push_back({k, id, monotonic_ns() - t0, load.completed(), q, std::nullopt, std::move(note)});
  };
  for (const Fault& f : faults) {
    const auto deadline = std::chrono::steady_clock::now() + trigger_timeout;
    while (!fired(f.trigger, g, load, f, t0)) {
      if (load.done() || std::chrono::steady_clock::now() > deadline) {
        std::string what = std::string("fault ") + to_string(f.kind) + " " + f.trigger.str();
        if (f.trigger.kind == Trigger::Kind::WhenQueueFull && !f.listeners.empty()) {
          auto d = diag(g, f.listeners.front());
          what += " (listener " + std::to_string(f.listeners.front()) + " holds " +
                  std::to_string(d ? d->accept_queue : 0) + ", backlog " + std::to_string(d ? d->backlog : 0) + ")";
        }
        throw std::runtime_error(what + ": the trigger did not fire " +
                                 (load.done() ? std::string("before the load finished")
                                              : "within " + std::to_string(trigger_timeout.count()) + " ms"));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (f.kind == FaultKind::HotDeploy) {
      for (const auto& spec : f.new_generation) event(FaultKind::HotDeploy, g.add(spec), std::nullopt, "started");
      if (f.overlap.count() > 0) std::this_thread::sleep_for(f.overlap);
      for (int id : f.listeners) {
        auto q = diag(g, id);
        apply(g, f.retire, id, f.stall);
        event(f.retire, id, q ? std::optional<uint32_t>(q->accept_queue) : std::nullopt, "retired");
      }
      continue;
    }
    for (int id : f.listeners) {
      auto q = diag(g, id);
      auto r = requests(g, id);
      apply(g, f.kind, id, f.stall);
      event(f.kind, id, q ? std::optional<uint32_t>(q->accept_queue) : std::nullopt);
      events.back().requests_before = r;
    }
  }
  return events;
}

}  // namespace rp
