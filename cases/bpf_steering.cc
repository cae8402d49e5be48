// bpf_steering
//
// SO_ATTACH_REUSEPORT_CBPF / SO_ATTACH_REUSEPORT_EBPF (4.5, 538950a1b752 "soreuseport:
// setsockopt SO_ATTACH_REUSEPORT_[CE]BPF") give a reuseport group a program whose return
// value is an index into the group's sockets; "if the BPF program returns an invalid index,
// socket selection will fall back to the plain SO_REUSEPORT mechanism" (socket(7)). The
// program belongs to the group, so attaching it to any member steers them all.
// Attaching before bind() gives the socket a group of its own (reuseport_alloc() from
// reuseport_attach_prog()), and a socket that already has a group cannot join another at
// bind(): sk_reuseport_match() (net/ipv4/inet_connection_sock.c) and udp_lib_lport_inuse()
// (net/ipv4/udp.c) treat it as a conflict, so the bind fails with EADDRINUSE.
//
// Scenario, per variant (tcp/udp x IPv4/IPv6 x classic/extended BPF, and tcp/udp x
// classic/extended for IPv4 traffic to a dual-stack AF_INET6 group, "_dualstack", and UDP
// groups of 20 sockets, "_20socks"):
//   1. In a fresh network namespace, N = 4 (or 20) SO_REUSEPORT listeners (threads) on one
//      port.
//   2. Map F fixed flows (UDP: 1,024 source ports, one datagram each; TCP: 256 source
//      ports, one connection each) to the answering listener: the hash's choice.
//   3. Attach to listener 0 a program that returns index 2; map the flows again: all of
//      them must reach listener 2.
//   4. Make it return N + 3 (past the group's last socket): map again; every flow must be
//      where the hash put it in step 2.
//   5. Detach (SO_DETACH_REUSEPORT_BPF, 5.3): map again, as step 2.
//   6. A new SO_REUSEPORT socket gets the same program attached before bind(); its bind to
//      the group's port fails with EADDRINUSE.
//   7. Attach the program to a bound socket without SO_REUSEPORT: EINVAL.
//   8. Reconcile: answers the clients got = answers the listeners sent.

#include <gtest/gtest.h>

#include <optional>

#include "cases/lib/case_test.h"
#include "cases/lib/observe.h"
#include "harness/error.h"
#include "harness/server.h"
#include "harness/udp_client.h"
#include "probes/reuseport_steer.h"

namespace rp::cases {
namespace {

using probes::ReuseportSteer;
using probes::SteerProgram;

enum class Kind { Classic, Extended };

struct Variant {
  Proto proto;
  Family family;
  Kind kind;
  bool dualstack = false;  // the group: AF_INET6 wildcards with IPV6_V6ONLY=0; IPv4 traffic
  int listeners = 4;
  std::string name() const {
    return std::string(proto == Proto::Tcp ? "tcp" : "udp") + (family == Family::V4 ? "4" : "6") +
           (dualstack ? "_dualstack" : "") + (listeners != 4 ? "_" + std::to_string(listeners) + "socks" : "") +
           (kind == Kind::Classic ? "_cbpf" : "_ebpf");
  }
};

constexpr uint16_t kPort = 47600;
constexpr uint32_t kTarget = 2;

nlohmann::json scenario(const Variant& v) {
  ListenerGroup group;
  ListenerSpec spec;
  spec.socket.proto = v.proto;
  spec.socket.addr = v.dualstack ? Endpoint::wildcard(Family::V6, kPort) : Endpoint::loopback(v.family, kPort);
  spec.socket.v6only = false;
  for (int i = 0; i < v.listeners; ++i) group.add(spec);
  const uint32_t out_of_range = static_cast<uint32_t>(v.listeners) + 3;
  const int member = probes::socket_fd_by_inode(group.inode(0));

  const size_t flows = v.proto == Proto::Udp ? 1024 : 256;
  std::vector<uint16_t> ports;
  for (size_t i = 0; i < flows; ++i) ports.push_back(static_cast<uint16_t>(20000 + i));
  UdpClientOptions uo;
  uo.target = Endpoint::loopback(v.family, kPort);
  uo.reply_timeout = std::chrono::milliseconds(2000);
  UdpClient udp(uo);
  uint64_t answered = 0, lost = 0;
  auto map_flows = [&] {
    std::vector<int32_t> out;
    if (v.proto == Proto::Udp) {
      for (const auto& x : udp.from_ports(ports)) out.push_back(x.listener);
    } else {
      for (uint16_t p : ports) out.push_back(tcp_flow_from(uo.target, p));
    }
    for (int32_t l : out) (l >= 0 ? answered : lost) += 1;
    return out;
  };
  auto count_differing = [&](const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
    uint64_t n = 0;
    for (size_t i = 0; i < a.size(); ++i) n += a[i] != b[i];
    return n;
  };

  nlohmann::json o;
  const std::vector<int32_t> hashed = map_flows();
  std::map<int32_t, uint64_t> hashed_by;
  for (int32_t l : hashed) ++hashed_by[l];
  o["hash_listeners_used"] = hashed_by.size();

  std::optional<ReuseportSteer> ebpf;
  const uint64_t retrans_before = syn_retransmits();
  if (v.kind == Kind::Extended) {
    ebpf.emplace(SteerProgram::Filter);
    ebpf->set_steer_index(kTarget);
    ebpf->attach(member);
  } else {
    probes::attach_cbpf_index(member, kTarget);
  }
  const std::vector<int32_t> steered = map_flows();
  uint64_t on_target = 0;
  for (int32_t l : steered) on_target += l == static_cast<int32_t>(kTarget);
  o["flows"] = flows;
  o["steered_to_target"] = on_target;

  // Out of range: the kernel ignores the index and falls back to the hash.
  if (ebpf)
    ebpf->set_steer_index(out_of_range);
  else
    probes::attach_cbpf_index(member, out_of_range);
  const std::vector<int32_t> fallback = map_flows();
  o["out_of_range_index"] = out_of_range;
  o["fallback_differs_from_hash"] = count_differing(fallback, hashed);
  if (ebpf) {
    o["program_runs"] = ebpf->counts().filter_runs;
    // One run per SYN or datagram while attached; a SYN sent again (a starved guest's client
    // can wait out its 1 s timer) is looked up, and runs the program, again.
    o["lookups_while_attached"] = 2 * flows;
    o["syn_retransmits_while_attached"] = syn_retransmits() - retrans_before;
  }

  probes::detach_reuseport_bpf(member);
  const std::vector<int32_t> detached = map_flows();
  o["detached_differs_from_hash"] = count_differing(detached, hashed);

  // Attach before bind: the socket's own group keeps it out of the listeners' group.
  {
    UniqueFd s(static_cast<int>(check_sys(
        socket(af_of(spec.socket.addr.family), (v.proto == Proto::Tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0), "socket")));
    int one = 1;
    check_sys(setsockopt(s.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one), "setsockopt SO_REUSEPORT");
    if (ebpf)
      ebpf->attach(s.get());
    else
      probes::attach_cbpf_index(s.get(), kTarget);
    sockaddr_storage ss;
    socklen_t len = spec.socket.addr.to_sockaddr(ss);
    const int rc = bind(s.get(), reinterpret_cast<sockaddr*>(&ss), len);
    o["attach_before_bind_bind"] = rc == 0 ? "ok" : errno_name(errno);
  }
  // Attach to a bound socket without SO_REUSEPORT (another port): it has no group to give a
  // program to, and reuseport_attach_prog() says EINVAL (reuseport_bpf.c's
  // test_filter_no_reuseport).
  {
    ListenerOptions plain;
    plain.proto = v.proto;
    plain.addr = spec.socket.addr;
    plain.addr.port = kPort + 1;
    plain.reuseport = false;
    UniqueFd s = open_listener(plain);
    try {
      if (ebpf)
        ebpf->attach(s.get());
      else
        probes::attach_cbpf_index(s.get(), kTarget);
      o["attach_without_reuseport"] = "OK";
    } catch (const SysError& e) {
      o["attach_without_reuseport"] = errno_name(e.err());
    }
  }
  group.stop_all();

  o["lost"] = lost;
  o.update(answer_counts(answered, group));
  return o;
}

std::vector<Variant> variants() {
  std::vector<Variant> out;
  for (Proto pr : {Proto::Tcp, Proto::Udp})
    for (Family f : {Family::V4, Family::V6})
      for (Kind k : {Kind::Classic, Kind::Extended}) out.push_back({pr, f, k});
  // An IPv4 packet reaching a dual-stack AF_INET6 group is steered like any other
  // (reuseport_bpf.c's "IPv6 sockets receiving IPv4 traffic").
  for (Proto pr : {Proto::Tcp, Proto::Udp})
    for (Kind k : {Kind::Classic, Kind::Extended}) out.push_back({pr, Family::V4, k, true});
  // UDP groups of more than 10 sockets (reuseport_bpf.c: "UDP socket lookups traverse a
  // different code path when there are > 10 sockets in a group").
  for (Family f : {Family::V4, Family::V6})
    for (Kind k : {Kind::Classic, Kind::Extended}) out.push_back({Proto::Udp, f, k, false, 20});
  return out;
}

RP_CASE(bpf_steering, ::testing::ValuesIn(variants()));

}  // namespace
}  // namespace rp::cases
