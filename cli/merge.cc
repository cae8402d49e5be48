// `reuseport-check merge DIR...`: the results dirs of several `matrix --shard K/N` runs
// (one per CI machine) put back together into what one machine would have written.
//
// The merging is Python (ci/matrix/merge.py), because the results files are the Python
// driver's: it merges them with the driver's own record keys, `runs` entries and lock,
// validates every input with results.schemas and merges the JUnit with junitparser. It
// writes the matrix driver's events for the merged run; this command replays them into
// the state `matrix` builds, so the table and the --json document are `matrix`'s own code
// (cli/matrix_table).

#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/common/options.h"
#include "cli/common/output.h"
#include "cli/matrix_table.h"
#include "harness/process.h"

#ifndef RP_SOURCE_DIR
#define RP_SOURCE_DIR "."
#endif

namespace rp::cli {

namespace {

constexpr const char* kMergeDescription =
    "Merge the results dirs of several `matrix` runs, typically the shards of `matrix --shard K/N` run\n"
    "on several machines, into the outputs one machine would have written: <results-dir>/<release>/\n"
    "results.json, one JUnit, the case x kernel table and the --json document. Each DIR is a\n"
    "--results-dir of `matrix`: DIR/<release>/results.json, DIR/junit.xml and, when the run's --json\n"
    "was written into DIR, that document (it names the shard and the whole plan, so a missing shard\n"
    "is told, and holds the ERROR records of a kernel that never booted).";

constexpr const char* kMergeFooter = R"FOOTER(Every input is read and checked (results.schemas) before anything is written. The same
kernel x case/variant x repeat in two inputs with different verdicts, or the same kernel
name with two releases, is an error: shards of one run never overlap, so such inputs come
from different runs and no verdict is picked. A results.json already in --results-dir is
merged into as `matrix` does: the merged records replace those of the same keys.

Exit status: 0 when every cell is PASS, XFAIL or SKIP; 1 on any FAIL, XPASS or ERROR (cell
or JUnit testcase) or a shard of the plan missing; 2 on bad usage (a missing DIR, a DIR
with no results, inputs that disagree, an output that cannot be written).

Examples:
  reuseport-check merge shard1 shard2 shard3 --results-dir merged --json merged/matrix.json
  reuseport-check merge artifacts/*/ --junit merged.xml
)FOOTER";

std::string absolute(const std::string& p) { return std::filesystem::absolute(p).lexically_normal().string(); }

}  // namespace

int merge_command(const std::vector<std::string>& args, const std::vector<std::string>&) {
  std::vector<std::string> dirs;
  std::string results_dir, json_path, junit_path, python = "/usr/bin/python3";
  auto app = rp::cli::make_app("merge", kMergeDescription, kMergeFooter);
  app->add_option("DIR", dirs, "Results dirs of `matrix` runs (one per shard)")->required()->type_name("DIR");
  app->add_option("--results-dir", results_dir,
                  "<release>/results.json go here (default: results/ of the source tree, as `matrix`)")
      ->type_name("OUT");
  app->add_option("--junit", junit_path, "The merged JUnit (default: OUT/junit.xml)")->type_name("PATH");
  app->add_option("--json", json_path, "The merged `matrix --json` document")->type_name("PATH");
  app->add_option("--python", python, "The Python that merges (default /usr/bin/python3)")->type_name("PATH");
  if (auto rc = rp::cli::parse(*app, args)) return *rc;

  const char* env_src = std::getenv("RP_SOURCE_DIR");
  const std::string src = env_src && *env_src ? env_src : RP_SOURCE_DIR;
  if (!std::filesystem::is_regular_file(src + "/ci/matrix/merge.py")) {
    std::fprintf(stderr, "reuseport-check: no merge driver at %s/ci/matrix/merge.py (set RP_SOURCE_DIR to the source tree)\n",
                 src.c_str());
    return 2;
  }
  if (access(python.c_str(), X_OK) != 0) {
    std::fprintf(stderr, "reuseport-check: %s: %s (ci/setup.sh installs Python 3 and its packages)\n", python.c_str(),
                 std::strerror(errno));
    return 2;
  }
  // Python runs in the source tree: every path it gets is absolute.
  const std::string out = absolute(results_dir.empty() ? src + "/results" : results_dir);
  const std::string junit = absolute(junit_path.empty() ? out + "/junit.xml" : junit_path);
  try {
    rp::cli::check_writable_dir(out);
    rp::cli::check_writable(junit);
    if (!json_path.empty()) rp::cli::check_writable(json_path);
  } catch (const rp::cli::OutputError& e) {
    std::fprintf(stderr, "reuseport-check: %s\n", e.what());
    return 2;
  }
  char events_tmpl[] = "/tmp/reuseport-check-merge-XXXXXX";
  const int fd = mkstemp(events_tmpl);
  if (fd < 0) {
    std::fprintf(stderr, "reuseport-check: a temporary file in /tmp: %s\n", std::strerror(errno));
    return 2;
  }
  close(fd);
  const std::string events = events_tmpl;

  std::vector<std::string> argv = {python, "-P", "-m", "ci.matrix.merge"};
  for (const auto& d : dirs) argv.push_back(absolute(d));
  argv.insert(argv.end(), {"--results-dir", out, "--junit", junit, "--events", events});
  int rc = 0;
  try {
    rp::SpawnOptions so;
    so.argv = argv;
    so.cwd = src;
    so.env = {{"PYTHONPATH", src}};
    so.output = rp::SpawnOptions::Output::Inherit;
    so.own_process_group = false;  // the terminal's ^C reaches it with us
    so.parent_death_signal = SIGTERM;
    so.name = "python3";
    rc = rp::exit_code(rp::Process::spawn(so).wait());
  } catch (const std::exception& e) {
    unlink(events.c_str());
    std::fprintf(stderr, "reuseport-check: %s\n", e.what());
    return 2;
  }
  if (rc != 0 && rc != 1) {
    unlink(events.c_str());
    // 2: the driver said why in one line; anything else is a crash it printed.
    if (rc != 2) std::fprintf(stderr, "reuseport-check: the merge driver stopped (exit %d)\n", rc);
    return 2;
  }

  matrix::State state;
  bool complete = false;
  {
    std::ifstream f(events);
    for (std::string line; std::getline(f, line);) {
      try {
        const auto ev = nlohmann::json::parse(line);
        state.apply(ev);
        if (ev.value("ev", "") == "merged") complete = ev.value("complete", false);
      } catch (const nlohmann::json::exception&) {
      }
    }
  }
  unlink(events.c_str());
  const int failing = matrix::print_table(state, isatty(1));
  std::printf("junit: %s\n", junit.c_str());
  if (!json_path.empty()) {
    try {
      rp::cli::write_atomic(json_path, matrix::document(state, complete).dump(1) + "\n");
    } catch (const rp::cli::OutputError& e) {
      std::fprintf(stderr, "reuseport-check: %s\n", e.what());
      return 2;
    }
    std::printf("records written to %s\n", json_path.c_str());
  }
  return failing || rc == 1 ? 1 : 0;
}

}  // namespace rp::cli
