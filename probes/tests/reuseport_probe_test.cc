// Tests of the reuseport probe: the BPF oracle must reconcile with what clients see.
//
// CloseListenerWithQueuedChildren (the reconciliation test), per variant:
//  1. fork; the child enters a fresh network namespace, brings lo up and sets
//     net.ipv4.tcp_migrate_req (a per-namespace sysctl) to the variant's value;
//  2. it attaches the probe filtered on that namespace's cookie and the port;
//  3. it opens two SO_REUSEPORT listeners on 127.0.0.1:port: "stuck" (backlog B, never
//     accepts) and "acceptor" (accepts, reads the client's byte, closes);
//  4. 64 non-blocking clients connect; each sends 1 byte once established;
//  5. it waits until stuck's accept queue holds B+1 children (tcpi_unacked of a LISTEN
//     socket is its accept-queue length) and every other established client was served;
//     SYNs hashed to the full stuck listener are dropped and retried ~1 s later;
//  6. it closes stuck, then waits until every client saw ECONNRESET or EOF (the retried
//     SYNs land on the acceptor, the only listener left);
//  7. it reports what the clients saw, the probe's counters and TcpExt deltas; the parent
//     asserts that the three reconcile.
// ReuseportProbeLifetime: a child that attached the probe and is SIGKILLed leaves no
// program and no link behind.
// ProbeReporting: what cannot be observed is reported as such, never as 0.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>
#include <set>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "netns_child.h"
#include "probes/netstat.h"
#include "probes/reuseport_probe.h"

namespace rp::probes {
namespace {

using namespace std::chrono_literals;
using testing::Report;

constexpr std::uint16_t kPort = 8080;
constexpr int kBacklog = 8;
constexpr int kClients = 64;

[[noreturn]] void throw_errno(const std::string& operation) {
  throw std::system_error(errno, std::generic_category(), operation);
}

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = o.release();
    }
    return *this;
  }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

using testing::loopback;

Fd reuseport_listener(std::uint16_t port, int backlog) {
  Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) throw_errno("socket listener");
  const int one = 1;
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
    throw_errno("setsockopt SO_REUSEPORT");
  const sockaddr_in a = loopback(port);
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&a), sizeof(a)) != 0)
    throw_errno("bind 127.0.0.1:" + std::to_string(port));
  if (::listen(fd.get(), backlog) != 0) throw_errno("listen");
  return fd;
}

tcp_info get_tcp_info(int fd) {
  tcp_info info{};
  socklen_t len = sizeof(info);
  if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) throw_errno("getsockopt TCP_INFO");
  return info;
}

std::string show(const Counter& c) { return c.value ? std::to_string(*c.value) : "na"; }

std::string show(const std::optional<std::uint64_t>& v) {
  return v ? std::to_string(*v) : "na";
}

std::string show(const std::optional<std::int64_t>& v) { return v ? std::to_string(*v) : "na"; }

struct Client {
  Fd fd;
  bool sent = false;
  enum class Outcome { kPending, kReset, kEof, kError } outcome = Outcome::kPending;
  int error = 0;
};

// Accepts everything pending, reads each served connection's byte and closes it once read
// (reading first: closing with unread data would send an RST of its own).
struct Acceptor {
  Fd listener;
  std::vector<Fd> served;
  int accepted = 0;
  int done = 0;

  void pump() {
    for (;;) {
      const int c = ::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (c < 0) {
        if (errno == EAGAIN || errno == EINTR) break;
        throw_errno("accept4");
      }
      served.emplace_back(c);
      ++accepted;
    }
    for (Fd& s : served) {
      if (s.get() < 0) continue;
      char b;
      const ssize_t n = ::recv(s.get(), &b, 1, 0);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n < 0) throw_errno("recv on a served connection");
      s.reset();
      ++done;
    }
  }
};

// Sends the byte of every client that became established; true when all sent.
void pump_clients(std::vector<Client>& clients) {
  for (Client& c : clients) {
    if (c.sent || c.outcome != Client::Outcome::kPending) continue;
    const tcp_info info = get_tcp_info(c.fd.get());
    if (info.tcpi_state == TCP_ESTABLISHED) {
      if (::send(c.fd.get(), "x", 1, MSG_NOSIGNAL) != 1) throw_errno("send client byte");
      c.sent = true;
    } else if (info.tcpi_state == TCP_CLOSE) {
      int err = 0;
      socklen_t len = sizeof(err);
      if (::getsockopt(c.fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        throw_errno("getsockopt SO_ERROR");
      c.outcome = Client::Outcome::kError;
      c.error = err;
    }
  }
}

void collect_outcomes(std::vector<Client>& clients) {
  for (Client& c : clients) {
    if (!c.sent || c.outcome != Client::Outcome::kPending) continue;
    char b;
    const ssize_t n = ::recv(c.fd.get(), &b, 1, 0);
    if (n == 0) {
      c.outcome = Client::Outcome::kEof;
    } else if (n < 0 && errno == ECONNRESET) {
      c.outcome = Client::Outcome::kReset;
    } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
      c.outcome = Client::Outcome::kError;
      c.error = errno;
    }
  }
}

Report close_listener_with_queued_children(bool migrate) {
  testing::write_sysctl("/proc/sys/net/ipv4/tcp_migrate_req", migrate ? "1" : "0");
  const netstat::Counters before = netstat::read_current();
  ReuseportProbe probe({.port = kPort, .netns_cookie = current_netns_cookie()});

  Fd stuck = reuseport_listener(kPort, kBacklog);
  Acceptor acceptor;
  acceptor.listener = reuseport_listener(kPort, 4 * kClients);
  // Asking for the cookies also makes the kernel generate them, so the raw_tp programs can
  // key this listener's orphans (they cannot call bpf_get_socket_cookie()).
  const std::uint64_t stuck_cookie = socket_cookie(stuck.get());
  const std::uint64_t acceptor_cookie = socket_cookie(acceptor.listener.get());

  std::vector<Client> clients(kClients);
  const sockaddr_in server = loopback(kPort);
  for (Client& c : clients) {
    c.fd = Fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (c.fd.get() < 0) throw_errno("socket client");
    if (::connect(c.fd.get(), reinterpret_cast<const sockaddr*>(&server), sizeof(server)) != 0 &&
        errno != EINPROGRESS)
      throw_errno("connect client");
  }

  // Step 5: a stable picture with a full stuck queue.
  const auto fill_deadline = std::chrono::steady_clock::now() + 5s;
  std::uint32_t queued = 0;
  for (;;) {
    acceptor.pump();
    pump_clients(clients);
    queued = get_tcp_info(stuck.get()).tcpi_unacked;
    const auto sent = std::count_if(clients.begin(), clients.end(),
                                    [](const Client& c) { return c.sent; });
    if (queued == kBacklog + 1 && sent == acceptor.accepted + kBacklog + 1 &&
        acceptor.done == acceptor.accepted)
      break;
    if (std::chrono::steady_clock::now() > fill_deadline)
      throw std::runtime_error("stuck listener's queue never settled at B+1: queued=" +
                               std::to_string(queued) + " sent=" + std::to_string(sent) +
                               " accepted=" + std::to_string(acceptor.accepted));
    std::this_thread::sleep_for(2ms);
  }
  const int accepted_before_close = acceptor.accepted;

  // Step 6.
  stuck.reset();
  const auto settle_deadline = std::chrono::steady_clock::now() + 10s;
  for (;;) {
    acceptor.pump();
    pump_clients(clients);
    collect_outcomes(clients);
    const bool all_done = std::all_of(clients.begin(), clients.end(), [](const Client& c) {
      return c.outcome != Client::Outcome::kPending;
    });
    if (all_done && acceptor.done == acceptor.accepted) break;
    if (std::chrono::steady_clock::now() > settle_deadline)
      throw std::runtime_error("clients did not settle after closing the stuck listener");
    std::this_thread::sleep_for(2ms);
  }

  // Step 7.
  const ProbeReading r = probe.read();
  const netstat::Deltas d = netstat::delta(before, netstat::read_current());
  Report out;
  auto outcomes = [&](Client::Outcome o) {
    return std::to_string(std::count_if(clients.begin(), clients.end(),
                                        [o](const Client& c) { return c.outcome == o; }));
  };
  out["queued_at_close"] = std::to_string(queued);
  out["accepted_before_close"] = std::to_string(accepted_before_close);
  out["accepted_total"] = std::to_string(acceptor.accepted);
  out["client_reset"] = outcomes(Client::Outcome::kReset);
  out["client_eof"] = outcomes(Client::Outcome::kEof);
  out["client_error"] = outcomes(Client::Outcome::kError);
  out["listener_closes"] = show(r.counter("kernel_listener_closes"));
  out["orphaned_children"] = show(r.counter("kernel_orphaned_children"));
  out["orphan_resets"] = show(r.counter("kernel_orphan_resets"));
  out["other_resets_sent"] = show(r.counter("kernel_other_resets_sent"));
  out["resets_received"] = show(r.counter("kernel_resets_received"));
  out["resets_received_local"] = show(r.counter("kernel_resets_received_local"));
  out["listener_fin_resets"] = show(r.counter("kernel_listener_fin_resets"));
  for (const char* k : {"owner_abort", "after_close", "no_socket", "listener_ack", "forgotten_child", "timewait",
                        "unnamed"})
    out[std::string("rst_") + k] = show(r.counter(std::string("kernel_rst_") + k));
  out["migrate_target_found"] = show(r.counter("kernel_migrate_target_found"));
  out["migrate_source"] = r.counter("kernel_migrate_target_found").source;
  out["drop_queue_purge"] = show(r.drops("QUEUE_PURGE"));
  out["drop_listen_overflow"] = show(r.drops("TCP_LISTEN_OVERFLOW"));
  if (r.drops_by_reason) {
    std::string all;
    for (const auto& [name, n] : *r.drops_by_reason) all += name + ":" + std::to_string(n) + " ";
    out["drops_all"] = all;
  }
  out["listeners_observable"] = r.listeners ? "1" : "0";
  if (r.listeners) {
    auto stat = [&](std::uint64_t cookie) {
      auto it = r.listeners->find(cookie);
      return it == r.listeners->end() ? ListenerStats{} : it->second;
    };
    out["stuck_children"] = std::to_string(stat(stuck_cookie).children);
    out["stuck_orphans"] = std::to_string(stat(stuck_cookie).orphans);
    out["stuck_closed"] = stat(stuck_cookie).closed ? "1" : "0";
    out["acceptor_children"] = std::to_string(stat(acceptor_cookie).children);
  }
  out["netstat_migrate_success"] = show(netstat::get(d, "TcpExt", "TCPMigrateReqSuccess"));
  out["netstat_migrate_failure"] = show(netstat::get(d, "TcpExt", "TCPMigrateReqFailure"));
  out["netstat_listen_overflows"] = show(netstat::get(d, "TcpExt", "ListenOverflows"));
  out["netstat_out_rsts"] = show(netstat::get(d, "Tcp", "OutRsts"));
  return out;
}

bool is_root() { return ::geteuid() == 0; }

struct Variant {
  const char* name;
  bool migrate;
};

class CloseListenerWithQueuedChildren : public ::testing::TestWithParam<Variant> {};

TEST_P(CloseListenerWithQueuedChildren, oracle_reconciles_with_clients) {
  if (!is_root()) GTEST_SKIP() << "needs root: BPF load and unshare(CLONE_NEWNET)";
  const bool migrate = GetParam().migrate;
  const testing::ChildOutcome child = testing::run_in_child(
      testing::Netns::kFresh, 30s, [migrate] { return close_listener_with_queued_children(migrate); });
  ASSERT_TRUE(child.finished) << child.error;
  const Report& r = child.report;
  for (const auto& [k, v] : r) RecordProperty(k, v);
  std::string dump;
  for (const auto& [k, v] : r) dump += "  " + k + "=" + v + "\n";
  SCOPED_TRACE("report:\n" + dump);
  std::cout << "[ report   ] " << GetParam().name << "\n" << dump;

  const std::uint64_t b1 = kBacklog + 1;
  auto u = [&](const char* key) { return testing::to_u64(r, key); };
  EXPECT_EQ(u("queued_at_close"), b1);
  EXPECT_EQ(u("client_error"), 0u);
  EXPECT_EQ(u("listener_closes"), 1u);
  if (!migrate) {
    EXPECT_EQ(u("orphaned_children"), b1);
    EXPECT_EQ(u("orphan_resets"), b1);
    EXPECT_EQ(u("client_reset"), b1);
    EXPECT_EQ(u("resets_received"), b1);
    EXPECT_EQ(u("client_eof"), kClients - b1);
    if (r.at("netstat_migrate_success") != "na") {
      EXPECT_EQ(u("netstat_migrate_success"), 0u);
    }
  } else {
    EXPECT_EQ(u("orphaned_children"), 0u);
    EXPECT_EQ(u("orphan_resets"), 0u);
    EXPECT_EQ(u("client_reset"), 0u);
    EXPECT_EQ(u("resets_received"), 0u);
    EXPECT_EQ(u("client_eof"), static_cast<std::uint64_t>(kClients));
    ASSERT_NE(r.at("netstat_migrate_success"), "na")
        << "tcp_migrate_req is set but TcpExt has no TCPMigrateReqSuccess";
    EXPECT_EQ(u("netstat_migrate_success"), b1);
    if (r.at("migrate_target_found") != "na") {
      EXPECT_GE(u("migrate_target_found"), b1);
    }
  }
  if (r.at("drop_queue_purge") != "na") {
    // Each orphan held its client's byte in its receive queue.
    EXPECT_EQ(u("drop_queue_purge"), migrate ? 0u : b1);
  }
  // Every RST of this namespace comes from the port: the probe's two RST counters cover
  // Tcp.OutRsts exactly.
  EXPECT_EQ(u("orphan_resets") + u("other_resets_sent"), u("netstat_out_rsts"));
  // Each of the other RSTs has exactly one cause, and none here is unnamed.
  EXPECT_EQ(u("other_resets_sent"), u("rst_owner_abort") + u("rst_after_close") + u("rst_no_socket") +
                                        u("listener_fin_resets") + u("rst_listener_ack") + u("rst_forgotten_child") + u("rst_timewait") +
                                        u("rst_unnamed"));
  EXPECT_EQ(u("rst_unnamed"), 0u);
  EXPECT_EQ(u("rst_owner_abort"), 0u);
  if (r.at("listeners_observable") == "1") {
    EXPECT_EQ(u("stuck_children"), b1);
    EXPECT_EQ(u("stuck_orphans"), migrate ? 0u : b1);
    EXPECT_EQ(u("stuck_closed"), 1u);
    // inet_csk_listen_stop() wakes the listener it migrates a child to, so the acceptor
    // counts the migrated children as its own (measured on 6.18).
    EXPECT_EQ(u("acceptor_children"), migrate ? kClients : kClients - b1);
  }
}

INSTANTIATE_TEST_SUITE_P(Variants, CloseListenerWithQueuedChildren,
                         ::testing::Values(Variant{"plain_close", false},
                                           Variant{"migrate_req", true}),
                         [](const ::testing::TestParamInfo<Variant>& i) { return i.param.name; });

// A SYN to a port nobody listens on is answered with an RST that has no socket (NO_SOCKET):
// it is an "other" RST, never an orphan's; a probe filtered on another namespace sees
// nothing of it.
Report refused_connect_counts_as_other_reset() {
  const std::uint64_t netns = current_netns_cookie();
  ReuseportProbe here({.port = kPort, .netns_cookie = netns});
  ReuseportProbe elsewhere({.port = kPort, .netns_cookie = netns + 1});
  // The filter of kernels without SO_NETNS_COOKIE: the namespace's inode.
  ReuseportProbe here_by_ino({.port = kPort, .netns_ino = current_netns_ino()});
  ReuseportProbe elsewhere_by_ino({.port = kPort, .netns_ino = current_netns_ino() + 1});
  Fd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (c.get() < 0) throw_errno("socket client");
  const sockaddr_in server = loopback(kPort);
  const int rc = ::connect(c.get(), reinterpret_cast<const sockaddr*>(&server), sizeof(server));
  Report out;
  out["connect_errno"] = std::to_string(rc == 0 ? 0 : errno);
  const ProbeReading a = here.read();
  const ProbeReading b = elsewhere.read();
  out["other_resets_sent"] = show(a.counter("kernel_other_resets_sent"));
  out["orphan_resets"] = show(a.counter("kernel_orphan_resets"));
  out["resets_received"] = show(a.counter("kernel_resets_received"));
  out["elsewhere_other_resets_sent"] = show(b.counter("kernel_other_resets_sent"));
  out["elsewhere_resets_received"] = show(b.counter("kernel_resets_received"));
  out["by_ino_other_resets_sent"] = show(here_by_ino.read().counter("kernel_other_resets_sent"));
  out["elsewhere_by_ino_other_resets_sent"] = show(elsewhere_by_ino.read().counter("kernel_other_resets_sent"));
  out["rst_no_socket"] = show(a.counter("kernel_rst_no_socket"));
  out["rst_unnamed"] = show(a.counter("kernel_rst_unnamed"));
  return out;
}


TEST(ReuseportProbeFilter, refused_connect_is_an_other_reset_of_this_netns_only) {
  if (!is_root()) GTEST_SKIP() << "needs root: BPF load and unshare(CLONE_NEWNET)";
  const testing::ChildOutcome child =
      testing::run_in_child(testing::Netns::kFresh, 20s, refused_connect_counts_as_other_reset);
  ASSERT_TRUE(child.finished) << child.error;
  auto u = [&](const char* key) { return testing::to_u64(child.report, key); };
  EXPECT_EQ(u("connect_errno"), static_cast<std::uint64_t>(ECONNREFUSED));
  EXPECT_EQ(u("other_resets_sent"), 1u);
  EXPECT_EQ(u("orphan_resets"), 0u);
  EXPECT_EQ(u("resets_received"), 1u);
  EXPECT_EQ(u("elsewhere_other_resets_sent"), 0u);
  EXPECT_EQ(u("elsewhere_resets_received"), 0u);
  EXPECT_EQ(u("by_ino_other_resets_sent"), 1u);
  EXPECT_EQ(u("elsewhere_by_ino_other_resets_sent"), 0u);
  EXPECT_EQ(u("rst_no_socket"), 1u);  // its cause: no socket (NO_SOCKET)
  EXPECT_EQ(u("rst_unnamed"), 0u);
}

}  // namespace
}  // namespace rp::probes
