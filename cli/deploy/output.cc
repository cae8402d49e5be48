// The deploy check's verdict on the console, in JSON (--json, replaced atomically) and in
// JUnit (--junit: one testsuite "reuseport-check deploy", one testcase "deploy").

#include <cinttypes>
#include <cstdio>

#include "cases/lib/kernel.h"
#include "cli/common/junit.h"
#include "cli/common/output.h"
#include "cli/deploy/deploy.h"
#include "harness/error.h"
#include "probes/counters.h"

namespace rp::cli::deploy {

using namespace rp::cases;
namespace {

using nlohmann::json;

json opt(const std::optional<uint64_t>& v) { return v ? json(*v) : json(nullptr); }

rp::cli::JUnitSuite suite(double elapsed_s, rp::cli::JUnitCase c) {
  c.classname = "reuseport-check";
  c.name = "deploy";
  c.time_s = elapsed_s;
  return {"reuseport-check deploy", elapsed_s, {std::move(c)}};
}

}  // namespace

int report(const Options& o, const Observed& obs, const Attribution& a, double elapsed_s) {
  const auto& ledger = obs.ledger;
  const auto& samples = obs.samples;
  const auto& kt = a.kernel_totals;
  const LoadOptions lo = load_options(o);
  const uint64_t t0 = obs.deploy.started_ns();
  const double deploy_s = seconds(obs.deploy.ended_ns() - obs.deploy.started_ns());
  auto rel = [&](uint64_t ns) { return (static_cast<double>(ns) - static_cast<double>(t0)) / 1e9; };
  auto kv = [&](const std::string& k) -> std::string { return kt.at(k) ? std::to_string(*kt.at(k)) : "n/a"; };

  const bool fail = a.lost > static_cast<uint64_t>(o.max_lost);
  std::printf("\ndeploy %s: %" PRIu64 " of %" PRIu64 " connections lost (--max-lost %ld); deploy command took %.2f s\n",
              fail ? "FAIL" : "PASS", a.lost, a.total, o.max_lost, deploy_s);
  std::printf("  client side (load generator, %s, %s):\n", to_string(lo.protocol),
              o.mode == LoadOptions::Mode::Closed ? ("closed loop, " + std::to_string(o.concurrency) + " in flight").c_str()
                                                  : ("open loop, " + fmt("%g", o.rate) + "/s").c_str());
  for (size_t i = 0; i < kOutcomeCount; ++i) {
    auto oc = static_cast<Outcome>(i);
    if (ledger.count(oc) || oc == Outcome::Served) std::printf("    %-44s %10" PRIu64 "\n", outcome_name(oc), ledger.count(oc));
  }
  if (!o.http_path.empty())
    for (auto [st, c] : a.http_statuses) std::printf("    %-44s %10" PRIu64 "\n", ("HTTP " + std::to_string(st)).c_str(), c);
  std::printf("  kernel side (%s%s):\n", o.host_net ? "this network namespace" : "the deploy's network namespace",
              obs.namespace_filter.empty() ? "" : ("; probe filter: " + obs.namespace_filter).c_str());
  for (const auto& row : rp::probes::counter_table()) std::printf("    %-64s %7s\n", row.label, kv(row.key).c_str());
  for (auto& [k, v] : obs.kernel_not_observable.items())
    std::printf("    n/a %s: %s\n", k.c_str(), v.get<std::string>().c_str());
  for (auto& [k, v] : obs.kernel_errors.items())
    std::printf("    not read %s: %s\n", k.c_str(), v.get<std::string>().c_str());
  if (!a.causes.empty()) {
    std::printf("  lost, by cause (t relative to the start of the deploy command):\n");
    for (const auto& w : a.causes) std::printf("    %s\n", w.c_str());
  }
  std::printf("  lost connections by named cause:\n");
  for (const auto& l : a.named_lines) std::printf("    %s\n", l.c_str());
  if (!a.timeline_lines.empty()) {
    std::printf("  timeline (50 ms samples; listeners on the port; client losses | kernel counts):\n");
    for (const auto& l : a.timeline_lines) std::printf("%s\n", l.c_str());
  }
  std::fflush(stdout);

  json outcomes = json::object();
  for (size_t i = 0; i < kOutcomeCount; ++i) outcomes[outcome_name(static_cast<Outcome>(i))] = ledger.count(static_cast<Outcome>(i));
  json kernel_totals = json::object();
  for (const auto& row : rp::probes::counter_table()) kernel_totals[row.key] = opt(kt.at(row.key));
  json errnos = json::object();
  for (auto [e, c] : ledger.errnos()) errnos[errno_name(e)] = c;
  json status_counts = json::object();
  for (auto [st, c] : a.http_statuses) status_counts[std::to_string(st)] = c;
  json listeners = json::array();
  for (const auto& s : samples) listeners.push_back({rel(s.ns), s.listeners, s.accept_queue});
  json out = {
      {"schema", "reuseport-check/deploy/1"},
      {"kernel", kernel_release()},
      {"port", o.port},
      {"namespace", o.host_net ? "host" : "private"},
      {"start", {{"command", o.start}}},
      {"deploy", {{"command", o.deploy}, {"status", obs.deploy.describe()}, {"duration_s", deploy_s},
                  {"output_tail", obs.deploy.last_lines(20)}}},
      {"load", {{"protocol", to_string(lo.protocol)},
                {"mode", o.mode == LoadOptions::Mode::Closed ? "closed" : "open"},
                {"concurrency", o.concurrency}, {"rate", o.rate}, {"threads", o.threads},
                {"warmup_s", o.warmup}, {"settle_s", o.settle}, {"target", lo.target.str()}}},
      {"totals", {{"attempts", a.total}, {"served", a.served}, {"lost", a.lost}, {"http_bad_status", a.bad_status},
                  {"outcomes", outcomes}, {"errnos", errnos}, {"http_status", status_counts}}},
      {"kernel_totals", kernel_totals},
      {"kernel_sources", obs.kernel_sources},
      {"kernel_not_observable", obs.kernel_not_observable},
      {"kernel_errors", obs.kernel_errors},
      {"kernel_orphans_by_listener", obs.orphans_by_listener},
      {"kernel_orphans_by_listener_source", obs.orphans_by_listener_source},
      // How the probe told the deploy's namespace from others: its cookie (5.14+) or its
      // inode (before); null when the probe is not attached.
      {"kernel_namespace_filter", obs.namespace_filter.empty() ? json(nullptr) : json(obs.namespace_filter)},
      {"causes", a.causes},
      {"attribution", a.named},
      {"timeline", a.timeline},
      {"listeners", listeners},
      {"max_lost", o.max_lost},
      {"verdict", fail ? "fail" : "pass"},
  };
  if (!o.json_path.empty()) rp::cli::write_atomic(o.json_path, out.dump(2) + "\n");
  if (!o.junit_path.empty()) {
    rp::cli::JUnitCase c;
    std::string body;
    for (const auto& l : a.timeline_lines) body += l + "\n";
    if (fail) {
      c.kind = rp::cli::JUnitCase::Kind::Failure;
      c.message = std::to_string(a.lost) + " of " + std::to_string(a.total) + " connections lost (max " +
                  std::to_string(o.max_lost) + ")";
      for (const auto& w : a.causes) c.message += "; " + w;
      c.body = body;
    } else {
      c.system_out = body;
    }
    rp::cli::write_junit(o.junit_path, {suite(elapsed_s, std::move(c))});
  }
  return fail ? 1 : 0;
}

void write_error_junit(const Options& o, const std::string& error, double elapsed_s) {
  if (o.junit_path.empty()) return;
  rp::cli::JUnitCase c;
  c.kind = rp::cli::JUnitCase::Kind::Error;
  c.message = error.substr(0, error.find('\n'));
  c.body = error;
  try {
    rp::cli::write_junit(o.junit_path, {suite(elapsed_s, std::move(c))});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "reuseport-check: %s\n", e.what());
  }
}

}  // namespace rp::cli::deploy
