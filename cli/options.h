// Option values, checked the same way by every subcommand: the whole string must parse and
// lie in range, or std::invalid_argument says which option wanted what ("--port needs
// 1-65535, got 'http'"); the subcommands turn it into usage_error() (exit 2).
#pragma once

#include <string>
#include <vector>

namespace rp::cases {

// Walks a subcommand's arguments (args[0], the command, is skipped):
//   for (ArgCursor it(args); it.next();) { if (it.arg() == "--port") port = it.value(); }
class ArgCursor {
 public:
  explicit ArgCursor(const std::vector<std::string>& args) : args_(args) {}
  // Moves to the next argument; false past the last.
  bool next() { return ++i_ < args_.size(); }
  const std::string& arg() const { return args_.at(i_); }
  // The current option's value: the argument after it, consumed; "<option> needs a value"
  // (std::invalid_argument) when there is none.
  const std::string& value();

 private:
  const std::vector<std::string>& args_;
  size_t i_ = 0;
};

// An integer in [lo, hi].
long parse_long(const std::string& option, const std::string& value, long lo, long hi);

// Seconds as a decimal number: > 0, or >= 0 with zero_ok; at most 30 days.
double parse_seconds(const std::string& option, const std::string& value, bool zero_ok = false);

}  // namespace rp::cases
