// The one sampler of kernel counters that the cases, `watch`, `deploy` and `report` share:
// every row of the counter table (probes/counters.h) for one port in the calling thread's
// network namespace, as deltas since a baseline. The reuseport probe is attached when this
// build and the kernel allow it; the namespace filter is its cookie (5.14+), else its inode.
// A count the kernel cannot observe is null with the reason, never 0.
//
//   rp::probes::KernelSampler k({.port = 8080});
//   ... traffic ...
//   rp::probes::KernelCounts c = k.sample();
//   if (auto v = c.value("kernel_orphan_resets")) ...
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace rp::probes {

struct KernelCounts {
  // Every key of the counter table; nullopt: not observable here (see not_observable).
  std::map<std::string, std::optional<std::uint64_t>, std::less<>> values;
  std::map<std::string, std::string, std::less<>> sources;  // key -> where it was read
  // A null value is in exactly one of these two. not_observable: the running kernel (or
  // this build, configured without BPF) does not offer the count: a case that needs it is
  // SKIP. errors: the kernel offers it and we failed to read it (a probe that did not load,
  // a file we could not read): a case that needs it is ERROR.
  std::map<std::string, std::string, std::less<>> not_observable;
  std::map<std::string, std::string, std::less<>> errors;

  // Children orphaned per listener that closed (socket cookie -> count, SO_COOKIE's value);
  // nullopt: not observable or not read, listener_orphans_source says which and why.
  std::optional<std::map<std::uint64_t, std::uint64_t>> listener_orphans;
  std::string listener_orphans_source;
  bool listener_orphans_error = false;  // the probe should have read it and did not
  // The orphans of the listener with this cookie: 0 when it closed with none or has not
  // closed; nullopt when per-listener orphans are not observable.
  std::optional<std::uint64_t> orphans_of(std::uint64_t cookie) const;

  // The value of `key`; throws std::out_of_range for a key that is not in the table.
  std::optional<std::uint64_t> value(std::string_view key) const;
  // {key: value or null, ...}; with_provenance adds "kernel_sources",
  // "kernel_not_observable" and "kernel_errors" (the shape of a case record's observed
  // counts).
  nlohmann::json to_json(bool with_provenance = true) const;
};

class KernelSampler {
 public:
  struct Options {
    std::uint16_t port = 0;
    // The sampler watches a namespace shared with other traffic (deploy --host-net, watch):
    // the TcpExt sources say that their deltas include it.
    bool shared_namespace = false;
    // Attach the reuseport probe (false: TcpExt only, e.g. when the caller's own probe is
    // attached already).
    bool probe = true;
    // Filter on the namespace's inode even where the kernel has SO_NETNS_COOKIE: the path
    // every kernel before 5.14 takes, so that it can be tested on a newer one.
    bool filter_by_inode = false;
  };

  // Never throws for what the kernel or the build cannot observe: that shows in sample().
  explicit KernelSampler(const Options& options);
  ~KernelSampler();
  KernelSampler(const KernelSampler&) = delete;
  KernelSampler& operator=(const KernelSampler&) = delete;

  // Counts start from here; the constructor takes the first baseline.
  void baseline();
  // Every counter since the baseline.
  KernelCounts sample() const;

  // Empty when the probe is attached; otherwise why not (the probe's rows are null then,
  // in errors, or in not_observable for a build without BPF).
  const std::string& probe_error() const;
  // Which filter the probe uses: "netns cookie N" or "netns inode N (no SO_NETNS_COOKIE
  // before 5.14)"; empty without a probe.
  const std::string& namespace_filter() const;
  // Which events give the listener closes and orphans (Capabilities::lifecycle_events);
  // empty without a probe.
  std::string lifecycle_events() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace rp::probes
