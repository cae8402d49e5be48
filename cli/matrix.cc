// `reuseport-check matrix`: the catalogue on every kernel of ci/kernels.toml. The work is
// the pytest driver's (ci/matrix: one qemu boot per kernel, the static reuseport-check in
// the guest); this command runs it, shows its progress from the events it appends to a
// file, and prints a case x kernel table with the rows whose verdicts differ marked.

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cli/commands.h"
#include "cli/common/options.h"
#include "cli/common/output.h"
#include "cli/common/progress.h"
#include "cli/matrix_table.h"
#include "harness/process.h"

#ifndef RP_SOURCE_DIR
#define RP_SOURCE_DIR "."
#endif

namespace rp::cli {

namespace {

constexpr const char* kMatrixDescription =
    "Run the cases on every kernel of ci/kernels.toml: each Debian kernel is booted once in\n"
    "qemu (TCG when KVM does not work) with a statically linked reuseport-check in a busybox\n"
    "initramfs; \"running\" is the machine's own kernel, run directly. Shows its progress (on a\n"
    "terminal one updating line; in a log a status line at most every 10 s) and a line per\n"
    "kernel booted, finished or failed, then a table (rows: case/variant, columns: kernels,\n"
    "cells: verdicts); rows whose verdicts differ between kernels are marked '*'. A kernel that\n"
    "does not boot, panics or hangs shows ERROR in its column (with its console log), the\n"
    "other kernels go on.";

constexpr const char* kMatrixFooter = R"FOOTER(Outputs: --json and --results-dir are checked before anything starts. Each kernel's
<results-dir>/<release>/results.json is written as soon as that kernel finishes, and the
--json document is rewritten atomically each time a kernel finishes ("complete": false
until the end), so a killed matrix keeps every kernel it finished.

The guest binary: build-static/bin/reuseport-check, configured with -DRP_STATIC=ON and
built by the driver on first use (ninja -j2), or $RP_STATIC_BIN / $RP_STATIC_BUILD_DIR.
The source tree: $RP_SOURCE_DIR, else the one this binary was built from.
Kernels are downloaded once into ~/.cache/reuseport-check ($RP_CACHE_DIR).

Your own kernel: --kernel-image PATH boots a bzImage/vmlinuz (named image:<basename>), with
the sock_diag modules of the --modules DIR after it (its /lib/modules/<release>);
--kernel-deb FILE boots the image of a linux-image .deb with the modules it holds (named
deb:<package>_<version>); --kernel-name NAME names the one before it. They are repeatable,
replace the default "all" unless --kernels is given too, and results go under
<results-dir>/<release>/ with the release the guest reports. A kernel that lacks what a
case needs (sock_diag modules, BPF, BTF) gives SKIPs naming the missing option.

Exit status: 0 when every cell is PASS, XFAIL or SKIP; 1 on any FAIL, XPASS or ERROR;
2 on bad usage (unknown kernel, no matching case, an output that cannot be written) or
when the driver cannot start.

Examples:
  reuseport-check matrix
  reuseport-check matrix --kernels 5.10,6.12 --case 'close_*' --json matrix.json
  reuseport-check matrix --kernels 6.12 --vcpus 4 --case 'incoming_cpu'
  reuseport-check matrix --shard 2/3 --results-dir shard2 --json shard2/matrix.json
  reuseport-check matrix --kernel-image arch/x86/boot/bzImage --modules /lib/modules/6.12.0-rc1
  reuseport-check matrix --kernels 6.12 --kernel-deb linux-image-6.12.48+deb13-amd64_6.12.48-1_amd64.deb
)FOOTER";

struct Options {
  std::string kernels;  // empty: pytest's default (all, or only the local kernels)
  std::vector<std::string> images, modules, debs, names;  // your own kernels
  std::vector<std::string> globs;
  std::string json_path, results_dir, shard, python = "/usr/bin/python3";
  int jobs = 2;
  int vcpus = 2;
};

using matrix::EventFile;
using matrix::KernelState;
using matrix::State;

std::string progress_line(const State& s, double elapsed) {
  size_t total = 0;
  for (const auto& k : s.kernels) total += s.expected(k);
  char head[96];
  std::snprintf(head, sizeof head, "matrix %3.0fs [%zu/%zu]", elapsed, s.records.size(), total);
  std::string line = head;
  if (s.kernels.empty()) return line + " starting pytest (builds the static binary if needed)";
  for (const auto& k : s.kernels) {
    auto it = s.by_kernel.find(k);
    std::string st = it == s.by_kernel.end() ? "waiting" : it->second.state;
    if (it != s.by_kernel.end() && st == "running" && it->second.total)
      st = std::to_string(it->second.done) + "/" + std::to_string(it->second.total);
    line += "  " + k + ":" + st;
  }
  return line;
}

std::string tail_of(const std::string& path, size_t lines) {
  std::ifstream f(path);
  std::vector<std::string> all;
  for (std::string l; std::getline(f, l);) all.push_back(l);
  std::string out;
  for (size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i) out += "  " + all[i] + "\n";
  return out;
}

// pytest's own message for a usage error ("ERROR: unknown kernel(s) ..."), up to the
// next blank line.
std::string usage_message(const std::string& log) {
  std::ifstream f(log);
  std::string msg;
  bool in = false;
  for (std::string l; std::getline(f, l);) {
    if (!in && l.rfind("ERROR: ", 0) == 0) {
      in = true;
      msg = l.substr(7);
    } else if (in && l.empty()) {
      break;
    } else if (in) {
      msg += "\n" + l;
    }
  }
  // The driver quotes `reuseport-check list`, whose messages carry the prefix already.
  if (msg.rfind("reuseport-check: ", 0) == 0) msg = msg.substr(17);
  return msg;
}

// The lines that stay, one per kernel event worth keeping in a log: booting, booted (or
// running, on the host), and finished (with its verdict counts) or ERROR. A kernel's
// records arrive after its "done" event (one per pytest item), so "finished" waits for all
// of them, or for the end. Returns whether a kernel finished since the last call.
bool kernel_lines(State& s, rp::cli::Progress& progress, bool at_end) {
  auto who = [&](const std::string& name) {
    const KernelState& k = s.by_kernel[name];
    return name + (k.release.empty() || k.release == name ? "" : " (" + k.release + ")");
  };
  for (const auto& [name, state] : s.transitions) {
    KernelState& k = s.by_kernel[name];
    if (state == "booting" && k.shown.empty()) {
      progress.line(who(name) + ": booting");
      k.shown = state;
    } else if (state == "running" && (k.shown.empty() || k.shown == "booting")) {
      progress.line(who(name) + (k.shown == "booting" ? ": booted, running " : ": running ") +
                    std::to_string(s.expected(name)) + " variant(s)");
      k.shown = state;
    }
  }
  s.transitions.clear();
  bool finished = false;
  for (const auto& name : s.kernels) {
    auto it = s.by_kernel.find(name);
    if (it == s.by_kernel.end()) continue;
    KernelState& k = it->second;
    if ((k.state != "done" && k.state != "error") || k.shown == "done" || k.shown == "error") continue;
    size_t n = 0;
    const auto counts = s.verdicts(name, &n);
    if (n < s.expected(name) && !at_end) continue;
    if (k.state == "error") {
      progress.line(who(name) + ": ERROR: " + k.error + (k.console_log.empty() ? "" : " (log: " + k.console_log + ")"));
    } else {
      std::string line = who(name) + ": finished";
      if (k.duration_s >= 0) {
        char b[32];
        std::snprintf(b, sizeof b, " in %.0f s", k.duration_s);
        line += b;
      }
      line += ":";
      for (const auto& [verdict, c] : counts) line += " " + std::to_string(c) + " " + verdict;
      progress.line(line);
    }
    k.shown = k.state;
    finished = true;
  }
  return finished;
}

// --kernel-image/--modules/--kernel-deb/--kernel-name for pytest, in the order given.
std::vector<std::string> local_args(const CLI::App& app, const Options& o) {
  const std::pair<const char*, const std::vector<std::string>*> opts[] = {
      {"--kernel-image", &o.images}, {"--modules", &o.modules}, {"--kernel-deb", &o.debs}, {"--kernel-name", &o.names}};
  std::map<std::string, size_t> next;
  std::vector<std::string> out;
  for (const CLI::Option* opt : app.parse_order())
    for (const auto& [name, values] : opts)
      if (opt->check_lname(std::string(name).substr(2)) && next[name] < values->size())
        out.insert(out.end(), {name, (*values)[next[name]++]});
  return out;
}

volatile sig_atomic_t g_child = 0;
void forward(int sig) {
  if (g_child > 0) kill(g_child, sig);
}

}  // namespace

int matrix_command(const std::vector<std::string>& args, const std::vector<std::string>&) {
  Options o;
  auto app = rp::cli::make_app("matrix", kMatrixDescription, kMatrixFooter);
  app->add_option("--kernels", o.kernels, "Comma-separated names from ci/kernels.toml (default: all)")
      ->type_name("LIST");
  // Your own kernels; their order matters (a --modules belongs to the --kernel-image before
  // it), so they are passed on in the order given (local_args below).
  app->add_option("--kernel-image", o.images, "Boot this kernel image (bzImage/vmlinuz) too (repeatable)")
      ->type_name("PATH")
      ->allow_extra_args(false);
  app->add_option("--modules", o.modules, "The modules tree (/lib/modules/<release>) of the --kernel-image before it")
      ->type_name("DIR")
      ->allow_extra_args(false);
  app->add_option("--kernel-deb", o.debs, "Boot the kernel in this linux-image .deb too (repeatable)")
      ->type_name("FILE")
      ->allow_extra_args(false);
  app->add_option("--kernel-name", o.names, "Name the --kernel-image or --kernel-deb before it")
      ->type_name("NAME")
      ->allow_extra_args(false);
  app->add_option("--case", o.globs, "Cases or CASE/VARIANT globs, as `run --case` (repeatable)")
      ->type_name("GLOB")
      ->allow_extra_args(false);
  app->add_option("--json", o.json_path, "Write every record (each with its kernel release) to PATH")
      ->type_name("PATH");
  app->add_option("-j,--jobs", o.jobs, "Kernels at a time (pytest-xdist workers; default 2)")->check(CLI::Range(1, 16));
  app->add_option("--vcpus", o.vcpus,
                  "CPUs of each guest (default 2: the CPU cases need two; under TCG run as ci/vm/accel.toml says)")
      ->type_name("N")
      ->check(CLI::Range(1, 64));
  app->add_option("--results-dir", o.results_dir,
                  "results/<release>/results.json, junit.xml and the VM logs (runs/) go here (default: results/ of "
                  "the source tree)")
      ->type_name("DIR");
  app->add_option("--shard", o.shard,
                  "Run only shard K of N of the kernel x case/variant items: every machine computes the same split "
                  "(ci/matrix/shard.py); `reuseport-check merge` combines the shards' results dirs")
      ->type_name("K/N")
      ->check([](const std::string& v) {
        unsigned k = 0, n = 0;
        char end = 0;
        return std::sscanf(v.c_str(), "%u/%u%c", &k, &n, &end) == 2 && k >= 1 && k <= n
                   ? std::string()
                   : "expected K/N with 1 <= K <= N, e.g. 1/3";
      });
  app->add_option("--python", o.python, "The Python that runs pytest (default /usr/bin/python3)")->type_name("PATH");
  if (auto rc = rp::cli::parse(*app, args)) return *rc;

  const char* env_src = std::getenv("RP_SOURCE_DIR");
  const std::string src = env_src && *env_src ? env_src : RP_SOURCE_DIR;
  struct stat st{};
  if (stat((src + "/ci/matrix/conftest.py").c_str(), &st) != 0) {
    std::fprintf(stderr, "reuseport-check: no kernel matrix driver at %s/ci/matrix (set RP_SOURCE_DIR to the source tree)\n",
                 src.c_str());
    return 2;
  }
  if (access(o.python.c_str(), X_OK) != 0) {
    std::fprintf(stderr, "reuseport-check: %s not found: the matrix needs Python 3 with pytest (ci/setup.sh)\n",
                 o.python.c_str());
    return 2;
  }
  const std::string results = o.results_dir.empty() ? src + "/results" : o.results_dir;
  // Every output, before pytest starts (it builds the static binary and boots guests).
  try {
    rp::cli::check_writable_dir(results);
    rp::cli::check_writable_dir(results + "/runs");
    if (!o.json_path.empty()) rp::cli::check_writable(o.json_path);
  } catch (const rp::cli::OutputError& e) {
    std::fprintf(stderr, "reuseport-check: %s\n", e.what());
    return 2;
  }
  const std::string events = results + "/runs/matrix-events.jsonl";
  const std::string log = results + "/runs/matrix-pytest.log";
  unlink(events.c_str());

  std::vector<std::string> argv = {o.python, "-m", "pytest", src + "/ci/matrix", "-q", "-rfE", "-p", "no:cacheprovider",
                                   "--results-dir", results,
                                   "--junitxml", results + "/junit.xml"};
  if (!o.kernels.empty()) argv.insert(argv.end(), {"--kernels", o.kernels});
  for (const auto& a : local_args(*app, o)) argv.push_back(a);
  for (const auto& g : o.globs) argv.insert(argv.end(), {"--case", g});
  if (!o.shard.empty()) argv.insert(argv.end(), {"--shard", o.shard});
  if (o.jobs > 1) argv.insert(argv.end(), {"-n", std::to_string(o.jobs), "--dist", "loadgroup"});
  argv.insert(argv.end(), {"--vcpus", std::to_string(o.vcpus)});

  const auto t0 = std::chrono::steady_clock::now();
  pid_t pid = -1;
  try {
    // pytest and its qemus must not outlive this command; the terminal's ^C reaches it.
    rp::SpawnOptions so;
    so.argv = argv;
    so.env = {{"RP_MATRIX_EVENTS", events}};
    so.output = rp::SpawnOptions::Output::File;
    so.output_file = log;
    so.cwd = src;
    so.own_process_group = false;
    so.parent_death_signal = SIGTERM;
    so.stdin_null = false;
    so.name = "pytest";
    pid = rp::Process::spawn(so).pid();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "reuseport-check: %s\n", e.what());
    return 2;
  }
  g_child = pid;
  signal(SIGINT, forward);
  signal(SIGTERM, forward);

  const bool tty = isatty(1);
  State state;
  EventFile ev(events);
  rp::cli::Progress progress(stdout);
  // A --json that fails mid-run (disk full) is said once; the end tries again.
  rp::cli::RewrittenDocument json_doc(o.json_path);
  auto write_json = [&](bool complete) {
    return o.json_path.empty() || json_doc.write(matrix::document(state, complete).dump(1) + "\n", complete);
  };
  int status = 0;
  for (;;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    ev.poll(state);
    if (kernel_lines(state, progress, r == pid)) write_json(false);
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    progress.status(progress_line(state, elapsed));
    if (r == pid) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  progress.finish();
  g_child = 0;
  const int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);

  if (rc == 4 || (rc != 0 && rc != 1 && state.kernels.empty())) {
    std::string msg = usage_message(log);
    if (!msg.empty()) {
      std::fprintf(stderr, "reuseport-check: %s\n", msg.c_str());
    } else {
      std::fprintf(stderr, "reuseport-check: the matrix driver stopped (exit %d); the end of %s:\n%s", rc, log.c_str(),
                   tail_of(log, 15).c_str());
    }
    return 2;
  }
  const int failing = matrix::print_table(state, tty);
  std::printf("junit: %s/junit.xml, pytest log: %s\n", results.c_str(), log.c_str());

  if (!o.json_path.empty()) {
    if (!write_json(true)) return 2;
    std::printf("records written to %s\n", o.json_path.c_str());
  }
  if (rc > 1 && rc != 4) {
    std::fprintf(stderr, "reuseport-check: pytest ended with exit %d; see %s\n", rc, log.c_str());
    return 1;
  }
  return failing || rc != 0 ? 1 : 0;
}

}  // namespace rp::cli
