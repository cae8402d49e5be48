#include "probes/kernel_facts.h"

#include <bpf/btf.h>
#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace rp::probes::kernel {
namespace {

// A mountinfo path field: spaces, tabs, newlines and backslashes come as \ooo.
std::string unescape_mountinfo(const std::string& in) {
  std::string out;
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '\\' && i + 3 < in.size()) {
      out.push_back(static_cast<char>(std::stoi(in.substr(i + 1, 3), nullptr, 8)));
      i += 3;
    } else {
      out.push_back(in[i]);
    }
  }
  return out;
}

}  // namespace

TextSymbols text_symbols() {
  TextSymbols out;
  std::ifstream in("/proc/kallsyms");
  std::string a, type, name, line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    if (!(ls >> a >> type >> name) || (type != "t" && type != "T")) continue;
    const std::uint64_t start = std::stoull(a, nullptr, 16);
    if (start) out.emplace_back(start, name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::pair<std::uint64_t, std::uint64_t> text_extent(const TextSymbols& symbols, std::string_view name) {
  for (std::size_t i = 0; i + 1 < symbols.size(); ++i)
    if (symbols[i].second == name) {
      // Aliases share a start: the end is the first start above it.
      auto next = std::upper_bound(symbols.begin() + static_cast<std::ptrdiff_t>(i), symbols.end(),
                                   std::make_pair(symbols[i].first, std::string("\xff")));
      if (next == symbols.end()) return {0, 0};
      return {symbols[i].first, next->first};
    }
  return {0, 0};
}

std::map<std::uint32_t, std::string> drop_reason_names(const struct btf* vmlinux) {
  std::map<std::uint32_t, std::string> out;
  if (vmlinux == nullptr) return out;
  const int id = btf__find_by_name_kind(vmlinux, "skb_drop_reason", BTF_KIND_ENUM);
  if (id <= 0) return out;
  const struct btf_type* t = btf__type_by_id(vmlinux, id);
  const struct btf_enum* e = btf_enum(t);
  for (int i = 0; i < btf_vlen(t); ++i) {
    std::string n = btf__name_by_offset(vmlinux, e[i].name_off);
    if (n.rfind("SKB_DROP_REASON_", 0) == 0) n = n.substr(16);
    out[static_cast<std::uint32_t>(e[i].val)] = n;
  }
  return out;
}

int cgroup2_root(std::string& why) {
  std::ifstream mi("/proc/self/mountinfo");
  std::string line;
  while (std::getline(mi, line)) {
    // id parent major:minor root mountpoint options [optional...] - fstype source superopts
    const auto dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::istringstream tail(line.substr(dash + 3));
    std::string fstype;
    tail >> fstype;
    if (fstype != "cgroup2") continue;
    std::istringstream head(line.substr(0, dash));
    std::string id, parent, dev, root, mountpoint;
    head >> id >> parent >> dev >> root >> mountpoint;
    if (root != "/") continue;
    const std::string path = unescape_mountinfo(mountpoint);
    const int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) return fd;
    why = "open cgroup2 root " + path + ": " + std::strerror(errno);
    return -1;
  }
  why = "no cgroup v2 hierarchy is mounted (a cgroup2 mount of / in /proc/self/mountinfo)";
  return -1;
}

}  // namespace rp::probes::kernel
