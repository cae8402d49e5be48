// sk_reuseport_select
//
// A BPF_PROG_TYPE_SK_REUSEPORT program (4.19, 2dbb9b9e6df6 "bpf: Introduce
// BPF_PROG_TYPE_SK_REUSEPORT") attached to a reuseport group picks the socket itself with
// bpf_sk_select_reuseport() from a BPF_MAP_TYPE_REUSEPORT_SOCKARRAY, or returns SK_DROP.
// On SK_DROP bpf_run_sk_reuseport() returns ERR_PTR(-ECONNREFUSED) and the lookup finds no
// socket (net/core/filter.c, net/ipv4/inet_hashtables.c), so the packet is treated as if
// nothing listened: the selftest tools/testing/selftests/bpf/prog_tests/select_reuseport.c
// expects ECONNREFUSED for TCP.
//
// Scenario, per variant (tcp/udp x IPv4/IPv6 x select/drop):
//   1. In a fresh network namespace, 4 SO_REUSEPORT listeners (threads) on one port; the
//      sk_reuseport program is loaded, the 4 sockets put in slots 0-3 of its
//      REUSEPORT_SOCKARRAY, and the program attached to listener 0.
//   select:
//   2. Slot 1 chosen: F fixed flows (UDP 512 datagrams, TCP 128 connections) all reach
//      listener 1; the program counted F selections.
//   3. Slot 3 chosen (changed while attached): the same flows all reach listener 3.
//   drop:
//   2. The program returns SK_DROP: UDP: F datagrams get no answer; TCP: F connection
//      attempts; how each ends is counted (refused, timeout, ...), and the program counted F
//      drops.
//   3. SK_PASS again (slot 2): the same flows are answered, all by listener 2.
//   4. Reconcile: answers the clients got = answers the listeners sent.

#include <gtest/gtest.h>

#include "cases/lib/case_test.h"
#include "cases/lib/observe.h"
#include "harness/loadgen.h"
#include "harness/server.h"
#include "harness/udp_client.h"
#include "probes/reuseport_steer.h"

namespace rp::cases {
namespace {

using probes::ReuseportSteer;
using probes::SteerProgram;

struct Variant {
  Proto proto;
  Family family;
  bool drop;
  std::string name() const {
    return std::string(proto == Proto::Tcp ? "tcp" : "udp") + (family == Family::V4 ? "4" : "6") + (drop ? "_drop" : "_select");
  }
};

constexpr uint16_t kPort = 47700;
constexpr int kListeners = 4;

nlohmann::json scenario(const Variant& v) {
  ListenerGroup group;
  ListenerSpec spec;
  spec.socket.proto = v.proto;
  spec.socket.addr = Endpoint::loopback(v.family, kPort);
  for (int i = 0; i < kListeners; ++i) group.add(spec);
  ReuseportSteer prog(SteerProgram::Select);
  for (int i = 0; i < kListeners; ++i) prog.set_socket(static_cast<uint32_t>(i), probes::socket_fd_by_inode(group.inode(i)));

  const size_t flows = v.proto == Proto::Udp ? 512 : 128;
  std::vector<uint16_t> ports;
  for (size_t i = 0; i < flows; ++i) ports.push_back(static_cast<uint16_t>(20000 + i));
  UdpClientOptions uo;
  uo.target = Endpoint::loopback(v.family, kPort);
  uo.reply_timeout = std::chrono::milliseconds(v.drop ? 500 : 2000);
  UdpClient udp(uo);
  uint64_t answered = 0;
  auto map_flows = [&] {
    std::map<int32_t, uint64_t> by;
    if (v.proto == Proto::Udp) {
      for (const auto& x : udp.from_ports(ports)) ++by[x.listener];
    } else {
      for (uint16_t p : ports) ++by[tcp_flow_from(uo.target, p)];
    }
    for (auto& [l, n] : by)
      if (l >= 0) answered += n;
    return by;
  };
  auto on = [&](const std::map<int32_t, uint64_t>& by, int32_t l) { return by.count(l) ? by.at(l) : 0; };

  nlohmann::json o;
  o["flows"] = flows;
  prog.set_select(1);
  prog.attach(probes::socket_fd_by_inode(group.inode(0)));
  if (!v.drop) {
    auto a = map_flows();
    o["on_slot1_listener"] = on(a, 1);
    prog.set_select(3);
    auto b = map_flows();
    o["on_slot3_listener"] = on(b, 3);
  } else {
    prog.set_select(0, true);
    if (v.proto == Proto::Udp) {
      auto a = map_flows();
      o["dropped_answered"] = flows - on(a, -1);
    } else {
      LoadOptions lo;
      lo.target = uo.target;
      lo.concurrency = 16;
      lo.max_attempts = flows;
      lo.connect_timeout = std::chrono::milliseconds(2500);
      lo.response_timeout = std::chrono::milliseconds(2500);
      LoadGenerator load(lo);
      load.run();
      nlohmann::json l = ledger_counts(load.ledger(), group);
      for (const char* k : {"attempts", "served", "refused", "connect_timeout", "client_resets", "other_error"})
        o[std::string("dropped_") + k] = l[k];
    }
    o["program_drops"] = prog.counts().dropped;
    prog.set_select(2, false);
    auto b = map_flows();
    o["after_pass_on_slot2_listener"] = on(b, 2);
  }
  const auto c = prog.counts();
  o["program_selected"] = c.selected;
  o["program_select_errors"] = c.select_errors;
  group.stop_all();

  o.update(answer_counts(answered, group));
  return o;
}

std::vector<Variant> variants() {
  std::vector<Variant> out;
  for (Proto pr : {Proto::Tcp, Proto::Udp})
    for (Family f : {Family::V4, Family::V6})
      for (bool drop : {false, true}) out.push_back({pr, f, drop});
  return out;
}

RP_CASE(sk_reuseport_select, ::testing::ValuesIn(variants()));

}  // namespace
}  // namespace rp::cases
