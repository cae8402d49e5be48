// udp_connected_members
//
// A member of a UDP reuseport group that connect()s to one client (ip4_datagram_connect()
// / ip6_datagram_connect() set sk_state = TCP_ESTABLISHED and mark the group,
// reuseport_has_conns_set()) takes that client's flow and only it:
//   - udp4_lib_lookup2() / udp6_lib_lookup2(): while the group has connections the first
//     reuseport pick is not returned at once; every socket is scored (compute_score(): a
//     connected socket matches only its peer's address and port, and scores above the
//     unconnected ones for it), so the client's datagrams reach the connected member
//     (commit acdcecc61285 "udp: correct reuseport selection with connected sockets",
//     5.4; from 6.13 the 4-tuple hash, udp4_lib_lookup4(), finds it first: commit
//     78c91ae2c6de "ipv4/udp: Add 4-tuple hash for connected socket" and its series).
//   - Every other flow: compute_score() gives the connected member -1, and
//     reuseport_select_sock_by_hash() skips TCP_ESTABLISHED members: a flow whose hash
//     slot is the connected member's moves to the next slot (i + 1, wrapping), so that
//     member takes two shares and the others keep theirs. Measured: so up to 6.12; from
//     6.17 (of the matrix kernels) the other flows remap as if the connected member had
//     left the group (the last member takes its slot, the hash is scaled over K - 1). The
//     commit between the two is not identified yet; the 6.13 4-tuple hash series is the
//     candidate to read.
//
// Scenario, per variant (family, K = 2 or 4 members):
//   1. In a fresh network namespace open K SO_REUSEPORT UDP sockets on loopback:P and learn
//      which member each of 32 x K source ports hashes to (one probe datagram each, read by
//      the case from every member).
//   2. connect() member 0 to loopback:C (C not among the ports).
//   3. Send 16 datagrams from C and one from each port again; read every member.
//   4. Compare with cases/expectations.json: C's datagrams all at member 0, no other flow
//      there; the other flows as the "skip" model (before 6.17) or the "detach" model.

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <map>

#include "cases/lib/case_test.h"
#include "cases/lib/flows_by_port.h"
#include "cases/lib/udp_group.h"
#include "harness/error.h"
#include "harness/socket.h"

namespace rp::cases {
namespace {

struct Variant {
  Family family;
  int members;

  std::string name() const { return std::string("udp") + (family == Family::V4 ? "4" : "6") + "_k" + std::to_string(members); }
};

constexpr uint16_t kPort = 47420;
constexpr uint16_t kFirstClientPort = 48000;
constexpr uint16_t kConnectedClientPort = 47990;
constexpr int kFlowsPerMember = 32;
constexpr int kConnectedFlowDatagrams = 16;

nlohmann::json scenario(const Variant& v) {
  UdpGroup g = open_udp_group(v.family, kPort, v.members, 0, kFirstClientPort, kFlowsPerMember * v.members);
  sockaddr_storage peer;
  const socklen_t plen = Endpoint::loopback(v.family, kConnectedClientPort).to_sockaddr(peer);
  check_sys(connect(g.members[0].get(), reinterpret_cast<sockaddr*>(&peer), plen), "connect member 0");

  UdpFlowTally t;
  const std::vector<uint16_t> connected_ports(kConnectedFlowDatagrams, kConnectedClientPort);
  const auto conn = udp_socket_per_datagram(g.members, g.addr, connected_ports, t);
  const auto after = udp_socket_per_datagram(g.members, g.addr, g.ports, t);

  uint64_t conn_at_connected = 0, conn_elsewhere = 0;
  for (int32_t m : conn) (m == 0 ? conn_at_connected : conn_elsewhere) += 1;
  uint64_t formerly_connected = 0, formerly_elsewhere = 0, to_connected = 0, moved_to_next = 0, unchanged = 0,
           moved_otherwise = 0;
  for (size_t i = 0; i < after.size(); ++i) {
    const bool was0 = g.member_of[i] == 0;
    (was0 ? formerly_connected : formerly_elsewhere) += 1;
    if (after[i] == 0) ++to_connected;
    else if (was0 && after[i] == 1) ++moved_to_next;
    else if (!was0 && after[i] == g.member_of[i]) ++unchanged;
    else ++moved_otherwise;  // includes -1, lost
  }

  // Two models of the other flows' remap, each counted as the flows that contradict it:
  // "skip": reuseport_select_sock() steps over the connected member to the next slot, so
  // member 0's flows go to member 1 and every other flow stays. "detach": the connected
  // member left the hash set as a closed one does (reuseport_detach_sock(): the last member
  // takes slot 0, then reciprocal_scale() over K-1), so a flow at old slot a in
  // [a/K, (a+1)/K) lands at a new slot s whose [s/(K-1), (s+1)/(K-1)) overlaps it.
  const int k = v.members;
  uint64_t against_skip = 0, against_detach = 0;
  for (size_t i = 0; i < after.size(); ++i) {
    const int a = g.member_of[i], b = after[i];
    if (b != (a == 0 ? 1 : a)) ++against_skip;
    const int s = b == k - 1 ? 0 : b;  // b's slot once member 0 left
    if (b <= 0 || !(a * (k - 1) < (s + 1) * k && s * k < (a + 1) * (k - 1))) ++against_detach;
  }

  // Before -> after member per flow, "0>1": 12: the remap as it happened, for the record.
  std::map<std::string, uint64_t> transitions;
  for (size_t i = 0; i < after.size(); ++i)
    ++transitions[std::to_string(g.member_of[i]) + ">" + std::to_string(after[i])];

  nlohmann::json o = udp_flow_counts(t);
  o["transitions"] = transitions;
  o["flows_against_skip_model"] = against_skip;
  o["flows_against_detach_model"] = against_detach;
  o["members"] = v.members;
  o["connected_flow_sent"] = kConnectedFlowDatagrams;
  o["connected_flow_at_connected"] = conn_at_connected;
  o["connected_flow_elsewhere"] = conn_elsewhere;
  o["flows"] = after.size();
  o["flows_formerly_at_connected"] = formerly_connected;
  o["flows_formerly_elsewhere"] = formerly_elsewhere;
  o["unconnected_to_connected"] = to_connected;
  o["moved_to_next_member"] = moved_to_next;
  o["unchanged"] = unchanged;
  o["moved_otherwise"] = moved_otherwise;
  return o;
}

std::vector<Variant> variants() {
  std::vector<Variant> out;
  for (Family f : {Family::V4, Family::V6})
    for (int k : {2, 4}) out.push_back({f, k});
  return out;
}

RP_CASE(udp_connected_members, ::testing::ValuesIn(variants()));

}  // namespace
}  // namespace rp::cases
