// Small things every skeleton loader needs: libbpf's error as an errno, and access to the
// mmap'ed .bss/.data that the BPF side reads or writes concurrently.
#pragma once

#include <atomic>
#include <cerrno>

namespace rp::probes {

// libbpf 1.x returns -errno (and sets errno); older calls return NULL/-1 with errno set.
inline int libbpf_errno(long rc) { return rc < 0 ? static_cast<int>(-rc) : (errno ? errno : EINVAL); }

// A field of the skeleton's mmap'ed data: one relaxed atomic access, never torn.
template <class T>
void store(T& field, T v) {
  std::atomic_ref<T>(field).store(v, std::memory_order_relaxed);
}
template <class T>
T load(T& field) {
  return std::atomic_ref<T>(field).load(std::memory_order_relaxed);
}

}  // namespace rp::probes
