// Flows by their source port: which socket of a reuseport group takes each one, read by the
// case itself from its own sockets, which never answer: a TCP flow costs one handshake (no
// request, no answer, no TIME_WAIT), a UDP flow one datagram. In the TCG guests this is
// several times cheaper than a served request per flow.
#pragma once

#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

#include "harness/fd.h"
#include "harness/socket.h"

namespace rp::cases {

struct TcpFlowTally {
  uint64_t attempts = 0;   // connect() calls
  uint64_t connected = 0;  // handshakes the clients saw complete
  uint64_t accepted = 0;   // children the listeners handed out from the ports asked for
  uint64_t strangers = 0;  // children from any other port, or a port's second (none expected)
};

// Which of `listeners` (an index; closed ones, fd -1, are skipped) took the connection from
// each source port, -1 where none did within 5 s x the run's timeout scale. Clients connect
// in batches of 500, each bound to its port on the loopback address of `to`'s family; the
// caller's listeners are never served: this accepts on all of them and reads each peer's
// port. Both ends then close with RST (SO_LINGER 0), so no TIME_WAIT holds a 4-tuple and a
// port can connect again at once. Adds to `t`.
std::vector<int32_t> tcp_listener_per_port(const std::vector<UniqueFd>& listeners, const Endpoint& to,
                                           const std::vector<uint16_t>& ports, TcpFlowTally& t);

struct UdpFlowTally {
  uint64_t sent = 0;       // datagrams sent
  uint64_t received = 0;   // datagrams the sockets got, each from the port it was sent from
  uint64_t strangers = 0;  // datagrams from any other port, or a datagram's second copy
};

// Which of `sockets` (an index; closed ones skipped) received the datagram sent from each
// entry of `ports` (a port may repeat: one client socket per distinct port of a batch sends
// them all, in order), -1 where none arrived within 2 s x the run's timeout scale. The
// datagram carries its index, so a repeated port's datagrams are told apart. Batches of 100,
// well inside a socket's default receive buffer even if one socket gets all of them.
std::vector<int32_t> udp_socket_per_datagram(const std::vector<UniqueFd>& sockets, const Endpoint& to,
                                             const std::vector<uint16_t>& ports, UdpFlowTally& t);

// attempts (sent), received, lost (sent - received), received_from_elsewhere, and
// ledger_mismatches (a datagram from a port not sent from, or received twice).
nlohmann::json udp_flow_counts(const UdpFlowTally& t);

// attempts, connected, accepted, unaccepted (attempts - accepted), accepted_from_elsewhere,
// and ledger_mismatches: both sides of every flow, each client that connected accepted once.
nlohmann::json tcp_flow_counts(const TcpFlowTally& t);

// A reuseport group of the case's own sockets on `to` (TCP listeners or UDP sockets, which
// never answer), and which of them takes each flow: the two functions above, by protocol,
// with their tallies kept across calls.
class OwnGroup {
 public:
  OwnGroup(Proto proto, Endpoint to, int sockets, int backlog = 1024);
  // One more socket, joining the group; its index.
  size_t add();
  // Closes socket i; its index stays (empty), so flows keep naming the others as before.
  void close(size_t i);
  // The socket index per flow (-1: none took it): TCP handshakes or UDP datagrams.
  std::vector<int32_t> flows(const std::vector<uint16_t>& ports);
  // tcp_flow_counts or udp_flow_counts of every flow so far.
  nlohmann::json counts() const;

 private:
  Proto proto_;
  Endpoint to_;
  int backlog_;
  std::vector<UniqueFd> sockets_;
  TcpFlowTally tcp_;
  UdpFlowTally udp_;
};

}  // namespace rp::cases
