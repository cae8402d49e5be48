// cbpf_cpu_steering
//
// A classic BPF program attached with SO_ATTACH_REUSEPORT_CBPF (4.5, 538950a1b752) returns
// an index into the group's sockets; the ancillary load SKF_AD_OFF + SKF_AD_CPU gives it the
// number of the CPU running the lookup. A group with one socket per CPU, joined in CPU order,
// and the program "return the CPU" sends every connection or datagram to the socket of the
// CPU that processed it: the recipe of socket(7)'s SO_ATTACH_REUSEPORT_CBPF ("... a
// particular socket based on the CPU ...") and of the upstream selftest
// tools/testing/selftests/net/reuseport_bpf_cpu.c. The index is the socket's position in
// reuse->socks[], which is the order the sockets joined the group (TCP: listen(), UDP: bind()).
//
// On loopback the receive path runs in the softirq of the sending CPU (no RPS in the case's
// namespace), so a client pinned to CPU c makes its SYNs and datagrams arrive "on" CPU c.
//
// Scenario, per variant (tcp/udp x IPv4/IPv6):
//   1. In a fresh network namespace, open one SO_REUSEPORT socket per CPU index 0..C (C the
//      highest of the first two CPUs this process may run on), in index order, on one
//      loopback port; attach the program to the first.
//   2. For each of the two CPUs c: a thread pinned to c opens 32 connections (TCP, kept open)
//      or sends 32 datagrams, each from a socket of its own (UDP); then every socket's queue
//      is drained and counted.
//   3. Count what reached the socket at index c.

#include <gtest/gtest.h>
#include <linux/filter.h>

#include <thread>

#include "cases/lib/case_test.h"
#include "cases/lib/cpu.h"
#include "harness/error.h"
#include "harness/socket.h"

namespace rp::cases {
namespace {

struct Variant {
  Proto proto;
  Family family;
  std::string name() const {
    return std::string(proto == Proto::Tcp ? "tcp" : "udp") + (family == Family::V4 ? "4" : "6");
  }
};

constexpr uint16_t kPort = 47810;
constexpr int kPerCpu = 32;

void attach_return_cpu(int fd) {
  sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, static_cast<__u32>(SKF_AD_OFF + SKF_AD_CPU)),
      BPF_STMT(BPF_RET | BPF_A, 0),
  };
  sock_fprog prog{2, code};
  check_sys(setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof prog),
            "setsockopt SO_ATTACH_REUSEPORT_CBPF");
}

uint64_t drain(int fd, Proto proto) {
  uint64_t n = 0;
  for (;;) {
    if (proto == Proto::Tcp) {
      const int c = accept4(fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (c < 0) break;
      ::close(c);
    } else {
      char b;
      if (recv(fd, &b, 1, MSG_DONTWAIT) < 0) break;
    }
    ++n;
  }
  return n;
}

nlohmann::json scenario(const Variant& v) {
  const std::vector<int> cpus = allowed_cpus(2);
  if (cpus.size() < 2) throw std::runtime_error("fewer than 2 CPUs available (the two_cpus feature should have skipped)");
  ListenerOptions lo;
  lo.proto = v.proto;
  lo.addr = Endpoint::loopback(v.family, kPort);
  lo.backlog = 256;
  std::vector<UniqueFd> socks;
  for (int i = 0; i <= cpus[1]; ++i) socks.push_back(open_listener(lo));
  attach_return_cpu(socks[0].get());

  uint64_t total = 0, on_their_cpu = 0;
  nlohmann::json per_cpu = nlohmann::json::object();
  for (int cpu : cpus) {
    const std::vector<UniqueFd> keep = connect_from_cpu(cpu, lo.addr, kPerCpu, v.proto);
    // Loopback delivers inside the sender's own call, as a rule; the deadline only bounds a
    // straggler, and whatever is missing after it counts as not received.
    std::vector<uint64_t> got(socks.size(), 0);
    uint64_t sum = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    do {
      for (size_t i = 0; i < socks.size(); ++i) {
        const uint64_t n = drain(socks[i].get(), v.proto);
        got[i] += n;
        sum += n;
      }
    } while (sum < static_cast<uint64_t>(kPerCpu) && std::chrono::steady_clock::now() < deadline &&
             (std::this_thread::sleep_for(std::chrono::milliseconds(1)), true));
    total += sum;
    on_their_cpu += got[static_cast<size_t>(cpu)];
    per_cpu["cpu" + std::to_string(cpu)] = got;
  }
  nlohmann::json o;
  o["sent"] = 2 * kPerCpu;
  o["received"] = total;
  o["to_socket_of_their_cpu"] = on_their_cpu;
  o["received_per_client_cpu"] = per_cpu;
  return o;
}

// Alone under `run -j`: the verdict is about the CPU that processed each packet, with the
// clients pinned to the CPUs this process may use; another variant's softirq work on them is
// what the case must not see (as incoming_cpu).
RP_RUNS_ALONE(cbpf_cpu_steering);
RP_CASE(cbpf_cpu_steering, ::testing::Values(Variant{Proto::Tcp, Family::V4}, Variant{Proto::Tcp, Family::V6},
                                             Variant{Proto::Udp, Family::V4}, Variant{Proto::Udp, Family::V6}));

}  // namespace
}  // namespace rp::cases
