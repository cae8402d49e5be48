// `reuseport-check watch`: attach the reuseport probe to a port that somebody else's server
// listens on (nginx, a Go service, anything), in the current network namespace or in the
// one of a named namespace or process, and print the kernel's counters each interval:
// listeners joining and leaving the port, resets by cause, children orphaned in a closed
// listener's queue, overflows and migrations. Then a summary, and optionally JSON.

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common/options.h"
#include "cli/common/output.h"
#include "cases/lib/kernel.h"
#include "harness/sockdiag.h"
#include "probes/attribution.h"
#include "probes/counters.h"
#include "probes/kernel_sampler.h"

namespace rp::cli {

using namespace rp::cases;
namespace {

// Orphans per listener that closed, by socket cookie (SO_COOKIE; a JSON key is a string);
// null where the kernel cannot tell which listener they were orphaned by.
nlohmann::json orphans_by_listener(const rp::probes::KernelCounts& k) {
  if (!k.listener_orphans) return nullptr;
  nlohmann::json o = nlohmann::json::object();
  for (const auto& [cookie, n] : *k.listener_orphans) o[std::to_string(cookie)] = n;
  return o;
}

using nlohmann::json;

constexpr const char* kWatchDescription =
    "Attaches to the TCP port P of a server that someone else runs and prints, each interval,\n"
    "what the kernel saw on that port: listeners joining and leaving it, listener closes,\n"
    "children orphaned in a closed listener's accept queue and the RSTs they sent, other RSTs,\n"
    "RSTs received by clients of the port, listen-queue overflows and request migrations. Ends\n"
    "after --duration seconds or on Ctrl-C/SIGTERM with a summary, in which every RST a client of\n"
    "the port saw is counted under one named cause (orphaned in a closed listener's queue, a\n"
    "request of a closed listener, closed by its owner, no listener) or as unattributed. A counter\n"
    "the running kernel cannot observe is shown as n/a with the reason, never as 0.";

constexpr const char* kWatchFooter = R"FOOTER(--json PATH is rewritten atomically after every interval with "complete": false (a killed
watch leaves every interval it finished), and with "complete": true at the end.

Exit status: 0 after --duration or Ctrl-C/SIGTERM; 2 on bad usage, an unwritable --json
path (checked before anything is attached), an unknown namespace or process, missing
privileges or a probe that does not attach.

Environment: needs root, or CAP_BPF/CAP_SYS_ADMIN, CAP_NET_ADMIN and CAP_PERFMON.

Examples:
  reuseport-check watch --port 80 --duration 60
  reuseport-check watch --port 8080 --pid "$(pgrep -o nginx)" --json deploy.json
)FOOTER";

volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

struct Options {
  int port = -1;
  NamespaceTarget ns;
  std::string json_path;
  double duration = 0, interval = 1;
  bool quiet = false;
};

double now_s() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

std::string cell(const json& v) { return v.is_null() ? "n/a" : v.dump(); }

}  // namespace

int watch_command(const std::vector<std::string>& args, const std::vector<std::string>&) {
  Options o;
  auto app = rp::cli::make_app("watch", kWatchDescription, kWatchFooter);
  app->add_option("--port", o.port, "The port (1-65535)")->required()->check(CLI::Range(1, 65535));
  add_namespace_options(*app, o.ns, "Watch");
  app->add_option("--duration", o.duration, "Stop after S seconds (default: until interrupted)")
      ->type_name("S")
      ->check(rp::cli::seconds());
  app->add_option("--interval", o.interval, "Seconds between lines and rewrites of --json (default 1)")
      ->type_name("S")
      ->check(rp::cli::seconds());
  app->add_option("--json", o.json_path, "Write every sample and the totals as JSON to PATH")->type_name("PATH");
  app->add_flag("--quiet", o.quiet, "No per-interval lines, only the summary");
  if (auto rc = rp::cli::parse(*app, args)) return *rc;
  // Before anything is attached: a path that cannot be written fails now, not after the watch.
  if (!o.json_path.empty()) {
    try {
      rp::cli::check_writable(o.json_path);
    } catch (const rp::cli::OutputError& e) {
      std::fprintf(stderr, "reuseport-check: %s\n", e.what());
      return 2;
    }
  }
  std::string missing;
  if (!has_privileges(missing)) {
    std::fprintf(stderr, "reuseport-check: watch needs root (BPF, the target's network namespace); missing:%s\n",
                 missing.c_str());
    return 2;
  }
#ifndef RP_HAVE_BPF
  std::fprintf(stderr, "reuseport-check: this build has no BPF probes (configured with RP_ENABLE_BPF=OFF)\n");
  return 2;
#else
  const uint16_t port = static_cast<uint16_t>(o.port);
  std::optional<rp::probes::KernelSampler> kernel;
  const std::string where = o.ns.describe();
  try {
    enter_netns(o.ns);
    kernel.emplace(rp::probes::KernelSampler::Options{.port = port, .shared_namespace = true});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "reuseport-check: %s\n", e.what());
    return 2;
  }
  if (!kernel->probe_error().empty()) {
    std::fprintf(stderr, "reuseport-check: the reuseport probe did not attach: %s\n", kernel->probe_error().c_str());
    return 2;
  }
  const bool netns_filter = true;

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  std::printf("watching TCP port %u in %s on kernel %s (%s)\n", port, where.c_str(), kernel_release().c_str(),
              kernel->namespace_filter().c_str());
  // Sampled once before the first interval: the sources of an early --json document.
  rp::probes::KernelCounts last_counts = kernel->sample();
  std::printf("  listener closes and orphans from %s\n", kernel->lifecycle_events().c_str());
  {
    const auto& first = last_counts;
    if (auto it = first.not_observable.find("kernel_migrate_target_found"); it != first.not_observable.end())
      std::printf("  migrations by the kernel's own function: n/a (%s); TcpExt counters shown\n", it->second.c_str());
  }
  if (!o.quiet)
    std::printf("%7s %9s %6s %6s %7s %10s %9s %8s %9s %7s %9s  %s\n", "t(s)", "listeners", "queued", "closes", "orphans",
                "orphan_rst", "other_rst", "rst_rcvd", "overflows", "migr_ok", "migr_fail", "joined/left");
  std::fflush(stdout);

  auto snapshot = [&](double t, const std::set<uint64_t>& prev_listeners, std::set<uint64_t>& cur_listeners) {
    last_counts = kernel->sample();
    json s = last_counts.to_json(false);
    s["t"] = t;
    s["orphans_by_listener"] = orphans_by_listener(last_counts);
    uint64_t queued = 0;
    cur_listeners.clear();
    for (const auto& l : tcp_listeners(port)) {
      cur_listeners.insert(l.inode);
      queued += l.accept_queue;
    }
    int joined = 0, left = 0;
    for (auto i : cur_listeners) joined += !prev_listeners.count(i);
    for (auto i : prev_listeners) left += !cur_listeners.count(i);
    s["listeners"] = cur_listeners.size();
    s["accept_queue"] = queued;
    s["joined"] = joined;
    s["left"] = left;
    return s;
  };

  json samples = json::array();
  std::set<uint64_t> prev, cur;
  for (const auto& l : tcp_listeners(port)) prev.insert(l.inode);
  const size_t initial_listeners = prev.size();
  int total_joined = 0, total_left = 0;
  const double t0 = now_s();
  json last;

  // The totals so far: the counters of the last sample (they count from the baseline).
  auto totals_of = [&] {
    json totals = last.is_null() ? json::object() : last;
    totals.erase("t");
    totals.erase("joined");
    totals.erase("left");
    totals["listeners_at_start"] = initial_listeners;
    totals["listeners_joined"] = total_joined;
    totals["listeners_left"] = total_left;
    // watch runs no clients: the failures it can name are the RSTs the port's clients
    // received while they still held their sockets.
    totals["attribution"] =
        rp::probes::attribute(last_counts.values, rp::probes::reset_reason_given(last_counts.sources), std::nullopt)
            .to_json();
    return totals;
  };
  auto sources_of = [&] {
    json sources = json(last_counts.sources);
    for (auto& [k, why] : last_counts.not_observable) sources[k] = why;
    for (auto& [k, why] : last_counts.errors) sources[k] = "not read: " + why;
    sources["listeners, accept_queue, joined/left"] = "NETLINK_SOCK_DIAG, LISTEN sockets of the port";
    sources["orphans_by_listener"] = last_counts.listener_orphans_source;
    return sources;
  };
  // The whole document, replaced atomically after every interval, so that a watch killed
  // at any moment leaves every interval it finished ("complete": false) and never half a
  // file. One document rather than JSON Lines: readers (jq, the tests, the schema) take
  // the same shape from a finished and an interrupted watch. A rewrite costs the
  // document's size, so once that grows past a few percent of the time between samples
  // (hours at --interval 1), rewrites are spaced out to keep it there.
  double next_write = 0;
  rp::cli::RewrittenDocument json_doc(o.json_path);
  auto write_doc = [&](bool complete) {
    if (o.json_path.empty() || (!complete && now_s() < next_write)) return true;
    json out = {{"schema", "reuseport-check/watch/1"}, {"complete", complete},      {"port", port},
                {"namespace", where},                  {"netns_filter", netns_filter}, {"kernel", kernel_release()},
                {"interval_s", o.interval},            {"samples", samples},        {"totals", totals_of()},
                {"sources", sources_of()}};
    const double w0 = now_s();
    if (!json_doc.write(out.dump(2) + "\n", complete)) return false;  // a full disk: next interval again
    const double took = now_s() - w0;
    next_write = now_s() + 20 * took;
    return true;
  };
  write_doc(false);
  while (!g_stop) {
    double target = now_s() + o.interval;
    if (o.duration > 0) target = std::min(target, t0 + o.duration);
    while (!g_stop && now_s() < target) {
      double left_s = target - now_s();
      timespec ts{static_cast<time_t>(left_s), static_cast<long>((left_s - static_cast<double>(static_cast<time_t>(left_s))) * 1e9)};
      nanosleep(&ts, nullptr);
    }
    json s = snapshot(now_s() - t0, prev, cur);
    total_joined += s["joined"].get<int>();
    total_left += s["left"].get<int>();
    prev = cur;
    samples.push_back(s);
    last = s;
    if (!o.quiet) {
      std::printf("%7.1f %9s %6s %6s %7s %10s %9s %8s %9s %7s %9s  +%d/-%d\n", s["t"].get<double>(),
                  cell(s["listeners"]).c_str(), cell(s["accept_queue"]).c_str(), cell(s["kernel_listener_closes"]).c_str(),
                  cell(s["kernel_orphaned_children"]).c_str(), cell(s["kernel_orphan_resets"]).c_str(),
                  cell(s["kernel_other_resets_sent"]).c_str(), cell(s["kernel_resets_received"]).c_str(),
                  cell(s["netstat_listen_overflows"]).c_str(), cell(s["netstat_migrate_req_success"]).c_str(),
                  cell(s["netstat_migrate_req_failure"]).c_str(), s["joined"].get<int>(), s["left"].get<int>());
      std::fflush(stdout);
    }
    write_doc(false);
    if (o.duration > 0 && now_s() - t0 >= o.duration) break;
  }

  const json totals = totals_of();
  const json sources = sources_of();
  std::printf("\nsummary over %.1f s, port %u:\n", now_s() - t0, port);
  std::printf("  listeners: %zu at start, %zu at end, %d joined, %d left\n", initial_listeners, cur.size(), total_joined,
              total_left);
  for (const auto& row : rp::probes::counter_table())
    if (totals.contains(row.key) && totals[row.key].is_number())
      std::printf("  %-64s %s\n", row.label, cell(totals[row.key]).c_str());
  if (totals.contains("orphans_by_listener") && totals["orphans_by_listener"].is_object())
    for (auto& [cookie, n] : totals["orphans_by_listener"].items())
      std::printf("  orphans of the listener with cookie %-36s %s\n", cookie.c_str(), cell(n).c_str());
  std::printf("\n");
  for (const auto& line :
       rp::probes::attribute(last_counts.values, rp::probes::reset_reason_given(last_counts.sources), std::nullopt).lines())
    std::printf("  %s\n", line.c_str());
  for (auto& [k, v] : totals.items())
    if (v.is_null()) std::printf("  n/a %s: %s\n", k.c_str(), sources.contains(k) ? sources[k].get<std::string>().c_str() : "this kernel lacks it");

  if (!o.json_path.empty() && !write_doc(true)) return 2;
  return 0;
#endif
}

}  // namespace rp::cli
