#include "harness/fault.h"

#include <gtest/gtest.h>

#include <thread>

#include "harness/scope.h"
#include "test_util.h"

namespace rp {
namespace {

ListenerSpec serve(uint16_t port, Exec exec = Exec::Thread) {
  ListenerSpec s;
  s.socket.addr = Endpoint::loopback(Family::V4, port);
  s.socket.backlog = 1024;
  s.exec = exec;
  return s;
}

LoadOptions load_at(uint16_t port, uint64_t n) {
  LoadOptions o;
  o.target = Endpoint::loopback(Family::V4, port);
  o.concurrency = 8;
  o.max_attempts = n;
  return o;
}

class FaultTest : public ::testing::Test {
 protected:
  void SetUp() override { RP_REQUIRE_ROOT(); ns_.emplace(); }
  std::optional<NetnsScope> ns_;
};

TEST_F(FaultTest, CloseAfterKCompletedAttempts) {
  ListenerGroup g;
  g.add(serve(47400));
  int b = g.add(serve(47400));
  LoadGenerator lg(load_at(47400, 4000));
  lg.start();
  auto ev = inject(g, lg, {{FaultKind::Close, Trigger::after_completed(1000), {b}}});
  lg.wait();
  g.stop_all();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].listener, b);
  EXPECT_GE(ev[0].completed_before, 1000u);
  EXPECT_TRUE(ev[0].queued_before.has_value());
  EXPECT_EQ(g.state(b), ListenerState::Closed);
  EXPECT_TRUE(reconcile(lg.ledger(), g.served_by_listener()).empty());
  // What the closed listener had accepted it served: every failure is a reset.
  const Ledger& l = lg.ledger();
  EXPECT_EQ(l.failed(), l.count(Outcome::ResetAfterConnect) + l.count(Outcome::ResetBeforeConnect));
}

TEST_F(FaultTest, KillWhenQueueFull) {
  ListenerGroup g;
  g.add(serve(47401));
  ListenerSpec victim = serve(47401, Exec::Process);
  victim.policy = AcceptPolicy::Never;
  victim.socket.backlog = 4;
  int v = g.add(victim);
  LoadOptions o = load_at(47401, 500);
  o.concurrency = 32;
  LoadGenerator lg(o);
  lg.start();
  auto ev = inject(g, lg, {{FaultKind::Kill, Trigger::when_queue_full(), {v}}});
  lg.wait();
  ASSERT_EQ(ev.size(), 1u);
  ASSERT_TRUE(ev[0].queued_before);
  EXPECT_EQ(*ev[0].queued_before, 5u);
  EXPECT_EQ(g.state(v), ListenerState::Killed);
  EXPECT_EQ(lg.ledger().count(Outcome::ResetAfterConnect), 5u);
}

TEST_F(FaultTest, TriggerThatNeverFiresIsAnError) {
  ListenerGroup g;
  int a = g.add(serve(47402));
  LoadGenerator lg(load_at(47402, 10));
  lg.start();
  try {
    inject(g, lg, {{FaultKind::Close, Trigger::when_queue_full(), {a}}}, std::chrono::milliseconds(300));
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("when the accept queue is full"), std::string::npos) << e.what();
  }
  lg.wait();
}

// SIGTERM: the listener stops taking new work and serves what is already queued.
TEST_F(FaultTest, TerminateDrainsTheQueue) {
  ListenerGroup g;
  int a = g.add(serve(47403, Exec::Process));
  g.stall(a, std::chrono::milliseconds(5000));
  LoadOptions o = load_at(47403, 5);
  o.concurrency = 5;
  LoadGenerator lg(o);
  lg.start();
  auto ev = inject(g, lg, {{FaultKind::Terminate, Trigger::at_time(std::chrono::milliseconds(200)), {a}}});
  lg.wait();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].queued_before.value_or(0), 5u);
  EXPECT_EQ(lg.ledger().count(Outcome::Served), 5u);
  EXPECT_EQ(g.served(a), 5u);
}

// The hot deploy of the blog posts with tcp_migrate_req=1: nothing is lost.
TEST_F(FaultTest, HotDeployWithMigrationLosesNothing) {
  if (!sysctl_exists("net.ipv4.tcp_migrate_req")) GTEST_SKIP() << "net.ipv4.tcp_migrate_req absent";
  SysctlScope migrate("net.ipv4.tcp_migrate_req", "1");
  ListenerGroup g;
  std::vector<int> old = {g.add(serve(47404, Exec::Process)), g.add(serve(47404, Exec::Process))};
  LoadOptions o = load_at(47404, 6000);
  o.threads = 2;
  o.concurrency = 64;
  LoadGenerator lg(o);
  lg.start();
  Fault deploy{FaultKind::HotDeploy, Trigger::after_completed(1500), old};
  deploy.new_generation = {serve(47404, Exec::Process), serve(47404, Exec::Process)};
  deploy.overlap = std::chrono::milliseconds(20);
  auto ev = inject(g, lg, {deploy});
  lg.wait();
  g.stop_all();
  EXPECT_EQ(ev.size(), 4u);
  EXPECT_EQ(lg.ledger().count(Outcome::Served), 6000u);
  EXPECT_TRUE(reconcile(lg.ledger(), g.served_by_listener()).empty());
  EXPECT_GT(g.served(2) + g.served(3), 0u) << "the new generation served nothing";
}

}  // namespace
}  // namespace rp
