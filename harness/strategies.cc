#include "harness/strategies.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <thread>

#include "harness/clock.h"
#include "harness/error.h"
#include "harness/scope.h"
#include "harness/server.h"
#include "harness/sockdiag.h"
#ifdef RP_HAVE_BPF
#include "probes/reuseport_steer.h"
#endif

namespace rp {

namespace {

struct StrategyName {
  Strategy s;
  const char* name;
  const char* letter;
  const char* bare;
};
constexpr StrategyName kNames[] = {
    {Strategy::Close, "a_close", "a", "close"},
    {Strategy::Kill, "b_kill", "b", "kill"},
    {Strategy::Graceful, "c_graceful", "c", "graceful"},
    {Strategy::MigrateSysctl, "d_migrate_sysctl", "d", "migrate_sysctl"},
    {Strategy::MigrateBpf, "e_migrate_bpf", "e", "migrate_bpf"},
    {Strategy::SteerDrain, "f_steer_drain", "f", "steer_drain"},
    {Strategy::HandOver, "g_handover", "g", "handover"},
    {Strategy::ShutdownDrain, "h_shutdown_drain", "h", "shutdown_drain"},
};

constexpr const char* kMigrateSysctl = "net.ipv4.tcp_migrate_req";

void sleep_for(std::chrono::milliseconds d) {
  if (d.count() > 0) std::this_thread::sleep_for(d);
}

LoadOptions load_for(LoadOptions o, uint16_t port) {
  o.target = Endpoint::loopback(Family::V4, port);
  // The run ends by stop(), after the last deploy: never by a count or a clock of its own.
  o.max_attempts = 50'000'000;
  o.max_duration = std::chrono::hours(1);
  return o;
}

ListenerSpec listener_spec(uint16_t port, int backlog, std::chrono::microseconds work) {
  ListenerSpec s;
  s.socket.addr = Endpoint::loopback(Family::V4, port);
  s.socket.backlog = backlog;
  s.exec = Exec::Process;
  s.work = work;
  return s;
}

#ifdef RP_HAVE_BPF
// The group's steering program and the slots of REUSEPORT_SOCKARRAY: generation g's
// worker i sits at key (g % 2) * workers + i, so the old generation's keys stay valid
// until its sockets leave the group (which empties their slots).
class Steering {
 public:
  Steering(probes::SteerProgram which, unsigned workers) : steer_(which), workers_(workers) {}
  uint32_t key(unsigned gen, unsigned worker) const { return (gen % 2) * workers_ + worker; }
  void add(const ListenerGroup& g, unsigned gen, const std::vector<int>& ids) {
    for (unsigned i = 0; i < ids.size(); ++i) {
      // The duplicate is only for the map update: held longer, it would keep the old
      // socket in the group after its listener closed.
      UniqueFd fd = g.listener_fd(ids[i]);
      steer_.set_socket(key(gen, i), fd.get());
      if (!attached_) {
        steer_.attach(fd.get());
        attached_ = true;
      }
    }
  }
  probes::ReuseportSteer& prog() { return steer_; }
  std::map<std::string, uint64_t> counts() const {
    auto c = steer_.counts();
    return {{"select_runs", c.select_runs},   {"selected", c.selected},         {"select_errors", c.select_errors},
            {"dropped", c.dropped},           {"migrate_runs", c.migrate_runs}, {"migrated", c.migrated},
            {"migrate_dropped", c.migrate_dropped}, {"migrate_errors", c.migrate_errors}};
  }

 private:
  probes::ReuseportSteer steer_;
  unsigned workers_;
  bool attached_ = false;
};
#endif

uint64_t queued(const ListenerGroup& g, uint16_t port, const std::vector<int>& ids, bool& known) {
  uint64_t n = 0;
  known = true;
  for (int id : ids) {
    auto d = tcp_listener_by_inode(port, g.inode(id));
    if (d)
      n += d->accept_queue;
    else
      known = false;
  }
  return n;
}

}  // namespace

const char* to_string(Strategy s) {
  for (const auto& n : kNames)
    if (n.s == s) return n.name;
  return "?";
}

std::optional<Strategy> strategy_from_string(const std::string& name) {
  for (const auto& n : kNames)
    if (name == n.name || name == n.letter || name == n.bare) return n.s;
  return std::nullopt;
}

const std::vector<Strategy>& all_strategies() {
  static const std::vector<Strategy> v = [] {
    std::vector<Strategy> out;
    for (const auto& n : kNames) out.push_back(n.s);
    return out;
  }();
  return v;
}

namespace {

#ifdef RP_HAVE_BPF
// Our program first; when it does not load, a minimal program of the same type and attach
// type asks the kernel (probes/reuseport_steer.h): only the kernel's refusal makes the
// strategy unavailable, anything else is the tool's failure and throws.
std::string steer_unavailable(probes::SteerProgram which) {
  try {
    probes::ReuseportSteer probe(which);
    return "";
  } catch (const std::exception& ours) {
    const auto k = probes::kernel_answer(which);
    if (k.kind == probes::KernelAnswer::Kind::Refuses) return "the kernel refuses it: " + k.why;
    throw std::runtime_error(std::string(ours.what()) +
                             (k.kind == probes::KernelAnswer::Kind::Offers ? "; yet " + k.why + ": our program is at fault"
                                                                           : "; asking the kernel failed too: " + k.why));
  }
}
#endif

}  // namespace

std::string strategy_unavailable(Strategy s) {
  switch (s) {
    case Strategy::MigrateSysctl:
      if (sysctl_exists(kMigrateSysctl)) return "";
      if (errno != ENOENT) throw_sys(std::string("access ") + sysctl_path(kMigrateSysctl));
      return std::string("no ") + kMigrateSysctl + " (added in 5.14)";
    case Strategy::MigrateBpf:
    case Strategy::SteerDrain:
#ifdef RP_HAVE_BPF
      return steer_unavailable(s == Strategy::MigrateBpf ? probes::SteerProgram::Migrate : probes::SteerProgram::Select);
#else
      return "built without BPF (RP_ENABLE_BPF=OFF)";
#endif
    case Strategy::HandOver:
      // ENOSYS before 5.6; EBADF for the bad pidfd means the call exists.
      if (syscall(SYS_pidfd_getfd, -1, 0, 0) < 0 && errno == ENOSYS) return "no pidfd_getfd(2) (added in 5.6)";
      return "";
    default:
      return "";
  }
}

namespace {

// Starts `load`, runs `body`, and stops the load when the body returns or throws; then stops
// the listeners and fills the run's ledger, the servers' counts and their reconciliation.
void under_load(LoadGenerator& load, ListenerGroup& g, LoadedRun& run, const std::function<void()>& body) {
  run.load_start_ns = monotonic_ns();
  load.start();
  try {
    body();
  } catch (...) {
    load.stop();
    load.wait();
    throw;
  }
  load.stop();
  load.wait();
  run.load_end_ns = monotonic_ns();
  g.stop_all();
  run.ledger = load.ledger();
  run.served_by_servers = g.served_by_listener();
  run.mismatches = reconcile(run.ledger, run.served_by_servers);
}

}  // namespace

DeployRun run_deploys(const DeployPlan& plan) {
  if (std::string why = strategy_unavailable(plan.strategy); !why.empty())
    throw std::runtime_error(std::string(to_string(plan.strategy)) + " cannot run here: " + why);
  if (plan.workers == 0 || plan.workers > 8) throw std::invalid_argument("run_deploys: workers must be 1-8");
  const Strategy st = plan.strategy;

  // Strategies other than (d) run with migration off, whatever the namespace had.
  std::optional<SysctlScope> migrate;
  if (sysctl_exists(kMigrateSysctl)) migrate.emplace(kMigrateSysctl, st == Strategy::MigrateSysctl ? "1" : "0");

  ListenerGroup g((plan.deploys + 1) * plan.workers + 1);
  const ListenerSpec base = listener_spec(plan.port, plan.backlog, plan.work);
  std::vector<int> old;
  for (unsigned i = 0; i < plan.workers; ++i) old.push_back(g.add(base));

#ifdef RP_HAVE_BPF
  std::optional<Steering> steering;
  if (st == Strategy::MigrateBpf) {
    // New connections keep the hash (select_new stays 0); only children of a closing
    // listener are steered.
    steering.emplace(probes::SteerProgram::Migrate, plan.workers);
    steering->add(g, 0, old);
  }
#endif

  DeployRun run;
  LoadGenerator load(load_for(plan.load, plan.port));
  under_load(load, g, run, [&] {
    sleep_for(plan.warmup);
    for (unsigned d = 0; d < plan.deploys; ++d) {
      DeployRecord rec;
      rec.index = d;
      rec.start_ns = monotonic_ns();
      const unsigned gen = d + 1;
      std::vector<int> fresh;
      for (unsigned i = 0; i < plan.workers; ++i) {
        ListenerSpec s = base;
        UniqueFd inherited;
        if (st == Strategy::HandOver) {
          inherited = g.listener_fd(old[i]);
          s.inherited_fd = inherited.get();
        }
        fresh.push_back(g.add(s));
      }
#ifdef RP_HAVE_BPF
      if (st == Strategy::MigrateBpf) {
        steering->add(g, gen, fresh);
        steering->prog().set_migrate(steering->key(gen, 0));
      } else if (st == Strategy::SteerDrain) {
        if (!steering) steering.emplace(probes::SteerProgram::Select, plan.workers);
        steering->add(g, gen, fresh);
        steering->prog().set_select(steering->key(gen, 0));
      }
#else
      (void)gen;
#endif
      sleep_for(plan.overlap);
      rec.queued_before = queued(g, plan.port, old, rec.queue_known);
      rec.retire_ns = monotonic_ns();
      for (int id : old) {
        switch (st) {
          case Strategy::Close:
          case Strategy::MigrateSysctl:
          case Strategy::MigrateBpf:
          case Strategy::HandOver: g.close(id); break;
          case Strategy::Kill: g.kill(id); break;
          case Strategy::Graceful: g.terminate(id); break;
          case Strategy::SteerDrain: g.drain(id); break;
          case Strategy::ShutdownDrain:
            g.shutdown(id);
            g.drain(id);
            break;
        }
      }
      rec.end_ns = monotonic_ns();
      run.deploys.push_back(rec);
      old = fresh;
      if (plan.after_deploy) plan.after_deploy(d);
      if (d + 1 < plan.deploys) sleep_for(plan.interval);
    }
    sleep_for(plan.settle);
  });
#ifdef RP_HAVE_BPF
  if (steering) run.program = steering->counts();
#endif
  return run;
}

std::vector<uint64_t> failures_by_deploy(const DeployRun& run) {
  std::vector<uint64_t> out(run.deploys.size() + 1, 0);
  for (const Attempt& a : run.ledger.attempts()) {
    if (a.outcome == Outcome::Served) continue;
    size_t slot = 0;
    for (size_t i = 0; i < run.deploys.size(); ++i)
      if (a.end_ns >= run.deploys[i].start_ns) slot = i + 1;
    ++out[slot];
  }
  return out;
}

const char* to_string(Sharing s) {
  switch (s) {
    case Sharing::Reuseport: return "reuseport";
    case Sharing::Shared: return "shared";
    case Sharing::SharedEpollEx: return "shared_epollexclusive";
  }
  return "?";
}

WorkerRun run_workers(const WorkerPlan& plan) {
  if (plan.workers == 0) throw std::invalid_argument("run_workers: no workers");
  ListenerGroup g(plan.workers + 1);
  ListenerSpec s = listener_spec(plan.port, plan.backlog, plan.work);
  s.epoll_exclusive = plan.sharing == Sharing::SharedEpollEx;
  const int first = g.add(s);
  for (unsigned i = 1; i < plan.workers; ++i) {
    ListenerSpec w = s;
    UniqueFd fd;
    if (plan.sharing != Sharing::Reuseport) {
      fd = g.listener_fd(first);
      w.inherited_fd = fd.get();
    }
    g.add(w);
  }

  WorkerRun run;
  LoadGenerator load(load_for(plan.load, plan.port));
  under_load(load, g, run, [&] {
    const uint64_t end = run.load_start_ns + static_cast<uint64_t>(plan.duration.count()) * 1'000'000;
    if (plan.stall.count() > 0 && plan.stall_every.count() > 0) {
      uint64_t next = run.load_start_ns + static_cast<uint64_t>(plan.stall_every.count()) * 1'000'000;
      while (next + static_cast<uint64_t>(plan.stall.count()) * 1'000'000 <= end) {
        const uint64_t now = monotonic_ns();
        if (now < next) std::this_thread::sleep_for(std::chrono::nanoseconds(next - now));
        g.stall(first, plan.stall);
        ++run.stalls;
        next += static_cast<uint64_t>(plan.stall_every.count()) * 1'000'000;
      }
    }
    const uint64_t now = monotonic_ns();
    if (now < end) std::this_thread::sleep_for(std::chrono::nanoseconds(end - now));
  });
  return run;
}

}  // namespace rp
