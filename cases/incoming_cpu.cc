// incoming_cpu
//
// SO_INCOMING_CPU set on the listeners of a reuseport group should send a connection to
// the listener whose value is the CPU that processed the SYN. The fast reuseport selection
// (4.5/4.6) ignored it; b261eda84ec1 "soreuseport: Fix socket selection for
// SO_INCOMING_CPU." (Kuniyuki Iwashima, v6.2; in stable 6.1.2 and 6.0.16) makes
// reuseport_select_sock_by_hash() prefer a socket whose sk_incoming_cpu is the current CPU,
// whether the option was set before or after the socket joined the group. Its selftest is
// tools/testing/selftests/net/so_incoming_cpu.c (6df96146b202).
//
// On loopback the SYN is processed in the softirq of the CPU that sent it (no RPS), so a
// client pinned to CPU c makes its SYNs arrive "on" CPU c (cases/lib/cpu.h).
//
// Scenario, per variant (IPv4/IPv6 x when the option is set):
//   1. In a fresh network namespace, two SO_REUSEPORT TCP listeners on one port, listener
//      i with SO_INCOMING_CPU = the i-th CPU this process may run on, set before listen()
//      or after both listen.
//   2. For each of the two CPUs: a client thread pinned to it (sched_setaffinity) opens 32
//      connections and keeps them; then both accept queues are drained and counted.
//   3. Count the connections accepted by the listener of their client's CPU.

#include <gtest/gtest.h>

#include "cases/lib/case_test.h"
#include "cases/lib/cpu.h"
#include "harness/error.h"
#include "harness/socket.h"

namespace rp::cases {
namespace {

enum class When { BeforeListen, AfterAllListen };

struct Variant {
  Family family;
  When when;
  std::string name() const {
    return std::string("tcp") + (family == Family::V4 ? "4" : "6") +
           (when == When::BeforeListen ? "_before_listen" : "_after_all_listen");
  }
};

constexpr uint16_t kPort = 47800;
constexpr int kClientsPerCpu = 32;

void set_incoming_cpu(int fd, int cpu) {
  check_sys(setsockopt(fd, SOL_SOCKET, SO_INCOMING_CPU, &cpu, sizeof cpu), "setsockopt SO_INCOMING_CPU");
}

nlohmann::json scenario(const Variant& v) {
  const std::vector<int> cpus = allowed_cpus(2);
  if (cpus.size() < 2) throw std::runtime_error("fewer than 2 CPUs available (the two_cpus feature should have skipped)");

  ListenerOptions lo;
  lo.addr = Endpoint::loopback(v.family, kPort);
  lo.backlog = 256;
  lo.listen = false;
  std::vector<UniqueFd> listeners;
  for (int i = 0; i < 2; ++i) {
    listeners.push_back(open_listener(lo));
    if (v.when == When::BeforeListen) set_incoming_cpu(listeners[i].get(), cpus[i]);
    check_sys(listen(listeners[i].get(), lo.backlog), "listen " + lo.addr.str());
  }
  if (v.when == When::AfterAllListen)
    for (int i = 0; i < 2; ++i) set_incoming_cpu(listeners[i].get(), cpus[i]);

  nlohmann::json o;
  uint64_t total = 0, matched = 0, child_cpu_matched = 0;
  nlohmann::json per_cpu = nlohmann::json::object();
  for (int i = 0; i < 2; ++i) {
    const std::vector<UniqueFd> clients = connect_from_cpu(cpus[i], lo.addr, kClientsPerCpu);
    std::vector<uint64_t> got(2, 0);
    for (int l = 0; l < 2; ++l)
      for (;;) {
        int c = accept4(listeners[l].get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (c < 0) break;
        int cpu = -1;
        socklen_t len = sizeof cpu;
        getsockopt(c, SOL_SOCKET, SO_INCOMING_CPU, &cpu, &len);
        child_cpu_matched += cpu == cpus[i];
        ::close(c);
        ++got[static_cast<size_t>(l)];
      }
    total += got[0] + got[1];
    matched += got[static_cast<size_t>(i)];
    per_cpu["cpu" + std::to_string(cpus[i])] = got;
  }
  o["connections"] = total;
  o["expected_connections"] = 2 * kClientsPerCpu;
  o["to_listener_of_their_cpu"] = matched;
  o["children_with_client_cpu"] = child_cpu_matched;
  o["accepted_per_client_cpu"] = per_cpu;
  return o;
}

// Alone under `run -j`: its verdict is about which CPU processed each SYN, with client
// threads pinned to the CPUs this process may use; in a 2-vCPU guest those are all the CPUs
// there are, and another variant's softirq work on them is what the case must not see.
RP_RUNS_ALONE(incoming_cpu);
RP_CASE(incoming_cpu,
        ::testing::Values(Variant{Family::V4, When::BeforeListen}, Variant{Family::V4, When::AfterAllListen},
                          Variant{Family::V6, When::BeforeListen}, Variant{Family::V6, When::AfterAllListen}));

}  // namespace
}  // namespace rp::cases
