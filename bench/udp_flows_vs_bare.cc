// The UDP flow load generator against a bare sendto/recv loop (one datagram in flight), both
// against the same two reuseport UDP members, in one run: the datagrams/s of each side by side.
//
// Needs root (it runs in a network namespace of its own).

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <benchmark/benchmark.h>

#include "harness/scope.h"
#include "harness/server.h"
#include "harness/udp_flows.h"
#include "harness/wire.h"

namespace {

constexpr uint16_t kPort = 47310;
constexpr int kDatagramsPerIteration = 4000;

// Made on first use and kept, so that both benchmarks meet the same members.
struct UdpBenchServer {
  UdpBenchServer() {
    for (int i = 0; i < 2; ++i) {
      rp::ListenerSpec s;
      s.socket.proto = rp::Proto::Udp;
      s.socket.addr = rp::Endpoint::loopback(rp::Family::V4, kPort);
      group.add(s);
    }
  }
  rp::NetnsScope ns;  // first: the members are made inside it
  rp::ListenerGroup group;
};
UdpBenchServer& server() {
  static UdpBenchServer s;
  return s;
}

void BM_BareSendRecv(benchmark::State& state) {
  server();
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  timeval tv{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(kPort);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int failures = 0;
  uint64_t seq = 0;
  for (auto _ : state) {
    for (int i = 0; i < kDatagramsPerIteration; ++i) {
      rp::wire::FlowRequest q{rp::wire::kFlowRequestMagic, 0, seq++};
      char buf[64];
      if (sendto(fd, &q, sizeof q, 0, reinterpret_cast<sockaddr*>(&a), sizeof a) != sizeof q ||
          recv(fd, buf, sizeof buf, 0) != sizeof(rp::wire::FlowReply))
        ++failures;
    }
  }
  close(fd);
  if (failures) state.SkipWithError("bare loop: datagrams unanswered");
  state.counters["datagrams_per_s"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * kDatagramsPerIteration, benchmark::Counter::kIsRate);
}

void BM_UdpFlowLoad(benchmark::State& state) {
  server();
  rp::UdpFlowOptions o;
  o.target = rp::Endpoint::loopback(rp::Family::V4, kPort);
  o.threads = static_cast<unsigned>(state.range(0));
  o.flows = static_cast<unsigned>(state.range(1));
  o.in_flight = static_cast<unsigned>(state.range(2));
  o.max_datagrams = kDatagramsPerIteration;
  for (auto _ : state) {
    rp::UdpFlowResult r = rp::UdpFlowLoad(o).run();
    if (r.tally().answered != kDatagramsPerIteration) {
      state.SkipWithError("flow load: not every datagram was answered in time");
      break;
    }
  }
  state.counters["datagrams_per_s"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * kDatagramsPerIteration, benchmark::Counter::kIsRate);
}

BENCHMARK(BM_BareSendRecv)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_UdpFlowLoad)
    ->ArgNames({"threads", "flows", "inflight"})
    ->Args({1, 1, 1})
    ->Args({1, 16, 1})
    ->Args({1, 16, 4})
    ->Args({2, 16, 4})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
