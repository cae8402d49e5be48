// The counter table (probes/counters.cc) and the sampler every command uses: keys are unique
// and well formed, and a listener closed with queued children is counted the same with the
// namespace filtered by cookie (5.14+) and by inode (the pre-5.14 path).

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "harness/isolate.h"
#include "probes/counters.h"
#include "probes/kernel_sampler.h"

namespace {

using rp::probes::CounterDef;

TEST(CounterTable, keys_are_unique_and_name_their_source) {
  std::set<std::string> keys;
  for (const auto& row : rp::probes::counter_table()) {
    EXPECT_TRUE(keys.insert(row.key).second) << "duplicate key " << row.key;
    const std::string key = row.key;
    const bool tcpext = row.from == CounterDef::From::TcpExt;
    EXPECT_EQ(key.rfind(tcpext ? "netstat_" : "kernel_", 0), 0u) << key;
    EXPECT_NE(std::string(row.label), "") << key;
    if (row.from != CounterDef::From::Probe) {
      EXPECT_NE(row.name, nullptr) << key;
    } else {
      EXPECT_NE(std::string(row.source), "") << key;
    }
  }
  for (const auto& row : rp::probes::counter_table())
    if (row.from == CounterDef::From::Sum) {
      EXPECT_NE(rp::probes::find_counter(row.name), nullptr) << row.key;
      EXPECT_NE(rp::probes::find_counter(row.name2), nullptr) << row.key;
    }
  EXPECT_EQ(rp::probes::find_counter("no_such_counter"), nullptr);
}

// In a fresh namespace: a listener with backlog 2 that never accepts, 3 clients queued,
// then close(). Returns "<orphans> <orphan_resets> <listener_closes> <overflows-null?>".
std::string close_with_queue(bool by_inode) {
  constexpr uint16_t kPort = 7311;
  rp::probes::KernelSampler k({.port = kPort, .filter_by_inode = by_inode});
  int l = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(l, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(kPort);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(l, 2) != 0) return "bind/listen failed";
  int clients[3];
  for (int& c : clients) {
    c = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return "connect failed";
  }
  usleep(100000);
  close(l);
  usleep(100000);
  const auto c = k.sample();
  auto show = [&](const char* key) {
    auto v = c.value(key);
    return v ? std::to_string(*v) : "null(" + c.not_observable.at(key) + ")";
  };
  std::string out = show("kernel_orphaned_children") + " " + show("kernel_orphan_resets") + " " +
                    show("kernel_listener_closes") + " " + show("kernel_resets_sent") + " " +
                    (c.value("netstat_listen_overflows") ? "netstat" : "no-netstat") + " " + k.namespace_filter();
  for (int cl : clients) close(cl);
  return out;
}

// A segment for no connection, sent with a raw socket to a listener: the listener itself
// answers with an RST (tcp_rcv_state_process, LISTEN, ACK set). A bare ACK is what a client
// whose request died with its listener sends (it sees that reset); a FIN is what a client
// that had closed sends (it does not). Returns "<listener_fin_resets> <other_resets_sent>
// <rst_listener_ack> <rst_unnamed>": the bare ACK's RST has its own cause.
std::string segment_to_listener(bool fin) {
  constexpr uint16_t kPort = 7312;
  rp::probes::KernelSampler k({.port = kPort});
  int l = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(kPort);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(l, 8) != 0) return "bind/listen failed";
  int raw = socket(AF_INET, SOCK_RAW, IPPROTO_TCP);
  if (raw < 0) return "raw socket failed";
  tcphdr th{};
  th.source = htons(40000);
  th.dest = htons(kPort);
  th.seq = htonl(1);
  th.ack_seq = htonl(12345);
  th.doff = sizeof th / 4;
  th.ack = 1;
  th.fin = fin ? 1 : 0;
  th.window = htons(1024);
  // The checksum over the pseudo-header (127.0.0.1 -> 127.0.0.1, TCP, length) and header.
  uint32_t sum = 0x7f00 + 0x0001 + 0x7f00 + 0x0001 + IPPROTO_TCP + sizeof th;
  const auto* w = reinterpret_cast<const uint16_t*>(&th);
  for (size_t i = 0; i < sizeof th / 2; ++i) sum += ntohs(w[i]);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  th.check = htons(static_cast<uint16_t>(~sum));
  if (sendto(raw, &th, sizeof th, 0, reinterpret_cast<sockaddr*>(&a), sizeof a) != sizeof th) return "sendto failed";
  usleep(100000);
  const auto c = k.sample();
  auto show = [&](const char* key) {
    auto v = c.value(key);
    return v ? std::to_string(*v) : "null(" + c.not_observable.at(key) + ")";
  };
  close(raw);
  close(l);
  return show("kernel_listener_fin_resets") + " " + show("kernel_other_resets_sent") + " " +
         show("kernel_rst_listener_ack") + " " + show("kernel_rst_unnamed");
}

class ListenerReply : public ::testing::TestWithParam<bool> {};

TEST_P(ListenerReply, only_a_reply_to_a_fin_is_counted_apart) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root: network namespace, raw socket, BPF";
  const bool fin = GetParam();
  auto r = rp::run_isolated([&] { return segment_to_listener(fin); });
  ASSERT_TRUE(r.ok()) << r.describe();
#ifdef RP_HAVE_BPF
  EXPECT_EQ(r.payload, fin ? "1 1 0 0" : "0 1 1 0");
#else
  EXPECT_NE(r.payload.find("null(built without BPF"), std::string::npos) << r.payload;
#endif
}

INSTANTIATE_TEST_SUITE_P(Segment, ListenerReply, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "fin_ack" : "bare_ack"; });

class SamplerFilter : public ::testing::TestWithParam<bool> {};

TEST_P(SamplerFilter, counts_a_closed_listeners_queue) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root: network namespace, BPF";
  const bool by_inode = GetParam();
  auto r = rp::run_isolated([&] { return close_with_queue(by_inode); });
  ASSERT_TRUE(r.ok()) << r.describe();
  RecordProperty("counts", r.payload);
#ifdef RP_HAVE_BPF
  // Backlog 2 holds 3 children (backlog + 1); each is orphaned and sends one RST.
  EXPECT_EQ(r.payload.substr(0, r.payload.find(" netstat")), "3 3 1 3") << r.payload;
  EXPECT_NE(r.payload.find(by_inode ? "netns inode" : "netns cookie"), std::string::npos) << r.payload;
#else
  EXPECT_NE(r.payload.find("null(built without BPF"), std::string::npos) << r.payload;
#endif
  EXPECT_NE(r.payload.find(" netstat "), std::string::npos) << r.payload;
}

INSTANTIATE_TEST_SUITE_P(Filter, SamplerFilter, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "by_inode" : "by_cookie"; });

// A probe that fails to load is our failure, not the kernel's: its counts are errors (a
// case needing them is ERROR), never "not observable" (SKIP) and never 0.
TEST(Sampler, a_probe_that_did_not_load_makes_errors) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root: network namespace";
  auto r = rp::run_isolated([] {
    setenv("RP_TEST_PROBE_FAIL", "1", 1);
    rp::probes::KernelSampler k({.port = 7313});
    const auto c = k.sample();
    std::string out = c.value("kernel_orphan_resets") ? "value" : "null";
    out += c.errors.count("kernel_orphan_resets") ? " error" : " no-error";
    out += c.not_observable.count("kernel_orphan_resets") ? " not-observable" : "";
    out += c.errors.count("kernel_resets_sent") ? " sum-error" : "";
    out += c.value("netstat_listen_overflows") ? " netstat" : " no-netstat";
    return out;
  });
  ASSERT_TRUE(r.ok()) << r.describe();
#ifdef RP_HAVE_BPF
  EXPECT_EQ(r.payload, "null error sum-error netstat");
#else
  EXPECT_EQ(r.payload, "null no-error not-observable netstat");
#endif
}

TEST(KernelCounts, unknown_key_throws_and_json_keeps_nulls) {
  rp::probes::KernelCounts c;
  c.values["kernel_orphan_resets"] = std::nullopt;
  c.not_observable["kernel_orphan_resets"] = "why";
  EXPECT_THROW(c.value("nope"), std::out_of_range);
  auto j = c.to_json();
  EXPECT_TRUE(j["kernel_orphan_resets"].is_null());
  EXPECT_EQ(j["kernel_not_observable"]["kernel_orphan_resets"], "why");
  EXPECT_TRUE(j["kernel_errors"].is_object());
}

}  // namespace
