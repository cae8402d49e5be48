// Sockets as the cases need them: listeners with exactly the options asked for, and the
// addresses they sit on.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>

#include "harness/fd.h"

namespace rp {

enum class Proto { Tcp, Udp };
enum class Family { V4, V6 };

const char* to_string(Proto p);
const char* to_string(Family f);
int af_of(Family f);

// An IP address and port. `host` empty means the wildcard of the family.
struct Endpoint {
  Family family = Family::V4;
  std::string host;  // "127.0.0.1", "::1", "" (wildcard)
  uint16_t port = 0;

  static Endpoint loopback(Family f, uint16_t port);
  static Endpoint wildcard(Family f, uint16_t port);
  // Fills `ss` and returns the length; throws on an unparsable host.
  socklen_t to_sockaddr(sockaddr_storage& ss) const;
  std::string str() const;  // "127.0.0.1:80", "[::1]:80", "*:80"
};

struct ListenerOptions {
  Proto proto = Proto::Tcp;
  Endpoint addr;
  bool reuseport = true;
  bool reuseaddr = false;
  bool v6only = false;  // IPV6_V6ONLY on AF_INET6 sockets
  int backlog = 128;    // TCP only
  bool listen = true;   // TCP: call listen() after bind()
  bool nonblocking = true;
};

// socket() + options + bind() (+ listen() for TCP). Each failing step throws SysError
// naming it, e.g. "bind [::1]:8080".
UniqueFd open_listener(const ListenerOptions& o);

// A UDP client socket bound to the loopback address of `family` at `port` (0: the kernel
// picks one): a flow's own source of a 4-tuple. Throws SysError naming the address.
UniqueFd open_udp_source(Family family, uint16_t port, bool nonblocking = true);

// The port a bound socket got (for port 0 binds).
uint16_t local_port(int fd);
// The socket's inode, as sock_diag and /proc/net/tcp name it.
uint64_t socket_inode(int fd);

}  // namespace rp
