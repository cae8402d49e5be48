// same_euid_rule
//
// socket(7): "To prevent port hijacking, all of the processes binding to the same address
// must have the same effective UID." The kernel compares the uids of the sockets, not of
// the processes: sock_alloc() stamps the socket inode with current_fsuid() when the socket
// is created, and inet_bind_conflict() / udp_lib_lport_inuse() compare that value of both
// sockets (sock_i_uid(); newer kernels keep it in sk->sk_uid) since "soreuseport:
// infrastructure" (055dc21a1d1d, 3.9). So a socket created as root and bound after
// setresuid() joins a root group, and what counts is the filesystem uid (which setresuid()
// sets along with the effective one, and setfsuid() alone).
//
// Scenario, per variant (protocol, family, how the second socket comes about):
//   1. In a fresh network namespace, as root, open socket A with SO_REUSEPORT, bind it to
//      loopback on a fixed port (TCP: listen()).
//   2. Fork a child (the uid changes stay in that process; nothing global is touched).
//      The child makes socket B with SO_REUSEPORT, and around it changes its credentials:
//        same_uid:              stays root (the control);
//        other_uid:             setresuid(65534) before socket(), then bind();
//        root_socket_then_setuid: socket() as root, then setresuid(65534), then bind();
//        other_fsuid:           setfsuid(65534) only (effective uid stays 0) before socket().
//   3. The child reports what bind() returned; the parent records it ("OK" or the errno).
//   4. Compare with cases/expectations.json: B joins exactly when it was created with A's
//      (filesystem) uid.

#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/fsuid.h>
#include <sys/wait.h>

#include "cases/lib/case_test.h"
#include "harness/error.h"
#include "harness/socket.h"

namespace rp::cases {
namespace {

enum class Cred { SameUid, OtherUid, RootSocketThenSetuid, OtherFsuid };

struct Variant {
  Proto proto;
  Family family;
  Cred cred;

  std::string name() const {
    const char* c = cred == Cred::SameUid ? "same_uid"
                    : cred == Cred::OtherUid ? "other_uid"
                    : cred == Cred::RootSocketThenSetuid ? "root_socket_then_setuid"
                                                         : "other_fsuid";
    return std::string(proto == Proto::Tcp ? "tcp" : "udp") + (family == Family::V4 ? "4_" : "6_") + c;
  }
};

constexpr uint16_t kPort = 47320;
constexpr uid_t kOther = 65534;  // nobody

// What the child saw: the step that failed before bind() (0: none) and the errnos.
struct ChildReport {
  int setup_step;
  int setup_errno;
  int bind_errno;
};

UniqueFd reuseport_socket(const Variant& v) {
  const int type = (v.proto == Proto::Tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC;
  int fd = socket(af_of(v.family), type, 0);
  if (fd < 0) return UniqueFd();
  const int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
    ::close(fd);
    return UniqueFd();
  }
  return UniqueFd(fd);
}

// Runs in the forked child: only syscalls, then _exit.
ChildReport second_socket(const Variant& v, const sockaddr_storage& ss, socklen_t len) {
  ChildReport r{0, 0, 0};
  auto fail = [&](int step) {
    r.setup_step = step;
    r.setup_errno = errno;
    return r;
  };
  if (v.cred == Cred::OtherUid && setresuid(kOther, kOther, kOther) != 0) return fail(1);
  if (v.cred == Cred::OtherFsuid) {
    setfsuid(kOther);
    if (static_cast<uid_t>(setfsuid(static_cast<uid_t>(-1))) != kOther) return fail(1);
  }
  UniqueFd b = reuseport_socket(v);
  if (!b) return fail(2);
  if (v.cred == Cred::RootSocketThenSetuid && setresuid(kOther, kOther, kOther) != 0) return fail(1);
  r.bind_errno = bind(b.get(), reinterpret_cast<const sockaddr*>(&ss), len) == 0 ? 0 : errno;
  return r;
}

nlohmann::json scenario(const Variant& v) {
  sockaddr_storage ss;
  const Endpoint ep = Endpoint::loopback(v.family, kPort);
  const socklen_t len = ep.to_sockaddr(ss);
  UniqueFd a = reuseport_socket(v);
  if (!a) throw_sys("socket A with SO_REUSEPORT");
  check_sys(bind(a.get(), reinterpret_cast<sockaddr*>(&ss), len), "bind A " + ep.str());
  if (v.proto == Proto::Tcp) check_sys(listen(a.get(), 16), "listen A");

  int pipefd[2];
  check_sys(pipe2(pipefd, O_CLOEXEC), "pipe2");
  UniqueFd rd(pipefd[0]), wr(pipefd[1]);
  const pid_t pid = fork();
  if (pid < 0) throw_sys("fork");
  if (pid == 0) {
    rd.reset();
    ChildReport r = second_socket(v, ss, len);
    _exit(write(wr.get(), &r, sizeof r) == sizeof r ? 0 : 1);
  }
  wr.reset();
  ChildReport r{};
  const ssize_t n = read(rd.get(), &r, sizeof r);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (n != static_cast<ssize_t>(sizeof r) || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw std::runtime_error("the child that binds the second socket did not report");
  if (r.setup_step != 0) {
    static const char* steps[] = {"", "change credentials", "socket B with SO_REUSEPORT"};
    throw SysError(std::string("child: ") + steps[r.setup_step], r.setup_errno);
  }
  nlohmann::json o;
  o["second_bind"] = r.bind_errno == 0 ? "OK" : errno_name(r.bind_errno);
  return o;
}

std::vector<Variant> variants() {
  std::vector<Variant> out;
  for (Proto p : {Proto::Tcp, Proto::Udp})
    for (Family f : {Family::V4, Family::V6})
      for (Cred c : {Cred::SameUid, Cred::OtherUid, Cred::RootSocketThenSetuid, Cred::OtherFsuid})
        out.push_back({p, f, c});
  return out;
}

RP_CASE(same_euid_rule, ::testing::ValuesIn(variants()));

}  // namespace
}  // namespace rp::cases
