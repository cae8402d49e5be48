// The report's exit status comes from its document: a run that ended in an error or whose
// ledger did not reconcile makes it 1, and the outcome names which run.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cli/report_runs.h"

namespace rp::cli::report {
namespace {

using nlohmann::json;

json run(const std::string& status, bool reconciled = true) {
  json r = {{"experiment", "grid"}, {"strategy", "a_close"}, {"sharing", nullptr}, {"repeat", 0}, {"status", status}};
  if (status == "ok") {
    r["reconciled"] = reconciled;
    r["mismatches"] = reconciled ? json::array() : json::array({"served by listener 3: 5 by the ledger, 4 by the servers"});
  }
  if (status != "ok") r["error"] = "why";
  return r;
}

TEST(ReportOutcome, ReconciledRunsAndUnavailableStrategiesExitZero) {
  const json doc = {{"runs", {run("ok"), run("ok"), run("unavailable")}}};
  const RunsOutcome o = runs_outcome(doc);
  EXPECT_TRUE(o.errors.empty());
  EXPECT_TRUE(o.unreconciled.empty());
  EXPECT_EQ(o.exit_status(), 0);
}

TEST(ReportOutcome, ARunThatDidNotReconcileExitsOneAndIsNamed) {
  const json doc = {{"runs", {run("ok"), run("ok", false)}}};
  const RunsOutcome o = runs_outcome(doc);
  EXPECT_EQ(o.exit_status(), 1);
  ASSERT_EQ(o.unreconciled.size(), 1u);
  EXPECT_EQ(o.unreconciled[0], "runs[1] grid a_close r0: served by listener 3: 5 by the ledger, 4 by the servers");
  EXPECT_TRUE(o.errors.empty());
}

TEST(ReportOutcome, ARunWithoutTheReconciledFlagIsNotTakenAsReconciled) {
  json r = run("ok");
  r.erase("reconciled");
  const RunsOutcome o = runs_outcome(json{{"runs", {r}}});
  EXPECT_EQ(o.exit_status(), 1);
  EXPECT_EQ(o.unreconciled.size(), 1u);
}

TEST(ReportOutcome, AnErrorExitsOneAndIsNamed) {
  const RunsOutcome o = runs_outcome(json{{"runs", {run("ok"), run("error")}}});
  EXPECT_EQ(o.exit_status(), 1);
  ASSERT_EQ(o.errors.size(), 1u);
  EXPECT_EQ(o.errors[0], "runs[1] grid a_close r0: why");
}

TEST(ReportOutcome, AnUnknownStatusIsAnError) {
  const RunsOutcome o = runs_outcome(json{{"runs", {run("maybe")}}});
  EXPECT_EQ(o.exit_status(), 1);
  EXPECT_EQ(o.errors.size(), 1u);
}

}  // namespace
// The focus point (closed 20, backlog 16, work 0) of strategies a, b and h gets the
// profile's focus repeats, every other point its plain repeats, and --repeats sets them all.
TEST(ReportPlan, FocusPointOfABAndHGetsTheFocusRepeats) {
  for (const char* name : {"quick", "guest", "full"}) {
    const Profile p = profile(name);
    ASSERT_GT(p.focus_repeats, p.repeats) << name;
    unsigned focus = 0, other = 0;
    for (const Experiment& e : plan_for(p, std::nullopt)) {
      if (e.kind != "grid") continue;
      if (is_focus(e)) {
        ++focus;
        EXPECT_EQ(e.repeats, p.focus_repeats) << name << " " << to_string(*e.strategy);
        EXPECT_TRUE(*e.strategy == Strategy::Close || *e.strategy == Strategy::Kill ||
                    *e.strategy == Strategy::ShutdownDrain);
      } else {
        ++other;
        EXPECT_EQ(e.repeats, p.repeats) << name << " " << to_string(*e.strategy);
      }
    }
    EXPECT_EQ(focus, 3u) << name;  // one point per strategy a, b, h
    EXPECT_GT(other, 0u) << name;
    for (const Experiment& e : plan_for(p, 2u)) EXPECT_EQ(e.repeats, 2u) << name;
  }
}

}  // namespace rp::cli::report
