#include "cases/lib/case.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <set>

#include "cases/lib/kernel.h"
#include "harness/isolate.h"

namespace rp::cases {

using nlohmann::json;

std::string current_case_name() {
  std::string suite = ::testing::UnitTest::GetInstance()->current_test_info()->test_suite_name();
  auto slash = suite.rfind('/');
  return slash == std::string::npos ? suite : suite.substr(slash + 1);
}

std::string current_variant() {
  std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
  auto slash = name.rfind('/');
  return slash == std::string::npos ? name : name.substr(slash + 1);
}

int timeout_scale() {
  if (const char* scale = getenv("RP_TIMEOUT_SCALE")) {
    const long k = std::strtol(scale, nullptr, 10);
    if (k >= 1 && k <= 100) return static_cast<int>(k);
  }
  return 1;
}

namespace {
Planner g_planner;
}  // namespace

void set_planner(Planner planner) { g_planner = std::move(planner); }

// A function-local set: the declarations run during static initialization, in any order.
static std::set<std::string>& alone() {
  static std::set<std::string> cases;
  return cases;
}
bool declare_runs_alone(const char* case_name) { return alone().insert(case_name).second; }
bool runs_alone(const std::string& case_name) { return alone().count(case_name) > 0; }

static void tell_gtest(const Record& r) {
  const std::string what = r.case_name + "/" + r.variant + ": " + to_string(r.verdict) +
                           (r.reason.empty() ? "" : ": " + r.reason) + "\n  observed " + r.observed.dump() +
                           "\n  expected " + r.expected.dump();
  switch (r.verdict) {
    case Verdict::Pass: break;
    case Verdict::Xfail: ::testing::Test::RecordProperty("xfail", r.reason); break;
    case Verdict::Skip: GTEST_SKIP() << r.reason;
    case Verdict::Fail:
    case Verdict::Xpass:
    case Verdict::Error: ADD_FAILURE() << what; break;
  }
}

Record run_case(const std::string& case_name, const std::string& variant, const Scenario& scenario,
                std::chrono::milliseconds timeout) {
  Record r;
  r.case_name = case_name;
  r.variant = variant;
  r.kernel = kernel_release();
  r.repeat = current_repeat();
  // Kept and dropped runs leave GoogleTest's result alone: the kept record's verdict counts
  // in the CLI's summary, and a dropped run is the CLI's error to report.
  if (g_planner && g_planner(case_name, variant, r.repeat) != Plan::Run) return r;
  const auto t0 = std::chrono::steady_clock::now();
  auto finish = [&] {
    r.duration_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    emit(r);
    tell_gtest(r);
    return r;
  };

  Resolved res;
  try {
    res = expectations().resolve(case_name, variant, running_kernel());
  } catch (const FeatureProbeError& e) {
    // A feature the entry needs could not be probed: the kernel was not shown to lack it,
    // so this is the tool's failure (ERROR), not a SKIP.
    r.verdict = Verdict::Error;
    r.reason = e.what();
    return finish();
  } catch (const std::exception& e) {
    r.verdict = Verdict::Error;
    r.reason = std::string("expectations: ") + e.what();
    return finish();
  }
  if (!res.entry) {
    r.verdict = Verdict::Error;
    r.reason = "no expectation for this variant on kernel " + r.kernel + " in " + expectations_origin();
    return finish();
  }
  r.source = res.entry->source;
  if (res.skip_reason) {
    r.verdict = Verdict::Skip;
    r.reason = *res.skip_reason;
    return finish();
  }

  timeout *= timeout_scale();
  IsolatedResult ir = run_isolated([&] { return scenario().dump(); }, {timeout, true});
  if (!ir.ok()) {
    r.verdict = Verdict::Error;
    r.reason = ir.describe();
    return finish();
  }
  try {
    r.observed = json::parse(ir.payload);
  } catch (const json::exception& e) {
    r.verdict = Verdict::Error;
    r.reason = std::string("unreadable scenario result: ") + e.what();
    return finish();
  }
  // The judge also fails a ledger that does not reconcile (observed "ledger_mismatches").
  Judgement j = Expectations::judge(*res.entry, r.observed);
  r.expected = j.expected;
  r.verdict = j.verdict;
  r.reason = j.reason;
  return finish();
}

}  // namespace rp::cases
