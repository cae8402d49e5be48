// The UDP side of the load: datagrams from chosen (or kernel-assigned) source ports to a
// reuseport group of UDP listeners, each of which answers with its id (harness/wire.h). A
// UDP flow is its 4-tuple, so a fixed source port is a fixed flow: sending from the same
// ports before and after a change of the group shows exactly which flows moved.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <vector>

#include "harness/socket.h"

namespace rp {

struct UdpClientOptions {
  Endpoint target;
  // How long to wait for the replies of one window of datagrams; a datagram unanswered by
  // then counts as lost (listener -1).
  std::chrono::milliseconds reply_timeout{1000};
  // Datagrams in flight at once. Each listener's receive buffer holds a few hundred small
  // datagrams; staying well below keeps loopback from dropping any.
  size_t window = 64;
};

// One datagram and what became of it.
struct UdpExchange {
  uint16_t source_port = 0;  // as bound (the kernel's choice for port 0)
  int32_t listener = -1;     // the replying listener's id; -1: no reply in time
};

struct UdpTally {
  uint64_t sent = 0;
  uint64_t answered = 0;
  uint64_t lost = 0;
  std::map<int32_t, uint64_t> by_listener;
};
UdpTally tally(const std::vector<UdpExchange>& xs);

class UdpClient {
 public:
  explicit UdpClient(UdpClientOptions opts);

  // One datagram from each port of `ports` (0: a port the kernel picks), each from a socket
  // of its own bound to the loopback address of the target's family. Throws SysError when a
  // chosen port cannot be bound ("bind udp source 127.0.0.1:5000: ... (EADDRINUSE)").
  std::vector<UdpExchange> from_ports(const std::vector<uint16_t>& ports) const;

  // `count` datagrams one after another from a single socket (source `port`, 0 = kernel's
  // choice), each awaiting its reply (or the timeout) before the next is sent.
  std::vector<UdpExchange> from_one_port(uint16_t port, unsigned count) const;

  const UdpClientOptions& options() const { return opts_; }

 private:
  UdpClientOptions opts_;
};

// The TCP counterpart for fixed flows: one connection from `sport` (0: the kernel's choice)
// to `target`, request and reply; returns the serving listener's id. It waits for the
// server's FIN and then aborts with an RST (SO_LINGER 0), so neither side keeps the tuple in
// TIME_WAIT and the next connection from the same port is the same 4-tuple again. Throws
// SysError naming the step (bind, connect, recv) on failure.
int32_t tcp_flow_from(const Endpoint& target, uint16_t sport);

}  // namespace rp
