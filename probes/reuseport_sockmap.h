// RAII loader for bpf/reuseport_sockmap.bpf.c: an sk_reuseport program that selects a
// group's socket from a SOCKMAP, SOCKHASH or REUSEPORT_SOCKARRAY (attached by fd to a socket
// of the group with SO_ATTACH_REUSEPORT_EBPF), and an sk_lookup program that assigns a
// socket to packets for another port (attached to the calling thread's network namespace by
// a BPF link, which this object holds: the program stops with the link's fd, i.e. when
// detach_netns() runs or this object is destroyed, and with the namespace).
//
//   rp::probes::ReuseportSockmap lookup(rp::probes::SockmapProgram::LookupAssign);
//   lookup.set_lookup_target(listener_fd);
//   lookup.set_lookup(other_port, 0);
//   lookup.attach_netns();
//   ... traffic to other_port ...  lookup.counts().assigned
#pragma once

#include <cstdint>
#include <memory>

#include "probes/reuseport_steer.h"  // KernelAnswer

namespace rp::probes {

enum class SockmapProgram {
  SelectFromMap,  // SEC("sk_reuseport"): bpf_sk_select_reuseport(map[key]), always SK_PASS
  LookupAssign,   // SEC("sk_lookup"): bpf_sk_assign(lookup_target[0], flags) for one port
};
const char* to_string(SockmapProgram p);

// The map rp_select_from_map() selects from (values of RP_MAP_* in bpf/reuseport_sockmap.h).
enum class SockMap : std::uint32_t { Sockmap = 0, Sockhash = 1, Sockarray = 2 };
const char* to_string(SockMap m);

struct SockmapCounts {
  std::uint64_t select_runs = 0;
  std::uint64_t selected = 0;
  std::uint64_t select_errors = 0;
  std::int64_t last_select_err = 0;  // the helper's last negative errno, 0 if none
  std::uint64_t lookup_runs = 0;
  std::uint64_t assigned = 0;
  std::uint64_t assign_errors = 0;
  std::int64_t last_assign_err = 0;
};

class ReuseportSockmap {
 public:
  // Opens the object and loads only `which`. Throws rp::SysError naming the step.
  explicit ReuseportSockmap(SockmapProgram which);
  ~ReuseportSockmap();
  ReuseportSockmap(const ReuseportSockmap&) = delete;
  ReuseportSockmap& operator=(const ReuseportSockmap&) = delete;

  int prog_fd() const;
  // SelectFromMap: setsockopt(SO_ATTACH_REUSEPORT_EBPF) on a socket of the group.
  void attach(int sock_fd) const;
  // map[key] = the socket. Returns 0 or the errno of the kernel's refusal: which sockets a
  // map takes is itself something a case observes.
  int put(SockMap map, std::uint32_t key, int sock_fd) const;
  void set_select(SockMap map, std::uint32_t key);
  // LookupAssign: the socket it assigns, the local port it acts on and bpf_sk_assign()'s
  // flags (BPF_SK_LOOKUP_F_NO_REUSEPORT or 0).
  void set_lookup_target(int sock_fd) const;
  void set_lookup(std::uint16_t port, std::uint64_t flags);
  // LookupAssign: a BPF link on the calling thread's network namespace
  // (/proc/thread-self/ns/net), held until detach_netns() or destruction.
  void attach_netns();
  void detach_netns();
  SockmapCounts counts() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// As kernel_answer(SteerProgram): a minimal program of the type (and attach type) asked of
// the kernel, so that a failure to load ours is told apart from a kernel that refuses it.
KernelAnswer kernel_answer(SockmapProgram which);

}  // namespace rp::probes
