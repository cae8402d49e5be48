// The runs of `reuseport-check report`: see cli/report_runs.h, and cli/report.cc for the
// steps of the whole report.

#include "cli/report_runs.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <functional>
#include <thread>

#include "cases/lib/case.h"
#include "harness/error.h"
#include "harness/isolate.h"
#include "probes/attribution.h"
#include "probes/kernel_sampler.h"

namespace rp::cli::report {

using namespace rp::cases;
namespace {

using nlohmann::json;
using std::chrono::milliseconds;

constexpr uint16_t kPort = 8080;

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

// The run's lost connections by named cause (probes/attribution.h), from its ledger's
// outcomes and the kernel's counts over the run: the report's losses get names, and an
// unattributed one stands out.
json attribution_json(const json& outcomes, const rp::probes::KernelCounts& k) {
  return rp::probes::attribute(k.values, rp::probes::reset_reason_given(k.sources),
                               rp::probes::client_failures(outcomes))
      .to_json();
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

LoadOptions load_options(const Experiment& e, double rate) {
  LoadOptions o;
  o.mode = e.mode;
  o.concurrency = e.concurrency;
  o.rate = rate;
  o.threads = 1;
  return o;
}

}  // namespace

Profile profile(const std::string& name) {
  Profile p;
  if (name == "quick") {
    p = {"quick", {20, 256}, {16, 1024}, {0, 100}, {0.5}, {128}, 3, 5, 3, false, 24};
    p.udp_in_flight = {1, 4};
    return p;
  }
  // The kernels of the matrix run in 2-vCPU guests, under TCG where KVM cannot run them:
  // the quick profile's grid at 20 in flight, the seed swap and the shapes. UDP: the quick
  // profile's two points (24 runs of about 3 s each on the host).
  if (name == "guest") {
    p = {"guest", {20}, {16, 1024}, {0}, {0.5}, {128}, 3, 5, 3, false, 24};
    p.udp_in_flight = {1, 4};
    return p;
  }
  if (name == "full") {
    p = {"full", {1, 4, 20, 64, 256}, {16, 128, 1024, 4096}, {0, 100}, {0.1, 0.25, 0.5, 0.75, 0.9, 1.0}, {128, 4096},
         5, 20, 10, true, 30};
    p.udp_in_flight = {1, 2, 4, 16};
    p.udp_rates = {5000, 20000};
    p.udp_repeats = 10;
    return p;
  }
  throw std::invalid_argument("a profile is quick, full or guest, got '" + name + "'");
}

bool is_focus(const Experiment& e) {
  return e.kind == "grid" && e.strategy &&
         (*e.strategy == Strategy::Close || *e.strategy == Strategy::Kill || *e.strategy == Strategy::ShutdownDrain) &&
         e.mode == LoadOptions::Mode::Closed && e.concurrency == 20 && e.backlog == 16 && e.work_us == 0;
}

const std::vector<std::string>& experiment_kinds() {
  static const std::vector<std::string> kinds = {"grid",           "udp_grid",    "seed", "seed_busy",
                                                 "blocked_worker", "nginx_shape"};
  return kinds;
}

std::vector<Experiment> only_kinds(const std::vector<Experiment>& plan, const std::vector<std::string>& kinds) {
  const auto& known = experiment_kinds();
  for (const auto& k : kinds)
    if (std::find(known.begin(), known.end(), k) == known.end()) {
      std::string list;
      for (const auto& n : known) list += (list.empty() ? "" : ", ") + n;
      throw std::invalid_argument("unknown experiment '" + k + "' (known: " + list + ")");
    }
  std::vector<Experiment> out;
  for (const auto& e : plan)
    if (std::find(kinds.begin(), kinds.end(), e.kind) != kinds.end()) out.push_back(e);
  return out;
}

std::string data_file_name(const std::string& release, const std::vector<std::string>& kinds) {
  if (kinds.empty()) return release + ".json";
  std::string name = release + ".";
  for (size_t i = 0; i < kinds.size(); ++i) name += (i ? "+" : "") + kinds[i];
  return name + ".json";
}

std::vector<Experiment> plan_for(const Profile& p, std::optional<unsigned> repeats) {
  std::vector<Experiment> out;
  const unsigned rep = repeats.value_or(p.repeats);
  // --repeats sets every point's repeats, the focus point's too.
  const unsigned focus_rep = repeats.value_or(std::max(p.repeats, p.focus_repeats));
  for (Strategy s : all_strategies()) {
    for (unsigned work : p.work_grid ? p.work_us : std::vector<unsigned>{0})
      for (unsigned c : p.concurrency)
        for (int b : p.backlogs) {
          Experiment e{"grid", s, std::nullopt};
          e.concurrency = c;
          e.backlog = b;
          e.work_us = work;
          e.repeats = is_focus(e) ? focus_rep : rep;
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
  // UDP strategies: 64 flows, each its own 4-tuple, two members per generation (u_steer_id:
  // 64 flows per generation, as its connections live one generation).
  for (UdpStrategy s : all_udp_strategies()) {
    auto add = [&](LoadOptions::Mode mode, unsigned in_flight, double rate) {
      Experiment e{"udp_grid", std::nullopt, std::nullopt};
      e.udp_strategy = s;
      e.mode = mode;
      e.concurrency = in_flight;
      e.udp_rate = rate;
      e.repeats = repeats.value_or(p.udp_repeats);
      out.push_back(e);
    };
    for (unsigned k : p.udp_in_flight) add(LoadOptions::Mode::Closed, k, 0);
    for (double r : p.udp_rates) add(LoadOptions::Mode::Open, 1, r);
  }
  // (i) start_server under `ab -c 20`: one listener per generation, 20 in flight.
  for (Strategy s : {Strategy::Close, Strategy::HandOver}) {
    Experiment e{"seed", s, std::nullopt};
    e.concurrency = 20;
    e.backlog = 128;
    e.repeats = repeats.value_or(p.seed_repeats);
    out.push_back(e);
  }
  // (i) at the published magnitude: the write-up's prefork workers were busy when the old
  // generation went, so its accept queue was full and the whole queue was reset. One
  // listener per generation spending 5 ms on each request under 20 in flight keeps most of
  // the 20 queued behind the one being served.
  for (Strategy s : {Strategy::Close, Strategy::HandOver}) {
    Experiment e{"seed_busy", s, std::nullopt};
    e.concurrency = 20;
    e.backlog = 128;
    e.work_us = 5000;
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

json params_json(const Experiment& e, double rate) {
  if (e.udp_strategy) return udp_params_json(e);
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
  const rp::probes::KernelCounts final_sample = obs.sample();
  const json final_counts = final_sample.to_json();

  json j = ledger_json(r.ledger, r.mismatches, r.load_start_ns, r.load_end_ns);
  j["kernel_counts"] = final_counts;
  j["attribution"] = attribution_json(j["outcomes"], final_sample);
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
  const rp::probes::KernelCounts sample = obs.sample();
  j["kernel_counts"] = sample.to_json();
  j["attribution"] = attribution_json(j["outcomes"], sample);
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

std::string describe(const Experiment& e, double rate) {
  std::string s = e.kind + " ";
  if (e.udp_strategy) {
    s += to_string(*e.udp_strategy);
    s += " " + std::to_string(e.flows) + " flows ";
    s += e.mode == LoadOptions::Mode::Closed ? "closed:" + std::to_string(e.concurrency) + " per flow"
                                             : "rate:" + std::to_string(static_cast<long>(e.udp_rate)) + "/s";
    return s;
  }
  s += e.strategy ? to_string(*e.strategy) : to_string(*e.sharing);
  if (e.mode == LoadOptions::Mode::Closed)
    s += " closed:" + std::to_string(e.concurrency);
  else
    s += " rate:" + std::to_string(static_cast<long>(rate));
  s += " backlog " + std::to_string(e.backlog) + " work " + std::to_string(e.work_us) + "us";
  return s;
}

RunsOutcome runs_outcome(const json& doc) {
  RunsOutcome out;
  const json& runs = doc.at("runs");
  for (size_t i = 0; i < runs.size(); ++i) {
    const json& r = runs[i];
    std::string name = "runs[" + std::to_string(i) + "] " + r.value("experiment", std::string("?"));
    for (const char* k : {"strategy", "sharing"})
      if (r.contains(k) && r[k].is_string()) name += " " + r[k].get<std::string>();
    if (r.contains("repeat")) name += " r" + r["repeat"].dump();
    const std::string status = r.value("status", std::string());
    if (status == "error") {
      out.errors.push_back(name + ": " + r.value("error", std::string("(no message)")));
    } else if (status == "ok") {
      // A run without the flag was not checked: as bad as one that did not reconcile.
      const bool reconciled = r.contains("reconciled") && r["reconciled"].is_boolean() && r["reconciled"].get<bool>();
      if (!reconciled) {
        std::string why;
        if (r.contains("mismatches") && r["mismatches"].is_array())
          for (const auto& m : r["mismatches"]) why += (why.empty() ? "" : "; ") + (m.is_string() ? m.get<std::string>() : m.dump());
        out.unreconciled.push_back(name + ": " + (why.empty() ? "ledger did not reconcile" : why));
      }
    } else if (status != "unavailable") {
      out.errors.push_back(name + ": unknown status '" + status + "'");
    }
  }
  return out;
}

}  // namespace rp::cli::report
