#include "cases/lib/expectations.h"

#include <gtest/gtest.h>

namespace rp::cases {
namespace {

using nlohmann::json;

json one_case(json entry) { return {{"schema", 1}, {"cases", {{"c", json::array({entry})}}}}; }
json entry(json expect) { return {{"variants", "*"}, {"expect", expect}, {"source", "socket(7)"}}; }

std::string load_error(const json& j) {
  try {
    Expectations::parse(j, "exp.json");
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(KernelVersion, Parses) {
  EXPECT_EQ(KernelVersion::parse("6.18.44-fc-v669")->str(), "6.18.44");
  EXPECT_EQ(KernelVersion::parse("5.10.0-43-cloud-amd64")->str(), "5.10.0");
  EXPECT_EQ(KernelVersion::parse("7.2")->str(), "7.2.0");
  EXPECT_FALSE(KernelVersion::parse("linux"));
}

TEST(KernelVersion, DebianStatesTheStableSublevelInUnameV) {
  EXPECT_EQ(upstream_version("6.1.0-50-cloud-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.176-1 (2025-10-01)").str(),
            "6.1.176");
  EXPECT_EQ(upstream_version("5.10.0-43-cloud-amd64", "#1 SMP Debian 5.10.251-5 (2025-09-10)").str(), "5.10.251");
  EXPECT_EQ(upstream_version("6.18.44-fc-v669", "#1 SMP PREEMPT_DYNAMIC Mon Nov 3 2026").str(), "6.18.44");
  // A uname -v naming another series is not trusted.
  EXPECT_EQ(upstream_version("6.12.0-1-amd64", "#1 SMP Debian 6.1.10-1").str(), "6.12.0");
}

TEST(VersionRange, Bounds) {
  auto r = VersionRange::parse(">=5.14,<6.13");
  EXPECT_FALSE(r.contains(*KernelVersion::parse("5.10.0")));
  EXPECT_TRUE(r.contains(*KernelVersion::parse("5.14.0")));
  EXPECT_TRUE(r.contains(*KernelVersion::parse("6.12.9")));
  EXPECT_FALSE(r.contains(*KernelVersion::parse("6.13.0")));
  EXPECT_TRUE(VersionRange::parse("").contains(*KernelVersion::parse("3.9.0")));
}

TEST(VersionRange, RejectsMalformed) {
  EXPECT_THROW(VersionRange::parse("5.14"), std::invalid_argument);
  EXPECT_THROW(VersionRange::parse(">=five"), std::invalid_argument);
  EXPECT_THROW(VersionRange::parse(">=6.1,<5.10"), std::invalid_argument);
  EXPECT_THROW(VersionRange::parse("=>6.1"), std::invalid_argument);
}

TEST(Loader, RejectsUnknownKeysNamingTheEntry) {
  json e = entry({{"x", 1}});
  e["kernal"] = ">=5.14";
  EXPECT_EQ(load_error(one_case(e)), "exp.json: c[0]: unknown key 'kernal'");
  json top = one_case(entry({{"x", 1}}));
  top["extra"] = 1;
  EXPECT_EQ(load_error(top), "exp.json: unknown key 'extra'");
}

TEST(Loader, RejectsMissingSourceUnknownFeatureBadRange) {
  json e = entry({{"x", 1}});
  e.erase("source");
  EXPECT_NE(load_error(one_case(e)).find("'source'"), std::string::npos);
  e = entry({{"x", 1}});
  e["requires"] = {"time_travel"};
  EXPECT_NE(load_error(one_case(e)).find("unknown feature \"time_travel\""), std::string::npos);
  e = entry({{"x", 1}});
  e["kernel"] = "6.1";
  EXPECT_NE(load_error(one_case(e)).find("c[0]: kernel range '6.1'"), std::string::npos);
  e = entry(json::object());
  EXPECT_NE(load_error(one_case(e)).find("'expect' must be a non-empty object"), std::string::npos);
}

TEST(Resolve, FirstMatchingEntryByVariantAndKernel) {
  json j = {{"schema", 1},
            {"cases",
             {{"c",
               {{{"variants", "*_a"}, {"kernel", "<6.1"}, {"expect", {{"x", 1}}}, {"source", "old"}},
                {{"variants", "*_a"}, {"expect", {{"x", 2}}}, {"source", "new"}},
                {{"variants", "*_b"}, {"skip", "not here"}, {"source", "s"}}}}}}};
  auto ex = Expectations::parse(j, "t");
  EXPECT_EQ(ex.resolve("c", "v_a", *KernelVersion::parse("5.10")).entry->source, "old");
  EXPECT_EQ(ex.resolve("c", "v_a", *KernelVersion::parse("6.18")).entry->source, "new");
  auto skip = ex.resolve("c", "v_b", *KernelVersion::parse("6.18"));
  ASSERT_TRUE(skip.skip_reason);
  EXPECT_EQ(*skip.skip_reason, "not here");
  EXPECT_EQ(ex.resolve("c", "v_c", *KernelVersion::parse("6.18")).entry, nullptr);
  EXPECT_EQ(ex.resolve("nope", "v_a", *KernelVersion::parse("6.18")).entry, nullptr);
}

TEST(Judge, ReferencesLiteralsAndVerdicts) {
  Expectation e;
  e.expect = {{"resets", "$queued"}, {"lost", 0}};
  auto j = Expectations::judge(e, {{"resets", 9}, {"queued", 9}, {"lost", 0}});
  EXPECT_EQ(j.verdict, Verdict::Pass);
  EXPECT_EQ(j.expected["resets"], 9);
  j = Expectations::judge(e, {{"resets", 8}, {"queued", 9}, {"lost", 0}});
  EXPECT_EQ(j.verdict, Verdict::Fail);
  EXPECT_EQ(j.reason, "resets: expected 9 ($queued), observed 8");
}

TEST(Judge, XfailOnlyForTheKnownOutcome) {
  Expectation e;
  e.expect = {{"woke", true}, {"migrated", "$children"}};
  e.xfail = KnownDifference{"no wake-up before the fix", {{"woke", false}}, "a committed run"};
  const json known = {{"woke", false}, {"migrated", 8}, {"children", 8}};
  EXPECT_EQ(Expectations::judge(e, known).verdict, Verdict::Xfail);
  EXPECT_EQ(Expectations::judge(e, known).reason, "no wake-up before the fix [documented: woke: expected true, observed false]");
  EXPECT_EQ(Expectations::judge(e, {{"woke", true}, {"migrated", 8}, {"children", 8}}).verdict, Verdict::Xpass);
  // Another difference than the known one (the children were lost as well) is a FAIL.
  auto j = Expectations::judge(e, {{"woke", false}, {"migrated", 0}, {"children", 8}});
  EXPECT_EQ(j.verdict, Verdict::Fail);
  EXPECT_NE(j.reason.find("nor the known difference [migrated: expected 8 ($children), observed 0]"), std::string::npos);
}

TEST(Judge, MissingObservationIsAnError) {
  Expectation e;
  e.expect = {{"resets", "$queued"}};
  EXPECT_EQ(Expectations::judge(e, {{"resets", 1}}).verdict, Verdict::Error);
  EXPECT_EQ(Expectations::judge(e, {{"queued", 1}}).verdict, Verdict::Error);
}

// A required count that is null never leaves PASS: the kernel not offering it is SKIP, the
// tool failing to read it is ERROR, a case count with no reason is ERROR.
TEST(Judge, NullRequiredCountIsSkipOrErrorNeverPass) {
  Expectation e;
  e.expect = {{"resets", 3}, {"kernel_orphans", "$resets"}};
  json o = {{"resets", 3}, {"kernel_orphans", nullptr}, {"kernel_not_observable", {{"kernel_orphans", "no BTF"}}}};
  auto j = Expectations::judge(e, o);
  EXPECT_EQ(j.verdict, Verdict::Skip);
  EXPECT_EQ(j.reason, "not observable on this kernel: kernel_orphans: no BTF");
  o = {{"resets", 3}, {"kernel_orphans", nullptr}, {"kernel_errors", {{"kernel_orphans", "probe did not load: EPERM"}}}};
  j = Expectations::judge(e, o);
  EXPECT_EQ(j.verdict, Verdict::Error);
  EXPECT_EQ(j.reason, "required counts not read: kernel_orphans: probe did not load: EPERM");
  j = Expectations::judge(e, {{"resets", 3}, {"kernel_orphans", nullptr}});
  EXPECT_EQ(j.verdict, Verdict::Error);
  // A null behind a "$ref" is required as much as a key.
  e.expect = {{"resets", "$kernel_orphans"}};
  o = {{"resets", 3}, {"kernel_orphans", nullptr}, {"kernel_not_observable", {{"kernel_orphans", "no BTF"}}}};
  EXPECT_EQ(Expectations::judge(e, o).verdict, Verdict::Skip);
}

TEST(Judge, WhatCanBeCheckedStillFailsBesideAnUnobservableCount) {
  Expectation e;
  e.expect = {{"resets", 3}, {"kernel_orphans", 3}};
  json o = {{"resets", 0}, {"kernel_orphans", nullptr}, {"kernel_not_observable", {{"kernel_orphans", "no BTF"}}}};
  EXPECT_EQ(Expectations::judge(e, o).verdict, Verdict::Fail);
}

TEST(Judge, OptionalCountMayBeNullAndIsSaid) {
  Expectation e;
  e.expect = {{"resets", 3}, {"migrations", 0}};
  e.optional = {{"migrations", "the orphan count states it"}};
  json o = {{"resets", 3}, {"migrations", nullptr}, {"kernel_errors", {{"migrations", "fexit did not load"}}}};
  auto j = Expectations::judge(e, o);
  EXPECT_EQ(j.verdict, Verdict::Pass);
  EXPECT_EQ(j.reason, "not observed: migrations (optional: the orphan count states it)");
  EXPECT_EQ(Expectations::judge(e, {{"resets", 3}, {"migrations", 2}}).verdict, Verdict::Fail);
}

TEST(Judge, EveryCountIsJudgedOrInformational) {
  Expectation e;
  e.expect = {{"resets", "$queued"}};
  json o = {{"resets", 3}, {"queued", 3}, {"kernel_other", 700}, {"kernel_sources", json::object()}};
  auto j = Expectations::judge(e, o);
  EXPECT_EQ(j.verdict, Verdict::Error);
  EXPECT_EQ(j.reason, "counts neither judged nor declared informational by the expectation: kernel_other");
  e.informational = {{"kernel_*", "unrelated RSTs"}};
  EXPECT_EQ(Expectations::judge(e, o).verdict, Verdict::Pass);
}

TEST(Judge, LedgerThatDoesNotReconcileFails) {
  Expectation e;
  e.expect = {{"lost", 0}};
  auto j = Expectations::judge(e, {{"lost", 0}, {"ledger_mismatches", {"listener 1: clients 3, server 2"}}});
  EXPECT_EQ(j.verdict, Verdict::Fail);
  EXPECT_EQ(j.reason, "ledger does not reconcile: listener 1: clients 3, server 2");
}

TEST(Loader, OptionalInformationalAndXfailAreChecked) {
  json e = entry({{"x", 1}});
  e["optional"] = {{"y", "why"}};
  EXPECT_NE(load_error(one_case(e)).find("optional 'y' is not a key of expect"), std::string::npos);
  e = entry({{"x", 1}});
  e["optional"] = {{"x", ""}};
  EXPECT_NE(load_error(one_case(e)).find("optional.x: say why"), std::string::npos);
  e = entry({{"x", 1}});
  e["informational"] = {{"x*", "why"}};
  EXPECT_NE(load_error(one_case(e)).find("informational 'x*' names 'x', which expect judges"), std::string::npos);
  e = entry({{"x", 1}});
  e["xfail"] = "known bug";
  EXPECT_NE(load_error(one_case(e)).find("'xfail' must be {reason, expect, evidence}"), std::string::npos);
  e["xfail"] = {{"reason", "r"}, {"evidence", "e"}};
  EXPECT_NE(load_error(one_case(e)).find("xfail needs 'expect'"), std::string::npos);
  e["xfail"] = {{"reason", "r"}, {"expect", {{"x", 2}}}};
  EXPECT_NE(load_error(one_case(e)).find("xfail needs 'reason' and 'evidence'"), std::string::npos);
  e["xfail"] = {{"reason", "r"}, {"evidence", "e"}, {"expect", {{"z", 2}}}};
  EXPECT_NE(load_error(one_case(e)).find("xfail.expect.z overrides no key of expect"), std::string::npos);
  e["xfail"] = {{"reason", "r"}, {"evidence", "e"}, {"expect", {{"x", 2}}}};
  EXPECT_EQ(load_error(one_case(e)), "");
}

TEST(BuiltIn, TheShippedExpectationsLoad) {
  EXPECT_NO_THROW(expectations());
  EXPECT_FALSE(expectations().case_names().empty());
}

TEST(Verdicts, WhichFail) {
  EXPECT_TRUE(is_failure(Verdict::Fail));
  EXPECT_TRUE(is_failure(Verdict::Xpass));
  EXPECT_TRUE(is_failure(Verdict::Error));
  EXPECT_FALSE(is_failure(Verdict::Xfail));
  EXPECT_FALSE(is_failure(Verdict::Skip));
}

}  // namespace
}  // namespace rp::cases

namespace rp::cases {
namespace {

TEST(Judge, Bounds) {
  Expectation e;
  e.expect = {{"resets", {{"min", "$queued"}, {"max", "$explained"}}}, {"other", {{"max", 0}}}};
  EXPECT_EQ(Expectations::judge(e, {{"resets", 9}, {"queued", 9}, {"explained", 10}, {"other", 0}}).verdict,
            Verdict::Pass);
  auto j = Expectations::judge(e, {{"resets", 11}, {"queued", 9}, {"explained", 10}, {"other", 0}});
  EXPECT_EQ(j.verdict, Verdict::Fail);
  EXPECT_EQ(j.reason, "resets: expected <= 10 ($explained), observed 11");
  j = Expectations::judge(e, {{"resets", 8}, {"queued", 9}, {"explained", 10}, {"other", 1}});
  EXPECT_EQ(j.reason, "other: expected <= 0, observed 1; resets: expected >= 9 ($queued), observed 8");  // keys in order
  // A null bound is a required count like any other: never PASS by dropping the check.
  j = Expectations::judge(e, {{"resets", 9}, {"queued", 9}, {"explained", nullptr}, {"other", 0}});
  EXPECT_EQ(j.verdict, Verdict::Error);
  j = Expectations::judge(e, {{"resets", 9},
                              {"queued", 9},
                              {"explained", nullptr},
                              {"other", 0},
                              {"kernel_not_observable", {{"explained", "no probe"}}}});
  EXPECT_EQ(j.verdict, Verdict::Skip);
  EXPECT_EQ(j.reason, "not observable on this kernel: explained: no probe");
}

TEST(Loader, RejectsUnknownBounds) {
  json j = {{"schema", 1},
            {"cases", {{"c", {{{"expect", {{"x", {{"below", 3}}}}}, {"source", "s"}}}}}}};
  EXPECT_EQ(load_error(j), "exp.json: c[0]: expect.x: unknown bound 'below' (min, max)");
}

}  // namespace
}  // namespace rp::cases
