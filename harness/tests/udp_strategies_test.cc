// The UDP deploy strategies (harness/udp_strategies.h) under UDP flow load, each test in a
// network namespace of its own. Asserted: the ledger reconciles with the members' counts
// (every datagram one outcome), and what follows from the strategy by construction, never a
// timing: members are new sockets, so a flow answered after a deploy is answered by another
// member (moved); u_keep_open's unread members hold the closed loop's datagrams of their
// flows until they close, so those are lost. u_steer_id: every flow answered by a member
// of its own generation only (its program keeps it there), nothing lost; its control (the
// same loads, the hash instead of the program) moves flows at the join, so the bound can
// fail.
#include "harness/udp_strategies.h"

#include <gtest/gtest.h>

#include "harness/scope.h"
#include "test_util.h"

namespace rp {
namespace {

using std::chrono::milliseconds;

UdpDeployPlan plan(UdpStrategy s) {
  UdpDeployPlan p;
  p.strategy = s;
  p.port = 47501;
  p.members = 2;
  p.deploys = 3;
  p.warmup = milliseconds(100);
  p.interval = milliseconds(50);
  p.settle = milliseconds(100);
  p.keep_open = milliseconds(100);
  p.load.flows = 16;
  p.load.in_flight = 1;
  p.load.max_datagrams = 100'000'000;
  p.load.reply_timeout = milliseconds(200);
  p.load.late_window = milliseconds(500);
  return p;
}

uint64_t flows(const UdpFlowTally& t, FlowOutcome o) {
  auto it = t.flows.find(o);
  return it == t.flows.end() ? 0 : it->second;
}

class UdpStrategiesTest : public ::testing::TestWithParam<UdpStrategy> {
 protected:
  void SetUp() override { RP_REQUIRE_ROOT(); ns_.emplace(); }
  std::optional<NetnsScope> ns_;
};

TEST_P(UdpStrategiesTest, LedgerReconcilesAndFlowsMoveToTheNewGeneration) {
  const UdpDeployRun r = run_udp_deploys(plan(GetParam()));
  EXPECT_EQ(r.mismatches, std::vector<std::string>{});
  ASSERT_EQ(r.deploys.size(), 3u);
  const UdpFlowTally t = r.flows.tally();
  EXPECT_GT(t.sent, 0u);
  EXPECT_EQ(t.answered + t.late + t.lost, t.sent);
  // 4 generations of 2 members: ids 0..7, and the last generation answered.
  EXPECT_EQ(r.served_by_servers.size(), 8u);
  EXPECT_GT(r.served_by_servers.at(6) + r.served_by_servers.at(7), 0u);
  EXPECT_EQ(flows(t, FlowOutcome::Moved) + flows(t, FlowOutcome::MovedAndLost) + flows(t, FlowOutcome::Stayed) +
                flows(t, FlowOutcome::Lost),
            16u);
  EXPECT_GT(flows(t, FlowOutcome::Moved) + flows(t, FlowOutcome::MovedAndLost), 0u)
      << "no flow was answered by a member of another generation";
  if (GetParam() == UdpStrategy::KeepOpen) {
    EXPECT_GT(t.lost, 0u) << "the unread members' queues were freed with them";
  }
  if (GetParam() != UdpStrategy::Drain) {
    EXPECT_EQ(r.drained, 0u);
  }
}

// The strategies the group's hash steers.
INSTANTIATE_TEST_SUITE_P(Hash, UdpStrategiesTest,
                         ::testing::Values(UdpStrategy::Close, UdpStrategy::Drain, UdpStrategy::KeepOpen),
                         [](const auto& i) { return std::string(to_string(i.param)); });

class UdpSteerIdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RP_REQUIRE_ROOT();
    if (std::string why = udp_strategy_unavailable(UdpStrategy::SteerId); !why.empty()) GTEST_SKIP() << why;
    ns_.emplace();
  }
  // Flows answered by a member of a generation other than their own (generation of a flow:
  // its id / flows; of a member: its id / members).
  static uint64_t off_generation(const UdpDeployRun& r, const UdpDeployPlan& p) {
    uint64_t n = 0;
    for (const auto& f : r.flows.flows)
      for (const auto& [m, count] : f.by_member)
        if (static_cast<unsigned>(m) / p.members != f.flow / p.load.flows) {
          ++n;
          break;
        }
    return n;
  }
  std::optional<NetnsScope> ns_;
};

TEST_F(UdpSteerIdTest, EveryFlowStaysOnItsGenerationAndNothingIsLost) {
  const UdpDeployPlan p = plan(UdpStrategy::SteerId);
  const UdpDeployRun r = run_udp_deploys(p);
  EXPECT_EQ(r.mismatches, std::vector<std::string>{});
  ASSERT_EQ(r.deploys.size(), 3u);
  const UdpFlowTally t = r.flows.tally();
  // A load of 16 flows per generation, ids 0..63 in order.
  ASSERT_EQ(r.flows.flows.size(), 4u * 16);
  for (size_t i = 0; i < r.flows.flows.size(); ++i) EXPECT_EQ(r.flows.flows[i].flow, i);
  EXPECT_GT(t.sent, 0u);
  EXPECT_EQ(t.lost, 0u) << "the old members closed with something queued";
  EXPECT_EQ(flows(t, FlowOutcome::Moved) + flows(t, FlowOutcome::MovedAndLost), 0u);
  EXPECT_EQ(flows(t, FlowOutcome::Stayed), 64u);
  EXPECT_EQ(off_generation(r, p), 0u);
  // Every generation answered its own load.
  for (unsigned g = 0; g < 4; ++g)
    EXPECT_GT(r.served_by_servers.at(static_cast<int32_t>(2 * g)) + r.served_by_servers.at(static_cast<int32_t>(2 * g + 1)), 0u)
        << "generation " << g;
  // The program, the oracle: each id given a slot once, every datagram to its owner's
  // socket, never to an empty slot.
  ASSERT_TRUE(r.program.has_value());
  EXPECT_EQ(r.program->assigned, 64u);
  EXPECT_EQ(r.program->empty_slot, 0u);
  EXPECT_EQ(r.program->no_id, 0u);
  EXPECT_EQ(r.program->selected, r.program->runs);
  EXPECT_GE(r.program->runs, t.answered + t.late);
  EXPECT_EQ(r.drained, 0u);
}

TEST_F(UdpSteerIdTest, WithTheHashInsteadOfTheProgramFlowsMove) {
  UdpDeployPlan p = plan(UdpStrategy::SteerId);
  p.hash_control = true;
  const UdpDeployRun r = run_udp_deploys(p);
  EXPECT_EQ(r.mismatches, std::vector<std::string>{});
  const UdpFlowTally t = r.flows.tally();
  EXPECT_FALSE(r.program.has_value());
  // At a join the group doubles and a flow keeps its member only when its hash falls in the
  // lowest quarter (reciprocal_scale over 2, then 4 sockets): no move among 16 flows over 3
  // joins has probability 4^-48.
  EXPECT_GT(flows(t, FlowOutcome::Moved) + flows(t, FlowOutcome::MovedAndLost), 0u);
  EXPECT_GT(off_generation(r, p), 0u);
}

TEST(UdpStrategiesPlanTest, BadPlansAreRejectedByName) {
  UdpDeployPlan p = plan(UdpStrategy::Close);
  p.members = 0;
  EXPECT_THROW(run_udp_deploys(p), std::invalid_argument);
  p = plan(UdpStrategy::Close);
  p.port = 0;
  EXPECT_THROW(run_udp_deploys(p), std::invalid_argument);
  p = plan(UdpStrategy::Close);
  p.deploys = 0;
  EXPECT_THROW(run_udp_deploys(p), std::invalid_argument);
  // u_steer_id: two generations must fit the program's 16 slots, and every generation's
  // ids its 4096 connections.
  p = plan(UdpStrategy::SteerId);
  p.members = 9;
  EXPECT_THROW(run_udp_deploys(p), std::invalid_argument);
  p = plan(UdpStrategy::SteerId);
  p.load.flows = 1025;  // x 4 generations: 4100 ids
  EXPECT_THROW(run_udp_deploys(p), std::invalid_argument);
}

TEST(UdpStrategiesPlanTest, Names) {
  EXPECT_EQ(udp_strategy_from_string("steer_id"), UdpStrategy::SteerId);
  EXPECT_EQ(std::string(to_string(UdpStrategy::SteerId)), "u_steer_id");
  EXPECT_EQ(all_udp_strategies().size(), 4u);
  EXPECT_EQ(udp_strategy_unavailable(UdpStrategy::Close), "");
}

}  // namespace
}  // namespace rp
