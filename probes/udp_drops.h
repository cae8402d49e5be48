// RAII loader for bpf/udp_drops.bpf.c: the UDP datagrams to one port in one network
// namespace that the kernel freed as drops (skb:kfree_skb), by the kernel function that
// freed them (its address resolved with /proc/kallsyms) and the drop reason (its name from
// the kernel's BTF enum skb_drop_reason; "" on kernels whose event has no reason, < 5.17).
//
//   rp::probes::UdpDrops d({.port = 8053, .netns_cookie = cookie});
//   for (const auto& x : d.read()) ... x.function ("udp_destruct_common"), x.reason, x.count
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace rp::probes {

struct UdpDrop {
  std::string function;  // the kernel function that freed the datagram, or its address in hex
  std::string reason;    // "NOT_SPECIFIED", "NO_SOCKET", ... (SKB_DROP_REASON_ stripped)
  std::uint64_t count = 0;
  // Neither socket, device nor a remembered queued skb told its namespace: a datagram to
  // the port of any namespace. Not in the namespace's counts; shown so that what stays
  // unattributed has a function and a reason.
  bool netns_unknown = false;

  // Freed with a closed UDP socket's queue in the watched namespace: in the socket's
  // destructor (udp_destruct_sock/udp_destruct_common; reason NOT_SPECIFIED, or QUEUE_PURGE).
  bool purged_at_close() const {
    return !netns_unknown && (function.find("destruct") != std::string::npos || reason == "QUEUE_PURGE");
  }
};

class UdpDrops {
 public:
  struct Options {
    std::uint16_t port = 0;
    std::uint64_t netns_cookie = 0;  // 0: see netns_ino
    std::uint32_t netns_ino = 0;     // where there is no cookie (< 5.14); both 0: every namespace
  };
  // This thread's network namespace: its cookie, or its inode where the kernel gives no
  // cookie to user space.
  static Options for_current_netns(std::uint16_t port);
  // Throws ProbeError (probes/reuseport_probe.h) when the program cannot be loaded or attached.
  explicit UdpDrops(const Options& options);
  ~UdpDrops();
  UdpDrops(const UdpDrops&) = delete;
  UdpDrops& operator=(const UdpDrops&) = delete;

  std::vector<UdpDrop> read() const;  // since attach, by function and reason
  // Drops of the port whose namespace could not be told (no socket, no device): not counted
  // above. And drops that found the program's map full.
  std::uint64_t netns_unknown() const;
  // Why a datagram freed from a closed member's queue, which carries neither socket nor
  // device, cannot be told from another namespace's ("" when it can): then it is counted in
  // netns_unknown() only. It can when the skbs queued on the port's sockets are remembered
  // (tp_btf/sk_data_ready, 6.7+) or, before that, where fentry traces the sockets'
  // destructor; purges_told_by() says which.
  const std::string& queued_not_tracked() const;
  const std::string& purges_told_by() const;
  std::uint64_t overflow() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rp::probes
