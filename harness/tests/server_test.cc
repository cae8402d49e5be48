#include "harness/server.h"

#include <signal.h>

#include <gtest/gtest.h>

#include "harness/scope.h"
#include "harness/sockdiag.h"
#include "harness/wire.h"
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
  EXPECT_EQ(tcp_listening_ports(), std::set<uint16_t>{47001});  // the namespace is the test's own
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
  EXPECT_TRUE(tcp_listening_ports().empty());
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

// A blocking client that has sent its request; the reply is read later.
UniqueFd queued_client(uint16_t port) {
  UniqueFd c(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_storage ss;
  socklen_t len = Endpoint::loopback(Family::V4, port).to_sockaddr(ss);
  EXPECT_EQ(connect(c.get(), reinterpret_cast<sockaddr*>(&ss), len), 0);
  EXPECT_EQ(send(c.get(), wire::kRequest, sizeof wire::kRequest, 0), static_cast<ssize_t>(sizeof wire::kRequest));
  return c;
}

int32_t reply_from(int fd) {
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char buf[sizeof(wire::Reply)];
  if (recv(fd, buf, sizeof buf, MSG_WAITALL) != static_cast<ssize_t>(sizeof buf)) return -1;
  uint32_t id = 0;
  return wire::parse_reply(buf, id) ? static_cast<int32_t>(id) : -1;
}

// The hand-over changes nothing in the kernel: same socket, same group, same queue.
TEST_P(ServerTest, InheritedSocketIsHandedOverWithItsQueue) {
  ListenerGroup g;
  int old = g.add(spec(47006, GetParam(), AcceptPolicy::Never, 16));
  std::vector<UniqueFd> clients;
  for (int i = 0; i < 5; ++i) clients.push_back(queued_client(47006));
  ListenerSpec heir = spec(47006, GetParam());
  UniqueFd fd = g.listener_fd(old);
  heir.inherited_fd = fd.get();
  int nw = g.add(heir);
  fd.reset();
  EXPECT_EQ(g.inode(nw), g.inode(old));
  g.close(old);
  auto ls = tcp_listeners(47006);
  ASSERT_EQ(ls.size(), 1u);
  EXPECT_EQ(ls[0].inode, g.inode(nw));
  for (auto& c : clients) EXPECT_EQ(reply_from(c.get()), nw);
  EXPECT_EQ(g.served(nw), 5u);
  g.stop_all();
  EXPECT_TRUE(tcp_listeners(47006).empty());
}

// Four workers on one socket, woken one at a time: one stalled worker holds nothing up.
TEST_P(ServerTest, WorkersShareOneQueueWithEpollExclusive) {
  ListenerGroup g;
  ListenerSpec first = spec(47007, GetParam());
  first.epoll_exclusive = true;
  int w0 = g.add(first);
  UniqueFd fd = g.listener_fd(w0);
  ListenerSpec other = first;
  other.inherited_fd = fd.get();
  for (int i = 0; i < 3; ++i) g.add(other);
  fd.reset();
  EXPECT_EQ(tcp_listeners(47007).size(), 1u);
  g.stall(w0, std::chrono::milliseconds(3000));
  uint64_t served = 0;
  for (int i = 0; i < 20; ++i) {
    UniqueFd c = queued_client(47007);
    int32_t who = reply_from(c.get());
    EXPECT_NE(who, w0);
    served += who >= 0;
  }
  EXPECT_EQ(served, 20u);
  EXPECT_EQ(g.served(w0), 0u);
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
