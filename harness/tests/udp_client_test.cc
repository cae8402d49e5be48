#include "harness/udp_client.h"

#include <gtest/gtest.h>

#include "harness/error.h"
#include "harness/scope.h"
#include "harness/server.h"
#include "test_util.h"

namespace rp {
namespace {

ListenerSpec udp(Family f, uint16_t port) {
  ListenerSpec s;
  s.socket.proto = Proto::Udp;
  s.socket.addr = Endpoint::loopback(f, port);
  return s;
}

UdpClientOptions to(Family f, uint16_t port) {
  UdpClientOptions o;
  o.target = Endpoint::loopback(f, port);
  o.reply_timeout = std::chrono::milliseconds(2000);
  return o;
}

class UdpClientTest : public ::testing::TestWithParam<Family> {
 protected:
  void SetUp() override { RP_REQUIRE_ROOT(); ns_.emplace(); }
  std::optional<NetnsScope> ns_;
};

TEST_P(UdpClientTest, RepliesAreCountedPerListenerAndMatchTheServers) {
  ListenerGroup g;
  g.add(udp(GetParam(), 47301));
  g.add(udp(GetParam(), 47301));
  UdpClient c(to(GetParam(), 47301));
  auto xs = c.from_ports(std::vector<uint16_t>(300, 0));
  UdpTally t = tally(xs);
  EXPECT_EQ(t.sent, 300u);
  EXPECT_EQ(t.answered, 300u);
  EXPECT_EQ(t.lost, 0u);
  EXPECT_EQ(t.by_listener, g.served_by_listener());
  for (const auto& x : xs) EXPECT_NE(x.source_port, 0);
}

TEST_P(UdpClientTest, ChosenPortsAreUsedAndOnePortIsOneFlow) {
  ListenerGroup g;
  for (int i = 0; i < 4; ++i) g.add(udp(GetParam(), 47302));
  UdpClient c(to(GetParam(), 47302));
  auto xs = c.from_ports({40001, 40002, 40003});
  ASSERT_EQ(xs.size(), 3u);
  EXPECT_EQ(xs[0].source_port, 40001);
  EXPECT_EQ(xs[2].source_port, 40003);
  auto flow = c.from_one_port(40010, 50);
  UdpTally t = tally(flow);
  EXPECT_EQ(t.answered, 50u);
  EXPECT_EQ(t.by_listener.size(), 1u);
  for (const auto& x : flow) EXPECT_EQ(x.source_port, 40010);
}

TEST_P(UdpClientTest, NothingListeningIsLostWithinTheTimeout) {
  UdpClientOptions o = to(GetParam(), 47303);
  o.reply_timeout = std::chrono::milliseconds(200);
  UdpClient c(o);
  auto t0 = std::chrono::steady_clock::now();
  UdpTally t = tally(c.from_ports(std::vector<uint16_t>(10, 0)));
  EXPECT_EQ(t.lost, 10u);
  EXPECT_EQ(t.answered, 0u);
  // Bounded, not timed: one window waits at most one timeout (a generous bound).
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
}

TEST_P(UdpClientTest, ABusySourcePortNamesTheBindAndErrno) {
  ListenerGroup g;
  g.add(udp(GetParam(), 47304));
  UdpClient c(to(GetParam(), 47304));
  try {
    c.from_ports({47304});  // the listener's own port, bound without SO_REUSEPORT here
    FAIL() << "binding a busy source port succeeded";
  } catch (const SysError& e) {
    EXPECT_EQ(e.err(), EADDRINUSE);
    EXPECT_NE(std::string(e.what()).find("bind udp source"), std::string::npos) << e.what();
  }
}

TEST_P(UdpClientTest, TcpFlowFromTheSamePortIsTheSameTupleAgain) {
  ListenerGroup g;
  ListenerSpec s;
  s.socket.addr = Endpoint::loopback(GetParam(), 47305);
  for (int i = 0; i < 4; ++i) g.add(s);
  const Endpoint to = Endpoint::loopback(GetParam(), 47305);
  for (uint16_t p = 41000; p < 41016; ++p) {
    const int32_t first = tcp_flow_from(to, p);
    EXPECT_GE(first, 0);
    EXPECT_EQ(tcp_flow_from(to, p), first) << "port " << p;  // no TIME_WAIT blocked the tuple
  }
  g.stop_all();
  uint64_t served = 0;
  for (auto& [id, n] : g.served_by_listener()) served += n;
  EXPECT_EQ(served, 32u);
}

TEST_P(UdpClientTest, TcpFlowToNothingNamesTheConnect) {
  try {
    tcp_flow_from(Endpoint::loopback(GetParam(), 47306), 0);
    FAIL() << "connect to a closed port succeeded";
  } catch (const SysError& e) {
    EXPECT_EQ(e.err(), ECONNREFUSED);
    EXPECT_NE(std::string(e.what()).find("connect"), std::string::npos) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Family, UdpClientTest, ::testing::Values(Family::V4, Family::V6),
                         [](const auto& info) { return std::string(to_string(info.param)); });

TEST(UdpClientOptions, BadOptionsAreRejected) {
  UdpClientOptions o;
  EXPECT_THROW(UdpClient{o}, std::invalid_argument);  // no port
  o.target = Endpoint::loopback(Family::V4, 1);
  o.window = 0;
  EXPECT_THROW(UdpClient{o}, std::invalid_argument);
  o.window = 1;
  o.reply_timeout = std::chrono::milliseconds(0);
  EXPECT_THROW(UdpClient{o}, std::invalid_argument);
}

}  // namespace
}  // namespace rp
