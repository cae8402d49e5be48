// syn_recv_on_close
//
// A connection whose handshake is half done (the listener sent its SYN-ACK, the client's
// final ACK has not arrived) is a request socket in the listener's ehash, not a child in its
// accept queue, so closing the listener does not reset it (inet_csk_listen_stop() only walks
// the accept queue). What happens is decided when the final ACK arrives: tcp_v4_rcv() /
// tcp_v6_rcv() find the request, see that its listener is no longer TCP_LISTEN and
//   - without migration drop the request (inet_csk_reqsk_queue_drop_and_put()) and look
//     the ACK up again: another listener on the port (an ACK in LISTEN,
//     tcp_rcv_state_process()) or no socket at all answers it with a RST;
//   - with net.ipv4.tcp_migrate_req=1 (5.14+) move it to another listener of the reuseport
//     group and complete the handshake there (commit d4f2c86b2b7e "tcp: Migrate
//     TCP_NEW_SYN_RECV requests at receiving the final ACK."; its sibling c905dee62232 does
//     the same when the SYN-ACK is retransmitted). With no listener left, it is a RST again.
//
// Holding a request in SYN_RECV on loopback needs a client that withholds its ACK. The case
// plays the client with a raw IPPROTO_TCP socket: it writes the SYN and the ACK itself and
// reads the server's SYN-ACK and RSTs (a raw socket gets a copy of every TCP packet the
// namespace receives). The kernel would answer the SYN-ACK itself, with a RST that kills
// the request, since no socket of its own owns the client's address and port. So the
// client's port belongs to an "absorber": a TCP socket listening on that loopback port with
// a socket filter that drops everything. The lookup finds it, tcp_filter() drops the
// segment before any TCP processing, and nothing is sent back; the raw socket still sees
// the segment. No second address is needed, and nothing but syscalls.
//
// Scenario, per variant (family, "k2": a second listener joins after the SYN-ACK, or
// "alone"; tcp_migrate_req):
//   1. In a fresh network namespace set tcp_migrate_req (where the kernel has it). Open N=4
//      absorbers on loopback ports X0..X3 and the victim listener V (SO_REUSEPORT) on
//      loopback:P; it never accepts.
//   2. From the raw socket send a SYN from each Xi to P and read the N SYN-ACKs (each
//      acknowledging its SYN). Count P's SYN_RECV entries in /proc/thread-self/net/tcp[6].
//      V is alone in its group at this point, so every request is V's.
//   3. k2: open listener O (SO_REUSEPORT) on loopback:P now; it joins V's group.
//   4. close(V). Then send the N final ACKs.
//   5. For up to 2 s, count the RSTs from P to the Xi (raw socket) and the children O can
//      accept.
//   6. Compare with cases/expectations.json: without migration (and with nowhere to
//      migrate to) every final ACK gets a RST; with migration O accepts all N and nothing is
//      reset.

#include <gtest/gtest.h>
#include <linux/filter.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <poll.h>

#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include "cases/lib/case_test.h"
#include "cases/lib/kernel.h"
#include "harness/clock.h"
#include "harness/error.h"
#include "harness/scope.h"
#include "harness/socket.h"

namespace rp::cases {
namespace {

struct Variant {
  Family family;
  bool second_listener;
  int migrate;

  std::string name() const {
    return std::string("tcp") + (family == Family::V4 ? "4" : "6") + (second_listener ? "_k2" : "_alone") +
           "_migrate" + std::to_string(migrate);
  }
};

constexpr uint16_t kPort = 47380;
constexpr uint16_t kClientPort = 47390;
constexpr int kRequests = 4;
constexpr uint32_t kClientIsn = 0x10000000;

// Entries of /proc/thread-self/net/tcp[6] with local port `port` in `state` (hex, "03" is
// SYN_RECV). Request sockets are listed there, one line each.
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

uint32_t sum16(const void* data, size_t len, uint32_t acc = 0) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i + 1 < len; i += 2) acc += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
  if (len & 1) acc += static_cast<uint32_t>(p[len - 1] << 8);
  return acc;
}

// The TCP checksum over the pseudo-header of the family (RFC 793, RFC 8200 8.1).
uint16_t tcp_checksum(const sockaddr_storage& src, const sockaddr_storage& dst, const tcphdr& th) {
  uint32_t acc = 0;
  if (src.ss_family == AF_INET) {
    acc = sum16(&reinterpret_cast<const sockaddr_in&>(src).sin_addr, 4, acc);
    acc = sum16(&reinterpret_cast<const sockaddr_in&>(dst).sin_addr, 4, acc);
  } else {
    acc = sum16(&reinterpret_cast<const sockaddr_in6&>(src).sin6_addr, 16, acc);
    acc = sum16(&reinterpret_cast<const sockaddr_in6&>(dst).sin6_addr, 16, acc);
  }
  acc += IPPROTO_TCP + sizeof th;
  acc = sum16(&th, sizeof th, acc);
  while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
  return htons(static_cast<uint16_t>(~acc));
}

class RawClient {
 public:
  explicit RawClient(Family f) : family_(f) {
    fd_.reset(static_cast<int>(check_sys(socket(af_of(f), SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_TCP),
                                         "socket raw IPPROTO_TCP")));
    Endpoint::loopback(f, 0).to_sockaddr(local_);
    len_ = Endpoint::loopback(f, 0).to_sockaddr(remote_);
    check_sys(bind(fd_.get(), reinterpret_cast<sockaddr*>(&local_), len_), "bind raw socket to loopback");
  }

  void send(uint16_t sport, uint16_t dport, uint32_t seq, uint32_t ack, uint8_t flags) {
    tcphdr th{};
    th.source = htons(sport);
    th.dest = htons(dport);
    th.seq = htonl(seq);
    th.ack_seq = htonl(ack);
    th.doff = sizeof th / 4;
    th.syn = (flags & TH_SYN) != 0;
    th.ack = (flags & TH_ACK) != 0;
    th.window = htons(65535);
    th.check = tcp_checksum(local_, remote_, th);
    check_sys(sendto(fd_.get(), &th, sizeof th, 0, reinterpret_cast<sockaddr*>(&remote_), len_), "sendto raw TCP segment");
  }

  // The next TCP header received, if one is queued. IPv4 raw sockets deliver the IP header
  // too, IPv6 ones only the payload.
  std::optional<tcphdr> receive() {
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

  int fd() const { return fd_.get(); }

 private:
  Family family_;
  UniqueFd fd_;
  sockaddr_storage local_{}, remote_{};
  socklen_t len_ = 0;
};

// A listener on the client's port that silently drops whatever reaches it.
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

nlohmann::json scenario(const Variant& v) {
  std::optional<SysctlScope> migrate;
  if (has_feature("tcp_migrate_req")) migrate.emplace("net.ipv4.tcp_migrate_req", std::to_string(v.migrate));
  else if (v.migrate) throw std::runtime_error("net.ipv4.tcp_migrate_req is absent");

  std::vector<UniqueFd> absorbers;
  for (int i = 0; i < kRequests; ++i) absorbers.push_back(absorber(v.family, kClientPort + i));
  ListenerOptions lo;
  lo.addr = Endpoint::loopback(v.family, kPort);
  UniqueFd victim = open_listener(lo);
  RawClient raw(v.family);

  std::vector<std::optional<uint32_t>> server_isn(kRequests);
  for (int i = 0; i < kRequests; ++i) raw.send(kClientPort + i, kPort, kClientIsn + i, 0, TH_SYN);
  int synacks = 0;
  const uint64_t deadline = monotonic_ns() + 2'000'000'000ULL;
  while (synacks < kRequests && monotonic_ns() < deadline) {
    pollfd p{raw.fd(), POLLIN, 0};
    poll(&p, 1, 10);
    while (auto th = raw.receive()) {
      const int i = ntohs(th->dest) - kClientPort;
      if (ntohs(th->source) != kPort || i < 0 || i >= kRequests || !th->syn || !th->ack) continue;
      if (ntohl(th->ack_seq) != kClientIsn + i + 1 || server_isn[i]) continue;
      server_isn[i] = ntohl(th->seq);
      ++synacks;
    }
  }
  if (synacks < kRequests)
    throw std::runtime_error("only " + std::to_string(synacks) + " of " + std::to_string(kRequests) + " SYN-ACKs arrived");
  const uint64_t syn_recv_before_close = proc_tcp_count(v.family, kPort, "03");

  UniqueFd other;
  if (v.second_listener) other = open_listener(lo);
  victim.reset();
  for (int i = 0; i < kRequests; ++i) raw.send(kClientPort + i, kPort, kClientIsn + i + 1, *server_isn[i] + 1, TH_ACK);

  uint64_t resets = 0, accepted = 0;
  std::vector<bool> reset_seen(kRequests, false);
  const uint64_t until = monotonic_ns() + 2'000'000'000ULL;
  while (resets + accepted < static_cast<uint64_t>(kRequests) && monotonic_ns() < until) {
    pollfd p[2] = {{raw.fd(), POLLIN, 0}, {other ? other.get() : -1, POLLIN, 0}};
    poll(p, 2, 10);
    while (auto th = raw.receive()) {
      const int i = ntohs(th->dest) - kClientPort;
      if (ntohs(th->source) != kPort || i < 0 || i >= kRequests || !th->rst || reset_seen[i]) continue;
      reset_seen[i] = true;
      ++resets;
    }
    while (other) {
      const int c = accept4(other.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (c < 0) break;
      ::close(c);
      ++accepted;
    }
  }

  nlohmann::json o;
  o["requests"] = kRequests;
  o["syn_recv_before_close"] = syn_recv_before_close;
  o["final_ack_resets"] = resets;
  o["accepted_by_other"] = accepted;
  o["unanswered"] = static_cast<uint64_t>(kRequests) - resets - accepted;
  return o;
}

std::vector<Variant> variants() {
  std::vector<Variant> out;
  for (int m : {0, 1})
    for (Family f : {Family::V4, Family::V6})
      for (bool k2 : {true, false}) out.push_back({f, k2, m});
  return out;
}

RP_CASE(syn_recv_on_close, ::testing::ValuesIn(variants()));

}  // namespace
}  // namespace rp::cases
