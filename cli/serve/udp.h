// `reuseport-check serve --udp`: the UDP side of serve (cli/serve.cc holds the options).
#pragma once

#include <functional>
#include <string>

#include "harness/socket.h"

namespace rp::cli::serve {

struct UdpServeOptions {
  Endpoint addr;
  long members = 2;
  bool drain = false;
  long rcvbuf = 0;  // SO_RCVBUF of each member; 0: the default
  long read_delay_us = 0;  // a pause before each read: a slow server, whose queues fill
};

// Opens the members, calls `ready` once all are bound (the pid file), runs until SIGTERM
// or SIGINT (blocked by the caller before any thread exists), then closes. Returns the
// exit status; throws when the members cannot be opened.
int serve_udp(const UdpServeOptions& o, const std::function<void()>& ready);

}  // namespace rp::cli::serve
