// reuseport-check: the command line. One row per subcommand in kCommands; the top-level
// help is generated from it, each subcommand's own help from its options (COMMAND --help).

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/common/options.h"

namespace {

struct Command {
  const char* name;
  int (*fn)(const std::vector<std::string>&, const std::vector<std::string>&);
  const char* usage;        // the synopsis after "reuseport-check "
  const char* description;  // what it does, in a sentence or two
};

const Command kCommands[] = {
    {"run", rp::cli::run_command, "run [--case GLOB]... [--repeat N] [-j N] [--json PATH] [--resume FILE] [--verbose]",
     "Run the conformance cases on the running kernel; print expected, observed and the verdict per case x "
     "variant, then a summary. Exit 1 on any FAIL, XPASS or ERROR."},
    {"list", rp::cli::list_command, "list [--case GLOB]...", "Print the cases and their variants."},
    {"watch", rp::cli::watch_command, "watch --port P [--netns NAME | --pid PID] [--duration S] [--json PATH]",
     "Attach to a port someone else's server listens on and show, each second, what the kernel saw: listeners "
     "joining and leaving, resets by cause, children orphaned in a closed listener's queue, overflows, "
     "migrations; then a summary."},
    {"group", rp::cli::group_command,
     "group --port P [--netns NAME | --pid PID] [--udp] [--json PATH] [--watch [--interval S] [--duration S]]",
     "Show the members of the port's reuseport group(s): per socket its cookie, owning processes (pid, command, "
     "start time), address, backlog and queue, SO_INCOMING_CPU, its group and the group's steering program, and "
     "its share of new connections or datagrams; with --watch, as they join and leave."},
    {"matrix", rp::cli::matrix_command, "matrix [--kernels LIST] [--case GLOB]... [--json PATH] [-j N] [--vcpus N] [--shard K/N]\n"
     "                         [--kernel-image FILE [--modules DIR] | --kernel-deb FILE]...",
     "Run the cases on every kernel of ci/kernels.toml (Debian kernels booted in qemu, plus the running one), "
     "or on your own kernel image or package, and print a case x kernel table, differences marked."},
    {"merge", rp::cli::merge_command,
     "merge DIR... [--results-dir OUT] [--json PATH] [--junit PATH]",
     "Merge the results dirs of several matrix runs (the shards of `matrix --shard K/N` on several machines) "
     "into one table, JUnit, --json document and results/<release>/results.json; disagreeing inputs are an "
     "error."},
    {"deploy", rp::cli::deploy_command,
     "deploy --start CMD --deploy CMD --port P [--load closed:N|rate:R]\n"
     "                         [--request FILE | --http PATH] [--settle S] [--max-lost K]\n"
     "                         [--json PATH] [--junit PATH] [--kernels LIST] [--kernel-image FILE [--modules DIR] | --kernel-deb FILE]...\n"
     "                         [--guest-path PATH]... [-j N]",
     "Run your server (--start) and your deploy procedure (--deploy) under load in a network namespace of their "
     "own; count every lost connection with the kernel's cause and the moment in the deploy. Exit 1 when more "
     "than --max-lost were lost. With --kernels, the same in each kernel's guest: one row per kernel."},
    {"serve", rp::cli::serve_command, "serve --port P [--http] [--workers N] [--backlog N] [--drain]",
     "A small SO_REUSEPORT server that closes its listeners at once on SIGTERM, to try a deploy that loses "
     "connections and one that does not (docs/deploy.md)."},
    {"report", rp::cli::report_command,
     "report [--host-only | --kernels LIST] [--profile quick|full|guest] [--out DIR]",
     "Run the deploy strategies under load (close, SIGKILL, graceful, migration by sysctl or BPF, "
     "steer-then-drain, socket hand-over, shutdown-then-drain) and the published comparisons; write "
     "results/report/ (JSON, HTML, PNG, summary.md)."},
};

constexpr const char* kExamples = R"EX(Examples:
  reuseport-check run
  reuseport-check run --case 'close_*' --repeat 20 --json results.json
  reuseport-check run --resume results.json
  reuseport-check run --case 'close_listener_with_queued_children/tcp6_*_migrate1'
  reuseport-check list
  reuseport-check watch --port 80 --pid "$(pgrep -o nginx)" --duration 60
  reuseport-check group --port 80 --pid "$(pgrep -o nginx)" --watch
  reuseport-check matrix --kernels 5.10,6.12 --case 'close_*'
  reuseport-check deploy --port 8080 --http / --junit deploy.xml \
      --start docs/examples/nginx/start.sh --deploy docs/examples/nginx/reload.sh

Running cases needs root, or CAP_NET_ADMIN and CAP_SYS_ADMIN. Exit status 2: bad usage or
missing privileges.
)EX";

// Words of `text` filled into lines of at most `width` columns, each after `indent`.
std::string fill(const std::string& text, size_t indent, size_t width) {
  std::string out, line;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find(' ', pos);
    if (end == std::string::npos) end = text.size();
    const std::string word = text.substr(pos, end - pos);
    pos = end + 1;
    if (!line.empty() && indent + line.size() + 1 + word.size() > width) {
      out += line + "\n" + std::string(indent, ' ');
      line.clear();
    }
    line += (line.empty() ? "" : " ") + word;
  }
  return out + line + "\n";
}

void print_help() {
  std::string s = "reuseport-check: a SO_REUSEPORT conformance suite for the running Linux kernel\n\nUsage:\n";
  for (const auto& c : kCommands) s += std::string("  reuseport-check ") + c.usage + "\n";
  s += "  reuseport-check COMMAND --help\n\nCommands:\n";
  for (const auto& c : kCommands) {
    std::string head = std::string("  ") + c.name;
    head.resize(9, ' ');
    s += head + fill(c.description, 9, 92);
  }
  s += std::string("\n") + kExamples;
  std::fputs(s.c_str(), stdout);
}

}  // namespace


int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::vector<std::string> all(argv, argv + argc);
  // The cases are GoogleTest suites linked into this binary; nothing of argv goes to gtest.
  int gargc = 1;
  char* gargv[] = {argv[0], nullptr};
  ::testing::InitGoogleTest(&gargc, gargv);

  if (args.empty()) return rp::cli::usage_error("missing command");
  if (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    if (args[0] == "help" && args.size() > 1) {  // `help run` is `run --help`
      for (const auto& c : kCommands)
        if (args[1] == c.name) return c.fn({args[1], "--help"}, all);
      return rp::cli::usage_error("unknown command '" + args[1] + "'");
    }
    print_help();
    return 0;
  }
  for (const auto& c : kCommands)
    if (args[0] == c.name) return c.fn(args, all);
  return rp::cli::usage_error("unknown command '" + args[0] + "'");
}
