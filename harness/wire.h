// The tiny protocol between the load generator and the listeners: a fixed request, and a
// reply that names the listener that served it, so the ledger knows who served whom.
#pragma once

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

}  // namespace rp::wire
