#include "cases/lib/kernel.h"

#include <sched.h>
#include <sys/utsname.h>

#include <cstdio>
#include <fstream>
#include <mutex>
#include <stdexcept>

#include "harness/scope.h"
#ifdef RP_HAVE_BPF
#include "probes/reuseport_steer.h"
#endif

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

KernelVersion upstream_version(const std::string& release, const std::string& version) {
  auto k = KernelVersion::parse(release);
  if (!k) throw std::runtime_error("cannot parse the kernel release '" + release + "'");
  auto at = version.find("Debian ");
  if (at != std::string::npos) {
    auto d = KernelVersion::parse(version.substr(at + 7));
    if (d && d->v[0] == k->v[0] && d->v[1] == k->v[1]) return *d;
  }
  return *k;
}

KernelVersion running_kernel() {
  utsname u;
  if (uname(&u) != 0) throw std::runtime_error("uname failed");
  return upstream_version(u.release, u.version);
}

// Whether /proc/net/netstat names a TcpExt counter: the counters come with the code that
// increments them.
static bool netstat_has(const std::string& name) {
  std::ifstream f("/proc/net/netstat");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("TcpExt:", 0) == 0 && (" " + line + " ").find(" " + name + " ") != std::string::npos) return true;
  return false;
}

const std::map<std::string, Feature>& features() {
  static const std::map<std::string, Feature> f = [] {
    std::map<std::string, Feature> m;
    auto add = [&](Feature x) { m.emplace(x.name, std::move(x)); };
    // The sysctl alone is not enough: Debian's 5.10 has it but no migration code (no
    // reuseport_migrate_sock, no TCPMigrateReq* counters), and writing 1 changes nothing.
    add({"tcp_migrate_req",
         "request migration in the reuseport group (net.ipv4.tcp_migrate_req and its TcpExt.TCPMigrateReq* "
         "counters; 5.14, Documentation/networking/ip-sysctl.rst)",
         [] { return sysctl_exists("net.ipv4.tcp_migrate_req") && netstat_has("TCPMigrateReqSuccess"); }});
    // Loads the program and drops it at once (nothing attached): the kernel accepts an
    // sk_reuseport program with expected attach type BPF_SK_REUSEPORT_SELECT_OR_MIGRATE that
    // reads md->migrating_sk only from 5.14 (d5e4ddaeb6ab "bpf: Support socket migration by
    // eBPF.").
    add({"sk_reuseport_migrate",
         "an sk_reuseport/migrate program loads (BPF_SK_REUSEPORT_SELECT_OR_MIGRATE, md->migrating_sk; 5.14, "
         "d5e4ddaeb6ab 'bpf: Support socket migration by eBPF.')",
         [] {
#ifdef RP_HAVE_BPF
           try {
             rp::probes::ReuseportSteer prog(rp::probes::SteerProgram::Migrate);
             return true;
           } catch (const std::exception&) {
             return false;
           }
#else
           return false;  // built without BPF (RP_ENABLE_BPF=OFF)
#endif
         }});
    add({"netns_cookie", "SO_NETNS_COOKIE (5.14)", [] { return current_netns_cookie().has_value(); }});
    // Asks the scheduler, not the CPU count: a guest with 1 vCPU, or a run confined by a
    // cpuset, cannot put clients on two CPUs whatever the machine has.
    add({"two_cpus", "at least 2 CPUs this process may run on (sched_getaffinity), to pin clients to different CPUs",
         [] {
           cpu_set_t set;
           CPU_ZERO(&set);
           return sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) >= 2;
         }});
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
