// dual_stack_preference
//
// Which socket gets the traffic when sockets of different reuseport groups share a port.
// Sockets join one group only when family, IPV6_V6ONLY and bound address all match
// (inet_reuseport_add_sock(), udp_reuseport_add_sock()), so an AF_INET and a dual-stack
// AF_INET6 wildcard, or a wildcard and a specific address, form separate groups, and the
// lookup picks the group before reuseport picks a member:
//   - TCP: __inet_lookup_listener() looks up (daddr, port) first and the wildcard only when
//     nothing matched (commit d9fbc7f6431f "net: tcp: prefer listeners bound to an
//     address", 5.0); among equals compute_score() adds one for an AF_INET socket, so IPv4
//     traffic prefers it over a dual-stack AF_INET6 one.
//   - UDP: udp4_lib_lookup2() also looks up (daddr, port) before (INADDR_ANY, port);
//     compute_score() ranks AF_INET above AF_INET6 and a matching specific address higher.
//
// Scenario, per variant (protocol, family, which pair, which socket is opened first):
//   1. In a fresh network namespace, start two SO_REUSEPORT listeners on port P that serve
//      and answer with their id: either an AF_INET6 wildcard with IPV6_V6ONLY=0 and an
//      AF_INET wildcard ("inet_over_dualstack", IPv4 traffic), or a wildcard and the
//      loopback address of one family ("specific_over_wildcard"). The order they are
//      opened in is part of the variant: the lookup must not depend on it.
//   2. Send the traffic to the loopback address: TCP, 200 connections from the load
//      generator (request, reply naming the listener); UDP, 200 datagrams, each from a
//      socket of its own (a new source port each).
//   3. Count what each listener served; the ledger reconciles clients and servers.
//   4. Compare with cases/expectations.json: the preferred socket serves everything.

#include <gtest/gtest.h>

#include "cases/lib/case_test.h"
#include "cases/lib/observe.h"
#include "harness/loadgen.h"
#include "harness/server.h"
#include "harness/udp_client.h"

namespace rp::cases {
namespace {

enum class Pair { InetOverDualstack, SpecificOverWildcard };

struct Variant {
  Proto proto;
  Family family;  // of the traffic
  Pair pair;
  bool preferred_first;

  std::string name() const {
    std::string n = std::string(proto == Proto::Tcp ? "tcp" : "udp") + (family == Family::V4 ? "4" : "6");
    if (pair == Pair::InetOverDualstack)
      n += preferred_first ? "_inet_over_dualstack_inet_first" : "_inet_over_dualstack_inet6_first";
    else
      n += preferred_first ? "_specific_over_wildcard_specific_first" : "_specific_over_wildcard_wildcard_first";
    return n;
  }
};

constexpr uint16_t kPort = 47340;
constexpr unsigned kAttempts = 200;

nlohmann::json scenario(const Variant& v) {
  ListenerSpec preferred, other;
  preferred.socket.proto = other.socket.proto = v.proto;
  if (v.pair == Pair::InetOverDualstack) {
    preferred.socket.addr = Endpoint::wildcard(Family::V4, kPort);
    other.socket.addr = Endpoint::wildcard(Family::V6, kPort);
    other.socket.v6only = false;
  } else {
    preferred.socket.addr = Endpoint::loopback(v.family, kPort);
    other.socket.addr = Endpoint::wildcard(v.family, kPort);
    other.socket.v6only = true;  // keeps the IPv6 pair about addresses only
  }
  ListenerGroup group;
  int preferred_id, other_id;
  if (v.preferred_first) {
    preferred_id = group.add(preferred);
    other_id = group.add(other);
  } else {
    other_id = group.add(other);
    preferred_id = group.add(preferred);
  }

  nlohmann::json o;
  const Endpoint target = Endpoint::loopback(v.family, kPort);
  if (v.proto == Proto::Tcp) {
    LoadOptions lo;
    lo.target = target;
    lo.threads = 1;
    lo.concurrency = 8;
    lo.max_attempts = kAttempts;
    LoadGenerator load(lo);
    load.run();
    group.stop_all();
    o = ledger_counts(load.ledger(), group);
  } else {
    UdpClientOptions uo;
    uo.target = target;
    const UdpTally t = tally(UdpClient(uo).from_ports(std::vector<uint16_t>(kAttempts, 0)));
    group.stop_all();
    o["attempts"] = t.sent;
    o["served"] = t.answered;
    o["lost"] = t.lost;
    nlohmann::json by = nlohmann::json::object();
    for (const auto& [id, n] : t.by_listener) by[std::to_string(id)] = n;
    o["served_by_listener"] = by;
    // What the clients got back must be what the listeners say they answered.
    nlohmann::json mismatches = nlohmann::json::array();
    for (int id : group.ids()) {
      const uint64_t client_side = t.by_listener.count(id) ? t.by_listener.at(id) : 0;
      if (client_side != group.served(id))
        mismatches.push_back("listener " + std::to_string(id) + ": clients got " + std::to_string(client_side) +
                             " replies, it sent " + std::to_string(group.served(id)));
    }
    o["ledger_mismatches"] = mismatches;
  }
  o["served_by_preferred"] = group.served(preferred_id);
  o["served_by_other"] = group.served(other_id);
  return o;
}

std::vector<Variant> variants() {
  std::vector<Variant> out;
  for (Proto p : {Proto::Tcp, Proto::Udp}) {
    for (bool first : {true, false}) out.push_back({p, Family::V4, Pair::InetOverDualstack, first});
    for (Family f : {Family::V4, Family::V6})
      for (bool first : {true, false}) out.push_back({p, f, Pair::SpecificOverWildcard, first});
  }
  return out;
}

RP_CASE(dual_stack_preference, ::testing::ValuesIn(variants()));

}  // namespace
}  // namespace rp::cases
