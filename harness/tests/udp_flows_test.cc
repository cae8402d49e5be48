// The UDP flow load generator against ListenerGroup's UDP members, each test in a network
// namespace of its own. Waits are bounded safety nets, never the thing asserted.
#include "harness/udp_flows.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>

#include <sys/socket.h>

#include "harness/clock.h"
#include "harness/error.h"
#include "harness/scope.h"
#include "harness/server.h"
#include "test_util.h"

namespace rp {
namespace {

using std::chrono::milliseconds;

ListenerSpec udp(Family f, uint16_t port) {
  ListenerSpec s;
  s.socket.proto = Proto::Udp;
  s.socket.addr = Endpoint::loopback(f, port);
  return s;
}

UdpFlowOptions to(Family f, uint16_t port) {
  UdpFlowOptions o;
  o.target = Endpoint::loopback(f, port);
  return o;
}

uint64_t total(const std::map<int32_t, uint64_t>& m) {
  uint64_t n = 0;
  for (const auto& [k, v] : m) n += v;
  return n;
}

class UdpFlowsTest : public ::testing::TestWithParam<Family> {
 protected:
  void SetUp() override { RP_REQUIRE_ROOT(); ns_.emplace(); }
  std::optional<NetnsScope> ns_;
};

TEST_P(UdpFlowsTest, SteadyGroupAnswersEveryDatagramAndEveryFlowStays) {
  ListenerGroup g;
  for (int i = 0; i < 3; ++i) g.add(udp(GetParam(), 47401));
  UdpFlowOptions o = to(GetParam(), 47401);
  o.flows = 32;
  o.in_flight = 2;
  o.threads = 2;
  o.max_datagrams = 3000;
  UdpFlowResult r = UdpFlowLoad(o).run();
  UdpFlowTally t = r.tally();
  EXPECT_EQ(t.sent, 3000u);
  EXPECT_EQ(t.answered, 3000u);
  EXPECT_EQ(t.lost + t.late, 0u);
  EXPECT_EQ(t.flows[FlowOutcome::Stayed], 32u);
  EXPECT_EQ(reconcile(r, g.served_by_listener()), std::vector<std::string>{});
  for (const auto& f : r.flows) {
    EXPECT_NE(f.source_port, 0);
    EXPECT_EQ(f.by_member.size(), 1u) << "flow " << f.flow;
  }
  EXPECT_GT(t.by_member.size(), 1u) << "32 flows all hashed to one of 3 members";
}

TEST_P(UdpFlowsTest, OpenLoopSendsTheCountOverChosenPorts) {
  ListenerGroup g;
  g.add(udp(GetParam(), 47402));
  g.add(udp(GetParam(), 47402));
  UdpFlowOptions o = to(GetParam(), 47402);
  o.mode = UdpFlowOptions::Mode::Open;
  o.flows = 4;
  o.source_ports = {41001, 41002, 41003, 41004};
  // Modest: a thread descheduled on a busy machine catches up in a burst, and a burst
  // beyond the members' receive buffers is (truly) lost.
  o.rate = 1000;
  o.max_datagrams = 400;
  UdpFlowResult r = UdpFlowLoad(o).run();
  EXPECT_EQ(r.tally().sent, 400u);
  EXPECT_EQ(r.tally().answered, 400u);
  EXPECT_EQ(r.flows[2].source_port, 41003);
  EXPECT_EQ(reconcile(r, g.served_by_listener()), std::vector<std::string>{});
}

// A load's flows carry ids of their own (first_flow): each flow's answers echo its id, so a
// load with ids 1000.. gets every answer. Its control counts answers and answered flows.
TEST_P(UdpFlowsTest, FirstFlowGivesTheLoadsIdsOfTheirOwn) {
  ListenerGroup g;
  g.add(udp(GetParam(), 47411));
  UdpFlowOptions o = to(GetParam(), 47411);
  o.flows = 4;
  o.first_flow = 1000;
  o.max_datagrams = 200;
  UdpFlowControl c;
  o.control = &c;
  UdpFlowResult r = UdpFlowLoad(o).run();
  EXPECT_EQ(r.tally().answered, 200u);
  EXPECT_EQ(c.answers.load(), 200u);
  EXPECT_EQ(c.flows_answered.load(), 4u);  // each flow once, however many answers it got
  ASSERT_EQ(r.flows.size(), 4u);
  EXPECT_EQ(r.flows[0].flow, 1000u);
  EXPECT_EQ(r.flows[3].flow, 1003u);
  EXPECT_EQ(reconcile(r, g.served_by_listener()), std::vector<std::string>{});
}

TEST_P(UdpFlowsTest, NothingListeningLosesEveryDatagramWithinTheTimeout) {
  UdpFlowOptions o = to(GetParam(), 47403);
  o.flows = 4;
  o.in_flight = 2;
  o.max_datagrams = 40;
  o.reply_timeout = milliseconds(50);
  o.late_window = milliseconds(100);
  const auto t0 = std::chrono::steady_clock::now();
  UdpFlowResult r = UdpFlowLoad(o).run();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
  UdpFlowTally t = r.tally();
  EXPECT_EQ(t.sent, 40u);
  EXPECT_EQ(t.lost, 40u);
  EXPECT_EQ(t.flows[FlowOutcome::Lost], 4u);
  for (const auto& f : r.flows) EXPECT_EQ(f.first_member, -1);
  EXPECT_EQ(reconcile(r, {}), std::vector<std::string>{});
}

// A member nobody reads keeps its hash share: its flows get no answer, the others are untouched.
TEST_P(UdpFlowsTest, UnreadMemberLosesItsFlowsDatagramsOnly) {
  ListenerGroup g;
  const int unread = g.add(udp(GetParam(), 47404));
  g.add(udp(GetParam(), 47404));
  g.stall(unread, milliseconds(60000));
  UdpFlowOptions o = to(GetParam(), 47404);
  o.flows = 16;
  o.in_flight = 4;
  o.max_datagrams = 1600;
  o.reply_timeout = milliseconds(50);
  o.late_window = milliseconds(100);
  UdpFlowResult r = UdpFlowLoad(o).run();
  uint64_t silent_flows = 0;
  for (const auto& f : r.flows) {
    if (f.first_member < 0) {
      ++silent_flows;
      EXPECT_EQ(f.lost, f.datagrams.size());
      EXPECT_EQ(f.outcome, FlowOutcome::Lost);
    } else {
      EXPECT_NE(f.first_member, unread);
      EXPECT_EQ(f.outcome, FlowOutcome::Stayed) << to_string(f.outcome) << " flow " << f.flow;
    }
  }
  EXPECT_GT(silent_flows, 0u) << "no flow hashed to the unread member";
  EXPECT_LT(silent_flows, 16u);
  EXPECT_EQ(g.served_by_listener()[unread], 0u);
  EXPECT_EQ(reconcile(r, g.served_by_listener()), std::vector<std::string>{});
  g.resume(unread);
}

// A stalled member answers once it is resumed, after the reply timeout: Late, not Lost.
TEST_P(UdpFlowsTest, AnswersAfterTheTimeoutAreLateNotLost) {
  ListenerGroup g;
  const int id = g.add(udp(GetParam(), 47405));
  g.stall(id, milliseconds(300));  // acknowledged: nothing is read before 300 ms
  UdpFlowOptions o = to(GetParam(), 47405);
  o.flows = 1;
  o.in_flight = 3;
  o.max_datagrams = 3;
  o.reply_timeout = milliseconds(100);
  o.late_window = milliseconds(10000);
  UdpFlowResult r = UdpFlowLoad(o).run();
  UdpFlowTally t = r.tally();
  EXPECT_EQ(t.sent, 3u);
  EXPECT_EQ(t.late, 3u);
  EXPECT_EQ(t.lost, 0u);
  EXPECT_EQ(r.flows[0].outcome, FlowOutcome::Stayed);
  for (const auto& d : r.flows[0].datagrams) EXPECT_EQ(d.outcome, DatagramOutcome::Late);
  EXPECT_EQ(reconcile(r, g.served_by_listener()), std::vector<std::string>{});
}

// A member stalled (its queue fills) and then closed: the datagrams queued in it are lost,
// its flows go on at another member (moved, at a recorded time).
TEST_P(UdpFlowsTest, ClosedMemberLosesItsQueueAndItsFlowsMove) {
  ListenerGroup g;
  for (int i = 0; i < 3; ++i) g.add(udp(GetParam(), 47406));
  UdpFlowOptions o = to(GetParam(), 47406);
  o.flows = 24;
  o.in_flight = 2;
  o.max_datagrams = 1u << 30;
  o.max_duration = milliseconds(1500);
  o.reply_timeout = milliseconds(50);
  o.late_window = milliseconds(100);
  auto fut = std::async(std::launch::async, [&] { return UdpFlowLoad(o).run(); });
  const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (total(g.served_by_listener()) < 500 && std::chrono::steady_clock::now() < limit)
    std::this_thread::sleep_for(milliseconds(5));
  const uint64_t stalled_at = monotonic_ns();
  g.stall(0, milliseconds(60000));
  std::this_thread::sleep_for(milliseconds(300));  // lets member 0's flows queue datagrams in it
  const uint64_t closed_at = monotonic_ns();
  g.close(0);
  UdpFlowResult r = fut.get();
  uint64_t moved_off = 0;
  for (const auto& f : r.flows) {
    if (f.first_member == 0) {
      EXPECT_EQ(f.outcome, FlowOutcome::MovedAndLost) << "flow " << f.flow;
      EXPECT_EQ(f.moved_from, 0);
      EXPECT_NE(f.moved_to, 0);
      EXPECT_GT(f.lost, 0u);
      EXPECT_GE(f.moved_ns, closed_at - 1000000000ull);  // the move follows the stall
      ++moved_off;
    } else {
      // Another member's flow may lose a datagram that was in flight as member 0 left: seen
      // in 4 of 20 IPv6 runs on 6.18, one datagram each (plausibly the window in which the
      // closing socket has left the reuseport group but is still hashed, so a lookup picks
      // it alone; issue 13's probe is to attribute it). Never more than its in-flight
      // datagrams, and never while the group was steady.
      EXPECT_LE(f.lost, o.in_flight) << "flow " << f.flow << " of member " << f.first_member;
      for (const auto& d : f.datagrams)
        if (d.outcome == DatagramOutcome::Lost) {
          EXPECT_GE(d.sent_ns, stalled_at) << "flow " << f.flow;
        }
    }
  }
  EXPECT_GT(moved_off, 0u) << "no flow hashed to member 0";
  EXPECT_EQ(reconcile(r, g.served_by_listener()), std::vector<std::string>{});
}

INSTANTIATE_TEST_SUITE_P(Families, UdpFlowsTest, ::testing::Values(Family::V4, Family::V6),
                         [](const auto& i) { return std::string(i.param == Family::V4 ? "v4" : "v6"); });

TEST(UdpFlowOptionsTest, BadOptionsAreRejectedByName) {
  auto msg = [](auto mutate) {
    UdpFlowOptions o;
    o.target = Endpoint::loopback(Family::V4, 9);
    mutate(o);
    try {
      UdpFlowLoad l(o);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(msg([](auto& o) { o.target.port = 0; }).find("needs a port"), std::string::npos);
  EXPECT_NE(msg([](auto& o) { o.flows = 0; }).find("flows"), std::string::npos);
  EXPECT_NE(msg([](auto& o) { o.source_ports = {1, 2}; }).find("source_ports"), std::string::npos);
  EXPECT_NE(msg([](auto& o) { o.threads = 17; }).find("threads"), std::string::npos);
  EXPECT_NE(msg([](auto& o) { o.in_flight = 0; }).find("in_flight"), std::string::npos);
  EXPECT_NE(msg([](auto& o) { o.mode = UdpFlowOptions::Mode::Open; o.rate = 0; }).find("rate"), std::string::npos);
  EXPECT_NE(msg([](auto& o) { o.max_datagrams = 0; }).find("max_datagrams"), std::string::npos);
  EXPECT_NE(msg([](auto& o) { o.reply_timeout = milliseconds(0); }).find("reply_timeout"), std::string::npos);
  EXPECT_NE(msg([](auto& o) { o.late_window = milliseconds(10); }).find("late_window"), std::string::npos);
  EXPECT_EQ(msg([](auto&) {}), "accepted");
}

TEST(UdpFlowDnsTest, QueryCarriesTheIdAndTheNameAndBadNamesAreRejected) {
  const std::string q = dns_query("a.test.", 0x1234);
  EXPECT_EQ(q, std::string("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
                           "\x01"
                           "a\x04test\x00\x00\x01\x00\x01",
                           24));
  EXPECT_THROW(dns_query("", 0), std::invalid_argument);
  EXPECT_THROW(dns_query("a..test", 0), std::invalid_argument);
  EXPECT_THROW(dns_query(std::string(64, 'x') + ".test", 0), std::invalid_argument);
  UdpFlowOptions o;
  o.target = Endpoint::loopback(Family::V4, 9);
  o.dns_name = "a..test";
  EXPECT_THROW(UdpFlowLoad{o}, std::invalid_argument);
}

// A responder that answers every second query (by ID, QR set) and ignores the rest: the
// answered ones count under member 0, the others are lost, and no flow moves.
TEST_P(UdpFlowsTest, DnsAnswersAreMatchedByIdAndNameNoMember) {
  UniqueFd srv(static_cast<int>(check_sys(socket(af_of(GetParam()), SOCK_DGRAM | SOCK_CLOEXEC, 0), "socket")));
  sockaddr_storage ss;
  socklen_t len = Endpoint::loopback(GetParam(), 47409).to_sockaddr(ss);
  check_sys(bind(srv.get(), reinterpret_cast<sockaddr*>(&ss), len), "bind");
  std::atomic<bool> stop{false};
  std::thread t([&] {
    timeval tv{0, 50000};
    setsockopt(srv.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    while (!stop) {
      char buf[512];
      sockaddr_storage from;
      socklen_t flen = sizeof from;
      ssize_t n = recvfrom(srv.get(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &flen);
      if (n < 12 || (static_cast<uint8_t>(buf[1]) & 1)) continue;  // odd IDs get no answer
      buf[2] = static_cast<char>(buf[2] | 0x80);
      sendto(srv.get(), buf, static_cast<size_t>(n), 0, reinterpret_cast<sockaddr*>(&from), flen);
    }
  });
  UdpFlowOptions o = to(GetParam(), 47409);
  o.dns_name = "a.test";
  o.flows = 2;
  o.max_datagrams = 40;
  o.reply_timeout = milliseconds(100);
  o.late_window = milliseconds(200);
  UdpFlowResult r = UdpFlowLoad(o).run();
  stop = true;
  t.join();
  const UdpFlowTally tally = r.tally();
  EXPECT_EQ(tally.sent, 40u);
  EXPECT_EQ(tally.answered + tally.late, 20u);
  EXPECT_EQ(tally.lost, 20u);
  EXPECT_EQ(tally.by_member, (std::map<int32_t, uint64_t>{{0, 20}}));
  for (const auto& f : r.flows) {
    EXPECT_EQ(f.moves, 0u);
    for (const auto& d : f.datagrams) EXPECT_EQ(d.outcome == DatagramOutcome::Lost, d.seq % 2 == 1) << d.seq;
  }
}

TEST(UdpFlowReconcileTest, MismatchesAreNamed) {
  UdpFlowResult r;
  r.flows.resize(1);
  r.flows[0].datagrams.resize(3);
  r.flows[0].answered = 2;
  r.flows[0].by_member[1] = 2;
  auto m = reconcile(r, {{1, 2}});
  ASSERT_EQ(m.size(), 2u);  // the flow and the total
  EXPECT_NE(m[0].find("flow 0: sent 3"), std::string::npos);
  r.flows[0].lost = 1;
  EXPECT_EQ(reconcile(r, {{1, 2}}), std::vector<std::string>{});
  auto s = reconcile(r, {{1, 3}});
  ASSERT_EQ(s.size(), 1u);
  EXPECT_NE(s[0].find("member 1: servers answered 3, clients got 2"), std::string::npos);
}

}  // namespace
}  // namespace rp
