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
}  // namespace rp::cli::report
