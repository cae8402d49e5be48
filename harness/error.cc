#include "harness/error.h"

#include <cstring>

namespace rp {

SysError::SysError(std::string op, int err)
    : std::runtime_error(op + ": " + std::strerror(err) + " (" + errno_name(err) + ")"),
      op_(std::move(op)),
      err_(err) {}

void throw_sys(std::string_view op, int err) { throw SysError(std::string(op), err); }

std::string errno_name(int err) {
  if (err == 0) return "0";
  const char* name = strerrorname_np(err);
  return name ? name : "E" + std::to_string(err);
}

}  // namespace rp
