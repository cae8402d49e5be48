#include "cases/lib/cpu.h"

#include <sched.h>

#include <stdexcept>
#include <string>
#include <thread>

#include "harness/error.h"

namespace rp::cases {

std::vector<int> allowed_cpus(size_t n) {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  check_sys(sched_getaffinity(0, sizeof allowed, &allowed), "sched_getaffinity");
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE && cpus.size() < n; ++c)
    if (CPU_ISSET(c, &allowed)) cpus.push_back(c);
  return cpus;
}

std::vector<UniqueFd> connect_from_cpu(int cpu, const Endpoint& to, int n, Proto proto) {
  std::vector<UniqueFd> clients;
  std::string error;
  // A thread of its own, so that pinning it leaves the caller's affinity alone.
  std::thread t([&] {
    try {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(cpu, &one);
      check_sys(sched_setaffinity(0, sizeof one, &one), "sched_setaffinity CPU " + std::to_string(cpu));
      sockaddr_storage ss;
      const socklen_t len = to.to_sockaddr(ss);
      for (int k = 0; k < n; ++k) {
        const int type = proto == Proto::Tcp ? SOCK_STREAM : SOCK_DGRAM;
        UniqueFd c(static_cast<int>(check_sys(socket(af_of(to.family), type | SOCK_CLOEXEC, 0), "socket client")));
        if (proto == Proto::Tcp) {
          check_sys(connect(c.get(), reinterpret_cast<sockaddr*>(&ss), len), "connect " + to.str());
        } else {
          const char byte = 'x';
          check_sys(sendto(c.get(), &byte, 1, 0, reinterpret_cast<sockaddr*>(&ss), len), "sendto " + to.str());
        }
        clients.push_back(std::move(c));
      }
    } catch (const std::exception& e) {
      error = e.what();
    }
  });
  t.join();
  if (!error.empty()) throw std::runtime_error(error);
  return clients;
}

}  // namespace rp::cases
