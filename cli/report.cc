// `reuseport-check report`: the deploy strategies of harness/strategies.h under load, on
// the running kernel, with the kernel's account of every loss; then the listen-queue loss
// report (results/report/make_report.py renders it from the stored JSON alone).
//
// 1. The machine's ceiling: a closed loop with 64 in flight against one listener for 1 s;
//    the open-loop rates are fractions of it, so they are measured, never guessed.
// 2. Per experiment x repeat, in a forked child with a network namespace of its own
//    (run_isolated): the reuseport probe and TcpExt (probes/kernel_sampler.h) attach to the port,
//    the scenario runs, kernel counters are read after every deploy.
// 3. One aggregated record per run (never per attempt): parameters, ledger counts and
//    their reconciliation, kernel counts, latency percentiles (all, during deploys,
//    steady), failures per deploy; into <out>/data/<kernel release>.json after each run.
// 4. make_report.py: <out>/index.html, summary.md, PNG plots.

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli/commands.h"
#include "cli/options.h"
#include "cases/lib/case.h"
#include "cases/lib/kernel.h"
#include "probes/kernel_sampler.h"
#include "harness/error.h"
#include "harness/isolate.h"
#include "harness/process.h"
#include "harness/strategies.h"

#ifndef RP_SOURCE_DIR
#define RP_SOURCE_DIR "."
#endif

namespace rp::cases {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;

constexpr const char* kReportUsage = R"USAGE(Usage:
  reuseport-check report [--host-only | --kernels LIST] [--profile P] [--guest-profile P]
                         [--out DIR] [--repeats N] [--no-render] [--python PATH]
                         [-j N] [--no-build]

  Runs the deploy strategies (a close, b SIGKILL, c graceful SIGTERM, d tcp_migrate_req,
  e sk_reuseport/migrate program, f steer then drain, g socket hand-over, h shutdown then
  drain) under load, ten deploys per run, and the published comparisons (a
  start_server-style swap under 20 in flight; a stalled worker with one shared accept
  queue vs reuseport listeners; nginx 1.9.1's shared vs reuseport shape). Each run is
  isolated (own network namespace, own timeout); its ledger must reconcile, or the run is
  kept, marked, and left out of every figure. Then renders the report from data/*.json.

Options:
  --host-only        The running kernel only (the default).
  --kernels LIST     Kernels of ci/kernels.toml, comma separated, or "all": "running" is
                     this machine's kernel (run first, alone); every other kernel is booted
                     in a 1-vCPU qemu guest (KVM tried first, TCG otherwise) that runs this
                     command with the static binary and sends its data back. The work is
                     ci/matrix/report.py's (Python 3, the matrix's driver).
  --profile P        The running kernel's profile: quick (the default: minutes here), full
                     (about 80 minutes here) or guest; see docs/report.md.
  --guest-profile P  The guests' profile (default guest: the quick grid at 20 in flight).
  --out DIR          Where data/<release>.json, index.html, summary.md and the PNGs go
                     (default: results/report of the source tree).
  --repeats N        Repeats per grid point instead of the profile's.
  --no-render        Write the JSON only.
  --python PATH      The Python that runs make_report.py and the driver (default
                     /usr/bin/python3).
  -j N               Guests at a time (default 1: guests competing for the CPUs show in
                     their numbers).
  --no-build         Use the static guest binary as it is (build-static/, $RP_STATIC_BIN).

Needs root, or CAP_NET_ADMIN and CAP_SYS_ADMIN (and CAP_BPF, CAP_PERFMON for the probe
and the steering programs).

Exit status: 0 when every kernel's runs completed; 1 when a run ended in an error or a
guest did not boot or hung (what was measured is kept and rendered); 2 on bad usage.

Examples:
  sudo reuseport-check report --host-only
  sudo reuseport-check report --kernels all
  sudo reuseport-check report --kernels 5.10,6.12 --guest-profile quick -j 2
)USAGE";

constexpr uint16_t kPort = 8080;

// One run to do: a deploy strategy or a worker-sharing shape, with its load.
struct Experiment {
  std::string kind;  // "grid", "seed", "blocked_worker", "nginx_shape"
  std::optional<Strategy> strategy;
  std::optional<Sharing> sharing;
  LoadOptions::Mode mode = LoadOptions::Mode::Closed;
  unsigned concurrency = 20;
  double rate_fraction = 0;  // open loop: of the measured ceiling
  int backlog = 128;
  unsigned work_us = 0;
  unsigned workers = 1;
  unsigned repeats = 3;
  // Worker shapes only.
  unsigned duration_ms = 2000, stall_ms = 0, stall_every_ms = 0;
};

struct Profile {
  std::string name;
  std::vector<unsigned> concurrency;
  std::vector<int> backlogs;
  std::vector<unsigned> work_us;
  std::vector<double> open_fractions;
  std::vector<int> open_backlogs;
  unsigned repeats, seed_repeats, shape_repeats;
  // quick: work 100 us only at one point, not over the whole grid.
  bool work_grid;
};

Profile profile(const std::string& name) {
  if (name == "quick") return {"quick", {20, 256}, {16, 1024}, {0, 100}, {0.5}, {128}, 3, 5, 3, false};
  // The kernels of the matrix run in 1-vCPU guests, under TCG where KVM cannot run them:
  // the quick profile's grid at 20 in flight, the seed swap and the shapes.
  if (name == "guest") return {"guest", {20}, {16, 1024}, {0}, {0.5}, {128}, 3, 5, 3, false};
  if (name == "full")
    return {"full", {1, 4, 20, 64, 256}, {16, 128, 1024, 4096}, {0, 100}, {0.1, 0.25, 0.5, 0.75, 0.9, 1.0}, {128, 4096},
            5, 20, 10, true};
  throw std::invalid_argument("a profile is quick, full or guest, got '" + name + "'");
}

std::vector<Experiment> plan_for(const Profile& p, std::optional<unsigned> repeats) {
  std::vector<Experiment> out;
  const unsigned rep = repeats.value_or(p.repeats);
  for (Strategy s : all_strategies()) {
    for (unsigned work : p.work_grid ? p.work_us : std::vector<unsigned>{0})
      for (unsigned c : p.concurrency)
        for (int b : p.backlogs) {
          Experiment e{"grid", s, std::nullopt};
          e.concurrency = c;
          e.backlog = b;
          e.work_us = work;
          e.repeats = rep;
          out.push_back(e);
        }
    if (!p.work_grid)
      for (unsigned work : p.work_us) {
        if (work == 0) continue;
        Experiment e{"grid", s, std::nullopt};
        e.concurrency = 20;
        e.backlog = 128;
        e.work_us = work;
        e.repeats = rep;
        out.push_back(e);
      }
    for (double f : p.open_fractions)
      for (int b : p.open_backlogs) {
        Experiment e{"grid", s, std::nullopt};
        e.mode = LoadOptions::Mode::Open;
        e.rate_fraction = f;
        e.backlog = b;
        e.repeats = rep;
        out.push_back(e);
      }
  }
  // (i) start_server under `ab -c 20`: one listener per generation, 20 in flight.
  for (Strategy s : {Strategy::Close, Strategy::HandOver}) {
    Experiment e{"seed", s, std::nullopt};
    e.concurrency = 20;
    e.backlog = 128;
    e.repeats = repeats.value_or(p.seed_repeats);
    out.push_back(e);
  }
  // (ii) Cloudflare 2017: four workers, one of them blocked now and then. Open loop, so
  // that a stalled connection does not hold back the ones behind it.
  for (Sharing sh : {Sharing::Shared, Sharing::SharedEpollEx, Sharing::Reuseport}) {
    Experiment e{"blocked_worker", std::nullopt, sh};
    e.mode = LoadOptions::Mode::Open;
    e.rate_fraction = 0.3;
    e.workers = 4;
    e.duration_ms = 3000;
    e.stall_ms = 100;
    e.stall_every_ms = 500;
    e.repeats = repeats.value_or(p.shape_repeats);
    out.push_back(e);
  }
  // (iii) nginx 1.9.1: requests per second and latency spread at saturation.
  for (Sharing sh : {Sharing::Shared, Sharing::SharedEpollEx, Sharing::Reuseport}) {
    Experiment e{"nginx_shape", std::nullopt, sh};
    e.concurrency = 64;
    e.workers = 4;
    e.duration_ms = 2000;
    e.repeats = repeats.value_or(p.shape_repeats);
    out.push_back(e);
  }
  return out;
}

// Deploy timing of the report: 10 deploys, 100 ms apart, 20 ms of overlap.
constexpr unsigned kDeploys = 10;
constexpr milliseconds kWarmup{200}, kInterval{100}, kOverlap{20}, kSettle{300};

json latency_summary(std::vector<double> ms) {
  json j;
  j["n"] = ms.size();
  if (ms.empty()) return j;
  std::sort(ms.begin(), ms.end());
  auto pct = [&](double q) {  // nearest rank
    size_t k = static_cast<size_t>(std::ceil(q * static_cast<double>(ms.size())));
    return ms[std::clamp<size_t>(k, 1, ms.size()) - 1];
  };
  double sum = 0;
  for (double v : ms) sum += v;
  const double mean = sum / static_cast<double>(ms.size());
  double var = 0;
  for (double v : ms) var += (v - mean) * (v - mean);
  j["mean"] = mean;
  j["stddev"] = std::sqrt(var / static_cast<double>(ms.size()));
  j["p50"] = pct(0.50);
  j["p90"] = pct(0.90);
  j["p99"] = pct(0.99);
  j["p999"] = pct(0.999);
  j["max"] = ms.back();
  return j;
}

json ledger_json(const Ledger& l, const std::vector<std::string>& mismatches, uint64_t t0, uint64_t t1) {
  json j;
  j["attempts"] = l.total();
  j["started"] = l.started();
  j["served"] = l.count(Outcome::Served);
  j["failed"] = l.failed();
  json o = json::object();
  for (size_t i = 0; i < kOutcomeCount; ++i) o[outcome_name(static_cast<Outcome>(i))] = l.count(static_cast<Outcome>(i));
  j["outcomes"] = o;
  json e = json::object();
  for (auto& [err, n] : l.errnos()) e[errno_name(err)] = n;
  j["other_errnos"] = e;
  j["reconciled"] = mismatches.empty();
  j["mismatches"] = mismatches;
  j["load_seconds"] = static_cast<double>(t1 - t0) / 1e9;
  j["served_per_second"] = t1 > t0 ? static_cast<double>(l.count(Outcome::Served)) / (static_cast<double>(t1 - t0) / 1e9) : 0;
  return j;
}

std::vector<double> served_latencies(const Ledger& l, const std::function<bool(const Attempt&)>& keep) {
  std::vector<double> v;
  for (const Attempt& a : l.attempts())
    if (a.outcome == Outcome::Served && keep(a)) v.push_back(static_cast<double>(a.end_ns - a.start_ns) / 1e6);
  return v;
}

// Per deploy only the counts that attribute its losses, to keep the data small.
const char* const kDeployKernelKeys[] = {"kernel_orphaned_children", "kernel_orphan_resets", "kernel_resets_received",
                                         "netstat_listen_overflows", "netstat_migrate_req_success"};

double ms_rounded(uint64_t ns) { return std::round(static_cast<double>(ns) / 1e4) / 100; }

json kernel_delta(const json& after, const json& before) {
  json d;
  for (const char* k : kDeployKernelKeys) {
    if (!after.contains(k) || after[k].is_null() || !before.contains(k) || before[k].is_null())
      d[k] = nullptr;
    else
      d[k] = after[k].get<int64_t>() - before[k].get<int64_t>();
  }
  return d;
}

json params_json(const Experiment& e, double rate) {
  json p;
  p["mode"] = e.mode == LoadOptions::Mode::Closed ? "closed" : "open";
  p["concurrency"] = e.mode == LoadOptions::Mode::Closed ? json(e.concurrency) : json(nullptr);
  p["rate"] = e.mode == LoadOptions::Mode::Open ? json(rate) : json(nullptr);
  p["rate_fraction_of_ceiling"] = e.mode == LoadOptions::Mode::Open ? json(e.rate_fraction) : json(nullptr);
  p["backlog"] = e.backlog;
  p["work_us"] = e.work_us;
  p["workers"] = e.workers;
  p["load_threads"] = 1;
  if (e.strategy) {
    p["deploys"] = kDeploys;
    p["warmup_ms"] = kWarmup.count();
    p["interval_ms"] = kInterval.count();
    p["overlap_ms"] = kOverlap.count();
    p["settle_ms"] = kSettle.count();
  } else {
    p["duration_ms"] = e.duration_ms;
    p["stall_ms"] = e.stall_ms;
    p["stall_every_ms"] = e.stall_every_ms;
  }
  return p;
}

LoadOptions load_options(const Experiment& e, double rate) {
  LoadOptions o;
  o.mode = e.mode;
  o.concurrency = e.concurrency;
  o.rate = rate;
  o.threads = 1;
  return o;
}

// The body of one isolated run: returns the record's measured part as JSON text.
std::string deploy_run(const Experiment& e, double rate) {
  rp::probes::KernelSampler obs({.port = kPort});
  std::vector<json> snapshots{obs.sample().to_json()};
  DeployPlan plan;
  plan.strategy = *e.strategy;
  plan.port = kPort;
  plan.workers = e.workers;
  plan.backlog = e.backlog;
  plan.work = std::chrono::microseconds(e.work_us);
  plan.load = load_options(e, rate);
  plan.deploys = kDeploys;
  plan.warmup = kWarmup;
  plan.interval = kInterval;
  plan.overlap = kOverlap;
  plan.settle = kSettle;
  plan.after_deploy = [&](unsigned) { snapshots.push_back(obs.sample().to_json()); };
  DeployRun r = run_deploys(plan);
  const json final_counts = obs.sample().to_json();

  json j = ledger_json(r.ledger, r.mismatches, r.load_start_ns, r.load_end_ns);
  j["kernel_counts"] = final_counts;
  const auto by = failures_by_deploy(r);
  j["failed_before_first_deploy"] = by[0];
  json deploys = json::array();
  for (size_t i = 0; i < r.deploys.size(); ++i) {
    const DeployRecord& d = r.deploys[i];
    json dj;
    dj["index"] = d.index;
    dj["start_ms"] = ms_rounded(d.start_ns - r.load_start_ns);
    dj["retire_ms"] = ms_rounded(d.retire_ns - r.load_start_ns);
    dj["end_ms"] = ms_rounded(d.end_ns - r.load_start_ns);
    dj["queued_before"] = d.queue_known ? json(d.queued_before) : json(nullptr);
    dj["failed"] = by[i + 1];
    dj["kernel"] = kernel_delta(snapshots[i + 1], snapshots[i]);
    deploys.push_back(dj);
  }
  j["deploys"] = deploys;
  // During a deploy: from its start to 50 ms after its end (a SYN retried after a drop
  // waits ~1 s, so those show in the tail either way).
  auto during = [&](const Attempt& a) {
    for (const DeployRecord& d : r.deploys)
      if (a.start_ns <= d.end_ns + 50'000'000 && a.end_ns >= d.start_ns) return true;
    return false;
  };
  j["latency_ms"] = {{"all", latency_summary(served_latencies(r.ledger, [](const Attempt&) { return true; }))},
                     {"during_deploys", latency_summary(served_latencies(r.ledger, during))},
                     {"steady", latency_summary(served_latencies(r.ledger, [&](const Attempt& a) { return !during(a); }))}};
  json prog = json::object();
  for (auto& [k, v] : r.program) prog[k] = v;
  j["program"] = prog;
  return j.dump();
}

std::string worker_run(const Experiment& e, double rate) {
  rp::probes::KernelSampler obs({.port = kPort});
  WorkerPlan plan;
  plan.sharing = *e.sharing;
  plan.port = kPort;
  plan.workers = e.workers;
  plan.backlog = e.backlog;
  plan.work = std::chrono::microseconds(e.work_us);
  plan.load = load_options(e, rate);
  plan.duration = milliseconds(e.duration_ms);
  plan.stall = milliseconds(e.stall_ms);
  plan.stall_every = milliseconds(e.stall_every_ms);
  WorkerRun r = run_workers(plan);
  json j = ledger_json(r.ledger, r.mismatches, r.load_start_ns, r.load_end_ns);
  j["kernel_counts"] = obs.sample().to_json();
  j["stalls"] = r.stalls;
  json per = json::object();
  for (auto& [id, n] : r.served_by_servers) per[std::to_string(id)] = n;
  j["served_by_worker"] = per;
  j["latency_ms"] = {{"all", latency_summary(served_latencies(r.ledger, [](const Attempt&) { return true; }))}};
  return j.dump();
}

double measure_ceiling(json& record) {
  Experiment e{"ceiling", std::nullopt, Sharing::Reuseport};
  e.concurrency = 64;
  e.workers = 1;
  e.duration_ms = 1000;
  IsolateOptions io;
  io.timeout = std::chrono::seconds(30 * timeout_scale());
  auto res = run_isolated([&] { return worker_run(e, 0); }, io);
  if (!res.ok()) throw std::runtime_error("measuring the connection-rate ceiling: " + res.describe());
  record = json::parse(res.payload);
  record["params"] = params_json(e, 0);
  return record["served_per_second"].get<double>();
}

std::string machine_description() {
  std::ifstream in("/proc/cpuinfo");
  std::string line, model;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  return std::to_string(std::thread::hardware_concurrency()) + " CPUs, " + (model.empty() ? "unknown CPU" : model);
}

double loadavg() {
  double l = -1;
  std::ifstream("/proc/loadavg") >> l;
  return l;
}

std::string utc_now() {
  char b[32];
  std::time_t t = std::time(nullptr);
  std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return b;
}

void write_atomically(const std::filesystem::path& path, const std::string& text) {
  std::filesystem::create_directories(path.parent_path());
  auto tmp = path;
  tmp += ".tmp";
  {
    std::ofstream out(tmp);
    out << text;
    if (!out) throw std::runtime_error("cannot write " + tmp.string());
  }
  std::filesystem::rename(tmp, path);
}

std::string describe(const Experiment& e, double rate) {
  std::string s = e.kind + " ";
  s += e.strategy ? to_string(*e.strategy) : to_string(*e.sharing);
  if (e.mode == LoadOptions::Mode::Closed)
    s += " closed:" + std::to_string(e.concurrency);
  else
    s += " rate:" + std::to_string(static_cast<long>(rate));
  s += " backlog " + std::to_string(e.backlog) + " work " + std::to_string(e.work_us) + "us";
  return s;
}

std::filesystem::path source_dir() {
  const char* env = std::getenv("RP_SOURCE_DIR");
  return std::filesystem::path(env && *env ? env : RP_SOURCE_DIR);
}

std::string self_path() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string("/proc/self/exe") : p.string();
}

// Runs argv[0] with argv and waits: its exit status, 127 when it could not be started.
int run_program(const std::vector<std::string>& argv) {
  if (access(argv[0].c_str(), X_OK) != 0) {
    std::fprintf(stderr, "reuseport-check: %s: %s (ci/setup.sh installs Python 3 and its packages)\n",
                 argv[0].c_str(), std::strerror(errno));
    return 127;
  }
  // The terminal's ^C reaches it with us (same process group); it dies with us.
  try {
    rp::SpawnOptions so;
    so.argv = argv;
    so.output = rp::SpawnOptions::Output::Inherit;
    so.own_process_group = false;
    so.parent_death_signal = SIGTERM;
    so.stdin_null = false;
    so.name = argv[0];
    rp::Process p = rp::Process::spawn(so);
    return rp::exit_code(p.wait());
  } catch (const rp::SysError& e) {
    std::fprintf(stderr, "reuseport-check: %s\n", e.what());
    return 127;
  }
}

// The kernel-matrix driver's exit status is the command's: 0, 1 (a kernel or run failed), 2 (usage).
int exec_driver(const std::vector<std::string>& argv) {
  if (!std::filesystem::is_regular_file(argv[1])) {
    std::fprintf(stderr, "reuseport-check: no report driver at %s (set RP_SOURCE_DIR to the source tree)\n",
                 argv[1].c_str());
    return 2;
  }
  const int rc = run_program(argv);
  return rc == 127 ? 2 : rc;
}

}  // namespace

int report_command(const std::vector<std::string>& args, const std::vector<std::string>&) {
  std::string profile_name = "quick", guest_profile = "guest", kernels, python = "/usr/bin/python3", jobs = "1";
  bool no_build = false, out_given = false;
  std::filesystem::path out = source_dir() / "results" / "report";
  std::optional<unsigned> repeats;
  bool render = true;
  try {
    for (ArgCursor it(args); it.next();) {
      const std::string& a = it.arg();
      if (a == "--help" || a == "-h") {
        std::fputs(kReportUsage, stdout);
        return 0;
      } else if (a == "--host-only") {
        kernels = "running";
      } else if (a == "--kernels") {
        kernels = it.value();
      } else if (a == "--profile") {
        profile_name = it.value();
        profile(profile_name);
      } else if (a == "--guest-profile") {
        guest_profile = it.value();
        profile(guest_profile);
      } else if (a == "--out") {
        out = it.value();
        out_given = true;
      } else if (a == "-j" || a == "--jobs") {
        jobs = std::to_string(parse_long("-j", it.value(), 1, 16));
      } else if (a == "--no-build") {
        no_build = true;
      } else if (a == "--repeats") {
        repeats = static_cast<unsigned>(parse_long("--repeats", it.value(), 1, 1000));
      } else if (a == "--no-render") {
        render = false;
      } else if (a == "--python") {
        python = it.value();
      } else {
        throw std::invalid_argument("report: unknown option '" + a + "'");
      }
    }
  } catch (const std::exception& e) {
    return usage_error(e.what());
  }
  if (!kernels.empty() && kernels != "running") {
    // The kernel matrix: the Python driver boots the guests and runs this command in each.
    std::vector<std::string> argv = {python, source_dir() / "ci" / "matrix" / "report.py", "--kernels", kernels,
                                     "--profile", profile_name, "--guest-profile", guest_profile,
                                     "--python", python, "-j", jobs, "--host-binary", self_path()};
    if (out_given) argv.insert(argv.end(), {"--out", out.string()});
    if (repeats) argv.insert(argv.end(), {"--repeats", std::to_string(*repeats)});
    if (!render) argv.push_back("--no-render");
    if (no_build) argv.push_back("--no-build");
    return exec_driver(argv);
  }
  std::string missing;
  if (!has_privileges(missing)) {
    std::fprintf(stderr, "reuseport-check: the report needs root, or CAP_NET_ADMIN and CAP_SYS_ADMIN (missing:%s).\n",
                 missing.c_str());
    return 2;
  }

  const Profile prof = profile(profile_name);
  const std::vector<Experiment> plan = plan_for(prof, repeats);
  const std::string release = kernel_release();
  json doc;
  doc["schema"] = "reuseport-check/report-runs/1";
  doc["kernel_release"] = release;
  doc["kernel_version"] = running_kernel().str();
  doc["machine"] = machine_description();
  doc["profile"] = prof.name;
  doc["started_at"] = utc_now();
  doc["runs"] = json::array();
  json unavailable = json::object();
  for (Strategy s : all_strategies())
    if (std::string why = strategy_unavailable(s); !why.empty()) unavailable[to_string(s)] = why;
  doc["strategies_unavailable"] = unavailable;
  const auto data_path = out / "data" / (release + ".json");

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

  size_t total = 0, done = 0, failed_runs = 0, unreconciled = 0;
  for (const auto& e : plan) total += e.repeats;
  const auto t_start = std::chrono::steady_clock::now();
  for (const auto& e : plan) {
    const double rate = e.mode == LoadOptions::Mode::Open ? std::max(100.0, std::round(ceiling * e.rate_fraction)) : 0;
    for (unsigned rep = 0; rep < e.repeats; ++rep) {
      ++done;
      json rec;
      rec["experiment"] = e.kind;
      rec["strategy"] = e.strategy ? json(to_string(*e.strategy)) : json(nullptr);
      rec["sharing"] = e.sharing ? json(to_string(*e.sharing)) : json(nullptr);
      rec["params"] = params_json(e, rate);
      rec["repeat"] = rep;
      rec["kernel_release"] = release;
      if (e.strategy && unavailable.contains(to_string(*e.strategy))) {
        rec["status"] = "unavailable";
        rec["error"] = unavailable[to_string(*e.strategy)];
        doc["runs"].push_back(rec);
        continue;
      }
      // Other work on the machine shows in the numbers: the load average says how much.
      rec["loadavg_1min_before"] = loadavg();
      IsolateOptions io;
      io.timeout = std::chrono::seconds(90 * timeout_scale());
      const auto t0 = std::chrono::steady_clock::now();
      auto res = run_isolated([&] { return e.strategy ? deploy_run(e, rate) : worker_run(e, rate); }, io);
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::string line;
      if (res.ok()) {
        rec["status"] = "ok";
        rec.update(json::parse(res.payload));
        // The same for every run of a kernel: kept once.
        json& kc = rec["kernel_counts"];
        if (!doc.contains("kernel_sources")) doc["kernel_sources"] = kc["kernel_sources"];
        kc.erase("kernel_sources");
        if (kc["kernel_not_observable"].empty()) kc.erase("kernel_not_observable");
        const uint64_t att = rec["attempts"], fail = rec["failed"];
        char b[160];
        std::snprintf(b, sizeof b, "failed %llu/%llu (%.1f per 100k)%s", static_cast<unsigned long long>(fail),
                      static_cast<unsigned long long>(att), att ? 1e5 * static_cast<double>(fail) / static_cast<double>(att) : 0.0,
                      rec["reconciled"].get<bool>() ? "" : " LEDGER DID NOT RECONCILE");
        line = b;
        if (!rec["reconciled"].get<bool>()) ++unreconciled;
      } else {
        rec["status"] = "error";
        rec["error"] = res.describe();
        line = "ERROR " + res.describe();
        ++failed_runs;
      }
      rec["wall_seconds"] = secs;
      doc["runs"].push_back(rec);
      std::fprintf(stderr, "[%zu/%zu] %s r%u: %s (%.1fs)\n", done, total, describe(e, rate).c_str(), rep, line.c_str(), secs);
      doc["finished_at"] = utc_now();
      write_atomically(data_path, doc.dump());
    }
  }
  doc["finished_at"] = utc_now();
  write_atomically(data_path, doc.dump());
  const double minutes = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count() / 60;
  std::fprintf(stderr, "report: %zu runs in %.1f min, %zu errors, %zu whose ledger did not reconcile; data: %s\n", total,
               minutes, failed_runs, unreconciled, data_path.c_str());
  if (!render) return failed_runs ? 1 : 0;

  const auto script = source_dir() / "results" / "report" / "make_report.py";
  std::fprintf(stderr, "report: rendering with %s %s\n", python.c_str(), script.c_str());
  if (run_program({python, script.string(), "--data", (out / "data").string(), "--out", out.string()}) != 0) {
    std::fprintf(stderr, "reuseport-check: make_report.py failed; the data is in %s\n", data_path.c_str());
    return 1;
  }
  return failed_runs ? 1 : 0;
}

}  // namespace rp::cases
