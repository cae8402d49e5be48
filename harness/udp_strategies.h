// UDP deploy strategies under UDP flow load (harness/udp_flows.h): ten times over, a new
// generation of members joins the port's reuseport group and the old one retires, each
// strategy in its own way. The flows' ledger says what every datagram came to (answered,
// late, lost) and what every flow came to (stayed, moved to another member, lost).
//
//   u_close      overlap, then close() the old members at once: what their receive queues
//                hold is freed with them (udp_destruct_common; no SNMP counter counts it)
//   u_drain      overlap, then each old member connect()s to its own address, so that no
//                other 4-tuple reaches it (a connected member gets only its own 4-tuple,
//                acdcecc61285), answers what is queued, and closes (serve --udp --drain)
//   u_keep_open  overlap, then the old members stop reading but stay open for keep_open:
//                their hash share of the datagrams queues unread (and drops once the
//                receive buffer is full), then they close with their queues
//
// Members are threads of the calling process, each with a socket of its own; a member's id
// (the FlowReply's listener) is generation * members + index, so a flow that changes
// generation shows as moved. The scenario binds the port in the calling thread's network
// namespace: run it in one of its own (run_isolated).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "harness/udp_flows.h"

namespace rp {

enum class UdpStrategy { Close, Drain, KeepOpen };

// "u_close", "u_drain", "u_keep_open".
const char* to_string(UdpStrategy s);
std::optional<UdpStrategy> udp_strategy_from_string(const std::string& name);  // also "close"
const std::vector<UdpStrategy>& all_udp_strategies();

struct UdpDeployPlan {
  UdpStrategy strategy = UdpStrategy::Close;
  uint16_t port = 0;
  unsigned members = 2;       // per generation (at most 16)
  std::chrono::microseconds work{0};  // busy time per datagram before the answer
  UdpFlowOptions load;        // target: 127.0.0.1:port; max_duration and control are set here
  unsigned deploys = 10;
  std::chrono::milliseconds warmup{200};     // load before the first deploy
  std::chrono::milliseconds interval{100};   // from the end of one deploy to the next
  std::chrono::milliseconds overlap{20};     // both generations up, before the old one goes
  std::chrono::milliseconds settle{300};     // load after the last deploy
  std::chrono::milliseconds keep_open{100};  // u_keep_open: unread before the close
  std::function<void(unsigned)> after_deploy;
};

struct UdpDeployRecord {
  unsigned index = 0;
  uint64_t start_ns = 0, retire_ns = 0, end_ns = 0;  // CLOCK_MONOTONIC, as Datagram's times
};

struct UdpDeployRun {
  UdpFlowResult flows;
  std::map<int32_t, uint64_t> served_by_servers;  // answers each member sent
  std::vector<std::string> mismatches;            // reconcile(); empty when it reconciles
  std::vector<UdpDeployRecord> deploys;
  uint64_t drained = 0;  // u_drain: datagrams the old members answered after their connect()
};

// Throws std::invalid_argument on a bad plan, SysError when a member cannot be opened.
UdpDeployRun run_udp_deploys(const UdpDeployPlan& plan);

}  // namespace rp
