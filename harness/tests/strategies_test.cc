// Every deploy strategy runs under load and its ledger reconciles; the ones that cannot
// lose a connection on a kernel that has what they need (d: tcp_migrate_req, e: the
// migrate program, g: a hand-over that never changes the group) lose none. Loss counts of
// the lossy ones and all timings are the report's business, never asserted here.

#include "harness/strategies.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>

#include "harness/scope.h"
#include "test_util.h"

namespace rp {
namespace {

DeployPlan small_plan(Strategy s, uint16_t port) {
  DeployPlan p;
  p.strategy = s;
  p.port = port;
  p.workers = 2;
  p.backlog = 64;
  p.load.mode = LoadOptions::Mode::Closed;
  p.load.concurrency = 16;
  p.deploys = 4;
  p.warmup = std::chrono::milliseconds(100);
  p.interval = std::chrono::milliseconds(60);
  p.settle = std::chrono::milliseconds(150);
  return p;
}

bool lossless(Strategy s) {
  return s == Strategy::MigrateSysctl || s == Strategy::MigrateBpf || s == Strategy::HandOver;
}

// Only the kernel's refusal makes a strategy unavailable: our steering program failing
// to load (the test hook) where the kernel offers its type is an error, thrown.
TEST(StrategyAvailability, OurProgramFailingIsAnErrorNotUnavailable) {
  RP_REQUIRE_ROOT();
  for (Strategy s : {Strategy::MigrateBpf, Strategy::SteerDrain}) {
    if (std::string why = strategy_unavailable(s); !why.empty()) {
      std::printf("%s unavailable here: %s\n", to_string(s), why.c_str());
      continue;
    }
    setenv("RP_TEST_STEER_FAIL", "1", 1);
    try {
      const std::string why = strategy_unavailable(s);
      ADD_FAILURE() << to_string(s) << ": no error, answered '" << why << "'";
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find("our program is at fault"), std::string::npos) << e.what();
    }
    unsetenv("RP_TEST_STEER_FAIL");
  }
}

class StrategyTest : public ::testing::TestWithParam<Strategy> {
 protected:
  void SetUp() override { RP_REQUIRE_ROOT(); ns_.emplace(); }
  std::optional<NetnsScope> ns_;
};

TEST_P(StrategyTest, RunsUnderLoadAndReconciles) {
  const Strategy s = GetParam();
  if (std::string why = strategy_unavailable(s); !why.empty()) GTEST_SKIP() << why;
  const uint16_t port = static_cast<uint16_t>(47700 + static_cast<int>(s));
  unsigned callbacks = 0;
  DeployPlan plan = small_plan(s, port);
  plan.after_deploy = [&](unsigned d) { EXPECT_EQ(d, callbacks++); };
  const std::string before = sysctl_exists("net.ipv4.tcp_migrate_req") ? read_sysctl("net.ipv4.tcp_migrate_req") : "";
  DeployRun r = run_deploys(plan);

  EXPECT_EQ(callbacks, plan.deploys);
  ASSERT_EQ(r.deploys.size(), plan.deploys);
  EXPECT_TRUE(r.mismatches.empty()) << ::testing::PrintToString(r.mismatches);
  EXPECT_GT(r.ledger.count(Outcome::Served), 0u);
  EXPECT_EQ(r.ledger.started(), r.ledger.total());
  // Served by every generation: each deploy really moved the load.
  EXPECT_GE(r.served_by_servers.size(), static_cast<size_t>(plan.deploys));
  auto by = failures_by_deploy(r);
  uint64_t sum = 0;
  for (uint64_t n : by) sum += n;
  EXPECT_EQ(sum, r.ledger.failed());
  if (lossless(s)) {
    EXPECT_EQ(r.ledger.failed(), 0u) << to_string(s) << " lost connections";
  }
  if (s == Strategy::MigrateBpf) {
    EXPECT_EQ(r.program.at("migrate_errors"), 0u);
  }
  if (s == Strategy::SteerDrain) {
    EXPECT_GT(r.program.at("selected"), 0u);
  }
  if (!before.empty()) {
    EXPECT_EQ(read_sysctl("net.ipv4.tcp_migrate_req"), before);
  }
}

INSTANTIATE_TEST_SUITE_P(All, StrategyTest, ::testing::ValuesIn(all_strategies()),
                         [](const auto& info) { return std::string(to_string(info.param)); });

TEST(StrategyNames, RoundTrip) {
  for (Strategy s : all_strategies()) {
    EXPECT_EQ(strategy_from_string(to_string(s)), s);
    EXPECT_EQ(strategy_from_string(std::string(1, to_string(s)[0])), s);
  }
  EXPECT_EQ(strategy_from_string("handover"), Strategy::HandOver);
  EXPECT_FALSE(strategy_from_string("z"));
}

class WorkersTest : public ::testing::TestWithParam<Sharing> {
 protected:
  void SetUp() override { RP_REQUIRE_ROOT(); ns_.emplace(); }
  std::optional<NetnsScope> ns_;
};

TEST_P(WorkersTest, StalledWorkerRunReconciles) {
  WorkerPlan p;
  p.sharing = GetParam();
  p.port = static_cast<uint16_t>(47720 + static_cast<int>(GetParam()));
  p.load.concurrency = 8;
  p.duration = std::chrono::milliseconds(600);
  p.stall = std::chrono::milliseconds(100);
  p.stall_every = std::chrono::milliseconds(200);
  WorkerRun r = run_workers(p);
  EXPECT_TRUE(r.mismatches.empty()) << ::testing::PrintToString(r.mismatches);
  EXPECT_EQ(r.stalls, 2u);
  EXPECT_EQ(r.ledger.failed(), 0u);
}

INSTANTIATE_TEST_SUITE_P(All, WorkersTest,
                         ::testing::Values(Sharing::Reuseport, Sharing::Shared, Sharing::SharedEpollEx),
                         [](const auto& info) { return std::string(to_string(info.param)); });

}  // namespace
}  // namespace rp
