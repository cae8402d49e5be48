// The connection rate with and without the reuseport probe attached, interleaved in one
// process against the same reuseport server; bench/run.sh prints the ratio (target: the
// probes cost at most 3%). Needs root.

#include <benchmark/benchmark.h>

#include <optional>

#include "bench/bench_server.h"
#include "harness/loadgen.h"
#include "probes/reuseport_probe.h"

namespace {

constexpr uint16_t kPort = 47310;
constexpr int kConnsPerIteration = 4000;

void BM_ConnectionRate(benchmark::State& state) {
  rp::bench::bench_server(kPort);
  std::optional<rp::probes::ReuseportProbe> probe;
  if (state.range(0)) {
    rp::probes::ProbeOptions po;
    po.port = kPort;
    po.netns_cookie = rp::probes::current_netns_cookie();
    probe.emplace(po);
  }
  rp::LoadOptions o;
  o.target = rp::Endpoint::loopback(rp::Family::V4, kPort);
  o.threads = 2;
  o.concurrency = 32;
  o.max_attempts = kConnsPerIteration;
  for (auto _ : state) {
    rp::LoadGenerator lg(o);
    if (lg.run().count(rp::Outcome::Served) != kConnsPerIteration) {
      state.SkipWithError("not every attempt was served");
      break;
    }
  }
  state.counters["conns_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * kConnsPerIteration, benchmark::Counter::kIsRate);
}

BENCHMARK(BM_ConnectionRate)->ArgName("probes")->Arg(0)->Arg(1)->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(1.0);

}  // namespace

BENCHMARK_MAIN();
