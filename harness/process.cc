#include "harness/process.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "harness/clock.h"
#include "harness/error.h"

extern char** environ;

namespace rp {

std::vector<std::string> shell(const std::string& cmd) { return {"/bin/sh", "-c", cmd}; }

namespace {

// Closes every descriptor from `from` up, but `keep`. close_range(2) is 5.9+; the loop is
// for older kernels (the bound comes from the parent: sysconf is not async-signal-safe).
void close_from(int from, int keep, int limit) {
  auto range = [limit](unsigned lo, unsigned hi) {
    if (lo > hi) return;
    if (syscall(SYS_close_range, lo, hi, 0U) == 0) return;
    for (unsigned fd = lo; fd <= hi && fd < static_cast<unsigned>(limit); ++fd) close(static_cast<int>(fd));
  };
  range(static_cast<unsigned>(from), static_cast<unsigned>(keep) - 1);
  range(static_cast<unsigned>(keep) + 1, ~0U);
}

[[noreturn]] void child_fail(int report_fd, int err) {
  // The parent reads the errno and throws; write(2) is async-signal-safe.
  ssize_t ignored = write(report_fd, &err, sizeof err);
  (void)ignored;
  _exit(127);
}

}  // namespace

Process Process::spawn(const SpawnOptions& o) {
  if (o.argv.empty()) throw std::invalid_argument("spawn: empty argv");
  Process p;
  p.name_ = o.name;
  // Everything the child needs is prepared here: after fork() in a threaded process only
  // async-signal-safe calls are allowed.
  std::vector<std::string> args = o.argv, vars;
  for (char** e = environ; *e; ++e) {
    std::string v = *e;
    if (!o.env.count(v.substr(0, v.find('=')))) vars.push_back(std::move(v));
  }
  for (const auto& [k, v] : o.env) vars.push_back(k + "=" + v);
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& v : vars) envp.push_back(v.data());
  envp.push_back(nullptr);

  UniqueFd out;
  if (o.output == SpawnOptions::Output::Capture) {
    out.reset(static_cast<int>(check_sys(memfd_create(("rp-" + o.name).c_str(), MFD_CLOEXEC), "memfd_create")));
  } else if (o.output == SpawnOptions::Output::File) {
    out.reset(static_cast<int>(
        check_sys(open(o.output_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644), "open " + o.output_file)));
  }
  UniqueFd devnull;
  if (o.stdin_null) devnull.reset(static_cast<int>(check_sys(open("/dev/null", O_RDONLY | O_CLOEXEC), "open /dev/null")));
  int report[2];
  check_sys(pipe2(report, O_CLOEXEC), "pipe2");
  UniqueFd report_r(report[0]), report_w(report[1]);
  rlimit nofile{};
  getrlimit(RLIMIT_NOFILE, &nofile);
  const int fd_limit = nofile.rlim_cur == RLIM_INFINITY || nofile.rlim_cur > 65536 ? 65536 : static_cast<int>(nofile.rlim_cur);
  const pid_t parent = getpid();
  sigset_t none;
  sigemptyset(&none);
  const char* cwd = o.cwd.empty() ? nullptr : o.cwd.c_str();

  const pid_t pid = fork();
  if (pid < 0) throw_sys("fork for " + o.name);
  if (pid == 0) {
    const int rw = report_w.get();
    if (o.own_process_group) setpgid(0, 0);
    if (o.parent_death_signal) {
      prctl(PR_SET_PDEATHSIG, o.parent_death_signal);
      // The parent may have died before the death signal was set.
      if (getppid() != parent) _exit(127);
    }
    sigprocmask(SIG_SETMASK, &none, nullptr);
    if (devnull && dup2(devnull.get(), 0) < 0) child_fail(rw, errno);
    if (out && (dup2(out.get(), 1) < 0 || dup2(out.get(), 2) < 0)) child_fail(rw, errno);
    if (cwd && chdir(cwd) != 0) child_fail(rw, errno);
    // The report pipe is CLOEXEC: a successful exec closes it, and the parent reads EOF.
    close_from(3, rw, fd_limit);
    execve(argv[0], argv.data(), envp.data());
    child_fail(rw, errno);
  }
  if (o.own_process_group) setpgid(pid, pid);  // whichever of parent and child runs first
  p.pid_ = pid;
  p.started_ns_ = monotonic_ns();
  p.out_ = o.output == SpawnOptions::Output::Capture ? std::move(out) : UniqueFd();
  report_w.reset();
  int err = 0;
  ssize_t n;
  while ((n = read(report_r.get(), &err, sizeof err)) < 0 && errno == EINTR) {
  }
  if (n == static_cast<ssize_t>(sizeof err)) {
    p.wait();
    throw_sys("exec " + o.argv[0], err);
  }
  return p;
}

bool Process::succeeded() const { return status_ && WIFEXITED(*status_) && WEXITSTATUS(*status_) == 0; }

std::string Process::describe() const {
  if (!status_) return "is still running (pid " + std::to_string(pid_) + ")";
  return describe_wait_status(*status_);
}

bool Process::record(pid_t pid, int status) {
  if (pid != pid_ || pid_ <= 0 || status_) return false;
  status_ = status;
  ended_ns_ = monotonic_ns();
  return true;
}

int Process::wait() {
  if (status_) return *status_;
  int st = 0;
  pid_t r;
  while ((r = waitpid(pid_, &st, 0)) < 0 && errno == EINTR) {
  }
  if (r < 0) throw_sys("waitpid " + std::to_string(pid_));
  record(pid_, st);
  return st;
}

std::string Process::output() const {
  if (!out_) return {};
  struct stat st;
  if (fstat(out_.get(), &st) != 0 || st.st_size <= 0) return {};
  const off_t keep = 64 * 1024;
  const off_t from = st.st_size > keep ? st.st_size - keep : 0;
  std::string s(static_cast<size_t>(st.st_size - from), '\0');
  const ssize_t n = pread(out_.get(), s.data(), s.size(), from);
  s.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return s;
}

std::vector<std::string> Process::last_lines(size_t n) const {
  std::vector<std::string> lines;
  std::istringstream in(output());
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  if (lines.size() > n) lines.erase(lines.begin(), lines.end() - static_cast<long>(n));
  return lines;
}

std::string Process::tail_text(size_t n) const {
  auto lines = last_lines(n);
  if (lines.empty()) return "  (it printed nothing)\n";
  std::string s = "  its last output lines:\n";
  for (const auto& l : lines) s += "    | " + l + "\n";
  return s;
}

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const char* abbrev = sigabbrev_np(WTERMSIG(status));
    return std::string("was killed by signal ") + (abbrev ? abbrev : std::to_string(WTERMSIG(status)).c_str());
  }
  return "ended with wait status " + std::to_string(status);
}

int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

void reap_children(const std::function<void(pid_t, int)>& on_exit) {
  int st;
  pid_t p;
  while ((p = waitpid(-1, &st, WNOHANG)) > 0)
    if (on_exit) on_exit(p, st);
}

namespace {

std::vector<ProcInfo> processes() {
  std::vector<ProcInfo> out;
  DIR* d = opendir("/proc");
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::ifstream f(std::string("/proc/") + e->d_name + "/stat");
    std::string s;
    if (!std::getline(f, s)) continue;
    // comm may hold spaces and parentheses: the state follows the last ')'.
    const size_t open = s.find('('), close = s.rfind(')');
    if (open == std::string::npos || close == std::string::npos || close + 2 >= s.size()) continue;
    ProcInfo p;
    p.pid = std::atoi(e->d_name);
    p.comm = s.substr(open + 1, close - open - 1);
    std::istringstream rest(s.substr(close + 2));
    std::string state;
    rest >> state >> p.ppid;
    p.state = state.empty() ? '?' : state[0];
    out.push_back(p);
  }
  closedir(d);
  return out;
}

}  // namespace

std::vector<ProcInfo> descendants(pid_t root) {
  const auto all = processes();
  std::map<pid_t, pid_t> parent;
  for (const auto& p : all) parent[p.pid] = p.ppid;
  std::vector<ProcInfo> out;
  for (const auto& p : all) {
    if (p.pid == root) continue;
    for (pid_t q = p.ppid, depth = 0; q > 0 && depth < 4096; ++depth) {
      if (q == root) {
        out.push_back(p);
        break;
      }
      if (q == 1) break;
      auto it = parent.find(q);
      if (it == parent.end()) break;
      q = it->second;
    }
  }
  return out;
}

std::vector<ProcInfo> kill_tree(pid_t root, const std::function<void(pid_t, int)>& on_exit) {
  std::vector<ProcInfo> killed;
  const bool ours = root == getpid();
  for (int round = 0; round < 100; ++round) {
    auto d = descendants(root);
    if (d.empty()) break;
    for (const auto& p : d)
      if (::kill(p.pid, SIGKILL) == 0 && round == 0 && p.state != 'Z') killed.push_back(p);
    usleep(10000);
    // Our zombies stay in /proc until reaped; other roots' are reaped by their parents.
    if (ours) reap_children(on_exit);
  }
  if (ours) reap_children(on_exit);
  return killed;
}

namespace {

volatile pid_t g_worker = -1;
void forward_signal(int sig) {
  if (g_worker > 0) ::kill(g_worker, sig);
}

}  // namespace

PidNamespace enter_pid_namespace() {
  check_sys(unshare(CLONE_NEWPID), "unshare(CLONE_NEWPID)");
  // Our pid is not visible from inside (getppid() reads 0 there): the worker learns that we
  // are alive from a pipe whose write end only we hold.
  int alive[2];
  check_sys(pipe2(alive, O_CLOEXEC), "pipe2");
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) throw_sys("fork the PID namespace's init");
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    close(alive[1]);
    pollfd pf{alive[0], POLLIN, 0};
    if (poll(&pf, 1, 0) != 0) _exit(2);  // POLLHUP: the parent died before the death signal was set
    close(alive[0]);
    if (unshare(CLONE_NEWNS) != 0) throw_sys("unshare(CLONE_NEWNS) for the PID namespace's /proc");
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) throw_sys("mount --make-rprivate /");
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
      throw_sys("mount a /proc for the PID namespace");
    // Everything after this reads pids from /proc and must see the namespace's own.
    char self[32] = {};
    if (readlink("/proc/self", self, sizeof self - 1) <= 0 || std::string(self) != "1")
      throw std::runtime_error("the new /proc does not show the PID namespace");
    return PidNamespace{true, 0};
  }
  close(alive[0]);  // alive[1] stays open until we exit
  g_worker = pid;
  struct sigaction sa {};
  sa.sa_handler = forward_signal;
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaction(s, &sa, nullptr);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  g_worker = -1;
  return PidNamespace{false, st};
}

}  // namespace rp
