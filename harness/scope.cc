#include "harness/scope.h"

#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "harness/error.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

namespace rp {

NetnsScope::NetnsScope() {
  saved_.reset(static_cast<int>(
      check_sys(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC), "open /proc/thread-self/ns/net")));
  check_sys(unshare(CLONE_NEWNET), "unshare CLONE_NEWNET");
  try {
    loopback_up();
  } catch (...) {
    setns(saved_.get(), CLONE_NEWNET);
    throw;
  }
}

NetnsScope::~NetnsScope() {
  if (setns(saved_.get(), CLONE_NEWNET) != 0) {
    // Nothing sane is left to do: the thread would keep running in the wrong namespace.
    std::perror("reuseport-check: setns back to the original network namespace");
    std::abort();
  }
}

void loopback_up() {
  UniqueFd s(static_cast<int>(check_sys(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), "socket for SIOCSIFFLAGS")));
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  check_sys(ioctl(s.get(), SIOCGIFFLAGS, &ifr), "ioctl SIOCGIFFLAGS lo");
  ifr.ifr_flags |= IFF_UP;
  check_sys(ioctl(s.get(), SIOCSIFFLAGS, &ifr), "ioctl SIOCSIFFLAGS lo up");
}

std::optional<uint64_t> current_netns_cookie() {
  UniqueFd s(static_cast<int>(check_sys(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), "socket for SO_NETNS_COOKIE")));
  uint64_t cookie = 0;
  socklen_t len = sizeof cookie;
  if (getsockopt(s.get(), SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len) != 0) {
    if (errno == ENOPROTOOPT) return std::nullopt;  // before 5.14
    throw_sys("getsockopt SO_NETNS_COOKIE");
  }
  return cookie;
}

uint64_t current_netns_inode() {
  struct stat st;
  check_sys(stat("/proc/thread-self/ns/net", &st), "stat /proc/thread-self/ns/net");
  return st.st_ino;
}

std::string sysctl_path(const std::string& name) {
  std::string p = "/proc/sys/" + name;
  for (size_t i = std::strlen("/proc/sys/"); i < p.size(); ++i)
    if (p[i] == '.') p[i] = '/';
  return p;
}

bool sysctl_exists(const std::string& name) { return access(sysctl_path(name).c_str(), F_OK) == 0; }

std::string read_sysctl(const std::string& name) {
  std::ifstream f(sysctl_path(name));
  if (!f) throw_sys("read sysctl " + name, errno ? errno : ENOENT);
  std::stringstream ss;
  ss << f.rdbuf();
  std::string v = ss.str();
  while (!v.empty() && (v.back() == '\n' || v.back() == ' ')) v.pop_back();
  return v;
}

void write_sysctl(const std::string& name, const std::string& value) {
  UniqueFd fd(open(sysctl_path(name).c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) throw_sys("open sysctl " + name + " for writing");
  if (write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size()))
    throw_sys("write sysctl " + name + "=" + value);
}

SysctlScope::SysctlScope(std::string name, const std::string& value)
    : name_(std::move(name)), old_(read_sysctl(name_)) {
  write_sysctl(name_, value);
}

SysctlScope::~SysctlScope() {
  try {
    write_sysctl(name_, old_);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "reuseport-check: cannot restore %s=%s: %s\n", name_.c_str(), old_.c_str(), e.what());
  }
}

}  // namespace rp
