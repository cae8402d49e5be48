// ProbeReading as the loader builds it from the BPF side's raw counters: what a kernel
// could not observe is nullopt with the reason, never 0; deltas keep that; and one live
// reading agrees with the capabilities the probe reports.

#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdint>
#include <map>
#include <string>

#include <gtest/gtest.h>

#include "probes/reuseport_probe.h"

namespace rp::probes {
namespace {

bool is_root() { return ::geteuid() == 0; }

TEST(ProbeReporting, unobservable_counters_are_nullopt_not_zero) {
  detail::RawCounters raw;  // all zero, as the BPF side would leave them
  Capabilities caps;        // nothing optional attached, no reasons
  caps.per_listener_why = "this kernel has no sock:sk_data_ready tracepoint";
  caps.migrate_why = "fexit/reuseport_migrate_sock did not load (Operation not permitted)";
  caps.drop_why = "kfree_skb carries no drop reason on this kernel (< 5.17)";
  const ProbeReading r = detail::make_reading(raw, caps);
  EXPECT_FALSE(r.counter("kernel_migrate_target_found").value.has_value());
  EXPECT_FALSE(r.counter("kernel_migrate_no_target").value.has_value());
  EXPECT_NE(r.counter("kernel_migrate_target_found").source.find("not observable"), std::string::npos);
  EXPECT_NE(r.counter("kernel_migrate_target_found").source.find("Operation not permitted"), std::string::npos);
  EXPECT_FALSE(r.drops_by_reason.has_value());
  EXPECT_FALSE(r.drops("QUEUE_PURGE").has_value());
  EXPECT_FALSE(r.counter("kernel_drops_out_of_range").value.has_value());
  EXPECT_NE(r.drops_source.find("no drop reason"), std::string::npos);
  EXPECT_FALSE(r.listeners.has_value());
  EXPECT_NE(r.listeners_source.find("sk_data_ready"), std::string::npos);
  EXPECT_FALSE(r.listener_orphans.has_value());
  EXPECT_NE(r.listener_orphans_source.find("not observable"), std::string::npos);
  // Always observable (raw tracepoints every supported kernel has): 0 is a real 0.
  ASSERT_TRUE(r.counter("kernel_listener_closes").value.has_value());
  EXPECT_EQ(*r.counter("kernel_listener_closes").value, 0u);
  EXPECT_NE(r.counter("kernel_listener_closes").source.find("sock:inet_sock_set_state"), std::string::npos);
  EXPECT_NE(r.counter("kernel_orphan_resets").source.find("no reset reason"), std::string::npos);
}

// The rows inet_sock_set_state gave say where they come from on the sock_release route,
// and only there.
TEST(ProbeReporting, sources_follow_the_lifecycles_route) {
  detail::RawCounters raw;
  Capabilities caps;
  caps.listener_orphans = true;
  caps.lifecycle_events = "tp_btf/inet_sock_set_state (not requested)";
  const ProbeReading on_state = detail::make_reading(raw, caps);
  caps.lifecycle_events = "cgroup/sock_release + tp_btf/inet_sk_error_report";
  const ProbeReading on_release = detail::make_reading(raw, caps);
  for (const char* key : {"kernel_listener_closes", "kernel_orphaned_children", "kernel_owner_close_unanswered"}) {
    EXPECT_NE(on_state.counter(key).source.find("inet_sock_set_state"), std::string::npos) << key;
    EXPECT_EQ(on_release.counter(key).source.find("inet_sock_set_state"), std::string::npos) << key;
  }
  EXPECT_NE(on_release.counter("kernel_listener_closes").source.find("cgroup/sock_release"), std::string::npos);
  EXPECT_NE(on_release.counter("kernel_orphaned_children").source.find("inet_sk_error_report"), std::string::npos);
  EXPECT_NE(on_release.listener_orphans_source.find("cgroup/sock_release"), std::string::npos);
  EXPECT_NE(on_state.listener_orphans_source.find("inet_sock_set_state"), std::string::npos);
  // The RST rows are the same events on both routes.
  EXPECT_EQ(on_release.counter("kernel_orphan_resets").source, on_state.counter("kernel_orphan_resets").source);
}

TEST(ProbeReporting, observable_counters_carry_values_and_zero_for_unseen_reasons) {
  detail::RawCounters raw;
  raw.counters.orphaned_children = 9;
  raw.counters.migrate_target_found = 3;
  raw.drops_by_reason["TCP_LISTEN_OVERFLOW"] = 2;
  raw.listeners[42] = ListenerStats{9, 9, true};
  Capabilities caps;
  caps.rst_reason = caps.drop_reason = caps.per_listener = caps.migrate_fexit = true;
  const ProbeReading r = detail::make_reading(raw, caps);
  EXPECT_EQ(r.counter("kernel_orphaned_children").value, 9u);
  EXPECT_EQ(r.counter("kernel_migrate_target_found").value, 3u);
  EXPECT_EQ(r.drops("TCP_LISTEN_OVERFLOW"), 2u);
  EXPECT_EQ(r.drops("QUEUE_PURGE"), 0u);
  ASSERT_TRUE(r.listeners.has_value());
  EXPECT_EQ(r.listeners->at(42).orphans, 9u);
  EXPECT_FALSE(r.listener_orphans.has_value());  // the cookie was not taken at the close
  caps.listener_orphans = true;
  raw.listeners[43] = ListenerStats{5, 0, false};  // never closed: not an orphaning listener
  const ProbeReading r2 = detail::make_reading(raw, caps);
  ASSERT_TRUE(r2.listener_orphans.has_value());
  EXPECT_EQ(*r2.listener_orphans, (std::map<std::uint64_t, std::uint64_t>{{42, 9}}));
  EXPECT_NE(r.counter("kernel_orphan_resets").source.find("TCP_STATE"), std::string::npos);
}

// TCP_LISTEN_OVERFLOW came with 6.0's drop reasons: on a kernel whose enum lacks a reason
// its count is not observable, not 0.
TEST(ProbeReporting, a_reason_the_kernel_lacks_is_nullopt) {
  detail::RawCounters raw;
  raw.known_reasons = {"NO_SOCKET", "QUEUE_PURGE"};
  Capabilities caps;
  caps.drop_reason = true;
  const ProbeReading r = detail::make_reading(raw, caps);
  EXPECT_EQ(r.drops("NO_SOCKET"), 0u);
  EXPECT_FALSE(r.drops("TCP_LISTEN_OVERFLOW").has_value());
}

TEST(ProbeReporting, delta_keeps_unobservable_as_nullopt) {
  detail::RawCounters a, b;
  a.counters.listener_closes = 1;
  b.counters.listener_closes = 3;
  b.drops_by_reason["NO_SOCKET"] = 5;
  Capabilities with, without;
  with.drop_reason = true;
  const ProbeReading d1 = delta(detail::make_reading(b, with), detail::make_reading(a, with));
  EXPECT_EQ(d1.counter("kernel_listener_closes").value, 2u);
  EXPECT_EQ(d1.drops("NO_SOCKET"), 5u);
  const ProbeReading d2 = delta(detail::make_reading(b, with), detail::make_reading(a, without));
  EXPECT_FALSE(d2.drops_by_reason.has_value());
  EXPECT_FALSE(d2.counter("kernel_migrate_target_found").value.has_value());
}

TEST(ProbeReporting, error_names_operation_and_errno) {
  const ProbeError e("bpf: load reuseport_probe", -EPERM);
  EXPECT_STREQ(e.what(), "bpf: load reuseport_probe: Operation not permitted");
  EXPECT_EQ(e.error(), EPERM);
}

TEST(ProbeReporting, live_reading_matches_capabilities) {
  if (!is_root()) GTEST_SKIP() << "needs root: BPF load";
  ReuseportProbe probe({.port = 1, .netns_cookie = current_netns_cookie()});
  const Capabilities& caps = probe.capabilities();
  const ProbeReading r = probe.read();
  EXPECT_EQ(r.counter("kernel_migrate_target_found").value.has_value(), caps.migrate_fexit)
      << r.counter("kernel_migrate_target_found").source;
  EXPECT_EQ(r.listeners.has_value(), caps.per_listener) << r.listeners_source;
  EXPECT_EQ(r.drops_by_reason.has_value(), caps.drop_reason) << r.drops_source;
  EXPECT_EQ(caps.migrate_fexit, caps.migrate_why.empty()) << caps.migrate_why;
  EXPECT_EQ(caps.per_listener, caps.per_listener_why.empty()) << caps.per_listener_why;
  EXPECT_EQ(caps.drop_reason, caps.drop_why.empty()) << caps.drop_why;
  RecordProperty("migrate_source", r.counter("kernel_migrate_target_found").source);
  RecordProperty("listeners_source", r.listeners_source);
  // From 5.12 the tp_btf program that takes the closing listener's cookie must load: a
  // verifier rejection of anything added to it falls back to raw_tp silently, and the
  // cases' per-listener orphans then turn into SKIPs (an access beyond struct sock did).
  utsname u{};
  ASSERT_EQ(::uname(&u), 0);
  int major = 0, minor = 0;
  if (std::sscanf(u.release, "%d.%d", &major, &minor) == 2 && (major > 5 || (major == 5 && minor >= 12))) {
    EXPECT_TRUE(caps.listener_orphans) << caps.listener_orphans_why;
  }
}

}  // namespace
}  // namespace rp::probes

namespace rp::probes {
namespace {

// What a user does not ask for is not loaded: group's probe (children per listener only)
// runs one program, and the counters it did not ask for say "not requested", never 0.
TEST(ProbeReporting, only_requested_programs_are_attached) {
  if (!is_root()) GTEST_SKIP() << "needs root: BPF load";
  ReuseportProbe probe({.port = 1, .netns_cookie = current_netns_cookie(), .lifecycle = false, .drops = false,
                        .per_listener = true, .migrate_fexit = false});
  const Capabilities& caps = probe.capabilities();
  const ProbeReading r = probe.read();
  EXPECT_FALSE(caps.lifecycle);
  EXPECT_EQ(probe.link_ids().size(), caps.per_listener ? 1u : 0u);
  EXPECT_FALSE(r.counter("kernel_listener_closes").value.has_value());
  EXPECT_NE(r.counter("kernel_listener_closes").source.find("not requested"), std::string::npos);
  EXPECT_FALSE(r.drops_by_reason.has_value());
  EXPECT_NE(r.drops_source.find("not requested"), std::string::npos);
  EXPECT_EQ(r.listeners.has_value(), caps.per_listener) << r.listeners_source;
}

}  // namespace
}  // namespace rp::probes
