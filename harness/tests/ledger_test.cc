#include "harness/ledger.h"

#include <cerrno>

#include <set>

#include <gtest/gtest.h>

namespace rp {
namespace {

TEST(Classify, ResetBeforeAndAfterConnect) {
  EXPECT_EQ(classify_error(ECONNRESET, Phase::Connecting), Outcome::ResetBeforeConnect);
  EXPECT_EQ(classify_error(ECONNRESET, Phase::Connected), Outcome::ResetAfterConnect);
  EXPECT_EQ(classify_error(EPIPE, Phase::Connected), Outcome::ResetAfterConnect);
}

TEST(Classify, RefusedTimeoutOther) {
  EXPECT_EQ(classify_error(ECONNREFUSED, Phase::Connecting), Outcome::Refused);
  EXPECT_EQ(classify_error(ETIMEDOUT, Phase::Connecting), Outcome::ConnectTimeout);
  EXPECT_EQ(classify_error(ETIMEDOUT, Phase::Connected), Outcome::ResponseTimeout);
  EXPECT_EQ(classify_error(EHOSTUNREACH, Phase::Connecting), Outcome::OtherError);
  EXPECT_EQ(classify_error(EPIPE, Phase::Connecting), Outcome::OtherError);
}

TEST(Outcome, NamesAreDistinct) {
  std::set<std::string> names;
  for (size_t i = 0; i < kOutcomeCount; ++i) names.insert(outcome_name(static_cast<Outcome>(i)));
  EXPECT_EQ(names.size(), kOutcomeCount);
  EXPECT_STREQ(outcome_name(Outcome::ResetAfterConnect), "reset_after_connect");
}

Attempt served_by(int32_t listener) {
  Attempt a;
  a.outcome = Outcome::Served;
  a.listener = listener;
  return a;
}

TEST(Ledger, CountsEachAttemptOnce) {
  Ledger l;
  l.note_started(4);
  l.add(served_by(0));
  l.add(served_by(1));
  l.add(served_by(1));
  Attempt r;
  r.outcome = Outcome::ResetAfterConnect;
  r.err = ECONNRESET;
  l.add(r);
  EXPECT_EQ(l.total(), 4u);
  EXPECT_EQ(l.count(Outcome::Served), 3u);
  EXPECT_EQ(l.failed(), 1u);
  EXPECT_EQ(l.served_by_listener().at(1), 2u);
  EXPECT_TRUE(reconcile(l, {{0, 1}, {1, 2}}).empty());
}

TEST(Ledger, ReconcileNamesTheCountThatIsOff) {
  Ledger l;
  l.note_started(3);
  l.add(served_by(0));
  l.add(served_by(2));
  auto off = reconcile(l, {{0, 1}, {2, 3}});
  ASSERT_EQ(off.size(), 2u);
  EXPECT_NE(off[0].find("attempts started 3 != attempts with an outcome 2"), std::string::npos) << off[0];
  EXPECT_NE(off[1].find("listener 2: served seen by clients 1 != served seen by the server 3"), std::string::npos)
      << off[1];
}

TEST(Ledger, ReconcileSeesAServerNobodySawServe) {
  Ledger l;
  l.note_started(1);
  l.add(served_by(0));
  auto off = reconcile(l, {{0, 1}, {5, 1}});
  ASSERT_EQ(off.size(), 1u);
  EXPECT_NE(off[0].find("listener 5"), std::string::npos);
}

TEST(Ledger, MergeKeepsCounts) {
  Ledger a, b;
  a.note_started(1);
  a.add(served_by(0));
  b.note_started(2);
  Attempt o;
  o.outcome = Outcome::OtherError;
  o.err = EHOSTUNREACH;
  b.add(o);
  b.add(served_by(0));
  a.merge(b);
  EXPECT_EQ(a.started(), 3u);
  EXPECT_EQ(a.total(), 3u);
  EXPECT_EQ(a.errnos().at(EHOSTUNREACH), 1u);
  EXPECT_EQ(a.served_by_listener().at(0), 2u);
}

}  // namespace
}  // namespace rp
