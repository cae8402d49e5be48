// The kernel's own account of a scenario, for the three-way reconciliation (clients,
// servers, kernel): the reuseport probe's counters and the namespace's TcpExt counters,
// as named counts for a record. Anything the running kernel cannot observe (no BPF in this
// build, a probe that could not load, a counter this kernel lacks) is null, never 0, and
// `kernel_not_observable` says why.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>

namespace rp::cases {

class KernelObserver {
 public:
  // Attach to `port` in the calling thread's network namespace. Never throws for a kernel
  // that cannot be observed: that is reported by counts().
  explicit KernelObserver(uint16_t port);
  ~KernelObserver();
  KernelObserver(const KernelObserver&) = delete;
  KernelObserver& operator=(const KernelObserver&) = delete;

  // kernel_listener_closes, kernel_orphaned_children, kernel_orphan_resets,
  // kernel_other_resets_sent, kernel_resets_sent (orphan + other), kernel_resets_received,
  // kernel_listen_overflow_drops,
  // netstat_listen_overflows, netstat_migrate_req_success, netstat_migrate_req_failure,
  // kernel_sources, kernel_not_observable.
  nlohmann::json counts() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace rp::cases
