// The UDP deploy strategies (harness/udp_strategies.h) under UDP flow load, each test in a
// network namespace of its own. Asserted: the ledger reconciles with the members' counts
// (every datagram one outcome), and what follows from the strategy by construction, never a
// timing: members are new sockets, so a flow answered after a deploy is answered by another
// member (moved); u_keep_open's unread members hold the closed loop's datagrams of their
// flows until they close, so those are lost.
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

INSTANTIATE_TEST_SUITE_P(All, UdpStrategiesTest, ::testing::ValuesIn(all_udp_strategies()),
                         [](const auto& i) { return std::string(to_string(i.param)); });

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
}

}  // namespace
}  // namespace rp
