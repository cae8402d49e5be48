// Deploy strategies as scenarios under load: ten times over, a new generation of listeners
// comes up on the port and the old one goes, each strategy in its own way; the load
// generator's ledger says what every connection attempt came to, and when.
//
//   a close           overlap, then close() the old generation's listeners
//   b kill            overlap, then SIGKILL the old generation's processes
//   c graceful        overlap, then SIGTERM: the old one accepts and serves what is queued,
//                     then closes (ListenerGroup::terminate)
//   d migrate_sysctl  net.ipv4.tcp_migrate_req=1 (5.14), then (a)
//   e migrate_bpf     an sk_reuseport/migrate program (5.14) that moves the closing
//                     listeners' children to the new generation, then (a)
//   f steer_drain     an sk_reuseport program (4.19) sends new connections to the new
//                     generation; the old one accepts what is queued, then closes
//   g handover        no group change: the new generation inherits the old one's sockets
//                     (pidfd_getfd(2), 5.6, as tableflip or Envoy pass them over a unix
//                     socket); the old processes close their copies
//   h shutdown_drain  shutdown() the old listeners (to stop new connections), accept what
//                     remains in their queues, close
//
// Every listener is a process of its own, as a server's workers are. The scenario changes
// the network namespace it runs in (a sysctl, a BPF program on the group): run it in one of
// its own (run_isolated, NetnsScope).
//
// And the other shape of the comparison: several workers behind one port, either each with
// a reuseport listener of its own or all sharing one socket (one accept queue), woken by
// poll() or one at a time by EPOLLEXCLUSIVE; one worker may stall now and then.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "harness/ledger.h"
#include "harness/loadgen.h"

namespace rp {

enum class Strategy { Close, Kill, Graceful, MigrateSysctl, MigrateBpf, SteerDrain, HandOver, ShutdownDrain };

// "a_close", "b_kill", ...: the letter keeps them in the order above wherever they sort.
const char* to_string(Strategy s);
std::optional<Strategy> strategy_from_string(const std::string& name);  // also "a", "close"
const std::vector<Strategy>& all_strategies();
// Why this build or the running kernel cannot run it (no BPF in the build, no
// tcp_migrate_req, a program type the kernel refuses); empty when it can. Probed, not
// inferred from the version. Throws when the probe fails without the kernel's refusal (our
// steering program does not load where the kernel offers the type): that is an error of
// the tool, never "unavailable".
std::string strategy_unavailable(Strategy s);

struct DeployPlan {
  Strategy strategy = Strategy::Close;
  uint16_t port = 0;
  unsigned workers = 1;  // listeners per generation (at most 8)
  int backlog = 128;
  std::chrono::microseconds work{0};
  LoadOptions load;  // target: 127.0.0.1:port; max_attempts and max_duration are set here
  unsigned deploys = 10;
  std::chrono::milliseconds warmup{200};    // load before the first deploy
  std::chrono::milliseconds interval{150};  // from the end of one deploy to the next
  std::chrono::milliseconds overlap{20};    // both generations up, before the old one goes
  std::chrono::milliseconds settle{300};    // load after the last deploy
  // Called after each deploy (0-based), e.g. to take a snapshot of kernel counters.
  std::function<void(unsigned)> after_deploy;
};

struct DeployRecord {
  unsigned index = 0;
  uint64_t start_ns = 0, retire_ns = 0, end_ns = 0;  // CLOCK_MONOTONIC, as Attempt's times
  uint64_t queued_before = 0;  // in the old generation's accept queues just before retiring
  bool queue_known = false;    // sock_diag answered for every old listener
};

// What every run under load returns: the clients' ledger, the servers' counts and whether
// the two reconcile.
struct LoadedRun {
  Ledger ledger;
  std::map<int32_t, uint64_t> served_by_servers;
  std::vector<std::string> mismatches;  // reconcile(); empty when the ledger reconciles
  uint64_t load_start_ns = 0, load_end_ns = 0;
};

struct DeployRun : LoadedRun {
  std::vector<DeployRecord> deploys;
  // What the steering program counted (e, f): select_runs, selected, migrated, ...
  std::map<std::string, uint64_t> program;
};

// Throws when the strategy is unavailable (strategy_unavailable()) or the harness fails.
DeployRun run_deploys(const DeployPlan& plan);

// Failed attempts by the deploy they ended after: [0] before the first deploy, [i + 1]
// between the start of deploy i and the start of deploy i + 1 (the last: to the end).
std::vector<uint64_t> failures_by_deploy(const DeployRun& run);

enum class Sharing {
  Reuseport,     // a SO_REUSEPORT listener per worker: an accept queue per worker
  Shared,        // one socket, every worker poll()s it (all woken, one wins the accept)
  SharedEpollEx  // one socket, epoll with EPOLLEXCLUSIVE (one woken per connection)
};
const char* to_string(Sharing s);

struct WorkerPlan {
  Sharing sharing = Sharing::Reuseport;
  uint16_t port = 0;
  unsigned workers = 4;
  int backlog = 128;
  std::chrono::microseconds work{0};
  LoadOptions load;  // target: 127.0.0.1:port
  std::chrono::milliseconds duration{2000};
  // Worker 0 stops accepting for `stall` every `stall_every` (0: never), as a worker
  // blocked on a disk read or a long request would.
  std::chrono::milliseconds stall{0}, stall_every{0};
};

struct WorkerRun : LoadedRun {
  unsigned stalls = 0;
};

WorkerRun run_workers(const WorkerPlan& plan);

}  // namespace rp
