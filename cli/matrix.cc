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
  reuseport-check matrix --kernel-image arch/x86/boot/bzImage --modules /lib/modules/6.12.0-rc1
  reuseport-check matrix --kernels 6.12 --kernel-deb linux-image-6.12.48+deb13-amd64_6.12.48-1_amd64.deb
)FOOTER";

struct Options {
  std::string kernels;  // empty: pytest's default (all, or only the local kernels)
  std::vector<std::string> images, modules, debs, names;  // your own kernels
  std::vector<std::string> globs;
  std::string json_path, results_dir, python = "/usr/bin/python3";
  int jobs = 2;
};

struct KernelState {
  std::string state = "waiting", release, error, console_log;
  int done = 0, total = 0;
  double duration_s = -1;
  std::string shown;  // the last state a line that stays was printed for
};

struct State {
  std::vector<std::string> kernels, variants;
  std::map<std::string, KernelState> by_kernel;
  std::map<std::pair<std::string, std::string>, nlohmann::json> records;  // (kernel, c/v)

  // (kernel, state) in the order the states came: one poll may read a kernel's booting,
  // its first progress and more at once, and each deserves its line.
  std::vector<std::pair<std::string, std::string>> transitions;

  void apply(const nlohmann::json& ev) {
    const std::string type = ev.value("ev", "");
    if (type == "plan") {
      kernels = ev.value("kernels", std::vector<std::string>{});
      variants = ev.value("variants", std::vector<std::string>{});
    } else if (type == "kernel") {
      const std::string name = ev.value("kernel", "?");
      auto& k = by_kernel[name];
      k.state = ev.value("state", k.state);
      if (ev.contains("release") && ev["release"].is_string()) k.release = ev["release"];
      if (ev.contains("error") && ev["error"].is_string()) k.error = ev["error"];
      if (ev.contains("console_log") && ev["console_log"].is_string()) k.console_log = ev["console_log"];
      if (ev.contains("duration_s") && ev["duration_s"].is_number()) k.duration_s = ev["duration_s"];
      transitions.emplace_back(name, k.state);
    } else if (type == "progress") {
      const std::string name = ev.value("kernel", "?");
      auto& k = by_kernel[name];
      k.done = ev.value("done", 0);
      k.total = ev.value("total", 0);
      if (k.state == "booting") {
        k.state = "running";
        transitions.emplace_back(name, k.state);
      }
    } else if (type == "record" && ev.contains("record")) {
      const auto& r = ev["record"];
      records[{ev.value("kernel", "?"), r.value("case", "") + "/" + r.value("variant", "")}] = r;
    }
  }

  // Verdict -> count over the records of `kernel` so far; `n` their number.
  std::map<std::string, int> verdicts(const std::string& kernel, size_t* n = nullptr) const {
    std::map<std::string, int> out;
    size_t total = 0;
    for (const auto& [key, r] : records)
      if (key.first == kernel) {
        ++out[r.value("verdict", "?")];
        ++total;
      }
    if (n) *n = total;
    return out;
  }
};

// Reads the lines appended since the last call.
class EventFile {
 public:
  explicit EventFile(std::string path) : path_(std::move(path)) {}
  void poll(State& s) {
    std::ifstream f(path_);
    if (!f) return;
    f.seekg(static_cast<std::streamoff>(offset_));
    std::string line;
    while (std::getline(f, line)) {
      if (f.eof()) break;  // a line still being written: read it next time
      offset_ += line.size() + 1;
      try {
        s.apply(nlohmann::json::parse(line));
      } catch (const nlohmann::json::exception&) {
      }
    }
  }

 private:
  std::string path_;
  size_t offset_ = 0;
};

std::string progress_line(const State& s, double elapsed) {
  size_t total = s.kernels.size() * s.variants.size();
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

bool bad(const std::string& verdict) { return verdict != "PASS" && verdict != "XFAIL" && verdict != "SKIP"; }

int print_table(const State& s, bool tty) {
  if (s.kernels.empty()) return 0;
  size_t wrow = 12;
  for (const auto& v : s.variants) wrow = std::max(wrow, v.size());
  std::vector<size_t> wcol;
  for (const auto& k : s.kernels) wcol.push_back(std::max<size_t>(k.size(), 5));
  std::printf("\n  %-*s", static_cast<int>(wrow), "case/variant");
  for (size_t i = 0; i < s.kernels.size(); ++i) std::printf("  %-*s", static_cast<int>(wcol[i]), s.kernels[i].c_str());
  std::printf("\n");
  int differing = 0, failing = 0;
  std::map<std::string, std::map<std::string, int>> totals;
  for (const auto& v : s.variants) {
    std::vector<std::string> cells;
    std::set<std::string> distinct;
    for (const auto& k : s.kernels) {
      auto it = s.records.find({k, v});
      std::string cell = it == s.records.end() ? "-" : it->second.value("verdict", "?");
      cells.push_back(cell);
      if (cell != "-") distinct.insert(cell);
      ++totals[k][cell];
      if (cell != "-" && bad(cell)) ++failing;
    }
    const bool differs = distinct.size() > 1;
    differing += differs;
    std::printf("%s %-*s", differs ? (tty ? "\033[1m*" : "*") : " ", static_cast<int>(wrow), v.c_str());
    for (size_t i = 0; i < cells.size(); ++i) {
      const char* c = !tty ? "" : cells[i] == "PASS" ? "\033[32m" : bad(cells[i]) && cells[i] != "-" ? "\033[1;31m" : "\033[33m";
      std::printf("  %s%-*s%s", c, static_cast<int>(wcol[i]), cells[i].c_str(), tty ? "\033[0m" : "");
    }
    std::printf("%s\n", differs && tty ? "\033[0m" : "");
  }
  std::printf("\n");
  for (const auto& k : s.kernels) {
    auto it = s.by_kernel.find(k);
    std::string line = "  " + k;
    if (it != s.by_kernel.end() && !it->second.release.empty()) line += " (" + it->second.release + ")";
    line += ":";
    for (const auto& [verdict, n] : totals[k]) line += " " + std::to_string(n) + " " + verdict;
    std::printf("%s\n", line.c_str());
    if (it != s.by_kernel.end() && !it->second.error.empty())
      std::printf("      error: %s\n      log: %s\n", it->second.error.c_str(), it->second.console_log.c_str());
  }
  std::printf("\nmatrix: %zu kernel(s) x %zu variant(s); %d row(s) differ between kernels (*); %d cell(s) FAIL, XPASS or "
              "ERROR\n",
              s.kernels.size(), s.variants.size(), differing, failing);
  return failing;
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
                    std::to_string(s.variants.size()) + " variant(s)");
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
    if (n < s.variants.size() && !at_end) continue;
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

nlohmann::json matrix_document(const State& state, bool complete) {
  nlohmann::json out = {{"schema", "reuseport-check/matrix/1"}, {"complete", complete},
                        {"kernels", nlohmann::json::array()},     {"records", nlohmann::json::array()}};
  for (const auto& k : state.kernels) {
    auto it = state.by_kernel.find(k);
    nlohmann::json kj = {{"name", k}};
    if (it != state.by_kernel.end()) {
      kj["release"] = it->second.release;
      kj["error"] = it->second.error;
    }
    out["kernels"].push_back(kj);
    for (const auto& v : state.variants) {
      auto r = state.records.find({k, v});
      if (r != state.records.end()) out["records"].push_back(r->second);
    }
  }
  return out;
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
  app->add_option("--results-dir", o.results_dir,
                  "results/<release>/results.json, junit.xml and the VM logs (runs/) go here (default: results/ of "
                  "the source tree)")
      ->type_name("DIR");
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
  if (o.jobs > 1) argv.insert(argv.end(), {"-n", std::to_string(o.jobs), "--dist", "loadgroup"});

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
    return o.json_path.empty() || json_doc.write(matrix_document(state, complete).dump(1) + "\n", complete);
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
  const int failing = print_table(state, tty);
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
