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

namespace rp::cases {
namespace {

// udp_connection_id_steering's shipped entries against records measured on the host
// (6.18, 2026-11-30): each passes as measured, and each fails with its key outcome turned
// into the other one (steered connections moving as the hash moves them; an empty slot
// dropping instead of hashing, or hashing instead of dropping; the control not moving).
json connid_steer_record() {
  return json::parse(R"({"a_answered":786,"a_flows":32,"a_flows_lost":0,"a_flows_moved":0,"a_flows_off_owner":0,
    "a_flows_on_gen1":32,"a_flows_on_gen2":0,"a_lost":0,"a_members_answering":2,"a_sent":786,"answered":1613,
    "b_answered":795,"b_flows":32,"b_flows_lost":0,"b_flows_moved":0,"b_flows_off_owner":0,"b_flows_on_gen1":0,
    "b_flows_on_gen2":32,"b_lost":0,"b_members_answering":2,"b_sent":795,"closed_slot_drop_answered":0,
    "closed_slot_drop_answered_by_gen2":0,"closed_slot_drop_lost":32,"closed_slot_drop_members_answering":0,
    "closed_slot_drop_netstat_no_ports":32,"closed_slot_drop_program_dropped":32,"closed_slot_drop_program_empty_slot":32,
    "closed_slot_drop_sent":32,"closed_slot_pass_answered":32,"closed_slot_pass_answered_by_gen2":32,
    "closed_slot_pass_lost":0,"closed_slot_pass_members_answering":2,"closed_slot_pass_netstat_no_ports":0,
    "closed_slot_pass_program_dropped":0,"closed_slot_pass_program_empty_slot":32,"closed_slot_pass_sent":32,
    "datagrams_sent":1581,"ledger_mismatches":[],"program_empty_slot":0,"program_ids_assigned":64,"program_no_id":0,
    "program_runs":1581,"served":1613})");
}

json connid_hash_record() {
  return json::parse(R"({"a_answered":775,"a_flows":32,"a_flows_lost":0,"a_flows_moved":27,"a_flows_on_gen1":16,
    "a_flows_on_gen2":0,"a_lost":0,"a_members_answering":4,"a_sent":775,"answered":2459,"b_answered":1684,"b_flows":32,
    "b_flows_lost":0,"b_flows_moved":20,"b_flows_on_gen1":3,"b_flows_on_gen2":17,"b_lost":0,"b_members_answering":4,
    "b_sent":1684,"ledger_mismatches":[],"served":2459})");
}

Verdict connid_verdict(const std::string& variant, const json& observed) {
  const Resolved r = expectations().resolve("udp_connection_id_steering", variant, *KernelVersion::parse("6.18.0"));
  if (!r.entry) throw std::runtime_error("no entry for " + variant);
  return Expectations::judge(*r.entry, observed).verdict;
}

TEST(UdpConnectionIdSteering, MeasuredRecordsPass) {
  EXPECT_EQ(connid_verdict("udp4_steer", connid_steer_record()), Verdict::Pass);
  EXPECT_EQ(connid_verdict("udp4_hash", connid_hash_record()), Verdict::Pass);
}

TEST(UdpConnectionIdSteering, WrongOutcomesFail) {
  auto with = [](json o, const json& set) {
    for (auto& [k, v] : set.items()) o[k] = v;
    return o;
  };
  const json s = connid_steer_record();
  // Steered connections moved at the join as the hash moves them (24 of 32).
  EXPECT_EQ(connid_verdict("udp6_steer", with(s, {{"a_flows_moved", 24}, {"a_flows_off_owner", 24}})), Verdict::Fail);
  // Generation 2's new connections answered by generation 1.
  EXPECT_EQ(connid_verdict("udp4_steer", with(s, {{"b_flows_on_gen2", 16}, {"b_flows_on_gen1", 16}})), Verdict::Fail);
  // One datagram lost across the reload.
  EXPECT_EQ(connid_verdict("udp4_steer", with(s, {{"b_lost", 1}, {"b_flows_lost", 1}})), Verdict::Fail);
  // The empty slot with SK_PASS dropped instead of falling back to the hash.
  EXPECT_EQ(connid_verdict("udp4_steer", with(s, {{"closed_slot_pass_answered", 0}, {"closed_slot_pass_lost", 32},
                                                   {"closed_slot_pass_answered_by_gen2", 0},
                                                   {"closed_slot_pass_members_answering", 0}})),
            Verdict::Fail);
  // SK_DROP on the empty slot hashed instead of dropping, and UdpNoPorts not counting it.
  EXPECT_EQ(connid_verdict("udp4_steer", with(s, {{"closed_slot_drop_answered", 32}, {"closed_slot_drop_lost", 0}})),
            Verdict::Fail);
  EXPECT_EQ(connid_verdict("udp4_steer", with(s, {{"closed_slot_drop_netstat_no_ports", 0}})), Verdict::Fail);
  // The program ran less often than datagrams arrived (some went round it).
  EXPECT_EQ(connid_verdict("udp4_steer", with(s, {{"program_runs", 1500}})), Verdict::Fail);
  // The control: the hash moved no flow when generation 2 joined.
  EXPECT_EQ(connid_verdict("udp6_hash", with(connid_hash_record(), {{"a_flows_moved", 0}})), Verdict::Fail);
  // The join lost a datagram.
  EXPECT_EQ(connid_verdict("udp4_hash", with(connid_hash_record(), {{"a_lost", 1}, {"a_flows_lost", 1}})),
            Verdict::Fail);
}

}  // namespace
}  // namespace rp::cases
