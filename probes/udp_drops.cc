#include "probes/udp_drops.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include <algorithm>
#include <cstring>
#include <cstdio>
#include <map>
#include <tuple>

#include "probes/kernel_facts.h"
#include "probes/reuseport_probe.h"
#include "probes/skel_util.h"

#include <linux/types.h>

#include "bpf/udp_drops.h"
#include "udp_drops.skel.h"

namespace rp::probes {

struct UdpDrops::Impl {
  udp_drops* skel = nullptr;
  bpf_link* link = nullptr;
  bpf_link* queued = nullptr;
  bpf_link* destruct_enter = nullptr;
  bpf_link* destruct_exit = nullptr;
  std::string queued_why, how;
  std::vector<std::pair<std::uint64_t, std::string>> symbols;
  std::map<std::uint32_t, std::string> reasons;
  std::string function_of(std::uint64_t addr) const {
    auto it = std::upper_bound(symbols.begin(), symbols.end(), std::make_pair(addr, std::string("\xff")));
    if (it != symbols.begin()) return std::prev(it)->second;
    char hex[32];
    std::snprintf(hex, sizeof hex, "0x%llx", static_cast<unsigned long long>(addr));
    return hex;
  }
  ~Impl() {
    bpf_link__destroy(queued);
    bpf_link__destroy(destruct_exit);
    bpf_link__destroy(destruct_enter);
    bpf_link__destroy(link);
    udp_drops__destroy(skel);
  }
};

namespace {

// The function both UDP families' destructors go through: udp_destruct_common() from 6.2
// on ("udp: Call inet6_destroy_sock() in IPv6 sk->sk_destruct()"), udp_destruct_sock()
// before. "" when the kernel's BTF has neither (fentry needs it).
std::string udp_destructor() {
  btf* b = btf__load_vmlinux_btf();
  if (!b) return "";
  std::string out;
  for (const char* f : {"udp_destruct_common", "udp_destruct_sock"})
    if (btf__find_by_name_kind(b, f, BTF_KIND_FUNC) > 0) {
      out = f;
      break;
    }
  btf__free(b);
  return out;
}

// How a purged datagram's namespace is told: the queued skbs remembered (sk_data_ready,
// 6.7+), the destructor traced (fentry/fexit, where the kernel has fentry), or neither.
enum class Tell { Queued, Destructor, Neither };

// open -> rodata -> load; a libbpf object cannot be loaded twice, so each way of telling
// gets an object of its own, the first that loads wins.
udp_drops* open_and_load(const UdpDrops::Options& o, Tell tell, const std::string& destructor, int& err) {
  udp_drops* s = udp_drops__open();
  if (!s) {
    err = errno;
    return nullptr;
  }
  s->rodata->target_port = o.port;
  s->rodata->target_netns = o.netns_cookie;
  s->rodata->target_netns_ino = o.netns_ino;
  bpf_program__set_autoload(s->progs.rp_udp_queued, tell == Tell::Queued);
  bpf_program__set_autoload(s->progs.rp_udp_destruct_enter, tell == Tell::Destructor);
  bpf_program__set_autoload(s->progs.rp_udp_destruct_exit, tell == Tell::Destructor);
  if (tell == Tell::Destructor) {
    bpf_program__set_attach_target(s->progs.rp_udp_destruct_enter, 0, destructor.c_str());
    bpf_program__set_attach_target(s->progs.rp_udp_destruct_exit, 0, destructor.c_str());
  }
  if (int rc = udp_drops__load(s)) {
    err = libbpf_errno(rc);
    udp_drops__destroy(s);
    return nullptr;
  }
  return s;
}
}  // namespace

UdpDrops::UdpDrops(const Options& o) : impl_(std::make_unique<Impl>()) {
  int err = 0;
  auto& m = *impl_;
  m.skel = open_and_load(o, Tell::Queued, "", err);
  if (m.skel) {
    m.queued = bpf_program__attach(m.skel->progs.rp_udp_queued);
    if (!m.queued) throw ProbeError("bpf: attach tp_btf/sk_data_ready", errno);
    m.how = "the skbs queued on the port's sockets (tp_btf/sk_data_ready)";
  } else {
    std::string why = std::string("tp_btf/sk_data_ready did not load (") + std::strerror(err) + "; the tracepoint is 6.7+)";
    const std::string destructor = udp_destructor();
    if (destructor.empty()) {
      why += ", and the kernel's BTF has no udp_destruct_common or udp_destruct_sock to trace";
    } else {
      m.skel = open_and_load(o, Tell::Destructor, destructor, err);
      if (m.skel) {
        m.destruct_enter = bpf_program__attach(m.skel->progs.rp_udp_destruct_enter);
        if (!m.destruct_enter) throw ProbeError("bpf: attach fentry/" + destructor, errno);
        m.destruct_exit = bpf_program__attach(m.skel->progs.rp_udp_destruct_exit);
        if (!m.destruct_exit) throw ProbeError("bpf: attach fexit/" + destructor, errno);
        m.how = "the destructor of the port's sockets (fentry/fexit " + destructor + ")";
      } else {
        why += ", and fentry/fexit " + destructor + " did not load (" + std::strerror(err) + ")";
      }
    }
    if (!m.skel) {
      m.queued_why = why;
      m.skel = open_and_load(o, Tell::Neither, "", err);
      if (!m.skel) throw ProbeError("bpf: load udp_drops (tp_btf/kfree_skb)", err);
    }
  }
  m.link = bpf_program__attach(m.skel->progs.rp_udp_kfree_skb);
  if (!m.link) throw ProbeError("bpf: attach tp_btf/kfree_skb", errno);
  // Read once, at load, so that read() stays cheap enough for a 50 ms sampling loop.
  m.symbols = kernel::text_symbols();
  btf* vmlinux = btf__load_vmlinux_btf();
  m.reasons = kernel::drop_reason_names(vmlinux);
  btf__free(vmlinux);
}

UdpDrops::~UdpDrops() = default;

UdpDrops::Options UdpDrops::for_current_netns(std::uint16_t port) {
  Options o;
  o.port = port;
  try {
    o.netns_cookie = current_netns_cookie();
  } catch (const ProbeError&) {
    o.netns_ino = current_netns_ino();  // before 5.14; throws ProbeError when it cannot stat
  }
  return o;
}

std::vector<UdpDrop> UdpDrops::read() const {
  const int fd = bpf_map__fd(impl_->skel->maps.rp_udp_drops);
  std::vector<std::pair<rp_udp_drop_key, std::uint64_t>> raw;
  rp_udp_drop_key k{}, next{};
  rp_udp_drop_key* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    std::uint64_t v = 0;
    if (bpf_map_lookup_elem(fd, &next, &v) == 0) raw.emplace_back(next, v);
    k = next;
    prev = &k;
  }
  const auto& reasons = impl_->reasons;
  std::map<std::tuple<bool, std::string, std::string>, std::uint64_t> merged;
  for (const auto& [key, v] : raw) {
    std::string reason;
    if (key.reason || !reasons.empty()) {
      auto it = reasons.find(key.reason);
      reason = it != reasons.end() ? it->second : "reason " + std::to_string(key.reason);
    }
    merged[{key.pad == 2, impl_->function_of(key.location), reason}] += v;
  }
  std::vector<UdpDrop> out;
  for (const auto& [k, v] : merged) out.push_back({std::get<1>(k), std::get<2>(k), v, std::get<0>(k)});
  return out;
}

const std::string& UdpDrops::queued_not_tracked() const { return impl_->queued_why; }
const std::string& UdpDrops::purges_told_by() const { return impl_->how; }
std::uint64_t UdpDrops::netns_unknown() const { return load(impl_->skel->bss->netns_unknown); }
std::uint64_t UdpDrops::overflow() const { return load(impl_->skel->bss->overflow); }

}  // namespace rp::probes
