// The load generator as a plain HTTP load tool, for bench/vs_tools.py: a closed loop of
// `concurrency` attempts over `threads` threads against 127.0.0.1:PORT for SECONDS, each a
// GET / with Connection: close read to its end, every attempt with one outcome in the
// ledger as in `deploy`. Prints one JSON line: attempts, served, failed, seconds, per_second.
//
//   bench_loadgen_http PORT THREADS CONCURRENCY SECONDS

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include <nlohmann/json.hpp>

#include "harness/clock.h"
#include "harness/loadgen.h"

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s PORT THREADS CONCURRENCY SECONDS\n", argv[0]);
    return 2;
  }
  try {
    rp::LoadOptions o;
    o.target = rp::Endpoint::loopback(rp::Family::V4, static_cast<uint16_t>(std::stoi(argv[1])));
    o.protocol = rp::LoadOptions::Protocol::Http;
    o.payload = rp::http_get_request("/", "127.0.0.1");
    o.threads = static_cast<unsigned>(std::stoi(argv[2]));
    o.concurrency = static_cast<unsigned>(std::stoi(argv[3]));
    o.max_duration = std::chrono::milliseconds(static_cast<long>(std::stod(argv[4]) * 1000));
    o.max_attempts = UINT64_MAX;
    rp::LoadGenerator load(o);
    const uint64_t t0 = rp::monotonic_ns();
    const rp::Ledger l = load.run();
    const double s = static_cast<double>(rp::monotonic_ns() - t0) / 1e9;
    const uint64_t served = l.count(rp::Outcome::Served);
    nlohmann::json j{{"attempts", l.total()}, {"served", served}, {"failed", l.total() - served},
                     {"seconds", s}, {"per_second", static_cast<double>(served) / s}};
    std::printf("%s\n", j.dump().c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_loadgen_http: %s\n", e.what());
    return 1;
  }
}
