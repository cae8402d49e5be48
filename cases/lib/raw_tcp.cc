#include "cases/lib/raw_tcp.h"

#include <linux/filter.h>
#include <netinet/ip.h>
#include <poll.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "harness/clock.h"
#include "harness/error.h"

namespace rp::cases {

uint64_t proc_tcp_count(Family f, uint16_t port, const char* state) {
  const std::string path = f == Family::V4 ? "/proc/thread-self/net/tcp" : "/proc/thread-self/net/tcp6";
  std::ifstream in(path);
  if (!in) throw SysError("open " + path, errno);
  std::string line;
  std::getline(in, line);
  uint64_t n = 0;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string sl, local, remote, st;
    ls >> sl >> local >> remote >> st;
    const auto colon = local.rfind(':');
    if (colon != std::string::npos && std::stoul(local.substr(colon + 1), nullptr, 16) == port && st == state) ++n;
  }
  return n;
}

namespace {

uint32_t sum16(const void* data, size_t len, uint32_t acc = 0) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i + 1 < len; i += 2) acc += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
  if (len & 1) acc += static_cast<uint32_t>(p[len - 1] << 8);
  return acc;
}

// The TCP checksum over the pseudo-header of the family (RFC 793, RFC 8200 8.1).
uint16_t tcp_checksum(const sockaddr_storage& src, const sockaddr_storage& dst, const uint8_t* segment, size_t len) {
  uint32_t acc = 0;
  if (src.ss_family == AF_INET) {
    acc = sum16(&reinterpret_cast<const sockaddr_in&>(src).sin_addr, 4, acc);
    acc = sum16(&reinterpret_cast<const sockaddr_in&>(dst).sin_addr, 4, acc);
  } else {
    acc = sum16(&reinterpret_cast<const sockaddr_in6&>(src).sin6_addr, 16, acc);
    acc = sum16(&reinterpret_cast<const sockaddr_in6&>(dst).sin6_addr, 16, acc);
  }
  acc += IPPROTO_TCP + static_cast<uint32_t>(len);
  acc = sum16(segment, len, acc);
  while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
  return htons(static_cast<uint16_t>(~acc));
}

}  // namespace

RawClient::RawClient(Family f) : family_(f) {
  fd_.reset(static_cast<int>(
      check_sys(socket(af_of(f), SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_TCP), "socket raw IPPROTO_TCP")));
  Endpoint::loopback(f, 0).to_sockaddr(local_);
  len_ = Endpoint::loopback(f, 0).to_sockaddr(remote_);
  check_sys(bind(fd_.get(), reinterpret_cast<sockaddr*>(&local_), len_), "bind raw socket to loopback");
}

void RawClient::send(uint16_t sport, uint16_t dport, uint32_t seq, uint32_t ack, uint8_t flags, std::string_view data) {
  tcphdr th{};
  th.source = htons(sport);
  th.dest = htons(dport);
  th.seq = htonl(seq);
  th.ack_seq = htonl(ack);
  th.doff = sizeof th / 4;
  th.syn = (flags & TH_SYN) != 0;
  th.ack = (flags & TH_ACK) != 0;
  th.window = htons(65535);
  std::vector<uint8_t> segment(sizeof th + data.size());
  std::memcpy(segment.data(), &th, sizeof th);
  std::memcpy(segment.data() + sizeof th, data.data(), data.size());
  th.check = tcp_checksum(local_, remote_, segment.data(), segment.size());
  std::memcpy(segment.data(), &th, sizeof th);
  check_sys(sendto(fd_.get(), segment.data(), segment.size(), 0, reinterpret_cast<sockaddr*>(&remote_), len_),
            "sendto raw TCP segment");
}

std::optional<tcphdr> RawClient::receive() {
  uint8_t buf[512];
  const ssize_t n = recv(fd_.get(), buf, sizeof buf, 0);
  if (n < 0) {
    if (errno == EAGAIN || errno == EINTR) return std::nullopt;
    throw_sys("recv raw socket");
  }
  size_t off = 0;
  if (family_ == Family::V4) off = static_cast<size_t>(reinterpret_cast<const iphdr*>(buf)->ihl) * 4;
  if (static_cast<size_t>(n) < off + sizeof(tcphdr)) return std::nullopt;
  tcphdr th;
  std::memcpy(&th, buf + off, sizeof th);
  return th;
}

void RawClient::wait(int ms) {
  pollfd p{fd_.get(), POLLIN, 0};
  if (poll(&p, 1, ms) < 0 && errno != EINTR) throw_sys("poll raw socket");
}

UniqueFd absorber(Family f, uint16_t port) {
  ListenerOptions o;
  o.addr = Endpoint::loopback(f, port);
  o.reuseport = false;
  UniqueFd fd = open_listener(o);
  sock_filter drop_all[] = {BPF_STMT(BPF_RET | BPF_K, 0)};
  sock_fprog prog{1, drop_all};
  check_sys(setsockopt(fd.get(), SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog), "setsockopt SO_ATTACH_FILTER");
  return fd;
}

int RawRequests::answered() const {
  int n = 0;
  for (const auto& s : server_isn) n += s.has_value();
  return n;
}

int RawRequests::index_of(const tcphdr& th) const {
  const int i = ntohs(th.dest) - first_port;
  if (ntohs(th.source) != server_port || i < 0 || i >= size()) return -1;
  return i;
}

RawRequests open_raw_requests(RawClient& raw, Family f, uint16_t first_port, int n, uint16_t server_port,
                              uint32_t client_isn, std::chrono::milliseconds wait, std::string_view syn_data) {
  RawRequests r;
  r.syn_data_len = static_cast<uint32_t>(syn_data.size());
  r.first_port = first_port;
  r.server_port = server_port;
  r.client_isn = client_isn;
  r.server_isn.resize(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) r.absorbers.push_back(absorber(f, static_cast<uint16_t>(first_port + i)));
  for (int i = 0; i < n; ++i) raw.send(static_cast<uint16_t>(first_port + i), server_port, client_isn + i, 0, TH_SYN, syn_data);
  const uint64_t deadline = monotonic_ns() + static_cast<uint64_t>(wait.count()) * 1'000'000ULL;
  while (r.answered() < n && monotonic_ns() < deadline) {
    raw.wait(10);
    while (auto th = raw.receive()) {
      const int i = r.index_of(*th);
      if (i < 0 || !th->syn || !th->ack || r.server_isn[i]) continue;
      if (ntohl(th->ack_seq) != r.client_next(i)) continue;
      r.server_isn[i] = ntohl(th->seq);
    }
  }
  return r;
}

void send_final_acks(RawClient& raw, const RawRequests& r) {
  for (int i = 0; i < r.size(); ++i)
    if (r.server_isn[i])
      raw.send(static_cast<uint16_t>(r.first_port + i), r.server_port, r.client_next(i), *r.server_isn[i] + 1, TH_ACK);
}

}  // namespace rp::cases
