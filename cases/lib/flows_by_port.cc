#include "cases/lib/flows_by_port.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <map>
#include <utility>

#include "cases/lib/case.h"
#include "harness/error.h"
#include "harness/socket.h"

namespace rp::cases {

namespace {

void abort_on_close(int fd) {
  linger lg{1, 0};
  check_sys(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), "setsockopt SO_LINGER");
}

}  // namespace

std::vector<int32_t> tcp_listener_per_port(const std::vector<UniqueFd>& listeners, const Endpoint& to,
                                           const std::vector<uint16_t>& ports, TcpFlowTally& t) {
  constexpr size_t kBatch = 500;
  std::vector<int32_t> out(ports.size(), -1);
  sockaddr_storage dst;
  const socklen_t dst_len = to.to_sockaddr(dst);
  const auto wait = std::chrono::seconds(5) * timeout_scale();
  for (size_t first = 0; first < ports.size(); first += kBatch) {
    const size_t n = std::min(kBatch, ports.size() - first);
    std::map<uint16_t, size_t> index;  // source port -> position in `ports`
    std::vector<UniqueFd> clients, children;
    for (size_t i = first; i < first + n; ++i) {
      UniqueFd c(static_cast<int>(check_sys(socket(af_of(to.family), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0),
                                            "socket tcp client")));
      sockaddr_storage src;
      const Endpoint from = Endpoint::loopback(to.family, ports[i]);
      const socklen_t len = from.to_sockaddr(src);
      check_sys(bind(c.get(), reinterpret_cast<sockaddr*>(&src), len), "bind tcp source " + from.str());
      if (connect(c.get(), reinterpret_cast<sockaddr*>(&dst), dst_len) != 0 && errno != EINPROGRESS)
        throw_sys("connect " + from.str() + " -> " + to.str());
      ++t.attempts;
      index[ports[i]] = i;
      clients.push_back(std::move(c));
    }
    size_t got = 0;
    const auto deadline = std::chrono::steady_clock::now() + wait;
    while (got < n && std::chrono::steady_clock::now() < deadline) {
      std::vector<pollfd> pfds;
      for (const UniqueFd& l : listeners) pfds.push_back({l.get(), POLLIN, 0});  // fd -1: ignored by poll
      if (poll(pfds.data(), pfds.size(), 100) < 0 && errno != EINTR) throw_sys("poll listeners");
      for (size_t l = 0; l < listeners.size(); ++l) {
        if (!listeners[l]) continue;
        for (;;) {
          sockaddr_storage peer;
          socklen_t plen = sizeof peer;
          int c = accept4(listeners[l].get(), reinterpret_cast<sockaddr*>(&peer), &plen, SOCK_CLOEXEC);
          if (c < 0) {
            if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) break;
            throw_sys("accept4");
          }
          children.emplace_back(c);
          // sin_port and sin6_port sit at the same offset.
          const uint16_t port = ntohs(reinterpret_cast<sockaddr_in*>(&peer)->sin_port);
          auto it = index.find(port);
          if (it == index.end() || out[it->second] != -1) {
            ++t.strangers;
            continue;
          }
          out[it->second] = static_cast<int32_t>(l);
          ++t.accepted;
          ++got;
        }
      }
    }
    for (const UniqueFd& c : clients) {
      int err = 0;
      socklen_t len = sizeof err;
      check_sys(getsockopt(c.get(), SOL_SOCKET, SO_ERROR, &err, &len), "getsockopt SO_ERROR");
      sockaddr_storage peer;
      socklen_t plen = sizeof peer;
      if (err == 0 && getpeername(c.get(), reinterpret_cast<sockaddr*>(&peer), &plen) == 0) ++t.connected;
      abort_on_close(c.get());
    }
    for (const UniqueFd& c : children) abort_on_close(c.get());
  }
  return out;
}

nlohmann::json tcp_flow_counts(const TcpFlowTally& t) {
  nlohmann::json o;
  o["attempts"] = t.attempts;
  o["connected"] = t.connected;
  o["accepted"] = t.accepted;
  o["unaccepted"] = t.attempts - t.accepted;
  o["accepted_from_elsewhere"] = t.strangers;
  o["ledger_mismatches"] = nlohmann::json::array();
  if (t.connected != t.accepted || t.strangers != 0)
    o["ledger_mismatches"].push_back("clients connected " + std::to_string(t.connected) + ", listeners accepted " +
                                     std::to_string(t.accepted) + " (and " + std::to_string(t.strangers) +
                                     " from ports not asked for, or twice)");
  return o;
}

std::vector<int32_t> udp_socket_per_datagram(const std::vector<UniqueFd>& sockets, const Endpoint& to,
                                             const std::vector<uint16_t>& ports, UdpFlowTally& t) {
  constexpr size_t kBatch = 100;
  std::vector<int32_t> out(ports.size(), -1);
  sockaddr_storage dst;
  const socklen_t dst_len = to.to_sockaddr(dst);
  const auto wait = std::chrono::seconds(2) * timeout_scale();
  for (size_t first = 0; first < ports.size(); first += kBatch) {
    const size_t n = std::min(kBatch, ports.size() - first);
    std::map<uint16_t, UniqueFd> clients;
    for (size_t i = first; i < first + n; ++i) {
      auto it = clients.find(ports[i]);
      if (it == clients.end()) {
        it = clients.emplace(ports[i], open_udp_source(to.family, ports[i], false)).first;
      }
      const uint32_t index = static_cast<uint32_t>(i);
      check_sys(sendto(it->second.get(), &index, sizeof index, 0, reinterpret_cast<sockaddr*>(&dst), dst_len),
                "sendto " + to.str());
      ++t.sent;
    }
    size_t got = 0;
    const auto deadline = std::chrono::steady_clock::now() + wait;
    while (got < n && std::chrono::steady_clock::now() < deadline) {
      std::vector<pollfd> pfds;
      for (const UniqueFd& s : sockets) pfds.push_back({s.get(), POLLIN, 0});  // fd -1: ignored by poll
      if (poll(pfds.data(), pfds.size(), 100) < 0 && errno != EINTR) throw_sys("poll udp sockets");
      for (size_t s = 0; s < sockets.size(); ++s) {
        if (!sockets[s]) continue;
        for (;;) {
          uint32_t index = 0;
          sockaddr_storage peer;
          socklen_t plen = sizeof peer;
          const ssize_t r = recvfrom(sockets[s].get(), &index, sizeof index, MSG_DONTWAIT,
                                     reinterpret_cast<sockaddr*>(&peer), &plen);
          if (r < 0) {
            if (errno == EAGAIN || errno == EINTR) break;
            throw_sys("recvfrom");
          }
          // sin_port and sin6_port sit at the same offset.
          const uint16_t port = ntohs(reinterpret_cast<sockaddr_in*>(&peer)->sin_port);
          if (r != sizeof index || index < first || index >= first + n || ports[index] != port || out[index] != -1) {
            ++t.strangers;
            continue;
          }
          out[index] = static_cast<int32_t>(s);
          ++t.received;
          ++got;
        }
      }
    }
  }
  return out;
}

nlohmann::json udp_flow_counts(const UdpFlowTally& t) {
  nlohmann::json o;
  o["attempts"] = t.sent;
  o["received"] = t.received;
  o["lost"] = t.sent - t.received;
  o["received_from_elsewhere"] = t.strangers;
  o["ledger_mismatches"] = nlohmann::json::array();
  if (t.strangers != 0)
    o["ledger_mismatches"].push_back(std::to_string(t.strangers) +
                                     " datagram(s) from a port they were not sent from, or received twice");
  return o;
}

OwnGroup::OwnGroup(Proto proto, Endpoint to, int sockets, int backlog)
    : proto_(proto), to_(std::move(to)), backlog_(backlog) {
  for (int i = 0; i < sockets; ++i) add();
}

size_t OwnGroup::add() {
  ListenerOptions lo;
  lo.proto = proto_;
  lo.addr = to_;
  lo.backlog = backlog_;
  sockets_.push_back(open_listener(lo));
  return sockets_.size() - 1;
}

void OwnGroup::close(size_t i) { sockets_.at(i).reset(); }

std::vector<int32_t> OwnGroup::flows(const std::vector<uint16_t>& ports) {
  return proto_ == Proto::Tcp ? tcp_listener_per_port(sockets_, to_, ports, tcp_)
                              : udp_socket_per_datagram(sockets_, to_, ports, udp_);
}

nlohmann::json OwnGroup::counts() const { return proto_ == Proto::Tcp ? tcp_flow_counts(tcp_) : udp_flow_counts(udp_); }

}  // namespace rp::cases
