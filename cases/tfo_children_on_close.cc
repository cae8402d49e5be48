// tfo_children_on_close
//
// A TCP Fast Open SYN that the listener accepts creates the child at once
// (tcp_try_fastopen() -> tcp_fastopen_create_child(), net/ipv4/tcp_fastopen.c): the child is
// a full socket in TCP_SYN_RECV, holding the SYN's data, and it is put in the accept queue
// before the final ACK (inet_csk_reqsk_queue_add()); accept() may return it while the
// handshake is still open (its request stays as tcp_sk(child)->fastopen_rsk until the ACK).
// When the listener closes, inet_csk_listen_stop() walks the accept queue, so these children
// go the way of the established ones:
//   - without migration inet_child_forget() disconnects them; tcp_disconnect() sends a RST
//     to a socket in SYN_RECV (tcp_need_reset()), and the client's ACK, when it comes, finds
//     no socket but the remaining listener, which answers it with another RST;
//   - with net.ipv4.tcp_migrate_req=1 (5.14, 54b92e841937 "tcp: Migrate
//     TCP_ESTABLISHED/TCP_SYN_RECV sockets in accept queues.") reuseport_migrate_sock()
//     picks another listener and inet_reqsk_clone() re-points the child's fastopen_rsk at the
//     clone ("if (sk->sk_protocol == IPPROTO_TCP && tcp_rsk(nreq)->tfo_listener)
//     rcu_assign_pointer(tcp_sk(nreq->sk)->fastopen_rsk, nreq)"): the child, handshake still
//     open, is queued on the new listener with its data, and the final ACK completes it
//     there. The source has no exception for Fast Open children, and the upstream selftest
//     tools/testing/selftests/bpf/prog_tests/migrate_reuseport.c expects them migrated
//     ("TCP_SYN_RECV inet_csk_listen_stop", with fastopen and the final ACK dropped).
//
// The client is the raw-socket client of cases/lib/raw_tcp.h: its SYN carries data and it
// withholds the final ACK, so the children stay in SYN_RECV through the close. It sends no
// Fast Open option, so the namespace's net.ipv4.tcp_fastopen is 0x202 (TFO_SERVER_ENABLE |
// TFO_SERVER_COOKIE_NOT_REQD, Documentation/networking/ip-sysctl.rst, tcp_fastopen): data in
// a SYN is accepted without a cookie. What the listener does with the child after that does
// not depend on how the cookie was checked.
//
// Scenario, per variant (family, tcp_migrate_req):
//   1. In a fresh network namespace set tcp_fastopen=0x202 and tcp_migrate_req (where the
//      kernel has it). V (SO_REUSEPORT, TCP_FASTOPEN queue 16, never accepts) listens alone
//      on loopback:P. The raw client sends N=4 SYNs with 8 bytes of data each and reads the
//      SYN-ACKs (acknowledging the data). Note TcpExt.TCPFastOpenPassive, V's accept queue
//      (sock_diag) and P's SYN_RECV sockets.
//   2. O (SO_REUSEPORT, TCP_FASTOPEN) joins the group; close(V). Count the RSTs the close
//      sent (they leave inside close()), O's accept queue and TCPMigrateReqSuccess.
//   3. Still before any ACK: accept what O has and read the SYN data from each child.
//   4. Send the 4 final ACKs; for up to 2 s count the RSTs and the accepted children that
//      reach ESTABLISHED.
//   5. Compare with cases/expectations.json: migrate 0: 4 RSTs at the close, O gets
//      nothing, 4 RSTs for the ACKs; migrate 1: no RST, O holds and accepts the 4 children
//      before the ACK, reads their 32 bytes, and the ACKs establish them.

#include <gtest/gtest.h>
#include <netinet/tcp.h>
#include <poll.h>

#include <optional>

#include "cases/lib/case_test.h"
#include "cases/lib/migrate.h"
#include "cases/lib/kernel.h"
#include "cases/lib/raw_tcp.h"
#include "harness/clock.h"
#include "harness/error.h"
#include "harness/scope.h"
#include "harness/sockdiag.h"
#include "harness/socket.h"
#include "probes/netstat.h"

namespace rp::cases {
namespace {

using Variant = FamilyMigrateVariant;

constexpr uint16_t kPort = 47460;
constexpr uint16_t kClientPort = 47470;
constexpr int kRequests = 4;
constexpr uint32_t kClientIsn = 0x50000000;
constexpr std::string_view kSynData = "tfo-data";
constexpr int kFastOpenQueue = 16;

nlohmann::json tcpext_delta(const probes::netstat::Counters& before, const char* name) {
  const auto b = probes::netstat::get(before, "TcpExt", name);
  const auto a = probes::netstat::get(probes::netstat::read_current(), "TcpExt", name);
  if (!a || !b) return nullptr;
  return *a - *b;
}

UniqueFd fastopen_listener(Family f) {
  ListenerOptions lo;
  lo.addr = Endpoint::loopback(f, kPort);
  lo.listen = false;
  UniqueFd fd = open_listener(lo);
  check_sys(setsockopt(fd.get(), IPPROTO_TCP, TCP_FASTOPEN, &kFastOpenQueue, sizeof kFastOpenQueue),
            "setsockopt TCP_FASTOPEN");
  check_sys(listen(fd.get(), lo.backlog), "listen " + lo.addr.str());
  return fd;
}

uint32_t accept_queue(int fd) {
  auto l = tcp_listener_by_inode(kPort, socket_inode(fd));
  if (!l) throw std::runtime_error("sock_diag does not list the listener on port " + std::to_string(kPort));
  return l->accept_queue;
}

bool established(int fd) {
  tcp_info ti{};
  socklen_t len = sizeof ti;
  check_sys(getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len), "getsockopt TCP_INFO");
  return ti.tcpi_state == TCP_ESTABLISHED;
}

nlohmann::json scenario(const Variant& v) {
  SysctlScope fastopen("net.ipv4.tcp_fastopen", "514");  // 0x202
  const auto migrate = set_migrate_req(v.migrate);
  const auto start = probes::netstat::read_current();

  UniqueFd victim = fastopen_listener(v.family);
  RawClient raw(v.family);
  RawRequests req = open_raw_requests(raw, v.family, kClientPort, kRequests, kPort, kClientIsn,
                                      std::chrono::milliseconds(2000) * timeout_scale(), kSynData);
  if (req.answered() < kRequests)
    throw std::runtime_error("only " + std::to_string(req.answered()) + " of " + std::to_string(kRequests) +
                             " SYN-ACKs acknowledged the SYN's data");
  nlohmann::json o;
  o["requests"] = kRequests;
  o["tfo_children"] = tcpext_delta(start, "TCPFastOpenPassive");
  o["victim_queue_before_close"] = accept_queue(victim.get());
  o["syn_recv_before_close"] = proc_tcp_count(v.family, kPort, "03");

  UniqueFd other = fastopen_listener(v.family);
  const auto before_close = probes::netstat::read_current();
  victim.reset();
  // The close sends its RSTs from inside close(), and the loopback delivers them at once;
  // the window only bounds a slow machine (none is expected with migration).
  uint64_t resets_at_close = 0;
  std::vector<bool> reset_seen(kRequests, false);
  auto read_resets = [&](uint64_t& count) {
    while (auto th = raw.receive()) {
      const int i = req.index_of(*th);
      if (i < 0 || !th->rst || reset_seen[i]) continue;
      reset_seen[i] = true;
      ++count;
    }
  };
  for (const uint64_t until = monotonic_ns() + 200'000'000ULL * static_cast<uint64_t>(timeout_scale());
       resets_at_close < static_cast<uint64_t>(kRequests) && monotonic_ns() < until;) {
    raw.wait(10);
    read_resets(resets_at_close);
  }
  o["resets_at_close"] = resets_at_close;
  o["migrated"] = tcpext_delta(before_close, "TCPMigrateReqSuccess");
  o["other_queue_after_close"] = accept_queue(other.get());

  std::vector<UniqueFd> children;
  uint64_t data_read = 0;
  for (int c; (c = accept4(other.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0;) {
    children.emplace_back(c);
    char buf[64];
    const ssize_t n = recv(c, buf, sizeof buf, 0);
    if (n > 0 && std::string_view(buf, static_cast<size_t>(n)) == kSynData) data_read += static_cast<uint64_t>(n);
  }
  o["accepted_before_ack"] = children.size();
  o["syn_data_read"] = data_read;
  o["syn_data_expected"] = kRequests * kSynData.size();

  std::fill(reset_seen.begin(), reset_seen.end(), false);
  send_final_acks(raw, req);
  uint64_t ack_resets = 0, est = 0;
  for (const uint64_t until = monotonic_ns() + 2'000'000'000ULL;
       ack_resets + est < static_cast<uint64_t>(kRequests) && monotonic_ns() < until;) {
    raw.wait(10);
    read_resets(ack_resets);
    est = 0;
    for (const auto& c : children) est += established(c.get());
  }
  o["established_after_ack"] = est;
  o["final_ack_resets"] = ack_resets;
  o["unanswered"] = static_cast<uint64_t>(kRequests) - est - ack_resets;
  return o;
}


RP_CASE(tfo_children_on_close, ::testing::ValuesIn(family_migrate_variants()));

}  // namespace
}  // namespace rp::cases
