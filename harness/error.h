// Errors of the harness: every failing syscall names the operation and the errno.
#pragma once

#include <cerrno>
#include <stdexcept>
#include <string>
#include <string_view>

namespace rp {

class SysError : public std::runtime_error {
 public:
  SysError(std::string op, int err);
  int err() const noexcept { return err_; }
  const std::string& op() const noexcept { return op_; }

 private:
  std::string op_;
  int err_;
};

// Throws SysError("op: strerror(err)").
[[noreturn]] void throw_sys(std::string_view op, int err = errno);

// Returns rc, or throws SysError naming `op` when rc < 0.
inline long check_sys(long rc, std::string_view op) {
  if (rc < 0) throw_sys(op, errno);
  return rc;
}

// Symbolic errno name ("ECONNRESET"), for ledgers and messages.
std::string errno_name(int err);

}  // namespace rp
