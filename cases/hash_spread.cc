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
//   1. In a fresh network namespace, widen net.ipv4.ip_local_port_range (TCP) so that
//      20,000 connections need no port twice; start 4 SO_REUSEPORT listeners (threads) on
//      one loopback port.
//   2. Spread: TCP: rounds of 5,000 connections from the load generator, source port
//      recorded per attempt, until 20,000 distinct ports were used; UDP: one datagram from each of 20,000 chosen source ports. Count per
//      listener over distinct source ports.
//   3. Judge the spread: each listener's share within +-6% of a quarter, and a chi-square
//      statistic (3 degrees of freedom) below 30.66 (p = 1e-6). Under a uniform hash one
//      listener's count has a standard deviation of 1.2% of the mean (binomial, n = 20,000,
//      p = 1/4), so 6% is ~5 standard deviations; p = 1e-6 keeps a case that runs 4 variants
//      x 20 repeats x 5 kernels from failing by chance (at p = 1e-3 it would, about once in
//      every 3 such sweeps).
//   4. Same 4-tuple, same socket: TCP: every port the load used again, and 32 chosen ports, 3 connections from each
//      (the client waits for the server's FIN and aborts with RST, so no TIME_WAIT holds the
//      tuple); UDP: the first 1,000 ports of step 2 again. Count the tuples whose listener
//      changed.
//   5. UDP: 200 datagrams one after another from one socket (one source port) all reach
//      one listener.
//   6. Reconcile: what the clients saw per listener = what the listeners counted.

#include <gtest/gtest.h>
#include <netinet/tcp.h>
#include <poll.h>

#include <cmath>
#include <set>

#include "cases/lib/case_test.h"
#include "cases/lib/observe.h"
#include "harness/error.h"
#include "harness/loadgen.h"
#include "harness/scope.h"
#include "harness/server.h"
#include "harness/udp_client.h"

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

nlohmann::json scenario(const Variant& v) {
  std::optional<SysctlScope> ports;
  if (v.proto == Proto::Tcp) ports.emplace("net.ipv4.ip_local_port_range", "10000 64999");
  ListenerGroup group;
  ListenerSpec spec;
  spec.socket.proto = v.proto;
  spec.socket.addr = Endpoint::loopback(v.family, kPort);
  spec.socket.backlog = 4096;
  for (int i = 0; i < kListeners; ++i) group.add(spec);

  nlohmann::json o;
  std::vector<int32_t> flows;  // listener per distinct source port
  uint64_t tuples_checked = 0, tuples_moved = 0;
  std::map<int32_t, uint64_t> seen_by_clients;
  std::optional<Ledger> ledger;
  if (v.proto == Proto::Tcp) {
    LoadOptions lo;
    lo.target = Endpoint::loopback(v.family, kPort);
    lo.threads = 2;
    lo.concurrency = 64;
    lo.max_attempts = 5000;
    lo.max_duration = std::chrono::seconds(30);
    lo.record_source_port = true;
    // connect() hands out a port again once its last connection is gone (about a quarter
    // of 20,000 here), so the load runs in rounds until 20,000 distinct ports were used.
    // A port used again is a repeated 4-tuple: it must reach the same listener.
    ledger.emplace();
    std::map<uint16_t, int32_t> by_port;
    uint64_t port_reused = 0, port_reused_moved = 0;
    for (int round = 0; round < 12 && by_port.size() < kFlows; ++round) {
      LoadGenerator load(lo);
      load.run();
      ledger->merge(load.ledger());
      for (const Attempt& a : load.ledger().attempts()) {
        if (a.outcome != Outcome::Served || a.source_port == 0) continue;
        auto [it, fresh] = by_port.emplace(a.source_port, a.listener);
        if (!fresh) {
          ++port_reused;
          if (it->second != a.listener) ++port_reused_moved;
        }
      }
    }
    for (auto& [p, l] : by_port) flows.push_back(l);
    o["load_port_reused"] = port_reused;
    o["load_port_reused_moved"] = port_reused_moved;
    for (auto& [id, n] : ledger->served_by_listener()) seen_by_clients[id] += n;
    // Step 4 with chosen ports, below the ephemeral range so no load connection used them.
    for (int round = 0; round < 3; ++round)
      for (uint16_t p = 9000; p < 9032; ++p) {
        int32_t l = tcp_flow_from(Endpoint::loopback(v.family, kPort), p);
        ++seen_by_clients[l];
        if (round == 0) {
          by_port[p] = l;
        } else {
          ++tuples_checked;
          if (by_port[p] != l) ++tuples_moved;
        }
      }
  } else {
    UdpClientOptions uo;
    uo.target = Endpoint::loopback(v.family, kPort);
    uo.reply_timeout = std::chrono::milliseconds(2000);
    UdpClient client(uo);
    std::vector<uint16_t> ports;
    for (uint64_t i = 0; i < kFlows; ++i) ports.push_back(static_cast<uint16_t>(20000 + i));
    auto xs = client.from_ports(ports);
    for (const auto& x : xs) flows.push_back(x.listener);
    UdpTally t = tally(xs);
    o["attempts"] = t.sent;
    o["lost"] = t.lost;
    for (auto& [id, n] : t.by_listener) seen_by_clients[id] += n;
    std::vector<uint16_t> again(ports.begin(), ports.begin() + 1000);
    auto ys = client.from_ports(again);
    for (size_t i = 0; i < ys.size(); ++i) {
      ++tuples_checked;
      if (ys[i].listener != xs[i].listener) ++tuples_moved;
      if (ys[i].listener >= 0) ++seen_by_clients[ys[i].listener];
    }
    o["lost"] = o["lost"].get<uint64_t>() + tally(ys).lost;
    auto one = client.from_one_port(45000, 200);
    UdpTally ot = tally(one);
    for (auto& [id, n] : ot.by_listener) seen_by_clients[id] += n;
    o["one_port_datagrams"] = ot.sent;
    o["one_port_answered"] = ot.answered;
    o["one_port_listeners"] = ot.by_listener.size();
  }
  // Only once every listener has stopped are its counts final.
  group.stop_all();
  if (ledger) {
    nlohmann::json l = ledger_counts(*ledger, group);
    l.erase("ledger_mismatches");  // the listeners also served step 4: reconciled below
    l.erase("served_by_listener");
    o.update(l);
  }

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
  o["tuples_rechecked"] = tuples_checked;
  o["tuples_moved"] = tuples_moved;
  // Every reply the clients got names a listener, and each listener counted what it sent.
  nlohmann::json mismatches = nlohmann::json::array();
  if (ledger && ledger->started() != ledger->total())
    mismatches.push_back("load: " + std::to_string(ledger->started()) + " attempts started, " +
                         std::to_string(ledger->total()) + " ended");
  const auto servers = group.served_by_listener();
  if (seen_by_clients != servers) {
    nlohmann::json c, sv;
    for (auto& [id, n] : seen_by_clients) c[std::to_string(id)] = n;
    for (auto& [id, n] : servers) sv[std::to_string(id)] = n;
    mismatches.push_back("served per listener: clients saw " + c.dump() + ", listeners counted " + sv.dump());
  }
  o["ledger_mismatches"] = mismatches;
  return o;
}

RP_CASE(hash_spread, ::testing::Values(Variant{Proto::Tcp, Family::V4}, Variant{Proto::Tcp, Family::V6},
                                       Variant{Proto::Udp, Family::V4}, Variant{Proto::Udp, Family::V6}));

}  // namespace
}  // namespace rp::cases
