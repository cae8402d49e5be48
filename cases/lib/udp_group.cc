#include "cases/lib/udp_group.h"

#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <map>
#include <stdexcept>

#include "cases/lib/case.h"
#include "cases/lib/cpu.h"
#include "cases/lib/flows_by_port.h"
#include "harness/error.h"
#include "probes/netstat.h"

namespace rp::cases {

UdpGroup open_udp_group(Family family, uint16_t port, int k, int victim_rcvbuf, uint16_t first_port, int flows) {
  UdpGroup g;
  g.addr = Endpoint::loopback(family, port);
  ListenerOptions lo;
  lo.proto = Proto::Udp;
  lo.addr = g.addr;
  for (int i = 0; i < k; ++i) g.members.push_back(open_listener(lo));
  for (int i = 0; i < flows; ++i) g.ports.push_back(static_cast<uint16_t>(first_port + i));
  UdpFlowTally t;
  g.member_of = udp_socket_per_datagram(g.members, g.addr, g.ports, t);
  for (size_t i = 0; i < g.ports.size(); ++i)
    if (g.member_of[i] < 0) throw std::runtime_error("probe datagram from port " + std::to_string(g.ports[i]) + " lost");
  if (t.strangers != 0) throw std::runtime_error(std::to_string(t.strangers) + " probe datagrams landed twice or from elsewhere");
  // Only now: the probe's batches of 100 would overflow a small buffer.
  if (victim_rcvbuf > 0)
    check_sys(setsockopt(g.members[g.victim].get(), SOL_SOCKET, SO_RCVBUF, &victim_rcvbuf, sizeof victim_rcvbuf),
              "setsockopt SO_RCVBUF");
  return g;
}

namespace {

// Pins the calling thread to one CPU for its lifetime and restores its mask after.
class PinnedToOneCpu {
 public:
  PinnedToOneCpu() {
    check_sys(sched_getaffinity(0, sizeof old_, &old_), "sched_getaffinity");
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(allowed_cpus(1).at(0), &one);
    check_sys(sched_setaffinity(0, sizeof one, &one), "sched_setaffinity");
  }
  ~PinnedToOneCpu() { sched_setaffinity(0, sizeof old_, &old_); }
  PinnedToOneCpu(const PinnedToOneCpu&) = delete;
  PinnedToOneCpu& operator=(const PinnedToOneCpu&) = delete;

 private:
  cpu_set_t old_;
};

}  // namespace

UdpRound udp_round(UdpGroup& g, uint32_t tag, bool victim_closed) {
  UdpRound r;
  sockaddr_storage dst;
  const socklen_t dst_len = g.addr.to_sockaddr(dst);
  std::vector<size_t> order;
  for (size_t i = 0; i < g.ports.size(); ++i)
    if (g.member_of[i] == static_cast<int32_t>(g.victim)) order.push_back(i);
  r.to_victim = order.size();
  for (size_t i = 0; i < g.ports.size(); ++i)
    if (g.member_of[i] != static_cast<int32_t>(g.victim)) order.push_back(i);
  const uint64_t expected_at_others = victim_closed ? g.ports.size() : g.ports.size() - r.to_victim;
  {
    PinnedToOneCpu pin;
    for (size_t i : order) {
      UniqueFd c(static_cast<int>(check_sys(socket(af_of(g.addr.family), SOCK_DGRAM | SOCK_CLOEXEC, 0), "socket udp client")));
      sockaddr_storage src;
      const Endpoint from = Endpoint::loopback(g.addr.family, g.ports[i]);
      const socklen_t len = from.to_sockaddr(src);
      check_sys(bind(c.get(), reinterpret_cast<sockaddr*>(&src), len), "bind udp source " + from.str());
      const uint32_t index = tag + static_cast<uint32_t>(i);
      check_sys(sendto(c.get(), &index, sizeof index, 0, reinterpret_cast<sockaddr*>(&dst), dst_len),
                "sendto " + g.addr.str());
      ++r.sent;
    }
  }
  std::vector<bool> seen(g.ports.size(), false);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2) * timeout_scale();
  while (r.read_by_others < expected_at_others && std::chrono::steady_clock::now() < deadline) {
    std::vector<pollfd> pfds;
    for (size_t s = 0; s < g.members.size(); ++s)
      pfds.push_back({s == g.victim ? -1 : g.members[s].get(), POLLIN, 0});
    if (poll(pfds.data(), pfds.size(), 100) < 0 && errno != EINTR) throw_sys("poll udp members");
    for (size_t s = 0; s < g.members.size(); ++s) {
      if (s == g.victim || !g.members[s]) continue;
      for (;;) {
        uint32_t index = 0;
        const ssize_t n = recv(g.members[s].get(), &index, sizeof index, MSG_DONTWAIT);
        if (n < 0) {
          if (errno == EAGAIN || errno == EINTR) break;
          throw_sys("recv udp member");
        }
        const uint32_t i = index - tag;
        const bool known = n == sizeof index && index >= tag && i < g.ports.size() && !seen[i];
        const bool right = known && (victim_closed || g.member_of[i] == static_cast<int32_t>(s));
        if (!right) {
          ++r.misdelivered;
          continue;
        }
        seen[i] = true;
        ++r.read_by_others;
      }
    }
  }
  r.others_missing = expected_at_others - r.read_by_others;
  return r;
}

uint64_t drain_udp(int fd) {
  uint64_t n = 0;
  for (;;) {
    char buf[64];
    if (recv(fd, buf, sizeof buf, MSG_DONTWAIT) < 0) {
      if (errno == EAGAIN) return n;
      if (errno == EINTR) continue;
      throw_sys("recv drain");
    }
    ++n;
  }
}

uint64_t udp_rmem_alloc(int fd) {
  uint32_t mem[SK_MEMINFO_VARS] = {};
  socklen_t len = sizeof mem;
  check_sys(getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mem, &len), "getsockopt SO_MEMINFO");
  return mem[SK_MEMINFO_RMEM_ALLOC];
}

UdpCounters read_udp_counters(Family family) {
  const auto m = probes::netstat::read_udp_mib(family == Family::V6);
  return UdpCounters{m.rcvbuf_errors, m.in_errors, m.no_ports};
}

}  // namespace rp::cases
