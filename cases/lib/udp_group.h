// A UDP reuseport group on loopback with one member the case does not read (the "victim"),
// shared by udp_close_with_queued and udp_unread_member.
//
// Which member a flow's datagrams reach is the group's hash of the 4-tuple
// (reuseport_select_sock(): reciprocal_scale(hash, num_socks)), fixed while the group does
// not change. So the case learns it first: one probe datagram per source port, read by the
// case from every member (udp_socket_per_datagram). Then it sends one datagram per port
// again and reads only the members other than the victim.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "harness/fd.h"
#include "harness/socket.h"

namespace rp::cases {

struct UdpGroup {
  Endpoint addr;
  std::vector<UniqueFd> members;  // members[victim] is the one never read after the probe
  size_t victim = 0;
  std::vector<uint16_t> ports;    // one client source port per flow
  std::vector<int32_t> member_of; // per port, the member its probe datagram reached
};

// Opens `k` SO_REUSEPORT UDP sockets on loopback:`port` of `family`, the victim's receive
// buffer set to `victim_rcvbuf` (0: the default), and learns the member of each of `flows`
// source ports from `first_port` on. Throws when a probe datagram is lost or lands twice.
UdpGroup open_udp_group(Family family, uint16_t port, int k, int victim_rcvbuf, uint16_t first_port, int flows);

struct UdpRound {
  uint64_t sent = 0;
  uint64_t to_victim = 0;        // sent from ports whose probe reached the victim
  uint64_t read_by_others = 0;   // read from the other members, each index once
  uint64_t misdelivered = 0;     // read by a member the probe did not name, or twice, or unknown
  uint64_t others_missing = 0;   // others' datagrams not read within the wait
};

// Sends one datagram (its index, offset by `tag` so rounds are told apart) from each port:
// the victim's flows first, then the others', from one CPU. On loopback a datagram is
// queued on the sending CPU's backlog and processed in order, so once the others' last
// datagram is read, every victim datagram has been queued or dropped. Then reads the
// members other than the victim (skipping closed ones, fd -1) until all the others'
// datagrams arrived or 2 s x the run's timeout scale passed. With `victim_closed` every
// datagram is expected at the remaining members, and a port whose probe reached the victim
// counts wherever it lands.
UdpRound udp_round(UdpGroup& g, uint32_t tag, bool victim_closed);

// Reads every datagram queued on `fd` now (MSG_DONTWAIT) and returns how many.
uint64_t drain_udp(int fd);

// SO_MEMINFO's SK_MEMINFO_RMEM_ALLOC: bytes charged to the receive queue.
uint64_t udp_rmem_alloc(int fd);

// The namespace's UDP counters of `family` (probes/netstat.h: read_udp_mib).
// Throws when the file cannot be read or a counter the case names is absent.
struct UdpCounters {
  uint64_t rcvbuf_errors = 0, in_errors = 0, no_ports = 0;
};
UdpCounters read_udp_counters(Family family);

}  // namespace rp::cases
