#include "harness/udp_client.h"

#include <poll.h>
#include <sys/socket.h>

#include <stdexcept>

#include "harness/clock.h"
#include "harness/error.h"
#include "harness/socket.h"
#include "harness/wire.h"

namespace rp {

UdpTally tally(const std::vector<UdpExchange>& xs) {
  UdpTally t;
  for (const auto& x : xs) {
    ++t.sent;
    if (x.listener < 0) {
      ++t.lost;
    } else {
      ++t.answered;
      ++t.by_listener[x.listener];
    }
  }
  return t;
}

UdpClient::UdpClient(UdpClientOptions opts) : opts_(std::move(opts)) {
  if (opts_.target.port == 0) throw std::invalid_argument("UdpClient: the target needs a port");
  if (opts_.window == 0) throw std::invalid_argument("UdpClient: window must be at least 1");
  if (opts_.reply_timeout.count() <= 0) throw std::invalid_argument("UdpClient: reply_timeout must be positive");
}

namespace {

void send_request(int fd, const Endpoint& target) {
  sockaddr_storage ss;
  socklen_t len = target.to_sockaddr(ss);
  check_sys(sendto(fd, wire::kRequest, sizeof wire::kRequest, 0, reinterpret_cast<sockaddr*>(&ss), len),
            "sendto udp " + target.str());
}

// Reads whatever replies are queued on fd; returns the listener of the last valid one, or
// -1. A datagram that is not a reply (wrong size or magic) is ignored.
int32_t read_reply(int fd) {
  int32_t who = -1;
  for (;;) {
    char buf[64];
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      // ECONNREFUSED: an ICMP port unreachable for an earlier datagram; nothing listened.
      if (errno == EAGAIN || errno == ECONNREFUSED) return who;
      throw_sys("recv udp reply");
    }
    uint32_t id;
    if (n == sizeof(wire::Reply) && wire::parse_reply(buf, id)) who = static_cast<int32_t>(id);
  }
}

}  // namespace

std::vector<UdpExchange> UdpClient::from_ports(const std::vector<uint16_t>& ports) const {
  std::vector<UdpExchange> out;
  out.reserve(ports.size());
  for (size_t base = 0; base < ports.size(); base += opts_.window) {
    const size_t n = std::min(opts_.window, ports.size() - base);
    std::vector<UniqueFd> fds;
    std::vector<pollfd> pfds(n);
    std::vector<UdpExchange> xs(n);
    for (size_t i = 0; i < n; ++i) {
      fds.push_back(open_udp_source(opts_.target.family, ports[base + i]));
      xs[i].source_port = local_port(fds[i].get());
      pfds[i] = {fds[i].get(), POLLIN, 0};
    }
    for (size_t i = 0; i < n; ++i) send_request(fds[i].get(), opts_.target);
    size_t pending = n;
    const uint64_t deadline = monotonic_ns() + static_cast<uint64_t>(opts_.reply_timeout.count()) * 1000000;
    while (pending > 0) {
      const uint64_t now = monotonic_ns();
      if (now >= deadline) break;
      int rc = poll(pfds.data(), pfds.size(), static_cast<int>((deadline - now) / 1000000 + 1));
      if (rc < 0 && errno == EINTR) continue;
      check_sys(rc, "poll udp replies");
      for (size_t i = 0; i < n; ++i) {
        if (pfds[i].fd < 0 || !(pfds[i].revents & (POLLIN | POLLERR))) continue;
        int32_t who = read_reply(pfds[i].fd);
        if (who >= 0) {
          xs[i].listener = who;
          pfds[i].fd = -1;  // poll ignores negative fds
          --pending;
        }
      }
    }
    out.insert(out.end(), xs.begin(), xs.end());
  }
  return out;
}

std::vector<UdpExchange> UdpClient::from_one_port(uint16_t port, unsigned count) const {
  UniqueFd fd = open_udp_source(opts_.target.family, port);
  const uint16_t bound = local_port(fd.get());
  std::vector<UdpExchange> out;
  out.reserve(count);
  for (unsigned k = 0; k < count; ++k) {
    UdpExchange x;
    x.source_port = bound;
    send_request(fd.get(), opts_.target);
    const uint64_t deadline = monotonic_ns() + static_cast<uint64_t>(opts_.reply_timeout.count()) * 1000000;
    for (;;) {
      const uint64_t now = monotonic_ns();
      if (now >= deadline) break;
      pollfd p{fd.get(), POLLIN, 0};
      int rc = poll(&p, 1, static_cast<int>((deadline - now) / 1000000 + 1));
      if (rc < 0 && errno == EINTR) continue;
      check_sys(rc, "poll udp reply");
      if (rc == 0) continue;
      x.listener = read_reply(fd.get());
      if (x.listener >= 0) break;
    }
    out.push_back(x);
  }
  return out;
}

int32_t tcp_flow_from(const Endpoint& target, uint16_t sport) {
  UniqueFd fd(static_cast<int>(
      check_sys(socket(af_of(target.family), SOCK_STREAM | SOCK_CLOEXEC, 0), "socket tcp client")));
  int one = 1;
  check_sys(setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one), "setsockopt SO_REUSEADDR");
  timeval tv{3, 0};
  check_sys(setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), "setsockopt SO_RCVTIMEO");
  check_sys(setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv), "setsockopt SO_SNDTIMEO");
  sockaddr_storage ss;
  const Endpoint src = Endpoint::loopback(target.family, sport);
  socklen_t len = src.to_sockaddr(ss);
  check_sys(bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len), "bind tcp source " + src.str());
  len = target.to_sockaddr(ss);
  check_sys(connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len), "connect " + src.str() + " -> " + target.str());
  check_sys(send(fd.get(), wire::kRequest, sizeof wire::kRequest, MSG_NOSIGNAL), "send request from " + src.str());
  char buf[sizeof(wire::Reply)];
  size_t got = 0;
  while (got < sizeof buf) {
    ssize_t n = recv(fd.get(), buf + got, sizeof buf - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw SysError("recv reply on " + src.str(), n == 0 ? ECONNABORTED : errno);
    got += static_cast<size_t>(n);
  }
  uint32_t id;
  if (!wire::parse_reply(buf, id)) throw std::runtime_error("malformed reply on " + src.str());
  char c;
  while (recv(fd.get(), &c, 1, 0) > 0) {
  }
  linger lg{1, 0};
  check_sys(setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg), "setsockopt SO_LINGER");
  return static_cast<int32_t>(id);
}

}  // namespace rp
