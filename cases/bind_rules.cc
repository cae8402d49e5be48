// bind_rules
//
// Who may bind a port that another socket already holds. socket(7): SO_REUSEPORT "must be
// set on each socket (including the first socket) prior to calling bind(2)"; SO_REUSEADDR
// lets a socket bind "except when there is an active listening socket bound to the
// address". The kernel decides this in inet_bind_conflict() (TCP, net/ipv4/
// inet_connection_sock.c) and udp_lib_lport_inuse() (UDP, net/ipv4/udp.c), comparing the
// flags of both sockets as they are at the second bind().
//
// Scenario, per variant (protocol, families, a row of options):
//   1. In a fresh network namespace, open socket A with the row's options, bind it to the
//      row's address on a fixed port and, for TCP rows that say so, listen(). For the
//      "reuseport_after_bind" row A sets SO_REUSEPORT only after its bind() (and before
//      listen()).
//   2. Open socket B with the row's options and bind it to its address on the same port;
//      record what bind() returned ("OK" or the errno's name).
//   3. TCP: if B's bind succeeded, listen() on B and record that too ("-" otherwise, and
//      for UDP). Both sockets close when the scenario returns; the namespace goes with it.
//   4. Compare with cases/expectations.json: only SO_REUSEPORT on both sides shares a port
//      held by a listener; SO_REUSEADDR on both sides shares it for UDP and for TCP sockets
//      that are not listening; a wildcard and a specific address (or an IPv4 and a dual-
//      stack IPv6 wildcard) conflict unless both sides set SO_REUSEPORT (or IPV6_V6ONLY
//      separates the families).

#include <gtest/gtest.h>

#include <optional>

#include "cases/lib/case_test.h"
#include "harness/error.h"
#include "harness/socket.h"

namespace rp::cases {
namespace {

struct Side {
  Family family;
  std::string host;  // "" = the family's wildcard
  bool reuseport = false;
  bool reuseaddr = false;
  bool v6only = false;
  bool listen = true;             // TCP only
  bool reuseport_after_bind = false;
};

struct Variant {
  std::string name;
  Proto proto;
  Side a;
  Side b;
  // A third socket that binds after A and is closed again before B binds (the bind bucket's
  // reuse state must be recomputed when it leaves: b9470c27607b "inet: kill smallest_size
  // and smallest_port", tools/testing/selftests/net/reuseaddr_conflict.c). B also tries a
  // bind while it is there.
  std::optional<Side> passer = std::nullopt;
};

constexpr uint16_t kPort = 47310;

// "OK", or the name of the errno the call failed with.
std::string result_of(int rc) { return rc == 0 ? "OK" : errno_name(errno); }

UniqueFd make_socket(Proto proto, const Side& s) {
  const int type = (proto == Proto::Tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC;
  UniqueFd fd(static_cast<int>(check_sys(socket(af_of(s.family), type, 0), "socket")));
  const int one = 1, v6only = s.v6only ? 1 : 0;
  if (s.reuseaddr) check_sys(setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one), "setsockopt SO_REUSEADDR");
  if (s.reuseport && !s.reuseport_after_bind)
    check_sys(setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one), "setsockopt SO_REUSEPORT");
  if (s.family == Family::V6)
    check_sys(setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only), "setsockopt IPV6_V6ONLY");
  return fd;
}

int bind_to(int fd, const Side& s) {
  sockaddr_storage ss;
  const socklen_t len = Endpoint{s.family, s.host, kPort}.to_sockaddr(ss);
  return bind(fd, reinterpret_cast<sockaddr*>(&ss), len);
}

nlohmann::json scenario(const Variant& v) {
  const bool tcp = v.proto == Proto::Tcp;
  UniqueFd a = make_socket(v.proto, v.a);
  check_sys(bind_to(a.get(), v.a), "bind A " + Endpoint{v.a.family, v.a.host, kPort}.str());
  if (v.a.reuseport_after_bind) {
    const int one = 1;
    check_sys(setsockopt(a.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one), "setsockopt SO_REUSEPORT after bind");
  }
  if (tcp && v.a.listen) check_sys(listen(a.get(), 16), "listen A");

  nlohmann::json o;
  if (v.passer) {
    UniqueFd c = make_socket(v.proto, *v.passer);
    o["passer_bind"] = result_of(bind_to(c.get(), *v.passer));
    UniqueFd early = make_socket(v.proto, v.b);
    o["second_bind_beside_passer"] = result_of(bind_to(early.get(), v.b));
  }

  UniqueFd b = make_socket(v.proto, v.b);
  const std::string second_bind = result_of(bind_to(b.get(), v.b));
  std::string second_listen = "-";
  if (tcp && second_bind == "OK") second_listen = result_of(listen(b.get(), 16));

  o["second_bind"] = second_bind;
  o["second_listen"] = second_listen;
  return o;
}

std::vector<Variant> variants() {
  std::vector<Variant> out;
  for (Proto p : {Proto::Tcp, Proto::Udp}) {
    const std::string ps = p == Proto::Tcp ? "tcp" : "udp";
    for (Family f : {Family::V4, Family::V6}) {
      const std::string pf = ps + (f == Family::V4 ? "4" : "6");
      const std::string lo = f == Family::V4 ? "127.0.0.1" : "::1";
      auto side = [&](bool rp, bool ra) { return Side{f, lo, rp, ra}; };
      out.push_back({pf + "_both_reuseport", p, side(true, false), side(true, false)});
      out.push_back({pf + "_first_without", p, side(false, false), side(true, false)});
      out.push_back({pf + "_second_without", p, side(true, false), side(false, false)});
      out.push_back({pf + "_reuseaddr_both", p, side(false, true), side(false, true)});
      out.push_back({pf + "_reuseaddr_then_reuseport", p, side(false, true), side(true, false)});
      Side after = side(true, false);
      after.reuseport_after_bind = true;
      out.push_back({pf + "_reuseport_after_bind", p, after, side(true, false)});
      if (p == Proto::Tcp) {
        Side unlistened = side(false, true);
        unlistened.listen = false;
        out.push_back({pf + "_reuseaddr_both_unlistened", p, unlistened, side(false, true)});
      }
      // A wildcard first, then a specific address of the same family.
      out.push_back({pf + "_wildcard_specific_plain", p, Side{f, "", false, false}, side(false, false)});
      out.push_back({pf + "_wildcard_specific_reuseport", p, Side{f, "", true, false}, side(true, false)});
    }
    // The IPv4 wildcard, then the IPv6 wildcard, dual-stack or IPV6_V6ONLY.
    const std::string p46 = ps + "46";
    out.push_back({p46 + "_dualstack_plain", p, Side{Family::V4, ""}, Side{Family::V6, ""}});
    out.push_back({p46 + "_dualstack_reuseport", p, Side{Family::V4, "", true}, Side{Family::V6, "", true}});
    out.push_back({p46 + "_v6only_plain", p, Side{Family::V4, ""}, Side{Family::V6, "", false, false, true}});
  }
  // reuseaddr_conflict.c: 127.0.0.1 listening (SO_REUSEADDR), an IPV6_V6ONLY :: socket
  // (SO_REUSEADDR) binds beside it and leaves; 0.0.0.0 (SO_REUSEADDR) conflicts before and
  // after.
  Side specific{Family::V4, "127.0.0.1", false, true};
  Side any6{Family::V6, "", false, true, true};
  any6.listen = false;
  out.push_back({"tcp4_reuseaddr_listener_after_v6only_left", Proto::Tcp, specific, Side{Family::V4, "", false, true}, any6});
  return out;
}

RP_CASE(bind_rules, ::testing::ValuesIn(variants()));

}  // namespace
}  // namespace rp::cases
