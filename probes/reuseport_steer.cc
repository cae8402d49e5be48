#include "probes/reuseport_steer.h"
#include "probes/skel_util.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <linux/filter.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/bpf.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>

#include "bpf/reuseport_steer.h"
#include "harness/error.h"
#include "reuseport_steer.skel.h"

#ifndef SO_DETACH_REUSEPORT_BPF
#define SO_DETACH_REUSEPORT_BPF 68
#endif

namespace rp::probes {

const char* to_string(SteerProgram p) {
  switch (p) {
    case SteerProgram::Filter: return "socket filter";
    case SteerProgram::Select: return "sk_reuseport";
    case SteerProgram::Migrate: return "sk_reuseport/migrate";
  }
  return "?";
}

struct ReuseportSteer::Impl {
  reuseport_steer* skel = nullptr;
  bpf_program* prog = nullptr;
  ~Impl() { reuseport_steer__destroy(skel); }
};


ReuseportSteer::ReuseportSteer(SteerProgram which) : impl_(std::make_unique<Impl>()) {
  // Test hook: our program fails to load while the kernel offers everything it needs, so
  // tests can show that this is an ERROR, not a kernel that lacks the feature.
  if (const char* v = std::getenv("RP_TEST_STEER_FAIL"); v && *v && std::string(v) != "0")
    throw SysError(std::string("bpf: load reuseport_steer (") + to_string(which) + ") (suppressed by RP_TEST_STEER_FAIL)",
                   EPERM);
  impl_->skel = reuseport_steer__open();
  if (!impl_->skel) throw_sys("bpf: open reuseport_steer", errno);
  auto* s = impl_->skel;
  bpf_program__set_autoload(s->progs.rp_steer_filter, which == SteerProgram::Filter);
  bpf_program__set_autoload(s->progs.rp_steer_select, which == SteerProgram::Select);
  bpf_program__set_autoload(s->progs.rp_steer_migrate, which == SteerProgram::Migrate);
  impl_->prog = which == SteerProgram::Filter   ? s->progs.rp_steer_filter
                : which == SteerProgram::Select ? s->progs.rp_steer_select
                                                : s->progs.rp_steer_migrate;
  if (int err = reuseport_steer__load(s))
    throw SysError(std::string("bpf: load reuseport_steer (") + to_string(which) + ")", libbpf_errno(err));
}

ReuseportSteer::~ReuseportSteer() = default;

int ReuseportSteer::prog_fd() const { return bpf_program__fd(impl_->prog); }

void ReuseportSteer::attach(int sock_fd) const {
  int fd = prog_fd();
  check_sys(setsockopt(sock_fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &fd, sizeof fd),
            "setsockopt SO_ATTACH_REUSEPORT_EBPF");
}

void ReuseportSteer::set_socket(std::uint32_t key, int sock_fd) const {
  if (key >= RP_STEER_MAX_SOCKS)
    throw std::out_of_range("reuseport_steer: slot " + std::to_string(key) + " >= " + std::to_string(RP_STEER_MAX_SOCKS));
  std::uint64_t v = static_cast<std::uint64_t>(sock_fd);
  int rc = bpf_map_update_elem(bpf_map__fd(impl_->skel->maps.socks), &key, &v, BPF_ANY);
  if (rc != 0) throw_sys("bpf: REUSEPORT_SOCKARRAY update slot " + std::to_string(key), libbpf_errno(rc));
}

void ReuseportSteer::set_steer_index(std::uint32_t index) { store(impl_->skel->bss->steer_index, index); }
void ReuseportSteer::set_select(std::uint32_t key, bool drop) {
  store(impl_->skel->bss->select_key, key);
  store(impl_->skel->bss->select_drop, static_cast<__u32>(drop));
}
void ReuseportSteer::set_select_new(bool on) { store(impl_->skel->bss->select_new, static_cast<__u32>(on)); }
void ReuseportSteer::set_migrate(std::uint32_t key, bool drop) {
  store(impl_->skel->bss->migrate_key, key);
  store(impl_->skel->bss->migrate_drop, static_cast<__u32>(drop));
}

SteerCounts ReuseportSteer::counts() const {
  auto* b = impl_->skel->bss;
  SteerCounts c;
  c.filter_runs = load(b->filter_runs);
  c.select_runs = load(b->select_runs);
  c.selected = load(b->selected);
  c.select_errors = load(b->select_errors);
  c.dropped = load(b->dropped);
  c.migrate_runs = load(b->migrate_runs);
  c.migrated = load(b->migrated);
  c.migrate_dropped = load(b->migrate_dropped);
  c.migrate_errors = load(b->migrate_errors);
  return c;
}

KernelAnswer kernel_answer(SteerProgram which) {
  // r0 = SK_PASS (1: also a harmless socket-filter length); exit. Migrate first reads
  // md->migrating_sk, the field that came with the attach type (5.14, d5e4ddaeb6ab):
  // kernels before it accept any expected_attach_type for sk_reuseport (their
  // bpf_prog_load_check_attach() has no case for it), so only the field access tells.
  const bpf_insn ret[] = {
      {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 1},
      {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
  };
  const bpf_insn migrate[] = {
      {BPF_LDX | BPF_MEM | BPF_DW, BPF_REG_2, BPF_REG_1, static_cast<__s16>(offsetof(sk_reuseport_md, migrating_sk)), 0},
      ret[0],
      ret[1],
  };
  const bool m = which == SteerProgram::Migrate;
  const bpf_prog_type type = which == SteerProgram::Filter ? BPF_PROG_TYPE_SOCKET_FILTER : BPF_PROG_TYPE_SK_REUSEPORT;
  char log[4096] = "";
  bpf_prog_load_opts opts{};
  opts.sz = sizeof opts;
  opts.log_level = 1;
  opts.log_size = sizeof log;
  opts.log_buf = log;
  if (which == SteerProgram::Select) opts.expected_attach_type = BPF_SK_REUSEPORT_SELECT;
  if (m) opts.expected_attach_type = BPF_SK_REUSEPORT_SELECT_OR_MIGRATE;
  errno = 0;
  const int fd = m ? bpf_prog_load(type, "rp_probe", "GPL", migrate, 3, &opts)
                   : bpf_prog_load(type, "rp_probe", "GPL", ret, 2, &opts);
  const int err = errno;
  if (fd >= 0) {
    close(fd);
    return {KernelAnswer::Kind::Offers, std::string("the kernel loads a minimal ") + to_string(which) + " program"};
  }
  std::string said = std::string(to_string(which)) + ": BPF_PROG_LOAD of a minimal program: " + errno_name(err);
  std::string last(log);
  while (!last.empty() && last.back() == '\n') last.pop_back();
  if (auto nl = last.rfind('\n'); nl != std::string::npos) last = last.substr(nl + 1);
  if (!last.empty()) said += " (verifier: " + last + ")";
  // EINVAL: find_prog_type() or bpf_prog_load_check_attach() do not know the type or the
  // attach type. EACCES with this line: sk_reuseport_is_valid_access() does not know
  // md->migrating_sk.
  if (err == EINVAL || err == EOPNOTSUPP) return {KernelAnswer::Kind::Refuses, said};
  if (m && err == EACCES && std::string(log).find("invalid bpf_context access") != std::string::npos)
    return {KernelAnswer::Kind::Refuses, said};
  return {KernelAnswer::Kind::Unknown, said};
}

void attach_cbpf_index(int sock_fd, std::uint32_t index) {
  sock_filter code[] = {{BPF_RET | BPF_K, 0, 0, index}};
  sock_fprog prog{1, code};
  check_sys(setsockopt(sock_fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof prog),
            "setsockopt SO_ATTACH_REUSEPORT_CBPF");
}

void detach_reuseport_bpf(int sock_fd) {
  int zero = 0;
  check_sys(setsockopt(sock_fd, SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, &zero, sizeof zero),
            "setsockopt SO_DETACH_REUSEPORT_BPF");
}

int socket_fd_by_inode(std::uint64_t inode) {
  const std::string want = "socket:[" + std::to_string(inode) + "]";
  DIR* d = opendir("/proc/self/fd");
  if (!d) throw_sys("opendir /proc/self/fd");
  int found = -1;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    char target[64];
    std::string path = std::string("/proc/self/fd/") + e->d_name;
    ssize_t n = readlink(path.c_str(), target, sizeof target - 1);
    if (n <= 0) continue;
    target[n] = 0;
    if (want == target) {
      found = std::atoi(e->d_name);
      break;
    }
  }
  closedir(d);
  if (found < 0) throw SysError("find the fd of socket inode " + std::to_string(inode) + " in /proc/self/fd", ENOENT);
  return found;
}

}  // namespace rp::probes
