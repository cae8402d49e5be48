// listen_after_shutdown
//
// shutdown(SHUT_RDWR) on a listener takes it out of its reuseport group (tcp_disconnect()
// -> inet_unhash()), leaves the socket bound and TCP_CLOSE, and listen() may be called on it
// again. Whether it then rejoins the group depends on where shutdown left it:
//   - tcp_migrate_req=0: reuseport_detach_sock() dropped it from the group; listen() ->
//     inet_reuseport_add_sock() finds the group's sockets and joins as a new member.
//   - tcp_migrate_req=1 (5.14+): reuseport_stop_listen_sock() kept it in the group's
//     "closed section", so its queued children can be migrated; listen() brings it back
//     through reuseport_resurrect(), added by commit 333bb73f620e ("tcp: Keep TCP_CLOSE
//     sockets in the reuseport group.", 5.14, Kuniyuki Iwashima) in the series "tcp:
//     Socket migration in the reuseport group".
//
// Scenario, per variant (family, tcp_migrate_req):
//   1. In a fresh network namespace, set tcp_migrate_req (where the kernel has it), and
//      listen on loopback:P with two SO_REUSEPORT sockets, A and B.
//   2. Phase "before": 64 connections, one after another (on loopback the handshake is
//      complete when connect() returns); after each, accept() on A and on B (non-blocking)
//      shows which one got it. The client closes with an RST (SO_LINGER 0): no TIME_WAIT.
//   3. shutdown(A, SHUT_RDWR); phase "after_shutdown": 64 more.
//   4. listen(A) again (record the result); phase "after_relisten": 64 more.
//   5. 32 connections wait in A's and B's accept queues; accept A's own, then shutdown(B):
//      with migration B's children move to the relistened A (all accepted there, no
//      client reset), without it they are reset.
//   6. Compare with cases/expectations.json: A takes part before, none after the shutdown,
//      some again after listen(); no connection is lost in any phase; step 5 as said.

#include <gtest/gtest.h>

#include <optional>

#include "cases/lib/case_test.h"
#include "cases/lib/migrate.h"
#include "cases/lib/kernel.h"
#include "harness/error.h"
#include "harness/scope.h"
#include "harness/socket.h"

namespace rp::cases {
namespace {

using Variant = FamilyMigrateVariant;

constexpr uint16_t kPort = 47350;
constexpr int kPerPhase = 64;
constexpr int kQueued = 32;

struct Phase {
  uint64_t a = 0, b = 0, lost = 0;
};

Phase connect_phase(const Endpoint& target, int a, int b) {
  Phase ph;
  sockaddr_storage ss;
  const socklen_t len = target.to_sockaddr(ss);
  for (int i = 0; i < kPerPhase; ++i) {
    UniqueFd c(static_cast<int>(check_sys(socket(af_of(target.family), SOCK_STREAM | SOCK_CLOEXEC, 0), "socket client")));
    check_sys(connect(c.get(), reinterpret_cast<sockaddr*>(&ss), len), "connect " + target.str());
    int child = accept4(a, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (child >= 0) {
      ++ph.a;
    } else {
      // A shut-down listener answers EINVAL: it is not listening.
      if (errno != EAGAIN && errno != EINVAL) throw_sys("accept A");
      child = accept4(b, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (child >= 0)
        ++ph.b;
      else if (errno == EAGAIN)
        ++ph.lost;
      else
        throw_sys("accept B");
    }
    if (child >= 0) ::close(child);
    const linger abort_close{1, 0};
    check_sys(setsockopt(c.get(), SOL_SOCKET, SO_LINGER, &abort_close, sizeof abort_close), "setsockopt SO_LINGER");
  }
  return ph;
}

uint64_t drain_accept(int listener) {
  uint64_t n = 0;
  for (;;) {
    const int child = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (child < 0) {
      if (errno != EAGAIN) throw_sys("accept A");
      return n;
    }
    ::close(child);
    ++n;
  }
}

nlohmann::json scenario(const Variant& v) {
  const auto migrate = set_migrate_req(v.migrate);

  ListenerOptions lo;
  lo.addr = Endpoint::loopback(v.family, kPort);
  UniqueFd a = open_listener(lo);
  UniqueFd b = open_listener(lo);

  nlohmann::json o;
  auto record = [&](const char* phase, const Phase& ph) {
    o[std::string("a_") + phase] = ph.a;
    o[std::string("b_") + phase] = ph.b;
    o[std::string("lost_") + phase] = ph.lost;
  };
  const Phase before = connect_phase(lo.addr, a.get(), b.get());
  record("before", before);
  check_sys(shutdown(a.get(), SHUT_RDWR), "shutdown A");
  const Phase after_shutdown = connect_phase(lo.addr, a.get(), b.get());
  record("after_shutdown", after_shutdown);
  o["relisten"] = listen(a.get(), lo.backlog) == 0 ? "OK" : errno_name(errno);
  const Phase after_relisten = connect_phase(lo.addr, a.get(), b.get());
  record("after_relisten", after_relisten);
  // A relistened socket is a full member again, also as a migration target (the claim of
  // bpf/prog_tests/migrate_reuseport.c, which listens again and migrates queues to it):
  // connections wait in both queues, A's own are accepted, then B is shut down.
  {
    sockaddr_storage ss;
    const socklen_t len = lo.addr.to_sockaddr(ss);
    std::vector<UniqueFd> clients;
    for (int i = 0; i < kQueued; ++i) {
      clients.emplace_back(static_cast<int>(check_sys(socket(af_of(v.family), SOCK_STREAM | SOCK_CLOEXEC, 0), "socket client")));
      check_sys(connect(clients.back().get(), reinterpret_cast<sockaddr*>(&ss), len), "connect " + lo.addr.str());
    }
    const uint64_t a_own = drain_accept(a.get());
    check_sys(shutdown(b.get(), SHUT_RDWR), "shutdown B");
    o["queued_connections"] = kQueued;
    o["a_own_before_b_shutdown"] = a_own;
    o["a_accepted_after_b_shutdown"] = drain_accept(a.get());
    uint64_t resets = 0;
    for (const auto& c : clients) {
      char byte;
      resets += recv(c.get(), &byte, 1, MSG_DONTWAIT) < 0 && errno == ECONNRESET;
    }
    o["queued_client_resets"] = resets;
  }
  // Whether A took part at all: with 64 connections spread by a hash over two sockets, a
  // member of the group gets none with probability 2^-64.
  o["a_served_before"] = before.a > 0;
  o["a_served_after_relisten"] = after_relisten.a > 0;
  return o;
}


RP_CASE(listen_after_shutdown, ::testing::ValuesIn(family_migrate_variants()));

}  // namespace
}  // namespace rp::cases
