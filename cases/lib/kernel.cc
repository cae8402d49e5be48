#include "cases/lib/kernel.h"

#include <sys/utsname.h>

#include <cstdio>
#include <mutex>
#include <stdexcept>

#include "harness/scope.h"

namespace rp::cases {

std::optional<KernelVersion> KernelVersion::parse(const std::string& s) {
  KernelVersion k;
  int n = 0;
  if (std::sscanf(s.c_str(), "%d.%d.%d%n", &k.v[0], &k.v[1], &k.v[2], &n) == 3) return k;
  if (std::sscanf(s.c_str(), "%d.%d%n", &k.v[0], &k.v[1], &n) == 2) {
    k.v[2] = 0;
    return k;
  }
  return std::nullopt;
}

std::string KernelVersion::str() const {
  return std::to_string(v[0]) + "." + std::to_string(v[1]) + "." + std::to_string(v[2]);
}

std::string kernel_release() {
  utsname u;
  if (uname(&u) != 0) return "unknown";
  return u.release;
}

KernelVersion running_kernel() {
  auto k = KernelVersion::parse(kernel_release());
  if (!k) throw std::runtime_error("cannot parse the kernel release '" + kernel_release() + "'");
  return *k;
}

const std::map<std::string, Feature>& features() {
  static const std::map<std::string, Feature> f = [] {
    std::map<std::string, Feature> m;
    auto add = [&](Feature x) { m.emplace(x.name, std::move(x)); };
    add({"tcp_migrate_req", "the net.ipv4.tcp_migrate_req sysctl (5.14; Documentation/networking/ip-sysctl.rst)",
         [] { return sysctl_exists("net.ipv4.tcp_migrate_req"); }});
    add({"netns_cookie", "SO_NETNS_COOKIE (5.14)", [] { return current_netns_cookie().has_value(); }});
    return m;
  }();
  return f;
}

bool has_feature(const std::string& name) {
  static std::mutex mu;
  static std::map<std::string, bool> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(name);
  if (it != cache.end()) return it->second;
  auto f = features().find(name);
  if (f == features().end()) throw std::invalid_argument("unknown feature '" + name + "'");
  return cache[name] = f->second.probe();
}

}  // namespace rp::cases
