// What the kernel says about the TCP listeners on a port of the current network namespace,
// through NETLINK_SOCK_DIAG (what `ss -lnt` reads): for a listener, the receive queue is
// the accept-queue length and the send queue its backlog.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace rp {

struct ListenInfo {
  uint64_t inode = 0;
  int family = 0;
  uint32_t accept_queue = 0;  // children waiting for accept()
  uint32_t backlog = 0;       // sk_max_ack_backlog
};

std::vector<ListenInfo> tcp_listeners(uint16_t port);
std::optional<ListenInfo> tcp_listener_by_inode(uint16_t port, uint64_t inode);

}  // namespace rp
