#include "harness/socket.h"

#include <gtest/gtest.h>

#include "harness/error.h"
#include "harness/scope.h"
#include "test_util.h"

namespace rp {
namespace {

ListenerOptions tcp(Family f, uint16_t port, bool reuseport) {
  ListenerOptions o;
  o.addr = Endpoint::loopback(f, port);
  o.reuseport = reuseport;
  return o;
}

class SocketTest : public ::testing::TestWithParam<Family> {
 protected:
  void SetUp() override { RP_REQUIRE_ROOT(); ns_.emplace(); }
  std::optional<NetnsScope> ns_;
};

TEST_P(SocketTest, TwoReuseportListenersShareAPort) {
  auto a = open_listener(tcp(GetParam(), 0, true));
  auto b = open_listener(tcp(GetParam(), local_port(a.get()), true));
  EXPECT_EQ(local_port(a.get()), local_port(b.get()));
  EXPECT_NE(socket_inode(a.get()), socket_inode(b.get()));
}

TEST_P(SocketTest, WithoutReuseportBindFailsAndNamesTheOperation) {
  auto a = open_listener(tcp(GetParam(), 0, true));
  try {
    open_listener(tcp(GetParam(), local_port(a.get()), false));
    FAIL() << "bind succeeded without SO_REUSEPORT";
  } catch (const SysError& e) {
    EXPECT_EQ(e.err(), EADDRINUSE);
    EXPECT_EQ(e.op().rfind("bind ", 0), 0u) << e.what();
    EXPECT_NE(std::string(e.what()).find("EADDRINUSE"), std::string::npos) << e.what();
  }
}

TEST_P(SocketTest, UdpListenerBinds) {
  ListenerOptions o = tcp(GetParam(), 0, true);
  o.proto = Proto::Udp;
  auto a = open_listener(o);
  o.addr.port = local_port(a.get());
  auto b = open_listener(o);
  EXPECT_EQ(local_port(b.get()), o.addr.port);
}

INSTANTIATE_TEST_SUITE_P(Families, SocketTest, ::testing::Values(Family::V4, Family::V6),
                         [](const auto& info) { return std::string(to_string(info.param)); });

TEST(Endpoint, Formats) {
  EXPECT_EQ(Endpoint::loopback(Family::V4, 80).str(), "127.0.0.1:80");
  EXPECT_EQ(Endpoint::loopback(Family::V6, 80).str(), "[::1]:80");
  EXPECT_EQ(Endpoint::wildcard(Family::V6, 81).str(), "*:81");
}

TEST(Endpoint, RejectsAnUnparsableHost) {
  Endpoint e{Family::V4, "::1", 1};
  sockaddr_storage ss;
  EXPECT_THROW(e.to_sockaddr(ss), SysError);
}

TEST(Errors, NameOperationAndErrno) {
  SysError e("setsockopt SO_REUSEPORT", EPERM);
  EXPECT_STREQ(e.what(), "setsockopt SO_REUSEPORT: Operation not permitted (EPERM)");
  EXPECT_EQ(errno_name(ECONNRESET), "ECONNRESET");
}

}  // namespace
}  // namespace rp
