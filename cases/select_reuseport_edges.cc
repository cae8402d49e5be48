// select_reuseport_edges
//
// bpf_sk_select_reuseport() (net/core/filter.c, sk_select_reuseport()) takes the socket
// from a REUSEPORT_SOCKARRAY, and also from a SOCKMAP or SOCKHASH ("bpf: Allow selecting
// reuseport socket from a SOCKMAP/SOCKHASH", Jakub Sitnicki, 2020; before any kernel of the
// matrix). What it does with the socket it found:
//   - no entry at the key: -ENOENT;
//   - a socket outside any reuseport group (sk_reuseport_cb NULL; a SOCKMAP takes an
//     established TCP socket or a connected UDP one, a REUSEPORT_SOCKARRAY does not):
//     -EINVAL from a SOCKMAP/SOCKHASH (-ENOENT from a REUSEPORT_SOCKARRAY, for a socket
//     closed since);
// A REUSEPORT_SOCKARRAY takes only hashed SO_REUSEPORT sockets whose sk_user_data is free
// (kernel/bpf/reuseport_array.c, reuseport_array_update_check(): -EINVAL, -EBUSY); a socket
// in a SOCKMAP or SOCKHASH holds its psock there (sk_psock()), so it is refused with EBUSY.
//   - a socket of another group (reuseport_id differs): -EPROTOTYPE (other protocol),
//     -EAFNOSUPPORT (other family), else -EBADFD;
// and no selection is made. A program that then returns SK_PASS leaves the choice to the
// group's hash (reuseport_select_sock(): no selected socket -> select_by_hash);
// tools/testing/selftests/bpf/prog_tests/select_reuseport.c (test_pass_on_err) expects that.
// The group's program is set and removed through any member: SO_DETACH_REUSEPORT_BPF (5.3)
// -> reuseport_detach_prog(): -ENOENT when no program is attached (so detaching twice
// fails the second time), -EINVAL on a socket without SO_REUSEPORT. Attaching
// (reuseport_attach_prog()) to a socket without SO_REUSEPORT: -EINVAL, unbound ("if
// (!sk->sk_reuseport) return -EINVAL") or bound ("The socket wasn't bound with
// SO_REUSEPORT").
//
// Scenario, per variant (tcp/udp x IPv4/IPv6):
//   1. In a fresh network namespace, a group of 2 SO_REUSEPORT listeners (threads) on port P,
//      two SO_REUSEPORT listeners on P+1 (another group), and a socket outside any group:
//      TCP: an accepted connection of a plain listener on P+2; UDP: a socket bound to P+2
//      and connected. The sk_reuseport program is attached to listener 0; it always returns
//      SK_PASS and records the helper's last error.
//   2. SOCKMAP[0] = listener 1, selected: F fixed flows all reach listener 1. SOCKHASH the
//      same.
//   3. Selected, one at a time, F flows each, recording the helper's error and where the
//      flows went (-1: spread over both members, the hash): an empty SOCKMAP key; SOCKMAP
//      and SOCKHASH holding the other group's socket; SOCKMAP holding the socket outside
//      any group. REUSEPORT_SOCKARRAY: offered the other group's socket that is in the
//      SOCKMAP already, a fresh socket of the other group, and the socket outside any group
//      (the update's answer each time); selected where it took them.
//   4. SO_DETACH_REUSEPORT_BPF on listener 1: ok; again: the error. F flows: spread.
//   5. A socket without SO_REUSEPORT: attach, unbound; attach and detach, bound (TCP
//      listening) on P+3: the errors.
//   6. Reconcile: answers the clients got = answers the listeners sent.

#include <gtest/gtest.h>

#include <sys/socket.h>

#include "cases/lib/case_test.h"
#include "cases/lib/observe.h"
#include "harness/error.h"
#include "harness/server.h"
#include "harness/udp_client.h"
#include "probes/reuseport_sockmap.h"
#include "probes/reuseport_steer.h"

#ifndef SO_DETACH_REUSEPORT_BPF
#define SO_DETACH_REUSEPORT_BPF 68
#endif

namespace rp::cases {
namespace {

using probes::ReuseportSockmap;
using probes::SockMap;
using probes::SockmapProgram;

struct Variant {
  Proto proto;
  Family family;
  std::string name() const { return std::string(proto == Proto::Tcp ? "tcp" : "udp") + (family == Family::V4 ? "4" : "6"); }
};

constexpr uint16_t kPort = 47680;
// A spread over 2 members leaves all flows on one with probability 2 * 2^-24.
constexpr size_t kFlows = 24;

std::string rc_name(int rc) { return rc == 0 ? "ok" : errno_name(rc); }

UniqueFd plain_socket(const Variant& v) {
  return UniqueFd(static_cast<int>(check_sys(
      socket(af_of(v.family), (v.proto == Proto::Tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0), "socket")));
}

void bind_to(int fd, const Endpoint& e) {
  sockaddr_storage ss;
  socklen_t len = e.to_sockaddr(ss);
  check_sys(bind(fd, reinterpret_cast<sockaddr*>(&ss), len), "bind " + e.str());
}

void connect_to(int fd, const Endpoint& e) {
  sockaddr_storage ss;
  socklen_t len = e.to_sockaddr(ss);
  check_sys(connect(fd, reinterpret_cast<sockaddr*>(&ss), len), "connect " + e.str());
}

// A socket of this case outside any reuseport group, and what keeps it so: TCP: an accepted
// connection (its listener and client stay open); UDP: a bound, connected socket.
struct Ungrouped {
  UniqueFd listener, client, sock;
};

Ungrouped ungrouped_socket(const Variant& v) {
  Ungrouped u;
  const Endpoint at = Endpoint::loopback(v.family, kPort + 2);
  if (v.proto == Proto::Tcp) {
    u.listener = plain_socket(v);
    bind_to(u.listener.get(), at);
    check_sys(listen(u.listener.get(), 4), "listen " + at.str());
    u.client = plain_socket(v);
    connect_to(u.client.get(), at);
    u.sock = UniqueFd(static_cast<int>(check_sys(accept4(u.listener.get(), nullptr, nullptr, SOCK_CLOEXEC), "accept")));
  } else {
    u.sock = plain_socket(v);
    bind_to(u.sock.get(), at);
    connect_to(u.sock.get(), Endpoint::loopback(v.family, kPort + 5));
  }
  return u;
}

int setsockopt_errno(int fd, int opt, int value) {
  return setsockopt(fd, SOL_SOCKET, opt, &value, sizeof value) == 0 ? 0 : errno;
}

nlohmann::json scenario(const Variant& v) {
  ListenerGroup group;
  ListenerSpec spec;
  spec.socket.proto = v.proto;
  spec.socket.addr = Endpoint::loopback(v.family, kPort);
  const int l0 = group.add(spec), l1 = group.add(spec);
  ListenerSpec other = spec;
  other.socket.addr = Endpoint::loopback(v.family, kPort + 1);
  const int l_other = group.add(other);
  const int l_other_fresh = group.add(other);
  const int fd0 = probes::socket_fd_by_inode(group.inode(l0));
  const int fd1 = probes::socket_fd_by_inode(group.inode(l1));
  const int fd_other = probes::socket_fd_by_inode(group.inode(l_other));
  const int fd_other_fresh = probes::socket_fd_by_inode(group.inode(l_other_fresh));
  Ungrouped ungrouped = ungrouped_socket(v);

  UdpClientOptions uo;
  uo.target = spec.socket.addr;
  uo.reply_timeout = std::chrono::milliseconds(2000);
  UdpClient udp(uo);
  uint64_t answered = 0, lost = 0;
  // The one listener all flows reached, or -1: they spread (the hash) or were lost.
  auto where = [&] {
    std::map<int32_t, uint64_t> by;
    std::vector<uint16_t> ports;
    for (size_t i = 0; i < kFlows; ++i) ports.push_back(static_cast<uint16_t>(20000 + i));
    if (v.proto == Proto::Udp) {
      for (const auto& x : udp.from_ports(ports)) ++by[x.listener];
    } else {
      for (uint16_t p : ports) ++by[tcp_flow_from(uo.target, p)];
    }
    for (auto& [l, c] : by) (l >= 0 ? answered : lost) += c;
    return by.size() == 1 ? by.begin()->first : -1;
  };

  ReuseportSockmap prog(SockmapProgram::SelectFromMap);
  auto must_put = [&](SockMap m, uint32_t key, int fd, const char* what) {
    if (int rc = prog.put(m, key, fd); rc != 0) throw SysError(std::string("bpf: ") + to_string(m) + " update: " + what, rc);
  };
  // Select map[key]; F flows: where they went and the helper's error ("ok" if none).
  nlohmann::json o;
  o["flows"] = kFlows;
  auto select = [&](SockMap m, uint32_t key, const std::string& field) {
    prog.set_select(m, key);
    const auto before = prog.counts();
    o[field + "_on_listener"] = where();
    const auto after = prog.counts();
    o[field + "_err"] = after.select_errors == before.select_errors ? "ok" : errno_name(static_cast<int>(-after.last_select_err));
    // Every run of this phase failed alike, or none did: a mix would be a finding.
    o[field + "_mixed"] = after.select_errors != before.select_errors && after.selected != before.selected;
  };

  must_put(SockMap::Sockmap, 0, fd1, "listener 1");
  must_put(SockMap::Sockhash, 0, fd1, "listener 1");
  prog.attach(fd0);
  select(SockMap::Sockmap, 0, "sockmap_member");
  select(SockMap::Sockhash, 0, "sockhash_member");
  select(SockMap::Sockmap, 3, "sockmap_empty_key");

  must_put(SockMap::Sockmap, 1, fd_other, "the other group's listener");
  must_put(SockMap::Sockhash, 1, fd_other, "the other group's listener");
  select(SockMap::Sockmap, 1, "sockmap_other_group");
  select(SockMap::Sockhash, 1, "sockhash_other_group");

  const int put_ungrouped = prog.put(SockMap::Sockmap, 2, ungrouped.sock.get());
  o["sockmap_put_ungrouped"] = rc_name(put_ungrouped);
  if (put_ungrouped == 0) select(SockMap::Sockmap, 2, "sockmap_ungrouped");

  // A socket in a SOCKMAP keeps its psock in sk_user_data, which the REUSEPORT_SOCKARRAY
  // wants for itself: the other group's socket, in both socket maps by now, is refused;
  // a fresh one of that group is taken.
  o["sockarray_put_sockmap_socket"] = rc_name(prog.put(SockMap::Sockarray, 3, fd_other));
  const int arr_other = prog.put(SockMap::Sockarray, 1, fd_other_fresh);
  o["sockarray_put_other_group"] = rc_name(arr_other);
  if (arr_other == 0) select(SockMap::Sockarray, 1, "sockarray_other_group");
  o["sockarray_put_ungrouped"] = rc_name(prog.put(SockMap::Sockarray, 2, ungrouped.sock.get()));

  // The group's program goes through any member, once.
  o["detach_first"] = rc_name(setsockopt_errno(fd1, SO_DETACH_REUSEPORT_BPF, 0));
  o["detach_second"] = rc_name(setsockopt_errno(fd1, SO_DETACH_REUSEPORT_BPF, 0));
  const auto runs = prog.counts().select_runs;
  o["detached_on_listener"] = where();
  o["program_runs_after_detach"] = prog.counts().select_runs - runs;

  // Without SO_REUSEPORT.
  const int pfd = prog.prog_fd();
  {
    UniqueFd s = plain_socket(v);
    o["attach_no_reuseport_unbound"] = rc_name(setsockopt_errno(s.get(), SO_ATTACH_REUSEPORT_EBPF, pfd));
  }
  {
    UniqueFd s = plain_socket(v);
    const Endpoint at = Endpoint::loopback(v.family, kPort + 3);
    bind_to(s.get(), at);
    if (v.proto == Proto::Tcp) check_sys(listen(s.get(), 4), "listen " + at.str());
    o["attach_no_reuseport_bound"] = rc_name(setsockopt_errno(s.get(), SO_ATTACH_REUSEPORT_EBPF, pfd));
    o["detach_no_reuseport_bound"] = rc_name(setsockopt_errno(s.get(), SO_DETACH_REUSEPORT_BPF, 0));
  }
  group.stop_all();

  o["lost"] = lost;
  o.update(answer_counts(answered, group));
  return o;
}

std::vector<Variant> variants() {
  std::vector<Variant> out;
  for (Proto pr : {Proto::Tcp, Proto::Udp})
    for (Family f : {Family::V4, Family::V6}) out.push_back({pr, f});
  return out;
}

RP_CASE(select_reuseport_edges, ::testing::ValuesIn(variants()));

}  // namespace
}  // namespace rp::cases
