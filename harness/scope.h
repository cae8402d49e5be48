// Scoped kernel state: a case changes the network namespace and sysctls only through these,
// so that what it changed is put back on every path (return, exception, failed assertion).
// A case's own namespace dies with its last process, so per-namespace sysctls set inside it
// cannot outlive a killed case either.
#pragma once

#include <optional>
#include <string>

#include "harness/fd.h"

namespace rp {

// Moves the calling thread into a new network namespace with `lo` up; the destructor moves
// it back. Call it before starting threads that must share the namespace (new threads
// inherit the creator's namespace).
class NetnsScope {
 public:
  NetnsScope();
  ~NetnsScope();
  NetnsScope(const NetnsScope&) = delete;
  NetnsScope& operator=(const NetnsScope&) = delete;

 private:
  UniqueFd saved_;
};

// Brings the loopback interface of the current namespace up.
void loopback_up();
// The kernel's cookie of the calling thread's network namespace (SO_NETNS_COOKIE, 5.14+);
// nullopt when the kernel cannot tell.
std::optional<uint64_t> current_netns_cookie();
// The inode of the calling thread's network namespace (/proc/thread-self/ns/net).
uint64_t current_netns_inode();

// "net.ipv4.tcp_migrate_req" -> "/proc/sys/net/ipv4/tcp_migrate_req".
std::string sysctl_path(const std::string& name);
bool sysctl_exists(const std::string& name);
std::string read_sysctl(const std::string& name);  // trailing newline stripped
void write_sysctl(const std::string& name, const std::string& value);

// Sets a sysctl for the lifetime of the object and restores the old value afterwards.
class SysctlScope {
 public:
  SysctlScope(std::string name, const std::string& value);
  ~SysctlScope();
  SysctlScope(const SysctlScope&) = delete;
  SysctlScope& operator=(const SysctlScope&) = delete;
  const std::string& previous() const { return old_; }

 private:
  std::string name_;
  std::string old_;
};

}  // namespace rp
