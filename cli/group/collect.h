// Gathers the members of a port's reuseport groups in the calling process's network
// namespace: sock_diag for the sockets, the socket iterator (probes/reuseport_group.h) for
// the kernel's group, program and SO_INCOMING_CPU, /proc/*/fd for the owners, pidfd_getfd(2)
// where the iterator is missing, and the counters of new connections (the reuseport probe's
// per-listener children) or datagrams (the group stem's UDP count) for the shares.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli/group/model.h"

namespace rp::group {

// inode -> the processes holding it, from every /proc/PID/fd (the host's /proc: the
// target's processes are visible there whatever their pid namespace).
std::map<std::uint64_t, std::vector<Owner>> socket_owners();

struct Sample {
  std::vector<Member> members;
  std::vector<Group> groups;
  // New connections/datagrams of sockets of the port that are no members now: they left
  // during the interval (a listener closed after it took its share), or joined and left
  // within it. Without them the samples would not add up to the traffic.
  std::map<std::uint64_t, std::uint64_t> gone;
};

class Collector {
 public:
  // Loads what it can; what the kernel or build cannot give is in not_observable().
  Collector(int protocol, std::uint16_t port);
  ~Collector();
  // The port's members now, shares over the time since the previous collect() (the
  // constructor takes the first baseline).
  Sample collect();

  // key ("group", "program", "share", "incoming_cpu", "owners", ...) -> where it comes from.
  const std::map<std::string, std::string>& sources() const { return sources_; }
  // key -> why the running kernel (or this build) cannot observe it.
  const std::map<std::string, std::string>& not_observable() const { return not_observable_; }

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
  std::map<std::string, std::string> sources_, not_observable_;
};

}  // namespace rp::group
