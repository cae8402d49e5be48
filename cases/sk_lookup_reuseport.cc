// sk_lookup_reuseport
//
// An sk_lookup program (BPF_PROG_TYPE_SK_LOOKUP, 5.9: e9ddbb7707ff "bpf: Introduce SK_LOOKUP
// program type with a dedicated attach point", 1559b4aa1db4 "inet: Run SK_LOOKUP BPF program
// on socket lookup", 1122702f0267 "inet6: Run SK_LOOKUP BPF program on socket lookup", and
// the udp/udp6 counterparts of the same series) runs in the listener lookup of its network
// namespace and may bpf_sk_assign() any listening TCP or unconnected UDP socket to the
// packet, whatever port the packet was for. When the assigned socket belongs to a reuseport
// group, the lookup does not stop there: inet_lookup_run_bpf() / inet6_lookup_run_bpf()
// (TCP) and udp4_lookup_run_bpf() / udp6_lookup_run_bpf() (UDP) run the group's selection
// on it (lookup_reuseport(): the group's program, else the hash of the packet's 4-tuple), so
// the program names a group, not a socket, unless it passes BPF_SK_LOOKUP_F_NO_REUSEPORT,
// in which case the assigned socket is taken as is (Documentation/bpf/prog_sk_lookup.rst).
// The program is attached by a BPF link on the namespace (bpf_program__attach_netns()):
// it stops when the link's last fd closes, and the namespace's exit detaches it too
// (netns_bpf_pernet_pre_exit() -> bpf_netns_link_auto_detach()); nothing outlives the
// case's namespace.
//
// Scenario, per variant (tcp/udp x IPv4/IPv6 x mode; group_program_conns UDP only):
//   1. In a fresh network namespace, listeners 0 and 1 (SO_REUSEPORT, threads) on port P;
//      nothing on P+1. Mode group_program_conns (UDP): also a third member, connected to
//      itself (the group has connections).
//   2. The sk_lookup program: for packets to P+1, bpf_sk_assign(listener 0, flags), flags =
//      BPF_SK_LOOKUP_F_NO_REUSEPORT in mode no_reuseport, else 0; attached to the namespace.
//      Modes group_program* and no_reuseport: the group also gets a classic BPF program
//      returning index 1 (listener 1), attached to listener 0.
//   3. F fixed flows (UDP datagrams or TCP connections, one per source port) to P+1: where
//      they went (listener 0, listener 1) and what the program counted (assigned, errors).
//      hash: both listeners; group_program*: all on listener 1; no_reuseport: all on
//      listener 0.
//   4. The link's fd is closed: 4 flows to P+1 find nothing (TCP: the connect's error; UDP:
//      how many got an answer).
//   5. Reconcile: answers the clients got = answers the listeners sent.

#include <gtest/gtest.h>

#include <linux/bpf.h>

#include "cases/lib/case_test.h"
#include "cases/lib/observe.h"
#include "harness/error.h"
#include "harness/socket.h"
#include "harness/server.h"
#include "harness/udp_client.h"
#include "probes/reuseport_sockmap.h"
#include "probes/reuseport_steer.h"

namespace rp::cases {
namespace {

using probes::ReuseportSockmap;
using probes::SockmapProgram;

// GroupProgramConns (UDP): as GroupProgram, with a third member connect()ed to itself, which
// sets the group's has_conns: tools/testing/selftests/bpf/prog_tests/sk_lookup.c
// (reuseport_has_conns) holds that it does not change how the group chooses after sk_lookup.
enum class Mode { Hash, GroupProgram, NoReuseport, GroupProgramConns };

struct Variant {
  Proto proto;
  Family family;
  Mode mode;
  std::string name() const {
    return std::string(proto == Proto::Tcp ? "tcp" : "udp") + (family == Family::V4 ? "4" : "6") +
           (mode == Mode::Hash             ? "_hash"
            : mode == Mode::GroupProgram   ? "_group_program"
            : mode == Mode::NoReuseport    ? "_no_reuseport"
                                           : "_group_program_conns");
  }
};

constexpr uint16_t kPort = 47720;
// The hash leaves one of 2 listeners empty with probability 2 * 2^-64.
constexpr size_t kFlows = 64;
constexpr size_t kAfterClose = 4;

// A UDP member of the group connected to itself: the group then has connections
// (reuseport_has_conns()), which the UDP lookup treats apart.
UniqueFd connected_member(const Endpoint& at) {
  UniqueFd s(static_cast<int>(check_sys(socket(af_of(at.family), SOCK_DGRAM | SOCK_CLOEXEC, 0), "socket udp member")));
  int one = 1;
  check_sys(setsockopt(s.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one), "setsockopt SO_REUSEPORT");
  sockaddr_storage ss;
  socklen_t len = at.to_sockaddr(ss);
  check_sys(bind(s.get(), reinterpret_cast<sockaddr*>(&ss), len), "bind udp member " + at.str());
  check_sys(connect(s.get(), reinterpret_cast<sockaddr*>(&ss), len), "connect udp member to itself");
  return s;
}

nlohmann::json scenario(const Variant& v) {
  ListenerGroup group;
  ListenerSpec spec;
  spec.socket.proto = v.proto;
  spec.socket.addr = Endpoint::loopback(v.family, kPort);
  const int l0 = group.add(spec), l1 = group.add(spec);
  const int fd0 = probes::socket_fd_by_inode(group.inode(l0));
  const Endpoint redirected = Endpoint::loopback(v.family, kPort + 1);

  ReuseportSockmap lookup(SockmapProgram::LookupAssign);
  lookup.set_lookup_target(fd0);
  lookup.set_lookup(redirected.port, v.mode == Mode::NoReuseport ? BPF_SK_LOOKUP_F_NO_REUSEPORT : 0);
  lookup.attach_netns();
  if (v.mode != Mode::Hash) probes::attach_cbpf_index(fd0, 1);
  UniqueFd connected;
  if (v.mode == Mode::GroupProgramConns) connected = connected_member(spec.socket.addr);

  UdpClientOptions uo;
  uo.target = redirected;
  uo.reply_timeout = std::chrono::milliseconds(2000);
  UdpClient udp(uo);
  uint64_t answered = 0;
  std::vector<uint16_t> ports;
  for (size_t i = 0; i < kFlows; ++i) ports.push_back(static_cast<uint16_t>(20000 + i));
  std::map<int32_t, uint64_t> by;
  const uint64_t retrans_before = syn_retransmits();
  if (v.proto == Proto::Udp) {
    for (const auto& x : udp.from_ports(ports)) ++by[x.listener];
  } else {
    for (uint16_t p : ports) ++by[tcp_flow_from(redirected, p)];
  }
  auto on = [&](int32_t l) { return by.count(l) ? by.at(l) : 0; };
  answered += on(l0) + on(l1);

  nlohmann::json o;
  o["flows"] = kFlows;
  o["on_assigned_listener"] = on(l0);
  o["on_other_listener"] = on(l1);
  o["unanswered"] = on(-1);
  const auto c = lookup.counts();
  o["lookup_runs"] = c.lookup_runs;
  o["lookup_assigned"] = c.assigned;
  o["lookup_assign_errors"] = c.assign_errors;
  // A SYN sent again (a starved guest's client) is looked up, and assigned, again.
  o["syn_retransmits"] = syn_retransmits() - retrans_before;

  // The link is the attachment: closing its fd ends the redirect.
  lookup.detach_netns();
  if (v.proto == Proto::Tcp) {
    std::string err = "connected";
    try {
      tcp_flow_from(redirected, 21000);
    } catch (const SysError& e) {
      err = errno_name(e.err());
    }
    o["after_link_closed_tcp"] = err;
  } else {
    uo.reply_timeout = std::chrono::milliseconds(300);
    UdpClient late(uo);
    std::vector<uint16_t> lp;
    for (size_t i = 0; i < kAfterClose; ++i) lp.push_back(static_cast<uint16_t>(21000 + i));
    uint64_t n = 0;
    for (const auto& x : late.from_ports(lp)) n += x.listener >= 0;
    answered += n;
    o["after_link_closed_udp_answered"] = n;
  }
  o["lookup_runs_after_close"] = lookup.counts().lookup_runs - c.lookup_runs;
  group.stop_all();

  o.update(answer_counts(answered, group));
  return o;
}

std::vector<Variant> variants() {
  std::vector<Variant> out;
  for (Proto pr : {Proto::Tcp, Proto::Udp})
    for (Family f : {Family::V4, Family::V6})
      for (Mode m : {Mode::Hash, Mode::GroupProgram, Mode::NoReuseport, Mode::GroupProgramConns})
        if (m != Mode::GroupProgramConns || pr == Proto::Udp) out.push_back({pr, f, m});
  return out;
}

RP_CASE(sk_lookup_reuseport, ::testing::ValuesIn(variants()));

}  // namespace
}  // namespace rp::cases
