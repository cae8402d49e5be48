// `reuseport-check deploy`: run a user's own server and deploy procedure under load, count
// every connection the deploy lost, and say what the kernel did to each: children orphaned
// in a closed listener's accept queue and their RSTs, SYNs dropped on overflow, SYNs that
// found no listener. CI gets an exit status (1: more lost than --max-lost), JUnit and JSON.
//
// 1. Unless --host-net: unshare a network namespace of our own (before any thread exists,
//    so every thread and child shares it), bring lo up. Become a child subreaper, so that
//    a daemonizing server (nginx) stays our descendant and can be found and reaped.
// 2. Attach the reuseport probe to the port in that namespace; run --start with /bin/sh;
//    wait until sock_diag shows the port listening.
// 3. Load: warm-up, then --deploy with /bin/sh while the load runs, then --settle seconds;
//    the probe, TcpExt and the port's listeners are sampled every 50 ms, so every increment
//    gets a time relative to the start of the deploy command.
// 4. Report: client outcomes and kernel counts, both bucketed by time; exit 0, 1 or 2.
// 5. On every path (errors, SIGINT/SIGTERM/SIGHUP): SIGKILL every descendant, wherever it
//    went (subreaper), and remove the work directory; the namespace dies with us.
// 0. Before all that, so that a SIGKILL of this command leaves nothing either: the work is
//    done by a child that is the init of a PID namespace of its own, with a /proc of that
//    namespace (its own mount namespace); it dies with us (PR_SET_PDEATHSIG), and when a PID
//    namespace's init dies the kernel kills every process in it, what the user's server
//    daemonized included. This process only waits for it and passes signals on.

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/options.h"
#include "cases/lib/kernel.h"
#include "harness/clock.h"
#include "harness/error.h"
#include "harness/fd.h"
#include "harness/loadgen.h"
#include "harness/scope.h"
#include "harness/sockdiag.h"
#include "probes/counters.h"
#include "probes/kernel_sampler.h"

extern char** environ;

namespace rp::cases {
namespace {

using nlohmann::json;

constexpr const char* kDeployUsage = R"USAGE(Usage:
  reuseport-check deploy --start CMD --deploy CMD --port P
                         [--load closed:N | --load rate:R] [--threads N]
                         [--request FILE | --http PATH] [--host ADDR]
                         [--warmup S] [--settle S] [--listen-timeout S] [--deploy-timeout S]
                         [--max-lost K] [--json PATH] [--junit PATH] [--host-net]

Runs your server and your deploy procedure under load and counts every connection the
deploy lost, with what the kernel did to it and when:
  1. --start CMD runs with /bin/sh -c in a network namespace of its own (lo up), until
     port P listens there.
  2. Load on 127.0.0.1:P (or --host) for --warmup seconds, then --deploy CMD runs with
     /bin/sh -c in the same namespace while the load goes on, then --settle seconds more.
  3. Report: attempts, served, lost by client-side outcome, and the kernel's account from
     the reuseport probe and TcpExt (listener closes, children orphaned in a closed
     listener's accept queue and their RSTs, overflows, segments that found no listener),
     each at its time relative to the start of the deploy command.
Every process the commands started is killed at the end (daemons too), on every path, a
SIGKILL of this command included: they run in a PID namespace of their own, with a /proc of it.

Both commands get RP_PORT=P, RP_WORKDIR (a fresh directory, removed afterwards, for pid
files and configs) and RP_CHECK (this program) in their environment.

Options:
  --start CMD           Starts the server. It may stay in the foreground or daemonize.
  --deploy CMD          The deploy: signal the server, start a new generation and stop the
                        old one, anything. Must end within --deploy-timeout; a non-zero
                        exit is an error.
  --port P              The TCP port the server listens on (1-65535).
  --load closed:N       N connections in flight at all times (default closed:32).
  --load rate:R         R new connections per second, open loop.
  --threads N           Load generator threads (default 1).
  --request FILE        Raw TCP: send FILE's bytes, read until EOF; served = at least one
                        byte, then EOF.
  --http PATH           HTTP/1.1: GET PATH with Connection: close; served = a complete
                        response. Non-2xx/3xx responses count as lost, apart.
                        Without --request or --http: the protocol of `reuseport-check serve`.
  --host ADDR           The address to load (default 127.0.0.1; ::1 for IPv6).
  --warmup S            Seconds of load before the deploy (default 1).
  --settle S            Seconds of load after the deploy command ended (default 2).
  --listen-timeout S    How long to wait for the port to listen (default 10).
  --deploy-timeout S    How long the deploy command may take (default 30).
  --max-lost K          Exit 1 when more than K connections were lost (default 0).
  --json PATH           Write the full report (totals, kernel counts, timeline) as JSON.
  --junit PATH          Write a JUnit XML file: one testsuite, one testcase 'deploy'.
  --host-net            Run in the current network namespace instead of a private one.
                        Processes that leave it (daemons) are still found and killed, as
                        descendants; TcpExt counts then include all other traffic.

Exit status: 0 when at most --max-lost connections were lost; 1 when more were; 2 on bad
usage, a server that never listened, a deploy command that failed or hung, or missing
privileges.

Examples:
  sudo reuseport-check deploy --port 8080 \
      --start "$PWD/docs/examples/serve/start.sh" --deploy "$PWD/docs/examples/serve/swap.sh"
  sudo reuseport-check deploy --port 8080 --http / --junit deploy.xml \
      --start "$PWD/docs/examples/nginx/start.sh" --deploy "$PWD/docs/examples/nginx/reload.sh"

Needs root, or CAP_SYS_ADMIN, CAP_NET_ADMIN (and CAP_BPF, CAP_PERFMON for the probe).
)USAGE";

volatile sig_atomic_t g_signal = 0;
void on_signal(int sig) { g_signal = sig; }

volatile pid_t g_worker = -1;
void forward_signal(int sig) {
  if (g_worker > 0) ::kill(g_worker, sig);
}

// Step 0: forks the worker into a new PID namespace and returns in it (true), with /proc
// remounted for that namespace; the original process never returns from here: it waits for
// the worker and exits with its status. Must run before any thread exists.
bool enter_pid_namespace(int& status) {
  if (unshare(CLONE_NEWPID) != 0) {
    std::fprintf(stderr, "reuseport-check: unshare(CLONE_NEWPID): %s\n", std::strerror(errno));
    status = 2;
    return false;
  }
  // Our pid is not visible from inside (getppid() reads 0 there): the worker learns that we
  // are alive from a pipe whose write end only we hold.
  int alive[2];
  if (pipe2(alive, O_CLOEXEC) != 0) throw_sys("pipe2");
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) throw_sys("fork the deploy worker");
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    close(alive[1]);
    pollfd pf{alive[0], POLLIN, 0};
    if (poll(&pf, 1, 0) != 0) _exit(2);  // POLLHUP: the parent died before the death signal was set
    close(alive[0]);
    if (unshare(CLONE_NEWNS) != 0 || mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
      throw_sys("a /proc for the deploy's PID namespace");
    // Everything after this reads pids from /proc and must see the namespace's own.
    char self[32] = {};
    if (readlink("/proc/self", self, sizeof self - 1) <= 0 || std::string(self) != "1")
      throw std::runtime_error("the deploy's /proc does not show its PID namespace");
    return true;
  }
  close(alive[0]);  // alive[1] stays open until we exit
  g_worker = pid;
  struct sigaction sa {};
  sa.sa_handler = forward_signal;
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaction(s, &sa, nullptr);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(st)) {
    status = WEXITSTATUS(st);
  } else {
    std::fprintf(stderr, "reuseport-check: the deploy worker was killed by SIG%s; everything it ran was killed with it\n",
                 WIFSIGNALED(st) ? sigabbrev_np(WTERMSIG(st)) : "?");
    status = 2;
  }
  return false;
}

constexpr uint64_t kSampleNs = 50'000'000;

struct Options {
  std::string start, deploy, host = "127.0.0.1", request_file, http_path, json_path, junit_path;
  long port = -1;
  LoadOptions::Mode mode = LoadOptions::Mode::Closed;
  unsigned concurrency = 32, threads = 1;
  double rate = 0;
  double warmup = 1, settle = 2, listen_timeout = 10, deploy_timeout = 30;
  long max_lost = 0;
  bool host_net = false;
};

// An error that ends the run with exit status 2 after cleanup.
struct SetupError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

double seconds(uint64_t ns) { return static_cast<double>(ns) / 1e9; }

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

// --- the user's processes -------------------------------------------------------------

// A command of the user's: /bin/sh -c CMD in a process group of its own, its stdout and
// stderr in a memfd, so that its last lines can be shown when it fails.
struct Command {
  std::string what, cmd;
  pid_t pid = -1;
  std::optional<int> status;  // waitpid status once reaped
  UniqueFd out;
  uint64_t started_ns = 0, ended_ns = 0;

  std::string describe_status() const {
    if (!status) return "is still running (pid " + std::to_string(pid) + ")";
    if (WIFEXITED(*status)) return "exited with status " + std::to_string(WEXITSTATUS(*status));
    if (WIFSIGNALED(*status)) return std::string("was killed by signal ") + sigabbrev_np(WTERMSIG(*status));
    return "ended with wait status " + std::to_string(*status);
  }
  bool succeeded() const { return status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0; }

  std::string output() const {
    if (!out) return {};
    struct stat st;
    if (fstat(out.get(), &st) != 0 || st.st_size <= 0) return {};
    const off_t keep = 64 * 1024;
    off_t from = st.st_size > keep ? st.st_size - keep : 0;
    std::string s(static_cast<size_t>(st.st_size - from), '\0');
    ssize_t n = pread(out.get(), s.data(), s.size(), from);
    s.resize(n > 0 ? static_cast<size_t>(n) : 0);
    return s;
  }
  std::vector<std::string> last_lines(size_t n) const {
    std::vector<std::string> lines;
    std::istringstream in(output());
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    if (lines.size() > n) lines.erase(lines.begin(), lines.end() - static_cast<long>(n));
    return lines;
  }
  std::string tail_text(size_t n) const {
    auto lines = last_lines(n);
    if (lines.empty()) return "  (it printed nothing)\n";
    std::string s = "  its last output lines:\n";
    for (const auto& l : lines) s += "    | " + l + "\n";
    return s;
  }
};

struct Env {
  std::vector<std::string> vars;
  std::vector<char*> ptrs;
  void build(const std::map<std::string, std::string>& extra) {
    for (char** e = environ; *e; ++e) {
      std::string v = *e;
      if (!extra.count(v.substr(0, v.find('=')))) vars.push_back(v);
    }
    for (const auto& [k, v] : extra) vars.push_back(k + "=" + v);
    for (auto& v : vars) ptrs.push_back(v.data());
    ptrs.push_back(nullptr);
  }
};

void spawn(Command& c, const Env& env) {
  c.out.reset(static_cast<int>(check_sys(memfd_create(("rp-" + c.what).c_str(), MFD_CLOEXEC), "memfd_create")));
  // Everything the child needs is prepared here: after fork() in a threaded process only
  // async-signal-safe calls are allowed.
  std::string sh = "/bin/sh", dash_c = "-c", cmd = c.cmd;
  char* argv[] = {sh.data(), dash_c.data(), cmd.data(), nullptr};
  const int out = c.out.get();
  const pid_t parent = getpid();
  sigset_t none;
  sigemptyset(&none);
  pid_t pid = fork();
  if (pid < 0) throw_sys("fork for the " + c.what + " command");
  if (pid == 0) {
    setpgid(0, 0);
    // The shell dies with us even on SIGKILL; what it daemonized cannot be covered here.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0) _exit(127);
    // The load generator's sockets are CLOEXEC already; anything else is not the user's.
    syscall(SYS_close_range, 3U, ~0U, 0U);
    execve(argv[0], argv, const_cast<char**>(env.ptrs.data()));
    _exit(127);
  }
  setpgid(pid, pid);  // whichever of parent and child runs first
  c.pid = pid;
  c.started_ns = monotonic_ns();
}

// Reaps every child that ended, ours and the daemons reparented to us.
void reap(std::vector<Command*> cmds) {
  int st;
  pid_t p;
  while ((p = waitpid(-1, &st, WNOHANG)) > 0)
    for (auto* c : cmds)
      if (c->pid == p) {
        c->status = st;
        c->ended_ns = monotonic_ns();
      }
}

struct ProcInfo {
  pid_t pid, ppid;
  std::string comm, netns;
};

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
    size_t open = s.find('('), close = s.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    ProcInfo p{};
    p.pid = std::atoi(e->d_name);
    p.comm = s.substr(open + 1, close - open - 1);
    std::istringstream rest(s.substr(close + 2));
    std::string state;
    rest >> state >> p.ppid;
    char link[64] = {};
    ssize_t n = readlink((std::string("/proc/") + e->d_name + "/ns/net").c_str(), link, sizeof link - 1);
    if (n > 0) p.netns.assign(link, static_cast<size_t>(n));
    out.push_back(p);
  }
  closedir(d);
  return out;
}

std::vector<ProcInfo> descendants(pid_t root) {
  auto all = processes();
  std::map<pid_t, pid_t> parent;
  for (const auto& p : all) parent[p.pid] = p.ppid;
  std::vector<ProcInfo> out;
  for (const auto& p : all) {
    if (p.pid == root) continue;
    // The worker is the PID namespace's init (root 1): every process of the namespace is
    // its descendant; elsewhere the walk stops at pid 1.
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

// SIGKILLs every descendant until none is left; returns what was killed ("pid (comm)").
std::vector<std::string> kill_descendants(std::vector<Command*> cmds) {
  std::vector<std::string> killed;
  const pid_t self = getpid();
  for (int round = 0; round < 100; ++round) {
    auto d = descendants(self);
    if (d.empty()) break;
    for (const auto& p : d) {
      if (::kill(p.pid, SIGKILL) == 0 && round == 0) killed.push_back(std::to_string(p.pid) + " (" + p.comm + ")");
    }
    usleep(10000);
    reap(cmds);
  }
  reap(cmds);
  return killed;
}

// Ports with a TCP listener in this namespace, from /proc/net/tcp{,6}: sock_diag is
// asked per port, and here the question is which ports at all.
std::set<unsigned> listening_ports() {
  std::set<unsigned> ports;
  for (const char* path : {"/proc/self/net/tcp", "/proc/self/net/tcp6"}) {
    std::ifstream f(path);
    std::string line;
    std::getline(f, line);
    while (std::getline(f, line)) {
      std::istringstream in(line);
      std::string sl, local, remote, st;
      in >> sl >> local >> remote >> st;
      if (st != "0A") continue;
      auto colon = local.rfind(':');
      if (colon != std::string::npos) ports.insert(static_cast<unsigned>(std::stoul(local.substr(colon + 1), nullptr, 16)));
    }
  }
  return ports;
}

// --- what the kernel saw ----------------------------------------------------------------

using Counts = std::map<std::string, std::optional<uint64_t>, std::less<>>;

// The kernel's counts at one moment (probes/kernel_sampler.h: every row of the counter
// table), and the port's listeners from sock_diag.
struct Sample {
  uint64_t ns = 0;
  Counts k;  // since the baseline
  size_t listeners = 0;
  uint64_t accept_queue = 0;
};

class Kernel {
 public:
  Kernel(uint16_t port, bool host_net) : port_(port), sampler_({.port = port, .shared_namespace = host_net}) {}

  const std::string& probe_error() const { return sampler_.probe_error(); }
  void baseline() { sampler_.baseline(); }

  Sample sample() {
    Sample s;
    s.ns = monotonic_ns();
    last_ = sampler_.sample();
    s.k = last_.values;
    try {
      for (const auto& l : tcp_listeners(port_)) {
        ++s.listeners;
        s.accept_queue += l.accept_queue;
      }
    } catch (const std::exception&) {
    }
    return s;
  }

  json sources() const { return json(last_.sources); }
  json not_observable() const { return json(last_.not_observable); }

 private:
  uint16_t port_;
  rp::probes::KernelSampler sampler_;
  rp::probes::KernelCounts last_;
};

json opt(const std::optional<uint64_t>& v) { return v ? json(*v) : json(nullptr); }
uint64_t val(const Counts& c, const std::string& k) {
  auto it = c.find(k);
  return it != c.end() && it->second ? *it->second : 0;
}

// --- report -----------------------------------------------------------------------------

std::string xml_escape(const std::string& s) {
  std::string o;
  for (char ch : s) {
    switch (ch) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      default:
        // XML 1.0 has no place for most control characters.
        if (static_cast<unsigned char>(ch) < 0x20 && ch != '\n' && ch != '\t') o += ' ';
        else o += ch;
    }
  }
  return o;
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  if (!(f << text) || !(f.flush())) throw SetupError("cannot write " + path + ": " + std::strerror(errno));
}

// kind: "" (passed), "failure" or "error".
void write_junit(const std::string& path, const std::string& kind, const std::string& message, const std::string& body,
                 double duration_s) {
  std::ostringstream x;
  x << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    << "<testsuite name=\"reuseport-check deploy\" tests=\"1\" failures=\"" << (kind == "failure") << "\" errors=\""
    << (kind == "error") << "\" skipped=\"0\" time=\"" << fmt("%.3f", duration_s) << "\">\n"
    << "  <testcase classname=\"reuseport-check\" name=\"deploy\" time=\"" << fmt("%.3f", duration_s) << "\"";
  if (kind.empty()) {
    x << "/>\n";
  } else {
    x << ">\n    <" << kind << " message=\"" << xml_escape(message) << "\">" << xml_escape(body) << "</" << kind
      << ">\n  </testcase>\n";
  }
  if (!body.empty() && kind.empty()) x << "  <system-out>" << xml_escape(body) << "</system-out>\n";
  x << "</testsuite>\n";
  write_file(path, x.str());
}

class Run {
 public:
  explicit Run(const Options& o) : o_(o) {
    start_.what = "start";
    deploy_.what = "deploy";
  }
  ~Run() { cleanup(); }
  int go();
  void cleanup();
  double elapsed() const { return seconds(monotonic_ns() - t_begin_); }

 private:
  void check_signal() {
    if (g_signal) throw SetupError(std::string("interrupted by SIG") + sigabbrev_np(g_signal) + "; cleaned up");
  }
  void wait_listening();
  LoadOptions load_options() const;
  int report(const Ledger& ledger, const std::vector<Sample>& samples);

  const Options& o_;
  uint64_t t_begin_ = monotonic_ns();
  std::string workdir_;
  Env env_;
  Command start_, deploy_;
  bool cleaned_ = false;
  std::optional<Kernel> kernel_;
};

void Run::cleanup() {
  if (cleaned_) return;
  cleaned_ = true;
  auto killed = kill_descendants({&start_, &deploy_});
  if (!killed.empty()) {
    std::string list;
    for (const auto& k : killed) list += (list.empty() ? "" : ", ") + k;
    std::printf("cleanup: killed %s\n", list.c_str());
  }
  if (o_.host_net) {
    // Only a process that was neither our descendant nor reparented to us could be left:
    // one that some other process manager started on the deploy's behalf.
    std::vector<ListenInfo> left;
    try {
      left = tcp_listeners(static_cast<uint16_t>(o_.port));
    } catch (const std::exception&) {
    }
    if (!left.empty())
      std::printf("cleanup: %zu listener%s on port %ld remain in this namespace, held by no process of this run\n",
                  left.size(), left.size() == 1 ? "" : "s", o_.port);
  }
  if (!workdir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(workdir_, ec);
  }
  std::fflush(stdout);
}

void Run::wait_listening() {
  const uint64_t deadline = monotonic_ns() + static_cast<uint64_t>(o_.listen_timeout * 1e9);
  for (;;) {
    check_signal();
    reap({&start_, &deploy_});
    if (!tcp_listeners(static_cast<uint16_t>(o_.port)).empty()) return;
    // A daemonizing start command exits 0 at once; any other exit before the port listens
    // is a failure of the start.
    if (start_.status && !start_.succeeded())
      throw SetupError("the start command " + start_.describe_status() + " before port " + std::to_string(o_.port) +
                       " listened\n" + start_.tail_text(10));
    if (monotonic_ns() >= deadline) break;
    usleep(20000);
  }
  std::string msg = "nothing listened on port " + std::to_string(o_.port) + " within " + fmt("%g", o_.listen_timeout) +
                    " s (--listen-timeout)\n  the start command " + start_.describe_status() + "\n";
  auto ports = listening_ports();
  if (ports.empty()) {
    msg += std::string("  nothing listens in ") + (o_.host_net ? "this" : "the deploy's") + " network namespace\n";
  } else {
    std::string list;
    for (unsigned p : ports) list += (list.empty() ? "" : ", ") + std::to_string(p);
    msg += std::string("  TCP ports listening in ") + (o_.host_net ? "this" : "the deploy's") + " network namespace: " +
           list + "\n";
  }
  throw SetupError(msg + start_.tail_text(10));
}

LoadOptions Run::load_options() const {
  LoadOptions lo;
  lo.target.family = o_.host.find(':') != std::string::npos ? Family::V6 : Family::V4;
  lo.target.host = o_.host;
  lo.target.port = static_cast<uint16_t>(o_.port);
  lo.mode = o_.mode;
  lo.threads = o_.threads;
  lo.concurrency = o_.concurrency;
  lo.rate = o_.rate > 0 ? o_.rate : 1000;
  lo.max_attempts = UINT32_MAX;
  // A bound the run never reaches on its own: stop() ends the load after --settle.
  lo.max_duration = std::chrono::milliseconds(static_cast<int64_t>((o_.warmup + o_.deploy_timeout + o_.settle + 10) * 1000));
  if (!o_.http_path.empty()) {
    lo.protocol = LoadOptions::Protocol::Http;
    std::string host = lo.target.family == Family::V6 ? "[" + o_.host + "]" : o_.host;
    lo.payload = http_get_request(o_.http_path, host + ":" + std::to_string(o_.port));
  } else if (!o_.request_file.empty()) {
    lo.protocol = LoadOptions::Protocol::Raw;
    std::ifstream f(o_.request_file, std::ios::binary);
    std::ostringstream ss;
    ss << f.rdbuf();
    lo.payload = ss.str();
  }
  return lo;
}

int Run::go() {
  // Reparented daemons become our children: they can be found as descendants and reaped.
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  char tmpl[] = "/tmp/rp-deploy.XXXXXX";
  if (!mkdtemp(tmpl)) throw SetupError(std::string("mkdtemp /tmp/rp-deploy.XXXXXX: ") + std::strerror(errno));
  workdir_ = tmpl;
  char self[4096] = {};
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  env_.build({{"RP_PORT", std::to_string(o_.port)},
              {"RP_WORKDIR", workdir_},
              {"RP_CHECK", n > 0 ? std::string(self, static_cast<size_t>(n)) : "reuseport-check"}});

  const uint16_t port = static_cast<uint16_t>(o_.port);
  if (o_.host_net && !tcp_listeners(port).empty())
    throw SetupError("port " + std::to_string(port) +
                     " already has a listener in this network namespace: the run could not tell it from yours");
  kernel_.emplace(port, o_.host_net);
  if (!kernel_->probe_error().empty())
    std::fprintf(stderr, "reuseport-check: the reuseport probe is not available (%s): kernel counts from TcpExt only\n",
                 kernel_->probe_error().c_str());

  start_.cmd = o_.start;
  deploy_.cmd = o_.deploy;
  spawn(start_, env_);
  wait_listening();
  std::printf("deploy: port %ld listens (%zu listener%s) %.2f s after the start command; %s\n", o_.port,
              tcp_listeners(port).size(), tcp_listeners(port).size() == 1 ? "" : "s", seconds(monotonic_ns() - start_.started_ns),
              o_.host_net ? "in this network namespace" : "in a private network namespace");
  std::fflush(stdout);

  LoadGenerator lg(load_options());
  kernel_->baseline();
  std::vector<Sample> samples;
  samples.push_back(kernel_->sample());
  const uint64_t load_start = monotonic_ns();
  lg.start();
  enum class Phase { Warmup, Deploy, Settle, Drain } phase = Phase::Warmup;
  uint64_t settle_end = 0, next = load_start;
  uint64_t warmup_served = 0, warmup_started = 0;
  for (;;) {
    next += kSampleNs;
    uint64_t now = monotonic_ns();
    if (next > now) {
      uint64_t d = next - now;
      timespec ts{static_cast<time_t>(d / 1000000000), static_cast<long>(d % 1000000000)};
      nanosleep(&ts, nullptr);
    } else {
      next = now;
    }
    reap({&start_, &deploy_});
    samples.push_back(kernel_->sample());
    if (g_signal) {
      lg.stop();
      check_signal();
    }
    now = monotonic_ns();
    if (phase == Phase::Warmup && now >= load_start + static_cast<uint64_t>(o_.warmup * 1e9)) {
      warmup_served = lg.served();
      warmup_started = lg.started();
      if (warmup_started > 0 && warmup_served == 0 && lg.completed() > 0) {
        lg.stop();
        lg.wait();
        std::string outcomes;
        for (size_t i = 0; i < kOutcomeCount; ++i)
          if (uint64_t c = lg.ledger().count(static_cast<Outcome>(i)))
            outcomes += std::string(outcomes.empty() ? "" : ", ") + outcome_name(static_cast<Outcome>(i)) + " " + std::to_string(c);
        for (auto [err, c] : lg.ledger().errnos()) outcomes += " (" + errno_name(err) + ": " + std::to_string(c) + ")";
        throw SetupError("none of the " + std::to_string(lg.ledger().total()) +
                         " connections of the warm-up was served (" + outcomes +
                         "): does the server speak what is sent? (" + to_string(lg.options().protocol) +
                         "; see --http PATH and --request FILE)");
      }
      spawn(deploy_, env_);
      std::printf("deploy: %.1f s of load (%" PRIu64 " served), running the deploy command\n", seconds(now - load_start),
                  warmup_served);
      std::fflush(stdout);
      phase = Phase::Deploy;
    } else if (phase == Phase::Deploy) {
      if (deploy_.status) {
        std::printf("deploy: the deploy command %s after %.2f s; settling for %g s\n", deploy_.describe_status().c_str(),
                    seconds(deploy_.ended_ns - deploy_.started_ns), o_.settle);
        std::fflush(stdout);
        if (!deploy_.succeeded()) {
          lg.stop();
          throw SetupError("the deploy command " + deploy_.describe_status() + "\n" + deploy_.tail_text(10));
        }
        settle_end = now + static_cast<uint64_t>(o_.settle * 1e9);
        phase = Phase::Settle;
      } else if (now >= deploy_.started_ns + static_cast<uint64_t>(o_.deploy_timeout * 1e9)) {
        lg.stop();
        ::kill(-deploy_.pid, SIGKILL);
        throw SetupError("the deploy command did not end within " + fmt("%g", o_.deploy_timeout) +
                         " s (--deploy-timeout); its process group was killed\n" + deploy_.tail_text(10));
      }
    } else if (phase == Phase::Settle && now >= settle_end) {
      lg.stop();
      phase = Phase::Drain;
    } else if (phase == Phase::Drain && lg.done()) {
      break;
    }
    if (phase != Phase::Drain && lg.done()) {
      lg.wait();  // rethrows a worker's error
      throw SetupError("the load generator stopped before the deploy ended (its bound of " +
                       fmt("%.0f", seconds(static_cast<uint64_t>(lg.options().max_duration.count()) * 1000000)) + " s)");
    }
  }
  lg.wait();
  samples.push_back(kernel_->sample());
  return report(lg.ledger(), samples);
}

int Run::report(const Ledger& ledger, const std::vector<Sample>& samples) {
  const uint64_t t0 = deploy_.started_ns;
  auto rel = [&](uint64_t ns) { return (static_cast<double>(ns) - static_cast<double>(t0)) / 1e9; };
  const bool http = !o_.http_path.empty();

  // Client outcomes by the sample interval their attempt ended in.
  std::vector<std::map<std::string, uint64_t>> client(samples.size());
  uint64_t bad_status = 0;
  std::map<int32_t, uint64_t> statuses;
  for (const auto& a : ledger.attempts()) {
    bool lost = a.outcome != Outcome::Served;
    std::string what = outcome_name(a.outcome);
    if (http && a.outcome == Outcome::Served) {
      ++statuses[a.http_status];
      if (a.http_status < 200 || a.http_status >= 400) {
        lost = true;
        ++bad_status;
        what = "http_" + std::to_string(a.http_status);
      }
    }
    if (!lost) continue;
    auto it = std::lower_bound(samples.begin(), samples.end(), a.end_ns, [](const Sample& s, uint64_t t) { return s.ns < t; });
    size_t i = it == samples.end() ? samples.size() - 1 : static_cast<size_t>(it - samples.begin());
    ++client[i][what];
  }
  const uint64_t total = ledger.total(), served = ledger.count(Outcome::Served);
  const uint64_t lost = total - served + bad_status;
  const Counts& kt = samples.back().k;

  // The timeline: intervals where something was lost, the kernel counted, or the port's
  // listeners changed.
  json timeline = json::array();
  std::vector<std::string> lines;
  for (size_t i = 1; i < samples.size(); ++i) {
    json k = json::object();
    for (const auto& row : rp::probes::counter_table()) {
      const std::string key = row.key;
      uint64_t d = val(samples[i].k, key) - std::min(val(samples[i].k, key), val(samples[i - 1].k, key));
      if (d && key != "netstat_abort_on_close") k[key] = d;
    }
    bool changed = samples[i].listeners != samples[i - 1].listeners;
    if (client[i].empty() && k.empty() && !changed) continue;
    json row = {{"from_s", rel(samples[i - 1].ns)}, {"to_s", rel(samples[i].ns)}, {"listeners", samples[i].listeners},
                {"accept_queue", samples[i].accept_queue}, {"client_lost", client[i]}, {"kernel", k}};
    timeline.push_back(row);
    std::string c, kk;
    for (auto& [w, n] : client[i]) c += (c.empty() ? "" : ", ") + w + " " + std::to_string(n);
    for (auto& [w, n] : k.items()) kk += (kk.empty() ? "" : ", ") + w + " " + n.dump();
    char b[96];
    std::snprintf(b, sizeof b, "  %+7.2f..%+7.2f  %3zu -> %-3zu  ", rel(samples[i - 1].ns), rel(samples[i].ns),
                  samples[i - 1].listeners, samples[i].listeners);
    lines.push_back(std::string(b) + (c.empty() ? "-" : c) + "  |  " + (kk.empty() ? "-" : kk));
  }

  // Attribution: which kernel path accounts for which client-side loss.
  const uint64_t resets = ledger.count(Outcome::ResetBeforeConnect) + ledger.count(Outcome::ResetAfterConnect);
  const uint64_t refused = ledger.count(Outcome::Refused);
  const uint64_t ctimeouts = ledger.count(Outcome::ConnectTimeout);
  const uint64_t unanswered = ledger.count(Outcome::ResponseTimeout) + ledger.count(Outcome::ClosedWithoutResponse);
  auto kv = [&](const std::string& k) -> std::string { return kt.at(k) ? std::to_string(*kt.at(k)) : "n/a"; };
  auto when = [&](const std::vector<std::string>& what) {
    double first = NAN, last = NAN;
    for (size_t i = 1; i < samples.size(); ++i) {
      bool hit = false;
      for (const auto& w : what) hit |= client[i].count(w) > 0 || val(samples[i].k, w) > val(samples[i - 1].k, w);
      if (!hit) continue;
      if (std::isnan(first)) first = rel(samples[i - 1].ns);
      last = rel(samples[i].ns);
    }
    return std::isnan(first) ? std::string() : " at " + fmt("%+.2f", first) + ".." + fmt("%+.2f", last) + " s";
  };
  std::vector<std::string> why;
  if (resets)
    why.push_back(std::to_string(resets) + " reset by the server" + when({"reset_before_connect", "reset_after_connect"}) +
                  ": the kernel orphaned " + kv("kernel_orphaned_children") + " children in a closed listener's accept queue and sent " +
                  kv("kernel_orphan_resets") + " RSTs for them; clients received " + kv("kernel_resets_received") + " RSTs; " +
                  kv("kernel_other_resets_sent") + " other RSTs left the port");
  if (refused) {
    double first = NAN, last = NAN;
    for (const auto& s : samples)
      if (s.listeners == 0 && s.ns >= t0) {
        if (std::isnan(first)) first = rel(s.ns);
        last = rel(s.ns);
      }
    why.push_back(std::to_string(refused) + " refused" + when({"refused"}) + ": " + kv("kernel_no_socket_drops") +
                  " segments to the port found no socket and were answered with an RST" +
                  (std::isnan(first) ? std::string("; every sample saw a listener on the port (the gap was shorter than 50 ms)")
                                     : "; no listener held the port at " + fmt("%+.2f", first) + ".." + fmt("%+.2f", last) + " s"));
  }
  if (ctimeouts)
    why.push_back(std::to_string(ctimeouts) + " connect timeouts" + when({"connect_timeout"}) +
                  ": SYNs dropped, listen overflows " + kv("netstat_listen_overflows") + ", request queue full " + kv("netstat_req_q_full_drop"));
  if (unanswered)
    why.push_back(std::to_string(unanswered) + " accepted but never answered" + when({"response_timeout", "closed_without_response"}) +
                  ": the server closed or dropped connections it had accepted (its own doing, not the kernel's); "
                  "closed with unread data: " + kv("netstat_abort_on_close"));
  if (ledger.count(Outcome::OtherError)) {
    std::string errs;
    for (auto [e, c] : ledger.errnos()) errs += (errs.empty() ? "" : ", ") + errno_name(e) + " " + std::to_string(c);
    why.push_back(std::to_string(ledger.count(Outcome::OtherError)) + " other client errors: " + errs);
  }
  if (bad_status) why.push_back(std::to_string(bad_status) + " HTTP responses with a status outside 2xx/3xx (the server's own answer)");

  const bool fail = lost > static_cast<uint64_t>(o_.max_lost);
  std::printf("\ndeploy %s: %" PRIu64 " of %" PRIu64 " connections lost (--max-lost %ld); deploy command took %.2f s\n",
              fail ? "FAIL" : "PASS", lost, total, o_.max_lost, seconds(deploy_.ended_ns - deploy_.started_ns));
  std::printf("  client side (load generator, %s, %s):\n", to_string(load_options().protocol),
              o_.mode == LoadOptions::Mode::Closed ? ("closed loop, " + std::to_string(o_.concurrency) + " in flight").c_str()
                                                   : ("open loop, " + fmt("%g", o_.rate) + "/s").c_str());
  for (size_t i = 0; i < kOutcomeCount; ++i) {
    auto oc = static_cast<Outcome>(i);
    if (ledger.count(oc) || oc == Outcome::Served) std::printf("    %-44s %10" PRIu64 "\n", outcome_name(oc), ledger.count(oc));
  }
  if (http)
    for (auto [st, c] : statuses) std::printf("    %-44s %10" PRIu64 "\n", ("HTTP " + std::to_string(st)).c_str(), c);
  std::printf("  kernel side (%s):\n", o_.host_net ? "this network namespace" : "the deploy's network namespace");
  for (const auto& row : rp::probes::counter_table()) std::printf("    %-64s %7s\n", row.label, kv(row.key).c_str());
  for (auto& [k, v] : kernel_->not_observable().items())
    std::printf("    n/a %s: %s\n", k.c_str(), v.get<std::string>().c_str());
  if (!why.empty()) {
    std::printf("  lost, by cause (t relative to the start of the deploy command):\n");
    for (const auto& w : why) std::printf("    %s\n", w.c_str());
  }
  if (!lines.empty()) {
    std::printf("  timeline (50 ms samples; listeners on the port; client losses | kernel counts):\n");
    for (const auto& l : lines) std::printf("%s\n", l.c_str());
  }
  std::fflush(stdout);

  json outcomes = json::object();
  for (size_t i = 0; i < kOutcomeCount; ++i) outcomes[outcome_name(static_cast<Outcome>(i))] = ledger.count(static_cast<Outcome>(i));
  json kernel_totals = json::object();
  for (const auto& row : rp::probes::counter_table()) kernel_totals[row.key] = opt(kt.at(row.key));
  json errnos = json::object();
  for (auto [e, c] : ledger.errnos()) errnos[errno_name(e)] = c;
  json status_counts = json::object();
  for (auto [st, c] : statuses) status_counts[std::to_string(st)] = c;
  json listeners = json::array();
  for (const auto& s : samples) listeners.push_back({rel(s.ns), s.listeners, s.accept_queue});
  json out = {
      {"schema", "reuseport-check/deploy/1"},
      {"kernel", kernel_release()},
      {"port", o_.port},
      {"namespace", o_.host_net ? "host" : "private"},
      {"start", {{"command", o_.start}}},
      {"deploy", {{"command", o_.deploy}, {"status", deploy_.describe_status()}, {"duration_s", seconds(deploy_.ended_ns - deploy_.started_ns)},
                  {"output_tail", deploy_.last_lines(20)}}},
      {"load", {{"protocol", to_string(load_options().protocol)},
                {"mode", o_.mode == LoadOptions::Mode::Closed ? "closed" : "open"},
                {"concurrency", o_.concurrency}, {"rate", o_.rate}, {"threads", o_.threads},
                {"warmup_s", o_.warmup}, {"settle_s", o_.settle}, {"target", load_options().target.str()}}},
      {"totals", {{"attempts", total}, {"served", served}, {"lost", lost}, {"http_bad_status", bad_status},
                  {"outcomes", outcomes}, {"errnos", errnos}, {"http_status", status_counts}}},
      {"kernel_totals", kernel_totals},
      {"kernel_sources", kernel_->sources()},
      {"kernel_not_observable", kernel_->not_observable()},
      {"causes", why},
      {"timeline", timeline},
      {"listeners", listeners},
      {"max_lost", o_.max_lost},
      {"verdict", fail ? "fail" : "pass"},
  };
  if (!o_.json_path.empty()) write_file(o_.json_path, out.dump(2) + "\n");
  if (!o_.junit_path.empty()) {
    std::string msg = std::to_string(lost) + " of " + std::to_string(total) + " connections lost (max " +
                      std::to_string(o_.max_lost) + ")";
    for (const auto& w : why) msg += "; " + w;
    std::string body;
    for (const auto& l : lines) body += l + "\n";
    write_junit(o_.junit_path, fail ? "failure" : "", msg, body, elapsed());
  }
  return fail ? 1 : 0;
}

}  // namespace

int deploy_command(const std::vector<std::string>& args, const std::vector<std::string>&) {
  Options o;
  for (ArgCursor it(args); it.next();) {
    const std::string& a = it.arg();
    try {
      if (a == "--help" || a == "-h") {
        std::fputs(kDeployUsage, stdout);
        return 0;
      } else if (a == "--start") {
        o.start = it.value();
      } else if (a == "--deploy") {
        o.deploy = it.value();
      } else if (a == "--port") {
        o.port = parse_long("--port", it.value(), 1, 65535);
      } else if (a == "--load") {
        std::string v = it.value();
        if (v.rfind("closed:", 0) == 0) {
          o.mode = LoadOptions::Mode::Closed;
          o.concurrency = static_cast<unsigned>(parse_long("--load closed:N", v.substr(7), 1, 8192));
        } else if (v.rfind("rate:", 0) == 0) {
          o.mode = LoadOptions::Mode::Open;
          o.rate = parse_seconds("--load rate:R", v.substr(5), false);
        } else {
          throw std::invalid_argument("--load takes closed:N or rate:R, got '" + v + "'");
        }
      } else if (a == "--threads") {
        o.threads = static_cast<unsigned>(parse_long("--threads", it.value(), 1, 64));
      } else if (a == "--request") {
        o.request_file = it.value();
      } else if (a == "--http") {
        o.http_path = it.value();
        http_get_request(o.http_path, "h");  // throws a message naming what is wrong
      } else if (a == "--host") {
        o.host = it.value();
      } else if (a == "--warmup") {
        o.warmup = parse_seconds("--warmup", it.value(), true);
      } else if (a == "--settle") {
        o.settle = parse_seconds("--settle", it.value(), true);
      } else if (a == "--listen-timeout") {
        o.listen_timeout = parse_seconds("--listen-timeout", it.value(), false);
      } else if (a == "--deploy-timeout") {
        o.deploy_timeout = parse_seconds("--deploy-timeout", it.value(), false);
      } else if (a == "--max-lost") {
        o.max_lost = parse_long("--max-lost", it.value(), 0, LONG_MAX);
      } else if (a == "--json") {
        o.json_path = it.value();
      } else if (a == "--junit") {
        o.junit_path = it.value();
      } else if (a == "--host-net") {
        o.host_net = true;
      } else {
        return usage_error("unknown option '" + a + "' for 'deploy'");
      }
    } catch (const std::invalid_argument& e) {
      return usage_error(e.what());
    }
  }
  if (o.start.empty()) return usage_error("deploy needs --start CMD (the command that starts your server)");
  if (o.deploy.empty()) return usage_error("deploy needs --deploy CMD (your deploy procedure)");
  if (o.port < 0) return usage_error("deploy needs --port P");
  if (!o.request_file.empty() && !o.http_path.empty()) return usage_error("--request and --http are exclusive");
  if (o.mode == LoadOptions::Mode::Closed && o.concurrency < o.threads)
    return usage_error("--load closed:" + std::to_string(o.concurrency) + " needs at least as many in flight as --threads");
  if (!o.request_file.empty()) {
    std::ifstream f(o.request_file, std::ios::binary);
    if (!f) return usage_error("--request: cannot read " + o.request_file + ": " + std::strerror(errno));
    if (f.peek() == std::char_traits<char>::eof()) return usage_error("--request: " + o.request_file + " is empty");
  }
  {
    Endpoint e{o.host.find(':') != std::string::npos ? Family::V6 : Family::V4, o.host, 1};
    sockaddr_storage ss;
    try {
      e.to_sockaddr(ss);
    } catch (const std::exception&) {
      return usage_error("--host needs an IPv4 or IPv6 address, got '" + o.host + "'");
    }
  }
  std::string missing;
  if (!has_privileges(missing)) {
    std::fprintf(stderr, "reuseport-check: deploy needs root (a network namespace, the BPF probe); missing:%s\n", missing.c_str());
    return 2;
  }
  try {
    int status = 0;
    if (!enter_pid_namespace(status)) return status;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "reuseport-check: %s\n", e.what());
    if (getpid() == 1) _exit(2);  // the worker: never return into the caller's code
    return 2;
  }
  if (!o.host_net) {
    // Before any thread exists: a thread created later shares the namespace it is born in.
    if (unshare(CLONE_NEWNET) != 0) {
      std::fprintf(stderr, "reuseport-check: unshare(CLONE_NEWNET): %s\n", std::strerror(errno));
      return 2;
    }
    try {
      loopback_up();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "reuseport-check: %s\n", e.what());
      return 2;
    }
  }
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaction(s, &sa, nullptr);

  Run run(o);
  int rc;
  std::string error;
  try {
    rc = run.go();
  } catch (const SetupError& e) {
    error = e.what();
  } catch (const std::exception& e) {
    error = e.what();
  }
  run.cleanup();
  if (!error.empty()) {
    while (!error.empty() && error.back() == '\n') error.pop_back();
    std::fprintf(stderr, "reuseport-check: deploy: %s\n", error.c_str());
    if (!o.junit_path.empty()) {
      try {
        write_junit(o.junit_path, "error", error.substr(0, error.find('\n')), error, run.elapsed());
      } catch (const std::exception& e) {
        std::fprintf(stderr, "reuseport-check: %s\n", e.what());
      }
    }
    return 2;
  }
  return rc;
}

}  // namespace rp::cases
