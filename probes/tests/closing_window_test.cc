// The closing window by which the probe tells a closing listener's orphans (issue 14: no
// program on tcp_destroy_sock where the window is checked by the listener's cookie), on
// both of the probe's routes to it:
//  - inet_sock_set_state: a queued child that goes to CLOSE in the same thread counts as an
//    orphan while a listener of the port is being closed or shut down, and not once that
//    listener's close is over. The child is closed from the thread by sock_diag's
//    SOCK_DESTROY (tcp_abort(): ESTABLISHED -> CLOSE in the calling thread, never
//    accepted, so sk_socket is NULL): what an orphan looks like to that route, except for
//    the window.
//  - cgroup/sock_release + inet_sk_error_report: the window opens at a listener's release
//    and must be over with its close; a shutdown() opens none, its children wait in the
//    thread until the listener's own error report claims them. A listener closed, then
//    another shut down with a queued child in the same thread: the child is the second
//    one's orphan, not the first one's (a window that outlived its close would take it).

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <string>

#include <gtest/gtest.h>

#include "harness/error.h"
#include "harness/fd.h"
#include "harness/sockdiag.h"
#include "netns_child.h"
#include "probes/reuseport_probe.h"

namespace rp::probes {
namespace {

using namespace std::chrono_literals;
using testing::Report;

constexpr std::uint16_t kPort = 8083;

using Fd = UniqueFd;

Fd reuseport_listener() {
  Fd l(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (l.get() < 0) throw_sys("socket listener");
  const int one = 1;
  if (::setsockopt(l.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) throw_sys("SO_REUSEPORT");
  const sockaddr_in addr = testing::loopback(kPort);
  if (::bind(l.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) throw_sys("bind");
  if (::listen(l.get(), 8) != 0) throw_sys("listen");
  return l;
}

// A client connected to the port; its child waits, established, in a listener's queue.
Fd queued_client() {
  Fd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (c.get() < 0) throw_sys("socket client");
  const sockaddr_in addr = testing::loopback(kPort);
  if (::connect(c.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) throw_sys("connect");
  return c;
}

// SOCK_DESTROY of the server side of the client's connection (the child, by its 4-tuple).
void destroy_child_of(int client) {
  sockaddr_in local{};
  socklen_t len = sizeof local;
  check_sys(::getsockname(client, reinterpret_cast<sockaddr*>(&local), &len), "getsockname");
  tcp_destroy(htonl(INADDR_LOOPBACK), htons(kPort), local.sin_addr.s_addr, local.sin_port);
}

std::string show(const Counter& c) { return c.value ? std::to_string(*c.value) : "na"; }

Report child_destroyed_after_and_during_a_close() {
  ReuseportProbe probe({.port = kPort, .netns_cookie = current_netns_cookie(), .lifecycle_on_release = false});
  Report out;
  out["listener_orphans_observable"] = probe.capabilities().listener_orphans ? "1" : "0";
  out["events"] = probe.capabilities().lifecycle_events;
  // 1. A listener of the port closed by this thread with an empty queue: its window opens
  //    and its close ends. Then a queued child of the next listener closes in this thread.
  {
    Fd first = reuseport_listener();
  }
  {
    Fd l = reuseport_listener();
    Fd c = queued_client();
    destroy_child_of(c.get());
    const ProbeReading r = probe.read();
    out["after_close_orphans"] = show(r.counter("kernel_orphaned_children"));
    out["after_close_listener_closes"] = show(r.counter("kernel_listener_closes"));
  }
  // 2. The control: a listener of the port shut down by this thread stays in CLOSE with its
  //    socket, so its window is still open, and the same closing of a child of another
  //    listener counts (the documented limit of this route after shutdown()).
  {
    Fd keeper = reuseport_listener();
    Fd shut = reuseport_listener();
    if (::shutdown(shut.get(), SHUT_RD) != 0) throw_sys("shutdown");
    const std::uint64_t before = *probe.read().counter("kernel_orphaned_children").value;
    Fd c = queued_client();  // to `keeper`, the only listening member now
    destroy_child_of(c.get());
    out["during_shutdown_orphans"] = std::to_string(*probe.read().counter("kernel_orphaned_children").value - before);
  }
  return out;
}

Report close_then_shutdown_in_one_thread() {
  ReuseportProbe probe({.port = kPort, .netns_cookie = current_netns_cookie()});
  Report out;
  out["events"] = probe.capabilities().lifecycle_events;
  std::uint64_t first_cookie = 0, second_cookie = 0;
  {
    Fd first = reuseport_listener();
    first_cookie = socket_cookie(first.get());
  }
  Fd second = reuseport_listener();
  second_cookie = socket_cookie(second.get());
  Fd c = queued_client();
  if (::shutdown(second.get(), SHUT_RD) != 0) throw_sys("shutdown");
  const ProbeReading r = probe.read();
  for (const char* k : {"kernel_listener_closes", "kernel_orphaned_children", "kernel_orphan_resets",
                        "kernel_rst_forgotten_child", "kernel_other_resets_sent"})
    out[k] = show(r.counter(k));
  if (r.listener_orphans) {
    const auto& m = *r.listener_orphans;
    out["first_orphans"] = m.count(first_cookie) ? std::to_string(m.at(first_cookie)) : "absent";
    out["second_orphans"] = m.count(second_cookie) ? std::to_string(m.at(second_cookie)) : "absent";
  }
  return out;
}

TEST(ReuseportProbeWindow, a_child_closed_after_a_listeners_close_is_no_orphan_and_during_one_it_is) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root: BPF load and unshare(CLONE_NEWNET)";
  const testing::ChildOutcome child =
      testing::run_in_child(testing::Netns::kFresh, 20s, child_destroyed_after_and_during_a_close);
  ASSERT_TRUE(child.finished) << child.error;
  if (child.report.at("listener_orphans_observable") != "1")
    GTEST_SKIP() << "this kernel's probe cannot key a closing listener (tp_btf inet_sock_set_state)";
  ASSERT_EQ(child.report.at("events").rfind("tp_btf/inet_sock_set_state", 0), 0u) << child.report.at("events");
  auto u = [&](const char* key) { return testing::to_u64(child.report, key); };
  EXPECT_EQ(u("after_close_listener_closes"), 1u);
  EXPECT_EQ(u("after_close_orphans"), 0u);
  EXPECT_EQ(u("during_shutdown_orphans"), 1u);
}

TEST(ReuseportProbeWindow, on_release_a_shutdown_claims_its_children_and_a_closed_listeners_window_is_over) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root: BPF load and unshare(CLONE_NEWNET)";
  const testing::ChildOutcome child =
      testing::run_in_child(testing::Netns::kFresh, 20s, close_then_shutdown_in_one_thread);
  ASSERT_TRUE(child.finished) << child.error;
  const std::string& events = child.report.at("events");
  if (events.rfind("cgroup/sock_release", 0) != 0) GTEST_SKIP() << "the probe took another route: " << events;
  auto u = [&](const char* key) { return testing::to_u64(child.report, key); };
  EXPECT_EQ(u("kernel_listener_closes"), 2u);  // the close and the shutdown
  EXPECT_EQ(u("kernel_orphaned_children"), 1u);
  EXPECT_EQ(u("kernel_orphan_resets"), 1u);
  EXPECT_EQ(u("kernel_rst_forgotten_child"), 0u);  // claimed by the shutdown
  EXPECT_EQ(u("kernel_other_resets_sent"), 0u);
  EXPECT_EQ(u("first_orphans"), 0u);
  EXPECT_EQ(u("second_orphans"), 1u);
}

}  // namespace
}  // namespace rp::probes
