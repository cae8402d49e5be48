// payload_steering
//
// The program of SO_ATTACH_REUSEPORT_CBPF runs on the packet with its transport header
// pulled (run_bpf_filter() in net/core/sock_reuseport.c), so offset 0 is the first byte of
// the payload: a classic program "load the first 32-bit word, modulo N" steers each datagram
// by its content. For TCP the program sees the SYN, which carries data only with TCP Fast
// Open (the data in the SYN, RFC 7413): with net.ipv4.tcp_fastopen = 0x207 (client and server
// enabled, TFO_CLIENT_NO_COOKIE, TFO_SERVER_COOKIE_NOT_REQD; Documentation/networking/
// ip-sysctl.rst) the first SYN already holds it. A load past the end of the packet ends a
// classic program with 0, so a SYN without data would land on socket 0. This is the main
// claim of the upstream selftest tools/testing/selftests/net/reuseport_bpf.c, whose TCP rows
// steer on the data of TFO SYNs.
//
// Scenario, per variant (udp / tcp with Fast Open, IPv4 / IPv6):
//   1. In a fresh network namespace (TCP: tcp_fastopen = 0x207), 4 SO_REUSEPORT sockets on
//      one loopback port (TCP: listening, TCP_FASTOPEN queue 64); attach the program
//      "A = payload word 0; A %= 4; return A" to the first.
//   2. 64 messages, message k holding the 32-bit word k = 1..64 (network order), each from a
//      socket of its own: a datagram (UDP) or sendto(MSG_FASTOPEN) (TCP).
//   3. Read every socket (TCP: accept, then read the child's data) and count the messages
//      that reached socket k % 4.

#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <linux/filter.h>
#include <netinet/tcp.h>

#include <thread>

#include "cases/lib/case_test.h"
#include "harness/error.h"
#include "harness/scope.h"
#include "harness/socket.h"

namespace rp::cases {
namespace {

struct Variant {
  Proto proto;
  Family family;
  std::string name() const {
    return std::string(proto == Proto::Tcp ? "tcp" : "udp") + (family == Family::V4 ? "4" : "6") +
           (proto == Proto::Tcp ? "_fastopen" : "");
  }
};

constexpr uint16_t kPort = 47830;
constexpr uint32_t kSockets = 4;
constexpr uint32_t kMessages = 64;

void attach_payload_mod(int fd) {
  sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 0),
      BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, kSockets),
      BPF_STMT(BPF_RET | BPF_A, 0),
  };
  sock_fprog prog{3, code};
  check_sys(setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof prog),
            "setsockopt SO_ATTACH_REUSEPORT_CBPF");
}

void send_message(const Variant& v, const Endpoint& to, uint32_t k, std::vector<UniqueFd>& keep) {
  sockaddr_storage ss;
  const socklen_t len = to.to_sockaddr(ss);
  const uint32_t word = htonl(k);
  UniqueFd c(static_cast<int>(check_sys(
      socket(af_of(v.family), (v.proto == Proto::Tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0), "socket client")));
  const int flags = v.proto == Proto::Tcp ? MSG_FASTOPEN : 0;
  check_sys(sendto(c.get(), &word, sizeof word, flags, reinterpret_cast<sockaddr*>(&ss), len),
            v.proto == Proto::Tcp ? "sendto MSG_FASTOPEN " + to.str() : "sendto " + to.str());
  keep.push_back(std::move(c));  // a TCP client stays open until its child was read
}

// The words that reached socket `fd`; a TCP child is read with a short timeout (its data
// came in the SYN or right after the handshake).
std::vector<uint32_t> read_words(int fd, Proto proto) {
  std::vector<uint32_t> out;
  for (;;) {
    uint32_t word = 0;
    if (proto == Proto::Udp) {
      if (recv(fd, &word, sizeof word, MSG_DONTWAIT) != static_cast<ssize_t>(sizeof word)) break;
    } else {
      UniqueFd child(accept4(fd, nullptr, nullptr, SOCK_CLOEXEC));
      if (!child) break;
      timeval tv{1, 0};
      setsockopt(child.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      if (recv(child.get(), &word, sizeof word, MSG_WAITALL) != static_cast<ssize_t>(sizeof word))
        throw std::runtime_error("an accepted child did not deliver its 4 bytes");
    }
    out.push_back(ntohl(word));
  }
  return out;
}

nlohmann::json scenario(const Variant& v) {
  std::optional<SysctlScope> tfo;
  if (v.proto == Proto::Tcp) tfo.emplace("net.ipv4.tcp_fastopen", "519");  // 0x207
  ListenerOptions lo;
  lo.proto = v.proto;
  lo.addr = Endpoint::loopback(v.family, kPort);
  lo.listen = false;
  std::vector<UniqueFd> socks;
  for (uint32_t i = 0; i < kSockets; ++i) {
    socks.push_back(open_listener(lo));
    if (v.proto == Proto::Tcp) {
      const int qlen = 64;
      check_sys(setsockopt(socks.back().get(), IPPROTO_TCP, TCP_FASTOPEN, &qlen, sizeof qlen), "setsockopt TCP_FASTOPEN");
      check_sys(listen(socks.back().get(), 128), "listen " + lo.addr.str());
    }
  }
  attach_payload_mod(socks[0].get());

  std::vector<UniqueFd> clients;
  // Words from 1, not 0: the first connection is the one a cookie-less SYN would carry
  // without data, and a program that saw no data answers 0.
  for (uint32_t k = 1; k <= kMessages; ++k) send_message(v, lo.addr, k, clients);

  uint64_t received = 0, on_payload_index = 0;
  nlohmann::json per_socket = nlohmann::json::array();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  std::vector<uint64_t> got(kSockets, 0);
  while (received < kMessages && std::chrono::steady_clock::now() < deadline) {
    for (uint32_t i = 0; i < kSockets; ++i)
      for (uint32_t w : read_words(socks[i].get(), v.proto)) {
        ++received;
        ++got[i];
        on_payload_index += w % kSockets == i;
      }
    if (received < kMessages) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  nlohmann::json o;
  o["sent"] = kMessages;
  o["received"] = received;
  o["on_socket_of_their_payload"] = on_payload_index;
  o["received_per_socket"] = got;
  return o;
}

RP_CASE(payload_steering, ::testing::Values(Variant{Proto::Udp, Family::V4}, Variant{Proto::Udp, Family::V6},
                                            Variant{Proto::Tcp, Family::V4}, Variant{Proto::Tcp, Family::V6}));

}  // namespace
}  // namespace rp::cases
