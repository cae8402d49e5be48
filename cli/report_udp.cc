// The report's UDP deploy runs (kind "udp_grid"): one isolated run of a UDP strategy
// (harness/udp_strategies.h) under UDP flow load, with the kernel's causes for the lost
// datagrams. Counted in the run's own network namespace: the UDP MIB (/proc/net/snmp Udp.)
// before and after, and the udp_drops probe (tp_btf/kfree_skb) for the datagrams freed
// with a member's receive queue at close, which no SNMP counter counts
// (cases/udp_close_with_queued). The causes are taken in deploy --udp's order
// (cli/deploy/udp.h, attribute_udp), each at most its kernel count. u_steer_id's flows live
// one generation (a load per generation, harness/udp_strategies.h), so its record's flows
// are all generations' loads: flows_per_generation x (deploys + 1).

#include <sys/socket.h>

#include <algorithm>
#include <cmath>

#include "cases/lib/case.h"
#include "cli/report_runs.h"
#include "harness/fd.h"
#include "harness/udp_strategies.h"
#include "probes/netstat.h"
#ifdef RP_HAVE_BPF
#include "probes/udp_drops.h"
#endif

namespace rp::cli::report {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;

constexpr uint16_t kUdpPort = 8053;
// As the TCP strategies (report_runs.cc): 10 deploys, 100 ms apart, 20 ms of overlap.
constexpr unsigned kDeploys = 10;
constexpr milliseconds kWarmup{200}, kInterval{100}, kOverlap{20}, kSettle{300}, kKeepOpen{100};
// A datagram unanswered after this is late; one unanswered at the end of the late window is
// lost. On loopback an answer takes well under a millisecond unless its member is not read.
constexpr milliseconds kReplyTimeout{200}, kLateWindow{500};
constexpr unsigned kMembers = 2;
// u_steer_id: every flow of a generation's load answered once before the next generation
// takes new ids; a load that does not get there in this long stalled (our failure).
constexpr milliseconds kStallLimit{20000};

class Drops {
 public:
  Drops() {
#ifdef RP_HAVE_BPF
    try {
      probe_ = std::make_unique<probes::UdpDrops>(probes::UdpDrops::for_current_netns(kUdpPort));
      if (!probe_->queued_not_tracked().empty()) why_ = probe_->queued_not_tracked();
    } catch (const std::exception& e) {
      why_ = std::string("the udp_drops probe did not attach: ") + e.what();
    }
#else
    why_ = "built without BPF (RP_ENABLE_BPF=OFF)";
#endif
  }
  const std::string& why() const { return why_; }
  // The namespace's purges at close, and every drop of the port by function and reason.
  std::pair<json, json> read() const {
    json list = json::array();
    uint64_t purged = 0;
#ifdef RP_HAVE_BPF
    if (probe_)
      for (const auto& d : probe_->read()) {
        const bool purge = d.purged_at_close();
        if (purge) purged += d.count;
        list.push_back({{"function", (d.netns_unknown ? "(namespace unknown) " : "") + d.function},
                        {"reason", d.reason}, {"count", d.count}, {"purged_at_close", purge}});
      }
#endif
    return {why_.empty() ? json(purged) : json(nullptr), probe_ ? list : json(nullptr)};
  }

 private:
  std::string why_;
#ifdef RP_HAVE_BPF
  std::unique_ptr<probes::UdpDrops> probe_;
#else
  std::unique_ptr<int> probe_;
#endif
};

double ms_since(uint64_t ns, uint64_t t0) { return std::round((static_cast<double>(ns) - static_cast<double>(t0)) / 1e4) / 100; }

}  // namespace

json udp_params_json(const Experiment& e) {
  json p;
  p["mode"] = e.mode == LoadOptions::Mode::Closed ? "closed" : "open";
  p["in_flight"] = e.mode == LoadOptions::Mode::Closed ? json(e.concurrency) : json(nullptr);
  p["rate"] = e.mode == LoadOptions::Mode::Open ? json(e.udp_rate) : json(nullptr);
  p["flows"] = e.flows;
  p["members"] = kMembers;
  p["work_us"] = e.work_us;
  p["load_threads"] = 1;
  p["deploys"] = kDeploys;
  p["warmup_ms"] = kWarmup.count();
  p["interval_ms"] = kInterval.count();
  p["overlap_ms"] = kOverlap.count();
  p["settle_ms"] = kSettle.count();
  p["keep_open_ms"] = *e.udp_strategy == UdpStrategy::KeepOpen ? json(kKeepOpen.count()) : json(nullptr);
  p["reply_timeout_ms"] = kReplyTimeout.count();
  p["late_window_ms"] = kLateWindow.count();
  // "run": the flows live the whole run; "generation": a load of `flows` per generation,
  // its flows sending from the generation's join to the next join + overlap (u_steer_id).
  p["flow_lifetime"] = *e.udp_strategy == UdpStrategy::SteerId ? "generation" : "run";
  return p;
}

std::string udp_deploy_run(const Experiment& e) {
  const Drops drops;
  const auto mib0 = probes::netstat::read_udp_mib(false);
  UdpDeployPlan plan;
  plan.strategy = *e.udp_strategy;
  plan.port = kUdpPort;
  plan.members = kMembers;
  plan.work = std::chrono::microseconds(e.work_us);
  plan.load.mode = e.mode == LoadOptions::Mode::Closed ? UdpFlowOptions::Mode::Closed : UdpFlowOptions::Mode::Open;
  plan.load.flows = e.flows;
  plan.load.in_flight = e.concurrency;
  plan.load.rate = e.udp_rate > 0 ? e.udp_rate : 1000;
  plan.load.max_datagrams = 100'000'000;  // the run's deploys end the load, not a count
  plan.load.reply_timeout = kReplyTimeout;
  plan.load.late_window = kLateWindow;
  plan.deploys = kDeploys;
  plan.warmup = kWarmup;
  plan.interval = kInterval;
  plan.overlap = kOverlap;
  plan.settle = kSettle;
  plan.keep_open = kKeepOpen;
  plan.stall_limit = kStallLimit * cases::timeout_scale();
  const UdpDeployRun r = run_udp_deploys(plan);
  const auto mib1 = probes::netstat::read_udp_mib(false);
  const auto [purged, drop_list] = drops.read();

  const UdpFlowTally t = r.flows.tally();
  auto flows_of = [&](FlowOutcome f) {
    auto it = t.flows.find(f);
    return it == t.flows.end() ? uint64_t{0} : it->second;
  };
  json j;
  j["datagrams"] = {{"sent", t.sent}, {"answered", t.answered}, {"late", t.late}, {"lost", t.lost}};
  j["flows"] = {{"total", r.flows.flows.size()}, {"stayed", flows_of(FlowOutcome::Stayed)},
                {"moved", flows_of(FlowOutcome::Moved)}, {"lost", flows_of(FlowOutcome::Lost)},
                {"moved_and_lost", flows_of(FlowOutcome::MovedAndLost)}};
  j["broken_flows"] = flows_of(FlowOutcome::Moved) + flows_of(FlowOutcome::MovedAndLost);
  j["reconciled"] = r.mismatches.empty();
  j["mismatches"] = r.mismatches;
  const double secs = static_cast<double>(r.flows.ended_ns - r.flows.started_ns) / 1e9;
  j["load_seconds"] = secs;
  j["sent_per_second"] = secs > 0 ? static_cast<double>(t.sent) / secs : 0;
  json by = json::object();
  for (const auto& [m, n] : r.served_by_servers) by[std::to_string(m)] = n;
  j["served_by_member"] = by;
  j["drained"] = r.drained;
  if (r.program)
    j["program"] = {{"runs", r.program->runs}, {"no_id", r.program->no_id}, {"assigned", r.program->assigned},
                    {"selected", r.program->selected}, {"empty_slot", r.program->empty_slot}};
  else
    j["program"] = nullptr;

  const uint64_t no_ports = mib1.no_ports - std::min(mib1.no_ports, mib0.no_ports);
  const uint64_t rcvbuf = mib1.rcvbuf_errors - std::min(mib1.rcvbuf_errors, mib0.rcvbuf_errors);
  const uint64_t in_errors = mib1.in_errors - std::min(mib1.in_errors, mib0.in_errors);
  j["kernel"] = {{"udp_no_ports", no_ports}, {"udp_rcvbuf_errors", rcvbuf}, {"udp_in_errors", in_errors},
                 {"udp_queue_purged", purged}};
  j["kernel_not_observable"] =
      drops.why().empty() ? json::object()
                          : json{{"udp_queue_purged", drops.why() + "; datagrams freed with a closed member's queue "
                                                                    "stay unattributed"}};
  j["drops"] = drop_list;
  // Each cause takes at most its kernel count and what is still unexplained; the rest of
  // a count goes beyond the losses (e.g. RcvbufErrors of the clients' own sockets).
  uint64_t left = t.lost;
  json causes = json::object(), beyond = json::object();
  auto take = [&](const char* cause, uint64_t count) {
    const uint64_t n = std::min(left, count);
    causes[cause] = n;
    left -= n;
    if (count > n) beyond[cause] = count - n;
  };
  take("no_socket", no_ports);
  take("receive_buffer_full", rcvbuf);
  take("other_receive_errors", in_errors - std::min(in_errors, rcvbuf));
  if (purged.is_null())
    causes["queue_purged_at_close"] = nullptr;
  else
    take("queue_purged_at_close", purged.get<uint64_t>());
  j["causes"] = causes;
  j["unattributed"] = left;
  j["beyond_losses"] = beyond;

  // Per deploy: the datagrams sent from its start to the next one's that were lost, and the
  // flows whose first move falls there.
  json deploys = json::array();
  const uint64_t t0 = r.flows.started_ns;
  for (size_t i = 0; i < r.deploys.size(); ++i) {
    const auto& d = r.deploys[i];
    const uint64_t from = d.start_ns, to = i + 1 < r.deploys.size() ? r.deploys[i + 1].start_ns : UINT64_MAX;
    uint64_t lost = 0, moved = 0;
    for (const auto& f : r.flows.flows) {
      for (const auto& dg : f.datagrams)
        if (dg.outcome == DatagramOutcome::Lost && dg.sent_ns >= from && dg.sent_ns < to) ++lost;
      if (f.moves && f.moved_ns >= from && f.moved_ns < to) ++moved;
    }
    deploys.push_back({{"index", d.index}, {"start_ms", ms_since(d.start_ns, t0)}, {"retire_ms", ms_since(d.retire_ns, t0)},
                       {"end_ms", ms_since(d.end_ns, t0)}, {"lost", lost}, {"flows_moved", moved}});
  }
  j["deploys"] = deploys;
  return j.dump();
}

}  // namespace rp::cli::report
