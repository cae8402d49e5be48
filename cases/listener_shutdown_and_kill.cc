// listener_shutdown_and_kill
//
// Two more ways a listener with queued children leaves its reuseport group:
//   - shutdown(SHUT_RDWR) on the listener: inet_shutdown() -> tcp_disconnect() ->
//     inet_csk_listen_stop(), the same path as close(): every queued child is reset, or,
//     with net.ipv4.tcp_migrate_req=1 (5.14+), migrated to another listener of the group
//     (reuseport_stop_listen_sock() keeps the socket in the group's closed section, commit
//     333bb73f620e). The socket itself stays open.
//   - SIGKILL of a process that owns several listeners of the group: the exit closes each
//     of them, and each one's queue goes the same way.
//
// Scenario, per variant (family, fault, tcp_migrate_req):
//   1. In a fresh network namespace set tcp_migrate_req (where the kernel has it).
//   2. shutdown: two SO_REUSEPORT listeners on loopback:P, threads: the victim never accepts
//      (backlog 8), the other serves. sigkill_2_listeners: one forked process opens two
//      never-accepting listeners (backlog 8 each) and waits; two serving listeners (threads)
//      join the group.
//   3. Run a closed-loop load (one client thread) until sock_diag shows every victim's
//      accept queue full (backlog+1). SYNs that hash to a full victim are dropped and
//      retried by the client.
//   4. Note the queued children Q (sum over the victims), then shutdown() the victim, or
//      SIGKILL the owning process (and reap it).
//   5. Let the load finish; retried SYNs reach the serving listeners.
//   6. Reconcile ledger, servers and the kernel's counts (reuseport probe, TcpExt) and
//      compare with cases/expectations.json: migrate=0 resets exactly Q clients and serves
//      the rest; migrate=1 resets none and migrates Q (with two listeners closing one
//      after the other, between Q and Q + backlog + 1 migrations: see below).

#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <optional>
#include <thread>

#include "cases/lib/case_test.h"
#include "cases/lib/migrate.h"
#include "cases/lib/kernel.h"
#include "probes/kernel_sampler.h"
#include "cases/lib/observe.h"
#include "harness/error.h"
#include "harness/fault.h"
#include "harness/loadgen.h"
#include "harness/scope.h"
#include "harness/server.h"
#include "harness/sockdiag.h"

namespace rp::cases {
namespace {

enum class How { Shutdown, KillTwo };

struct Variant {
  Family family;
  How how;
  int migrate;

  std::string name() const {
    return std::string("tcp") + (family == Family::V4 ? "4" : "6") +
           (how == How::Shutdown ? "_shutdown" : "_sigkill_2_listeners") + "_migrate" + std::to_string(migrate);
  }
};

constexpr uint16_t kPort = 47360;
constexpr int kBacklog = 8;

// A forked process that owns `n` never-accepting SO_REUSEPORT listeners until it is killed.
// Forked before any load starts, so it holds no client socket, and it dies with its parent.
class ListenerOwner {
 public:
  ListenerOwner(const Endpoint& ep, int n) {
    sockaddr_storage ss;
    const socklen_t len = ep.to_sockaddr(ss);
    int pipefd[2];
    check_sys(pipe2(pipefd, O_CLOEXEC), "pipe2");
    UniqueFd rd(pipefd[0]), wr(pipefd[1]);
    const pid_t parent = getpid();
    pid_ = fork();
    if (pid_ < 0) throw_sys("fork listener owner");
    if (pid_ == 0) {
      // Only syscalls from here on: the parent may have threads.
      // It keeps nothing of its parent's but the pipe, which becomes fd 3.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent || dup2(wr.get(), 3) < 0) _exit(1);
      syscall(SYS_close_range, 4U, ~0U, 0U);
      for (int i = 0; i < n; ++i) {
        uint64_t inode = 0;
        const int one = 1;
        int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct stat st;
        if (fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) == 0 &&
            bind(fd, reinterpret_cast<const sockaddr*>(&ss), len) == 0 && listen(fd, kBacklog) == 0 &&
            fstat(fd, &st) == 0)
          inode = st.st_ino;
        if (write(3, &inode, sizeof inode) != sizeof inode) _exit(1);
      }
      for (;;) pause();
    }
    wr.reset();
    for (int i = 0; i < n; ++i) {
      uint64_t inode = 0;
      if (read(rd.get(), &inode, sizeof inode) != sizeof inode || inode == 0) {
        kill();
        throw std::runtime_error("listener owner: listener " + std::to_string(i) + " on " + ep.str() + " failed");
      }
      inodes_.push_back(inode);
    }
  }
  ~ListenerOwner() { kill(); }

  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;  // reaped: the kernel has closed every socket of the process
  }
  const std::vector<uint64_t>& inodes() const { return inodes_; }

 private:
  pid_t pid_ = -1;
  std::vector<uint64_t> inodes_;
};

LoadOptions load_options(Family f, int victims, int listeners) {
  LoadOptions lo;
  lo.target = Endpoint::loopback(f, kPort);
  // One client thread, as in close_listener_with_queued_children: each loopback handshake
  // completes inside its connect(), so a queue stops at exactly backlog+1.
  lo.threads = 1;
  lo.concurrency = static_cast<unsigned>(victims * (kBacklog + 1) + 64);
  lo.max_attempts = static_cast<uint64_t>(2 * listeners * (kBacklog + 1) + 200);
  lo.max_duration = std::chrono::seconds(20);
  lo.connect_timeout = std::chrono::seconds(8);
  lo.response_timeout = std::chrono::seconds(8);
  return lo;
}

nlohmann::json scenario(const Variant& v) {
  const auto migrate = set_migrate_req(v.migrate);
  const Endpoint ep = Endpoint::loopback(v.family, kPort);
  // The owner is forked before anything else holds a file: the probe's, the listeners'.
  std::optional<ListenerOwner> owner;
  if (v.how == How::KillTwo) owner.emplace(ep, 2);
  rp::probes::KernelSampler kernel({.port = kPort});

  nlohmann::json o;
  uint64_t queued = 0;
  if (v.how == How::Shutdown) {
    ListenerGroup group;
    ListenerSpec victim;
    victim.socket.addr = ep;
    victim.socket.backlog = kBacklog;
    victim.policy = AcceptPolicy::Never;
    const int victim_id = group.add(victim);
    ListenerSpec server = victim;
    server.policy = AcceptPolicy::Serve;
    server.socket.backlog = 4096;
    group.add(server);
    LoadGenerator load(load_options(v.family, 1, 2));
    load.start();
    std::vector<FaultEvent> events;
    try {
      events = inject(group, load, {Fault{FaultKind::Shutdown, Trigger::when_queue_full(), {victim_id}}});
    } catch (...) {
      load.stop();
      throw;
    }
    queued = events.at(0).queued_before.value();
    load.wait();
    const rp::probes::KernelCounts kernel_counts = kernel.sample();
    o["victim_state_after"] = to_string(group.state(victim_id));
    group.stop_all();
    o.update(ledger_counts(load.ledger(), group));
    o["served_by_victim"] = group.served(victim_id);
    o["queue_limit"] = kBacklog + 1;
    o.update(kernel_counts.to_json());
    put_attribution(o, kernel_counts);
  } else {
    ListenerGroup group;
    ListenerSpec server;
    server.socket.addr = ep;
    server.socket.backlog = 4096;
    group.add(server);
    group.add(server);
    LoadGenerator load(load_options(v.family, 2, 4));
    load.start();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    try {
      for (;;) {
        uint64_t full = 0, sum = 0;
        for (uint64_t ino : owner->inodes()) {
          auto d = tcp_listener_by_inode(kPort, ino);
          if (d && d->accept_queue > d->backlog) ++full;
          if (d) sum += d->accept_queue;
        }
        if (full == owner->inodes().size()) break;
        if (load.done() || std::chrono::steady_clock::now() > deadline)
          throw std::runtime_error("the owner's listeners did not both fill (" + std::to_string(sum) +
                                   " children queued) " + (load.done() ? "before the load finished" : "within 10 s"));
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      for (uint64_t ino : owner->inodes()) queued += tcp_listener_by_inode(kPort, ino).value().accept_queue;
      owner->kill();
    } catch (...) {
      load.stop();
      throw;
    }
    load.wait();
    const rp::probes::KernelCounts kernel_counts = kernel.sample();
    group.stop_all();
    o.update(ledger_counts(load.ledger(), group));
    o["queue_limit"] = 2 * (kBacklog + 1);
    o.update(kernel_counts.to_json());
    put_attribution(o, kernel_counts);
    // The process's exit closes its listeners one after the other, and while the second
    // still listens it is a migration target for the first one's children: those move twice
    // (TcpExt counts migrations, not children). Measured here: 18 queued, 19 to 23
    // migrations. So the count lies between Q and Q plus one full queue.
    const auto& mig = o["netstat_migrate_req_success"];
    o["migrations_within_bound"] =
        mig.is_null() ? nlohmann::json() : nlohmann::json(mig.get<uint64_t>() >= queued &&
                                                          mig.get<uint64_t>() <= queued + kBacklog + 1);
  }
  o["queued_at_fault"] = queued;
  o["lost_other"] = o["failed"].get<uint64_t>() - o["client_resets"].get<uint64_t>();
  return o;
}

std::vector<Variant> variants() {
  std::vector<Variant> out;
  for (int m : {0, 1})
    for (Family f : {Family::V4, Family::V6})
      for (How h : {How::Shutdown, How::KillTwo}) out.push_back({f, h, m});
  return out;
}

RP_CASE(listener_shutdown_and_kill, ::testing::ValuesIn(variants()));

}  // namespace
}  // namespace rp::cases
