// udp_unread_member
//
// A member of a UDP reuseport group that stays open but is never read keeps its share of
// the group's hash: reuseport_select_sock() picks by the 4-tuple hash alone
// (reciprocal_scale(hash, num_socks)) and never looks at a member's receive queue. Its
// flows' datagrams fill its receive buffer; each one after that is dropped by
// __udp_enqueue_schedule_skb() (sk_rmem_alloc over sk_rcvbuf: -ENOMEM), which
// __udp_queue_rcv_skb() / __udpv6_queue_rcv_skb() count as UDP_MIB_RCVBUFERRORS and
// UDP_MIB_INERRORS (Udp.RcvbufErrors and Udp.InErrors, Udp6.* for IPv6). No other member
// gets them. How many fit before the drops start depends on the kernel's rcvbuf test (its
// form changed over the versions), so the queued count is judged only as "some", and every
// datagram is reconciled: sent = read by the others + queued at the unread member + drops.
//
// Scenario, per variant (family, K = 2 or 4 members):
//   1. In a fresh network namespace open K SO_REUSEPORT UDP sockets on loopback:P and learn
//      which member each of 64 x K source ports hashes to (one probe datagram each, read by
//      the case from every member). Member 0 is the unread one; set its SO_RCVBUF to 2048.
//   2. Read the namespace's UDP counters. Send one datagram from each port (the unread
//      member's flows first, from one CPU) and read the other members until all of their
//      flows' datagrams arrived.
//   3. Read the counters again; drain the unread member and count what it held.
//   4. Compare with cases/expectations.json: nothing misdelivered, the others read all of
//      theirs, the unread member holds some and Udp(6).RcvbufErrors = InErrors = the rest.

#include <gtest/gtest.h>

#include "cases/lib/case_test.h"
#include "cases/lib/udp_group.h"
#include "harness/socket.h"

namespace rp::cases {
namespace {

struct Variant {
  Family family;
  int members;

  std::string name() const { return std::string("udp") + (family == Family::V4 ? "4" : "6") + "_k" + std::to_string(members); }
};

constexpr uint16_t kPort = 47400;
constexpr uint16_t kFirstClientPort = 47500;
constexpr int kFlowsPerMember = 64;
constexpr int kUnreadRcvbuf = 2048;  // the kernel doubles it (sock_setsockopt), and floors it at SOCK_MIN_RCVBUF

int64_t diff(uint64_t after, uint64_t before) { return static_cast<int64_t>(after) - static_cast<int64_t>(before); }

nlohmann::json scenario(const Variant& v) {
  UdpGroup g = open_udp_group(v.family, kPort, v.members, kUnreadRcvbuf, kFirstClientPort, kFlowsPerMember * v.members);
  const UdpCounters before = read_udp_counters(v.family);
  const UdpRound r = udp_round(g, 1u << 20, false);
  const UdpCounters after = read_udp_counters(v.family);
  const uint64_t queued = drain_udp(g.members[g.victim].get());
  const int64_t rcvbuf_errors = diff(after.rcvbuf_errors, before.rcvbuf_errors);

  nlohmann::json o;
  o["members"] = v.members;
  o["sent"] = r.sent;
  o["to_unread"] = r.to_victim;
  o["read_by_others"] = r.read_by_others;
  o["others_missing"] = r.others_missing;
  o["misdelivered"] = r.misdelivered;
  o["queued_in_unread"] = queued;
  o["netstat_rcvbuf_errors"] = rcvbuf_errors;
  o["netstat_in_errors"] = diff(after.in_errors, before.in_errors);
  o["netstat_no_ports"] = diff(after.no_ports, before.no_ports);
  // Every datagram exactly one outcome; 0 when the ledger closes.
  o["unaccounted"] = static_cast<int64_t>(r.sent) - static_cast<int64_t>(r.read_by_others + queued) - rcvbuf_errors;
  return o;
}

std::vector<Variant> variants() {
  std::vector<Variant> out;
  for (Family f : {Family::V4, Family::V6})
    for (int k : {2, 4}) out.push_back({f, k});
  return out;
}

RP_CASE(udp_unread_member, ::testing::ValuesIn(variants()));

}  // namespace
}  // namespace rp::cases
