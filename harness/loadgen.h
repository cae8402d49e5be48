// The load generator: epoll, non-blocking connect, several threads, closed loop (N attempts
// in flight) or open loop (R attempts per second). Always bounded in count and in time.
// Every attempt it starts ends in its ledger with exactly one outcome.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "harness/ledger.h"
#include "harness/socket.h"

namespace rp {

struct LoadOptions {
  enum class Mode { Closed, Open };
  // What goes over each connection.
  //  Wire: the listeners' own protocol (harness/wire.h); served = the 8-byte reply, whose
  //        listener id lands in Attempt::listener.
  //  Raw:  send `payload`, read until EOF; served = at least one byte, then EOF.
  //  Http: send `payload` (an HTTP/1.1 request with `Connection: close`, see
  //        http_get_request()), read one response to its end: Content-Length bytes of body,
  //        or EOF when there is none (for chunked bodies EOF after the last chunk);
  //        served = a complete response, whatever its status, which goes to
  //        Attempt::http_status (Ledger::served_by_http_status() counts them).
  // A truncated response (EOF before its end) is ClosedWithoutResponse, a malformed one
  // OtherError with EBADMSG.
  enum class Protocol { Wire, Raw, Http };
  Endpoint target;
  Mode mode = Mode::Closed;
  Protocol protocol = Protocol::Wire;
  std::string payload;  // Raw and Http; not empty
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

const char* to_string(LoadOptions::Protocol p);

// "GET <path> HTTP/1.1" with Host, a User-Agent and `Connection: close`. Throws
// std::invalid_argument for a path that does not start with '/' or holds whitespace or
// control characters, which would break the request line.
std::string http_get_request(const std::string& path, const std::string& host);

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
