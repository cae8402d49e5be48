// The deploy check's run: namespaces, the user's commands, the load and the samples.
//
// 0. The work is done by a child that is the init of a PID namespace of its own, with a
//    /proc of that namespace (harness/process.h: enter_pid_namespace); it dies with us, and
//    when a PID namespace's init dies the kernel kills every process in it, what the user's
//    server daemonized included. So a SIGKILL of this command leaves nothing either.
// 1. Unless --host-net: unshare a network namespace of our own (before any thread exists,
//    so every thread and child shares it), bring lo up. Become a child subreaper, so that
//    a daemonizing server (nginx) stays our descendant and can be found and reaped.
// 2. Attach the reuseport probe to the port in that namespace; run --start with /bin/sh;
//    wait until sock_diag shows the port listening (--udp: a UDP socket bound to it, and
//    the UDP MIB and the port's members are sampled instead, udp.cc).
// 3. Load: warm-up, then --deploy with /bin/sh while the load runs, then --settle seconds;
//    the probe, TcpExt and the port's listeners are sampled every 50 ms, so every increment
//    gets a time relative to the start of the deploy command.
// 4. Report (attribution.cc, output.cc).
// 5. On every path (errors, SIGINT/SIGTERM/SIGHUP): SIGKILL every descendant, wherever it
//    went (subreaper), and remove the work directory; the namespace dies with us.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>
#include <fstream>
#include <sstream>

#include "cases/lib/kernel.h"
#include "cli/deploy/deploy.h"
#include "cli/deploy/udp.h"
#include "harness/clock.h"
#include "harness/error.h"
#include "harness/scope.h"
#include "harness/sockdiag.h"
#include "probes/kernel_sampler.h"

namespace rp::cli::deploy {

using namespace rp::cases;
namespace {

constexpr uint64_t kSampleNs = 50'000'000;

volatile sig_atomic_t g_signal = 0;
void on_signal(int sig) { g_signal = sig; }

// The probe and TcpExt (probes/kernel_sampler.h: every row of the counter table), and the
// port's listeners from sock_diag.
class Kernel {
 public:
  Kernel(uint16_t port, bool host_net) : port_(port), sampler_({.port = port, .shared_namespace = host_net}) {}

  const std::string& probe_error() const { return sampler_.probe_error(); }
  const std::string& namespace_filter() const { return sampler_.namespace_filter(); }
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

  nlohmann::json sources() const { return nlohmann::json(last_.sources); }
  nlohmann::json not_observable() const { return nlohmann::json(last_.not_observable); }
  nlohmann::json errors() const { return nlohmann::json(last_.errors); }
  // A JSON key is a string: the cookie in decimal, as SO_COOKIE and group print it.
  nlohmann::json orphans_by_listener() const {
    if (!last_.listener_orphans) return nullptr;
    nlohmann::json o = nlohmann::json::object();
    for (const auto& [cookie, n] : *last_.listener_orphans) o[std::to_string(cookie)] = n;
    return o;
  }
  const std::string& orphans_by_listener_source() const { return last_.listener_orphans_source; }

 private:
  uint16_t port_;
  rp::probes::KernelSampler sampler_;
  rp::probes::KernelCounts last_;
};

// The TCP load: harness/loadgen.h.
class TcpLoad : public Load {
 public:
  explicit TcpLoad(LoadOptions lo) : lg_(std::move(lo)) {}
  void start() override { lg_.start(); }
  void stop() override { lg_.stop(); }
  bool done() const override { return lg_.done(); }
  void wait() override { lg_.wait(); }
  uint64_t served() const override { return lg_.served(); }
  double bound_s() const override { return seconds(static_cast<uint64_t>(lg_.options().max_duration.count()) * 1000000); }
  std::string warmup_problem() override {
    if (lg_.started() == 0 || lg_.served() > 0 || lg_.completed() == 0) return {};
    lg_.stop();
    lg_.wait();
    std::string outcomes;
    for (size_t i = 0; i < kOutcomeCount; ++i)
      if (uint64_t c = lg_.ledger().count(static_cast<Outcome>(i)))
        outcomes += std::string(outcomes.empty() ? "" : ", ") + outcome_name(static_cast<Outcome>(i)) + " " + std::to_string(c);
    for (auto [err, c] : lg_.ledger().errnos()) outcomes += " (" + errno_name(err) + ": " + std::to_string(c) + ")";
    return "none of the " + std::to_string(lg_.ledger().total()) + " connections of the warm-up was served (" + outcomes +
           "): does the server speak what is sent? (" + to_string(lg_.options().protocol) +
           "; see --http PATH and --request FILE)";
  }
  const Ledger& ledger() const { return lg_.ledger(); }

 private:
  LoadGenerator lg_;
};

class Session {
 public:
  explicit Session(const Options& o) : o_(o) {}
  ~Session() { cleanup(); }
  int go();
  void cleanup();
  double elapsed() const { return seconds(monotonic_ns() - t_begin_); }

 private:
  void check_signal() {
    if (g_signal) throw SetupError(std::string("interrupted by SIG") + sigabbrev_np(g_signal) + "; cleaned up");
  }
  void reap() {
    reap_children([this](pid_t pid, int st) { start_.record(pid, st) || deploy_.record(pid, st); });
  }
  Process spawn(const std::string& what, const std::string& cmd) {
    SpawnOptions so;
    so.argv = shell(cmd);
    so.env = env_;
    so.name = what;
    return Process::spawn(so);
  }
  void wait_listening();
  bool bound() const {
    const uint16_t port = static_cast<uint16_t>(o_.port);
    return o_.udp ? !port_sockets(IPPROTO_UDP, port).empty() : !tcp_listeners(port).empty();
  }
  Sample sample() { return kernel_ ? kernel_->sample() : udp_kernel_->sample(); }

  const Options& o_;
  uint64_t t_begin_ = monotonic_ns();
  std::string workdir_;
  std::map<std::string, std::string> env_;
  Process start_, deploy_;
  bool cleaned_ = false;
  std::optional<Kernel> kernel_;
  std::optional<UdpKernel> udp_kernel_;
};

void Session::cleanup() {
  if (cleaned_) return;
  cleaned_ = true;
  auto killed = kill_tree(getpid(), [this](pid_t pid, int st) { start_.record(pid, st) || deploy_.record(pid, st); });
  if (!killed.empty()) {
    std::string list;
    for (const auto& k : killed) list += (list.empty() ? "" : ", ") + std::to_string(k.pid) + " (" + k.comm + ")";
    std::printf("cleanup: killed %s\n", list.c_str());
  }
  if (o_.host_net) {
    // Only a process that was neither our descendant nor reparented to us could be left:
    // one that some other process manager started on the deploy's behalf.
    size_t left = 0;
    try {
      left = o_.udp ? port_sockets(IPPROTO_UDP, static_cast<uint16_t>(o_.port)).size()
                    : tcp_listeners(static_cast<uint16_t>(o_.port)).size();
    } catch (const std::exception&) {
    }
    if (left)
      std::printf("cleanup: %zu %s on port %ld remain in this namespace, held by no process of this run\n", left,
                  o_.udp ? (left == 1 ? "UDP socket" : "UDP sockets") : (left == 1 ? "listener" : "listeners"), o_.port);
  }
  if (!workdir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(workdir_, ec);
  }
  std::fflush(stdout);
}

void Session::wait_listening() {
  const uint64_t deadline = monotonic_ns() + static_cast<uint64_t>(o_.listen_timeout * 1e9);
  for (;;) {
    check_signal();
    reap();
    if (bound()) return;
    // A daemonizing start command exits 0 at once; any other exit before the port listens
    // is a failure of the start.
    if (start_.ended() && !start_.succeeded())
      throw SetupError("the start command " + start_.describe() + " before port " + std::to_string(o_.port) +
                       " listened\n" + start_.tail_text(10));
    if (monotonic_ns() >= deadline) break;
    usleep(20000);
  }
  std::string msg = std::string(o_.udp ? "no UDP socket was bound to port " : "nothing listened on port ") +
                    std::to_string(o_.port) + " within " + fmt("%g", o_.listen_timeout) +
                    " s (--listen-timeout)\n  the start command " + start_.describe() + "\n";
  std::set<uint16_t> ports;
  try {
    ports = o_.udp ? udp_bound_ports() : tcp_listening_ports();
  } catch (const std::exception&) {
  }
  if (ports.empty()) {
    msg += std::string("  nothing listens in ") + (o_.host_net ? "this" : "the deploy's") + " network namespace\n";
  } else {
    std::string list;
    for (unsigned p : ports) list += (list.empty() ? "" : ", ") + std::to_string(p);
    msg += std::string(o_.udp ? "  UDP ports bound in " : "  TCP ports listening in ") + (o_.host_net ? "this" : "the deploy's") + " network namespace: " +
           list + "\n";
  }
  throw SetupError(msg + start_.tail_text(10));
}

int Session::go() {
  // Reparented daemons become our children: they can be found as descendants and reaped.
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  if (o_.workdir.empty()) {
    char tmpl[] = "/tmp/rp-deploy.XXXXXX";
    if (!mkdtemp(tmpl)) throw SetupError(std::string("mkdtemp /tmp/rp-deploy.XXXXXX: ") + std::strerror(errno));
    workdir_ = tmpl;
  } else {
    workdir_ = o_.workdir;
  }
  char self[4096] = {};
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  env_ = {{"RP_PORT", std::to_string(o_.port)},
          {"RP_WORKDIR", workdir_},
          {"RP_CHECK", n > 0 ? std::string(self, static_cast<size_t>(n)) : "reuseport-check"}};

  const uint16_t port = static_cast<uint16_t>(o_.port);
  if (o_.host_net && bound())
    throw SetupError("port " + std::to_string(port) + (o_.udp ? " already has a UDP socket" : " already has a listener") +
                     " in this network namespace: the run could not tell it from yours");
  if (o_.udp) {
    udp_kernel_.emplace(o_);
  } else {
    kernel_.emplace(port, o_.host_net);
    if (!kernel_->probe_error().empty())
      std::fprintf(stderr, "reuseport-check: the reuseport probe is not available (%s): kernel counts from TcpExt only\n",
                   kernel_->probe_error().c_str());
  }

  start_ = spawn("start", o_.start);
  wait_listening();
  const size_t n_bound = o_.udp ? port_sockets(IPPROTO_UDP, port).size() : tcp_listeners(port).size();
  std::printf("deploy: port %ld %s (%zu %s%s) %.2f s after the start command; %s\n", o_.port, o_.udp ? "is bound" : "listens",
              n_bound, o_.udp ? "UDP socket" : "listener", n_bound == 1 ? "" : "s", seconds(monotonic_ns() - start_.started_ns()),
              o_.host_net ? "in this network namespace" : "in a private network namespace");
  std::fflush(stdout);

  std::unique_ptr<Load> load;
  if (o_.udp)
    load = make_udp_load(o_);
  else
    load = std::make_unique<TcpLoad>(load_options(o_));
  Load& lg = *load;
  kernel_ ? kernel_->baseline() : udp_kernel_->baseline();
  std::vector<Sample> samples;
  samples.push_back(sample());
  const uint64_t load_start = monotonic_ns();
  lg.start();
  enum class Phase { Warmup, Deploy, Settle, Drain } phase = Phase::Warmup;
  uint64_t settle_end = 0, next = load_start;
  uint64_t warmup_served = 0;
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
    reap();
    samples.push_back(sample());
    if (g_signal) {
      lg.stop();
      check_signal();
    }
    now = monotonic_ns();
    if (phase == Phase::Warmup && now >= load_start + static_cast<uint64_t>(o_.warmup * 1e9)) {
      warmup_served = lg.served();
      if (std::string problem = lg.warmup_problem(); !problem.empty()) throw SetupError(problem);
      deploy_ = spawn("deploy", o_.deploy);
      std::printf("deploy: %.1f s of load (%" PRIu64 " %s), running the deploy command\n", seconds(now - load_start),
                  warmup_served, o_.udp ? "answered" : "served");
      std::fflush(stdout);
      phase = Phase::Deploy;
    } else if (phase == Phase::Deploy) {
      if (deploy_.ended()) {
        std::printf("deploy: the deploy command %s after %.2f s; settling for %g s\n", deploy_.describe().c_str(),
                    seconds(deploy_.ended_ns() - deploy_.started_ns()), o_.settle);
        std::fflush(stdout);
        if (!deploy_.succeeded()) {
          lg.stop();
          throw SetupError("the deploy command " + deploy_.describe() + "\n" + deploy_.tail_text(10));
        }
        settle_end = now + static_cast<uint64_t>(o_.settle * 1e9);
        phase = Phase::Settle;
      } else if (now >= deploy_.started_ns() + static_cast<uint64_t>(o_.deploy_timeout * 1e9)) {
        lg.stop();
        ::kill(-deploy_.pid(), SIGKILL);
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
      throw SetupError("the load generator stopped before the deploy ended (its bound of " + fmt("%.0f", lg.bound_s()) +
                       " s)");
    }
  }
  lg.wait();
  samples.push_back(sample());
  if (o_.udp) return udp_report(o_, lg, samples, deploy_, *udp_kernel_, elapsed());
  const Observed obs{static_cast<TcpLoad&>(lg).ledger(), samples, deploy_, kernel_->sources(), kernel_->not_observable(),
                     kernel_->errors(), kernel_->namespace_filter(), kernel_->orphans_by_listener(),
                     kernel_->orphans_by_listener_source()};
  return report(o_, obs, attribute(o_, obs), elapsed());
}

}  // namespace

LoadOptions load_options(const Options& o) {
  LoadOptions lo;
  lo.target = target_of(o);
  lo.mode = o.mode;
  lo.threads = o.threads;
  lo.concurrency = o.concurrency;
  lo.rate = o.rate > 0 ? o.rate : 1000;
  lo.max_attempts = UINT32_MAX;
  // A bound the run never reaches on its own: stop() ends the load after --settle.
  lo.max_duration = std::chrono::milliseconds(static_cast<int64_t>((o.warmup + o.deploy_timeout + o.settle + 10) * 1000));
  if (!o.http_path.empty()) {
    lo.protocol = LoadOptions::Protocol::Http;
    std::string host = lo.target.family == Family::V6 ? "[" + o.host + "]" : o.host;
    lo.payload = http_get_request(o.http_path, host + ":" + std::to_string(o.port));
  } else if (!o.request_file.empty()) {
    lo.protocol = LoadOptions::Protocol::Raw;
    std::ifstream f(o.request_file, std::ios::binary);
    std::ostringstream ss;
    ss << f.rdbuf();
    lo.payload = ss.str();
  }
  return lo;
}

// The work directory, and a keeper that removes it once this process has ended, however it
// ends. Made before the PID namespace: a SIGKILL of the tool kills the worker and all it
// ran with it, so nothing inside can clean up; the keeper lives outside, in a session of its
// own, holding nothing of ours but a pidfd of this process (no pipe of our caller's stays
// open through it). Without pidfd_open (before 5.3) only the worker's own cleanup remains.
std::string workdir_with_keeper() {
  char tmpl[] = "/tmp/rp-deploy.XXXXXX";
  if (!mkdtemp(tmpl)) throw SetupError(std::string("mkdtemp /tmp/rp-deploy.XXXXXX: ") + std::strerror(errno));
  const std::string dir = tmpl;
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, getpid(), 0));
  if (pidfd < 0) return dir;
  const pid_t pid = fork();
  if (pid == 0) {
    setsid();
    if (dup2(pidfd, 3) < 0) _exit(1);
    const int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    for (int fd : {0, 1, 2}) dup2(null, fd);
    syscall(SYS_close_range, 4U, ~0U, 0U);
    pollfd p{3, POLLIN, 0};
    while (poll(&p, 1, -1) < 0 && errno == EINTR) {
    }
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
    _exit(0);
  }
  ::close(pidfd);
  return dir;
}

int run(const Options& given) {
  Options o = given;
  try {
    o.workdir = workdir_with_keeper();
    const PidNamespace ns = enter_pid_namespace();
    if (!ns.in_worker) {
      const int st = ns.wait_status;
      if (WIFEXITED(st)) return WEXITSTATUS(st);
      std::fprintf(stderr, "reuseport-check: the deploy worker was killed by SIG%s; everything it ran was killed with it\n",
                   WIFSIGNALED(st) ? sigabbrev_np(WTERMSIG(st)) : "?");
      return 2;
    }
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

  Session session(o);
  int rc = 2;
  std::string error;
  try {
    rc = session.go();
  } catch (const std::exception& e) {
    error = e.what();
  }
  session.cleanup();
  if (error.empty()) return rc;
  while (!error.empty() && error.back() == '\n') error.pop_back();
  std::fprintf(stderr, "reuseport-check: deploy: %s\n", error.c_str());
  write_error_junit(o, error, session.elapsed());
  return 2;
}

}  // namespace rp::cli::deploy
