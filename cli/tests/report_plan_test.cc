// The report's plan: the UDP strategies are experiments of kind "udp_grid" in every profile,
// at the profile's points, with its repeats (or --repeats), and their records' parameters say
// the load they ran under.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>

#include "cli/report_runs.h"

namespace rp::cli::report {
namespace {

std::vector<Experiment> udp_of(const std::vector<Experiment>& plan) {
  std::vector<Experiment> out;
  std::copy_if(plan.begin(), plan.end(), std::back_inserter(out), [](const Experiment& e) { return e.kind == "udp_grid"; });
  return out;
}

TEST(ReportPlan, QuickAndGuestRunEachUdpStrategyAtOneAndFourInFlight) {
  for (const char* name : {"quick", "guest"}) {
    const auto udp = udp_of(plan_for(profile(name), std::nullopt));
    ASSERT_EQ(udp.size(), 8u) << name;
    std::set<std::pair<std::string, unsigned>> points;
    for (const auto& e : udp) {
      ASSERT_TRUE(e.udp_strategy.has_value());
      EXPECT_FALSE(e.strategy.has_value()) << "a UDP run is not also a TCP strategy";
      EXPECT_EQ(e.mode, LoadOptions::Mode::Closed);
      EXPECT_EQ(e.flows, 64u);
      EXPECT_EQ(e.repeats, 3u);
      points.insert({to_string(*e.udp_strategy), e.concurrency});
    }
    const std::set<std::pair<std::string, unsigned>> want = {{"u_close", 1},     {"u_close", 4},    {"u_drain", 1},
                                                             {"u_drain", 4},     {"u_keep_open", 1}, {"u_keep_open", 4},
                                                             {"u_steer_id", 1}, {"u_steer_id", 4}};
    EXPECT_EQ(points, want) << name;
  }
}

TEST(ReportPlan, FullAddsOpenLoopRatesAndMoreRepeats) {
  const auto udp = udp_of(plan_for(profile("full"), std::nullopt));
  EXPECT_EQ(udp.size(), 4u * (4 + 2));
  const auto open = std::count_if(udp.begin(), udp.end(), [](const Experiment& e) { return e.mode == LoadOptions::Mode::Open; });
  EXPECT_EQ(open, 4 * 2);
  // u_steer_id at every UDP point of the profile, as the other three.
  std::map<std::string, int> per_strategy;
  for (const auto& e : udp) ++per_strategy[to_string(*e.udp_strategy)];
  EXPECT_EQ(per_strategy, (std::map<std::string, int>{{"u_close", 6}, {"u_drain", 6}, {"u_keep_open", 6}, {"u_steer_id", 6}}));
  for (const auto& e : udp) EXPECT_EQ(e.repeats, 10u);
}

TEST(ReportPlan, RepeatsOverridesTheUdpRepeats) {
  for (const auto& e : udp_of(plan_for(profile("full"), 1u))) EXPECT_EQ(e.repeats, 1u);
}

TEST(ReportPlan, UdpParamsNameTheLoadAndTheStrategyTiming) {
  const auto udp = udp_of(plan_for(profile("full"), std::nullopt));
  for (const auto& e : udp) {
    const auto p = params_json(e, 0);
    EXPECT_EQ(p["flows"], 64);
    EXPECT_EQ(p["deploys"], 10);
    if (e.mode == LoadOptions::Mode::Closed) {
      EXPECT_EQ(p["in_flight"], e.concurrency);
      EXPECT_TRUE(p["rate"].is_null());
    } else {
      EXPECT_TRUE(p["in_flight"].is_null());
      EXPECT_EQ(p["rate"], e.udp_rate);
    }
    // Only u_keep_open keeps its old members open unread.
    EXPECT_EQ(p["keep_open_ms"].is_null(), *e.udp_strategy != UdpStrategy::KeepOpen);
    // Only u_steer_id's flows live one generation (a load per generation).
    EXPECT_EQ(p["flow_lifetime"], *e.udp_strategy == UdpStrategy::SteerId ? "generation" : "run");
  }
  EXPECT_EQ(describe(udp.front(), 0), "udp_grid u_close 64 flows closed:1 per flow");
}

TEST(ReportPlan, UdpStrategyNames) {
  EXPECT_EQ(udp_strategy_from_string("drain"), UdpStrategy::Drain);
  EXPECT_EQ(udp_strategy_from_string("u_keep_open"), UdpStrategy::KeepOpen);
  EXPECT_EQ(udp_strategy_from_string("steer_id"), UdpStrategy::SteerId);
  EXPECT_FALSE(udp_strategy_from_string("a_close").has_value());
}

TEST(ReportPlan, ExperimentsKeepTheirKindsOnlyInPlanOrder) {
  const auto plan = plan_for(profile("guest"), std::nullopt);
  const auto udp = only_kinds(plan, {"udp_grid"});
  EXPECT_EQ(udp.size(), udp_of(plan).size());
  const auto two = only_kinds(plan, {"seed_busy", "udp_grid"});
  size_t want = 0;
  for (const auto& e : plan) want += e.kind == "seed_busy" || e.kind == "udp_grid";
  ASSERT_EQ(two.size(), want);
  // Plan order, not the order asked for: udp_grid comes before seed_busy in the plan.
  EXPECT_EQ(two.front().kind, "udp_grid");
  EXPECT_EQ(two.back().kind, "seed_busy");
  // Every kind the plan holds is a known one, and every known one has experiments in full.
  const auto full = plan_for(profile("full"), std::nullopt);
  for (const auto& k : experiment_kinds()) EXPECT_FALSE(only_kinds(full, {k}).empty()) << k;
  for (const auto& e : full)
    EXPECT_NE(std::find(experiment_kinds().begin(), experiment_kinds().end(), e.kind), experiment_kinds().end());
}

TEST(ReportPlan, AnUnknownExperimentIsRefusedWithTheKnownOnes) {
  try {
    only_kinds(plan_for(profile("quick"), std::nullopt), {"udp_grid", "udp_gird"});
    FAIL() << "udp_gird was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("unknown experiment 'udp_gird' (known: grid, udp_grid"), std::string::npos)
        << e.what();
  }
}

TEST(ReportPlan, APartOfThePlanHasADataFileOfItsOwn) {
  EXPECT_EQ(data_file_name("6.12.117+deb13-cloud-amd64", {}), "6.12.117+deb13-cloud-amd64.json");
  EXPECT_EQ(data_file_name("6.12.117+deb13-cloud-amd64", {"udp_grid"}), "6.12.117+deb13-cloud-amd64.udp_grid.json");
  EXPECT_EQ(data_file_name("6.1.0-50-cloud-amd64", {"udp_grid", "seed"}), "6.1.0-50-cloud-amd64.udp_grid+seed.json");
}

}  // namespace
}  // namespace rp::cli::report
