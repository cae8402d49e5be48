// `deploy --udp`'s verdict on the console, in JSON (--json, reuseport-check/deploy-udp/1,
// results/schemas/deploy-udp.schema.json) and in JUnit (one testcase "deploy", as TCP).

#include <cinttypes>
#include <cstdio>

#include "cases/lib/kernel.h"
#include "cli/common/junit.h"
#include "cli/common/output.h"
#include "cli/deploy/udp.h"

namespace rp::cli::deploy {

using namespace rp::cases;

int udp_report(const Options& o, const Load& load, const std::vector<Sample>& samples, const Process& deploy,
               const UdpKernel& kernel, double elapsed_s) {
  using nlohmann::json;
  const UdpFlowResult& r = udp_result(load);
  const uint64_t t0 = deploy.started_ns();
  const UdpAttribution a = attribute_udp(o, r, samples, t0);
  const auto& t = a.tally;
  const double deploy_s = seconds(deploy.ended_ns() - deploy.started_ns());
  auto rel = [&](uint64_t ns) { return (static_cast<double>(ns) - static_cast<double>(t0)) / 1e9; };
  auto flows_of = [&](FlowOutcome f) {
    auto it = t.flows.find(f);
    return it == t.flows.end() ? uint64_t{0} : it->second;
  };
  // Only a server that names its member in the answer shows a flow that moved.
  const bool moves_seen = o.dns_name.empty();
  const uint64_t bad = t.lost + (moves_seen ? a.broken : 0);
  const bool fail = bad > static_cast<uint64_t>(o.max_lost);
  const std::string mode = o.mode == LoadOptions::Mode::Closed
                               ? "closed loop, " + std::to_string(o.concurrency) + " in flight per flow"
                               : "open loop, " + fmt("%g", o.rate) + "/s";

  const std::string broken_text = moves_seen ? std::to_string(a.broken) + " of " + std::to_string(o.flows) + " flows broken"
                                             : "broken flows not observable";
  std::printf("\ndeploy %s: %" PRIu64 " of %" PRIu64 " datagrams lost, %s (--max-lost %ld counts both); deploy command "
              "took %.2f s\n",
              fail ? "FAIL" : "PASS", t.lost, t.sent, broken_text.c_str(), o.max_lost, deploy_s);
  std::printf("  client side (UDP flows%s, %u flows, %s, reply timeout %g s):\n",
              moves_seen ? "" : (", DNS queries for " + o.dns_name).c_str(), o.flows, mode.c_str(), o.reply_timeout);
  std::printf("    %-44s %10" PRIu64 "\n", "sent", t.sent);
  std::printf("    %-44s %10" PRIu64 "\n", "answered", t.answered);
  std::printf("    %-44s %10" PRIu64 "\n", "late (answered after the timeout)", t.late);
  std::printf("    %-44s %10" PRIu64 "\n", "lost (never answered)", t.lost);
  if (moves_seen) {
    for (FlowOutcome f : {FlowOutcome::Stayed, FlowOutcome::Moved, FlowOutcome::Lost, FlowOutcome::MovedAndLost})
      std::printf("    %-44s %10" PRIu64 "\n", (std::string("flows ") + to_string(f)).c_str(), flows_of(f));
    std::printf("    %-44s %10zu\n", "members that answered", t.by_member.size());
  } else {
    std::printf("    %-44s %10" PRIu64 "\n", "flows that lost a datagram", flows_of(FlowOutcome::Lost));
    std::printf("    %-44s %10s\n", "flows moved to another member", "n/a");
    std::printf("    n/a moved flows: a DNS answer does not name the member that sent it\n");
  }
  std::printf("  kernel side (%s; UDP MIB since the load began):\n",
              o.host_net ? "this network namespace, all its traffic" : "the deploy's network namespace");
  auto kv = [&](const char* k) -> std::string {
    auto it = samples.back().k.find(k);
    return it != samples.back().k.end() && it->second ? std::to_string(*it->second) : "n/a";
  };
  for (const auto& row : udp_counter_rows()) std::printf("    %-64s %7s\n", row.label, kv(row.key).c_str());
  const json drops = kernel.drops();
  if (drops.is_array())
    for (const auto& d : drops)
      if (d["count"].get<uint64_t>())
        std::printf("      kfree_skb in %s, reason %s: %s\n", d["function"].get<std::string>().c_str(),
                    d["reason"].get<std::string>().empty() ? "-" : d["reason"].get<std::string>().c_str(), d["count"].dump().c_str());
  const json not_observable = kernel.not_observable();
  for (auto& [k, v] : not_observable.items()) std::printf("    n/a %s: %s\n", k.c_str(), v.get<std::string>().c_str());
  std::printf("  lost datagrams by named cause%s:\n", a.lost_when.c_str());
  for (const auto& [c, n] : a.causes)
    if (n) std::printf("    %-28s %7" PRIu64 "   (%s)\n", c.c_str(), n, a.evidence.at(c).c_str());
  std::printf("    %-28s %7" PRIu64 "\n", "unattributed", a.unattributed);
  for (const auto& [c, n] : a.beyond_losses)
    std::printf("    counted beyond the losses: %s %" PRIu64 "\n", c.c_str(), n);
  if (a.broken && moves_seen)
    std::printf("  broken flows: %" PRIu64 " moved to another member%s (send time of the first datagram the new member "
                "answered): the port's group changed under them\n",
                a.broken, a.moved_when.c_str());
  if (!a.timeline_lines.empty()) {
    std::printf("  timeline (50 ms samples by send time; UDP sockets on the port; client | kernel counts):\n");
    for (const auto& l : a.timeline_lines) std::printf("%s\n", l.c_str());
  }
  std::fflush(stdout);

  json flows = json::object();
  for (FlowOutcome f : {FlowOutcome::Stayed, FlowOutcome::Moved, FlowOutcome::Lost, FlowOutcome::MovedAndLost})
    flows[to_string(f)] = flows_of(f);
  json by_member = json::object();
  for (const auto& [m, n] : t.by_member) by_member[std::to_string(m)] = n;
  json moves = json::array();
  for (const auto& f : r.flows)
    if (f.moves) moves.push_back({{"flow", f.flow}, {"at_s", rel(f.moved_ns)}, {"from", f.moved_from}, {"to", f.moved_to}, {"moves", f.moves}});
  json kernel_totals = json::object();
  for (const auto& row : udp_counter_rows()) {
    auto it = samples.back().k.find(row.key);
    kernel_totals[row.key] = it != samples.back().k.end() && it->second ? json(*it->second) : json(nullptr);
  }
  json members = json::array();
  for (const auto& s : samples) members.push_back({rel(s.ns), s.listeners, s.accept_queue});
  // A cause the kernel cannot show here is null, never 0.
  json causes = a.causes;
  if (!a.causes.count("queue_purged_at_close")) causes["queue_purged_at_close"] = nullptr;
  json out = {
      {"schema", "reuseport-check/deploy-udp/1"},
      {"kernel", kernel_release()},
      {"port", o.port},
      {"namespace", o.host_net ? "host" : "private"},
      {"start", {{"command", o.start}}},
      {"deploy", {{"command", o.deploy}, {"status", deploy.describe()}, {"duration_s", deploy_s},
                  {"output_tail", deploy.last_lines(20)}}},
      {"load", {{"protocol", "udp_flows"}, {"mode", o.mode == LoadOptions::Mode::Closed ? "closed" : "open"},
                {"flows", o.flows}, {"in_flight", o.concurrency}, {"rate", o.rate}, {"threads", o.threads},
                {"reply_timeout_s", o.reply_timeout}, {"warmup_s", o.warmup}, {"settle_s", o.settle},
                {"target", udp_flow_options(o).target.str()}}},
      {"datagrams", {{"sent", t.sent}, {"answered", t.answered}, {"late", t.late}, {"lost", t.lost}}},
      {"flows", {{"count", o.flows},
                 {"outcomes", flows},
                 {"broken", moves_seen ? json(a.broken) : json(nullptr)},
                 {"broken_not_observable", moves_seen ? json(nullptr) : json("a DNS answer does not name the member that sent it")},
                 {"moves", moves},
                 {"answers_by_member", moves_seen ? by_member : json(nullptr)}}},
      {"request", moves_seen ? json("flow") : json("dns:" + o.dns_name)},
      {"kernel_totals", kernel_totals},
      {"kernel_sources", kernel.sources()},
      {"kernel_not_observable", not_observable},
      {"kernel_drops", drops},
      {"attribution", {{"lost", t.lost}, {"causes", causes}, {"evidence", a.evidence}, {"unattributed", a.unattributed},
                       {"beyond_losses", a.beyond_losses}}},
      {"timeline", a.timeline},
      {"members", members},
      {"max_lost", o.max_lost},
      {"verdict", fail ? "fail" : "pass"},
  };
  if (!o.json_path.empty()) rp::cli::write_atomic(o.json_path, out.dump(2) + "\n");
  if (!o.junit_path.empty()) {
    rp::cli::JUnitCase c;
    c.classname = "reuseport-check";
    c.name = "deploy";
    c.time_s = elapsed_s;
    std::string body;
    for (const auto& l : a.timeline_lines) body += l + "\n";
    if (fail) {
      c.kind = rp::cli::JUnitCase::Kind::Failure;
      c.message = std::to_string(t.lost) + " of " + std::to_string(t.sent) + " datagrams lost and " +
                  broken_text + " (max " +
                  std::to_string(o.max_lost) + "); unattributed " + std::to_string(a.unattributed);
      c.body = body;
    } else {
      c.system_out = body;
    }
    rp::cli::write_junit(o.junit_path, {{"reuseport-check deploy", elapsed_s, {std::move(c)}}});
  }
  return fail ? 1 : 0;
}

}  // namespace rp::cli::deploy
