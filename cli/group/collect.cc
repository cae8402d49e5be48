#include "cli/group/collect.h"

#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <set>
#include <sstream>

#ifdef RP_HAVE_BPF
#include "probes/reuseport_group.h"
#include "probes/reuseport_probe.h"
#endif

namespace rp::group {

namespace {

double boot_time() {
  std::ifstream in("/proc/stat");
  std::string key;
  double v = 0;
  while (in >> key)
    if (key == "btime" && in >> v) return v;
  return 0;
}

// pid -> (ppid, comm, starttime); false when the process is gone.
bool read_stat(int pid, Owner& o) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return false;
  // comm may hold spaces and ')': it ends at the last ')'.
  auto open = line.find('('), close = line.rfind(')');
  if (open == std::string::npos || close == std::string::npos) return false;
  o.comm = line.substr(open + 1, close - open - 1);
  std::istringstream rest(line.substr(close + 2));
  std::string field;
  // Fields 3.. : state ppid ...; starttime is field 22.
  for (int i = 3; i <= 22 && rest >> field; ++i) {
    if (i == 4) o.ppid = std::stoi(field);
    if (i == 22) o.start_ticks = std::stoull(field);
  }
  return true;
}

}  // namespace

std::map<std::uint64_t, std::vector<Owner>> socket_owners() {
  std::map<std::uint64_t, std::vector<Owner>> out;
  static const double btime = boot_time();
  static const long hz = sysconf(_SC_CLK_TCK);
  DIR* proc = opendir("/proc");
  if (!proc) return out;
  while (dirent* e = readdir(proc)) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
    const int pid = std::atoi(e->d_name);
    const std::string fddir = std::string("/proc/") + e->d_name + "/fd";
    DIR* fds = opendir(fddir.c_str());
    if (!fds) continue;  // gone, or a kernel thread
    std::map<std::uint64_t, std::vector<int>> mine;
    while (dirent* f = readdir(fds)) {
      if (f->d_name[0] == '.') continue;
      char target[64];
      ssize_t n = readlinkat(dirfd(fds), f->d_name, target, sizeof target - 1);
      if (n <= 8) continue;
      target[n] = 0;
      unsigned long long ino = 0;
      if (std::sscanf(target, "socket:[%llu]", &ino) == 1) mine[ino].push_back(std::atoi(f->d_name));
    }
    closedir(fds);
    if (mine.empty()) continue;
    Owner o;
    o.pid = pid;
    if (!read_stat(pid, o)) continue;
    o.start_time = btime + static_cast<double>(o.start_ticks) / static_cast<double>(hz);
    for (auto& [ino, list] : mine) {
      Owner copy = o;
      copy.fds = list;
      out[ino].push_back(std::move(copy));
    }
  }
  closedir(proc);
  return out;
}

namespace {

// A duplicate of the owner's descriptor, read with getsockopt and closed again. pidfd_getfd
// (5.6) needs PTRACE_MODE_ATTACH over the owner; errno tells why it was refused.
struct Borrowed {
  std::optional<int> incoming_cpu;
  std::optional<bool> reuseport;
  int err = 0;
};

Borrowed borrow(const Owner& o) {
  Borrowed b;
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, o.pid, 0));
  if (pidfd < 0) {
    b.err = errno;
    return b;
  }
  int fd = static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, o.fds.front(), 0));
  b.err = fd < 0 ? errno : 0;
  close(pidfd);
  if (fd < 0) return b;
  int v = 0;
  socklen_t len = sizeof v;
  if (getsockopt(fd, SOL_SOCKET, SO_INCOMING_CPU, &v, &len) == 0) b.incoming_cpu = v;
  len = sizeof v;
  if (getsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &v, &len) == 0) b.reuseport = v != 0;
  close(fd);
  return b;
}

}  // namespace

struct Collector::Impl {
  int protocol = IPPROTO_TCP;
  std::uint16_t port = 0;
#ifdef RP_HAVE_BPF
  std::unique_ptr<rp::probes::GroupIterator> iter;
  std::unique_ptr<rp::probes::ReuseportProbe> probe;
#endif
  std::optional<std::map<std::uint64_t, std::uint64_t>> last_counts;
  std::map<std::uint64_t, int> numbers;  // sk_reuseport_cb address -> its group's number

  int number_of(std::uint64_t group) {
    if (!group) return 0;
    return numbers.try_emplace(group, static_cast<int>(numbers.size()) + 1).first->second;
  }

  std::optional<std::map<std::uint64_t, std::uint64_t>> counts() const {
#ifdef RP_HAVE_BPF
    if (protocol == IPPROTO_UDP) return iter ? iter->udp_queued() : std::nullopt;
    if (!probe) return std::nullopt;
    auto r = probe->read();
    if (!r.listeners) return std::nullopt;
    std::map<std::uint64_t, std::uint64_t> out;
    for (const auto& [cookie, s] : *r.listeners) out[cookie] = s.children;
    return out;
#else
    return std::nullopt;
#endif
  }
};

Collector::Collector(int protocol, std::uint16_t port) : impl_(std::make_unique<Impl>()) {
  impl_->protocol = protocol;
  impl_->port = port;
  const bool udp = protocol == IPPROTO_UDP;
  sources_["members"] = std::string("NETLINK_SOCK_DIAG, ") + (udp ? "UDP sockets" : "TCP listeners") + " of the port";
  sources_["owners"] = "/proc/*/fd links socket:[inode]; start time from /proc/PID/stat";
#ifdef RP_HAVE_BPF
  std::uint64_t netns = 0;
  try {
    netns = rp::probes::current_netns_cookie();
  } catch (const std::exception&) {
    // before 5.14: the UDP count then takes every namespace's sockets of the port, but
    // it is keyed by cookie and only the namespace's own members are looked up.
  }
  try {
    // Test hook: the path of a kernel without socket iterators (before 5.9), taken on this
    // one: groups inferred, SO_INCOMING_CPU and SO_REUSEPORT through pidfd_getfd.
    if (const char* v = std::getenv("RP_TEST_GROUP_NO_ITER"); v && *v && std::string(v) != "0")
      throw std::runtime_error("suppressed by RP_TEST_GROUP_NO_ITER");
    impl_->iter = std::make_unique<rp::probes::GroupIterator>(
        rp::probes::GroupIterator::Options{.port = port, .count_udp = udp, .netns_cookie = netns});
    sources_["group"] = "the kernel: sk->sk_reuseport_cb->reuseport_id, read by a BPF socket iterator (iter/tcp, iter/udp)";
    sources_["program"] = "the kernel: sk_reuseport_cb->prog (id, type, name), read by the socket iterator";
    sources_["incoming_cpu"] = "the kernel: sk->sk_incoming_cpu, read by the socket iterator";
  } catch (const std::exception& e) {
    const std::string why = e.what();
    not_observable_["group_id"] = "the socket iterator did not load (" + why + "): groups are inferred from family, "
                                  "address, port, device and uid";
    not_observable_["program"] = "not observable here: no getsockopt() returns a reuseport group's program and the "
                                 "socket iterator did not load (" + why + ")";
    sources_["group"] = "inferred: sockets sharing protocol, family, address, port, device and uid";
    sources_["incoming_cpu"] = "getsockopt(SO_INCOMING_CPU) on a duplicate from pidfd_getfd(2), closed after";
  }
  if (udp) {
    if (impl_->iter && impl_->iter->udp_why().empty())
      sources_["share"] = "datagrams queued per socket: tracepoint sock:sk_data_ready (tp_btf), by cookie; drops "
                          "on a full buffer are not in it (see drops)";
    else
      not_observable_["share"] = "datagrams per socket: " +
                                 (impl_->iter ? impl_->iter->udp_why() : std::string("the group stem did not load")) +
                                 "; sock_diag's receive queue and drops are shown instead";
  } else {
    try {
      impl_->probe = std::make_unique<rp::probes::ReuseportProbe>(rp::probes::ProbeOptions{
          .port = port, .netns_cookie = netns, .lifecycle = false, .drops = false, .per_listener = true,
          .migrate_fexit = false});
      // Only the children per listener are read here: the other programs would cost the
      // server's connection rate for nothing.
      if (!impl_->probe->capabilities().per_listener) {
        not_observable_["share"] = "children per listener: " + impl_->probe->capabilities().per_listener_why;
        impl_->probe.reset();
      } else {
        sources_["share"] = "children queued per listener: the reuseport probe's tracepoint sock:sk_data_ready, by cookie";
      }
    } catch (const std::exception& e) {
      not_observable_["share"] = std::string("the reuseport probe did not load: ") + e.what();
    }
  }
#else
  not_observable_["group_id"] = "this build has no BPF (RP_ENABLE_BPF=OFF): groups are inferred";
  not_observable_["program"] = "not observable here: this build has no BPF, and no getsockopt() returns it";
  not_observable_["share"] = "this build has no BPF (RP_ENABLE_BPF=OFF)";
  sources_["group"] = "inferred: sockets sharing protocol, family, address, port, device and uid";
  sources_["incoming_cpu"] = "getsockopt(SO_INCOMING_CPU) on a duplicate from pidfd_getfd(2), closed after";
#endif
  impl_->last_counts = impl_->counts();
}

Collector::~Collector() = default;

Sample Collector::collect() {
  auto& im = *impl_;
  const auto now_counts = im.counts();
  Sample s;
  // sock_diag first: a dump gives every socket it reports a cookie (sock_gen_cookie()), which
  // the iterator then reads raw. The other order would leave a socket new since the last
  // sample without a cookie in the iterator's record, and so without its kernel group.
  const auto sockets = port_sockets(im.protocol, im.port);
  // cookie -> the iterator's record, made into the model's terms.
  std::map<std::uint64_t, std::pair<KernelGroup, int>> kernel;
#ifdef RP_HAVE_BPF
  if (im.iter)
    for (auto& k : im.iter->read(im.protocol))
      kernel[k.cookie] = {KernelGroup{k.reuseport, k.has_group, im.number_of(k.group), k.reuseport_id, k.num_socks,
                                      k.num_closed_socks,
                                      k.has_prog, k.prog_id,
                                      // SO_ATTACH_REUSEPORT_CBPF's program is made in the kernel
                                      // (bpf_prog_create_from_user): no id, type unspec.
                                      k.prog_id == 0 && k.prog_type == 0 ? std::string("classic")
                                                                        : rp::probes::prog_type_name(k.prog_type),
                                      rp::probes::attach_type_name(k.prog_type, k.prog_attach_type), k.prog_name},
                          k.incoming_cpu};
#endif
  const auto owners = socket_owners();
  for (const auto& d : sockets) {
    Member m;
    m.diag = d;
    if (auto it = owners.find(d.inode); it != owners.end()) m.owners = it->second;
    if (auto it = kernel.find(d.cookie); it != kernel.end()) {
      m.kernel = it->second.first;
      m.reuseport = it->second.first.reuseport;
      m.incoming_cpu = it->second.second;
    } else if (!m.owners.empty()) {
      Borrowed b = borrow(m.owners.front());
      m.incoming_cpu = b.incoming_cpu;
      m.reuseport = b.reuseport;
      if (b.err)
        not_observable_["incoming_cpu"] = std::string("pidfd_getfd(2) refused: ") + std::strerror(b.err);
    }
    s.members.push_back(std::move(m));
  }
  s.groups = assign_groups(s.members);
  std::optional<std::map<std::uint64_t, std::uint64_t>> fresh;
  if (now_counts && im.last_counts) fresh = delta(*now_counts, *im.last_counts);
  assign_shares(s.members, s.groups, fresh);
  if (fresh) {
    std::set<std::uint64_t> listed;
    for (const auto& m : s.members) listed.insert(m.diag.cookie);
    for (const auto& [cookie, n] : *fresh)
      if (n && !listed.count(cookie)) s.gone[cookie] = n;
  }
  im.last_counts = now_counts;
  return s;
}

}  // namespace rp::group
