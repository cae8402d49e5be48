// The server both benchmarks measure against: two reuseport listeners (threads, accept and
// serve, backlog 4096) on 127.0.0.1:port, in a network namespace of the process's own,
// made on first use and kept for the whole run so that every benchmark meets the same one.
#pragma once

#include <cstdint>

#include "harness/scope.h"
#include "harness/server.h"

namespace rp::bench {

class BenchServer {
 public:
  explicit BenchServer(uint16_t port) {
    for (int i = 0; i < 2; ++i) {
      ListenerSpec s;
      s.socket.addr = Endpoint::loopback(Family::V4, port);
      s.socket.backlog = 4096;
      group_.add(s);
    }
  }

 private:
  NetnsScope ns_;  // first: the listeners are made inside it
  ListenerGroup group_;
};

// The one server of this process on `port` (the first call's port).
inline BenchServer& bench_server(uint16_t port) {
  static BenchServer s(port);
  return s;
}

}  // namespace rp::bench
