// RAII loader for bpf/reuseport_probe.bpf.c: the kernel-side oracle of reuseport-check.
//
// Lifecycle, one cleanup path: open -> configure rodata -> load -> attach (bpf_link per
// program, never pinned, so everything dies with the process) -> read() -> destroy.
//
//   rp::probes::ReuseportProbe probe({.port = 8080,
//                                     .netns_cookie = rp::probes::current_netns_cookie()});
//   ... traffic ...
//   rp::probes::ProbeReading r = probe.read();
//   if (r.counter("kernel_orphaned_children").value) ...  // nullopt: not observable here
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <linux/types.h>

#include "bpf/reuseport_probe.h"

namespace rp::probes {

// A failed syscall or libbpf call. what() names the operation and the error, e.g.
// "bpf: load reuseport_probe: Operation not permitted".
class ProbeError : public std::runtime_error {
 public:
  // err: a positive errno (libbpf's negative returns are accepted and negated).
  ProbeError(const std::string& operation, int err, const std::string& detail = {});
  int error() const noexcept { return err_; }
  // The libbpf log lines collected while the operation ran (verifier output etc.).
  const std::string& detail() const noexcept { return detail_; }

 private:
  int err_;
  std::string detail_;
};

struct ProbeOptions {
  std::uint16_t port = 0;          // host order; 0 counts every port
  std::uint64_t netns_cookie = 0;  // 0: see netns_ino
  // The namespace's inode (stat /proc/self/ns/net), for kernels without SO_NETNS_COOKIE
  // (before 5.14). Used only when netns_cookie is 0; both 0 counts every namespace.
  std::uint32_t netns_ino = 0;
  // Which counters the caller wants; only their programs are loaded and attached, since
  // every attached program runs on each of its events machine-wide (issue 14: the probe
  // costs at most 1% of the connection rate). A counter not asked for is not observable,
  // with the source "not requested".
  bool lifecycle = true;           // listener closes, orphans and RSTs (tcp_send_reset,
                                   // tcp_receive_reset, and cgroup/sock_release with
                                   // inet_sk_error_report where they load, else
                                   // inet_sock_set_state; tcp_destroy_sock only where that is
                                   // the raw_tp fallback, < 5.12)
  // Take the listener's close and its orphans from cgroup/sock_release and
  // inet_sk_error_report where they load (about 2 program runs per connection instead of
  // inet_sock_set_state's 10); false forces inet_sock_set_state (tests of that route).
  bool lifecycle_on_release = true;
  bool drops = true;               // kfree_skb drops by reason (tp_btf/kfree_skb)
  bool per_listener = true;        // try tp_btf/sk_data_ready (children per listener)
  bool migrate_fexit = true;       // try fexit/reuseport_migrate_sock
};

// One counter and where it comes from. value == nullopt means the running kernel cannot
// observe it (source then says why); it is never reported as 0 in that case.
struct Counter {
  std::optional<std::uint64_t> value;
  std::string source;
};

struct ListenerStats {
  std::uint64_t children = 0;  // children queued on it: handshakes + children migrated to it
  std::uint64_t orphans = 0;   // children dropped when it closed (needs a known cookie)
  bool closed = false;
};

struct ProbeReading {
  // Every probe row of the counter table (probes/counters.h), by key
  // ("kernel_orphan_resets"); a row whose program this kernel could not attach has no value.
  std::map<std::string, Counter, std::less<>> counters;
  // The row `key`; throws std::out_of_range naming a key that is not a probe row.
  const Counter& counter(std::string_view key) const;

  // kfree_skb drops by reason name as the running kernel spells it ("TCP_LISTEN_OVERFLOW",
  // "QUEUE_PURGE"; "reason_<n>" when its BTF has no name). Reasons never seen are absent.
  std::optional<std::map<std::string, std::uint64_t>> drops_by_reason;
  std::string drops_source;

  // Keyed by socket cookie (getsockopt SO_COOKIE, see socket_cookie()).
  std::optional<std::map<std::uint64_t, ListenerStats>> listeners;
  std::string listeners_source;

  // Children orphaned per closed listener (cookie -> count), every listener of the port
  // that closed since attach, 0 included; nullopt where not observable (see the source).
  std::optional<std::map<std::uint64_t, std::uint64_t>> listener_orphans;
  std::string listener_orphans_source;

  // The reason names the running kernel's enum skb_drop_reason has; empty when not known
  // (a reading built without the kernel's BTF, as in unit tests).
  std::set<std::string> known_reasons;

  // A drop count by name; nullopt when drops are not observable or this kernel has no such
  // reason (TCP_LISTEN_OVERFLOW came in 6.0), 0 when observable and never seen.
  std::optional<std::uint64_t> drops(const std::string& reason) const;
};

// What the running kernel let the probe observe, and why not where it did not.
struct Capabilities {
  bool lifecycle = true;      // the four raw_tp programs are attached (false: not requested)
  bool rst_reason = false;    // tcp_send_reset carries a reason (v6.10+)
  bool drop_reason = false;   // tp_btf/kfree_skb attached, its event has a reason (v5.17+)
  bool per_listener = false;  // tp_btf/sk_data_ready is attached
  // Orphans per closed listener: cgroup/sock_release or tp_btf/inet_sock_set_state took the
  // listener's cookie at its close (5.12+); with the raw_tp fallback a cookie is only there
  // if someone had it generated before, so the count is not observable.
  bool listener_orphans = false;
  std::string listener_orphans_why;  // empty when listener_orphans
  // Which events give the listener's close and its orphans: "cgroup/sock_release +
  // tp_btf/inet_sk_error_report" (about 2 program runs per connection) where the kernel
  // has them and a cgroup v2 hierarchy is mounted, else inet_sock_set_state (10 runs per
  // connection) with the reason in parentheses; "not requested" without lifecycle.
  std::string lifecycle_events;
  bool migrate_fexit = false; // fexit/reuseport_migrate_sock is attached
  std::string per_listener_why;  // empty when per_listener
  std::string migrate_why;       // empty when migrate_fexit
  std::string drop_why;          // empty when drop_reason
};

class ReuseportProbe {
 public:
  explicit ReuseportProbe(const ProbeOptions& options);
  ~ReuseportProbe();
  ReuseportProbe(ReuseportProbe&&) noexcept;
  ReuseportProbe& operator=(ReuseportProbe&&) noexcept;
  ReuseportProbe(const ReuseportProbe&) = delete;
  ReuseportProbe& operator=(const ReuseportProbe&) = delete;

  // Counters since attach. Cheap: the counters are an mmap'ed .bss; the per-listener map
  // is walked with one syscall per entry.
  ProbeReading read() const;
  const Capabilities& capabilities() const noexcept;
  const ProbeOptions& options() const noexcept;
  // Kernel ids of the loaded programs and of the links attaching them.
  std::vector<std::uint32_t> program_ids() const;
  std::vector<std::uint32_t> link_ids() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// after - before, counter by counter. A counter observable in only one of them is
// nullopt; per-listener and drop maps are subtracted key by key.
ProbeReading delta(const ProbeReading& after, const ProbeReading& before);

// net->net_cookie of the calling thread's network namespace, via SO_NETNS_COOKIE on a
// throwaway socket (Linux 5.14+). Throws ProbeError naming the syscall.
std::uint64_t current_netns_cookie();
// The inode of the calling thread's network namespace (/proc/thread-self/ns/net), the
// filter of last resort before 5.14.
std::uint32_t current_netns_ino();
// The socket cookie of fd (SO_COOKIE); the same value the probe keys listeners by.
std::uint64_t socket_cookie(int fd);

// Names of the programs this probe owns, as the kernel shows them (bpftool prog list).
const std::vector<std::string>& program_names();

namespace detail {

// Raw values as read from the BPF side; the reading is built from them and the
// capabilities so that the "not observable" rules can be tested without a kernel.
struct RawCounters {
  struct rp_counters counters {};
  std::map<std::string, std::uint64_t> drops_by_reason;
  std::set<std::string> known_reasons;
  std::map<std::uint64_t, ListenerStats> listeners;
};

ProbeReading make_reading(const RawCounters& raw, const Capabilities& caps);

}  // namespace detail
}  // namespace rp::probes
