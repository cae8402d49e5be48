// What the kernel says about the TCP listeners on a port of the current network namespace,
// through NETLINK_SOCK_DIAG (what `ss -lnt` reads): for a listener, the receive queue is
// the accept-queue length and the send queue its backlog.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
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

// One socket bound to a port, as sock_diag reports it: what `reuseport-check group` lists
// per member. For a TCP listener rqueue is the accept queue and wqueue the backlog; for UDP
// they are the bytes allocated to the receive and send queues.
struct SocketDiag {
  int protocol = 0;  // IPPROTO_TCP or IPPROTO_UDP
  int family = 0;    // AF_INET or AF_INET6
  std::string address;  // the bound address as text ("0.0.0.0", "::1")
  uint16_t port = 0;
  uint8_t state = 0;    // TCP_LISTEN; for UDP TCP_CLOSE (unconnected) or TCP_ESTABLISHED (connected)
  uint64_t inode = 0;
  uint64_t cookie = 0;  // the same value as SO_COOKIE and bpf_get_socket_cookie()
  uint32_t uid = 0;
  uint32_t bound_ifindex = 0;  // SO_BINDTODEVICE, 0 when unbound
  uint32_t rqueue = 0;
  uint32_t wqueue = 0;
  // INET_DIAG_SKV6ONLY: sent for AF_INET6 sockets in LISTEN or CLOSE only (inet_diag.c).
  std::optional<bool> v6only;
  // INET_DIAG_SKMEMINFO[SK_MEMINFO_DROPS]: packets dropped on this socket (a full receive
  // buffer, a filter); absent on kernels that do not send the attribute.
  std::optional<uint32_t> drops;
};

// Every TCP listener (protocol IPPROTO_TCP) or every UDP socket (IPPROTO_UDP, connected or
// not) bound to `port` in this network namespace, IPv4 and IPv6.
std::vector<SocketDiag> port_sockets(int protocol, uint16_t port);
// Every local port some UDP socket of this namespace is bound to.
std::set<uint16_t> udp_bound_ports();

// SOCK_DESTROY (CONFIG_INET_DIAG_DESTROY, what `ss -K` sends) of the IPv4 TCP socket with
// this local and remote address, network byte order as in sockaddr_in: tcp_abort() runs in
// the calling thread (an RST if the state needs one, then CLOSE), also for a child still
// in an accept queue, which no file descriptor reaches. Throws naming the errno.
void tcp_destroy(uint32_t local_addr, uint16_t local_port, uint32_t remote_addr, uint16_t remote_port);

}  // namespace rp
