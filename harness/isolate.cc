#include "harness/isolate.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "harness/error.h"
#include "harness/fd.h"
#include "harness/scope.h"

namespace rp {

std::string IsolatedResult::describe() const {
  switch (status) {
    case Status::Ok: return "ok";
    case Status::Error: return "error: " + payload;
    case Status::Crashed: return "crashed: " + payload;
    case Status::Timeout: return "timeout: " + payload;
  }
  return "?";
}

static void write_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = write(fd, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

IsolatedResult run_isolated(const std::function<std::string()>& fn, const IsolateOptions& opts) {
  int p[2];
  check_sys(pipe2(p, O_CLOEXEC), "pipe2 for the isolated child");
  UniqueFd rd(p[0]), wr(p[1]);
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) throw_sys("fork isolated child");
  if (pid == 0) {
    rd.reset();
    setpgid(0, 0);
    // A killed caller takes its case with it (and the case its listener processes).
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);
    // Tag the message: 'O' the function's result, 'E' an error before or in it.
    std::string out;
    try {
      if (opts.new_netns) {
        check_sys(unshare(CLONE_NEWNET), "unshare CLONE_NEWNET");
        loopback_up();
      }
      out = "O" + fn();
    } catch (const std::exception& e) {
      out = std::string("E") + e.what();
    } catch (...) {
      out = "Eunknown exception";
    }
    write_all(wr.get(), out);
    _exit(0);
  }
  setpgid(pid, pid);  // also here: the child may not have run yet when we kill the group
  wr.reset();

  IsolatedResult r;
  std::string buf;
  auto deadline = std::chrono::steady_clock::now() + opts.timeout;
  bool timed_out = false;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd pfd{rd.get(), POLLIN, 0};
    int n = poll(&pfd, 1, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_sys("poll isolated child");
    if (n == 0) continue;
    char chunk[4096];
    ssize_t got = read(rd.get(), chunk, sizeof chunk);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;  // EOF: the child (and every process holding the pipe) is done
    buf.append(chunk, static_cast<size_t>(got));
  }
  // Whatever happened, nothing of the group survives the call.
  kill(-pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }

  if (timed_out) {
    r.status = IsolatedResult::Status::Timeout;
    r.payload = "no result within " + std::to_string(opts.timeout.count()) + " ms; process group killed";
  } else if (!buf.empty() && buf[0] == 'O') {
    r.status = IsolatedResult::Status::Ok;
    r.payload = buf.substr(1);
  } else if (!buf.empty() && buf[0] == 'E') {
    r.status = IsolatedResult::Status::Error;
    r.payload = buf.substr(1);
  } else {
    r.status = IsolatedResult::Status::Crashed;
    if (WIFSIGNALED(status))
      r.payload = std::string("killed by signal ") + strsignal(WTERMSIG(status));
    else
      r.payload = "exited with status " + std::to_string(WEXITSTATUS(status)) + " without a result";
  }
  return r;
}

}  // namespace rp
