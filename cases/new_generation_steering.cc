// new_generation_steering
//
// A reuseport group has one steering program, not one per socket: reuseport_attach_prog()
// (net/core/sock_reuseport.c) swaps reuse->prog under reuseport_lock and releases the old
// program (sk_reuseport_prog_free()), whichever member it was called on. So a new
// generation of listeners that attaches ITS OWN program replaces the old generation's for
// the whole group, and SO_DETACH_REUSEPORT_BPF (5.3, reuseport_detach_prog()) on any
// member, of either generation, removes the group's program.
// The group's sockets are an array: a socket that leaves (close(): reuseport_detach_sock()
// -> __reuseport_detach_sock()) is replaced by the LAST socket of the array,
// socks[i] = socks[num_socks - 1], and the array shrinks. A program that returns an index
// (SO_ATTACH_REUSEPORT_[CE]BPF, 538950a1b752; run_bpf_filter()) therefore sees its targets
// move as the old generation leaves, and an index >= num_socks falls back to the hash. A
// BPF_PROG_TYPE_SK_REUSEPORT program (4.19, 2dbb9b9e6df6) names sockets through its
// REUSEPORT_SOCKARRAY, and renumbering does not touch it.
//
// Scenario, per variant (tcp/udp x IPv4/IPv6 x index/sockarray):
//   1. In a fresh network namespace, generation 1: listeners 0 and 1 (SO_REUSEPORT, threads)
//      on one port. Program A is attached to listener 0: index: an eBPF socket filter
//      returning 1; sockarray: an sk_reuseport program selecting listener 1 from its
//      REUSEPORT_SOCKARRAY {0: listener 0, 1: listener 1}. F fixed flows (UDP datagrams or
//      TCP connections, one per source port) all reach listener 1.
//   2. Generation 2, listeners 2 and 3, joins: the flows still all reach listener 1.
//   3. Program B is attached to listener 2: index: returns 3; sockarray: selects listener 3
//      from B's own array {0: listener 2, 1: listener 3}. The flows all reach listener 3;
//      A ran not once more.
//   4. Where each index (or slot) of B lands: B's knob set to each in turn, F flows each:
//      the listener all of them reached, or "hash" when they spread.
//   5. Listener 0 closes; step 4 again (index: the last socket, listener 3, now answers
//      index 0, and index 3 falls back to the hash).
//   6. SO_DETACH_REUSEPORT_BPF on listener 1 (generation 1) removes B (generation 2's): 3F
//      flows spread over the 3 listeners left, and B ran not once.
//   7. B is attached again through listener 3; listener 1 closes; step 4 again.
//   8. Reconcile: answers the clients got = answers the listeners sent.

#include <gtest/gtest.h>

#include "cases/lib/case_test.h"
#include "cases/lib/observe.h"
#include "harness/server.h"
#include "harness/udp_client.h"
#include "probes/reuseport_steer.h"

namespace rp::cases {
namespace {

using probes::ReuseportSteer;
using probes::SteerProgram;

enum class Kind { Index, Sockarray };

struct Variant {
  Proto proto;
  Family family;
  Kind kind;
  std::string name() const {
    return std::string(proto == Proto::Tcp ? "tcp" : "udp") + (family == Family::V4 ? "4" : "6") +
           (kind == Kind::Index ? "_index" : "_sockarray");
  }
};

constexpr uint16_t kPort = 47660;
// Flows per probe: a spread over 2 sockets leaves them all on one with probability
// 2 * 2^-24 (and the hash secret is fixed per boot: it would repeat), small enough.
constexpr size_t kFlows = 24;
// The detach phase must show all 3 remaining listeners: 3 * (2/3)^64 < 1e-10.
constexpr size_t kSpreadFlows = 64;

nlohmann::json scenario(const Variant& v) {
  ListenerGroup group;
  ListenerSpec spec;
  spec.socket.proto = v.proto;
  spec.socket.addr = Endpoint::loopback(v.family, kPort);

  UdpClientOptions uo;
  uo.target = spec.socket.addr;
  uo.reply_timeout = std::chrono::milliseconds(2000);
  UdpClient udp(uo);
  uint64_t answered = 0, lost = 0;
  // The listener each of n fixed flows reached.
  auto land = [&](size_t n) {
    std::map<int32_t, uint64_t> by;
    std::vector<uint16_t> ports;
    for (size_t i = 0; i < n; ++i) ports.push_back(static_cast<uint16_t>(20000 + i));
    if (v.proto == Proto::Udp) {
      for (const auto& x : udp.from_ports(ports)) ++by[x.listener];
    } else {
      for (uint16_t p : ports) ++by[tcp_flow_from(uo.target, p)];
    }
    for (auto& [l, c] : by) (l >= 0 ? answered : lost) += c;
    return by;
  };
  // The one listener all flows reached, or -1: they spread (the hash) or were lost.
  auto where = [&] {
    auto by = land(kFlows);
    return by.size() == 1 ? by.begin()->first : -1;
  };

  const int l0 = group.add(spec), l1 = group.add(spec);
  const int fd0 = probes::socket_fd_by_inode(group.inode(l0));
  const int fd1 = probes::socket_fd_by_inode(group.inode(l1));
  const bool index = v.kind == Kind::Index;
  ReuseportSteer a(index ? SteerProgram::Filter : SteerProgram::Select);
  ReuseportSteer b(index ? SteerProgram::Filter : SteerProgram::Select);
  auto runs = [&](const ReuseportSteer& p) { return index ? p.counts().filter_runs : p.counts().select_runs; };
  // The program's target: an index of the group's array, or a slot of its own array.
  auto aim = [&](ReuseportSteer& p, uint32_t k) {
    if (index)
      p.set_steer_index(k);
    else
      p.set_select(k);
  };

  nlohmann::json o;
  o["flows"] = kFlows;
  if (!index) {
    a.set_socket(0, fd0);
    a.set_socket(1, fd1);
  }
  aim(a, 1);
  a.attach(fd0);
  o["gen1_on_listener"] = where();

  const int l2 = group.add(spec), l3 = group.add(spec);
  const int fd2 = probes::socket_fd_by_inode(group.inode(l2));
  const int fd3 = probes::socket_fd_by_inode(group.inode(l3));
  o["after_join_on_listener"] = where();

  const uint32_t b_target = index ? 3 : 1;  // listener 3 either way
  if (!index) {
    b.set_socket(0, fd2);
    b.set_socket(1, fd3);
  }
  aim(b, b_target);
  b.attach(fd2);
  const uint64_t a_before = runs(a), b_before = runs(b);
  const uint64_t retrans_before = syn_retransmits();
  o["replaced_on_listener"] = where();
  o["old_program_runs_after_replace"] = runs(a) - a_before;
  o["new_program_runs"] = runs(b) - b_before;
  // A SYN sent again (a starved guest's client) is looked up, and runs the program, again.
  o["syn_retransmits_after_replace"] = syn_retransmits() - retrans_before;

  const uint32_t keys = index ? 4 : 2;
  // "3 1 2 hash": per index (or slot) the listener all flows reached, or "hash" when they
  // spread. A string: a record's counts are scalars (results/schemas/run-record.schema.json).
  auto key_map = [&] {
    std::string m;
    for (uint32_t k = 0; k < keys; ++k) {
      aim(b, k);
      const int32_t l = where();
      m += (k ? " " : "") + (l < 0 ? std::string("hash") : std::to_string(l));
    }
    aim(b, b_target);
    return m;
  };
  o["key_map_4_members"] = key_map();

  group.close(l0);
  o["key_map_after_close_0"] = key_map();

  // Generation 1's socket removes generation 2's program: it is the group's.
  probes::detach_reuseport_bpf(fd1);
  const uint64_t b_detached = runs(b);
  o["after_detach_listeners_used"] = land(kSpreadFlows).size();
  o["program_runs_after_detach"] = runs(b) - b_detached;

  b.attach(fd3);
  group.close(l1);
  o["key_map_after_close_1"] = key_map();
  group.stop_all();

  o["lost"] = lost;
  o.update(answer_counts(answered, group));
  return o;
}

std::vector<Variant> variants() {
  std::vector<Variant> out;
  for (Proto pr : {Proto::Tcp, Proto::Udp})
    for (Family f : {Family::V4, Family::V6})
      for (Kind k : {Kind::Index, Kind::Sockarray}) out.push_back({pr, f, k});
  return out;
}

RP_CASE(new_generation_steering, ::testing::ValuesIn(variants()));

}  // namespace
}  // namespace rp::cases
