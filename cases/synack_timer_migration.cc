// synack_timer_migration
//
// A request (SYN answered, final ACK not come) of a listener that closed is not only decided
// when its final ACK arrives (syn_recv_on_close): its SYN+ACK retransmission timer decides it
// first if it fires before. reqsk_timer_handler() (net/ipv4/inet_connection_sock.c) finds its
// listener no longer TCP_LISTEN and
//   - with net.ipv4.tcp_migrate_req=1 (5.14, c905dee62232 "tcp: Migrate TCP_NEW_SYN_RECV
//     requests at retransmitting SYN+ACKs.") asks reuseport_migrate_sock() for another
//     listener of the group, clones the request onto it (inet_reqsk_clone()), puts the clone
//     in the ehash in place of the old one (TcpExt.TCPMigrateReqSuccess += 1) and
//     retransmits the SYN+ACK from there; the final ACK then finds the clone and the
//     handshake completes on the new listener;
//   - without migration (or with no listener left) drops the request
//     (`drop:`, __inet_csk_reqsk_queue_drop()) and sends nothing; the ACK that comes later
//     finds no request, is looked up like a new segment and a listener in LISTEN answers it
//     with a RST (tcp_rcv_state_process()).
// The first retransmission is due TCP_TIMEOUT_INIT (1 s) after the SYN-ACK
// (reqsk_queue_hash_req()), so this case waits about a second per variant.
//
// The client is the raw-socket client of cases/lib/raw_tcp.h, which withholds the ACK.
//
// Scenario, per variant (family, tcp_migrate_req):
//   1. In a fresh network namespace set tcp_migrate_req (where the kernel has it). Listener
//      V (SO_REUSEPORT, never accepts) listens alone on loopback:P; the raw client sends N=4
//      SYNs and reads the 4 SYN-ACKs: 4 requests of V.
//   2. Listener O (SO_REUSEPORT) joins the group; close(V). No ACK is sent.
//   3. Wait (bounded by 3 s, scaled in emulated guests) until the timer has decided every
//      request: the raw client got a retransmitted SYN-ACK for each (migrated), or P has no
//      SYN_RECV entry left (dropped). Read TcpExt.TCPMigrateReqSuccess/Failure now, before
//      any ACK: that is what the timer did.
//   4. Send the 4 final ACKs; for up to 2 s count the RSTs and what O accepts.
//   5. Compare with cases/expectations.json: migrate 1: 4 retransmitted SYN-ACKs, 4
//      migrations before any ACK, O accepts 4, no RST; migrate 0: no retransmission, the 4
//      requests gone, 4 RSTs, O accepts nothing.

#include <gtest/gtest.h>
#include <poll.h>

#include <optional>

#include "cases/lib/case_test.h"
#include "cases/lib/migrate.h"
#include "cases/lib/kernel.h"
#include "cases/lib/raw_tcp.h"
#include "harness/clock.h"
#include "harness/scope.h"
#include "harness/socket.h"
#include "probes/netstat.h"

namespace rp::cases {
namespace {

using Variant = FamilyMigrateVariant;

constexpr uint16_t kPort = 47420;
constexpr uint16_t kClientPort = 47430;
constexpr int kRequests = 4;
constexpr uint32_t kClientIsn = 0x30000000;

nlohmann::json tcpext_json(const probes::netstat::Counters& c, const char* name) {
  const auto v = probes::netstat::get(c, "TcpExt", name);
  return v ? nlohmann::json(*v) : nlohmann::json();
}

nlohmann::json delta(const nlohmann::json& after, const nlohmann::json& before) {
  if (after.is_null() || before.is_null()) return nullptr;
  return after.get<uint64_t>() - before.get<uint64_t>();
}

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
  const auto before = probes::netstat::read_current();

  UniqueFd other = open_listener(lo);
  victim.reset();

  int retransmitted = 0;
  std::vector<bool> seen(kRequests, false);
  uint64_t syn_recv = syn_recv_before_close;
  const uint64_t until = monotonic_ns() + 3'000'000'000ULL * static_cast<uint64_t>(timeout_scale());
  while (retransmitted < kRequests && syn_recv > 0 && monotonic_ns() < until) {
    raw.wait(10);
    while (auto th = raw.receive()) {
      const int i = req.index_of(*th);
      // The same SYN-ACK again: the clone keeps the server's ISN (inet_reqsk_clone()).
      if (i < 0 || !th->syn || !th->ack || seen[i] || ntohl(th->seq) != *req.server_isn[i]) continue;
      seen[i] = true;
      ++retransmitted;
    }
    syn_recv = proc_tcp_count(v.family, kPort, "03");
  }
  const auto at_timer = probes::netstat::read_current();

  send_final_acks(raw, req);
  uint64_t resets = 0, accepted = 0;
  std::vector<bool> reset_seen(kRequests, false);
  for (const uint64_t end = monotonic_ns() + 2'000'000'000ULL;
       resets + accepted < static_cast<uint64_t>(kRequests) && monotonic_ns() < end;) {
    pollfd p[2] = {{raw.fd(), POLLIN, 0}, {other.get(), POLLIN, 0}};
    poll(p, 2, 10);
    while (auto th = raw.receive()) {
      const int i = req.index_of(*th);
      if (i < 0 || !th->rst || reset_seen[i]) continue;
      reset_seen[i] = true;
      ++resets;
    }
    for (int c; (c = accept4(other.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0;) {
      ::close(c);
      ++accepted;
    }
  }

  nlohmann::json o;
  o["requests"] = kRequests;
  o["syn_recv_before_close"] = syn_recv_before_close;
  o["synacks_retransmitted"] = retransmitted;
  o["syn_recv_after_timer"] = syn_recv;
  o["migrated_at_timer"] = delta(tcpext_json(at_timer, "TCPMigrateReqSuccess"), tcpext_json(before, "TCPMigrateReqSuccess"));
  o["migrate_failures_at_timer"] =
      delta(tcpext_json(at_timer, "TCPMigrateReqFailure"), tcpext_json(before, "TCPMigrateReqFailure"));
  o["final_ack_resets"] = resets;
  o["accepted_by_other"] = accepted;
  o["unanswered"] = static_cast<uint64_t>(kRequests) - resets - accepted;
  return o;
}


RP_CASE(synack_timer_migration, ::testing::ValuesIn(family_migrate_variants()));

}  // namespace
}  // namespace rp::cases
