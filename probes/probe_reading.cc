// ProbeReading: the named counters of one reading, their difference between two readings,
// and how a raw reading of the probe's maps becomes one (detail::make_reading). The loader
// (reuseport_probe.cc) only loads, attaches and reads the maps.
#include "probes/reuseport_probe.h"

#include <cstring>
#include <map>
#include <stdexcept>
#include <string_view>

#include "bpf/reuseport_probe.h"
#include "probes/counters.h"

namespace rp::probes {
namespace {

Counter sub(const Counter& after, const Counter& before) {
  Counter c{std::nullopt, after.source};
  if (after.value && before.value) c.value = *after.value - *before.value;
  return c;
}

}  // namespace

const Counter& ProbeReading::counter(std::string_view key) const {
  auto it = counters.find(key);
  if (it == counters.end()) throw std::out_of_range("no probe counter '" + std::string(key) + "' (probes/counters.cc)");
  return it->second;
}

std::optional<std::uint64_t> ProbeReading::drops(const std::string& reason) const {
  if (!drops_by_reason) return std::nullopt;
  if (!known_reasons.empty() && !known_reasons.count(reason)) return std::nullopt;
  auto it = drops_by_reason->find(reason);
  return it == drops_by_reason->end() ? 0 : it->second;
}

ProbeReading delta(const ProbeReading& after, const ProbeReading& before) {
  ProbeReading d;
  for (const auto& [key, c] : after.counters) {
    auto it = before.counters.find(key);
    d.counters[key] = it == before.counters.end() ? Counter{std::nullopt, c.source} : sub(c, it->second);
  }
  d.drops_source = after.drops_source;
  d.known_reasons = after.known_reasons;
  if (after.drops_by_reason && before.drops_by_reason) {
    d.drops_by_reason.emplace();
    for (const auto& [name, n] : *after.drops_by_reason) {
      auto it = before.drops_by_reason->find(name);
      const std::uint64_t was = it == before.drops_by_reason->end() ? 0 : it->second;
      if (n != was) (*d.drops_by_reason)[name] = n - was;
    }
  }
  d.listeners_source = after.listeners_source;
  d.listener_orphans_source = after.listener_orphans_source;
  if (after.listener_orphans && before.listener_orphans) {
    d.listener_orphans.emplace();
    for (const auto& [cookie, n] : *after.listener_orphans) {
      auto it = before.listener_orphans->find(cookie);
      (*d.listener_orphans)[cookie] = n - (it == before.listener_orphans->end() ? 0 : it->second);
    }
  }
  if (after.listeners && before.listeners) {
    d.listeners.emplace();
    for (const auto& [cookie, s] : *after.listeners) {
      ListenerStats v = s;
      if (auto it = before.listeners->find(cookie); it != before.listeners->end()) {
        v.children -= it->second.children;
        v.orphans -= it->second.orphans;
      }
      (*d.listeners)[cookie] = v;
    }
  }
  return d;
}

namespace detail {

namespace {

// Where the probe took the listener's close from cgroup/sock_release and the error
// reports instead of inet_sock_set_state (ReuseportProbe's lifecycle_events), the rows
// that event gave say where they come from now.
bool on_release(const Capabilities& caps) { return caps.lifecycle_events.rfind("cgroup/sock_release", 0) == 0; }

const std::map<std::string, std::string, std::less<>> kReleaseSources = {
    {"kernel_listener_closes",
     "cgroup/sock_release of a LISTEN socket of the port (close, exit); tracepoint sock:inet_sk_error_report (tp_btf) "
     "of a listener's tcp_disconnect() (shutdown)"},
    {"kernel_orphaned_children",
     "tracepoint sock:inet_sk_error_report (tp_btf): tcp_disconnect() of a child with no struct socket, in the thread "
     "closing a listener of the port (or claimed by that listener's shutdown)"},
    {"kernel_owner_close_unanswered",
     "cgroup/sock_release of an ESTABLISHED socket of the port whose tcp_sock.bytes_sent is 0, with nothing unread "
     "and no zero linger (its close sends a FIN)"},
};

}  // namespace

ProbeReading make_reading(const RawCounters& raw, const Capabilities& caps) {
  constexpr const char* kKfreeSkb = "tracepoint skb:kfree_skb (tp_btf)";
  ProbeReading r;
  const std::string migrate_why =
      "not observable: " + (caps.migrate_why.empty() ? std::string("fexit not attached") : caps.migrate_why) +
      "; TcpExt TCPMigrateReqSuccess/Failure count migrations";
  const std::string drop_why =
      "not observable: " + (caps.drop_why.empty() ? std::string("kfree_skb not attached") : caps.drop_why);
  for (const auto& row : counter_table()) {
    if (row.from != CounterDef::From::Probe) continue;
    if (row.needs == CounterDef::Needs::Nothing && !caps.lifecycle) {
      r.counters[row.key] = {std::nullopt, "not observable: not requested (the probe's lifecycle programs are not attached)"};
      continue;
    }
    const bool attached = row.needs == CounterDef::Needs::Nothing ||
                          (row.needs == CounterDef::Needs::MigrateFexit && caps.migrate_fexit) ||
                          (row.needs == CounterDef::Needs::DropReason && caps.drop_reason);
    if (!attached) {
      r.counters[row.key] = {std::nullopt, row.needs == CounterDef::Needs::MigrateFexit ? migrate_why : drop_why};
      continue;
    }
    __u64 v = 0;
    std::memcpy(&v, reinterpret_cast<const char*>(&raw.counters) + row.offset, sizeof v);
    std::string source = row.source;
    if (on_release(caps))
      if (auto it = kReleaseSources.find(row.key); it != kReleaseSources.end()) source = it->second;
    if (!caps.rst_reason && source.find("tcp_send_reset") != std::string::npos)
      source += " (this kernel gives no reset reason)";
    r.counters[row.key] = {v, source};
  }
  if (caps.drop_reason) {
    r.drops_by_reason = raw.drops_by_reason;
    r.known_reasons = raw.known_reasons;
    r.drops_source = std::string(kKfreeSkb) + ": reason, TCP segments of the port";
  } else {
    r.drops_source =
        "not observable: " +
        (caps.drop_why.empty() ? std::string("kfree_skb not attached") : caps.drop_why);
  }
  if (caps.listener_orphans) {
    r.listener_orphans.emplace();
    for (const auto& [cookie, l] : raw.listeners)
      if (l.closed) (*r.listener_orphans)[cookie] = l.orphans;
    r.listener_orphans_source =
        on_release(caps)
            ? "cgroup/sock_release of the listener (cookie from bpf_get_socket_cookie) and "
              "tracepoint sock:inet_sk_error_report (tp_btf): children disconnected in the closing thread until "
              "the end of its close, or claimed by the listener's own error report after a shutdown()"
            : "tracepoint sock:inet_sock_set_state (tp_btf): children closed in the closing thread between the "
              "listener's LISTEN->CLOSE (cookie from bpf_get_socket_cookie) and the end of its close (sock_orphan)";
  } else {
    r.listener_orphans_source =
        "not observable: " + (caps.listener_orphans_why.empty() ? std::string("inet_sock_set_state (tp_btf) not attached")
                                                                : caps.listener_orphans_why);
  }
  if (caps.per_listener) {
    r.listeners = raw.listeners;
    r.listeners_source = "tracepoint sock:sk_data_ready (tp_btf) on LISTEN sockets, by cookie";
  } else {
    r.listeners_source =
        "not observable: " +
        (caps.per_listener_why.empty() ? std::string("sk_data_ready not attached")
                                       : caps.per_listener_why);
  }
  return r;
}

}  // namespace detail
}  // namespace rp::probes
