// The data of `reuseport-check group` and the logic that needs no kernel: which members form
// a group (the kernel's reuseport_id where the socket iterator gave it, otherwise inferred
// from what the kernel's own join rule compares), each member's share of the new
// connections or datagrams of its group, and who joined or left between two samples.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "harness/sockdiag.h"

namespace rp::group {

struct Owner {
  int pid = 0;
  int ppid = 0;
  std::string comm;
  std::uint64_t start_ticks = 0;  // /proc/PID/stat starttime: clock ticks after boot
  double start_time = 0;          // the same as a Unix time (btime + ticks / CLK_TCK)
  std::vector<int> fds;           // its descriptors of the socket
};

// What the kernel said about the socket's reuseport group (the iterator's record).
struct KernelGroup {
  bool reuseport = false;
  bool has_group = false;
  // The group's number in this run: the collector numbers the kernel's groups (by the
  // address of sk_reuseport_cb) in the order it first meets them, so a label stays the same
  // from one sample to the next.
  int number = 0;
  // The kernel's id; not unique on kernels that hand it out lazily (bpf/reuseport_group.h).
  std::uint32_t reuseport_id = 0;
  std::uint16_t num_socks = 0;
  std::uint16_t num_closed_socks = 0;
  bool has_prog = false;
  std::uint32_t prog_id = 0;
  std::string prog_type, prog_attach_type, prog_name;
};

struct Member {
  SocketDiag diag;
  std::vector<Owner> owners;
  std::optional<int> incoming_cpu;   // nullopt: not observable (see the sample's reasons)
  std::optional<bool> reuseport;     // SO_REUSEPORT, from the iterator or getsockopt
  std::optional<KernelGroup> kernel;
  std::string group;                 // the label assign_groups() gave
  std::optional<std::uint64_t> fresh;  // new connections/datagrams over the interval
  std::optional<double> share;       // fresh / the group's fresh; nullopt when unknown or 0
};

struct Group {
  std::string label;  // "kernel group 2" or "inferred tcp4 127.0.0.1:80 uid 0"
  bool from_kernel = false;
  std::optional<std::uint32_t> reuseport_id;
  std::optional<std::uint16_t> kernel_num_socks;
  std::vector<std::uint64_t> cookies;
  std::optional<std::uint64_t> fresh;
  // The steering program when observable (from_kernel), as JSON {id, type, attach_type,
  // name}, or null with program_why.
  nlohmann::json program;
  std::string program_why;
};

// Sets Member::group and returns the groups, in order of first member. A member the kernel
// described is grouped by its group's number (a socket without SO_REUSEPORT is a group of one);
// the others by what reuseport_add_sock()'s callers compare before a socket may join:
// protocol, family, bound address, port, bound device and owner uid (the same-euid rule),
// plus IPV6_V6ONLY for AF_INET6.
std::vector<Group> assign_groups(std::vector<Member>& members);

// fresh_by_cookie: counts since the previous sample (nullopt: not observable). Sets
// Member::fresh/share and Group::fresh. A member absent from the map has 0 (it received
// nothing: the counters only hold sockets that received something).
void assign_shares(std::vector<Member>& members, std::vector<Group>& groups,
                   const std::optional<std::map<std::uint64_t, std::uint64_t>>& fresh_by_cookie);

// Counters since attach at two moments -> counts in between (a cookie new in `now` counts
// from 0; counters never go down, a smaller value is taken as a restart from 0).
std::map<std::uint64_t, std::uint64_t> delta(const std::map<std::uint64_t, std::uint64_t>& now,
                                             const std::map<std::uint64_t, std::uint64_t>& before);

struct Change {
  std::vector<std::uint64_t> joined, left;
};
Change diff(const std::set<std::uint64_t>& before, const std::set<std::uint64_t>& now);

nlohmann::json to_json(const Member& m);
nlohmann::json to_json(const Group& g);

}  // namespace rp::group
