#include "harness/scope.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "harness/error.h"
#include "harness/isolate.h"
#include "test_util.h"

namespace rp {
namespace {

// A sysctl as the namespace `ns_fd` has it: read by a thread of its own that joins that
// namespace (setns moves only the calling thread), so the caller stays where it is.
std::string read_sysctl_in(int ns_fd, const std::string& name) {
  std::string value, error;
  std::thread t([&] {
    try {
      if (setns(ns_fd, CLONE_NEWNET) != 0) throw_sys("setns CLONE_NEWNET");
      value = read_sysctl(name);
    } catch (const std::exception& e) {
      error = e.what();
    }
  });
  t.join();
  if (!error.empty()) throw std::runtime_error(error);
  return value;
}

TEST(Sysctl, PathFromDottedName) {
  EXPECT_EQ(sysctl_path("net.ipv4.tcp_migrate_req"), "/proc/sys/net/ipv4/tcp_migrate_req");
}

TEST(Sysctl, MissingSysctlIsAClearError) {
  EXPECT_FALSE(sysctl_exists("net.ipv4.no_such_knob"));
  try {
    read_sysctl("net.ipv4.no_such_knob");
    FAIL();
  } catch (const SysError& e) {
    EXPECT_NE(std::string(e.what()).find("net.ipv4.no_such_knob"), std::string::npos);
  }
}

TEST(Netns, ScopeEntersAFreshNamespaceAndLeavesIt) {
  RP_REQUIRE_ROOT();
  const uint64_t outer = current_netns_inode();
  {
    NetnsScope ns;
    EXPECT_NE(current_netns_inode(), outer);
  }
  EXPECT_EQ(current_netns_inode(), outer);
}

TEST(Sysctl, ScopeRestoresOnExceptionAndStaysInItsNamespace) {
  RP_REQUIRE_ROOT();
  if (!sysctl_exists("net.ipv4.tcp_migrate_req")) GTEST_SKIP() << "net.ipv4.tcp_migrate_req absent (before 5.14)";
  const std::string outer = read_sysctl("net.ipv4.tcp_migrate_req");
  UniqueFd outer_ns(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(outer_ns) << "open /proc/thread-self/ns/net: " << std::strerror(errno);
  NetnsScope ns;
  const std::string before = read_sysctl("net.ipv4.tcp_migrate_req");
  try {
    SysctlScope s("net.ipv4.tcp_migrate_req", before == "0" ? "1" : "0");
    EXPECT_NE(read_sysctl("net.ipv4.tcp_migrate_req"), before);
    // While the scope holds the change, the caller's namespace still has its own value.
    EXPECT_EQ(read_sysctl_in(outer_ns.get(), "net.ipv4.tcp_migrate_req"), outer);
    throw std::runtime_error("a failing case");
  } catch (const std::runtime_error&) {
  }
  EXPECT_EQ(read_sysctl("net.ipv4.tcp_migrate_req"), before);
  EXPECT_EQ(read_sysctl_in(outer_ns.get(), "net.ipv4.tcp_migrate_req"), outer);
}

// The reader fails the test when it cannot read: a value the helper did not get would make
// the comparisons above pass or fail for the wrong reason.
TEST(Sysctl, ReadInAnotherNamespaceSeesThatNamespace) {
  RP_REQUIRE_ROOT();
  if (!sysctl_exists("net.ipv4.tcp_migrate_req")) GTEST_SKIP() << "net.ipv4.tcp_migrate_req absent (before 5.14)";
  UniqueFd outer_ns(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(outer_ns);
  const std::string outer = read_sysctl("net.ipv4.tcp_migrate_req");
  NetnsScope ns;
  SysctlScope s("net.ipv4.tcp_migrate_req", outer == "0" ? "1" : "0");
  UniqueFd inner_ns(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(inner_ns);
  EXPECT_NE(read_sysctl_in(inner_ns.get(), "net.ipv4.tcp_migrate_req"), outer);
  EXPECT_EQ(read_sysctl_in(outer_ns.get(), "net.ipv4.tcp_migrate_req"), outer);
}

// A case that is killed half-way cannot run destructors: what it set in its own namespace
// must not reach the caller's.
TEST(Sysctl, KilledCaseLeavesTheCallersNamespaceAsItWas) {
  RP_REQUIRE_ROOT();
  if (!sysctl_exists("net.ipv4.tcp_migrate_req")) GTEST_SKIP() << "net.ipv4.tcp_migrate_req absent (before 5.14)";
  const std::string outer = read_sysctl("net.ipv4.tcp_migrate_req");
  auto r = run_isolated([] {
    write_sysctl("net.ipv4.tcp_migrate_req", "1");
    raise(SIGKILL);
    return std::string();
  });
  EXPECT_EQ(r.status, IsolatedResult::Status::Crashed) << r.describe();
  EXPECT_EQ(read_sysctl("net.ipv4.tcp_migrate_req"), outer);
}

}  // namespace
}  // namespace rp
