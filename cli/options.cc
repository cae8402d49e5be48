#include "cli/options.h"

#include <cmath>
#include <stdexcept>

namespace rp::cases {

const std::string& ArgCursor::value() {
  if (i_ + 1 >= args_.size()) throw std::invalid_argument(arg() + " needs a value");
  return args_[++i_];
}

long parse_long(const std::string& option, const std::string& value, long lo, long hi) {
  size_t pos = 0;
  long n = 0;
  bool ok = false;
  try {
    n = std::stol(value, &pos);
    ok = pos == value.size();
  } catch (const std::exception&) {
  }
  if (!ok || n < lo || n > hi)
    throw std::invalid_argument(option + " needs " + std::to_string(lo) + "-" + std::to_string(hi) + ", got '" +
                                value + "'");
  return n;
}

double parse_seconds(const std::string& option, const std::string& value, bool zero_ok) {
  constexpr double kMax = 30 * 86400.0;
  size_t pos = 0;
  double d = -1;
  bool ok = false;
  try {
    d = std::stod(value, &pos);
    ok = pos == value.size();
  } catch (const std::exception&) {
  }
  if (!ok || !std::isfinite(d) || d < 0 || (!zero_ok && d == 0) || d > kMax)
    throw std::invalid_argument(option + " needs " +
                                (zero_ok ? "a number of seconds >= 0" : "a positive number of seconds") +
                                " (at most 30 days), got '" + value + "'");
  return d;
}

}  // namespace rp::cases
