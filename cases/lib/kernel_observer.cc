#include "cases/lib/kernel_observer.h"

#include <optional>
#include <string>

#include "probes/netstat.h"
#ifdef RP_HAVE_BPF
#include "probes/reuseport_probe.h"
#endif

namespace rp::cases {

using nlohmann::json;
namespace ns = rp::probes::netstat;

struct KernelObserver::Impl {
  std::optional<ns::Counters> netstat_before;
  std::string netstat_error;
#ifdef RP_HAVE_BPF
  std::optional<rp::probes::ReuseportProbe> probe;
#endif
  std::string probe_error;
};

KernelObserver::KernelObserver(uint16_t port) : impl_(std::make_unique<Impl>()) {
  try {
    impl_->netstat_before = ns::read_current();
  } catch (const std::exception& e) {
    impl_->netstat_error = e.what();
  }
#ifdef RP_HAVE_BPF
  try {
    rp::probes::ProbeOptions o;
    o.port = port;
    // The case runs in a namespace of its own: filter on it, by cookie where the kernel
    // tells it (5.14+), else by the namespace's inode.
    try {
      o.netns_cookie = rp::probes::current_netns_cookie();
    } catch (const rp::probes::ProbeError&) {
      o.netns_ino = rp::probes::current_netns_ino();
    }
    impl_->probe.emplace(o);
  } catch (const std::exception& e) {
    impl_->probe_error = e.what();
  }
#else
  (void)port;
  impl_->probe_error = "built without BPF (RP_ENABLE_BPF=OFF)";
#endif
}

KernelObserver::~KernelObserver() = default;

json KernelObserver::counts() const {
  json j;
  json why = json::object();
  json sources = json::object();
  const char* probe_keys[] = {"kernel_listener_closes",   "kernel_orphaned_children", "kernel_orphan_resets",
                              "kernel_other_resets_sent", "kernel_resets_received",   "kernel_listen_overflow_drops"};
  for (const char* k : probe_keys) j[k] = nullptr;
#ifdef RP_HAVE_BPF
  if (impl_->probe) {
    auto r = impl_->probe->read();
    auto put = [&](const char* key, const rp::probes::Counter& c) {
      j[key] = c.value ? json(*c.value) : json(nullptr);
      (c.value ? sources : why)[key] = c.source;
    };
    put("kernel_listener_closes", r.listener_closes);
    put("kernel_orphaned_children", r.orphaned_children);
    put("kernel_orphan_resets", r.orphan_resets);
    put("kernel_other_resets_sent", r.other_resets_sent);
    put("kernel_resets_received", r.resets_received);
    // QUEUE_PURGE is not counted: on 6.18 every ordinary socket destruction purges too.
    if (auto d = r.drops("TCP_LISTEN_OVERFLOW")) {
      j["kernel_listen_overflow_drops"] = *d;
      sources["kernel_listen_overflow_drops"] = r.drops_source + " (ACKs only: SYNs dropped at a full queue are consumed, not freed)";
    } else {
      why["kernel_listen_overflow_drops"] = r.drops_source;
    }
  }
#endif
  if (!impl_->probe_error.empty())
    for (const char* k : probe_keys) why[k] = impl_->probe_error;

  const std::pair<const char*, const char*> netstat_keys[] = {
      {"netstat_listen_overflows", "ListenOverflows"},
      {"netstat_migrate_req_success", "TCPMigrateReqSuccess"},
      {"netstat_migrate_req_failure", "TCPMigrateReqFailure"}};
  std::optional<ns::Deltas> d;
  std::string netstat_error = impl_->netstat_error;
  if (impl_->netstat_before) {
    try {
      d = ns::delta(*impl_->netstat_before, ns::read_current());
    } catch (const std::exception& e) {
      netstat_error = e.what();
    }
  }
  for (const auto& [key, name] : netstat_keys) {
    auto v = d ? ns::get(*d, "TcpExt", name) : std::nullopt;
    j[key] = v ? json(*v) : json(nullptr);
    if (v)
      sources[key] = std::string("/proc/net/netstat TcpExt.") + name;
    else
      why[key] = d ? std::string("TcpExt.") + name + " absent on this kernel" : netstat_error;
  }
  // Every RST the port sent: what the clients' resets must be within.
  j["kernel_resets_sent"] = j["kernel_orphan_resets"].is_null() || j["kernel_other_resets_sent"].is_null()
                                ? json()
                                : json(j["kernel_orphan_resets"].get<uint64_t>() +
                                       j["kernel_other_resets_sent"].get<uint64_t>());
  j["kernel_sources"] = sources;
  j["kernel_not_observable"] = why;
  return j;
}

}  // namespace rp::cases
