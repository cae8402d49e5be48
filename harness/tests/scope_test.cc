#include "harness/scope.h"

#include <gtest/gtest.h>

#include "harness/error.h"
#include "harness/isolate.h"
#include "test_util.h"

namespace rp {
namespace {

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
  NetnsScope ns;
  const std::string before = read_sysctl("net.ipv4.tcp_migrate_req");
  try {
    SysctlScope s("net.ipv4.tcp_migrate_req", before == "0" ? "1" : "0");
    EXPECT_NE(read_sysctl("net.ipv4.tcp_migrate_req"), before);
    throw std::runtime_error("a failing case");
  } catch (const std::runtime_error&) {
  }
  EXPECT_EQ(read_sysctl("net.ipv4.tcp_migrate_req"), before);
  (void)outer;
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
