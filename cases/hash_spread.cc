// hash_spread
//
// Without a BPF program, a reuseport group picks a socket by a hash of the flow's 4-tuple:
// reciprocal_scale(hash, num_socks) in reuseport_select_sock() (net/core/sock_reuseport.c).
// The hash is the same as for the established-socket table (inet_ehashfn / udp_ehashfn),
// keyed by a secret fixed per boot plus net_hash_mix() of the network namespace (random per
// namespace since 5.3, 355b98553789 "netns: provide pure entropy for net_hash_mix()"). Each
// run of this case is in a fresh namespace, so its hash is a fresh one; within one run the
// same 4-tuple always hashes alike.
//
// Scenario, per variant (tcp/udp x IPv4/IPv6):
//   1. In a fresh network namespace, 4 SO_REUSEPORT sockets on one loopback port, which the
//      case reads itself (cases/lib/flows_by_port: TCP accepts, UDP recvfrom; no request, no
//      answer: a flow costs one handshake or one datagram, which matters in the TCG guests).
//   2. Spread: one flow from each of 20,000 chosen source ports (20000-39999): TCP clients
//      bound to the port connect in batches of 500, the case accepts on every listener and
//      reads the peer's port, and both ends close with RST (no TIME_WAIT holds a tuple);
//      UDP one datagram per port. Count per listener.
//   3. Judge the spread: each listener's share within +-6% of a quarter, and a chi-square
//      statistic (3 degrees of freedom) below 30.66 (p = 1e-6). Under a uniform hash one
//      listener's count has a standard deviation of 1.2% of the mean (binomial, n = 20,000,
//      p = 1/4), so 6% is ~5 standard deviations; p = 1e-6 keeps a case that runs 4 variants
//      x 20 repeats x 5 kernels from failing by chance (at p = 1e-3 it would, about once in
//      every 3 such sweeps).
//   4. Same 4-tuple, same socket: the first 1,000 ports of step 2 again. Count the tuples
//      whose socket changed.
//   5. UDP: 200 datagrams one after another from one socket (one source port) all reach
//      one listener.
//   6. Reconcile: TCP: every client whose handshake completed was accepted once, from a
//      port the case used; UDP: every datagram received once, from the port it was sent from.

#include <gtest/gtest.h>
#include <netinet/tcp.h>
#include <poll.h>

#include <cmath>
#include <set>

#include "cases/lib/case_test.h"
#include "cases/lib/observe.h"
#include "cases/lib/flows_by_port.h"
#include "harness/error.h"
#include "harness/socket.h"

namespace rp::cases {
namespace {

struct Variant {
  Proto proto;
  Family family;
  std::string name() const { return std::string(proto == Proto::Tcp ? "tcp" : "udp") + (family == Family::V4 ? "4" : "6"); }
};

constexpr uint16_t kPort = 47400;
constexpr int kListeners = 4;
constexpr uint64_t kFlows = 20000;
constexpr uint16_t kFirstPort = 20000;  // the flows' source ports: 20000-39999
constexpr size_t kRechecked = 1000;
constexpr double kShareTolerance = 0.06;
constexpr double kChiSquareLimit = 30.66;  // 3 degrees of freedom, p = 1e-6

struct Spread {
  std::vector<uint64_t> per_listener = std::vector<uint64_t>(kListeners, 0);
  uint64_t n = 0;
  double max_share_deviation = 0;  // relative to the mean
  double chi_square = 0;
};

Spread spread_of(const std::vector<int32_t>& listener_per_flow) {
  Spread s;
  for (int32_t l : listener_per_flow)
    if (l >= 0 && l < kListeners) {
      ++s.per_listener[static_cast<size_t>(l)];
      ++s.n;
    }
  const double mean = static_cast<double>(s.n) / kListeners;
  for (uint64_t c : s.per_listener) {
    const double d = static_cast<double>(c) - mean;
    s.chi_square += d * d / mean;
    s.max_share_deviation = std::max(s.max_share_deviation, std::abs(d) / mean);
  }
  return s;
}

// 20,000 flows from chosen ports and the first kRechecked again; UDP also 200 datagrams from
// one port. Read by the case from its own sockets.
nlohmann::json flows_scenario(const Variant& v, std::vector<int32_t>& flows, uint64_t& checked, uint64_t& moved) {
  OwnGroup group(v.proto, Endpoint::loopback(v.family, kPort), kListeners, 4096);
  std::vector<uint16_t> ports;
  for (uint64_t i = 0; i < kFlows; ++i) ports.push_back(static_cast<uint16_t>(kFirstPort + i));
  flows = group.flows(ports);
  const std::vector<int32_t> second = group.flows(std::vector<uint16_t>(ports.begin(), ports.begin() + kRechecked));
  for (size_t i = 0; i < second.size(); ++i) {
    ++checked;
    if (second[i] != flows[i]) ++moved;
  }
  if (v.proto == Proto::Tcp) return group.counts();
  const nlohmann::json before_one_port = group.counts();
  std::set<int32_t> one_port_sockets;
  for (int32_t s : group.flows(std::vector<uint16_t>(200, 45000)))
    if (s >= 0) one_port_sockets.insert(s);
  nlohmann::json o = group.counts();
  o["one_port_datagrams"] = o["attempts"].get<uint64_t>() - before_one_port["attempts"].get<uint64_t>();
  o["one_port_received"] = o["received"].get<uint64_t>() - before_one_port["received"].get<uint64_t>();
  o["one_port_listeners"] = one_port_sockets.size();
  return o;
}

nlohmann::json scenario(const Variant& v) {
  std::vector<int32_t> flows;  // listener per source port
  uint64_t checked = 0, moved = 0;
  nlohmann::json o = flows_scenario(v, flows, checked, moved);
  Spread s = spread_of(flows);
  o["listeners"] = kListeners;
  o["distinct_source_ports"] = s.n;
  o["per_listener"] = s.per_listener;
  o["max_share_deviation"] = std::round(s.max_share_deviation * 10000) / 10000;
  o["share_tolerance"] = kShareTolerance;
  o["chi_square"] = std::round(s.chi_square * 100) / 100;
  o["chi_square_limit"] = kChiSquareLimit;
  o["enough_flows"] = s.n >= kFlows;
  o["shares_within_tolerance"] = s.max_share_deviation <= kShareTolerance;
  o["chi_square_below_limit"] = s.chi_square < kChiSquareLimit;
  o["tuples_rechecked"] = checked;
  o["tuples_moved"] = moved;
  return o;
}

RP_CASE(hash_spread, ::testing::Values(Variant{Proto::Tcp, Family::V4}, Variant{Proto::Tcp, Family::V6},
                                       Variant{Proto::Udp, Family::V4}, Variant{Proto::Udp, Family::V6}));

}  // namespace
}  // namespace rp::cases
