// RAII loader for bpf/reuseport_group.bpf.c: what the kernel itself says about the
// reuseport group of each socket on a port (sk->sk_reuseport_cb: the group's id, size and
// steering program), read with a socket iterator in the calling thread's network
// namespace, and datagrams queued per UDP socket of the port.
//
//   rp::probes::GroupIterator it({.port = 8080});
//   for (const auto& m : it.read(IPPROTO_TCP)) ... m.reuseport_id, m.prog_name
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace rp::probes {

struct GroupMemberKernel {
  std::uint64_t cookie = 0;
  bool reuseport = false;  // SO_REUSEPORT is set on the socket
  bool has_group = false;  // sk_reuseport_cb is set (the socket is in a group)
  std::uint64_t group = 0;  // the group's identity (a kernel address, only compared)
  std::uint32_t reuseport_id = 0;
  std::uint16_t num_socks = 0;
  std::uint16_t num_closed_socks = 0;
  int incoming_cpu = -1;
  std::uint8_t state = 0;
  bool has_prog = false;
  std::uint32_t prog_id = 0;  // 0: a classic BPF program (SO_ATTACH_REUSEPORT_CBPF has no id)
  std::uint32_t prog_type = 0;
  std::uint32_t prog_attach_type = 0;
  std::string prog_name;
};

class GroupIterator {
 public:
  struct Options {
    std::uint16_t port = 0;
    // Also count datagrams queued per UDP socket of the port (tp_btf/sk_data_ready).
    bool count_udp = false;
    std::uint64_t netns_cookie = 0;  // the filter of that count; 0: every namespace
  };
  // Throws ProbeError (probes/reuseport_probe.h) when the iterators cannot be loaded or
  // attached; a UDP count that cannot be attached shows in udp_why() instead.
  explicit GroupIterator(const Options& options);
  ~GroupIterator();
  GroupIterator(const GroupIterator&) = delete;
  GroupIterator& operator=(const GroupIterator&) = delete;

  // One pass of iter/tcp (listeners) or iter/udp over the calling thread's namespace.
  std::vector<GroupMemberKernel> read(int protocol) const;
  // Datagrams queued per socket cookie since attach; nullopt when not counted (udp_why()).
  std::optional<std::map<std::uint64_t, std::uint64_t>> udp_queued() const;
  const std::string& udp_why() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// "sk_reuseport", "socket_filter", ... for an enum bpf_prog_type value.
std::string prog_type_name(std::uint32_t type);
// "sk_reuseport_select_or_migrate", ... for an sk_reuseport program; "" for other types,
// whose expected_attach_type is not set by SO_ATTACH_REUSEPORT_EBPF's callers.
std::string attach_type_name(std::uint32_t prog_type, std::uint32_t attach_type);

}  // namespace rp::probes
