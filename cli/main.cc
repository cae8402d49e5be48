// reuseport-check: the command line. One entry per subcommand in kCommands.

#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "cli/commands.h"

namespace {

constexpr const char* kUsage = R"USAGE(reuseport-check: a SO_REUSEPORT conformance suite for the running Linux kernel

Usage:
  reuseport-check run [--case GLOB]... [--repeat N] [--json PATH] [--verbose]
  reuseport-check list [--case GLOB]...
  reuseport-check watch --port P [--netns NAME | --pid PID] [--duration S] [--json PATH]
  reuseport-check matrix [--kernels LIST] [--case GLOB]... [--json PATH] [-j N]
  reuseport-check deploy --start CMD --deploy CMD --port P [--load closed:N|rate:R]
                         [--request FILE | --http PATH] [--settle S] [--max-lost K]
                         [--json PATH] [--junit PATH]
  reuseport-check serve --port P [--http] [--workers N] [--backlog N] [--drain]
  reuseport-check report [--host-only | --kernels LIST] [--profile quick|full|guest] [--out DIR]
  reuseport-check COMMAND --help

Commands:
  run    Run the conformance cases on the running kernel; print expected, observed and
         the verdict per case x variant, then a summary. Exit 1 on any FAIL, XPASS or ERROR.
  list   Print the cases and their variants.
  watch  Attach to a port someone else's server listens on and show, each second, what
         the kernel saw: listeners joining and leaving, resets by cause, children orphaned
         in a closed listener's queue, overflows, migrations; then a summary.
  matrix Run the cases on every kernel of ci/kernels.toml (Debian kernels booted in qemu,
         plus the running one) and print a case x kernel table, differences marked.
  deploy Run your server (--start) and your deploy procedure (--deploy) under load in a
         network namespace of their own; count every lost connection with the kernel's
         cause and the moment in the deploy. Exit 1 when more than --max-lost were lost.
  serve  A small SO_REUSEPORT server that closes its listeners at once on SIGTERM, to try
         a deploy that loses connections and one that does not (docs/deploy.md).
  report Run the deploy strategies under load (close, SIGKILL, graceful, migration by
         sysctl or BPF, steer-then-drain, socket hand-over, shutdown-then-drain) and the
         published comparisons; write results/report/ (JSON, HTML, PNG, summary.md).

Examples:
  sudo reuseport-check run
  sudo reuseport-check run --case 'close_*' --repeat 20 --json results.json
  sudo reuseport-check run --case 'close_listener_with_queued_children/tcp6_*_migrate1'
  reuseport-check list
  sudo reuseport-check watch --port 80 --pid "$(pgrep -o nginx)" --duration 60
  sudo reuseport-check matrix --kernels 5.10,6.12 --case 'close_*'
  sudo reuseport-check deploy --port 8080 --http / --junit deploy.xml \
      --start docs/examples/nginx/start.sh --deploy docs/examples/nginx/reload.sh

Running cases needs root, or CAP_NET_ADMIN and CAP_SYS_ADMIN. Exit status 2: bad usage or
missing privileges.
)USAGE";

struct Command {
  const char* name;
  int (*fn)(const std::vector<std::string>&, const std::vector<std::string>&);
};

const Command kCommands[] = {
    {"run", rp::cases::run_command},
    {"list", rp::cases::run_command},
    {"watch", rp::cases::watch_command},
    {"matrix", rp::cases::matrix_command},
    {"deploy", rp::cases::deploy_command},
    {"serve", rp::cases::serve_command},
    {"report", rp::cases::report_command},
};

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::vector<std::string> all(argv, argv + argc);
  // The cases are GoogleTest suites linked into this binary; nothing of argv goes to gtest.
  int gargc = 1;
  char* gargv[] = {argv[0], nullptr};
  ::testing::InitGoogleTest(&gargc, gargv);

  if (args.empty()) return rp::cases::usage_error("missing command");
  if (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  for (const auto& c : kCommands)
    if (args[0] == c.name) return c.fn(args, all);
  return rp::cases::usage_error("unknown command '" + args[0] + "'");
}
