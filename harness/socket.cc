#include "harness/socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <cstring>

#include "harness/error.h"

namespace rp {

const char* to_string(Proto p) { return p == Proto::Tcp ? "tcp" : "udp"; }
const char* to_string(Family f) { return f == Family::V4 ? "ipv4" : "ipv6"; }
int af_of(Family f) { return f == Family::V4 ? AF_INET : AF_INET6; }

Endpoint Endpoint::loopback(Family f, uint16_t port) {
  return {f, f == Family::V4 ? "127.0.0.1" : "::1", port};
}
Endpoint Endpoint::wildcard(Family f, uint16_t port) { return {f, "", port}; }

socklen_t Endpoint::to_sockaddr(sockaddr_storage& ss) const {
  std::memset(&ss, 0, sizeof ss);
  if (family == Family::V4) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    if (host.empty()) {
      sin->sin_addr.s_addr = htonl(INADDR_ANY);
    } else if (inet_pton(AF_INET, host.c_str(), &sin->sin_addr) != 1) {
      throw SysError("parse IPv4 address '" + host + "'", EINVAL);
    }
    return sizeof(sockaddr_in);
  }
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons(port);
  if (host.empty()) {
    sin6->sin6_addr = in6addr_any;
  } else if (inet_pton(AF_INET6, host.c_str(), &sin6->sin6_addr) != 1) {
    throw SysError("parse IPv6 address '" + host + "'", EINVAL);
  }
  return sizeof(sockaddr_in6);
}

std::string Endpoint::str() const {
  std::string h = host.empty() ? "*" : host;
  if (family == Family::V6 && !host.empty()) h = "[" + h + "]";
  return h + ":" + std::to_string(port);
}

static void set_int_opt(int fd, int level, int opt, int v, const char* what) {
  check_sys(setsockopt(fd, level, opt, &v, sizeof v), std::string("setsockopt ") + what);
}

UniqueFd open_listener(const ListenerOptions& o) {
  int type = (o.proto == Proto::Tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC;
  if (o.nonblocking) type |= SOCK_NONBLOCK;
  UniqueFd fd(static_cast<int>(check_sys(socket(af_of(o.addr.family), type, 0),
                                         std::string("socket ") + to_string(o.proto) + "/" +
                                             to_string(o.addr.family))));
  if (o.reuseaddr) set_int_opt(fd.get(), SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
  if (o.reuseport) set_int_opt(fd.get(), SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT");
  if (o.addr.family == Family::V6)
    set_int_opt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, o.v6only ? 1 : 0, "IPV6_V6ONLY");
  sockaddr_storage ss;
  socklen_t len = o.addr.to_sockaddr(ss);
  check_sys(bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len), "bind " + o.addr.str());
  if (o.proto == Proto::Tcp && o.listen)
    check_sys(::listen(fd.get(), o.backlog),
              "listen " + o.addr.str() + " backlog " + std::to_string(o.backlog));
  return fd;
}

UniqueFd open_udp_source(Family family, uint16_t port, bool nonblocking) {
  const int type = SOCK_DGRAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0);
  UniqueFd fd(static_cast<int>(check_sys(socket(af_of(family), type, 0), "socket udp source")));
  const Endpoint src = Endpoint::loopback(family, port);
  sockaddr_storage ss;
  const socklen_t len = src.to_sockaddr(ss);
  check_sys(bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len), "bind udp source " + src.str());
  return fd;
}

uint16_t local_port(int fd) {
  sockaddr_storage ss;
  socklen_t len = sizeof ss;
  check_sys(getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len), "getsockname");
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
}

uint64_t socket_inode(int fd) {
  struct stat st;
  check_sys(fstat(fd, &st), "fstat socket");
  return st.st_ino;
}

}  // namespace rp
