// The attribution of client failures to causes: the causes and unattributed always add up
// to the failures, a cause never takes more than its kernel count, and a wrong outcome
// (a failure the kernel has no evidence for) shows as unattributed, so the suite's
// "unattributed is 0" bound can fail.

#include <gtest/gtest.h>

#include "probes/attribution.h"

namespace rp::probes {
namespace {

CountValues rst_rows(std::uint64_t orphans, std::uint64_t owner = 0, std::uint64_t no_socket = 0) {
  return {{"kernel_orphan_resets", orphans},       {"kernel_rst_listener_ack", 0u}, {"kernel_rst_forgotten_child", 0u},
          {"kernel_rst_owner_abort", owner},       {"kernel_rst_after_close", 0u},
          {"kernel_rst_no_socket", no_socket},     {"kernel_rst_timewait", 0u},
          {"kernel_rst_unnamed", 0u},              {"kernel_listener_fin_resets", 3u},
          {"kernel_resets_received", orphans + owner + 3}, {"kernel_resets_received_closed", 3u},
          {"netstat_listen_drops", 5u},            {"kernel_listen_overflow_drops", 1u}};
}

std::uint64_t sum(const Attribution& a) {
  std::uint64_t n = a.unattributed;
  for (const auto& [k, v] : a.causes) n += v;
  return n;
}

TEST(Attribution, every_failure_has_one_cause_when_the_kernel_counted_it) {
  const auto a = attribute(rst_rows(9, 2, 1), true, ClientFailures{.resets = 11, .refused = 1, .connect_timeouts = 4, .steering_refusals = {}});
  EXPECT_EQ(a.causes.at("orphaned_in_accept_queue"), 9u);
  EXPECT_EQ(a.causes.at("closed_by_owner"), 2u);
  EXPECT_EQ(a.causes.at("no_listener"), 1u);
  EXPECT_EQ(a.causes.at("syn_retries_exhausted"), 4u);  // ListenDrops 5 - 1 ACK overflow
  EXPECT_EQ(a.unattributed, 0u);
  EXPECT_EQ(a.client_visible, 16u);
  EXPECT_EQ(sum(a), a.client_visible);
  EXPECT_EQ(a.not_seen_by_clients.at("listener_fin_resets"), 3u);
  EXPECT_NE(a.method.find("reset reason"), std::string::npos);
}

// The wrong outcome: more client resets than the kernel sent RSTs for, a connect timeout
// with no SYN dropped, an error no cause names. Each shows up as unattributed.
TEST(Attribution, failures_without_evidence_are_unattributed) {
  auto v = rst_rows(9);
  v["netstat_listen_drops"] = 1u;  // the one ACK overflow only: no SYN was dropped
  const auto a = attribute(v, false, ClientFailures{.resets = 10, .connect_timeouts = 2, .other = 1, .steering_refusals = {}});
  EXPECT_EQ(a.causes.at("orphaned_in_accept_queue"), 9u);
  EXPECT_EQ(a.causes.at("syn_retries_exhausted"), 0u);
  EXPECT_EQ(a.unattributed, 1u + 2u + 1u);
  EXPECT_EQ(sum(a), a.client_visible);
  EXPECT_NE(a.method.find("state and owner"), std::string::npos);
}

TEST(Attribution, kernel_counts_beyond_the_failures_are_not_seen_by_clients) {
  const auto a = attribute(rst_rows(9, 2), true, ClientFailures{.resets = 4, .steering_refusals = {}});
  EXPECT_EQ(a.causes.at("orphaned_in_accept_queue"), 4u);
  EXPECT_EQ(a.causes.at("closed_by_owner"), 0u);
  EXPECT_EQ(a.not_seen_by_clients.at("named_resets_beyond_client_failures"), 7u);
  EXPECT_EQ(a.unattributed, 0u);
}

// watch runs no clients: the client-visible failures are the RSTs received by clients
// that still held their sockets.
TEST(Attribution, without_clients_the_received_resets_are_attributed) {
  const auto a = attribute(rst_rows(9, 2), true, std::nullopt);
  EXPECT_EQ(a.client_visible, 11u);  // 14 received - 3 by closed clients
  EXPECT_EQ(a.causes.at("orphaned_in_accept_queue"), 9u);
  EXPECT_EQ(a.causes.at("closed_by_owner"), 2u);
  EXPECT_EQ(a.unattributed, 0u);
  auto v = rst_rows(9, 2);
  v["kernel_resets_received"] = 16u;  // two RSTs received that the port sent for no named cause
  EXPECT_EQ(attribute(v, true, std::nullopt).unattributed, 2u);
}

// A response timeout is a dropped ACK only as far as drops were counted: TCP_LISTEN_OVERFLOW
// plus the NO_SOCKET drops that got no RST (a syncookie's ACK on a full queue); an EOF
// before the answer is the owner's close of a socket that never sent a byte.
TEST(Attribution, unanswered_connections_rest_on_drops_and_unanswered_closes) {
  auto v = rst_rows(0, 0, 2);
  v["kernel_no_socket_drops"] = 7u;  // 2 of them answered by an RST (refused clients)
  v["kernel_owner_close_unanswered"] = 1u;
  ClientFailures f;
  f.refused = 2;
  f.response_timeouts = 8;
  f.closed_unanswered = 2;
  const auto a = attribute(v, true, f);
  EXPECT_EQ(a.causes.at("no_listener"), 2u);
  EXPECT_EQ(a.causes.at("ack_dropped_on_full_queue"), 6u);  // 1 overflow + 5 silent NO_SOCKET
  EXPECT_EQ(a.causes.at("closed_before_answering"), 1u);
  EXPECT_EQ(a.unattributed, 2u + 1u);
  EXPECT_EQ(sum(a), a.client_visible);
}

TEST(Attribution, steering_refusals_come_from_the_caller) {
  const auto a = attribute(rst_rows(0, 0, 5), true, ClientFailures{.refused = 5, .steering_refusals = 3});
  EXPECT_EQ(a.causes.at("refused_by_steering"), 3u);
  EXPECT_EQ(a.causes.at("no_listener"), 2u);
  EXPECT_EQ(a.unattributed, 0u);
}

TEST(Attribution, without_the_probe_everything_is_unattributed_and_says_why) {
  CountValues v = {{"kernel_orphan_resets", std::nullopt}};
  const auto a = attribute(v, false, ClientFailures{.resets = 3, .steering_refusals = {}});
  EXPECT_EQ(a.unattributed, 3u);
  EXPECT_FALSE(a.not_observable.empty());
  const auto j = a.to_json();
  EXPECT_EQ(j["unattributed"], 3);
  EXPECT_EQ(j["causes"].size(), cause_names().size());
}

}  // namespace
}  // namespace rp::probes
