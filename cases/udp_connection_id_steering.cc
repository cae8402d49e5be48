// udp_connection_id_steering
//
// A UDP reuseport group picks a member by the hash of the 4-tuple scaled over the group's
// size (reuseport_select_sock_by_hash(): reciprocal_scale(hash, num_socks)), so a reload
// that adds a generation of members moves flows to other members although no datagram was
// lost: a QUIC connection breaks. A BPF_PROG_TYPE_SK_REUSEPORT program (4.19, 2dbb9b9e6df6)
// that reads a connection id from the datagram and selects its owner from a
// REUSEPORT_SOCKARRAY (bpf/udp_connid_steer.bpf.c) does not depend on the group's size:
// every connection stays on its member, new ones go to the generation the program names.
// When the owner's socket closed, its sockarray slot is empty and bpf_sk_select_reuseport()
// fails (-ENOENT, net/core/sock_reuseport.c / filter.c sk_select_reuseport()); the program
// then either returns SK_PASS without a selection, and reuseport_select_sock() falls back to
// the hash (sk2 == NULL), or SK_DROP, and bpf_run_sk_reuseport() returns
// ERR_PTR(-ECONNREFUSED), which the UDP lookup treats as no socket (UdpNoPorts).
//
// Scenario, per variant (IPv4 / IPv6 x steer: the program / hash: no program, the control):
//   1. In a fresh network namespace, generation 1: members 0 and 1 (threads answering
//      FlowRequest with FlowReply naming themselves) on one loopback port; steer: the
//      program with slots {0: member 0, 1: member 1}, new ids to slots 0-1, attached.
//   2. Load A: F flows (ids 0 .. F-1, each its own 4-tuple), closed loop, running.
//   3. Generation 2 (members 2 and 3) joins; steer: slots 2 and 3 filled, then new ids to
//      slots 2-3. Load B: F flows, ids 1000 .., starts beside A.
//   4. A ends (its flows are done), after it got answers past the join; then generation 1
//      closes while B runs; B ends after answers past the close.
//   5. steer only, the edge: F new flows carrying A's ids (owned by the closed slots 0-1),
//      first with SK_PASS on an empty slot, then with SK_DROP.
//   6. Per load: flows that moved to another member, datagrams lost, flows answered by each
//      generation, and (steer) flows answered by a member other than the program's owner
//      slot. Reconcile: answers the clients got = answers the members sent.

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <optional>
#include <set>
#include <stdexcept>
#include <thread>

#include "cases/lib/case_test.h"
#include "cases/lib/observe.h"
#include "cases/lib/udp_group.h"
#include "harness/server.h"
#include "harness/udp_flows.h"
#include "probes/reuseport_steer.h"
#include "probes/udp_connid_steer.h"

namespace rp::cases {
namespace {

using probes::UdpConnIdSteer;

struct Variant {
  Family family;
  bool steer;
  std::string name() const { return std::string("udp") + (family == Family::V4 ? "4" : "6") + (steer ? "_steer" : "_hash"); }
};

constexpr uint16_t kPort = 47940;
constexpr int kPerGeneration = 2;
// Flows per load. The control's join moves a flow unless it hashes below 1/4 of the range
// (slot 0 of 2 and of 4 alike): no move among 32 flows has probability 4^-32; the edge's
// hash fallback leaves all 32 flows on one of 2 members with probability 2^-31.
constexpr unsigned kFlows = 32;
constexpr uint32_t kSecondIds = 1000;
// Answers a load must get past a step before the next one: every flow several times on
// average, so the step happened while the flows were running.
constexpr uint64_t kAnswersPastStep = 8 * kFlows;

// Waits until `c` counts `target` answers and every flow was answered (so each connection
// id reached the program before the step that follows). A load that stalls is our failure
// (ERROR).
void await_answers(const UdpFlowControl& c, uint64_t target, const char* what) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20) * timeout_scale();
  while (c.answers.load() < target || c.flows_answered.load() < kFlows) {
    if (std::chrono::steady_clock::now() > deadline)
      throw std::runtime_error(std::string("udp load stalled: ") + what + ": " + std::to_string(c.answers.load()) +
                               " of " + std::to_string(target) + " answers, " +
                               std::to_string(c.flows_answered.load()) + " of " + std::to_string(kFlows) +
                               " flows answered");
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

UdpFlowOptions load_options(const Endpoint& target, uint32_t first_flow, UdpFlowControl* control, uint64_t max_datagrams) {
  UdpFlowOptions o;
  o.target = target;
  o.flows = kFlows;
  o.first_flow = first_flow;
  o.threads = 2;
  o.max_datagrams = max_datagrams;
  o.max_duration = std::chrono::milliseconds(60000) * timeout_scale();
  o.reply_timeout = std::chrono::milliseconds(300) * timeout_scale();
  o.late_window = std::chrono::milliseconds(600) * timeout_scale();
  o.control = control;
  return o;
}

// A load's flows and datagrams as named counts ("a_flows_moved", ...). `owner`: the
// program's slot of a flow id (slot = member id here), when steering.
void put_load(nlohmann::json& o, const std::string& p, const UdpFlowResult& r,
              const std::optional<std::function<int32_t(uint32_t)>>& owner) {
  const UdpFlowTally t = r.tally();
  uint64_t moved = 0, flows_lost = 0, on_gen1 = 0, on_gen2 = 0, off_owner = 0;
  for (const auto& f : r.flows) {
    if (f.outcome == FlowOutcome::Moved || f.outcome == FlowOutcome::MovedAndLost) ++moved;
    if (f.outcome == FlowOutcome::Lost || f.outcome == FlowOutcome::MovedAndLost) ++flows_lost;
    bool g1 = !f.by_member.empty(), g2 = !f.by_member.empty();
    for (const auto& [m, n] : f.by_member) (m < kPerGeneration ? g2 : g1) = false;
    on_gen1 += g1;
    on_gen2 += g2;
    if (owner)
      for (const auto& [m, n] : f.by_member)
        if (m != (*owner)(f.flow)) {
          ++off_owner;
          break;
        }
  }
  o[p + "_flows"] = r.flows.size();
  o[p + "_sent"] = t.sent;
  o[p + "_answered"] = t.answered + t.late;
  o[p + "_lost"] = t.lost;
  o[p + "_flows_moved"] = moved;
  o[p + "_flows_lost"] = flows_lost;
  o[p + "_flows_on_gen1"] = on_gen1;
  o[p + "_flows_on_gen2"] = on_gen2;
  if (owner) o[p + "_flows_off_owner"] = off_owner;
  std::set<int32_t> members;
  for (const auto& [m, n] : t.by_member) members.insert(m);
  o[p + "_members_answering"] = members.size();
  if (auto bad = reconcile(r, {}); !bad.empty()) {
    auto& list = o["ledger_mismatches"];
    for (auto& b : bad) list.push_back(p + ": " + b);
  }
}

nlohmann::json scenario(const Variant& v) {
  ListenerGroup group;
  ListenerSpec spec;
  spec.socket.proto = Proto::Udp;
  spec.socket.addr = Endpoint::loopback(v.family, kPort);

  std::optional<UdpConnIdSteer> steer;
  if (v.steer) steer.emplace();
  auto fill = [&](int id) {
    if (steer) steer->set_member(static_cast<uint32_t>(id), probes::socket_fd_by_inode(group.inode(id)));
  };

  nlohmann::json o;
  o["ledger_mismatches"] = nlohmann::json::array();
  std::vector<int> gen1, gen2;
  for (int i = 0; i < kPerGeneration; ++i) gen1.push_back(group.add(spec));
  for (int id : gen1) fill(id);
  if (steer) {
    steer->set_generation(0, kPerGeneration);
    steer->attach(probes::socket_fd_by_inode(group.inode(gen1[0])));
  }

  UdpFlowControl ca, cb;
  const uint64_t unbounded = 100'000'000;  // the loads end by control.stop
  UdpFlowLoad la(load_options(spec.socket.addr, 0, &ca, unbounded));
  UdpFlowLoad lb(load_options(spec.socket.addr, kSecondIds, &cb, unbounded));
  auto fa = std::async(std::launch::async, [&] { return la.run(); });
  std::future<UdpFlowResult> fb;
  try {
    await_answers(ca, kAnswersPastStep, "load A before generation 2 joins");

    for (int i = 0; i < kPerGeneration; ++i) gen2.push_back(group.add(spec));
    for (int id : gen2) fill(id);
    // The sockarray holds generation 2 before any id is given to its slots.
    if (steer) steer->set_generation(static_cast<uint32_t>(gen2[0]), kPerGeneration);
    const uint64_t a_at_join = ca.answers.load();
    fb = std::async(std::launch::async, [&] { return lb.run(); });
    await_answers(ca, a_at_join + kAnswersPastStep, "load A after generation 2 joined");
    await_answers(cb, kAnswersPastStep, "load B before generation 1 closes");
  } catch (...) {
    ca.stop = true;
    cb.stop = true;
    throw;  // the futures' destructors wait for the loads
  }
  ca.stop = true;
  const UdpFlowResult ra = fa.get();

  try {
    for (int id : gen1) group.close(id);
    const uint64_t b_at_close = cb.answers.load();
    await_answers(cb, b_at_close + kAnswersPastStep, "load B after generation 1 closed");
  } catch (...) {
    cb.stop = true;
    throw;
  }
  cb.stop = true;
  const UdpFlowResult rb = fb.get();

  std::optional<std::function<int32_t(uint32_t)>> owner;
  if (steer) owner = [&](uint32_t id) { return steer->owner_of(id); };
  put_load(o, "a", ra, owner);
  put_load(o, "b", rb, owner);
  uint64_t answered = ra.tally().answered + ra.tally().late + rb.tally().answered + rb.tally().late;

  if (steer) {
    const auto k = steer->counts();
    o["program_runs"] = k.runs;
    o["program_no_id"] = k.no_id;
    o["program_ids_assigned"] = k.assigned;
    o["program_empty_slot"] = k.empty_slot;
    o["datagrams_sent"] = ra.tally().sent + rb.tally().sent;
    // The edge: A's ids again, from new 4-tuples, each datagram once (no retry), their
    // owner slots empty since generation 1 closed.
    for (bool drop : {false, true}) {
      const std::string p = drop ? "closed_slot_drop" : "closed_slot_pass";
      steer->set_missing_drop(drop);
      const auto before = steer->counts();
      const UdpCounters mib_before = read_udp_counters(v.family);
      UdpFlowOptions eo = load_options(spec.socket.addr, 0, nullptr, kFlows);
      const UdpFlowResult re = UdpFlowLoad(eo).run();
      const UdpCounters mib_after = read_udp_counters(v.family);
      const auto after = steer->counts();
      const UdpFlowTally t = re.tally();
      o[p + "_sent"] = t.sent;
      o[p + "_answered"] = t.answered + t.late;
      o[p + "_lost"] = t.lost;
      uint64_t at_gen2 = 0;
      for (const auto& [m, n] : t.by_member)
        if (m >= kPerGeneration) at_gen2 += n;
      o[p + "_answered_by_gen2"] = at_gen2;
      o[p + "_members_answering"] = t.by_member.size();
      o[p + "_program_empty_slot"] = after.empty_slot - before.empty_slot;
      o[p + "_program_dropped"] = after.dropped - before.dropped;
      o[p + "_netstat_no_ports"] = mib_after.no_ports - mib_before.no_ports;
      answered += t.answered + t.late;
    }
  }
  group.stop_all();
  const nlohmann::json loads_off = o["ledger_mismatches"];
  o.update(answer_counts(answered, group));
  for (const auto& m : loads_off) o["ledger_mismatches"].push_back(m);
  return o;
}

std::vector<Variant> variants() {
  std::vector<Variant> out;
  for (Family f : {Family::V4, Family::V6})
    for (bool s : {true, false}) out.push_back({f, s});
  return out;
}

RP_CASE(udp_connection_id_steering, ::testing::ValuesIn(variants()));

}  // namespace
}  // namespace rp::cases
