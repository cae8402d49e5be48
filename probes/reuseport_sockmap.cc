#include "probes/reuseport_sockmap.h"
#include "probes/skel_util.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/bpf.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <string>

#include "bpf/reuseport_sockmap.h"
#include "harness/error.h"
#include "reuseport_sockmap.skel.h"

namespace rp::probes {

static_assert(static_cast<std::uint32_t>(SockMap::Sockmap) == RP_MAP_SOCKMAP);
static_assert(static_cast<std::uint32_t>(SockMap::Sockhash) == RP_MAP_SOCKHASH);
static_assert(static_cast<std::uint32_t>(SockMap::Sockarray) == RP_MAP_SOCKARRAY);

const char* to_string(SockmapProgram p) {
  switch (p) {
    case SockmapProgram::SelectFromMap: return "sk_reuseport (select from a socket map)";
    case SockmapProgram::LookupAssign: return "sk_lookup";
  }
  return "?";
}

const char* to_string(SockMap m) {
  switch (m) {
    case SockMap::Sockmap: return "SOCKMAP";
    case SockMap::Sockhash: return "SOCKHASH";
    case SockMap::Sockarray: return "REUSEPORT_SOCKARRAY";
  }
  return "?";
}

struct ReuseportSockmap::Impl {
  reuseport_sockmap* skel = nullptr;
  bpf_program* prog = nullptr;
  bpf_link* link = nullptr;
  ~Impl() {
    bpf_link__destroy(link);
    reuseport_sockmap__destroy(skel);
  }
};


ReuseportSockmap::ReuseportSockmap(SockmapProgram which) : impl_(std::make_unique<Impl>()) {
  // The same test hook as ReuseportSteer: our program fails while the kernel offers it.
  if (const char* v = std::getenv("RP_TEST_STEER_FAIL"); v && *v && std::string(v) != "0")
    throw SysError(std::string("bpf: load reuseport_sockmap (") + to_string(which) + ") (suppressed by RP_TEST_STEER_FAIL)",
                   EPERM);
  impl_->skel = reuseport_sockmap__open();
  if (!impl_->skel) throw_sys("bpf: open reuseport_sockmap", errno);
  auto* s = impl_->skel;
  bpf_program__set_autoload(s->progs.rp_select_from_map, which == SockmapProgram::SelectFromMap);
  bpf_program__set_autoload(s->progs.rp_lookup_assign, which == SockmapProgram::LookupAssign);
  impl_->prog = which == SockmapProgram::SelectFromMap ? s->progs.rp_select_from_map : s->progs.rp_lookup_assign;
  if (int err = reuseport_sockmap__load(s))
    throw SysError(std::string("bpf: load reuseport_sockmap (") + to_string(which) + ")", libbpf_errno(err));
}

ReuseportSockmap::~ReuseportSockmap() = default;

int ReuseportSockmap::prog_fd() const { return bpf_program__fd(impl_->prog); }

void ReuseportSockmap::attach(int sock_fd) const {
  int fd = prog_fd();
  check_sys(setsockopt(sock_fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &fd, sizeof fd),
            "setsockopt SO_ATTACH_REUSEPORT_EBPF");
}

int ReuseportSockmap::put(SockMap map, std::uint32_t key, int sock_fd) const {
  if (key >= RP_SOCKMAP_MAX_SOCKS)
    throw std::out_of_range("reuseport_sockmap: key " + std::to_string(key) + " >= " + std::to_string(RP_SOCKMAP_MAX_SOCKS));
  auto* m = impl_->skel->maps.sockmap;
  if (map == SockMap::Sockhash) m = impl_->skel->maps.sockhash;
  if (map == SockMap::Sockarray) m = impl_->skel->maps.sockarray;
  std::uint64_t v = static_cast<std::uint64_t>(sock_fd);
  int rc = bpf_map_update_elem(bpf_map__fd(m), &key, &v, BPF_ANY);
  return rc == 0 ? 0 : libbpf_errno(rc);
}

void ReuseportSockmap::set_select(SockMap map, std::uint32_t key) {
  store(impl_->skel->bss->map_kind, static_cast<__u32>(map));
  store(impl_->skel->bss->select_key, key);
}

void ReuseportSockmap::set_lookup_target(int sock_fd) const {
  std::uint32_t key = 0;
  std::uint64_t v = static_cast<std::uint64_t>(sock_fd);
  int rc = bpf_map_update_elem(bpf_map__fd(impl_->skel->maps.lookup_target), &key, &v, BPF_ANY);
  if (rc != 0) throw_sys("bpf: SOCKMAP lookup_target update", libbpf_errno(rc));
}

void ReuseportSockmap::set_lookup(std::uint16_t port, std::uint64_t flags) {
  store(impl_->skel->bss->lookup_port, static_cast<__u32>(port));
  store(impl_->skel->bss->lookup_flags, static_cast<__u64>(flags));
}

void ReuseportSockmap::attach_netns() {
  if (impl_->link) return;
  // thread-self: the case runs in a thread whose namespace may differ from the process's.
  int ns = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (ns < 0) throw_sys("open /proc/thread-self/ns/net");
  bpf_link* link = bpf_program__attach_netns(impl_->prog, ns);
  const int err = errno;
  close(ns);
  if (!link) throw_sys("bpf: attach sk_lookup to the network namespace (BPF link)", err ? err : EINVAL);
  impl_->link = link;
}

void ReuseportSockmap::detach_netns() {
  bpf_link__destroy(impl_->link);
  impl_->link = nullptr;
}

SockmapCounts ReuseportSockmap::counts() const {
  auto* b = impl_->skel->bss;
  SockmapCounts c;
  c.select_runs = load(b->select_runs);
  c.selected = load(b->selected);
  c.select_errors = load(b->select_errors);
  c.last_select_err = load(b->last_select_err);
  c.lookup_runs = load(b->lookup_runs);
  c.assigned = load(b->assigned);
  c.assign_errors = load(b->assign_errors);
  c.last_assign_err = load(b->last_assign_err);
  return c;
}

KernelAnswer kernel_answer(SockmapProgram which) {
  const bpf_insn ret[] = {
      {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 1},  // r0 = SK_PASS
      {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
  };
  const bool lookup = which == SockmapProgram::LookupAssign;
  char log[4096] = "";
  bpf_prog_load_opts opts{};
  opts.sz = sizeof opts;
  opts.log_level = 1;
  opts.log_size = sizeof log;
  opts.log_buf = log;
  opts.expected_attach_type = lookup ? BPF_SK_LOOKUP : BPF_SK_REUSEPORT_SELECT;
  errno = 0;
  const int fd = bpf_prog_load(lookup ? BPF_PROG_TYPE_SK_LOOKUP : BPF_PROG_TYPE_SK_REUSEPORT, "rp_probe", "GPL", ret, 2, &opts);
  const int err = errno;
  if (fd >= 0) {
    close(fd);
    return {KernelAnswer::Kind::Offers, std::string("the kernel loads a minimal ") + to_string(which) + " program"};
  }
  std::string said = std::string(to_string(which)) + ": BPF_PROG_LOAD of a minimal program: " + errno_name(err);
  // EINVAL: find_prog_type() or bpf_prog_load_check_attach() do not know the type.
  if (err == EINVAL || err == EOPNOTSUPP) return {KernelAnswer::Kind::Refuses, said};
  return {KernelAnswer::Kind::Unknown, said};
}

}  // namespace rp::probes
