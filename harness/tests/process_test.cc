// harness/process: a spawned command's output and exit status come back; its descendants
// are found, a double-forked daemon included; kill_tree leaves none; the parent-death
// signal kills a child whose parent was SIGKILLed; the PID-namespace worker is init of its
// own namespace and its status comes back.
#include "harness/process.h"

#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <thread>

#include "harness/error.h"

namespace rp {
namespace {

SpawnOptions sh(const std::string& cmd) {
  SpawnOptions o;
  o.argv = shell(cmd);
  return o;
}

// This test process as a subreaper, for one test: orphans of what it spawned come to it.
struct Subreaper {
  Subreaper() { prctl(PR_SET_CHILD_SUBREAPER, 1); }
  ~Subreaper() {
    kill_tree(getpid());
    prctl(PR_SET_CHILD_SUBREAPER, 0);
  }
};

bool has(const std::vector<ProcInfo>& ps, pid_t pid) {
  return std::any_of(ps.begin(), ps.end(), [&](const ProcInfo& p) { return p.pid == pid; });
}

// Polls `cond` for up to 10 s (a bound for a loaded machine, not a timing under test).
template <class F>
bool eventually(F cond) {
  for (int i = 0; i < 1000; ++i) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return cond();
}

TEST(Process, SpawnCapturesOutputAndExitStatus) {
  SpawnOptions o = sh("echo out; echo \"err $RP_X\" >&2; exit 3");
  o.env = {{"RP_X", "x1"}};
  auto p = Process::spawn(o);
  EXPECT_GT(p.pid(), 0);
  const int st = p.wait();
  EXPECT_TRUE(WIFEXITED(st));
  EXPECT_EQ(exit_code(st), 3);
  EXPECT_FALSE(p.succeeded());
  EXPECT_EQ(p.describe(), "exited with status 3");
  EXPECT_EQ(p.output(), "out\nerr x1\n");
  EXPECT_EQ(p.last_lines(1), std::vector<std::string>{"err x1"});
  EXPECT_NE(p.tail_text(5).find("    | out\n"), std::string::npos);
}

TEST(Process, SignalledChildIsDescribedBySignal) {
  auto p = Process::spawn(sh("kill -KILL $$"));
  EXPECT_EQ(exit_code(p.wait()), 128 + SIGKILL);
  EXPECT_EQ(p.describe(), "was killed by signal KILL");
}

TEST(Process, AFailedExecIsAnErrorInTheParent) {
  try {
    SpawnOptions o;
    o.argv = {"/nonexistent/prog"};
    Process::spawn(o);
    FAIL() << "spawn did not throw";
  } catch (const SysError& e) {
    EXPECT_EQ(e.err(), ENOENT);
    EXPECT_NE(std::string(e.what()).find("exec /nonexistent/prog"), std::string::npos) << e.what();
  }
}

TEST(Process, InheritedDescriptorsAreClosed) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);  // not CLOEXEC: only the spawn's closing keeps it from the child
  auto p = Process::spawn(sh("ls /proc/self/fd"));
  p.wait();
  close(fds[0]);
  close(fds[1]);
  // ls sees 0, 1, 2 and the directory it reads.
  EXPECT_LE(p.last_lines(100).size(), 4u) << p.output();
  EXPECT_EQ(p.output().find(std::to_string(fds[1]) + "\n"), std::string::npos) << p.output();
}

TEST(Process, DescendantsIncludeADoubleForkedDaemonAndKillTreeLeavesNone) {
  Subreaper sr;
  // The inner shell exits at once: its sleep is reparented to us, as a daemon's is.
  auto p = Process::spawn(sh("/bin/sh -c 'sleep 60 & echo $!' ; exec sleep 61"));
  pid_t daemon = 0;
  ASSERT_TRUE(eventually([&] { return !p.output().empty(); }));
  daemon = std::stoi(p.output());
  ASSERT_TRUE(eventually([&] {
    auto d = descendants(getpid());
    auto it = std::find_if(d.begin(), d.end(), [&](const ProcInfo& x) { return x.pid == daemon; });
    return has(d, p.pid()) && it != d.end() && it->ppid == getpid();
  }));
  auto killed = kill_tree(getpid(), [&](pid_t pid, int st) { p.record(pid, st); });
  EXPECT_TRUE(has(killed, p.pid()));
  EXPECT_TRUE(has(killed, daemon));
  EXPECT_TRUE(descendants(getpid()).empty());
  EXPECT_EQ(::kill(daemon, 0), -1);
  ASSERT_TRUE(p.ended());
  EXPECT_EQ(p.describe(), "was killed by signal KILL");
}

TEST(Process, ParentDeathSignalKillsTheChildOfAKilledParent) {
  Subreaper sr;
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t parent = fork();
  ASSERT_GE(parent, 0);
  if (parent == 0) {
    close(fds[0]);
    try {
      SpawnOptions o;
      o.argv = {"/bin/sleep", "60"};
      auto c = Process::spawn(o);
      const pid_t pid = c.pid();
      if (write(fds[1], &pid, sizeof pid) != sizeof pid) _exit(1);
    } catch (...) {
      _exit(1);
    }
    pause();
    _exit(0);
  }
  close(fds[1]);
  pid_t child = 0;
  ASSERT_EQ(read(fds[0], &child, sizeof child), static_cast<ssize_t>(sizeof child));
  close(fds[0]);
  ASSERT_EQ(::kill(parent, SIGKILL), 0);
  int st = 0;
  ASSERT_EQ(waitpid(parent, &st, 0), parent);
  // The orphan comes to us (the subreaper): its wait status says who ended it.
  pid_t r = 0;
  ASSERT_TRUE(eventually([&] { return (r = waitpid(child, &st, WNOHANG)) == child; })) << "the child outlived its parent";
  EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << describe_wait_status(st);
}

TEST(Process, PidNamespaceWorkerIsInitOfItsOwnNamespace) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (CLONE_NEWPID, a /proc mount)";
  // In a child of ours: unshare(CLONE_NEWPID) changes where this process's children go.
  const pid_t helper = fork();
  ASSERT_GE(helper, 0);
  if (helper == 0) {
    try {
      auto ns = enter_pid_namespace();
      if (ns.in_worker) {
        std::ifstream f("/proc/self/stat");
        pid_t self = 0;
        f >> self;
        _exit(getpid() == 1 && self == 1 ? 7 : 1);
      }
      _exit(WIFEXITED(ns.wait_status) ? WEXITSTATUS(ns.wait_status) : 2);
    } catch (...) {
      _exit(3);
    }
  }
  int st = 0;
  ASSERT_EQ(waitpid(helper, &st, 0), helper);
  EXPECT_EQ(exit_code(st), 7) << "1: the worker is not pid 1 in its /proc; 3: a step failed";
}

}  // namespace
}  // namespace rp
