// The udp_drops probe counts the datagrams a UDP socket of the port held when it closed,
// in the namespace it is told to watch and in no other: by the namespace's cookie, and by
// its inode (how the probe is filtered on kernels without SO_NETNS_COOKIE, before 5.14).
// A probe watching another namespace (the test's own, the child being in a fresh one)
// must count none of them: the filter can fail.
//
// The kernel side of telling a purged datagram's namespace differs by kernel (the skbs
// queued, 6.7+; the destructor traced with fentry before that); which one loaded is
// reported, and the counts must be exact either way.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "probes/reuseport_probe.h"
#include "probes/tests/netns_child.h"
#include "probes/udp_drops.h"

namespace rp::probes {
namespace {

using namespace std::chrono_literals;
using testing::Report;

constexpr std::uint16_t kPort = 47431;
constexpr int kQueued = 40;

std::uint64_t purged(const UdpDrops& d) {
  std::uint64_t n = 0;
  for (const auto& x : d.read())
    if (x.purged_at_close()) n += x.count;
  return n;
}

using testing::loopback;

// In a fresh namespace: kQueued datagrams queued on a socket nobody reads, then closed.
Report close_with_queued(std::uint32_t elsewhere_ino) {
  testing::bring_loopback_up();
  UdpDrops by_cookie(UdpDrops::Options{kPort, current_netns_cookie(), 0});
  UdpDrops by_ino(UdpDrops::Options{kPort, 0, current_netns_ino()});
  UdpDrops elsewhere(UdpDrops::Options{kPort, 0, elsewhere_ino});
  Report r;
  r["told_by"] = by_ino.purges_told_by();
  r["not_told_why"] = by_ino.queued_not_tracked();

  const int member = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(member, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  const sockaddr_in to = loopback(kPort);
  if (::bind(member, reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0) throw std::runtime_error("bind member");
  const int client = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  int sent = 0;
  for (int i = 0; i < kQueued; ++i)
    sent += ::sendto(client, "x", 1, 0, reinterpret_cast<const sockaddr*>(&to), sizeof to) == 1;
  ::close(client);
  ::close(member);
  // The destructor runs after an RCU grace period (SOCK_RCU_FREE): wait for the count,
  // at most 5 s.
  for (int i = 0; i < 500 && purged(by_cookie) < static_cast<std::uint64_t>(sent); ++i) std::this_thread::sleep_for(10ms);
  std::this_thread::sleep_for(50ms);  // and anything counted after it
  r["sent"] = std::to_string(sent);
  r["by_cookie"] = std::to_string(purged(by_cookie));
  r["by_ino"] = std::to_string(purged(by_ino));
  r["elsewhere"] = std::to_string(purged(elsewhere));
  r["unknown"] = std::to_string(by_cookie.netns_unknown());
  return r;
}

TEST(UdpDrops, AClosedMembersQueueIsCountedInItsNamespaceOnly) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root: BPF load and unshare(CLONE_NEWNET)";
  const std::uint32_t ours = current_netns_ino();
  const auto child =
      testing::run_in_child(testing::Netns::kFresh, 30s, [ours] { return close_with_queued(ours); });
  ASSERT_TRUE(child.finished) << child.error;
  const Report& r = child.report;
  auto u = [&](const char* key) { return testing::to_u64(r, key); };
  std::cout << "[ report   ] told by: " << r.at("told_by") << r.at("not_told_why") << "\n";
  ASSERT_TRUE(r.at("not_told_why").empty()) << r.at("not_told_why");
  EXPECT_EQ(u("sent"), static_cast<std::uint64_t>(kQueued));
  EXPECT_EQ(u("by_cookie"), u("sent"));
  EXPECT_EQ(u("by_ino"), u("sent"));
  EXPECT_EQ(u("elsewhere"), 0u);
  EXPECT_EQ(u("unknown"), 0u);
}

}  // namespace
}  // namespace rp::probes
