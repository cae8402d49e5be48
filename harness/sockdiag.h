// What the kernel says about the TCP listeners on a port of the current network namespace,
// through NETLINK_SOCK_DIAG (what `ss -lnt` reads): for a listener, the receive queue is
// the accept-queue length and the send queue its backlog.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <vector>

namespace rp {

struct ListenInfo {
  uint64_t inode = 0;
  int family = 0;
  uint32_t accept_queue = 0;  // children waiting for accept()
  uint32_t backlog = 0;       // sk_max_ack_backlog
  uint16_t port = 0;
};

std::vector<ListenInfo> tcp_listeners(uint16_t port);
// Every port some TCP socket listens on in this namespace, IPv4 and IPv6 (what a "nothing
// listened on port P" message lists, so that a server on the wrong port shows).
std::set<uint16_t> tcp_listening_ports();
std::optional<ListenInfo> tcp_listener_by_inode(uint16_t port, uint64_t inode);
// Connection requests (SYN_RECV: SYN answered, final ACK not taken) on the port, IPv4 and
// IPv6, whatever listener of the port they belong to. A listener's close migrates them
// (tcp_migrate_req, an sk_reuseport/migrate program) like its queued children.
uint32_t tcp_requests(uint16_t port);

}  // namespace rp
