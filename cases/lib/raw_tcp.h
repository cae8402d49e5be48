// A TCP client played by hand, for cases that must hold a handshake half done: the raw
// socket writes the client's SYN and ACK itself and reads every TCP segment the namespace
// receives (a raw IPPROTO_TCP socket gets a copy of each), so the case decides when, and
// whether, the final ACK is sent.
//
// The kernel would answer the server's SYN-ACK itself, with a RST that kills the request,
// since no socket of its own owns the client's address and port. So each client port
// belongs to an absorber(): a TCP socket listening on that loopback port with a socket
// filter that drops everything. The lookup finds it, tcp_filter() drops the segment before
// any TCP processing, and nothing is sent back; the raw socket still sees the segment.
#pragma once

#include <netinet/tcp.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "harness/fd.h"
#include "harness/socket.h"

namespace rp::cases {

// Entries of /proc/thread-self/net/tcp[6] with local port `port` in `state` (hex, "03" is
// SYN_RECV). Request sockets are listed there, one line each.
uint64_t proc_tcp_count(Family f, uint16_t port, const char* state);

class RawClient {
 public:
  explicit RawClient(Family f);

  // One segment from loopback:sport to loopback:dport, without options, carrying `data`.
  void send(uint16_t sport, uint16_t dport, uint32_t seq, uint32_t ack, uint8_t flags, std::string_view data = {});
  // The next TCP header received, if one is queued. IPv4 raw sockets deliver the IP header
  // too, IPv6 ones only the payload.
  std::optional<tcphdr> receive();
  // Waits up to `ms` for a segment to be queued (poll), without reading it.
  void wait(int ms);

  int fd() const { return fd_.get(); }

 private:
  Family family_;
  UniqueFd fd_;
  sockaddr_storage local_{}, remote_{};
  socklen_t len_ = 0;
};

// A listener on the client's port that silently drops whatever reaches it.
UniqueFd absorber(Family f, uint16_t port);

// N half-open handshakes: the client ports, their absorbers and what the server answered.
struct RawRequests {
  uint16_t first_port = 0;  // client i sends from first_port + i
  uint16_t server_port = 0;
  uint32_t client_isn = 0;  // client i's ISN is client_isn + i
  uint32_t syn_data_len = 0;  // bytes each SYN carried (TCP Fast Open)
  std::vector<UniqueFd> absorbers;
  std::vector<std::optional<uint32_t>> server_isn;  // from the SYN-ACK; nullopt: none came

  int size() const { return static_cast<int>(server_isn.size()); }
  // The sequence number after client i's SYN (and its data): what the SYN-ACK acknowledges.
  uint32_t client_next(int i) const { return client_isn + static_cast<uint32_t>(i) + 1 + syn_data_len; }
  int answered() const;
  // i if `th` is a segment from the server to client i, else -1.
  int index_of(const tcphdr& th) const;
};

// Opens n absorbers on first_port.., sends a SYN from each to loopback:server_port and
// reads SYN-ACKs (each must acknowledge its SYN) until all n came or `wait` passed. A
// missing answer is no error here: some cases count SYNs the server dropped. With
// `syn_data`, each SYN carries it (a Fast Open SYN; the server must accept data without a
// cookie) and a SYN-ACK counts only if it acknowledges the data too.
RawRequests open_raw_requests(RawClient& raw, Family f, uint16_t first_port, int n, uint16_t server_port,
                              uint32_t client_isn, std::chrono::milliseconds wait, std::string_view syn_data = {});

// Sends the final ACK of every answered request.
void send_final_acks(RawClient& raw, const RawRequests& r);

}  // namespace rp::cases
