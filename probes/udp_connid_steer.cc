#include "probes/udp_connid_steer.h"
#include "probes/skel_util.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/socket.h>

#include <cerrno>
#include <stdexcept>
#include <string>

#include "bpf/udp_connid_steer.h"
#include "harness/error.h"
#include "udp_connid_steer.skel.h"

namespace rp::probes {

struct UdpConnIdSteer::Impl {
  udp_connid_steer* skel = nullptr;
  ~Impl() { udp_connid_steer__destroy(skel); }
};

UdpConnIdSteer::UdpConnIdSteer() : impl_(std::make_unique<Impl>()) {
  impl_->skel = udp_connid_steer__open();
  if (!impl_->skel) throw_sys("bpf: open udp_connid_steer", errno);
  if (int err = udp_connid_steer__load(impl_->skel)) throw SysError("bpf: load udp_connid_steer", libbpf_errno(err));
}

UdpConnIdSteer::~UdpConnIdSteer() = default;

void UdpConnIdSteer::attach(int sock_fd) const {
  int fd = bpf_program__fd(impl_->skel->progs.rp_connid_select);
  check_sys(setsockopt(sock_fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &fd, sizeof fd),
            "setsockopt SO_ATTACH_REUSEPORT_EBPF");
}

void UdpConnIdSteer::set_member(std::uint32_t slot, int sock_fd) const {
  if (slot >= RP_CONNID_MAX_SOCKS)
    throw std::out_of_range("udp_connid_steer: slot " + std::to_string(slot) + " >= " + std::to_string(RP_CONNID_MAX_SOCKS));
  std::uint64_t v = static_cast<std::uint64_t>(sock_fd);
  int rc = bpf_map_update_elem(bpf_map__fd(impl_->skel->maps.members), &slot, &v, BPF_ANY);
  if (rc != 0) throw_sys("bpf: REUSEPORT_SOCKARRAY update slot " + std::to_string(slot), libbpf_errno(rc));
}

void UdpConnIdSteer::set_generation(std::uint32_t first, std::uint32_t count) {
  if (count == 0) throw std::invalid_argument("udp_connid_steer: a generation needs at least one slot");
  // count first: a datagram between the two stores sees first + id % count inside one of
  // the generations' slots, never outside both.
  store(impl_->skel->bss->new_count, static_cast<__u32>(count));
  store(impl_->skel->bss->new_first, static_cast<__u32>(first));
}

void UdpConnIdSteer::set_missing_drop(bool drop) { store(impl_->skel->bss->missing_drop, static_cast<__u32>(drop)); }

std::int32_t UdpConnIdSteer::owner_of(std::uint32_t id) const {
  __u32 slot = 0;
  if (bpf_map_lookup_elem(bpf_map__fd(impl_->skel->maps.owner), &id, &slot) != 0) return -1;
  return static_cast<std::int32_t>(slot);
}

ConnIdCounts UdpConnIdSteer::counts() const {
  auto* b = impl_->skel->bss;
  ConnIdCounts c;
  c.runs = load(b->runs);
  c.no_id = load(b->no_id);
  c.assigned = load(b->assigned);
  c.selected = load(b->selected);
  c.empty_slot = load(b->empty_slot);
  c.dropped = load(b->dropped);
  return c;
}

}  // namespace rp::probes
