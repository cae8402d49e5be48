// Internals of the load generator shared by its two translation units: loadgen.cc (the
// epoll engine) and loadgen_protocol.cc (HTTP request building and the Raw/Http stream
// protocols). Not part of the harness's interface.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <vector>

#include "harness/fd.h"
#include "harness/ledger.h"
#include "harness/loadgen.h"
#include "harness/wire.h"

namespace rp {

namespace loadgen_internal {

struct Conn {
  int fd = -1;
  Phase phase = Phase::Connecting;
  uint8_t got = 0;
  char buf[sizeof(wire::Reply)];
  Attempt a;
  uint64_t deadline_ns = 0;
};

// Per-connection state of the Raw and Http protocols. Kept beside Conn rather than in it,
// so that the default Wire protocol's connections stay as small and cheap as they were.
struct Stream {
  size_t sent = 0;
  uint64_t received = 0;
  std::string head;        // Http: the response up to the end of its headers
  bool headers_done = false;
  int status = 0;
  int64_t content_length = -1;  // -1: none given, the body ends at EOF
  bool chunked = false;
  uint64_t body = 0;
  std::string tail;  // the last bytes of a chunked body
};

}  // namespace loadgen_internal

struct LoadGenerator::Worker {
  using Conn = loadgen_internal::Conn;
  using Stream = loadgen_internal::Stream;

  Worker(LoadGenerator& lg, unsigned slots);

  LoadGenerator& lg;
  std::vector<Conn> conns;
  std::vector<uint32_t> free_slots;
  Ledger ledger;
  UniqueFd ep;
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  int af = AF_INET;
  std::atomic<uint64_t> started{0}, completed{0}, served{0};
  std::atomic<bool> finished{false};
  std::exception_ptr error;
  const bool stream;             // Raw or Http
  std::vector<Stream> streams;   // by slot; empty for Wire

  void finish(uint32_t slot, Outcome o, int err);

  // Claims one attempt of the global budget; false when the budget or the time is spent.
  bool claim(uint32_t& id, uint64_t end_ns);

  void send_request(uint32_t slot);

  void start_one(uint32_t id);

  void note_source_port(Conn& c);

  void mark_connected(Conn& c);

  void start_stream(uint32_t slot);

  // Sends what is left of the payload; false when that finished the attempt.
  bool stream_send(uint32_t slot);

  // Takes n received bytes; false when they finished the attempt.
  bool stream_consume(uint32_t slot, const char* data, size_t n);

  void stream_eof(uint32_t slot);

  // For a socket still connecting: true once the handshake completed; finishes the attempt
  // when it failed; false (nothing to do yet) otherwise.
  bool handshake_done(uint32_t slot, uint32_t events);

  void on_stream_event(uint32_t slot, uint32_t events);

  void on_event(uint32_t slot, uint32_t events);

  void expire(uint64_t now);

  void run(unsigned share_closed, double share_rate);

  unsigned in_flight() const { return static_cast<unsigned>(conns.size() - free_slots.size()); }
};

}  // namespace rp
