// groups_per_address
//
// A reuseport group is per (family, bound address, port): inet_reuseport_add_sock() and
// udp_reuseport_add_sock() join a socket only to a group whose sockets are bound to the same
// address (inet_rcv_saddr_equal() / ipv6_addr_equal()), so sockets of one port on different
// addresses never share a group, and SO_REUSEPORT on all of them makes the binds legal. The
// lookup finds the group of the destination address first (d9fbc7f6431f, 5.0, for TCP;
// udp4_lib_lookup2() for UDP), so each address's traffic is spread over its own group only.
// The upstream selftest tools/testing/selftests/net/stress_reuseport_listen.c binds and
// listens 80 sockets on each of 300 addresses of one port and asserts that all succeed;
// bind_bhash.c binds many specific addresses of one port. Every address of 127.0.0.0/8 is
// local on loopback, so this case needs no extra address and no ip_nonlocal_bind.
//
// Scenario, per variant (tcp/udp):
//   1. In a fresh network namespace, on one port, 4 SO_REUSEPORT listeners (threads) on
//      each of the 8 addresses 127.0.0.1 .. 127.0.0.8, opened round-robin over the
//      addresses (address 1, 2, ..., 8, 1, 2, ...), so that join order cannot group them.
//   2. To each address, 64 connections (TCP, the load generator) or 64 datagrams from
//      sockets of their own (UDP); each reply names the listener that answered.
//   3. Count the answers that came from a listener of another address (must be 0) and,
//      per address, how many of its 4 listeners answered at least once.

#include <gtest/gtest.h>

#include "cases/lib/case_test.h"
#include "cases/lib/observe.h"
#include "harness/loadgen.h"
#include "harness/server.h"
#include "harness/udp_client.h"

namespace rp::cases {
namespace {

struct Variant {
  Proto proto;
  std::string name() const { return proto == Proto::Tcp ? "tcp4" : "udp4"; }
};

constexpr uint16_t kPort = 47820;
constexpr int kAddresses = 8;
constexpr int kPerAddress = 4;
constexpr unsigned kAttempts = 64;

Endpoint address(int i) { return Endpoint{Family::V4, "127.0.0." + std::to_string(i + 1), kPort}; }

nlohmann::json scenario(const Variant& v) {
  ListenerGroup group;
  std::map<int32_t, int> address_of;  // listener id -> address index
  for (int k = 0; k < kPerAddress; ++k)
    for (int i = 0; i < kAddresses; ++i) {
      ListenerSpec s;
      s.socket.proto = v.proto;
      s.socket.addr = address(i);
      address_of[group.add(s)] = i;
    }

  uint64_t attempts = 0, answered = 0, to_other_address = 0, fewest_used = kPerAddress;
  std::map<int32_t, uint64_t> clients_saw;
  for (int i = 0; i < kAddresses; ++i) {
    std::map<int32_t, uint64_t> by;
    if (v.proto == Proto::Tcp) {
      LoadOptions lo;
      lo.target = address(i);
      lo.threads = 1;
      lo.concurrency = 8;
      lo.max_attempts = kAttempts;
      LoadGenerator load(lo);
      load.run();
      by = load.ledger().served_by_listener();
    } else {
      UdpClientOptions uo;
      uo.target = address(i);
      by = tally(UdpClient(uo).from_ports(std::vector<uint16_t>(kAttempts, 0))).by_listener;
    }
    attempts += kAttempts;
    uint64_t used = 0;
    for (const auto& [id, n] : by) {
      answered += n;
      clients_saw[id] += n;
      if (address_of.count(id) == 0 || address_of.at(id) != i)
        to_other_address += n;
      else
        ++used;
    }
    fewest_used = std::min(fewest_used, used);
  }
  group.stop_all();

  nlohmann::json o;
  o["addresses"] = kAddresses;
  o["listeners_per_address"] = kPerAddress;
  o["attempts"] = attempts;
  o["to_other_address"] = to_other_address;
  o["fewest_listeners_used_per_address"] = fewest_used;
  o.update(answer_counts(answered, group));
  // The servers' own counts, listener by listener, against what the clients were told.
  nlohmann::json mismatches = o.value("ledger_mismatches", nlohmann::json::array());
  for (int id : group.ids()) {
    const uint64_t client_side = clients_saw.count(id) ? clients_saw.at(id) : 0;
    if (client_side != group.served(id))
      mismatches.push_back("listener " + std::to_string(id) + ": clients got " + std::to_string(client_side) +
                           " replies, it counted " + std::to_string(group.served(id)));
  }
  o["ledger_mismatches"] = mismatches;
  return o;
}

RP_CASE(groups_per_address, ::testing::Values(Variant{Proto::Tcp}, Variant{Proto::Udp}));

}  // namespace
}  // namespace rp::cases
