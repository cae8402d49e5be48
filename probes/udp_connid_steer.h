// RAII loader for bpf/udp_connid_steer.bpf.c: an sk_reuseport program that steers each UDP
// datagram by the connection id it carries (harness/wire.h FlowRequest.flow) to the member
// owning that connection, giving ids seen for the first time to the current generation.
// Attached by fd with SO_ATTACH_REUSEPORT_EBPF; the group holds it until its last socket
// closes and this object is destroyed.
//
//   rp::probes::UdpConnIdSteer steer;
//   steer.set_member(0, fd0); steer.set_member(1, fd1);
//   steer.set_generation(0, 2);   // new ids to slots 0 and 1
//   steer.attach(fd0);
//   ... generation 2 joins: set_member(2, fd2) ...; set_generation(2, 2) ...
#pragma once

#include <cstdint>
#include <memory>

namespace rp::probes {

struct ConnIdCounts {
  std::uint64_t runs = 0, no_id = 0, assigned = 0, selected = 0, empty_slot = 0, dropped = 0;
};

class UdpConnIdSteer {
 public:
  // Throws rp::SysError naming the step (open, load with the verifier's errno).
  UdpConnIdSteer();
  ~UdpConnIdSteer();
  UdpConnIdSteer(const UdpConnIdSteer&) = delete;
  UdpConnIdSteer& operator=(const UdpConnIdSteer&) = delete;

  // setsockopt(SO_ATTACH_REUSEPORT_EBPF) on a socket of the group.
  void attach(int sock_fd) const;
  // members[slot] = the socket (a bound reuseport UDP socket).
  void set_member(std::uint32_t slot, int sock_fd) const;
  // New connection ids go to slots first .. first + count - 1 (id % count).
  void set_generation(std::uint32_t first, std::uint32_t count);
  // The owner's slot is empty: SK_DROP (true) or SK_PASS without a selection (the hash).
  void set_missing_drop(bool drop);
  // The slot the program gave `id`, or -1 when it never saw it.
  std::int32_t owner_of(std::uint32_t id) const;
  ConnIdCounts counts() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace rp::probes
