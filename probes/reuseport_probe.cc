#include "probes/reuseport_probe.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "bpf/reuseport_probe.h"
#include "harness/fd.h"
#include "probes/counters.h"
#include "probes/kernel_facts.h"
#include "reuseport_probe.skel.h"

// Both arrived in Linux 5.14 / 2.6.39 uapi headers; the values are the asm-generic ones
// (x86, arm64). Older libc headers may lack the first.
#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif
#ifndef SO_COOKIE
#define SO_COOKIE 57
#endif

namespace rp::probes {
namespace {

constexpr const char* kObjectName = "reuseport_probe";
constexpr const char* kProgDataReady = "rp_data_ready";
constexpr const char* kProgSetStateBtf = "rp_set_state_btf";
constexpr const char* kProgMigrate = "rp_migrate_exit";
constexpr const char* kProgKfreeSkb = "rp_kfree_skb";
constexpr const char* kProgSockRelease = "rp_sock_release";
constexpr const char* kProgErrorReport = "rp_error_report";

std::string describe(const std::string& operation, int err) {
  return operation + ": " + std::strerror(err);
}

// libbpf's print callback is process-wide. While a probe is being set up, its messages are
// collected (they name the failing program and carry the verifier log) instead of going
// to stderr; RP_BPF_VERBOSE=1 shows them as well.
thread_local std::string* g_libbpf_log = nullptr;

int collect_libbpf_print(enum libbpf_print_level level, const char* fmt, va_list args) {
  static const bool verbose = [] {
    const char* v = std::getenv("RP_BPF_VERBOSE");
    return v != nullptr && *v != '\0' && *v != '0';
  }();
  if (verbose) {
    va_list copy;
    va_copy(copy, args);
    std::vfprintf(stderr, fmt, copy);
    va_end(copy);
  }
  if (g_libbpf_log != nullptr && level != LIBBPF_DEBUG) {
    char buf[1024];
    std::vsnprintf(buf, sizeof(buf), fmt, args);
    g_libbpf_log->append(buf);
  }
  return 0;
}

class LibbpfLogScope {
 public:
  explicit LibbpfLogScope(std::string* log) : previous_(libbpf_set_print(collect_libbpf_print)) {
    g_libbpf_log = log;
  }
  ~LibbpfLogScope() {
    g_libbpf_log = nullptr;
    libbpf_set_print(previous_);
  }
  LibbpfLogScope(const LibbpfLogScope&) = delete;
  LibbpfLogScope& operator=(const LibbpfLogScope&) = delete;

 private:
  libbpf_print_fn_t previous_;
};

struct BtfDeleter {
  void operator()(struct btf* b) const { btf__free(b); }
};
using BtfPtr = std::unique_ptr<struct btf, BtfDeleter>;

bool btf_struct_has_member(const struct btf* btf, const char* type, const char* member) {
  const __s32 id = btf__find_by_name_kind(btf, type, BTF_KIND_STRUCT);
  if (id < 0) return false;
  const struct btf_type* t = btf__type_by_id(btf, id);
  const struct btf_member* m = btf_members(t);
  for (unsigned short i = 0; i < btf_vlen(t); ++i, ++m) {
    const char* name = btf__name_by_offset(btf, m->name_off);
    if (name != nullptr && std::strcmp(name, member) == 0) return true;
  }
  return false;
}

bool btf_has(const struct btf* btf, const char* name, __u32 kind) {
  return btf__find_by_name_kind(btf, name, kind) >= 0;
}

// The reason names indexed by value, as the counters' map is ("reason_<n>" where the
// running kernel's BTF has no name for n).
std::vector<std::string> drop_reason_names(const struct btf* btf) {
  std::vector<std::string> names(RP_MAX_DROP_REASONS);
  for (const auto& [value, name] : kernel::drop_reason_names(btf))
    if (value < RP_MAX_DROP_REASONS) names[value] = name;
  for (std::size_t i = 0; i < names.size(); ++i)
    if (names[i].empty()) names[i] = "reason_" + std::to_string(i);
  return names;
}

// The program libbpf named in a load failure ("prog 'rp_migrate_exit': failed to load").
bool log_names_failed_program(const std::string& log, const char* prog) {
  return log.find(std::string("prog '") + prog + "': failed to load") != std::string::npos;
}

// The text of the kernel's softirq loop, [start, end): handle_softirqs() (6.10+; both
// __do_softirq() and ksoftirqd call it), else __do_softirq(). {0, 0} with `why` set where
// neither is in /proc/kallsyms or the addresses are hidden (kptr_restrict). Read once per
// process: the file has a line per kernel symbol, and the cases load a probe per variant.
std::pair<std::uint64_t, std::uint64_t> softirq_loop_text(std::string& why) {
  static const auto found = [] {
    const kernel::TextSymbols symbols = kernel::text_symbols();
    if (symbols.empty())
      return std::make_pair(std::pair<std::uint64_t, std::uint64_t>{0, 0},
                            std::string("no kernel text addresses in /proc/kallsyms (kptr_restrict)"));
    for (const char* name : {"handle_softirqs", "__do_softirq"})
      if (auto t = kernel::text_extent(symbols, name); t.first != 0) return std::make_pair(t, std::string());
    return std::make_pair(std::pair<std::uint64_t, std::uint64_t>{0, 0},
                          std::string("neither handle_softirqs nor __do_softirq is in /proc/kallsyms"));
  }();
  why = found.second;
  return found.first;
}

std::uint32_t prog_id(int fd) {
  struct bpf_prog_info info {};
  __u32 len = sizeof(info);
  if (int err = bpf_obj_get_info_by_fd(fd, &info, &len); err != 0)
    throw ProbeError("bpf: get prog info", -err);
  return info.id;
}

std::uint32_t link_id(int fd) {
  struct bpf_link_info info {};
  __u32 len = sizeof(info);
  if (int err = bpf_obj_get_info_by_fd(fd, &info, &len); err != 0)
    throw ProbeError("bpf: get link info", -err);
  return info.id;
}

std::uint64_t load_relaxed(const __u64& v) {
  return std::atomic_ref<const __u64>(v).load(std::memory_order_relaxed);
}

}  // namespace

ProbeError::ProbeError(const std::string& operation, int err, const std::string& detail)
    : std::runtime_error(describe(operation, err < 0 ? -err : err)),
      err_(err < 0 ? -err : err),
      detail_(detail) {}

struct ReuseportProbe::Impl {
  ProbeOptions options;
  Capabilities caps;
  struct reuseport_probe* skel = nullptr;
  std::vector<struct bpf_link*> links;
  std::vector<std::string> reason_names;
  int possible_cpus = 1;
  std::pair<std::uint64_t, std::uint64_t> softirq{0, 0};  // softirq_loop_text()

  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  // The single cleanup path: links first (detaches), then programs and maps.
  ~Impl() {
    for (struct bpf_link* l : links) bpf_link__destroy(l);
    reuseport_probe__destroy(skel);
  }

  // Opens, configures and loads one attempt. Returns 0 or a negative libbpf error; on
  // failure skel is destroyed again.
  int try_load(bool lifecycle, bool release, bool state_btf, bool data_ready, bool migrate, bool drops,
               std::string& log) {
    skel = reuseport_probe__open();
    if (skel == nullptr) throw ProbeError(std::string("bpf: open ") + kObjectName, errno, log);
    skel->rodata->target_port = options.port;
    skel->rodata->target_netns = options.netns_cookie;
    skel->rodata->target_netns_ino = options.netns_ino;
    skel->rodata->lifecycle_on_release = lifecycle && release;
    skel->rodata->softirq_lo = softirq.first;
    skel->rodata->softirq_hi = softirq.second;
    for (struct bpf_program* p : {skel->progs.rp_send_reset, skel->progs.rp_recv_reset})
      bpf_program__set_autoload(p, lifecycle);
    // The listener's close and its orphans: from sock_release and the error reports where
    // they load (about 2 program runs per connection), else from inet_sock_set_state (10).
    bpf_program__set_autoload(skel->progs.rp_sock_release, lifecycle && release);
    bpf_program__set_autoload(skel->progs.rp_error_report, lifecycle && release);
    // One of the two inet_sock_set_state programs, never both (each counts every close).
    bpf_program__set_autoload(skel->progs.rp_set_state_btf, lifecycle && !release && state_btf);
    bpf_program__set_autoload(skel->progs.rp_set_state, lifecycle && !release && !state_btf);
    // The listener's destruction ends its closing window only where the window has no
    // cookie to be checked by (rp_set_state); it fires twice per connection (issue 14).
    bpf_program__set_autoload(skel->progs.rp_destroy_sock, lifecycle && !release && !state_btf);
    bpf_program__set_autoload(skel->progs.rp_data_ready, data_ready);
    bpf_program__set_autoload(skel->progs.rp_migrate_exit, migrate);
    // Without a reason the kfree_skb event says nothing this probe reports: do not pay
    // for a program run on every drop.
    bpf_program__set_autoload(skel->progs.rp_kfree_skb, drops);
    const int err = reuseport_probe__load(skel);
    if (err != 0) {
      reuseport_probe__destroy(skel);
      skel = nullptr;
    }
    return err;
  }

  void attach(struct bpf_program* prog, bool optional, std::string* why, std::string& log) {
    if (!bpf_program__autoload(prog)) return;
    struct bpf_link* link = bpf_program__attach(prog);
    if (link == nullptr) {
      const int err = errno;
      const std::string op = std::string("bpf: attach ") + bpf_program__name(prog);
      if (!optional) throw ProbeError(op, err, log);
      *why = describe(op, err);
      return;
    }
    links.push_back(link);
    if (why != nullptr) why->clear();
  }

  void attach_cgroup(struct bpf_program* prog, int cgroup_fd, std::string& log) {
    if (!bpf_program__autoload(prog)) return;
    struct bpf_link* link = bpf_program__attach_cgroup(prog, cgroup_fd);
    if (link == nullptr)
      throw ProbeError(std::string("bpf: attach ") + bpf_program__name(prog) + " to the cgroup v2 root", errno, log);
    links.push_back(link);
  }
};

ReuseportProbe::ReuseportProbe(const ProbeOptions& options) : impl_(std::make_unique<Impl>()) {
  Impl& im = *impl_;
  im.options = options;
  std::string log;
  LibbpfLogScope log_scope(&log);

  BtfPtr vmlinux(btf__load_vmlinux_btf());
  if (!vmlinux) throw ProbeError("bpf: load vmlinux BTF", errno, log);
  // The event structs are generated from TP_STRUCT__entry, so a field there means the
  // tracepoint passes that argument (both arrived in the same commits).
  im.caps.rst_reason =
      btf_struct_has_member(vmlinux.get(), "trace_event_raw_tcp_send_reset", "reason");
  bool drops = btf_struct_has_member(vmlinux.get(), "trace_event_raw_kfree_skb", "reason");
  if (!drops) im.caps.drop_why = "kfree_skb carries no drop reason on this kernel (< 5.17)";
  if (!options.drops) {
    drops = false;
    im.caps.drop_why = "not requested";
  }
  im.reason_names = drop_reason_names(vmlinux.get());

  bool data_ready = false;
  bool migrate = false;
  bool state_btf = false;
  bool release = false;
  UniqueFd cgroup;
  std::string release_why;
  if (!options.lifecycle) {
    im.caps.listener_orphans_why = "not requested";
  } else if (!btf_has(vmlinux.get(), "btf_trace_inet_sock_set_state", BTF_KIND_TYPEDEF)) {
    im.caps.listener_orphans_why = "this kernel's BTF has no sock:inet_sock_set_state for tp_btf";
  } else {
    state_btf = true;
  }
  if (options.lifecycle) {
    if (!options.lifecycle_on_release) {
      release_why = "not requested";
    } else if (!btf_has(vmlinux.get(), "btf_trace_inet_sk_error_report", BTF_KIND_TYPEDEF)) {
      release_why = "this kernel has no sock:inet_sk_error_report tracepoint (5.14+)";
    } else if (im.softirq = softirq_loop_text(release_why); im.softirq.first == 0) {
      // Without it a forgotten child could not be told from a shut-down listener's orphan.
    } else {
      cgroup.reset(kernel::cgroup2_root(release_why));
      release = static_cast<bool>(cgroup);
    }
  }
  if (!options.per_listener) {
    im.caps.per_listener_why = "not requested";
  } else if (!btf_has(vmlinux.get(), "btf_trace_sk_data_ready", BTF_KIND_TYPEDEF)) {
    im.caps.per_listener_why = "this kernel has no sock:sk_data_ready tracepoint";
  } else {
    data_ready = true;
  }
  if (!options.migrate_fexit) {
    im.caps.migrate_why = "not requested";
  } else if (!btf_has(vmlinux.get(), "reuseport_migrate_sock", BTF_KIND_FUNC)) {
    im.caps.migrate_why = "reuseport_migrate_sock is not in this kernel's BTF";
  } else {
    migrate = true;
  }
  vmlinux.reset();

  // Optional programs that fail to load are dropped one at a time and the object is
  // loaded again (a libbpf object cannot be reloaded after a failed load); a failure of a
  // mandatory program, or one libbpf does not attribute, ends here.
  for (;;) {
    log.clear();
    const int err = im.try_load(options.lifecycle, release, state_btf, data_ready, migrate, drops, log);
    if (err == 0) break;
    const std::string why = describe(std::string("bpf: load ") + kObjectName, -err);
    if (release && (log_names_failed_program(log, kProgSockRelease) || log_names_failed_program(log, kProgErrorReport))) {
      release = false;
      release_why = "cgroup/sock_release or tp_btf/inet_sk_error_report did not load (" + why + ")";
    } else if (state_btf && log_names_failed_program(log, kProgSetStateBtf)) {
      // Before 5.12 tracing programs may not call bpf_get_socket_cookie().
      state_btf = false;
      im.caps.listener_orphans_why = "tp_btf/inet_sock_set_state with bpf_get_socket_cookie() did not load (" + why +
                                     "; the helper came to tracing programs in 5.12)";
    } else if (migrate && log_names_failed_program(log, kProgMigrate)) {
      migrate = false;
      im.caps.migrate_why = "fexit/reuseport_migrate_sock did not load (" + why + ")";
    } else if (data_ready && log_names_failed_program(log, kProgDataReady)) {
      data_ready = false;
      im.caps.per_listener_why = "tp_btf/sk_data_ready did not load (" + why + ")";
    } else if (drops && log_names_failed_program(log, kProgKfreeSkb)) {
      drops = false;
      im.caps.drop_why = "tp_btf/kfree_skb did not load (" + why + ")";
    } else {
      throw ProbeError(std::string("bpf: load ") + kObjectName, err, log);
    }
  }

  im.possible_cpus = libbpf_num_possible_cpus();
  if (im.possible_cpus <= 0) throw ProbeError("libbpf: number of possible CPUs", -im.possible_cpus, log);
  auto* s = im.skel;
  im.attach_cgroup(s->progs.rp_sock_release, cgroup.get(), log);
  im.attach(s->progs.rp_error_report, false, nullptr, log);
  im.attach(s->progs.rp_set_state, false, nullptr, log);
  im.attach(s->progs.rp_set_state_btf, false, nullptr, log);
  im.attach(s->progs.rp_destroy_sock, false, nullptr, log);
  im.attach(s->progs.rp_send_reset, false, nullptr, log);
  im.attach(s->progs.rp_recv_reset, false, nullptr, log);
  im.attach(s->progs.rp_kfree_skb, true, &im.caps.drop_why, log);
  im.attach(s->progs.rp_data_ready, true, &im.caps.per_listener_why, log);
  im.attach(s->progs.rp_migrate_exit, true, &im.caps.migrate_why, log);
  im.caps.lifecycle = options.lifecycle;
  im.caps.listener_orphans = options.lifecycle && (release || state_btf);
  if (im.caps.listener_orphans) im.caps.listener_orphans_why.clear();
  if (!options.lifecycle)
    im.caps.lifecycle_events = "not requested";
  else if (release)
    im.caps.lifecycle_events = "cgroup/sock_release + tp_btf/inet_sk_error_report";
  else
    im.caps.lifecycle_events = std::string(state_btf ? "tp_btf/inet_sock_set_state" : "raw_tp/inet_sock_set_state + tcp_destroy_sock") +
                               " (" + release_why + ")";
  im.caps.per_listener = data_ready && im.caps.per_listener_why.empty();
  im.caps.migrate_fexit = migrate && im.caps.migrate_why.empty();
  im.caps.drop_reason = drops && im.caps.drop_why.empty();
}

ReuseportProbe::~ReuseportProbe() = default;
ReuseportProbe::ReuseportProbe(ReuseportProbe&&) noexcept = default;
ReuseportProbe& ReuseportProbe::operator=(ReuseportProbe&&) noexcept = default;

const Capabilities& ReuseportProbe::capabilities() const noexcept { return impl_->caps; }
const ProbeOptions& ReuseportProbe::options() const noexcept { return impl_->options; }

ProbeReading ReuseportProbe::read() const {
  const Impl& im = *impl_;
  const auto& c = im.skel->bss->counters;
  detail::RawCounters raw;
  // Every field is a __u64 the BPF side only adds to: copied word by word.
  static_assert(sizeof(struct rp_counters) % sizeof(__u64) == 0);
  const auto* from = reinterpret_cast<const __u64*>(&c);
  auto* to = reinterpret_cast<__u64*>(&raw.counters);
  for (std::size_t i = 0; i < sizeof(struct rp_counters) / sizeof(__u64); ++i) to[i] = load_relaxed(from[i]);
  for (const auto& name : im.reason_names)
    if (name.rfind("reason_", 0) != 0) raw.known_reasons.insert(name);
  // Per-CPU maps: a lookup returns one value per possible CPU, each rounded up to 8 bytes.
  const std::size_t cpus = static_cast<std::size_t>(im.possible_cpus);
  if (im.caps.drop_reason) {
    const int fd = bpf_map__fd(im.skel->maps.rp_drops);
    std::vector<__u64> per_cpu(cpus);
    for (__u32 i = 0; i < RP_MAX_DROP_REASONS; ++i) {
      if (bpf_map_lookup_elem(fd, &i, per_cpu.data()) != 0) throw ProbeError("bpf: read rp_drops", errno);
      std::uint64_t n = 0;
      for (__u64 v : per_cpu) n += v;
      if (n != 0) raw.drops_by_reason[im.reason_names[i]] += n;
    }
  }
  if (im.caps.per_listener || im.caps.listener_orphans) {
    const int fd = bpf_map__fd(im.skel->maps.rp_listeners);
    __u64 key = 0;
    __u64 next = 0;
    const void* prev = nullptr;
    static_assert(sizeof(struct rp_listener_stats) % 8 == 0);
    std::vector<struct rp_listener_stats> per_cpu(cpus);
    while (bpf_map_get_next_key(fd, prev, &next) == 0) {
      // An entry deleted between the two calls is simply skipped (entries are never
      // deleted by the BPF side today).
      if (bpf_map_lookup_elem(fd, &next, per_cpu.data()) == 0) {
        ListenerStats l;
        for (const auto& v : per_cpu) {
          l.children += v.children;
          l.orphans += v.orphans;
          l.closed = l.closed || v.closed != 0;
        }
        raw.listeners[next] = l;
      }
      key = next;
      prev = &key;
    }
    if (errno != ENOENT) throw ProbeError("bpf: walk rp_listeners", errno);
  }
  return detail::make_reading(raw, im.caps);
}

std::vector<std::uint32_t> ReuseportProbe::program_ids() const {
  std::vector<std::uint32_t> ids;
  struct bpf_program* prog = nullptr;
  bpf_object__for_each_program(prog, impl_->skel->obj) {
    if (bpf_program__fd(prog) >= 0) ids.push_back(prog_id(bpf_program__fd(prog)));
  }
  return ids;
}

std::vector<std::uint32_t> ReuseportProbe::link_ids() const {
  std::vector<std::uint32_t> ids;
  for (struct bpf_link* l : impl_->links) ids.push_back(link_id(bpf_link__fd(l)));
  return ids;
}

const std::vector<std::string>& program_names() {
  static const std::vector<std::string> names = {
      "rp_set_state", kProgSetStateBtf, "rp_destroy_sock", "rp_send_reset", "rp_recv_reset",
      kProgKfreeSkb,  kProgDataReady,   kProgMigrate};
  return names;
}

std::uint32_t current_netns_ino() {
  struct stat st;
  if (stat("/proc/thread-self/ns/net", &st) != 0) throw ProbeError("stat /proc/thread-self/ns/net", errno);
  return static_cast<std::uint32_t>(st.st_ino);
}

std::uint64_t current_netns_cookie() {
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw ProbeError("socket AF_INET SOCK_DGRAM", errno);
  std::uint64_t cookie = 0;
  socklen_t len = sizeof(cookie);
  const int rc = ::getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len);
  const int err = errno;
  ::close(fd);
  // ENOPROTOOPT: kernel older than 5.14.
  if (rc != 0) throw ProbeError("getsockopt SO_NETNS_COOKIE", err);
  return cookie;
}

std::uint64_t socket_cookie(int fd) {
  std::uint64_t cookie = 0;
  socklen_t len = sizeof(cookie);
  if (::getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &len) != 0)
    throw ProbeError("getsockopt SO_COOKIE", errno);
  return cookie;
}

}  // namespace rp::probes
