// unix_reuseport_rejected
//
// SO_REUSEPORT means something only for inet sockets: AF_UNIX never shared an address with
// it, but until early 2025 setsockopt() accepted it on any socket and merely set the flag.
// Commit 5b0af621c3f6 ("net: restrict SO_REUSEPORT to inet sockets", merged for v6.13, Eric
// Dumazet; CVE-2024-57903) makes setsockopt() return EOPNOTSUPP when the option is switched
// on for a socket that is not AF_INET/AF_INET6 (sk_is_inet()); switching it off still
// succeeds. Stable backports: 6.12.9, 6.6.70, 6.1.124, 5.15.176 (and, released the same day,
// 5.10.233 and 5.4.289). A later change exempts AF_TIPC, which uses the flag.
//
// Scenario, per variant (AF_UNIX socket type):
//   1. Make two AF_UNIX sockets of the type. On each, setsockopt(SO_REUSEPORT, 1); record
//      the first one's result ("OK" or the errno's name) and read the flag back with
//      getsockopt().
//   2. setsockopt(SO_REUSEPORT, 0) on the first: record the result.
//   3. Bind both to one abstract address (it lives in the case's network namespace and
//      dies with it): record the second bind(). AF_UNIX has no port sharing, so it is
//      EADDRINUSE whether or not the option was accepted.
//   4. Compare with cases/expectations.json: accepted before the commit, EOPNOTSUPP after.

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstddef>
#include <cstring>

#include "cases/lib/case_test.h"
#include "harness/error.h"
#include "harness/fd.h"

namespace rp::cases {
namespace {

struct Variant {
  int type;
  std::string name;
};

std::string result_of(int rc) { return rc == 0 ? "OK" : errno_name(errno); }

nlohmann::json scenario(const Variant& v) {
  UniqueFd a(static_cast<int>(check_sys(socket(AF_UNIX, v.type | SOCK_CLOEXEC, 0), "socket AF_UNIX " + v.name)));
  UniqueFd b(static_cast<int>(check_sys(socket(AF_UNIX, v.type | SOCK_CLOEXEC, 0), "socket AF_UNIX " + v.name)));
  const int on = 1, off = 0;
  nlohmann::json o;
  o["setsockopt_on"] = result_of(setsockopt(a.get(), SOL_SOCKET, SO_REUSEPORT, &on, sizeof on));
  (void)setsockopt(b.get(), SOL_SOCKET, SO_REUSEPORT, &on, sizeof on);
  int flag = -1;
  socklen_t fl = sizeof flag;
  check_sys(getsockopt(a.get(), SOL_SOCKET, SO_REUSEPORT, &flag, &fl), "getsockopt SO_REUSEPORT");
  o["flag_after"] = flag;
  o["setsockopt_off"] = result_of(setsockopt(a.get(), SOL_SOCKET, SO_REUSEPORT, &off, sizeof off));

  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  static const char kName[] = "reuseport-check/unix_reuseport_rejected";
  std::memcpy(sun.sun_path + 1, kName, sizeof kName - 1);  // sun_path[0] = 0: abstract
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + sizeof kName - 1);
  check_sys(bind(a.get(), reinterpret_cast<sockaddr*>(&sun), len), "bind the first AF_UNIX socket");
  o["second_bind"] = result_of(bind(b.get(), reinterpret_cast<sockaddr*>(&sun), len));
  return o;
}

const Variant kVariants[] = {{SOCK_STREAM, "stream"}, {SOCK_DGRAM, "dgram"}, {SOCK_SEQPACKET, "seqpacket"}};

RP_CASE(unix_reuseport_rejected, ::testing::ValuesIn(kVariants));

}  // namespace
}  // namespace rp::cases
