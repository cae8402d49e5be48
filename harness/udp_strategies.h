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
//   u_steer_id   a QUIC server with a connection-id-aware sk_reuseport program
//                (bpf/udp_connid_steer.bpf.c): each datagram goes to the member owning its
//                flow id, ids seen for the first time to the current generation. Flows
//                live one generation here, as QUIC connections come and go: each generation
//                has a load of its own with fresh ids (first_flow + generation * flows),
//                started once its members are in the program's map; at a deploy the old
//                generation's load stops sending after the overlap (its connections end),
//                the old members answer what is still in flight to them, and close once
//                that load has ended, so nothing is queued when they close. With the
//                flows of the other three (they live the whole run) the first generation
//                would never drain.
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

enum class UdpStrategy { Close, Drain, KeepOpen, SteerId };

// "u_close", "u_drain", "u_keep_open", "u_steer_id".
const char* to_string(UdpStrategy s);
std::optional<UdpStrategy> udp_strategy_from_string(const std::string& name);  // also "close"
const std::vector<UdpStrategy>& all_udp_strategies();
// Why this build or the running kernel cannot run it (no BPF in the build; the kernel
// refuses sk_reuseport programs); empty when it can. Probed by loading our program. Throws
// when our program does not load where the kernel offers the type: that is the tool's
// error, never "unavailable" (as strategy_unavailable(), harness/strategies.h).
std::string udp_strategy_unavailable(UdpStrategy s);

struct UdpDeployPlan {
  UdpStrategy strategy = UdpStrategy::Close;
  uint16_t port = 0;
  unsigned members = 2;       // per generation (at most 16; u_steer_id 8, two banks of the program's slots)
  std::chrono::microseconds work{0};  // busy time per datagram before the answer
  // target: 127.0.0.1:port; max_duration and control are set here. u_steer_id: each
  // generation's load; flows * (deploys + 1) ids must fit the program's owner map.
  UdpFlowOptions load;
  unsigned deploys = 10;
  std::chrono::milliseconds warmup{200};     // load before the first deploy
  std::chrono::milliseconds interval{100};   // from the end of one deploy to the next
  std::chrono::milliseconds overlap{20};     // both generations up, before the old one goes
  std::chrono::milliseconds settle{300};     // load after the last deploy
  std::chrono::milliseconds keep_open{100};  // u_keep_open: unread before the close
  // u_steer_id: every flow of a generation's load answered at least once before the next
  // generation takes new ids (so each id reached the program while its generation was the
  // current one); a load that does not get there within this stalled: throws.
  std::chrono::milliseconds stall_limit{20000};
  // u_steer_id's loads and lifetimes without the program: the group's hash picks. The
  // control that shows what the program prevents (flows move at the join).
  bool hash_control = false;
  std::function<void(unsigned)> after_deploy;
};

struct UdpDeployRecord {
  unsigned index = 0;
  // CLOCK_MONOTONIC, as Datagram's times. start: the new generation joins; retire: the old
  // one starts to go (u_steer_id: its load stops sending); end: the old members are closed.
  uint64_t start_ns = 0, retire_ns = 0, end_ns = 0;
};

// What u_steer_id's program did (bpf/udp_connid_steer.bpf.c's counters).
struct UdpSteerCounts {
  uint64_t runs = 0, no_id = 0, assigned = 0, selected = 0, empty_slot = 0;
};

struct UdpDeployRun {
  UdpFlowResult flows;
  std::map<int32_t, uint64_t> served_by_servers;  // answers each member sent
  std::vector<std::string> mismatches;            // reconcile(); empty when it reconciles
  std::vector<UdpDeployRecord> deploys;
  uint64_t drained = 0;  // u_drain: datagrams the old members answered after their connect()
  std::optional<UdpSteerCounts> program;  // u_steer_id with its program
};

// Throws std::invalid_argument on a bad plan, SysError when a member cannot be opened,
// std::runtime_error when the strategy cannot run here (udp_strategy_unavailable()).
UdpDeployRun run_udp_deploys(const UdpDeployPlan& plan);

}  // namespace rp
