// The probe's programs and links go with its process: a SIGKILL of the process that
// attached them leaves none of them behind (the kernel frees them with the last fd).
#include <bpf/bpf.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <set>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "probes/reuseport_probe.h"

namespace rp::probes {
namespace {

using namespace std::chrono_literals;

constexpr std::uint16_t kPort = 8080;

bool is_root() { return ::geteuid() == 0; }

bool prog_exists(std::uint32_t id) {
  const int fd = bpf_prog_get_fd_by_id(id);
  if (fd >= 0) {
    ::close(fd);
    return true;
  }
  return false;
}

bool link_exists(std::uint32_t id) {
  const int fd = bpf_link_get_fd_by_id(id);
  if (fd >= 0) {
    ::close(fd);
    return true;
  }
  return false;
}

// Programs of ours (by name) that are loaded right now, among the given ids.
std::set<std::uint32_t> our_programs_alive(const std::set<std::uint32_t>& ids) {
  std::set<std::uint32_t> alive;
  __u32 id = 0;
  while (bpf_prog_get_next_id(id, &id) == 0) {
    const int fd = bpf_prog_get_fd_by_id(id);
    if (fd < 0) continue;
    bpf_prog_info info{};
    __u32 len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) {
      const auto& names = program_names();
      if (std::find(names.begin(), names.end(), info.name) != names.end() && ids.count(id))
        alive.insert(id);
    }
    ::close(fd);
  }
  return alive;
}

TEST(ReuseportProbeLifetime, sigkill_leaves_no_program_or_link) {
  if (!is_root()) GTEST_SKIP() << "needs root: BPF load";
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0) << "pipe2: " << std::strerror(errno);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0) << "fork: " << std::strerror(errno);
  if (pid == 0) {
    ::close(fds[0]);
    std::string line;
    try {
      ReuseportProbe probe({.port = kPort});
      for (auto id : probe.program_ids()) line += "p" + std::to_string(id) + " ";
      for (auto id : probe.link_ids()) line += "l" + std::to_string(id) + " ";
      line += "\n";
      if (::write(fds[1], line.data(), line.size()) != static_cast<ssize_t>(line.size()))
        ::_exit(3);
      for (;;) ::pause();
    } catch (const std::exception& e) {
      line = std::string("error ") + e.what() + "\n";
      (void)!::write(fds[1], line.data(), line.size());
      ::_exit(2);
    }
  }
  ::close(fds[1]);
  std::string text;
  while (text.find('\n') == std::string::npos) {
    pollfd p{fds[0], POLLIN, 0};
    if (::poll(&p, 1, 10000) <= 0) break;
    char buf[512];
    const ssize_t n = ::read(fds[0], buf, sizeof(buf));
    if (n <= 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  std::set<std::uint32_t> progs, links;
  for (std::size_t pos = 0; pos < text.size();) {
    const std::size_t sp = text.find_first_of(" \n", pos);
    const std::string w = text.substr(pos, sp - pos);
    if (w.size() > 1 && w[0] == 'p') progs.insert(std::stoul(w.substr(1)));
    if (w.size() > 1 && w[0] == 'l') links.insert(std::stoul(w.substr(1)));
    pos = sp == std::string::npos ? text.size() : sp + 1;
  }
  const bool got_ids = !progs.empty() && !links.empty();
  bool alive_before = got_ids;
  for (auto id : progs) alive_before = alive_before && prog_exists(id);
  for (auto id : links) alive_before = alive_before && link_exists(id);
  ::kill(pid, SIGKILL);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(got_ids) << "child reported: " << text;
  ASSERT_TRUE(alive_before) << "the child's programs and links were not live while it ran";
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

  // Programs are freed after an RCU grace period and a workqueue pass.
  std::set<std::uint32_t> left_progs = progs, left_links = links;
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < deadline) {
    std::erase_if(left_progs, [](std::uint32_t id) { return !prog_exists(id); });
    std::erase_if(left_links, [](std::uint32_t id) { return !link_exists(id); });
    if (left_progs.empty() && left_links.empty()) break;
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(left_links.empty()) << left_links.size() << " links of the killed child remain";
  EXPECT_TRUE(left_progs.empty()) << left_progs.size() << " programs of the killed child remain";
  EXPECT_TRUE(our_programs_alive(progs).empty());
}

}  // namespace
}  // namespace rp::probes
