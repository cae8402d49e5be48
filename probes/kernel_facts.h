// What the probes' loaders read about the running kernel and machine before they load:
// kernel text symbols (/proc/kallsyms), the drop reasons' names (BTF), the cgroup v2 root
// (/proc/self/mountinfo). Shared by reuseport_probe.cc and udp_drops.cc.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct btf;

namespace rp::probes::kernel {

// Every text symbol's start, sorted by address. Empty when the addresses are hidden
// (kptr_restrict).
using TextSymbols = std::vector<std::pair<std::uint64_t, std::string>>;
TextSymbols text_symbols();

// The text of function `name`, [start, end): its start and the next symbol's. {0, 0} where
// it is not in `symbols`.
std::pair<std::uint64_t, std::uint64_t> text_extent(const TextSymbols& symbols, std::string_view name);

// enum skb_drop_reason of the running kernel, value -> name without SKB_DROP_REASON_.
// Values differ between kernels (reasons are inserted in the middle), so they are never
// compiled in. Empty without the enum.
std::map<std::uint32_t, std::string> drop_reason_names(const struct btf* vmlinux);

// An fd of the root of the cgroup v2 hierarchy as this process sees it (a cgroup2 mount of
// "/"): a program attached there runs for the sockets of every process of the machine (or
// of the cgroup namespace). -1 with `why` set where there is none.
int cgroup2_root(std::string& why);

}  // namespace rp::probes::kernel
