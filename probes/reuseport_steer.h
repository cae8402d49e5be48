// RAII loader for bpf/reuseport_steer.bpf.c: programs that choose the socket of a
// reuseport group (socket filter, sk_reuseport, sk_reuseport/migrate), attached by fd to a
// socket of the group with SO_ATTACH_REUSEPORT_EBPF. Nothing is pinned and no link is
// created: the group holds the program, and it is gone once the group's last socket closes
// and this object is destroyed (or detach() ran).
//
//   rp::probes::ReuseportSteer steer(rp::probes::SteerProgram::Select);
//   steer.set_socket(0, fd0); steer.set_socket(1, fd1);
//   steer.set_select(1);
//   steer.attach(fd0);
//   ... traffic ...  steer.counts().selected
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace rp::probes {

enum class SteerProgram {
  Filter,   // SEC("socket"): returns the index set_steer_index() gave
  Select,   // SEC("sk_reuseport"): bpf_sk_select_reuseport(socks[select_key]) or SK_DROP
  Migrate,  // SEC("sk_reuseport/migrate"): also picks (or drops) migrating children
};
const char* to_string(SteerProgram p);

struct SteerCounts {
  std::uint64_t filter_runs = 0;
  std::uint64_t select_runs = 0;
  std::uint64_t selected = 0;
  std::uint64_t select_errors = 0;
  std::uint64_t dropped = 0;
  std::uint64_t migrate_runs = 0;
  std::uint64_t migrated = 0;
  std::uint64_t migrate_dropped = 0;
  std::uint64_t migrate_errors = 0;
};

class ReuseportSteer {
 public:
  // Opens the object and loads only `which` (so a kernel without the migrate attach type
  // can still load the others). Throws rp::SysError naming the step, with the verifier's
  // last lines for a load failure.
  explicit ReuseportSteer(SteerProgram which);
  ~ReuseportSteer();
  ReuseportSteer(const ReuseportSteer&) = delete;
  ReuseportSteer& operator=(const ReuseportSteer&) = delete;

  int prog_fd() const;
  // setsockopt(SO_ATTACH_REUSEPORT_EBPF) on a socket of the group: the program then runs
  // for every packet the group receives.
  void attach(int sock_fd) const;
  // REUSEPORT_SOCKARRAY[key] = the socket (a bound reuseport socket; TCP: listening).
  void set_socket(std::uint32_t key, int sock_fd) const;
  // The program's knobs (its .bss), read by every run, so they may change while it runs.
  void set_steer_index(std::uint32_t index);             // Filter: the index returned
  void set_select(std::uint32_t key, bool drop = false);  // Select (and Migrate's new packets)
  void set_select_new(bool on);                           // Migrate: steer new packets too
  void set_migrate(std::uint32_t key, bool drop = false); // Migrate: children's new listener
  SteerCounts counts() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// What the running kernel answers when asked for a program type (and, for Migrate, the
// attach type and the context field the program needs), asked with a program of a few
// fixed instructions that cannot be wrong, so that a failure to load OUR program (the
// object, the verifier's view of it, a test hook) is told apart from a kernel that lacks
// the feature: the first is an error of the tool, only the second a reason to skip.
struct KernelAnswer {
  enum class Kind {
    Offers,   // the minimal program loaded
    Refuses,  // EINVAL (unknown program or attach type), or the verifier names the
              // context field unknown (Migrate on a kernel before 5.14)
    Unknown,  // anything else (EPERM, ENOMEM, ...): the kernel was not really asked
  } kind = Kind::Unknown;
  std::string why;  // what the kernel said, for a message
};
KernelAnswer kernel_answer(SteerProgram which);

// A classic BPF program (SO_ATTACH_REUSEPORT_CBPF) that returns `index` for every packet.
void attach_cbpf_index(int sock_fd, std::uint32_t index);
// SO_DETACH_REUSEPORT_BPF (5.3): the group goes back to the hash.
void detach_reuseport_bpf(int sock_fd);
// The fd of this process that refers to the socket with this inode (as sock_diag and
// ListenerGroup::inode() name it), found through /proc/self/fd; throws when there is none.
int socket_fd_by_inode(std::uint64_t inode);

}  // namespace rp::probes
