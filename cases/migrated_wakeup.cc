// migrated_wakeup
//
// With net.ipv4.tcp_migrate_req=1 (5.14, 54b92e841937 "tcp: Migrate
// TCP_ESTABLISHED/TCP_SYN_RECV sockets in accept queues."), closing a listener moves the
// children of its accept queue to another listener of the group. Until 3864c6ba1e04
// "tcp: call sk_data_ready() after listener migration" (Zhenzhong Wu, April 2026; stable
// 7.0.4, and 6.18/5.15 stable reviews), inet_csk_listen_stop() queued them on the target
// without notifying its waiters: "A nonblocking accept() still works because it checks the
// queue directly, but poll()/epoll_wait() waiters and blocking accept() callers can also
// remain asleep indefinitely."
//
// Scenario, per variant (IPv4/IPv6 x how the target waits):
//   1. In a fresh network namespace, net.ipv4.tcp_migrate_req=1; listener A alone on the
//      port; 8 clients connect, so their children wait in A's accept queue.
//   2. Listener B joins the group; a thread waits on B: blocking accept(), or epoll_wait()
//      (EPOLLIN, 2 s timeout); the case waits until that thread sleeps in the kernel.
//   3. close(A): the 8 children migrate to B.
//   4. Wait up to 2 s for the waiter: woke=true if it returned with a connection or an
//      event (not a failed call). A blocking accept() that did not wake is then released by one more
//      connection, made to B directly (it is the only listener left), so the case never
//      hangs.
//   5. Drain B without blocking: migrated = children accepted there (the extra connection
//      not counted).

#include <gtest/gtest.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "cases/lib/case_test.h"
#include "harness/error.h"
#include "harness/scope.h"
#include "harness/socket.h"

namespace rp::cases {
namespace {

enum class Wait { Accept, Epoll };

struct Variant {
  Family family;
  Wait wait;
  std::string name() const {
    return std::string("tcp") + (family == Family::V4 ? "4" : "6") + (wait == Wait::Accept ? "_blocking_accept" : "_epoll");
  }
};

constexpr uint16_t kPort = 47900;
constexpr int kChildren = 8;

UniqueFd connect_to(const Endpoint& e) {
  UniqueFd c(static_cast<int>(check_sys(socket(af_of(e.family), SOCK_STREAM | SOCK_CLOEXEC, 0), "socket client")));
  sockaddr_storage ss;
  socklen_t len = e.to_sockaddr(ss);
  check_sys(connect(c.get(), reinterpret_cast<sockaddr*>(&ss), len), "connect " + e.str());
  return c;
}

// 'S' (interruptible sleep) in /proc/self/task/<tid>/stat: the waiter is inside accept()
// or epoll_wait() and only a wake-up brings it back.
bool thread_sleeps(pid_t tid) {
  std::ifstream f("/proc/self/task/" + std::to_string(tid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto p = s.rfind(')');
  return p != std::string::npos && p + 2 < s.size() && s[p + 2] == 'S';
}

nlohmann::json scenario(const Variant& v) {
  SysctlScope migrate("net.ipv4.tcp_migrate_req", "1");
  ListenerOptions lo;
  lo.addr = Endpoint::loopback(v.family, kPort);
  lo.backlog = 64;
  UniqueFd a = open_listener(lo);
  std::vector<UniqueFd> clients;
  for (int i = 0; i < kChildren; ++i) clients.push_back(connect_to(lo.addr));
  lo.nonblocking = false;
  UniqueFd b = open_listener(lo);

  UniqueFd ep;
  if (v.wait == Wait::Epoll) {
    ep.reset(static_cast<int>(check_sys(epoll_create1(EPOLL_CLOEXEC), "epoll_create1")));
    epoll_event ev{};
    ev.events = EPOLLIN;
    check_sys(epoll_ctl(ep.get(), EPOLL_CTL_ADD, b.get(), &ev), "epoll_ctl ADD listener");
  }
  std::atomic<pid_t> tid{0};
  std::atomic<bool> returned{false};
  int result = -1, result_errno = 0;
  std::thread waiter([&] {
    tid = static_cast<pid_t>(syscall(SYS_gettid));
    if (v.wait == Wait::Accept) {
      result = accept4(b.get(), nullptr, nullptr, SOCK_CLOEXEC);
    } else {
      epoll_event ev;
      // Longer than the 2 s the case waits for a wake-up: its own timeout must not pass
      // for one (under emulation a 2 s epoll timeout fired inside that window).
      result = epoll_wait(ep.get(), &ev, 1, 6000);
    }
    result_errno = errno;
    returned = true;
  });
  auto until = [](auto pred, std::chrono::milliseconds limit) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
      if (std::chrono::steady_clock::now() > end) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
  };
  const bool asleep = until([&] { return tid.load() != 0 && thread_sleeps(tid.load()); }, std::chrono::seconds(2));

  a.reset();  // the children migrate to b in this close()
  const bool returned_in_time = until([&] { return returned.load(); }, std::chrono::seconds(2));
  UniqueFd releaser;
  if (!returned && v.wait == Wait::Accept) releaser = connect_to(lo.addr);
  waiter.join();
  // A wake-up is a connection or an event: epoll_wait returning 0 is its timeout, and an
  // accept() or epoll_wait() that failed (-1) returned for some other reason.
  const bool woke = returned_in_time && (v.wait == Wait::Accept ? result >= 0 : result > 0);

  uint64_t accepted = (v.wait == Wait::Accept && result >= 0) ? 1 : 0;
  if (v.wait == Wait::Accept && result >= 0) ::close(result);
  int nb = 1;
  check_sys(ioctl(b.get(), FIONBIO, &nb), "ioctl FIONBIO");
  for (;;) {
    int c = accept4(b.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) break;
    ::close(c);
    ++accepted;
  }
  nlohmann::json o;
  o["children"] = kChildren;
  o["waiter_was_asleep"] = asleep;
  o["woke"] = woke;
  // Judged (cases/expectations.json): "a connection" or "1 events" when woken; an errno
  // name when the call failed.
  o["waiter_result"] = result < 0 ? errno_name(result_errno)
                                  : v.wait == Wait::Epoll ? std::to_string(result) + " events" : std::string("a connection");
  o["released_by_new_connection"] = static_cast<bool>(releaser);
  o["migrated"] = accepted - (releaser ? 1 : 0);
  return o;
}

RP_CASE(migrated_wakeup, ::testing::Values(Variant{Family::V4, Wait::Accept}, Variant{Family::V4, Wait::Epoll},
                                           Variant{Family::V6, Wait::Accept}, Variant{Family::V6, Wait::Epoll}));

}  // namespace
}  // namespace rp::cases
