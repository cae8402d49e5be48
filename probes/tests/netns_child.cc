#include "netns_child.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

namespace rp::probes::testing {
namespace {

[[noreturn]] void throw_errno(const std::string& operation) {
  throw std::system_error(errno, std::generic_category(), operation);
}

void write_all(int fd, const std::string& s) {
  std::size_t off = 0;
  while (off < s.size()) {
    const ssize_t n = ::write(fd, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the parent is gone; nothing left to tell
    off += static_cast<std::size_t>(n);
  }
}

Report parse_report(const std::string& text) {
  Report r;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    const std::string line = text.substr(pos, nl - pos);
    if (auto eq = line.find('='); eq != std::string::npos)
      r[line.substr(0, eq)] = line.substr(eq + 1);
    pos = nl + 1;
  }
  return r;
}

}  // namespace

void bring_loopback_up() {
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw_errno("socket for SIOCSIFFLAGS");
  struct ifreq ifr {};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (::ioctl(fd, SIOCGIFFLAGS, &ifr) != 0) {
    const int err = errno;
    ::close(fd);
    throw std::system_error(err, std::generic_category(), "ioctl SIOCGIFFLAGS lo");
  }
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
  if (::ioctl(fd, SIOCSIFFLAGS, &ifr) != 0) {
    const int err = errno;
    ::close(fd);
    throw std::system_error(err, std::generic_category(), "ioctl SIOCSIFFLAGS lo up");
  }
  ::close(fd);
}

void write_sysctl(const std::string& path, const std::string& value) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) throw_errno("open " + path);
  const ssize_t n = ::write(fd, value.data(), value.size());
  const int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(value.size()))
    throw std::system_error(n < 0 ? err : EIO, std::generic_category(), "write " + path);
}

std::uint64_t to_u64(const Report& r, const std::string& key) {
  auto it = r.find(key);
  if (it == r.end()) throw std::out_of_range("report has no key " + key);
  return std::stoull(it->second);
}

ChildOutcome run_in_child(Netns netns, std::chrono::milliseconds timeout,
                          const std::function<Report()>& body) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw_errno("pipe2");
  const pid_t pid = ::fork();
  if (pid < 0) throw_errno("fork");
  if (pid == 0) {
    ::close(fds[0]);
    // Die with the parent: an orphaned child would keep its probe attached.
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) ::_exit(3);
    std::string out;
    int code = 0;
    try {
      if (netns == Netns::kFresh) {
        if (::unshare(CLONE_NEWNET) != 0) throw_errno("unshare CLONE_NEWNET");
        bring_loopback_up();
      }
      for (const auto& [k, v] : body()) out += k + "=" + v + "\n";
    } catch (const std::exception& e) {
      out = std::string("error=") + e.what() + "\n";
      code = 2;
    }
    write_all(fds[1], out);
    ::_exit(code);
  }
  ::close(fds[1]);
  ChildOutcome outcome;
  std::string text;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool timed_out = false;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    struct pollfd p {fds[0], POLLIN, 0};
    const int rc = ::poll(&p, 1, static_cast<int>(left.count()));
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) {
      timed_out = rc == 0;
      break;
    }
    char buf[4096];
    const ssize_t n = ::read(fds[0], buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  outcome.report = parse_report(text);
  if (timed_out) {
    outcome.error = "child timed out after " + std::to_string(timeout.count()) + " ms";
  } else if (WIFSIGNALED(status)) {
    outcome.error = std::string("child killed by signal ") + strsignal(WTERMSIG(status));
  } else if (WEXITSTATUS(status) != 0) {
    auto it = outcome.report.find("error");
    outcome.error = it != outcome.report.end()
                        ? it->second
                        : "child exited with " + std::to_string(WEXITSTATUS(status));
  } else {
    outcome.finished = true;
  }
  return outcome;
}

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

}  // namespace rp::probes::testing
