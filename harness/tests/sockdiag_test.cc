// harness/sockdiag's port_sockets(): what `reuseport-check group` builds its members from. The
// cookie must be the one SO_COOKIE (and so the BPF counters) give, or no share would ever
// be matched to its socket.
#include "harness/sockdiag.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "harness/fd.h"
#include "harness/scope.h"
#include "test_util.h"

namespace rp {
namespace {

UniqueFd bound(int family, int type, uint16_t port, int v6only = -1) {
  UniqueFd fd(socket(family, type | SOCK_CLOEXEC, 0));
  EXPECT_TRUE(fd) << "socket";
  int one = 1;
  EXPECT_EQ(setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one), 0) << "setsockopt SO_REUSEPORT";
  if (v6only >= 0) {
    EXPECT_EQ(setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only), 0);
  }
  int rc;
  if (family == AF_INET) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    rc = bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
  } else {
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(port);
    a.sin6_addr = in6addr_any;
    rc = bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
  }
  EXPECT_EQ(rc, 0) << "bind";
  if (type == SOCK_STREAM) {
    EXPECT_EQ(listen(fd.get(), 7), 0) << "listen";
  }
  return fd;
}

uint64_t cookie(int fd) {
  uint64_t c = 0;
  socklen_t len = sizeof c;
  EXPECT_EQ(getsockopt(fd, SOL_SOCKET, SO_COOKIE, &c, &len), 0) << "getsockopt SO_COOKIE";
  return c;
}

class SockDiagTest : public ::testing::Test {
 protected:
  void SetUp() override { RP_REQUIRE_ROOT(); ns_.emplace(); }
  std::optional<NetnsScope> ns_;
};

TEST_F(SockDiagTest, ListenersOfAPortWithCookieAddressAndV6Only) {
  auto a = bound(AF_INET, SOCK_STREAM, 47021);
  auto b = bound(AF_INET6, SOCK_STREAM, 47021, 1);
  auto other = bound(AF_INET, SOCK_STREAM, 47022);
  auto got = port_sockets(IPPROTO_TCP, 47021);
  ASSERT_EQ(got.size(), 2u);
  for (const auto& s : got) {
    EXPECT_EQ(s.protocol, IPPROTO_TCP);
    EXPECT_EQ(s.port, 47021);
    EXPECT_EQ(s.wqueue, 7u);  // a listener's backlog
    EXPECT_EQ(s.drops, std::optional<uint32_t>(0));
    if (s.family == AF_INET) {
      EXPECT_EQ(s.cookie, cookie(a.get()));
      EXPECT_EQ(s.address, "127.0.0.1");
      EXPECT_FALSE(s.v6only);  // the attribute is for AF_INET6 only
    } else {
      EXPECT_EQ(s.cookie, cookie(b.get()));
      EXPECT_EQ(s.address, "::");
      EXPECT_EQ(s.v6only, std::optional<bool>(true));
    }
  }
  EXPECT_TRUE(port_sockets(IPPROTO_UDP, 47021).empty());
}

TEST_F(SockDiagTest, UdpSocketsOfAPortAndTheirQueue) {
  auto a = bound(AF_INET, SOCK_DGRAM, 47023);
  auto b = bound(AF_INET6, SOCK_DGRAM, 47023, 0);
  EXPECT_EQ(udp_bound_ports(), std::set<uint16_t>{47023});
  // One datagram to a: its receive queue holds it (bytes, with overhead), b's is empty.
  UniqueFd c(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(47023);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(sendto(c.get(), "x", 1, 0, reinterpret_cast<sockaddr*>(&to), sizeof to), 1);
  auto got = port_sockets(IPPROTO_UDP, 47023);
  ASSERT_EQ(got.size(), 2u);
  for (const auto& s : got) {
    if (s.family == AF_INET) {
      EXPECT_EQ(s.cookie, cookie(a.get()));
      EXPECT_GT(s.rqueue, 0u);
    } else {
      EXPECT_EQ(s.cookie, cookie(b.get()));
      EXPECT_EQ(s.rqueue, 0u);
      EXPECT_EQ(s.v6only, std::optional<bool>(false));
    }
  }
}

}  // namespace
}  // namespace rp
