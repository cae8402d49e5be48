// The load generator: epoll, non-blocking connect, several threads, closed loop (N attempts
// in flight) or open loop (R attempts per second). Always bounded in count and in time.
// Every attempt it starts ends in its ledger with exactly one outcome.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "harness/ledger.h"
#include "harness/socket.h"

namespace rp {

struct LoadOptions {
  enum class Mode { Closed, Open };
  Endpoint target;
  Mode mode = Mode::Closed;
  unsigned threads = 1;
  unsigned concurrency = 64;   // closed loop: attempts in flight, over all threads
  double rate = 1000;          // open loop: attempts started per second, over all threads
  unsigned max_in_flight = 8192;  // open loop: attempts in flight are capped here
  uint64_t max_attempts = 10000;
  std::chrono::milliseconds max_duration{10000};  // no attempt starts after this
  std::chrono::milliseconds connect_timeout{4000};
  std::chrono::milliseconds response_timeout{4000};
  bool record_source_port = false;  // one getsockname() per attempt
};

class LoadGenerator {
 public:
  explicit LoadGenerator(LoadOptions opts);
  ~LoadGenerator();
  LoadGenerator(const LoadGenerator&) = delete;
  LoadGenerator& operator=(const LoadGenerator&) = delete;

  void start();
  // No new attempts from now on; those in flight finish or time out.
  void stop();
  // Waits until every worker is done. Throws what a worker hit (e.g. epoll_create failing).
  void wait();
  // start() + wait().
  Ledger run();

  uint64_t started() const;
  uint64_t completed() const;
  uint64_t served() const;
  bool done() const;
  const LoadOptions& options() const { return opts_; }
  // The merged ledger; valid after wait().
  const Ledger& ledger() const { return ledger_; }

  struct Worker;

 private:
  LoadOptions opts_;
  std::atomic<uint64_t> next_id_{0};
  std::atomic<bool> stop_{false};
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::thread> threads_;
  Ledger ledger_;
  bool waited_ = false;
};

}  // namespace rp
