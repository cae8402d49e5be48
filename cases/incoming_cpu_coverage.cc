// incoming_cpu_coverage
//
// SO_INCOMING_CPU in a group where not every member sets it. After b261eda84ec1
// "soreuseport: Fix socket selection for SO_INCOMING_CPU." (v6.2; stable 6.1.2, 6.0.16),
// reuseport_select_sock_by_hash() (net/core/sock_reuseport.c) starts at the hashed slot and,
// while the group counts any member with the option (reuse->incoming_cpu), walks the whole
// group for a socket whose sk_incoming_cpu is the current CPU, falling back to the first
// listener it met. So when the CPU-bound members cover every CPU the SYNs arrive on, a
// member without the option gets nothing, whatever the hash says; the count follows the
// option as set with setsockopt() before SO_REUSEPORT, before listen() or after it
// (reuseport_update_incoming_cpu(), __reuseport_add_sock()). Likewise a new generation of
// listeners without the option gets nothing while the old generation with it listens, and
// everything once the old one is closed (the group's count drops to 0: plain hashing).
// Selftest tools/testing/selftests/net/so_incoming_cpu.c covers the CPU-bound members; the
// uncovered member and the generations are this case's.
//
// Scenario, per variant (when the option is set, or the generation change):
//   1. In a fresh network namespace, on 127.0.0.1:P, SO_REUSEPORT TCP listeners: L0 with
//      SO_INCOMING_CPU = the first CPU this process may run on, L1 = the second, and U
//      without the option. The option is set before SO_REUSEPORT and bind(), between
//      bind() and listen(), or after all listen, as the variant says.
//      "new_generation": L0 and L1 listen with the option; then N0 and N1 without it join.
//   2. For each of the two CPUs, a client thread pinned to it opens 32 connections; then
//      all accept queues are drained and counted.
//   3. "new_generation" then closes L0 and L1 and connects again (32 per CPU).
//      "member_without_joined_and_left": L0 and L1 with the option, then U joins and is
//      closed before the clients connect (so_incoming_cpu.c's test2).
//   4. Compare with cases/expectations.json.

#include <gtest/gtest.h>

#include "cases/lib/case_test.h"
#include "cases/lib/cpu.h"
#include "harness/error.h"
#include "harness/socket.h"

namespace rp::cases {
namespace {

enum class When { BeforeReuseport, BeforeListen, AfterListen, NewGeneration, JoinedAndLeft };

struct Variant {
  When when;
  std::string name() const {
    switch (when) {
      case When::BeforeReuseport: return "uncovered_member_set_before_reuseport";
      case When::BeforeListen: return "uncovered_member_set_before_listen";
      case When::AfterListen: return "uncovered_member_set_after_listen";
      case When::NewGeneration: return "new_generation_without";
      case When::JoinedAndLeft: return "member_without_joined_and_left";
    }
    return "?";
  }
};

constexpr uint16_t kPort = 47820;
constexpr int kClientsPerCpu = 32;

void set_incoming_cpu(int fd, int cpu) {
  check_sys(setsockopt(fd, SOL_SOCKET, SO_INCOMING_CPU, &cpu, sizeof cpu), "setsockopt SO_INCOMING_CPU");
}

const Endpoint kAddr = Endpoint::loopback(Family::V4, kPort);

// A TCP socket; with `cpu` >= 0 and `early`, SO_INCOMING_CPU is set before SO_REUSEPORT.
UniqueFd member(int cpu, bool early) {
  UniqueFd s(static_cast<int>(check_sys(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), "socket")));
  if (cpu >= 0 && early) set_incoming_cpu(s.get(), cpu);
  const int one = 1;
  check_sys(setsockopt(s.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one), "setsockopt SO_REUSEPORT");
  sockaddr_storage ss;
  const socklen_t len = kAddr.to_sockaddr(ss);
  check_sys(bind(s.get(), reinterpret_cast<sockaddr*>(&ss), len), "bind " + kAddr.str());
  return s;
}

uint64_t drain(int fd) {
  uint64_t n = 0;
  for (;;) {
    const int c = accept4(fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (c < 0) {
      if (errno != EAGAIN) throw_sys("accept");
      return n;
    }
    ::close(c);
    ++n;
  }
}

// Connections from each CPU in turn; got[i][l]: from cpus[i], accepted by listeners[l].
std::vector<std::vector<uint64_t>> round(const std::vector<int>& cpus, const std::vector<int>& listeners) {
  std::vector<std::vector<uint64_t>> got;
  for (int cpu : cpus) {
    const std::vector<UniqueFd> clients = connect_from_cpu(cpu, kAddr, kClientsPerCpu);
    std::vector<uint64_t> row;
    for (int l : listeners) row.push_back(drain(l));
    got.push_back(row);
  }
  return got;
}

nlohmann::json scenario(const Variant& v) {
  const std::vector<int> cpus = allowed_cpus(2);
  if (cpus.size() < 2) throw std::runtime_error("fewer than 2 CPUs available (the two_cpus feature should have skipped)");
  nlohmann::json o;
  o["expected_connections"] = 2 * kClientsPerCpu;

  if (v.when == When::JoinedAndLeft) {
    // so_incoming_cpu.c's test2: a member without the option joins the CPU-bound group and
    // leaves before any client; the group's count of members with the option must not move.
    UniqueFd l0 = member(cpus[0], false), l1 = member(cpus[1], false);
    set_incoming_cpu(l0.get(), cpus[0]);
    set_incoming_cpu(l1.get(), cpus[1]);
    for (int fd : {l0.get(), l1.get()}) check_sys(listen(fd, 256), "listen " + kAddr.str());
    {
      UniqueFd u = member(-1, false);
      check_sys(listen(u.get(), 256), "listen " + kAddr.str());
    }
    const auto got = round(cpus, {l0.get(), l1.get()});
    o["connections"] = got[0][0] + got[0][1] + got[1][0] + got[1][1];
    o["to_listener_of_their_cpu"] = got[0][0] + got[1][1];
    o["accepted_per_client_cpu"] = got;
    return o;
  }
  if (v.when != When::NewGeneration) {
    const bool early = v.when == When::BeforeReuseport;
    UniqueFd l0 = member(cpus[0], early), l1 = member(cpus[1], early), u = member(-1, false);
    if (v.when == When::BeforeListen) {
      set_incoming_cpu(l0.get(), cpus[0]);
      set_incoming_cpu(l1.get(), cpus[1]);
    }
    for (int fd : {l0.get(), l1.get(), u.get()}) check_sys(listen(fd, 256), "listen " + kAddr.str());
    if (v.when == When::AfterListen) {
      set_incoming_cpu(l0.get(), cpus[0]);
      set_incoming_cpu(l1.get(), cpus[1]);
    }
    const auto got = round(cpus, {l0.get(), l1.get(), u.get()});
    o["connections"] = got[0][0] + got[0][1] + got[0][2] + got[1][0] + got[1][1] + got[1][2];
    o["to_listener_of_their_cpu"] = got[0][0] + got[1][1];
    o["to_member_without_option"] = got[0][2] + got[1][2];
    o["accepted_per_client_cpu"] = got;
    return o;
  }

  UniqueFd l0 = member(cpus[0], false), l1 = member(cpus[1], false);
  set_incoming_cpu(l0.get(), cpus[0]);
  set_incoming_cpu(l1.get(), cpus[1]);
  for (int fd : {l0.get(), l1.get()}) check_sys(listen(fd, 256), "listen " + kAddr.str());
  UniqueFd n0 = member(-1, false), n1 = member(-1, false);
  for (int fd : {n0.get(), n1.get()}) check_sys(listen(fd, 256), "listen " + kAddr.str());
  const auto both = round(cpus, {l0.get(), l1.get(), n0.get(), n1.get()});
  o["connections"] = both[0][0] + both[0][1] + both[0][2] + both[0][3] + both[1][0] + both[1][1] + both[1][2] + both[1][3];
  o["to_listener_of_their_cpu"] = both[0][0] + both[1][1];
  o["to_new_generation"] = both[0][2] + both[0][3] + both[1][2] + both[1][3];
  o["accepted_per_client_cpu"] = both;
  l0.reset();
  l1.reset();
  const auto after = round(cpus, {n0.get(), n1.get()});
  o["to_new_generation_after_old_closed"] = after[0][0] + after[0][1] + after[1][0] + after[1][1];
  return o;
}

// Alone under `run -j`, as incoming_cpu: the verdict is about the CPU that processed each
// SYN, with client threads pinned to the CPUs this process may use.
RP_RUNS_ALONE(incoming_cpu_coverage);
RP_CASE(incoming_cpu_coverage,
        ::testing::Values(Variant{When::BeforeReuseport}, Variant{When::BeforeListen}, Variant{When::AfterListen},
                          Variant{When::NewGeneration}, Variant{When::JoinedAndLeft}));

}  // namespace
}  // namespace rp::cases
