// udp_close_with_queued
//
// Closing a member of a UDP reuseport group throws away the datagrams queued on it, and
// silently. close() reaches udp_lib_close() -> sk_common_release(): udp_destroy_sock()
// (transmit side only), unhash (udp_lib_unhash() -> reuseport_detach_sock(), so the
// group shrinks at once), sock_orphan(), and the last reference runs sk_destruct,
// udp_destruct_sock() (udp_destruct_common() in later kernels), which splices sk_receive_queue
// into the reader queue and kfree_skb()s each one. Neither function touches a MIB counter:
// the queued datagrams are neither read by anyone nor counted as dropped (Udp.InErrors,
// Udp.RcvbufErrors stay put). Nothing moves them to another member: unlike TCP's
// tcp_migrate_req there is no UDP migration. Datagrams sent after the close hash over the
// remaining members. A process killed with SIGKILL closes its sockets the same way
// (do_exit() -> close_files()).
//
// Scenario, per variant (family, K = 2 or 4 members, "close" or "sigkill"):
//   1. In a fresh network namespace open K SO_REUSEPORT UDP sockets on loopback:P and learn
//      which member each of 32 x K source ports hashes to (one probe datagram each, read by
//      the case from every member). Member 0 is the victim, never read from now on.
//   2. Read the namespace's UDP counters. Round 1: one datagram from each port (the
//      victim's flows first, from one CPU); read the other members until all of their
//      flows' datagrams arrived, so every victim datagram has been queued (or dropped).
//      Read the victim's SO_MEMINFO receive allocation.
//   3. close: close the victim. sigkill: fork a child that holds the victim, close the
//      case's copy, SIGKILL the child and reap it.
//   4. Round 2: one datagram from each port again; read the remaining members until all
//      arrived, then drain them and count anything left. Read the counters again.
//   5. Compare with cases/expectations.json: round 1's victim datagrams are neither read
//      nor counted; round 2 reaches the remaining members in full; every datagram has
//      exactly one outcome (read, queued at close, or counted at the rcvbuf).

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cases/lib/case_test.h"
#include "cases/lib/udp_group.h"
#include "harness/error.h"
#include "harness/socket.h"

namespace rp::cases {
namespace {

struct Variant {
  Family family;
  int members;
  bool sigkill;

  std::string name() const {
    return std::string("udp") + (family == Family::V4 ? "4" : "6") + "_k" + std::to_string(members) +
           (sigkill ? "_sigkill" : "_close");
  }
};

constexpr uint16_t kPort = 47410;
constexpr uint16_t kFirstClientPort = 47800;
constexpr int kFlowsPerMember = 32;  // well inside the default receive buffer

int64_t diff(uint64_t after, uint64_t before) { return static_cast<int64_t>(after) - static_cast<int64_t>(before); }

// The victim's last holder is a child: its death, not the case's close(), frees the socket.
void close_by_sigkill(UniqueFd& victim) {
  const pid_t pid = fork();
  if (pid < 0) throw_sys("fork victim holder");
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlives the case
    for (;;) pause();
  }
  victim.reset();
  ::kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) throw_sys("waitpid victim holder");
  if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) throw std::runtime_error("victim holder did not die of SIGKILL");
}

nlohmann::json scenario(const Variant& v) {
  UdpGroup g = open_udp_group(v.family, kPort, v.members, 0, kFirstClientPort, kFlowsPerMember * v.members);
  const UdpCounters before = read_udp_counters(v.family);
  const UdpRound r1 = udp_round(g, 1u << 20, false);
  const UdpCounters mid = read_udp_counters(v.family);
  const uint64_t rmem_at_close = udp_rmem_alloc(g.members[g.victim].get());
  const int64_t rcvbuf_errors_r1 = diff(mid.rcvbuf_errors, before.rcvbuf_errors);

  if (v.sigkill)
    close_by_sigkill(g.members[g.victim]);
  else
    g.members[g.victim].reset();

  const UdpRound r2 = udp_round(g, 2u << 20, true);
  uint64_t left_over = 0;
  for (size_t s = 0; s < g.members.size(); ++s)
    if (s != g.victim) left_over += drain_udp(g.members[s].get());
  const UdpCounters after = read_udp_counters(v.family);

  const uint64_t queued_at_close = r1.to_victim - static_cast<uint64_t>(rcvbuf_errors_r1);
  nlohmann::json o;
  o["members"] = v.members;
  o["sent_before_close"] = r1.sent;
  o["to_victim"] = r1.to_victim;
  o["read_by_others_before_close"] = r1.read_by_others;
  o["queued_at_close"] = queued_at_close;
  o["victim_rmem_at_close"] = rmem_at_close;
  o["sent_after_close"] = r2.sent;
  o["read_after_close"] = r2.read_by_others;
  // Round 1 or unknown datagrams read after the close, or a round 2 datagram twice: a queued
  // datagram handed on would show here.
  o["misdelivered"] = r1.misdelivered + r2.misdelivered + left_over;
  o["netstat_rcvbuf_errors"] = diff(after.rcvbuf_errors, before.rcvbuf_errors);
  o["netstat_in_errors"] = diff(after.in_errors, before.in_errors);
  o["netstat_no_ports"] = diff(after.no_ports, before.no_ports);
  o["unaccounted"] = static_cast<int64_t>(r1.sent + r2.sent) -
                     static_cast<int64_t>(r1.read_by_others + r2.read_by_others + queued_at_close) -
                     diff(after.rcvbuf_errors, before.rcvbuf_errors);
  return o;
}

std::vector<Variant> variants() {
  std::vector<Variant> out;
  for (bool kill : {false, true})
    for (Family f : {Family::V4, Family::V6})
      for (int k : {2, 4}) out.push_back({f, k, kill});
  return out;
}

RP_CASE(udp_close_with_queued, ::testing::ValuesIn(variants()));

}  // namespace
}  // namespace rp::cases
