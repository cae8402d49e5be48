// Clients on a chosen CPU, for the SO_INCOMING_CPU cases: on loopback (no RPS) a SYN is
// processed in the softirq of the CPU that sent it, so a client pinned to CPU c makes its
// SYNs arrive "on" CPU c.
#pragma once

#include <vector>

#include "harness/fd.h"
#include "harness/socket.h"

namespace rp::cases {

// The first `n` CPUs this process may run on (sched_getaffinity); fewer when it may run on
// fewer.
std::vector<int> allowed_cpus(size_t n);

// Opens `n` TCP connections to `to`, one after another, from a thread pinned to `cpu`, and
// returns them still open; for UDP, sends one byte from each of `n` sockets of their own
// (returned too). A failing syscall throws, naming it.
std::vector<UniqueFd> connect_from_cpu(int cpu, const Endpoint& to, int n, Proto proto = Proto::Tcp);

}  // namespace rp::cases
