#include "harness/sockdiag.h"

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cstring>
#include <stdexcept>

#include "harness/error.h"
#include "harness/fd.h"

namespace rp {

// port 0: every listener of the namespace. state: TCP_LISTEN, or TCP_SYN_RECV (the kernel
// lists its request sockets then).
static void dump_family(int fd, int family, uint16_t port, std::vector<ListenInfo>& out, int state = TCP_LISTEN) {
  struct {
    nlmsghdr nlh;
    inet_diag_req_v2 req;
  } msg{};
  msg.nlh.nlmsg_len = sizeof msg;
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  msg.req.sdiag_family = static_cast<uint8_t>(family);
  msg.req.sdiag_protocol = IPPROTO_TCP;
  msg.req.idiag_states = 1U << state;
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

}  // namespace rp
