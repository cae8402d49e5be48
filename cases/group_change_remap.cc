// group_change_remap
//
// A reuseport group maps a flow to socks[reciprocal_scale(hash, num_socks)]
// (reuseport_select_sock(), net/core/sock_reuseport.c), so any change of the group's size
// moves existing flows: a new socket is appended at slot num_socks; a leaving socket's slot
// is refilled with the group's last socket (__reuseport_detach_sock(): socks[i] =
// socks[num_socks - 1]). With x = hash / 2^32 uniform in [0, 1), the slot model predicts:
//   - adding a 5th socket to 4 moves exactly half of the flows (for any n -> n+1), a fifth
//     of all flows to the new socket;
//   - closing one of 4 moves far more than the closed socket's quarter: 3/4 of all flows
//     for slot 0, 2/3 for slot 1, 1/2 for slot 3 (the last: no socket moves, but the
//     scale changes from 4 to 3); and some (old, new) pairs are impossible: after closing
//     slot 0 every flow of socket 0 goes to socket 3, which moved into slot 0.
//
// Scenario, per variant (tcp/udp x IPv4/IPv6 x change):
//   1. In a fresh network namespace, 4 SO_REUSEPORT sockets on one port, which the case
//      reads itself (cases/lib/flows_by_port).
//   2. Map F flows (fixed source ports) to their socket: UDP F = 4,096 datagrams, each
//      carrying its index; TCP F = 1,024 handshakes, the accepted child's peer port naming
//      its flow, both ends closed with an RST so no TIME_WAIT keeps the tuple.
//   3. Change the group: add a 5th listener, or close the listener in slot 0, 1 or 3.
//   4. Map the same flows again.
//   5. Compare: the fraction of flows that moved against the slot model's prediction
//      (tolerance 5 binomial standard deviations at F flows), and count the flows whose
//      (old, new) pair the model says cannot happen (must be 0).

#include <gtest/gtest.h>

#include <cmath>

#include "cases/lib/case_test.h"
#include "cases/lib/observe.h"
#include "cases/lib/flows_by_port.h"
#include "harness/error.h"
#include "harness/scope.h"

namespace rp::cases {
namespace {

enum class Change { Add, CloseFirst, CloseMiddle, CloseLast };

struct Variant {
  Proto proto;
  Family family;
  Change change;
  std::string name() const {
    static const char* names[] = {"add", "close_slot0", "close_slot1", "close_slot3"};
    return std::string(proto == Proto::Tcp ? "tcp" : "udp") + (family == Family::V4 ? "4" : "6") + "_" +
           names[static_cast<int>(change)];
  }
};

constexpr uint16_t kPort = 47500;
constexpr int kListeners = 4;

// The socket each slot holds after the change, by listener id.
std::vector<int> slots_after(Change c) {
  switch (c) {
    case Change::Add: return {0, 1, 2, 3, 4};
    case Change::CloseFirst: return {3, 1, 2};
    case Change::CloseMiddle: return {0, 3, 2};
    case Change::CloseLast: return {0, 1, 2};
  }
  return {};
}
int closed_listener(Change c) { return c == Change::CloseFirst ? 0 : c == Change::CloseMiddle ? 1 : c == Change::CloseLast ? 3 : -1; }

// The slot model over x in [0, 1): the probability of each (old listener, new listener)
// pair. Exact: every breakpoint is a multiple of 1/(n*m) with n = 4 and m = 3 or 5, so each
// of 60 equal cells lies within one piece and its midpoint stands for it.
std::map<std::pair<int, int>, double> model(Change c) {
  const std::vector<int> after = slots_after(c);
  const int m = static_cast<int>(after.size());
  constexpr int kCells = 60;
  std::map<std::pair<int, int>, double> p;
  for (int i = 0; i < kCells; ++i) {
    const double x = (i + 0.5) / kCells;
    const int old_sock = static_cast<int>(x * kListeners);
    const int new_sock = after[static_cast<size_t>(x * m)];
    p[{old_sock, new_sock}] += 1.0 / kCells;
  }
  return p;
}

nlohmann::json scenario(const Variant& v) {
  const size_t flows = v.proto == Proto::Udp ? 4096 : 1024;
  std::vector<uint16_t> ports;
  for (size_t i = 0; i < flows; ++i) ports.push_back(static_cast<uint16_t>(20000 + i));
  const Endpoint to = Endpoint::loopback(v.family, kPort);
  // A closed socket keeps its index (empty), an added one is index 4.
  OwnGroup group(v.proto, to, kListeners);
  const std::vector<int32_t> before = group.flows(ports);
  if (v.change == Change::Add)
    group.add();
  else
    group.close(static_cast<size_t>(closed_listener(v.change)));
  const std::vector<int32_t> after = group.flows(ports);
  nlohmann::json o = group.counts();

  const auto p = model(v.change);
  double predicted_moved = 0;
  for (const auto& [pair, prob] : p)
    if (pair.first != pair.second) predicted_moved += prob;
  uint64_t moved = 0, impossible = 0, lost = 0, to_new = 0;
  std::map<std::string, uint64_t> transitions;
  for (size_t i = 0; i < flows; ++i) {
    if (before[i] < 0 || after[i] < 0) {
      ++lost;
      continue;
    }
    if (before[i] != after[i]) ++moved;
    if (v.change == Change::Add && after[i] == kListeners) ++to_new;
    if (!p.count({before[i], after[i]})) ++impossible;
    ++transitions[std::to_string(before[i]) + "->" + std::to_string(after[i])];
  }
  const double n = static_cast<double>(flows - lost);
  const double observed = n > 0 ? moved / n : 0;
  const double tolerance = std::ceil(5 * std::sqrt(0.25 / static_cast<double>(flows)) * 1000) / 1000;

  o["flows"] = flows;
  o["lost"] = lost;
  o["moved"] = moved;
  o["moved_fraction"] = std::round(observed * 10000) / 10000;
  o["predicted_moved_fraction"] = std::round(predicted_moved * 10000) / 10000;
  o["tolerance"] = tolerance;
  o["moved_fraction_matches_model"] = std::abs(observed - predicted_moved) <= tolerance;
  o["impossible_transitions"] = impossible;
  o["transitions"] = transitions;
  if (v.change == Change::Add) {
    o["moved_to_new"] = to_new;
    o["moved_to_new_fraction"] = std::round(to_new / n * 10000) / 10000;
  }
  return o;
}

std::vector<Variant> variants() {
  std::vector<Variant> out;
  for (Proto pr : {Proto::Tcp, Proto::Udp})
    for (Family f : {Family::V4, Family::V6})
      for (Change c : {Change::Add, Change::CloseFirst, Change::CloseMiddle, Change::CloseLast}) out.push_back({pr, f, c});
  return out;
}

RP_CASE(group_change_remap, ::testing::ValuesIn(variants()));

}  // namespace
}  // namespace rp::cases
