#include "harness/sockdiag.h"

#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cstring>
#include <stdexcept>

#include "harness/error.h"
#include "harness/fd.h"

namespace rp {

// One inet_diag request, header and body as the kernel reads them.
struct DiagRequest {
  nlmsghdr nlh;
  inet_diag_req_v2 req;
};

static DiagRequest diag_request(uint16_t type, uint16_t flags, int family, int protocol, uint32_t states) {
  DiagRequest msg{};
  msg.nlh.nlmsg_len = sizeof msg;
  msg.nlh.nlmsg_type = type;
  msg.nlh.nlmsg_flags = static_cast<uint16_t>(NLM_F_REQUEST | flags);
  msg.req.sdiag_family = static_cast<uint8_t>(family);
  msg.req.sdiag_protocol = static_cast<uint8_t>(protocol);
  msg.req.idiag_states = states;
  return msg;
}

// port 0: every listener of the namespace. state: TCP_LISTEN, or TCP_SYN_RECV (the kernel
// lists its request sockets then).
static void dump_family(int fd, int family, uint16_t port, std::vector<ListenInfo>& out, int state = TCP_LISTEN) {
  DiagRequest msg = diag_request(SOCK_DIAG_BY_FAMILY, NLM_F_DUMP, family, IPPROTO_TCP, 1U << state);
  msg.req.id.idiag_sport = htons(port);
  check_sys(send(fd, &msg, sizeof msg, 0), "send sock_diag request");
  alignas(nlmsghdr) char buf[16384];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    check_sys(n, "recv sock_diag reply");
    int len = static_cast<int>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_type == NLMSG_DONE) return;
      if (h->nlmsg_type == NLMSG_ERROR) {
        auto* e = static_cast<nlmsgerr*>(NLMSG_DATA(h));
        throw_sys("sock_diag dump", -e->error);
      }
      auto* m = static_cast<inet_diag_msg*>(NLMSG_DATA(h));
      // The dump filters by state only; the port is checked here.
      if (port != 0 && ntohs(m->id.idiag_sport) != port) continue;
      out.push_back({m->idiag_inode, family, m->idiag_rqueue, m->idiag_wqueue, ntohs(m->id.idiag_sport)});
    }
  }
}

static std::vector<ListenInfo> dump_listeners(uint16_t port) {
  UniqueFd fd(socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (!fd) throw_sys("socket NETLINK_SOCK_DIAG");
  std::vector<ListenInfo> out;
  dump_family(fd.get(), AF_INET, port, out);
  dump_family(fd.get(), AF_INET6, port, out);
  return out;
}

std::vector<ListenInfo> tcp_listeners(uint16_t port) {
  if (port == 0) throw std::invalid_argument("tcp_listeners: port 0 (tcp_listening_ports() lists every port)");
  return dump_listeners(port);
}

uint32_t tcp_requests(uint16_t port) {
  if (port == 0) throw std::invalid_argument("tcp_requests: port 0");
  UniqueFd fd(socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (!fd) throw_sys("socket NETLINK_SOCK_DIAG");
  std::vector<ListenInfo> out;
  dump_family(fd.get(), AF_INET, port, out, TCP_SYN_RECV);
  dump_family(fd.get(), AF_INET6, port, out, TCP_SYN_RECV);
  return static_cast<uint32_t>(out.size());
}

std::set<uint16_t> tcp_listening_ports() {
  std::set<uint16_t> ports;
  for (const auto& l : dump_listeners(0)) ports.insert(l.port);
  return ports;
}

std::optional<ListenInfo> tcp_listener_by_inode(uint16_t port, uint64_t inode) {
  for (const auto& l : tcp_listeners(port))
    if (l.inode == inode) return l;
  return std::nullopt;
}

// One dump of `family` x `protocol` with the attributes group needs; every socket whose
// local port is `port` (0: every port) goes to out.
static void dump_sockets(int fd, int family, int protocol, uint16_t port, std::vector<SocketDiag>& out) {
  // TCP: listeners only (established children share the port but are no group members).
  // UDP: every state; a connected UDP socket stays in its group, though the kernel skips it
  // when it picks a socket for an unconnected flow.
  DiagRequest msg = diag_request(SOCK_DIAG_BY_FAMILY, NLM_F_DUMP, family, protocol,
                                 protocol == IPPROTO_TCP ? 1U << TCP_LISTEN : ~0U);
  msg.req.idiag_ext = 1U << (INET_DIAG_SKMEMINFO - 1);
  check_sys(send(fd, &msg, sizeof msg, 0), "send sock_diag request");
  alignas(nlmsghdr) char buf[32768];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    check_sys(n, "recv sock_diag reply");
    int len = static_cast<int>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_type == NLMSG_DONE) return;
      if (h->nlmsg_type == NLMSG_ERROR) {
        auto* e = static_cast<nlmsgerr*>(NLMSG_DATA(h));
        // A kernel without udp_diag (a module not loaded) answers ENOENT for UDP.
        throw_sys(std::string("sock_diag dump (") + (protocol == IPPROTO_TCP ? "tcp" : "udp") + ")", -e->error);
      }
      auto* m = static_cast<inet_diag_msg*>(NLMSG_DATA(h));
      if (port != 0 && ntohs(m->id.idiag_sport) != port) continue;
      SocketDiag d;
      d.protocol = protocol;
      d.family = m->idiag_family;
      char text[INET6_ADDRSTRLEN] = "?";
      inet_ntop(m->idiag_family, m->id.idiag_src, text, sizeof text);
      d.address = text;
      d.port = ntohs(m->id.idiag_sport);
      d.state = m->idiag_state;
      d.inode = m->idiag_inode;
      d.cookie = static_cast<uint64_t>(m->id.idiag_cookie[0]) | (static_cast<uint64_t>(m->id.idiag_cookie[1]) << 32);
      d.uid = m->idiag_uid;
      d.bound_ifindex = m->id.idiag_if;
      d.rqueue = m->idiag_rqueue;
      d.wqueue = m->idiag_wqueue;
      int alen = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof(*m)));
      for (auto* a = reinterpret_cast<rtattr*>(m + 1); RTA_OK(a, alen); a = RTA_NEXT(a, alen)) {
        if (a->rta_type == INET_DIAG_SKV6ONLY && RTA_PAYLOAD(a) >= 1)
          d.v6only = *static_cast<uint8_t*>(RTA_DATA(a)) != 0;
        if (a->rta_type == INET_DIAG_SKMEMINFO && RTA_PAYLOAD(a) > SK_MEMINFO_DROPS * sizeof(uint32_t))
          d.drops = static_cast<uint32_t*>(RTA_DATA(a))[SK_MEMINFO_DROPS];
      }
      out.push_back(std::move(d));
    }
  }
}

std::vector<SocketDiag> port_sockets(int protocol, uint16_t port) {
  if (protocol != IPPROTO_TCP && protocol != IPPROTO_UDP) throw std::invalid_argument("port_sockets: TCP or UDP only");
  UniqueFd fd(socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (!fd) throw_sys("socket NETLINK_SOCK_DIAG");
  std::vector<SocketDiag> out;
  dump_sockets(fd.get(), AF_INET, protocol, port, out);
  dump_sockets(fd.get(), AF_INET6, protocol, port, out);
  return out;
}

std::set<uint16_t> udp_bound_ports() {
  std::set<uint16_t> ports;
  for (const auto& s : port_sockets(IPPROTO_UDP, 0)) ports.insert(s.port);
  return ports;
}

void tcp_destroy(uint32_t local_addr, uint16_t local_port, uint32_t remote_addr, uint16_t remote_port) {
  DiagRequest msg = diag_request(SOCK_DESTROY, NLM_F_ACK, AF_INET, IPPROTO_TCP, ~0U);
  msg.req.id.idiag_sport = local_port;
  msg.req.id.idiag_dport = remote_port;
  msg.req.id.idiag_src[0] = local_addr;
  msg.req.id.idiag_dst[0] = remote_addr;
  msg.req.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
  msg.req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
  UniqueFd fd(socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (!fd) throw_sys("socket NETLINK_SOCK_DIAG");
  check_sys(send(fd.get(), &msg, sizeof msg, 0), "send SOCK_DESTROY");
  alignas(nlmsghdr) char buf[512];
  const ssize_t n = check_sys(recv(fd.get(), buf, sizeof buf, 0), "recv SOCK_DESTROY ack");
  const auto* h = reinterpret_cast<const nlmsghdr*>(buf);
  if (!NLMSG_OK(h, static_cast<int>(n)) || h->nlmsg_type != NLMSG_ERROR)
    throw std::runtime_error("SOCK_DESTROY: the kernel sent no acknowledgement");
  const int err = -static_cast<const nlmsgerr*>(NLMSG_DATA(h))->error;
  if (err != 0) throw_sys("SOCK_DESTROY", err);
}

}  // namespace rp
