// The tiny protocol between the load generator and the listeners: a fixed request, and a
// reply that names the listener that served it, so the ledger knows who served whom.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace rp::wire {

inline constexpr char kRequest[4] = {'R', 'P', 'Q', '\n'};
inline constexpr uint32_t kReplyMagic = 0x31535052;  // "RPS1" little-endian

struct Reply {
  uint32_t magic;
  uint32_t listener;
};
static_assert(sizeof(Reply) == 8);

inline Reply make_reply(uint32_t listener) { return {kReplyMagic, listener}; }
inline bool parse_reply(const char* buf, uint32_t& listener) {
  Reply r;
  std::memcpy(&r, buf, sizeof r);
  if (r.magic != kReplyMagic) return false;
  listener = r.listener;
  return true;
}

// The UDP flow load (harness/udp_flows.h): a request names its flow and sequence number, and
// the reply echoes both beside the listener's id, so a client matches every answer to its
// datagram (late ones too) and sees which member answered. Listeners tell the two requests
// apart by size and magic; the 4-byte kRequest still gets the 8-byte Reply.
inline constexpr uint32_t kFlowRequestMagic = 0x31465052;  // "RPF1"
inline constexpr uint32_t kFlowReplyMagic = 0x31475052;    // "RPG1"

struct FlowRequest {
  uint32_t magic;
  uint32_t flow;
  uint64_t seq;
};
static_assert(sizeof(FlowRequest) == 16);

struct FlowReply {
  uint32_t magic;
  uint32_t listener;
  uint32_t flow;
  uint32_t pad;
  uint64_t seq;
};
static_assert(sizeof(FlowReply) == 24);

inline bool parse_flow_request(const char* buf, size_t n, FlowRequest& out) {
  if (n != sizeof(FlowRequest)) return false;
  std::memcpy(&out, buf, sizeof out);
  return out.magic == kFlowRequestMagic;
}
inline bool parse_flow_reply(const char* buf, size_t n, FlowReply& out) {
  if (n != sizeof(FlowReply)) return false;
  std::memcpy(&out, buf, sizeof out);
  return out.magic == kFlowReplyMagic;
}

}  // namespace rp::wire
