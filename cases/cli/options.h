// Option values, checked the same way by every subcommand: the whole string must parse and
// lie in range, or std::invalid_argument says which option wanted what ("--port needs
// 1-65535, got 'http'"); the subcommands turn it into usage_error() (exit 2).
#pragma once

#include <string>

namespace rp::cases {

// An integer in [lo, hi].
long parse_long(const std::string& option, const std::string& value, long lo, long hi);

// Seconds as a decimal number: > 0, or >= 0 with zero_ok; at most 30 days.
double parse_seconds(const std::string& option, const std::string& value, bool zero_ok = false);

}  // namespace rp::cases
