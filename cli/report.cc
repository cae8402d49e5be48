// `reuseport-check report`: the deploy strategies of harness/strategies.h under load, on
// the running kernel, with the kernel's account of every loss; then the listen-queue loss
// report (results/report/make_report.py renders it from the stored JSON alone).
//
// 1. The machine's ceiling: a closed loop with 64 in flight against one listener for 1 s;
//    the open-loop rates are fractions of it, so they are measured, never guessed.
// 2. Per experiment x repeat, in a forked child with a network namespace of its own
//    (run_isolated): the reuseport probe and TcpExt (probes/kernel_sampler.h) attach to the port,
//    the scenario runs, kernel counters are read after every deploy (cli/report_runs.cc).
//    The UDP strategies (harness/udp_strategies.h, experiment udp_grid) run the same way
//    under UDP flow load, with the UDP MIB and the udp_drops probe (cli/report_udp.cc).
// 3. One aggregated record per run (never per attempt): parameters, ledger counts and
//    their reconciliation, kernel counts, latency percentiles (all, during deploys,
//    steady), failures per deploy; <out>/data/<kernel release>.json is replaced atomically
//    after each run ("complete": false until the last), so a killed report keeps every
//    run it finished.
// 4. make_report.py: <out>/index.html, summary.md, PNG plots.

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/common/options.h"
#include "cli/common/output.h"
#include "cli/common/progress.h"
#include "cli/python_driver.h"
#include "cli/report_runs.h"
#include "cases/lib/case.h"
#include "cases/lib/kernel.h"
#include "harness/error.h"
#include "harness/isolate.h"
#include "harness/process.h"
#include "harness/strategies.h"

#ifndef RP_SOURCE_DIR
#define RP_SOURCE_DIR "."
#endif

namespace rp::cli {

using namespace rp::cases;
namespace {

using nlohmann::json;
using namespace rp::cli::report;

constexpr const char* kReportDescription =
    "Runs the deploy strategies (a close, b SIGKILL, c graceful SIGTERM, d tcp_migrate_req,\n"
    "e sk_reuseport/migrate program, f steer then drain, g socket hand-over, h shutdown then\n"
    "drain) under load, ten deploys per run, and the published comparisons (a\n"
    "start_server-style swap under 20 in flight; a stalled worker with one shared accept\n"
    "queue vs reuseport listeners; nginx 1.9.1's shared vs reuseport shape). Each run is\n"
    "isolated (own network namespace, own timeout); its ledger must reconcile, or the run is\n"
    "kept, marked, and left out of every figure. Then renders the report from data/*.json.";

constexpr const char* kReportFooter = R"FOOTER(Kernels: "running" is this machine's kernel (run first, alone); every other kernel of
ci/kernels.toml is booted in a 2-vCPU qemu guest (KVM tried first, TCG otherwise) that runs
this command with the static binary and sends its data back. The work is
ci/matrix/report.py's (Python 3, the matrix's driver). Profiles: quick (minutes here), full
(about 80 minutes here), guest (the quick grid at 20 in flight); see docs/report.md.

Outputs: --out is checked before any run. data/<release>.json (with --experiments,
data/<release>.<kinds>.json, laid over the whole document when the report renders) is
replaced atomically after every run, with "complete": false until the last one, so a
killed report keeps what it finished. Progress: on a terminal one updating line; in a log
a status line at most every 10 s; a line per experiment (its repeats) and per failed run
stays.

Needs root, or CAP_NET_ADMIN and CAP_SYS_ADMIN (and CAP_BPF, CAP_PERFMON for the probe
and the steering programs).

Exit status: 0 when every kernel's runs completed and reconciled; 1 when a run ended in an
error (a strategy whose probe failed counts: only the kernel's refusal makes it
"unavailable"), a run's ledger did not reconcile (the run's record says so: "reconciled":
false, "mismatches"), or a guest did not boot or hung (what was measured is kept and
rendered); 2 on bad usage or an --out that cannot be written.

Examples:
  reuseport-check report --host-only
  reuseport-check report --kernels all
  reuseport-check report --kernels 5.10,6.12 --guest-profile quick -j 2
  reuseport-check report --kernels all --experiments udp_grid
)FOOTER";

// The kernel-matrix driver (the module ci.matrix.report of the source tree): its exit
// status is the command's: 0, 1 (a kernel or run failed), 2 (usage).
int exec_driver(const std::string& python, const std::vector<std::string>& args) {
  return run_python_module(python, "ci.matrix.report", args);
}

}  // namespace

int report_command(const std::vector<std::string>& args, const std::vector<std::string>&) {
  std::string profile_name = "quick", guest_profile = "guest", kernels, python = "/usr/bin/python3";
  int jobs = 1;
  bool no_build = false, host_only = false;
  std::string out_arg;
  unsigned repeats_arg = 0;
  bool no_render = false;
  const std::vector<std::string> profiles = {"quick", "full", "guest"};
  auto app = rp::cli::make_app("report", kReportDescription, kReportFooter);
  auto* host = app->add_flag("--host-only", host_only, "The running kernel only (the default)");
  auto* kern = app->add_option("--kernels", kernels,
                               "Kernels of ci/kernels.toml, comma separated, or \"all\"; \"running\" is this machine's")
                   ->type_name("LIST");
  host->excludes(kern);
  kern->excludes(host);
  app->add_option("--profile", profile_name, "The running kernel's profile: quick (default), full or guest")
      ->type_name("P")
      ->check(CLI::IsMember(profiles));
  app->add_option("--guest-profile", guest_profile, "The guests' profile (default guest)")
      ->type_name("P")
      ->check(CLI::IsMember(profiles));
  app->add_option("--out", out_arg,
                  "Where data/<release>.json, index.html, summary.md and the PNGs go (default: results/report of "
                  "the source tree)")
      ->type_name("DIR");
  app->add_option("--repeats", repeats_arg, "Repeats per grid point instead of the profile's")->check(CLI::Range(1, 1000));
  std::vector<std::string> experiments;
  app->add_option("--experiments", experiments,
                  "Only these experiments, comma separated (grid, udp_grid, seed, seed_busy, blocked_worker, "
                  "nginx_shape): written to data/<release>.<kinds>.json, which the report lays over the whole "
                  "document of its kernel")
      ->type_name("LIST")
      ->delimiter(',')
      ->check(CLI::IsMember(rp::cli::report::experiment_kinds()));
  app->add_flag("--no-render", no_render, "Write the JSON only");
  app->add_option("--python", python, "The Python that runs make_report.py and the driver (default /usr/bin/python3)")
      ->type_name("PATH");
  app->add_option("-j,--jobs", jobs, "Guests at a time (default 1: guests competing for the CPUs show in their numbers)")
      ->check(CLI::Range(1, 16));
  app->add_flag("--no-build", no_build, "Use the static guest binary as it is (build-static/, $RP_STATIC_BIN)");
  if (auto rc = rp::cli::parse(*app, args)) return *rc;
  if (host_only) kernels = "running";
  const bool out_given = !out_arg.empty(), render = !no_render;
  const std::filesystem::path out = out_given ? std::filesystem::path(out_arg) : source_dir() / "results" / "report";
  const std::optional<unsigned> repeats = repeats_arg ? std::optional<unsigned>(repeats_arg) : std::nullopt;
  // Before any run, here or in a guest: where the data goes must take it.
  try {
    rp::cli::check_writable_dir((out / "data").string());
  } catch (const rp::cli::OutputError& e) {
    std::fprintf(stderr, "reuseport-check: %s\n", e.what());
    return 2;
  }
  if (!kernels.empty() && kernels != "running") {
    // The kernel matrix: the Python driver boots the guests and runs this command in each.
    std::vector<std::string> argv = {"--kernels", kernels,
                                     "--profile", profile_name, "--guest-profile", guest_profile,
                                     "--python", python, "-j", std::to_string(jobs), "--host-binary", self_path()};
    if (out_given) argv.insert(argv.end(), {"--out", std::filesystem::absolute(out).string()});
    if (repeats) argv.insert(argv.end(), {"--repeats", std::to_string(*repeats)});
    if (!experiments.empty()) {
      std::string list;
      for (const auto& k : experiments) list += (list.empty() ? "" : ",") + k;
      argv.insert(argv.end(), {"--experiments", list});
    }
    if (!render) argv.push_back("--no-render");
    if (no_build) argv.push_back("--no-build");
    return exec_driver(python, argv);
  }
  std::string missing;
  if (!rp::cli::has_privileges(missing)) {
    std::fprintf(stderr, "reuseport-check: the report needs root, or CAP_NET_ADMIN and CAP_SYS_ADMIN (missing:%s).\n",
                 missing.c_str());
    return 2;
  }

  // The open loop keeps opening connections while earlier ones wait for a SYN retried after
  // 1 s: at 1,530 attempts/s a run in a 5.10 guest went past the soft limit of 1,024 fds
  // and its sock_diag socket failed (EMFILE). The runs start no one else's programs, so
  // the report takes the hard limit (4,096 in the guests).
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }

  const Profile prof = profile(profile_name);
  const std::vector<Experiment> plan =
      experiments.empty() ? plan_for(prof, repeats) : only_kinds(plan_for(prof, repeats), experiments);
  const std::string release = kernel_release();
  json doc;
  doc["schema"] = "reuseport-check/report-runs/1";
  doc["complete"] = false;
  doc["kernel_release"] = release;
  doc["kernel_version"] = running_kernel().str();
  doc["machine"] = machine_description();
  doc["profile"] = prof.name;
  doc["started_at"] = rp::cli::now_iso();
  if (!experiments.empty()) doc["experiments"] = experiments;
  doc["runs"] = json::array();
  // Unavailable: the kernel (or the build) refuses it, and its runs are marked so. A probe
  // that failed otherwise (our steering program did not load where the kernel offers its
  // type) is the tool's error: every run of that strategy is an error, and so is the exit.
  json unavailable = json::object();
  std::map<std::string, std::string> strategy_errors;
  auto probe = [&](const char* name, const std::function<std::string()>& why_not) {
    try {
      if (std::string why = why_not(); !why.empty()) unavailable[name] = why;
    } catch (const std::exception& e) {
      strategy_errors[name] = std::string("strategy probe: ") + e.what();
      std::fprintf(stderr, "reuseport-check: %s: ERROR %s\n", name, strategy_errors[name].c_str());
    }
  };
  for (Strategy s : all_strategies()) probe(to_string(s), [s] { return strategy_unavailable(s); });
  for (UdpStrategy s : all_udp_strategies()) probe(to_string(s), [s] { return udp_strategy_unavailable(s); });
  doc["strategies_unavailable"] = unavailable;
  const auto data_path = out / "data" / data_file_name(release, experiments);

  json ceiling_record;
  double ceiling = 0;
  try {
    ceiling = measure_ceiling(ceiling_record);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "reuseport-check: %s\n", e.what());
    return 2;
  }
  doc["ceiling"] = ceiling_record;
  std::fprintf(stderr, "report: kernel %s, %s; ceiling %.0f connections/s (closed loop, 64 in flight, 1 listener)\n",
               release.c_str(), doc["machine"].get<std::string>().c_str(), ceiling);

  // Every finished run is on disk before the next starts (write_atomic fsyncs): a killed
  // report leaves a whole document with "complete": false.
  rp::cli::RewrittenDocument data_doc(data_path.string());
  auto save = [&](bool complete) {
    doc["complete"] = complete;
    doc["finished_at"] = rp::cli::now_iso();
    return data_doc.write(doc.dump(), complete);
  };
  save(false);

  // On a terminal the run under way on one updating line; in a log (and from a guest,
  // whose lines ci/matrix/report.py passes on) at most one status line every 10 s. A line
  // per experiment (its repeats together) and per failed run stays.
  rp::cli::Progress progress(stderr);
  size_t total = 0, done = 0, failed_runs = 0, unreconciled = 0;
  for (const auto& e : plan) total += e.repeats;
  const auto t_start = std::chrono::steady_clock::now();
  auto minutes = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count() / 60; };
  for (const auto& e : plan) {
    const double rate = e.mode == LoadOptions::Mode::Open ? std::max(100.0, std::round(ceiling * e.rate_fraction)) : 0;
    const std::string what = describe(e, rate);
    uint64_t exp_attempts = 0, exp_failed = 0;
    unsigned exp_ok = 0, exp_errors = 0, exp_unreconciled = 0;
    double exp_secs = 0;
    std::string exp_unavailable;
    for (unsigned rep = 0; rep < e.repeats; ++rep) {
      ++done;
      json rec;
      rec["experiment"] = e.kind;
      rec["strategy"] = e.strategy       ? json(to_string(*e.strategy))
                        : e.udp_strategy ? json(to_string(*e.udp_strategy))
                                         : json(nullptr);
      rec["sharing"] = e.sharing ? json(to_string(*e.sharing)) : json(nullptr);
      rec["params"] = params_json(e, rate);
      rec["repeat"] = rep;
      rec["kernel_release"] = release;
      const std::string sname = e.strategy ? to_string(*e.strategy) : e.udp_strategy ? to_string(*e.udp_strategy) : "";
      if (!sname.empty() && unavailable.contains(sname)) {
        rec["status"] = "unavailable";
        rec["error"] = unavailable[sname];
        exp_unavailable = rec["error"];
        doc["runs"].push_back(rec);
        continue;
      }
      if (!sname.empty() && strategy_errors.count(sname)) {
        rec["status"] = "error";
        rec["error"] = strategy_errors[sname];
        ++failed_runs;
        ++exp_errors;
        doc["runs"].push_back(rec);
        continue;
      }
      char st[64];
      std::snprintf(st, sizeof st, " r%u (%.1f min)", rep, minutes());
      progress.status("[" + std::to_string(done) + "/" + std::to_string(total) + "] " + what + st);
      // Other work on the machine shows in the numbers: the load average says how much.
      rec["loadavg_1min_before"] = loadavg();
      IsolateOptions io;
      io.timeout = std::chrono::seconds(90 * timeout_scale());
      const auto t0 = std::chrono::steady_clock::now();
      auto res = run_isolated(
          [&] { return e.udp_strategy ? udp_deploy_run(e) : e.strategy ? deploy_run(e, rate) : worker_run(e, rate); }, io);
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      exp_secs += secs;
      if (res.ok()) {
        rec["status"] = "ok";
        rec.update(json::parse(res.payload));
        if (e.udp_strategy) {
          // Datagrams: sent and lost stand for attempts and failed on the progress line.
          exp_attempts += rec["datagrams"]["sent"].get<uint64_t>();
          exp_failed += rec["datagrams"]["lost"].get<uint64_t>();
        } else {
          // The same for every run of a kernel: kept once.
          json& kc = rec["kernel_counts"];
          if (!doc.contains("kernel_sources")) doc["kernel_sources"] = kc["kernel_sources"];
          kc.erase("kernel_sources");
          if (kc["kernel_not_observable"].empty()) kc.erase("kernel_not_observable");
          exp_attempts += rec["attempts"].get<uint64_t>();
          exp_failed += rec["failed"].get<uint64_t>();
        }
        ++exp_ok;
        if (!rec["reconciled"].get<bool>()) {
          ++unreconciled;
          ++exp_unreconciled;
          progress.line("[" + std::to_string(done) + "/" + std::to_string(total) + "] " + what + " r" +
                        std::to_string(rep) + ": LEDGER DID NOT RECONCILE");
        }
      } else {
        rec["status"] = "error";
        rec["error"] = res.describe();
        ++failed_runs;
        ++exp_errors;
        progress.line("[" + std::to_string(done) + "/" + std::to_string(total) + "] " + what + " r" + std::to_string(rep) +
                      ": ERROR " + res.describe());
      }
      rec["wall_seconds"] = secs;
      doc["runs"].push_back(rec);
      save(false);
    }
    char b[256];
    if (!exp_unavailable.empty())
      std::snprintf(b, sizeof b, "unavailable: %s", exp_unavailable.c_str());
    else
      std::snprintf(b, sizeof b, "%u run%s, failed %llu/%llu (%.1f per 100k)%s%s (%.1fs)", exp_ok, exp_ok == 1 ? "" : "s",
                    static_cast<unsigned long long>(exp_failed), static_cast<unsigned long long>(exp_attempts),
                    exp_attempts ? 1e5 * static_cast<double>(exp_failed) / static_cast<double>(exp_attempts) : 0.0,
                    exp_errors ? (", " + std::to_string(exp_errors) + " ERROR").c_str() : "",
                    exp_unreconciled ? (", " + std::to_string(exp_unreconciled) + " did not reconcile").c_str() : "",
                    exp_secs);
    progress.line("[" + std::to_string(done) + "/" + std::to_string(total) + "] " + what + ": " + b);
  }
  progress.finish();
  const bool saved = save(true);
  std::fprintf(stderr, "report: %zu runs in %.1f min, %zu errors, %zu whose ledger did not reconcile; data: %s\n", total,
               minutes(), failed_runs, unreconciled, data_path.c_str());
  // The exit status is the document's: which runs failed or did not reconcile is in their
  // records ("status", "reconciled", "mismatches"); named here too.
  const RunsOutcome outcome = runs_outcome(doc);
  for (const auto& w : outcome.errors) std::fprintf(stderr, "report: ERROR %s\n", w.c_str());
  for (const auto& w : outcome.unreconciled) std::fprintf(stderr, "report: DID NOT RECONCILE %s\n", w.c_str());
  if (!saved) return 1;
  if (!render) return outcome.exit_status();

  // The module of the source tree, which is the Python import root; paths absolute, since it
  // runs there.
  const std::string src = source_dir().string();
  const auto abs_out = std::filesystem::absolute(out);
  std::fprintf(stderr, "report: rendering with %s -m results.report.make_report (in %s)\n", python.c_str(), src.c_str());
  if (run_program({python, "-P", "-m", "results.report.make_report", "--data", (abs_out / "data").string(), "--out",
                   abs_out.string()},
                  src, {{"PYTHONPATH", src}}) != 0) {
    std::fprintf(stderr, "reuseport-check: make_report.py failed; the data is in %s\n", data_path.c_str());
    return 1;
  }
  return outcome.exit_status();
}

}  // namespace rp::cli
