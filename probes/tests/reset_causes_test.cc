// The probe's RST causes on live traffic, one scenario per cause that a test can make
// without a case's load: each RST of the port lands in exactly one kernel_rst_* row.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <string>
#include <system_error>
#include <utility>

#include <gtest/gtest.h>

#include "netns_child.h"
#include "probes/reuseport_probe.h"

namespace rp::probes {
namespace {

using namespace std::chrono_literals;
using testing::Report;

constexpr std::uint16_t kPort = 8081;

[[noreturn]] void throw_errno(const std::string& operation) {
  throw std::system_error(errno, std::generic_category(), operation);
}

struct Fd {
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

using testing::loopback;

std::string show(const Counter& c) { return c.value ? std::to_string(*c.value) : "na"; }

bool is_root() { return ::geteuid() == 0; }

// A server that accepts, then closes with the request unread (what a killed worker does):
// one active RST from a socket that had an owner, and the client sees it.
Report owner_close_with_unread_data() {
  const std::uint64_t netns = current_netns_cookie();
  ReuseportProbe probe({.port = kPort, .netns_cookie = netns});
  Fd l(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (l.get() < 0) throw_errno("socket listener");
  const sockaddr_in addr = loopback(kPort);
  if (::bind(l.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) throw_errno("bind");
  if (::listen(l.get(), 8) != 0) throw_errno("listen");
  Fd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (c.get() < 0) throw_errno("socket client");
  if (::connect(c.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) throw_errno("connect");
  if (::send(c.get(), "GET", 3, 0) != 3) throw_errno("send");
  {
    Fd a(::accept4(l.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (a.get() < 0) throw_errno("accept4");
    char b;
    // The request is in the accepted socket's queue before it is closed: wait for it.
    if (::recv(a.get(), &b, 1, MSG_PEEK) != 1) throw_errno("recv MSG_PEEK");
  }  // close() with 3 unread bytes: __tcp_close() sends an RST (TCP_ABORT_ON_CLOSE)
  char b;
  const ssize_t n = ::recv(c.get(), &b, 1, 0);
  Report out;
  out["client_errno"] = std::to_string(n < 0 ? errno : 0);
  const ProbeReading r = probe.read();
  for (const char* k : {"owner_abort", "after_close", "no_socket", "listener_ack", "forgotten_child", "timewait",
                        "unnamed"})
    out[std::string("rst_") + k] = show(r.counter(std::string("kernel_rst_") + k));
  out["other_resets_sent"] = show(r.counter("kernel_other_resets_sent"));
  out["resets_received"] = show(r.counter("kernel_resets_received"));
  out["resets_received_closed"] = show(r.counter("kernel_resets_received_closed"));
  return out;
}

TEST(ReuseportProbeCauses, close_with_unread_data_is_an_owner_abort) {
  if (!is_root()) GTEST_SKIP() << "needs root: BPF load and unshare(CLONE_NEWNET)";
  const testing::ChildOutcome child = testing::run_in_child(testing::Netns::kFresh, 20s, owner_close_with_unread_data);
  ASSERT_TRUE(child.finished) << child.error;
  auto u = [&](const char* key) { return testing::to_u64(child.report, key); };
  EXPECT_EQ(u("client_errno"), static_cast<std::uint64_t>(ECONNRESET));
  EXPECT_EQ(u("rst_owner_abort"), 1u);
  EXPECT_EQ(u("other_resets_sent"), 1u);
  EXPECT_EQ(u("rst_after_close") + u("rst_no_socket") + u("rst_listener_ack") + u("rst_forgotten_child") +
                u("rst_timewait") + u("rst_unnamed"),
            0u);
  EXPECT_EQ(u("resets_received"), 1u);
  EXPECT_EQ(u("resets_received_closed"), 0u);  // the client still held its socket
}

// A server that accepts and closes before the request arrives, having sent nothing: a FIN,
// no RST; the client reads EOF. Counted as an owner's close before answering; a server
// that answered first is not.
Report owner_close_before_answering() {
  ReuseportProbe probe({.port = kPort, .netns_cookie = current_netns_cookie()});
  Fd l(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (l.get() < 0) throw_errno("socket listener");
  const sockaddr_in addr = loopback(kPort);
  if (::bind(l.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) throw_errno("bind");
  if (::listen(l.get(), 8) != 0) throw_errno("listen");
  Report out;
  for (const bool answer : {false, true}) {
    Fd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (c.get() < 0) throw_errno("socket client");
    if (::connect(c.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) throw_errno("connect");
    {
      Fd a(::accept4(l.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (a.get() < 0) throw_errno("accept4");
      if (answer && ::send(a.get(), "ok", 2, 0) != 2) throw_errno("send");
    }
    char b[4];
    ssize_t n, got = 0;
    while ((n = ::recv(c.get(), b, sizeof b, 0)) > 0) got += n;
    out[answer ? "answered_bytes" : "unanswered_bytes"] = std::to_string(got);
    out[answer ? "answered_errno" : "unanswered_errno"] = std::to_string(n < 0 ? errno : 0);
    out[answer ? "after_answered" : "after_unanswered"] = show(probe.read().counter("kernel_owner_close_unanswered"));
  }
  out["other_resets_sent"] = show(probe.read().counter("kernel_other_resets_sent"));
  return out;
}

TEST(ReuseportProbeCauses, close_before_answering_is_counted_without_an_rst) {
  if (!is_root()) GTEST_SKIP() << "needs root: BPF load and unshare(CLONE_NEWNET)";
  const testing::ChildOutcome child = testing::run_in_child(testing::Netns::kFresh, 20s, owner_close_before_answering);
  ASSERT_TRUE(child.finished) << child.error;
  auto u = [&](const char* key) { return testing::to_u64(child.report, key); };
  EXPECT_EQ(u("unanswered_bytes"), 0u);
  EXPECT_EQ(u("unanswered_errno"), 0u);  // EOF
  EXPECT_EQ(u("after_unanswered"), 1u);
  EXPECT_EQ(u("answered_bytes"), 2u);
  EXPECT_EQ(u("after_answered"), 1u);  // the server that answered is not counted
  EXPECT_EQ(u("other_resets_sent"), 0u);
}

}  // namespace
}  // namespace rp::probes
