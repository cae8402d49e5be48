#include "cases/lib/kernel.h"

#include <sched.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <stdexcept>
#include <variant>

#include "harness/error.h"

#include "harness/scope.h"
#include "harness/sockdiag.h"
#ifdef RP_HAVE_BPF
#include "probes/reuseport_sockmap.h"
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

FeatureProbeError::FeatureProbeError(const std::string& feature, const std::string& why)
    : std::runtime_error("feature " + feature + ": the probe failed (the tool's failure, not the kernel's answer): " +
                         why),
      feature_(feature) {}

namespace {

// Whether /proc/net/netstat names a TcpExt counter: the counters come with the code that
// increments them. A file that cannot be read, or has no TcpExt line, is no answer.
bool netstat_has(const std::string& name) {
  std::ifstream f("/proc/net/netstat");
  if (!f) throw std::runtime_error("cannot read /proc/net/netstat");
  std::string line;
  bool tcpext = false;
  while (std::getline(f, line)) {
    if (line.rfind("TcpExt:", 0) != 0) continue;
    tcpext = true;
    if ((" " + line + " ").find(" " + name + " ") != std::string::npos) return true;
  }
  if (!tcpext) throw std::runtime_error("/proc/net/netstat has no TcpExt line");
  return false;
}

// ENOENT is the kernel's answer (no such sysctl); any other failure to look is not.
bool sysctl_present(const std::string& name) {
  if (access(sysctl_path(name).c_str(), F_OK) == 0) return true;
  if (errno == ENOENT) return false;
  throw_sys("access " + sysctl_path(name));
}

// A dump of the namespace's TCP listeners, the request the cases make. A kernel without
// inet_diag or tcp_diag (not built in, module not loaded: the guest has no modprobe)
// answers ENOENT (sock_diag_rcv_msg / inet_diag_lock_handler find no handler), one
// without NETLINK_SOCK_DIAG fails socket() with EPROTONOSUPPORT; EOPNOTSUPP is the
// refusal of a handler that does not dump. Any other failure is not the kernel's answer.
bool sock_diag_answers() {
  try {
    (void)rp::tcp_listening_ports();
    return true;
  } catch (const rp::SysError& e) {
    if (e.err() == ENOENT || e.err() == EOPNOTSUPP || e.err() == EPROTONOSUPPORT) return false;
    throw;
  }
}

// bpf() with a command no kernel has: ENOSYS only without CONFIG_BPF_SYSCALL; a kernel
// that has the syscall answers EINVAL (or EPERM, unprivileged).
bool bpf_syscall_present() {
  errno = 0;
  if (syscall(__NR_bpf, -1, nullptr, 0) == 0) return true;
  return errno != ENOSYS;
}

// The kernel's BTF is in sysfs; an absent file is the kernel's answer only where sysfs is
// mounted (the guest's init mounts it; a run without /sys cannot tell).
bool kernel_btf_present() {
  if (access("/sys/kernel/btf/vmlinux", F_OK) == 0) return true;
  if (errno != ENOENT) throw_sys("access /sys/kernel/btf/vmlinux");
  if (access("/sys/kernel", F_OK) != 0) throw_sys("access /sys/kernel (is sysfs mounted?)");
  return false;
}

#ifdef RP_HAVE_BPF
// Our program first (it is what the cases load); only when it does not load is the kernel
// asked with a minimal program of the same type, attach type and context field: a kernel
// that refuses that lacks the feature; one that accepts it, or cannot be asked, leaves the
// failure ours.
bool steer_program_loads(rp::probes::SteerProgram which) {
  try {
    rp::probes::ReuseportSteer prog(which);
    return true;
  } catch (const std::exception& ours) {
    const auto k = rp::probes::kernel_answer(which);
    switch (k.kind) {
      case rp::probes::KernelAnswer::Kind::Refuses: return false;
      case rp::probes::KernelAnswer::Kind::Offers:
        throw std::runtime_error(std::string(ours.what()) + "; yet " + k.why + ": our program is at fault");
      case rp::probes::KernelAnswer::Kind::Unknown: break;
    }
    throw std::runtime_error(std::string(ours.what()) + "; asking the kernel failed too: " + k.why);
  }
}

// The same for the programs of bpf/reuseport_sockmap.bpf.c.
bool sockmap_program_loads(rp::probes::SockmapProgram which) {
  try {
    rp::probes::ReuseportSockmap prog(which);
    return true;
  } catch (const std::exception& ours) {
    const auto k = rp::probes::kernel_answer(which);
    switch (k.kind) {
      case rp::probes::KernelAnswer::Kind::Refuses: return false;
      case rp::probes::KernelAnswer::Kind::Offers:
        throw std::runtime_error(std::string(ours.what()) + "; yet " + k.why + ": our program is at fault");
      case rp::probes::KernelAnswer::Kind::Unknown: break;
    }
    throw std::runtime_error(std::string(ours.what()) + "; asking the kernel failed too: " + k.why);
  }
}
#endif

}  // namespace

const std::map<std::string, Feature>& features() {
  static const std::map<std::string, Feature> f = [] {
    std::map<std::string, Feature> m;
    auto add = [&](Feature x) { m.emplace(x.name, std::move(x)); };
    // The sysctl alone is not enough: Debian's 5.10 has it but no migration code (no
    // reuseport_migrate_sock, no TCPMigrateReq* counters), and writing 1 changes nothing.
    add({"tcp_migrate_req",
         "request migration in the reuseport group (net.ipv4.tcp_migrate_req and its TcpExt.TCPMigrateReq* "
         "counters; 5.14, Documentation/networking/ip-sysctl.rst)",
         [] { return sysctl_present("net.ipv4.tcp_migrate_req") && netstat_has("TCPMigrateReqSuccess"); }});
    // Loads the program and drops it at once (nothing attached): the kernel accepts an
    // sk_reuseport program with expected attach type BPF_SK_REUSEPORT_SELECT_OR_MIGRATE that
    // reads md->migrating_sk only from 5.14 (d5e4ddaeb6ab "bpf: Support socket migration by
    // eBPF."). A load failure is the kernel's refusal only when a minimal program is refused
    // too (probes/reuseport_steer.h, kernel_answer).
    add({"sk_reuseport_migrate",
         "an sk_reuseport/migrate program loads (BPF_SK_REUSEPORT_SELECT_OR_MIGRATE, md->migrating_sk; 5.14, "
         "d5e4ddaeb6ab 'bpf: Support socket migration by eBPF.')",
         [] {
#ifdef RP_HAVE_BPF
           return steer_program_loads(rp::probes::SteerProgram::Migrate);
#else
           return false;  // built without BPF (RP_ENABLE_BPF=OFF)
#endif
         }});
    // The accept-queue length of a listener comes only from sock_diag (what `ss -lnt`
    // shows): Debian builds it as modules, which the matrix loads from the kernel's
    // package; a kernel given as a bare image may have neither.
    add({"sock_diag",
         "sock_diag dumps of TCP sockets (NETLINK_SOCK_DIAG, what ss reads): CONFIG_INET_DIAG and "
         "CONFIG_INET_TCP_DIAG, built in or as loaded modules inet_diag and tcp_diag (CONFIG_INET_UDP_DIAG, "
         "udp_diag, is the UDP half)",
         [] { return sock_diag_answers(); }});
    // Listed before the program features in `requires`, so that a kernel without them is
    // told what it lacks rather than that one program did not load.
    add({"bpf_syscall", "the bpf() syscall (CONFIG_BPF_SYSCALL), for the eBPF programs the case loads",
         [] { return bpf_syscall_present(); }});
    add({"btf",
         "the kernel's BTF, /sys/kernel/btf/vmlinux (CONFIG_DEBUG_INFO_BTF): libbpf relocates our CO-RE "
         "sk_reuseport/migrate program with it",
         [] { return kernel_btf_present(); }});
    add({"netns_cookie", "SO_NETNS_COOKIE (5.14)", [] { return current_netns_cookie().has_value(); }});
    // Asks the scheduler, not the CPU count: a guest with 1 vCPU, or a run confined by a
    // cpuset, cannot put clients on two CPUs whatever the machine has. A failing call is
    // no answer.
    add({"two_cpus", "at least 2 CPUs this process may run on (sched_getaffinity), to pin clients to different CPUs",
         [] {
           cpu_set_t set;
           CPU_ZERO(&set);
           if (sched_getaffinity(0, sizeof set, &set) != 0) throw_sys("sched_getaffinity");
           return CPU_COUNT(&set) >= 2;
         }});
    add({"ip_autobind_reuse",
         "net.ipv4.ip_autobind_reuse: bind(port 0) may reuse a port whose sockets all have SO_REUSEADDR when the "
         "range is exhausted (5.7, 4b01a9674231; Documentation/networking/ip-sysctl.rst)",
         [] { return sysctl_present("net.ipv4.ip_autobind_reuse"); }});
    // Loads our sk_lookup program and drops it (nothing attached): BPF_PROG_TYPE_SK_LOOKUP
    // with attach type BPF_SK_LOOKUP came in 5.9 (e9ddbb7707ff 'bpf: Introduce SK_LOOKUP
    // program type with a dedicated attach point'); a load failure is the kernel's refusal
    // only when a minimal sk_lookup program is refused too.
    add({"sk_lookup",
         "an sk_lookup program loads (BPF_PROG_TYPE_SK_LOOKUP, attach type BPF_SK_LOOKUP; 5.9, e9ddbb7707ff "
         "'bpf: Introduce SK_LOOKUP program type with a dedicated attach point')",
         [] {
#ifdef RP_HAVE_BPF
           return sockmap_program_loads(rp::probes::SockmapProgram::LookupAssign);
#else
           return false;  // built without BPF (RP_ENABLE_BPF=OFF)
#endif
         }});
    return m;
  }();
  return f;
}

bool has_feature(const std::string& name) {
  // The answer, or the probe's failure: a failure is not probed again (it would load the
  // program once per variant) but is thrown to every case that asks.
  static std::mutex mu;
  static std::map<std::string, std::variant<bool, std::string>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(name);
  if (it == cache.end()) {
    auto f = features().find(name);
    if (f == features().end()) throw std::invalid_argument("unknown feature '" + name + "'");
    try {
      it = cache.emplace(name, f->second.probe()).first;
    } catch (const std::exception& e) {
      it = cache.emplace(name, std::string(e.what())).first;
    }
  }
  if (const auto* why = std::get_if<std::string>(&it->second)) throw FeatureProbeError(name, *why);
  return std::get<bool>(it->second);
}

}  // namespace rp::cases
