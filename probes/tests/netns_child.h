// Test support: run a body in a forked child, optionally inside a fresh network namespace
// with lo up, under a timeout, and get back what it reports as "key=value" lines.
//
// The child never runs gtest assertions (a fork of the test binary must not report
// results); it reports facts, the parent asserts on them.
#pragma once

#include <netinet/in.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>

namespace rp::probes::testing {

using Report = std::map<std::string, std::string>;

struct ChildOutcome {
  bool finished = false;  // exited 0 before the timeout
  std::string error;      // why not: timeout, signal, the child's exception text
  Report report;
};

enum class Netns { kInherit, kFresh };

// body returns the report; an exception in it becomes ChildOutcome::error.
ChildOutcome run_in_child(Netns netns, std::chrono::milliseconds timeout,
                          const std::function<Report()>& body);

// Brings lo up in the calling thread's namespace (ioctl SIOCSIFFLAGS). Throws.
void bring_loopback_up();

// Writes a sysctl under /proc/sys (per namespace for net.*). Throws naming the path.
void write_sysctl(const std::string& path, const std::string& value);

std::uint64_t to_u64(const Report& r, const std::string& key);

// 127.0.0.1:port.
sockaddr_in loopback(std::uint16_t port);

}  // namespace rp::probes::testing
