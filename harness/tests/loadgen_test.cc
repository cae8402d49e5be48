#include "harness/loadgen.h"

#include <gtest/gtest.h>

#include "harness/scope.h"
#include "harness/server.h"
#include "test_util.h"

namespace rp {
namespace {

ListenerSpec serve(Family f, uint16_t port, Exec exec = Exec::Thread) {
  ListenerSpec s;
  s.socket.addr = Endpoint::loopback(f, port);
  s.socket.backlog = 1024;
  s.exec = exec;
  return s;
}

LoadOptions closed(Family f, uint16_t port, uint64_t n) {
  LoadOptions o;
  o.target = Endpoint::loopback(f, port);
  o.threads = 2;
  o.concurrency = 16;
  o.max_attempts = n;
  o.connect_timeout = std::chrono::milliseconds(3000);
  o.response_timeout = std::chrono::milliseconds(3000);
  return o;
}

class LoadTest : public ::testing::TestWithParam<Family> {
 protected:
  void SetUp() override { RP_REQUIRE_ROOT(); ns_.emplace(); }
  std::optional<NetnsScope> ns_;
};

TEST_P(LoadTest, EveryAttemptServedAndReconciled) {
  ListenerGroup g;
  g.add(serve(GetParam(), 47100));
  g.add(serve(GetParam(), 47100, Exec::Process));
  LoadOptions o = closed(GetParam(), 47100, 3000);
  o.record_source_port = true;
  LoadGenerator lg(o);
  Ledger l = lg.run();
  g.stop_all();
  EXPECT_EQ(l.started(), 3000u);
  EXPECT_EQ(l.total(), 3000u);
  EXPECT_EQ(l.count(Outcome::Served), 3000u);
  EXPECT_EQ(l.served_by_listener().size(), 2u) << "the reuseport group spread nothing";
  auto off = reconcile(l, g.served_by_listener());
  EXPECT_TRUE(off.empty()) << off.front();
  for (const auto& a : l.attempts()) {
    EXPECT_NE(a.source_port, 0);
    EXPECT_GE(a.end_ns, a.connected_ns);
    EXPECT_GE(a.connected_ns, a.start_ns);
  }
}

TEST_P(LoadTest, NoListenerMeansRefused) {
  LoadGenerator lg(closed(GetParam(), 47101, 50));
  Ledger l = lg.run();
  EXPECT_EQ(l.count(Outcome::Refused), 50u);
  EXPECT_TRUE(reconcile(l, {}).empty());
}

TEST_P(LoadTest, ListenerThatNeverAcceptsMeansResponseTimeouts) {
  ListenerGroup g;
  ListenerSpec s = serve(GetParam(), 47102);
  s.policy = AcceptPolicy::Never;
  g.add(s);
  LoadOptions o = closed(GetParam(), 47102, 4);
  o.response_timeout = std::chrono::milliseconds(200);
  LoadGenerator lg(o);
  Ledger l = lg.run();
  EXPECT_EQ(l.count(Outcome::ResponseTimeout), 4u);
  EXPECT_TRUE(reconcile(l, g.served_by_listener()).empty());
}

// Closing a listener with children in its accept queue resets exactly those children.
TEST_P(LoadTest, ClosedListenerResetsItsQueuedChildren) {
  ListenerGroup g;
  ListenerSpec s = serve(GetParam(), 47103);
  s.policy = AcceptPolicy::Never;
  s.socket.backlog = 4;
  int id = g.add(s);
  LoadOptions o = closed(GetParam(), 47103, 3);
  o.threads = 1;
  o.concurrency = 3;
  LoadGenerator lg(o);
  lg.start();
  for (int i = 0; i < 2000 && lg.started() < 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  g.close(id);
  lg.wait();
  EXPECT_EQ(lg.ledger().count(Outcome::ResetAfterConnect), 3u);
}

TEST_P(LoadTest, OpenLoopStartsAtItsRate) {
  ListenerGroup g;
  g.add(serve(GetParam(), 47104));
  LoadOptions o = closed(GetParam(), 47104, 100);
  o.mode = LoadOptions::Mode::Open;
  o.rate = 1000;
  LoadGenerator lg(o);
  Ledger l = lg.run();
  EXPECT_EQ(l.count(Outcome::Served), 100u);
  uint64_t first = UINT64_MAX, last = 0;
  for (const auto& a : l.attempts()) {
    first = std::min(first, a.start_ns);
    last = std::max(last, a.start_ns);
  }
  // 100 starts at 1000/s span about 99 ms; a closed loop would do them in a few ms.
  EXPECT_GT(last - first, 80'000'000u);
}

TEST_P(LoadTest, BoundedInTime) {
  ListenerGroup g;
  g.add(serve(GetParam(), 47105));
  LoadOptions o = closed(GetParam(), 47105, 100'000'000);
  o.max_duration = std::chrono::milliseconds(200);
  LoadGenerator lg(o);
  Ledger l = lg.run();
  EXPECT_LT(l.total(), 100'000'000u);
  EXPECT_EQ(l.total(), l.count(Outcome::Served));
}

INSTANTIATE_TEST_SUITE_P(Families, LoadTest, ::testing::Values(Family::V4, Family::V6),
                         [](const auto& info) { return std::string(to_string(info.param)); });

TEST(LoadOptions, Rejected) {
  LoadOptions o;
  o.threads = 4;
  o.concurrency = 2;
  EXPECT_THROW(LoadGenerator{o}, std::invalid_argument);
  o.threads = 0;
  EXPECT_THROW(LoadGenerator{o}, std::invalid_argument);
  o.threads = 1;
  o.mode = LoadOptions::Mode::Open;
  o.rate = 0;
  EXPECT_THROW(LoadGenerator{o}, std::invalid_argument);
}

}  // namespace
}  // namespace rp
