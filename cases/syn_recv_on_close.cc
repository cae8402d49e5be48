// syn_recv_on_close
//
// A connection whose handshake is half done (the listener sent its SYN-ACK, the client's
// final ACK has not arrived) is a request socket in the listener's ehash, not a child in its
// accept queue, so closing the listener does not reset it (inet_csk_listen_stop() only walks
// the accept queue). What happens is decided when the final ACK arrives: tcp_v4_rcv() /
// tcp_v6_rcv() find the request, see that its listener is no longer TCP_LISTEN and
//   - without migration drop the request (inet_csk_reqsk_queue_drop_and_put()) and look
//     the ACK up again: another listener on the port (an ACK in LISTEN,
//     tcp_rcv_state_process()) or no socket at all answers it with a RST;
//   - with net.ipv4.tcp_migrate_req=1 (5.14+) move it to another listener of the reuseport
//     group and complete the handshake there (commit d4f2c86b2b7e "tcp: Migrate
//     TCP_NEW_SYN_RECV requests at receiving the final ACK."; its sibling c905dee62232 does
//     the same when the SYN-ACK is retransmitted). With no listener left, it is a RST again.
//
// Holding a request in SYN_RECV on loopback needs a client that withholds its ACK. The case
// plays the client with a raw IPPROTO_TCP socket: it writes the SYN and the ACK itself and
// reads the server's SYN-ACK and RSTs (a raw socket gets a copy of every TCP packet the
// namespace receives). The kernel would answer the SYN-ACK itself, with a RST that kills
// the request, since no socket of its own owns the client's address and port. So the
// client's port belongs to an "absorber": a TCP socket listening on that loopback port with
// a socket filter that drops everything. The lookup finds it, tcp_filter() drops the
// segment before any TCP processing, and nothing is sent back; the raw socket still sees
// the segment. No second address is needed, and nothing but syscalls.
//
// Scenario, per variant (family, "k2": a second listener joins after the SYN-ACK, or
// "alone"; tcp_migrate_req):
//   1. In a fresh network namespace set tcp_migrate_req (where the kernel has it). Open N=4
//      absorbers on loopback ports X0..X3 and the victim listener V (SO_REUSEPORT) on
//      loopback:P; it never accepts.
//   2. From the raw socket send a SYN from each Xi to P and read the N SYN-ACKs (each
//      acknowledging its SYN). Count P's SYN_RECV entries in /proc/thread-self/net/tcp[6].
//      V is alone in its group at this point, so every request is V's.
//   3. k2: open listener O (SO_REUSEPORT) on loopback:P now; it joins V's group.
//   4. close(V). Then send the N final ACKs.
//   5. For up to 2 s, count the RSTs from P to the Xi (raw socket) and the children O can
//      accept.
//   6. Compare with cases/expectations.json: without migration (and with nowhere to
//      migrate to) every final ACK gets a RST; with migration O accepts all N and nothing is
//      reset.

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

namespace rp::cases {
namespace {

struct Variant {
  Family family;
  bool second_listener;
  int migrate;

  std::string name() const {
    return std::string("tcp") + (family == Family::V4 ? "4" : "6") + (second_listener ? "_k2" : "_alone") +
           "_migrate" + std::to_string(migrate);
  }
};

constexpr uint16_t kPort = 47380;
constexpr uint16_t kClientPort = 47390;
constexpr int kRequests = 4;
constexpr uint32_t kClientIsn = 0x10000000;

nlohmann::json scenario(const Variant& v) {
  const auto migrate = set_migrate_req(v.migrate);

  ListenerOptions lo;
  lo.addr = Endpoint::loopback(v.family, kPort);
  UniqueFd victim = open_listener(lo);
  RawClient raw(v.family);
  RawRequests req = open_raw_requests(raw, v.family, kClientPort, kRequests, kPort, kClientIsn,
                                      std::chrono::milliseconds(2000) * timeout_scale());
  if (req.answered() < kRequests)
    throw std::runtime_error("only " + std::to_string(req.answered()) + " of " + std::to_string(kRequests) +
                             " SYN-ACKs arrived");
  const uint64_t syn_recv_before_close = proc_tcp_count(v.family, kPort, "03");

  UniqueFd other;
  if (v.second_listener) other = open_listener(lo);
  victim.reset();
  send_final_acks(raw, req);

  uint64_t resets = 0, accepted = 0;
  std::vector<bool> reset_seen(kRequests, false);
  const uint64_t until = monotonic_ns() + 2'000'000'000ULL;
  while (resets + accepted < static_cast<uint64_t>(kRequests) && monotonic_ns() < until) {
    pollfd p[2] = {{raw.fd(), POLLIN, 0}, {other ? other.get() : -1, POLLIN, 0}};
    poll(p, 2, 10);
    while (auto th = raw.receive()) {
      const int i = req.index_of(*th);
      if (i < 0 || !th->rst || reset_seen[i]) continue;
      reset_seen[i] = true;
      ++resets;
    }
    while (other) {
      const int c = accept4(other.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (c < 0) break;
      ::close(c);
      ++accepted;
    }
  }

  nlohmann::json o;
  o["requests"] = kRequests;
  o["syn_recv_before_close"] = syn_recv_before_close;
  o["final_ack_resets"] = resets;
  o["accepted_by_other"] = accepted;
  o["unanswered"] = static_cast<uint64_t>(kRequests) - resets - accepted;
  return o;
}

std::vector<Variant> variants() {
  std::vector<Variant> out;
  for (int m : {0, 1})
    for (Family f : {Family::V4, Family::V6})
      for (bool k2 : {true, false}) out.push_back({f, k2, m});
  return out;
}

RP_CASE(syn_recv_on_close, ::testing::ValuesIn(variants()));

}  // namespace
}  // namespace rp::cases
