// ephemeral_port_exhaustion
//
// What bind(port 0) and connect() do when every port of net.ipv4.ip_local_port_range is
// taken. Documentation/networking/ip-sysctl.rst, ip_autobind_reuse: "By default, bind()
// does not select the ports automatically even if the new socket and all sockets bound to
// the port have SO_REUSEADDR. ip_autobind_reuse allows bind() to reuse the port and this is
// useful when you use bind()+connect()" (4b01a9674231 "tcp: bind(0) remove the SO_REUSEADDR
// restriction when ephemeral ports are exhausted.", 5.7). With it, inet_csk_find_open_port()
// (net/ipv4/inet_connection_sock.c) scans the range again with relax=true and reuseport_ok
// false: a taken port is given when every socket on it has SO_REUSEADDR and none listens,
// except when both sockets have SO_REUSEPORT and the same uid (the two could listen
// together, which an autobind must not set up). The rules as selftest tools/testing/
// selftests/net/reuseaddr_ports_exhausted.c states them; its different-euid test also says
// that of two such sockets only one may listen. connect() autobind (__inet_hash_connect(),
// net/ipv4/inet_hashtables.c) never takes a port that bind() holds (buckets with fastreuse
// or fastreuseport >= 0), whatever the options, and shares a port it took itself when the
// 4-tuple differs.
//
// Scenario, per variant (the sysctl, the holder's uid, bind or connect):
//   1. In a fresh network namespace, set ip_local_port_range to the single port P and
//      ip_autobind_reuse to the variant's value.
//   2. bind variants, for each holder option set H (none, SO_REUSEADDR, SO_REUSEPORT, both,
//      SO_REUSEADDR and listening) and each new socket's set N (the first four): the holder
//      binds 127.0.0.1:0 (created with fsuid 65534 for "_other_uid") and must get P; the new
//      socket binds 127.0.0.1:0. If it got P: the holder listens, then the new socket
//      listens. Record "EADDRINUSE", or "OK, listen <result>".
//   3. connect variants: a listener on 0.0.0.0:Q (Q outside the range); with P held by a
//      bind()-only socket, a fresh socket connect()s; then with P held by a connected
//      socket (to 127.0.0.1:Q), connect()s to the same and to another destination
//      (127.0.0.2:Q); then bind(0) with SO_REUSEADDR over that connected socket (itself
//      SO_REUSEADDR) and connect to a third one, 127.0.0.3:Q (ip_autobind_reuse's use case).
//   4. Compare with cases/expectations.json.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/fsuid.h>

#include "cases/lib/case_test.h"
#include "harness/error.h"
#include "harness/scope.h"
#include "harness/socket.h"

namespace rp::cases {
namespace {

constexpr uint16_t kRangePort = 47400;   // the only ephemeral port
constexpr uint16_t kServerPort = 47410;  // outside the range
constexpr uid_t kOther = 65534;           // nobody

// Option bits of a socket.
constexpr int kNone = 0, kReuseaddr = 1, kReuseport = 2;
constexpr int kListening = 8;  // a holder that listens (not a socket option)

struct Variant {
  bool autobind_reuse;
  bool other_uid;
  bool connect;

  std::string name() const {
    if (connect) return std::string("connect_autobind_reuse") + (autobind_reuse ? "1" : "0");
    return std::string("bind0_autobind_reuse") + (autobind_reuse ? "1" : "0") + (other_uid ? "_other_uid" : "_same_uid");
  }
};

const char* opt_name(int o) {
  return o == kNone ? "none" : o == kReuseaddr ? "reuseaddr" : o == kReuseport ? "reuseport" : "both";
}

sockaddr_in v4(const char* host, uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, host, &a.sin_addr);
  return a;
}

std::string result_of(int rc) { return rc == 0 ? "OK" : errno_name(errno); }

// A TCP socket with the options, created with fsuid `uid` when it is not ours: the socket's
// uid is taken from the creator's fsuid (sock_alloc()); setfsuid() changes this thread only.
UniqueFd tcp_socket(int opts, std::optional<uid_t> uid = std::nullopt) {
  if (uid) setfsuid(*uid);
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int err = errno;
  if (uid) setfsuid(0);
  if (fd < 0) throw SysError("socket", err);
  UniqueFd s(fd);
  const int one = 1;
  if (opts & kReuseaddr) check_sys(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one), "setsockopt SO_REUSEADDR");
  if (opts & kReuseport) check_sys(setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one), "setsockopt SO_REUSEPORT");
  return s;
}

int bind_any_port(int fd) {
  sockaddr_in a = v4("127.0.0.1", 0);
  return bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
}

int connect_to(int fd, const char* host) {
  sockaddr_in a = v4(host, kServerPort);
  return connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
}

void expect_range_port(int fd, const std::string& what) {
  if (local_port(fd) != kRangePort)
    throw std::runtime_error(what + " got port " + std::to_string(local_port(fd)) + ", not the range's only port " +
                             std::to_string(kRangePort));
}

nlohmann::json bind_pairs(const Variant& v) {
  nlohmann::json o;
  const std::optional<uid_t> holder_uid = v.other_uid ? std::optional<uid_t>(kOther) : std::nullopt;
  for (int h : {kNone, kReuseaddr, kReuseport, kReuseaddr | kReuseport, kReuseaddr | kListening}) {
    const bool holder_listens = h & kListening;
    const int hopts = h & ~kListening;
    for (int n : {kNone, kReuseaddr, kReuseport, kReuseaddr | kReuseport}) {
      UniqueFd holder = tcp_socket(hopts, holder_uid);
      check_sys(bind_any_port(holder.get()), "bind the holder to 127.0.0.1:0");
      expect_range_port(holder.get(), "the holder");
      if (holder_listens) check_sys(listen(holder.get(), 8), "listen the holder");
      UniqueFd s = tcp_socket(n);
      std::string r = result_of(bind_any_port(s.get()));
      if (r == "OK") {
        expect_range_port(s.get(), "the second bind(0)");
        if (!holder_listens) check_sys(listen(holder.get(), 8), "listen the holder after the second bind");
        r += ", listen " + result_of(listen(s.get(), 8));
      }
      o[std::string("holder_") + opt_name(hopts) + (holder_listens ? "_listening" : "") + "__new_" + opt_name(n)] = r;
    }
  }
  return o;
}

nlohmann::json connects() {
  nlohmann::json o;
  UniqueFd server = tcp_socket(kReuseaddr);
  sockaddr_in any = v4("0.0.0.0", kServerPort);
  check_sys(bind(server.get(), reinterpret_cast<sockaddr*>(&any), sizeof any), "bind the server 0.0.0.0:Q");
  check_sys(listen(server.get(), 64), "listen the server");
  {
    UniqueFd holder = tcp_socket(kReuseaddr | kReuseport);
    check_sys(bind_any_port(holder.get()), "bind the holder to 127.0.0.1:0");
    expect_range_port(holder.get(), "the holder");
    UniqueFd c = tcp_socket(kReuseaddr | kReuseport);
    o["connect_over_bound_port"] = result_of(connect_to(c.get(), "127.0.0.1"));
  }
  UniqueFd first = tcp_socket(kReuseaddr);
  check_sys(connect_to(first.get(), "127.0.0.1"), "connect the first client to 127.0.0.1:Q");
  expect_range_port(first.get(), "the first client");
  UniqueFd same = tcp_socket(kReuseaddr);
  o["connect_same_dest_over_connected"] = result_of(connect_to(same.get(), "127.0.0.1"));
  UniqueFd other = tcp_socket(kReuseaddr);
  std::string r = result_of(connect_to(other.get(), "127.0.0.2"));
  if (r == "OK") r += local_port(other.get()) == kRangePort ? ", same port" : ", another port";
  o["connect_other_dest_over_connected"] = r;
  // `other` stays open: closed, it would hold its 4-tuple in FIN_WAIT2.
  UniqueFd b = tcp_socket(kReuseaddr);
  r = result_of(bind_any_port(b.get()));
  if (r == "OK") r += ", connect to a third destination " + result_of(connect_to(b.get(), "127.0.0.3"));
  o["bind0_then_connect_over_connected"] = r;
  return o;
}

nlohmann::json scenario(const Variant& v) {
  const std::string port = std::to_string(kRangePort);
  SysctlScope range("net.ipv4.ip_local_port_range", port + " " + port);
  SysctlScope reuse("net.ipv4.ip_autobind_reuse", v.autobind_reuse ? "1" : "0");
  return v.connect ? connects() : bind_pairs(v);
}

std::vector<Variant> variants() {
  std::vector<Variant> out;
  for (bool reuse : {false, true})
    for (bool other : {false, true}) out.push_back({reuse, other, false});
  for (bool reuse : {false, true}) out.push_back({reuse, false, true});
  return out;
}

RP_CASE(ephemeral_port_exhaustion, ::testing::ValuesIn(variants()));

}  // namespace
}  // namespace rp::cases
