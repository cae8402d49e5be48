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
//   1. In a fresh network namespace, start SO_REUSEPORT listeners on port P that serve and
//      answer with their id, a preferred one and the others: an AF_INET wildcard over an
//      AF_INET6 wildcard with IPV6_V6ONLY=0 ("inet_over_dualstack", IPv4 traffic); the
//      loopback address of one family over that family's wildcard
//      ("specific_over_wildcard"); 127.0.0.1 over a dual-stack AF_INET6 wildcard
//      ("specific_over_dualstack", IPv4); an AF_INET6 socket bound to ::ffff:127.0.0.1
//      over an AF_INET and a dual-stack AF_INET6 wildcard ("mapped_over_wildcards", IPv4;
//      the last two are the claims of tools/testing/selftests/net/reuseport_addr_any.c);
//      for UDP also 16 AF_INET over 16 dual-stack AF_INET6 wildcards ("_16x16", the large
//      groups of tools/testing/selftests/net/reuseport_dualstack.c).
//      The order they are opened in is part of the variant: the lookup must not depend
//      on it.
//   2. Send the traffic to the loopback address: TCP, 200 connections from the load
//      generator (request, reply naming the listener); UDP, 200 datagrams, each from a
//      socket of its own (a new source port each).
//   3. Count what each listener served; the ledger reconciles clients and servers.
//   4. Compare with cases/expectations.json: the preferred socket serves everything, the
//      others (served_by_other, their sum) nothing.

#include <gtest/gtest.h>

#include "cases/lib/case_test.h"
#include "cases/lib/observe.h"
#include "harness/loadgen.h"
#include "harness/server.h"
#include "harness/udp_client.h"

namespace rp::cases {
namespace {

enum class Pair { InetOverDualstack, SpecificOverWildcard, SpecificOverDualstack, MappedOverWildcards };

struct Variant {
  Proto proto;
  Family family;  // of the traffic
  Pair pair;
  bool preferred_first;
  int copies = 1;  // sockets of each kind ("_16x16": reuseport_dualstack.c's large groups)

  std::string name() const {
    std::string n = std::string(proto == Proto::Tcp ? "tcp" : "udp") + (family == Family::V4 ? "4" : "6");
    if (pair == Pair::InetOverDualstack)
      n += std::string("_inet_over_dualstack") + (copies > 1 ? "_" + std::to_string(copies) + "x" + std::to_string(copies) : "") +
           (preferred_first ? "_inet_first" : "_inet6_first");
    else if (pair == Pair::SpecificOverWildcard)
      n += preferred_first ? "_specific_over_wildcard_specific_first" : "_specific_over_wildcard_wildcard_first";
    else if (pair == Pair::SpecificOverDualstack)
      n += preferred_first ? "_specific_over_dualstack_specific_first" : "_specific_over_dualstack_wildcard_first";
    else
      n += preferred_first ? "_mapped_over_wildcards_mapped_first" : "_mapped_over_wildcards_wildcards_first";
    return n;
  }
};

constexpr uint16_t kPort = 47340;
constexpr unsigned kAttempts = 200;

ListenerSpec listener(Proto p, Endpoint addr, bool v6only = false) {
  ListenerSpec s;
  s.socket.proto = p;
  s.socket.addr = std::move(addr);
  s.socket.v6only = v6only;
  return s;
}

nlohmann::json scenario(const Variant& v) {
  ListenerSpec preferred;
  std::vector<ListenerSpec> others;
  switch (v.pair) {
    case Pair::InetOverDualstack:
      preferred = listener(v.proto, Endpoint::wildcard(Family::V4, kPort));
      others = {listener(v.proto, Endpoint::wildcard(Family::V6, kPort), false)};
      break;
    case Pair::SpecificOverWildcard:  // v6only keeps the IPv6 pair about addresses only
      preferred = listener(v.proto, Endpoint::loopback(v.family, kPort));
      others = {listener(v.proto, Endpoint::wildcard(v.family, kPort), true)};
      break;
    case Pair::SpecificOverDualstack:
      preferred = listener(v.proto, Endpoint::loopback(Family::V4, kPort));
      others = {listener(v.proto, Endpoint::wildcard(Family::V6, kPort), false)};
      break;
    case Pair::MappedOverWildcards:
      // An AF_INET6 socket bound to ::ffff:127.0.0.1 takes IPv4 traffic to 127.0.0.1: its
      // sk_rcv_saddr is the IPv4 address and ipv6_portaddr_hash() hashes a mapped address as
      // the IPv4 one, so the (daddr, port) lookup finds it before any wildcard.
      preferred = listener(v.proto, Endpoint{Family::V6, "::ffff:127.0.0.1", kPort}, false);
      others = {listener(v.proto, Endpoint::wildcard(Family::V4, kPort)),
                listener(v.proto, Endpoint::wildcard(Family::V6, kPort), false)};
      break;
  }
  ListenerGroup group;
  std::vector<int> preferred_ids, other_ids;
  auto add_preferred = [&] {
    for (int k = 0; k < v.copies; ++k) preferred_ids.push_back(group.add(preferred));
  };
  if (v.preferred_first) add_preferred();
  for (int k = 0; k < v.copies; ++k)
    for (const auto& o : others) other_ids.push_back(group.add(o));
  if (!v.preferred_first) add_preferred();

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
  uint64_t by_preferred = 0;
  for (int id : preferred_ids) by_preferred += group.served(id);
  o["served_by_preferred"] = by_preferred;
  uint64_t by_others = 0;
  for (int id : other_ids) by_others += group.served(id);
  o["served_by_other"] = by_others;
  return o;
}

std::vector<Variant> variants() {
  std::vector<Variant> out;
  for (Proto p : {Proto::Tcp, Proto::Udp}) {
    for (bool first : {true, false}) out.push_back({p, Family::V4, Pair::InetOverDualstack, first});
    if (p == Proto::Udp)
      for (bool first : {true, false}) out.push_back({p, Family::V4, Pair::InetOverDualstack, first, 16});
    for (Family f : {Family::V4, Family::V6})
      for (bool first : {true, false}) out.push_back({p, f, Pair::SpecificOverWildcard, first});
    for (Pair pair : {Pair::SpecificOverDualstack, Pair::MappedOverWildcards})
      for (bool first : {true, false}) out.push_back({p, Family::V4, pair, first});
  }
  return out;
}

RP_CASE(dual_stack_preference, ::testing::ValuesIn(variants()));

}  // namespace
}  // namespace rp::cases
