// What every subcommand shares on its command line: parsing with CLI11 (typed and ranged
// options, `--x v` and `--x=v`, help generated from the options with the examples kept as
// the footer), one way to report bad usage (exit 2, the option and the bad value named),
// and the privilege check.
#pragma once

#include <CLI/CLI.hpp>

#include <optional>
#include <string>
#include <vector>

namespace rp::cli {

// A subcommand's parser: "reuseport-check <name>", its description, and `examples` (with
// the exit statuses and environment, as text) printed after the options in --help.
std::unique_ptr<CLI::App> make_app(const std::string& name, const std::string& description,
                                   const std::string& footer);

// Parses args (args[0] is the command name). nullopt: go on. Otherwise the exit status to
// return at once: 0 after --help, 2 after a usage error (printed as
// "reuseport-check <cmd>: <what is wrong>" plus where to find the usage).
std::optional<int> parse(CLI::App& app, const std::vector<std::string>& args);

// "reuseport-check: <msg>" + a pointer to --help on stderr; returns 2.
int usage_error(const std::string& msg);

// Whether this process has CAP_NET_ADMIN and CAP_SYS_ADMIN; `missing` names those it lacks.
bool has_privileges(std::string& missing);

// Validators for options given in seconds: a decimal number, > 0 (>= 0 with zero_ok), at
// most 30 days.
CLI::Validator seconds(bool zero_ok = false);

// The network namespace a command looks into: --netns NAME (as `ip netns` names it) or
// --pid PID (that process's), not both; neither is the current one.
struct NamespaceTarget {
  std::string netns, pid;
  // "network namespace NAME", "the network namespace of process PID", "the current network
  // namespace": how messages name it.
  std::string describe() const;
};
// Adds --netns and --pid, validated and exclusive; `verb` begins their help ("Watch", "Look").
void add_namespace_options(CLI::App& app, NamespaceTarget& t, const std::string& verb);
// Moves this (still single-threaded) process into the target's namespace; a namespace or
// process that is not there throws a one-line message naming it.
void enter_netns(const NamespaceTarget& t);

}  // namespace rp::cli
