// The load generator against a bare connect/request/reply/close loop, both against the same
// reuseport accept-and-serve server, in one run. bench/run.sh prints the ratio.
//
// Needs root (it runs in a network namespace of its own).

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <benchmark/benchmark.h>

#include <atomic>
#include <optional>
#include <thread>
#include <vector>

#include "bench/bench_server.h"
#include "harness/loadgen.h"
#include "harness/wire.h"

namespace {

constexpr uint16_t kPort = 47300;
constexpr int kConnsPerIteration = 2000;

// The bare loop: what a minimal C client does, one connection at a time per thread.
void bare_loop(int n, std::atomic<int>& failures) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(kPort);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (int i = 0; i < n; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    char buf[sizeof(rp::wire::Reply)];
    bool ok = fd >= 0 && connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
              send(fd, rp::wire::kRequest, sizeof rp::wire::kRequest, MSG_NOSIGNAL) == sizeof rp::wire::kRequest &&
              recv(fd, buf, sizeof buf, MSG_WAITALL) == sizeof buf;
    if (!ok) failures.fetch_add(1);
    if (fd >= 0) close(fd);
  }
}

void BM_BareLoop(benchmark::State& state) {
  rp::bench::bench_server(kPort);
  const int threads = static_cast<int>(state.range(0));
  std::atomic<int> failures{0};
  for (auto _ : state) {
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t) ts.emplace_back(bare_loop, kConnsPerIteration / threads, std::ref(failures));
    for (auto& t : ts) t.join();
  }
  if (failures) state.SkipWithError("bare loop: connections failed");
  state.counters["conns_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * kConnsPerIteration, benchmark::Counter::kIsRate);
}

void BM_LoadGenerator(benchmark::State& state) {
  rp::bench::bench_server(kPort);
  rp::LoadOptions o;
  o.target = rp::Endpoint::loopback(rp::Family::V4, kPort);
  o.threads = static_cast<unsigned>(state.range(0));
  o.concurrency = static_cast<unsigned>(state.range(1));
  o.max_attempts = kConnsPerIteration;
  for (auto _ : state) {
    rp::LoadGenerator lg(o);
    rp::Ledger l = lg.run();
    if (l.count(rp::Outcome::Served) != kConnsPerIteration) {
      state.SkipWithError("load generator: not every attempt was served");
      break;
    }
  }
  state.counters["conns_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * kConnsPerIteration, benchmark::Counter::kIsRate);
}

BENCHMARK(BM_BareLoop)->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_LoadGenerator)
    ->ArgNames({"threads", "inflight"})
    ->Args({1, 1})
    ->Args({2, 2})
    ->Args({1, 16})
    ->Args({2, 32})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
