// Process supervision, written once for deploy (the user's commands), report and matrix
// (the Python drivers): spawn a command in a process group of its own with its output
// captured, reap it, describe how it ended, find what it left behind (daemons included) and
// kill all of it; and the PID-namespace step that makes "all of it" hold after a SIGKILL.
//
//   rp::Process p = rp::Process::spawn({.argv = rp::shell("nginx -c ..."), .name = "start"});
//   rp::reap_children([&](pid_t pid, int st) { p.record(pid, st); });
//   if (p.ended() && !p.succeeded()) std::puts((p.describe() + p.tail_text(10)).c_str());
//   rp::kill_tree(getpid(), ...);  // with PR_SET_CHILD_SUBREAPER: daemons too
#pragma once

#include <sys/types.h>

#include <csignal>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "harness/fd.h"

namespace rp {

// {"/bin/sh", "-c", cmd}.
std::vector<std::string> shell(const std::string& cmd);

struct SpawnOptions {
  std::vector<std::string> argv;  // argv[0] is a path: no PATH search
  // Added to this process's environment (a name given here replaces the inherited one).
  std::map<std::string, std::string> env;
  enum class Output {
    Capture,  // stdout and stderr into a memfd, read back with Process::output()
    File,     // stdout and stderr into output_file (created or truncated)
    Inherit,  // this process's stdout and stderr
  } output = Output::Capture;
  std::string output_file;
  std::string cwd;                // empty: this process's
  bool own_process_group = true;  // false: the terminal's ^C reaches it with us
  // Sent to the child when this thread dies (even by SIGKILL); 0: none. It covers the
  // child only, not what the child forks or daemonizes (see enter_pid_namespace).
  int parent_death_signal = SIGKILL;
  bool stdin_null = true;  // false: inherits stdin
  std::string name = "child";  // the memfd's name, and messages
};

class Process {
 public:
  Process() = default;
  // Forks and execs. Every descriptor of ours above stderr is closed in the child (the
  // caller's sockets and pipes are not the child's business), signals are unblocked, and
  // the child side makes async-signal-safe calls only, so this may be called from a
  // threaded process. Throws SysError when the fork fails or the exec did ("exec PATH: ...").
  static Process spawn(const SpawnOptions& options);

  pid_t pid() const { return pid_; }
  const std::string& name() const { return name_; }
  uint64_t started_ns() const { return started_ns_; }
  uint64_t ended_ns() const { return ended_ns_; }
  // The wait status, once reaped.
  const std::optional<int>& status() const { return status_; }
  bool ended() const { return status_.has_value(); }
  bool succeeded() const;
  // "exited with status 3", "was killed by signal KILL", "is still running (pid 12)".
  std::string describe() const;

  // Takes (pid, status) from a reap loop when it is ours; true if it was.
  bool record(pid_t pid, int status);
  // Blocks until this process ended (reaping only it); returns the wait status.
  int wait();

  // The last 64 KiB of what it wrote (Output::Capture), its last n lines, and those lines
  // as an indented block for an error message.
  std::string output() const;
  std::vector<std::string> last_lines(size_t n) const;
  std::string tail_text(size_t n) const;

 private:
  pid_t pid_ = -1;
  std::string name_;
  std::optional<int> status_;
  UniqueFd out_;
  uint64_t started_ns_ = 0, ended_ns_ = 0;
};

// "exited with status 3", "was killed by signal KILL".
std::string describe_wait_status(int status);
// A shell's way to say it: the exit status, or 128 + the signal.
int exit_code(int status);

// Reaps every child of this process that ended, without blocking; each one is passed on.
void reap_children(const std::function<void(pid_t, int)>& on_exit = {});

struct ProcInfo {
  pid_t pid = 0, ppid = 0;
  char state = '?';  // from /proc/PID/stat: 'Z' for a zombie
  std::string comm;
};

// Every process under `root`, from /proc (as the calling process's PID namespace shows
// them). A process whose parent died is reparented to the nearest subreaper, else to pid 1:
// a caller that wants its daemons found sets PR_SET_CHILD_SUBREAPER. The walk up stops at
// pid 1, except when root is 1 itself: the init of a PID namespace has every process of it
// below it.
std::vector<ProcInfo> descendants(pid_t root);

// SIGKILLs every descendant of `root` until none is left (at most about a second: a process
// in uninterruptible sleep may outlast it), reaping our own children between rounds, each
// one passed to on_exit. Returns what the first round killed.
std::vector<ProcInfo> kill_tree(pid_t root, const std::function<void(pid_t, int)>& on_exit = {});

// The PID-namespace step: forks a worker that is the init of a new PID namespace with a
// /proc of its own (its own mount namespace), and that dies with this process
// (PR_SET_PDEATHSIG SIGKILL). When a PID namespace's init dies the kernel kills every
// process in it, so whatever the worker starts, daemons included, cannot outlive a SIGKILL
// of this process. Must be called before any thread exists.
//   In the worker: returns {.in_worker = true}.
//   In this process: forwards SIGINT, SIGTERM and SIGHUP to the worker, waits for it and
//   returns {.in_worker = false, .wait_status = its wait status}.
// Throws SysError (in either process) when a step fails.
struct PidNamespace {
  bool in_worker = false;
  int wait_status = 0;
};
PidNamespace enter_pid_namespace();

}  // namespace rp
