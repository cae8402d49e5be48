#include "harness/isolate.h"

#include <signal.h>
#include <sys/wait.h>

#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "harness/scope.h"
#include "test_util.h"

namespace rp {
namespace {

TEST(Isolate, ReturnsThePayload) {
  RP_REQUIRE_ROOT();
  auto r = run_isolated([] { return std::string("hello"); });
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.payload, "hello");
}

TEST(Isolate, RunsInItsOwnNetworkNamespace) {
  RP_REQUIRE_ROOT();
  const uint64_t outer = current_netns_inode();
  auto r = run_isolated([] { return std::to_string(current_netns_inode()); });
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_NE(r.payload, std::to_string(outer));
}

TEST(Isolate, ExceptionBecomesAnError) {
  RP_REQUIRE_ROOT();
  auto r = run_isolated([]() -> std::string { throw std::runtime_error("bind 127.0.0.1:1: nope"); });
  EXPECT_EQ(r.status, IsolatedResult::Status::Error);
  EXPECT_EQ(r.payload, "bind 127.0.0.1:1: nope");
}

TEST(Isolate, CrashIsReportedWithItsSignal) {
  RP_REQUIRE_ROOT();
  auto r = run_isolated([]() -> std::string { abort(); });
  EXPECT_EQ(r.status, IsolatedResult::Status::Crashed);
  EXPECT_NE(r.payload.find("Aborted"), std::string::npos) << r.payload;
}

// A hung case, and a process it forked, are both gone when the call returns.
TEST(Isolate, TimeoutKillsTheWholeGroup) {
  RP_REQUIRE_ROOT();
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  auto r = run_isolated(
      [&]() -> std::string {
        pid_t grandchild = fork();
        if (grandchild == 0) {
          close(p[0]);
          close(p[1]);
          for (;;) pause();
        }
        (void)!write(p[1], &grandchild, sizeof grandchild);
        for (;;) pause();
      },
      {std::chrono::milliseconds(300), true});
  close(p[1]);
  pid_t grandchild = 0;
  ASSERT_EQ(read(p[0], &grandchild, sizeof grandchild), static_cast<ssize_t>(sizeof grandchild));
  close(p[0]);
  EXPECT_EQ(r.status, IsolatedResult::Status::Timeout);
  // The grandchild was reparented; give init a moment to reap it, then it must be gone.
  for (int i = 0; i < 100 && kill(grandchild, 0) == 0; ++i) {
    std::ifstream st("/proc/" + std::to_string(grandchild) + "/stat");
    std::string pid, comm, state;
    st >> pid >> comm >> state;
    if (!st || state == "Z") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::ifstream st("/proc/" + std::to_string(grandchild) + "/stat");
  std::string pid, comm, state;
  st >> pid >> comm >> state;
  EXPECT_TRUE(!st || state == "Z") << "grandchild " << grandchild << " still alive in state " << state;
}

}  // namespace
}  // namespace rp
