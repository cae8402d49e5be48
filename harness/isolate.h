// Runs a piece of a case in a forked child of its own, kselftest style: own process group,
// own network namespace (lo up), a timeout past which the whole group is SIGKILLed. Whatever
// the child does (an exception, an abort, a hang) the caller gets a result, and no process
// of the group outlives the call.
#pragma once

#include <chrono>
#include <functional>
#include <string>

namespace rp {

struct IsolatedResult {
  enum class Status { Ok, Error, Crashed, Timeout };
  Status status = Status::Error;
  std::string payload;  // what the child's function returned (Ok), or the error text
  std::string describe() const;
  bool ok() const { return status == Status::Ok; }
};

struct IsolateOptions {
  std::chrono::milliseconds timeout{30000};
  bool new_netns = true;
};

IsolatedResult run_isolated(const std::function<std::string()>& fn, const IsolateOptions& opts = {});

}  // namespace rp
