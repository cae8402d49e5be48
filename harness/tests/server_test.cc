#include "harness/server.h"

#include <signal.h>

#include <gtest/gtest.h>

#include "harness/scope.h"
#include "harness/sockdiag.h"
#include "test_util.h"

namespace rp {
namespace {

ListenerSpec spec(uint16_t port, Exec exec, AcceptPolicy policy = AcceptPolicy::Serve, int backlog = 16) {
  ListenerSpec s;
  s.socket.addr = Endpoint::loopback(Family::V4, port);
  s.socket.backlog = backlog;
  s.exec = exec;
  s.policy = policy;
  return s;
}

class ServerTest : public ::testing::TestWithParam<Exec> {
 protected:
  void SetUp() override { RP_REQUIRE_ROOT(); ns_.emplace(); }
  std::optional<NetnsScope> ns_;
};

TEST_P(ServerTest, ListenersJoinOnePortAndShowInSockDiag) {
  ListenerGroup g;
  int a = g.add(spec(47001, GetParam()));
  int b = g.add(spec(47001, GetParam(), AcceptPolicy::Never, 8));
  auto ls = tcp_listeners(47001);
  ASSERT_EQ(ls.size(), 2u);
  auto never = tcp_listener_by_inode(47001, g.inode(b));
  ASSERT_TRUE(never);
  EXPECT_EQ(never->backlog, 8u);
  EXPECT_EQ(never->accept_queue, 0u);
  EXPECT_EQ(g.state(a), ListenerState::Listening);
  g.close(b);
  EXPECT_EQ(g.state(b), ListenerState::Closed);
  EXPECT_EQ(tcp_listeners(47001).size(), 1u);
  g.stop_all();
  EXPECT_EQ(g.state(a), ListenerState::Stopped);
  EXPECT_TRUE(tcp_listeners(47001).empty());
}

TEST_P(ServerTest, ShutdownLeavesTheGroup) {
  ListenerGroup g;
  g.add(spec(47002, GetParam()));
  int b = g.add(spec(47002, GetParam()));
  g.shutdown(b);
  EXPECT_EQ(g.state(b), ListenerState::ShutDown);
  EXPECT_EQ(tcp_listeners(47002).size(), 1u);
}

TEST_P(ServerTest, BindFailureIsReportedWithTheListenersId) {
  ListenerGroup g;
  g.add(spec(47003, GetParam()));
  ListenerSpec s = spec(47003, GetParam());
  s.socket.reuseport = false;
  try {
    g.add(s);
    FAIL() << "second bind without SO_REUSEPORT succeeded";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("listener 1: bind 127.0.0.1:47003"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("EADDRINUSE"), std::string::npos) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Exec, ServerTest, ::testing::Values(Exec::Thread, Exec::Process),
                         [](const auto& info) { return std::string(to_string(info.param)); });

TEST(ServerProcess, KillAndTerminate) {
  RP_REQUIRE_ROOT();
  NetnsScope ns;
  ListenerGroup g;
  g.add(spec(47004, Exec::Process));
  int b = g.add(spec(47004, Exec::Process));
  int c = g.add(spec(47004, Exec::Process));
  pid_t pb = g.pid(b);
  EXPECT_NE(pb, getpid());
  g.kill(b);
  EXPECT_EQ(g.state(b), ListenerState::Killed);
  EXPECT_NE(kill(pb, 0), 0) << "listener process survived SIGKILL";
  g.terminate(c);
  EXPECT_EQ(g.state(c), ListenerState::Closed);
  EXPECT_EQ(tcp_listeners(47004).size(), 1u);
}

TEST(ServerThread, KillNeedsAProcess) {
  RP_REQUIRE_ROOT();
  NetnsScope ns;
  ListenerGroup g;
  int a = g.add(spec(47005, Exec::Thread));
  EXPECT_THROW(g.kill(a), std::invalid_argument);
}

}  // namespace
}  // namespace rp
