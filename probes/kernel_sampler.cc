#include "probes/kernel_sampler.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <stdexcept>

#include "probes/counters.h"
#include "probes/netstat.h"
#ifdef RP_HAVE_BPF
#include "probes/reuseport_probe.h"
#endif

namespace rp::probes {

namespace ns = rp::probes::netstat;
using nlohmann::json;

struct KernelSampler::Impl {
  Options options;
  std::string probe_error, filter, netstat_error;
  // RP_ENABLE_BPF=OFF, not requested, or a kernel without bpf() or BTF: not our failure
  bool probe_absent_by_build = false;
  std::optional<ns::Counters> netstat_base;
#ifdef RP_HAVE_BPF
  std::optional<ReuseportProbe> probe;
  ProbeReading probe_base;
#endif
};

std::optional<std::uint64_t> KernelCounts::value(std::string_view key) const {
  auto it = values.find(key);
  if (it == values.end()) throw std::out_of_range("no kernel counter '" + std::string(key) + "' (probes/counters.cc)");
  return it->second;
}

std::optional<std::uint64_t> KernelCounts::orphans_of(std::uint64_t cookie) const {
  if (!listener_orphans) return std::nullopt;
  auto it = listener_orphans->find(cookie);
  return it == listener_orphans->end() ? 0 : it->second;
}

json KernelCounts::to_json(bool with_provenance) const {
  json j = json::object();
  for (const auto& [k, v] : values) j[k] = v ? json(*v) : json(nullptr);
  if (with_provenance) {
    j["kernel_sources"] = json(sources);
    j["kernel_not_observable"] = json(not_observable);
    j["kernel_errors"] = json(errors);
  }
  return j;
}

namespace {

// What the probe needs of the kernel: the bpf() syscall (ENOSYS for an unknown command
// only without it) and the kernel's BTF, which it reads its capabilities from and is
// relocated with. Empty when both are there.
[[maybe_unused]] std::string kernel_lacks_probe_support() {
  errno = 0;
  if (syscall(__NR_bpf, -1, nullptr, 0) != 0 && errno == ENOSYS)
    return "this kernel has no bpf() syscall (CONFIG_BPF_SYSCALL)";
  if (access("/sys/kernel/btf/vmlinux", F_OK) != 0 && errno == ENOENT && access("/sys/kernel", F_OK) == 0)
    return "this kernel has no BTF (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF)";
  return {};
}

}  // namespace

KernelSampler::KernelSampler(const Options& options) : impl_(std::make_unique<Impl>()) {
  impl_->options = options;
#ifdef RP_HAVE_BPF
  if (options.probe) {
    try {
      // A test hook: the path a probe that fails to load takes (its counts become errors).
      if (const char* v = std::getenv("RP_TEST_PROBE_FAIL"); v && *v && std::string(v) != "0")
        throw ProbeError("load reuseport_probe (suppressed by RP_TEST_PROBE_FAIL)", EPERM);
      ProbeOptions po;
      po.port = options.port;
      // No row of the counter table is per listener: sk_data_ready, which runs on every
      // data segment of the machine, is left out (group attaches it for the shares).
      po.per_listener = false;
      try {
        if (options.filter_by_inode) throw ProbeError("SO_NETNS_COOKIE not used (filter_by_inode)", ENOPROTOOPT);
        po.netns_cookie = current_netns_cookie();
        impl_->filter = "netns cookie " + std::to_string(po.netns_cookie);
      } catch (const ProbeError&) {
        // Before 5.14 there is no SO_NETNS_COOKIE: the namespace's inode identifies it.
        po.netns_ino = current_netns_ino();
        impl_->filter = "netns inode " + std::to_string(po.netns_ino) + " (no SO_NETNS_COOKIE before 5.14)";
      }
      impl_->probe.emplace(po);
    } catch (const std::exception& e) {
      impl_->probe_error = e.what();
      impl_->filter.clear();
      // A kernel that cannot run the probe at all does not offer its counts: they are not
      // observable there (the cases SKIP, naming the option), not a failure of ours.
      if (auto lacks = kernel_lacks_probe_support(); !lacks.empty()) {
        impl_->probe_error = lacks + " (" + e.what() + ")";
        impl_->probe_absent_by_build = true;
      }
    }
  } else {
    impl_->probe_error = "the probe was not attached by this sampler";
    impl_->probe_absent_by_build = true;
  }
#else
  impl_->probe_error = "built without BPF (RP_ENABLE_BPF=OFF)";
  impl_->probe_absent_by_build = true;
#endif
  baseline();
}

KernelSampler::~KernelSampler() = default;

const std::string& KernelSampler::probe_error() const { return impl_->probe_error; }
const std::string& KernelSampler::namespace_filter() const { return impl_->filter; }
std::string KernelSampler::lifecycle_events() const {
#ifdef RP_HAVE_BPF
  if (impl_->probe) return impl_->probe->capabilities().lifecycle_events;
#endif
  return {};
}

void KernelSampler::baseline() {
#ifdef RP_HAVE_BPF
  if (impl_->probe) impl_->probe_base = impl_->probe->read();
#endif
  try {
    impl_->netstat_base = ns::read_current();
    impl_->netstat_error.clear();
  } catch (const std::exception& e) {
    impl_->netstat_base.reset();
    impl_->netstat_error = e.what();
  }
}

KernelCounts KernelSampler::sample() const {
  const Impl& im = *impl_;
  KernelCounts out;
  auto put = [&](const CounterDef& row, std::optional<std::uint64_t> v, const std::string& where) {
    out.values[row.key] = v;
    (v ? out.sources : out.not_observable)[row.key] = where;
  };
  auto failed = [&](const CounterDef& row, const std::string& why) {
    out.values[row.key] = std::nullopt;
    out.errors[row.key] = why;
  };
#ifdef RP_HAVE_BPF
  std::optional<ProbeReading> r;
  if (im.probe) r = delta(im.probe->read(), im.probe_base);
  if (r) {
    out.listener_orphans = r->listener_orphans;
    out.listener_orphans_source = r->listener_orphans_source;
  }
#endif
  if (!out.listener_orphans && out.listener_orphans_source.empty()) {
    out.listener_orphans_source = im.probe_error;
    out.listener_orphans_error = !im.probe_absent_by_build;
  }
  std::optional<ns::Deltas> d;
  std::string netstat_error = im.netstat_error;
  if (im.netstat_base) {
    try {
      d = ns::delta(*im.netstat_base, ns::read_current());
    } catch (const std::exception& e) {
      netstat_error = e.what();
    }
  }
  const std::string shared =
      im.options.shared_namespace ? " (a shared namespace: includes every other connection in it)" : "";
  for (const auto& row : counter_table()) {
    switch (row.from) {
      case CounterDef::From::Probe:
      case CounterDef::From::Drop: {
#ifdef RP_HAVE_BPF
        if (r && row.from == CounterDef::From::Probe) {
          const Counter& c = r->counter(row.key);
          put(row, c.value, c.source);
          break;
        }
        if (r) {
          auto v = r->drops(row.name);
          if (!v && r->drops_by_reason)
            put(row, v, std::string("this kernel has no drop reason ") + row.name);
          else
            put(row, v, r->drops_source + row.source);
          break;
        }
#endif
        if (im.probe_absent_by_build)
          put(row, std::nullopt, im.probe_error);
        else
          failed(row, "the reuseport probe did not attach: " + im.probe_error);
        break;
      }
      case CounterDef::From::TcpExt: {
        if (!d) {
          failed(row, netstat_error);
          break;
        }
        auto v = ns::get(*d, "TcpExt", row.name);
        if (v)
          put(row, static_cast<std::uint64_t>(*v < 0 ? 0 : *v), std::string("/proc/net/netstat TcpExt.") + row.name + shared);
        else
          put(row, std::nullopt, std::string("TcpExt.") + row.name + " absent on this kernel");
        break;
      }
      case CounterDef::From::Sum:
        break;  // below, once its parts are known
    }
  }
  for (const auto& row : counter_table()) {
    if (row.from != CounterDef::From::Sum) continue;
    auto a = out.values.at(row.name), b = out.values.at(row.name2);
    if (a && b)
      put(row, *a + *b, std::string(row.name) + " + " + row.name2);
    else if (out.errors.count(row.name) || out.errors.count(row.name2))
      failed(row, std::string("needs ") + row.name + " and " + row.name2 + ", not read");
    else
      put(row, std::nullopt, std::string("needs ") + row.name + " and " + row.name2);
  }
  return out;
}

}  // namespace rp::probes
