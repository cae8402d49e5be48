// syncookie_group
//
// A SYN answered with a SYN cookie leaves nothing behind: tcp_conn_request()
// (net/ipv4/tcp_input.c) sends the cookie SYN-ACK and frees the request. With
// net.ipv4.tcp_syncookies=2 it does so for every SYN (Documentation/networking/ip-sysctl.rst,
// tcp_syncookies: "2 - always send cookies"; per network namespace). So the final ACK finds
// no request in the ehash and is looked up like a new segment: __inet_lookup_listener() ->
// the reuseport group selects a listener again (its sk_reuseport program, or the hash of the
// 4-tuple), and cookie_v4_check()/cookie_v6_check() on THAT listener rebuild the
// connection (tcp_get_cookie_sock() queues the child on it). The cookie secret is global, not
// the listener's, and the "recent overflow" that cookie_v4_check() requires
// (tcp_synq_no_recent_overflow()) is kept in the group (sk_reuseport_cb->synq_overflow_ts,
// 4.19, "tcp: Avoid TCP syncookie rejected by SO_REUSEPORT socket"), so any member of the
// group accepts the cookie. Consequences:
//   - a steering program runs twice per connection (SYN and ACK) instead of once, and the
//     ACK lands where the program points now, not where the SYN went;
//   - with the group unchanged and no program, the hash of the same 4-tuple selects the same
//     member for the SYN and the ACK; when the group changes in between, the ACK goes to the
//     member the group selects now;
//   - a handshake in flight (cookie sent, ACK not yet) survives the close of the listener
//     that answered its SYN, without tcp_migrate_req: the ACK completes on a member still
//     listening. A request made without a cookie belongs to its listener and is reset
//     (syn_recv_on_close).
// tools/testing/selftests/bpf/prog_tests/select_reuseport.c (test_syncookie) checks that the
// program's selection holds for a cookie ACK.
//
// Scenario, per variant (family, what is measured, tcp_syncookies 2 = always or 1 = the
// default, which sends none here: the queues never overflow), tcp_migrate_req=0 where present:
//   count: listeners A and B; an sk_reuseport program (bpf/reuseport_steer.bpf.c,
//      rp_steer_select, which counts its runs) selects A. C=8 clients connect one after
//      another and A accepts each. Read the program's runs before any socket closes.
//   moved: A and B, the program selects A. The raw-socket client (cases/lib/raw_tcp.h)
//      sends N=4 SYNs and reads the SYN-ACKs; the program is switched to B; the 4 final ACKs
//      are sent; count what A and B accept and the RSTs for up to 2 s.
//   close: A alone answers N=4 raw SYNs; B joins the group; close(A); the 4 ACKs are sent;
//      count what B accepts and the RSTs for up to 2 s.
// Compare with cases/expectations.json: with cookies the program runs 2C times, the moved
// ACKs complete on B, the closed A's handshakes complete on B; without cookies C runs, the
// moved ACKs complete on A (their requests), the closed A's handshakes are reset.

#include <gtest/gtest.h>
#include <poll.h>

#include <optional>

#include "cases/lib/case_test.h"
#include "cases/lib/migrate.h"
#include "cases/lib/kernel.h"
#include "cases/lib/raw_tcp.h"
#include "harness/clock.h"
#include "harness/error.h"
#include "harness/scope.h"
#include "harness/socket.h"
#include "probes/netstat.h"
#include "probes/reuseport_steer.h"

namespace rp::cases {
namespace {

using probes::ReuseportSteer;
using probes::SteerProgram;

enum class What { Count, Moved, Close };

struct Variant {
  Family family;
  What what;
  int syncookies;

  std::string name() const {
    static const char* const kWhat[] = {"count", "moved", "close"};
    return std::string("tcp") + (family == Family::V4 ? "4" : "6") + "_" + kWhat[static_cast<int>(what)] +
           "_syncookies" + std::to_string(syncookies);
  }
};

constexpr uint16_t kPort = 47440;
constexpr uint16_t kClientPort = 47450;
constexpr int kRequests = 4;
constexpr int kClients = 8;
constexpr uint32_t kClientIsn = 0x40000000;

uint64_t tcpext(const char* name) {
  return probes::netstat::get(probes::netstat::read_current(), "TcpExt", name).value_or(0);
}

uint64_t accept_all(int fd) {
  uint64_t n = 0;
  for (int c; (c = accept4(fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0; ++n) ::close(c);
  return n;
}

nlohmann::json scenario(const Variant& v) {
  SysctlScope cookies("net.ipv4.tcp_syncookies", std::to_string(v.syncookies));
  const auto migrate = set_migrate_req(0);
  const uint64_t sent_before = tcpext("SyncookiesSent");
  const uint64_t recv_before = tcpext("SyncookiesRecv");
  const uint64_t failed_before = tcpext("SyncookiesFailed");

  ListenerOptions lo;
  lo.addr = Endpoint::loopback(v.family, kPort);
  UniqueFd a = open_listener(lo);
  UniqueFd b;
  std::optional<ReuseportSteer> prog;
  if (v.what != What::Close) {
    b = open_listener(lo);
    prog.emplace(SteerProgram::Select);
    prog->set_socket(0, a.get());
    prog->set_socket(1, b.get());
    prog->set_select(0);
    prog->attach(a.get());
  }

  nlohmann::json o;
  uint64_t on_a = 0, on_b = 0, resets = 0;
  if (v.what == What::Count) {
    sockaddr_storage ss{};
    const socklen_t sl = Endpoint::loopback(v.family, kPort).to_sockaddr(ss);
    std::vector<UniqueFd> clients;
    for (int i = 0; i < kClients; ++i) {
      UniqueFd c(static_cast<int>(check_sys(socket(af_of(v.family), SOCK_STREAM | SOCK_CLOEXEC, 0), "socket client")));
      check_sys(connect(c.get(), reinterpret_cast<sockaddr*>(&ss), sl), "connect " + lo.addr.str());
      clients.push_back(std::move(c));
    }
    // A child is queued when the ACK is processed, inside the client's connect() on loopback;
    // poll bounds the wait for one that is not.
    for (const uint64_t until = monotonic_ns() + 2'000'000'000ULL * static_cast<uint64_t>(timeout_scale());
         on_a + on_b < kClients && monotonic_ns() < until;) {
      pollfd p[2] = {{a.get(), POLLIN, 0}, {b.get(), POLLIN, 0}};
      poll(p, 2, 10);
      on_a += accept_all(a.get());
      on_b += accept_all(b.get());
    }
    o["connections"] = kClients;
    o["program_runs"] = prog->counts().select_runs;  // before any socket closes
  } else {
    RawClient raw(v.family);
    RawRequests req = open_raw_requests(raw, v.family, kClientPort, kRequests, kPort, kClientIsn,
                                        std::chrono::milliseconds(2000) * timeout_scale());
    if (req.answered() < kRequests)
      throw std::runtime_error("only " + std::to_string(req.answered()) + " of " + std::to_string(kRequests) +
                               " SYN-ACKs arrived");
    o["syn_recv_before_ack"] = proc_tcp_count(v.family, kPort, "03");
    if (v.what == What::Moved) {
      prog->set_select(1);
    } else {
      b = open_listener(lo);
      a.reset();
    }
    send_final_acks(raw, req);
    std::vector<bool> reset_seen(kRequests, false);
    for (const uint64_t until = monotonic_ns() + 2'000'000'000ULL;
         on_a + on_b + resets < kRequests && monotonic_ns() < until;) {
      pollfd p[3] = {{raw.fd(), POLLIN, 0}, {a ? a.get() : -1, POLLIN, 0}, {b.get(), POLLIN, 0}};
      poll(p, 3, 10);
      while (auto th = raw.receive()) {
        const int i = req.index_of(*th);
        if (i < 0 || !th->rst || reset_seen[i]) continue;
        reset_seen[i] = true;
        ++resets;
      }
      if (a) on_a += accept_all(a.get());
      on_b += accept_all(b.get());
    }
    o["requests"] = kRequests;
    o["final_ack_resets"] = resets;
    if (prog) o["program_runs"] = prog->counts().select_runs;
  }
  if (v.what != What::Close) o["accepted_by_a"] = on_a;
  o["accepted_by_b"] = on_b;
  o["syncookies_sent"] = tcpext("SyncookiesSent") - sent_before;
  o["syncookies_recv"] = tcpext("SyncookiesRecv") - recv_before;
  o["syncookies_failed"] = tcpext("SyncookiesFailed") - failed_before;
  return o;
}

std::vector<Variant> variants() {
  std::vector<Variant> out;
  for (What w : {What::Count, What::Moved, What::Close})
    for (int cookies : {2, 1})
      for (Family f : {Family::V4, Family::V6}) out.push_back({f, w, cookies});
  return out;
}

RP_CASE(syncookie_group, ::testing::ValuesIn(variants()));

}  // namespace
}  // namespace rp::cases
