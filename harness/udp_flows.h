// The UDP flow load: N flows, each its own 4-tuple (a socket of its own bound to a chosen or
// kernel-assigned source port), sending wire::FlowRequest datagrams (flow id, sequence) to a
// reuseport group whose members answer with wire::FlowReply naming themselves. A QUIC or DNS
// client is such a flow: what a group change does to it is which member its answers come
// from (a move breaks a QUIC connection although nothing was lost) and which datagrams get
// no answer. Closed loop (K datagrams in flight per flow) or open loop (a rate over all
// flows), bounded in count and time; flows are split over threads.
//
// Every datagram sent ends with exactly one outcome:
//   Answered: its answer arrived within reply_timeout of its send;
//   Late:     its answer arrived after reply_timeout but before the run ended (counted
//             apart, never also as Lost);
//   Lost:     no answer by the end of the run.
// The run ends `late_window` after the last send or when every datagram is answered,
// whichever is first (each thread for its own flows). In the closed loop a datagram past its timeout frees its slot, so a
// flow keeps sending while its late answer may still come.
//
// Every flow ends with exactly one outcome, from its answered and late datagrams in sequence
// order:
//   Stayed:       every answer from one member, nothing lost (also a flow that sent nothing,
//                 which only happens when max_datagrams < flows);
//   Moved:        answers from a member other than the first one's, nothing lost; the first
//                 move is recorded (the send time of the first datagram answered by the new
//                 member, the old and new member) and how many times the member changed;
//   Lost:         one member (or none) answered, and `lost` datagrams had no answer;
//   MovedAndLost: both. One outcome per flow, so a case counting broken flows counts
//                 Moved + MovedAndLost, and one counting flows that lost counts Lost +
//                 MovedAndLost.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "harness/socket.h"

namespace rp {

// Shared with a running load by its owner (deploy): stop ends the sending (as max_duration
// does), answers counts the answers so far (in time or late), for a warm-up check, and
// flows_answered the flows that got at least one: a total alone can be reached by some
// flows while others have not been answered yet (threads start apart; seen under TCG).
struct UdpFlowControl {
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> answers{0};
  std::atomic<uint64_t> flows_answered{0};
};

struct UdpFlowOptions {
  enum class Mode { Closed, Open };
  Endpoint target;
  Mode mode = Mode::Closed;
  unsigned flows = 16;
  // The flow id of the first flow; flow i sends first_flow + i. A second load beside a
  // first one gives its flows ids of their own (a steering program keyed on the id tells
  // them apart: cases/udp_connection_id_steering.cc).
  uint32_t first_flow = 0;
  // Source port of each flow (size == flows), or empty: ports the kernel picks.
  std::vector<uint16_t> source_ports;
  unsigned in_flight = 1;        // closed loop: datagrams in flight per flow
  double rate = 1000;            // open loop: datagrams per second over all flows
  unsigned threads = 1;          // flows are split over threads; at most `flows`
  uint64_t max_datagrams = 10000;                 // over all flows; each thread sends its flows' share
  std::chrono::milliseconds max_duration{10000};  // no datagram is sent after this
  std::chrono::milliseconds reply_timeout{1000};  // answered later than this: Late
  std::chrono::milliseconds late_window{2000};    // after the last send; must be >= reply_timeout
  UdpFlowControl* control = nullptr;              // optional; must outlive run()
  // Non-empty: each datagram is a DNS query (type A, recursion desired) for this name with
  // the DNS ID = seq mod 65536, and any DNS response with that ID answers it, whatever its
  // RCODE. A DNS server does not name its member: every answer counts as member 0, so no
  // flow is ever Moved; a caller must say its flows' moves are not observable.
  std::string dns_name;
};

// The DNS query datagram for `name` with `id`; throws std::invalid_argument naming what is
// wrong with the name (an empty label, a label over 63 bytes, over 253 bytes in all).
std::string dns_query(const std::string& name, uint16_t id);

enum class DatagramOutcome : uint8_t { Answered, Late, Lost };
enum class FlowOutcome : uint8_t { Stayed, Moved, Lost, MovedAndLost };
const char* to_string(DatagramOutcome o);
const char* to_string(FlowOutcome o);

struct Datagram {
  uint64_t seq = 0;
  uint64_t sent_ns = 0;      // CLOCK_MONOTONIC
  uint64_t answered_ns = 0;  // 0: no answer
  int32_t member = -1;       // the answering listener's id; -1: none
  DatagramOutcome outcome = DatagramOutcome::Lost;
};

struct FlowRecord {
  uint32_t flow = 0;
  uint16_t source_port = 0;  // as bound
  std::vector<Datagram> datagrams;  // index = seq
  uint64_t answered = 0, late = 0, lost = 0;
  FlowOutcome outcome = FlowOutcome::Stayed;
  int32_t first_member = -1;  // the member of the first answer; -1: never answered
  // The first move: when (send time of the first datagram the new member answered), from, to.
  uint64_t moved_ns = 0;
  int32_t moved_from = -1, moved_to = -1;
  uint32_t moves = 0;  // changes of member in sequence order
  std::map<int32_t, uint64_t> by_member;  // answers (in time or late) per member
};

struct UdpFlowTally {
  uint64_t sent = 0, answered = 0, late = 0, lost = 0;
  std::map<FlowOutcome, uint64_t> flows;
  // Answers the clients got (in time or late) per member: what each member sent, as the
  // servers count it (ListenerGroup::served_by_listener), when no answer was lost on the way.
  std::map<int32_t, uint64_t> by_member;
};

struct UdpFlowResult {
  uint64_t started_ns = 0, ended_ns = 0;
  std::vector<FlowRecord> flows;  // index = flow id - first_flow
  UdpFlowTally tally() const;
};

// Checks sent = answered + late + lost per flow and in total, one outcome per datagram and
// per flow, and the clients' answers per member against `served_by_servers` (skipped when
// empty). One line per count that is off; empty when all reconcile.
std::vector<std::string> reconcile(const UdpFlowResult& r, const std::map<int32_t, uint64_t>& served_by_servers);

class UdpFlowLoad {
 public:
  // Throws std::invalid_argument naming the bad option.
  explicit UdpFlowLoad(UdpFlowOptions opts);
  // Binds every flow's socket first (SysError "bind udp source ..." on a taken port), then
  // runs the threads to the end. Throws what a thread hit.
  UdpFlowResult run() const;
  const UdpFlowOptions& options() const { return opts_; }

 private:
  UdpFlowOptions opts_;
};

}  // namespace rp
