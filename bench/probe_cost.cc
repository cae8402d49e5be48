// The reuseport probe's programs under load: how often each runs per connection and its
// run time as the kernel accounts it (BPF_ENABLE_STATS). The cost in connections per second
// is bench_probe_cost_pairs' (paired rounds; target, issue 14: at most 1%); bench/run.sh
// prints both. Needs root.
//
// Variants, by what each user of the probe attaches:
//   probes:1  every program (the probe's defaults, as every user attached before issue 14:
//             lifecycle, drops, children per listener)
//   probes:2  what KernelSampler attaches (cases, watch, deploy, report): lifecycle and drops
//   probes:3  what group attaches: children per listener only

#include <benchmark/benchmark.h>
#include <bpf/bpf.h>
#include <unistd.h>

#include <map>
#include <string>
#include <utility>

#include "bench/bench_server.h"
#include "harness/loadgen.h"
#include "probes/reuseport_probe.h"

namespace {

constexpr uint16_t kPort = 47310;
constexpr int kConnsPerIteration = 4000;

rp::probes::ProbeOptions options_of(int64_t variant) {
  rp::probes::ProbeOptions po;
  po.port = kPort;
  po.netns_cookie = rp::probes::current_netns_cookie();
  if (variant == 2) po.per_listener = false;
  if (variant == 3) po.lifecycle = po.drops = false;
  return po;
}

// The programs' own run count and run time, summed over the probe's programs (the kernel
// keeps them while a BPF_ENABLE_STATS fd is open). They explain bench_probe_cost_pairs'
// rates: the CPU time the probe adds per connection, tracepoint dispatch aside.
struct RunStats {
  unsigned long long runs = 0, ns = 0;
  std::map<std::string, std::pair<unsigned long long, unsigned long long>> by_program;  // runs, ns
};

RunStats run_stats(const rp::probes::ReuseportProbe& probe) {
  RunStats s;
  for (std::uint32_t id : probe.program_ids()) {
    const int fd = bpf_prog_get_fd_by_id(id);
    if (fd < 0) continue;
    struct bpf_prog_info info {};
    __u32 len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) {
      s.runs += info.run_cnt;
      s.ns += info.run_time_ns;
      s.by_program[info.name] = {info.run_cnt, info.run_time_ns};
    }
    ::close(fd);
  }
  return s;
}

void BM_ProbeRunTime(benchmark::State& state) {
  rp::bench::bench_server(kPort);
  rp::probes::ReuseportProbe probe(options_of(state.range(0)));
  const int stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
  if (stats_fd < 0) {
    state.SkipWithError("BPF_ENABLE_STATS failed");
    return;
  }
  rp::LoadOptions o;
  o.target = rp::Endpoint::loopback(rp::Family::V4, kPort);
  o.threads = 2;
  o.concurrency = 32;
  o.max_attempts = kConnsPerIteration;
  const RunStats before = run_stats(probe);
  for (auto _ : state) {
    rp::LoadGenerator lg(o);
    if (lg.run().count(rp::Outcome::Served) != kConnsPerIteration) {
      state.SkipWithError("not every attempt was served");
      break;
    }
  }
  const RunStats after = run_stats(probe);
  ::close(stats_fd);
  const double conns = static_cast<double>(state.iterations()) * kConnsPerIteration;
  state.counters["bpf_runs_per_conn"] = static_cast<double>(after.runs - before.runs) / conns;
  state.counters["bpf_ns_per_conn"] = static_cast<double>(after.ns - before.ns) / conns;
  for (const auto& [name, v] : after.by_program) {
    const auto& b = before.by_program.at(name);
    state.counters["runs_" + name] = static_cast<double>(v.first - b.first) / conns;
    state.counters["ns_" + name] = static_cast<double>(v.second - b.second) / conns;
  }
}

BENCHMARK(BM_ProbeRunTime)->ArgName("probes")->Arg(1)->Arg(2)->Arg(3)->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(0.5);

}  // namespace

BENCHMARK_MAIN();
