#include "cli/run_parallel.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "cases/lib/case.h"

namespace rp::cli {

using rp::cases::Plan;
using rp::cases::Record;

int usable_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  return std::max(1, CPU_COUNT(&set));
}

int default_jobs() { return std::min(kMaxDefaultJobs, kJobsPerCpu * usable_cpus()); }

namespace {

// One flag per item x repeat, and one that stops the workers starting anything: anonymous
// shared memory, mapped before the forks, so every worker sees the same bytes. Lock-free
// atomics on shared memory are atomic across processes too.
using Flag = std::atomic<unsigned char>;
static_assert(Flag::is_always_lock_free);

class Claims {
 public:
  explicit Claims(size_t n) : n_(n + 1) {
    void* p = mmap(nullptr, n_ * sizeof(Flag), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error(std::string("mmap the claim table: ") + std::strerror(errno));
    flags_ = static_cast<Flag*>(p);
    for (size_t i = 0; i < n_; ++i) new (&flags_[i]) Flag(0);
  }
  ~Claims() { munmap(flags_, n_ * sizeof(Flag)); }
  Claims(const Claims&) = delete;
  Claims& operator=(const Claims&) = delete;
  bool claim(size_t i) { return flags_[i].exchange(1) == 0; }
  void stop() { flags_[n_ - 1].store(1); }
  bool stopped() const { return flags_[n_ - 1].load() != 0; }

 private:
  size_t n_;
  Flag* flags_;
};

void write_line(int fd, const nlohmann::json& j) {
  // One write() per line: the pipe is this worker's own, so a short write only splits a
  // line that the reader joins again.
  const std::string s = j.dump() + "\n";
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = write(fd, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) _exit(3);  // `run` is gone: nothing would keep what this worker measures
    off += static_cast<size_t>(n);
  }
}

// In the forked worker: run the filter, claim what is free, report over `fd`. Never returns.
[[noreturn]] void worker(const ParallelRun& run, Claims& claims, const std::map<std::string, size_t>& index,
                         const std::string& filter, int fd) {
  ::testing::GTEST_FLAG(filter) = filter;
  const size_t n = run.items.size();
  rp::cases::set_planner([&](const std::string& c, const std::string& v, int repeat) {
    if (run.kept && run.kept(c, v, repeat)) return Plan::Keep;
    if (claims.stopped()) return Plan::Drop;
    auto it = index.find(c + "/" + v);
    if (it == index.end()) return Plan::Run;  // not in the table: cannot be shared, so run it
    if (!claims.claim(static_cast<size_t>(repeat) * n + it->second)) return Plan::Elsewhere;
    write_line(fd, {{"start", {{"case", c}, {"variant", v}}}});
    return Plan::Run;
  });
  rp::cases::set_record_sink([&](const Record& r) {
    if (run.record_seen_in_worker) run.record_seen_in_worker();
    write_line(fd, {{"record", r.to_json()}});
  });
  const int rc = RUN_ALL_TESTS();
  // _exit: `run`'s stdio buffers and destructors are its own, not the worker's to flush.
  _exit(rc == 0 ? 0 : 1);
}

struct Worker {
  pid_t pid = -1;
  int fd = -1;
  std::string buf;
};

// Forks `jobs` workers over `filter` and reads their lines until every pipe is closed.
std::string phase(const ParallelRun& run, Claims& claims, const std::map<std::string, size_t>& index,
                  const std::string& filter, int jobs) {
  std::fflush(stdout);  // or the workers would inherit, and one day print, the same buffer
  std::fflush(stderr);
  std::vector<Worker> workers;
  const pid_t parent = getpid();
  for (int w = 0; w < jobs; ++w) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) throw std::runtime_error(std::string("pipe2 for a worker: ") + std::strerror(errno));
    const pid_t pid = fork();
    if (pid < 0) throw std::runtime_error(std::string("fork a worker: ") + std::strerror(errno));
    if (pid == 0) {
      // A killed `run` takes its workers with it, and each worker its case (run_isolated
      // sets the same on the case's child).
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(1);
      close(p[0]);
      for (const auto& o : workers) close(o.fd);
      worker(run, claims, index, filter, p[1]);
    }
    close(p[1]);
    workers.push_back({pid, p[0], {}});
  }

  size_t open = workers.size();
  while (open > 0) {
    std::vector<pollfd> fds;
    std::vector<Worker*> of;
    for (auto& w : workers)
      if (w.fd >= 0) fds.push_back({w.fd, POLLIN, 0}), of.push_back(&w);
    if (poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(std::string("poll the workers: ") + std::strerror(errno));
    }
    for (size_t i = 0; i < fds.size(); ++i) {
      if (!fds[i].revents) continue;
      Worker& w = *of[i];
      char chunk[65536];
      const ssize_t got = read(w.fd, chunk, sizeof chunk);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        close(w.fd);
        w.fd = -1;
        --open;
        continue;
      }
      w.buf.append(chunk, static_cast<size_t>(got));
      for (size_t nl; (nl = w.buf.find('\n')) != std::string::npos; w.buf.erase(0, nl + 1)) {
        const auto j = nlohmann::json::parse(w.buf.substr(0, nl), nullptr, false);
        if (j.is_discarded()) continue;  // cannot happen short of a bug; never stop `run` for it
        if (j.contains("start"))
          run.starting(j["start"].value("case", ""), j["start"].value("variant", ""));
        else if (j.contains("record")) {
          std::optional<Record> r;
          try {
            r = Record::from_json(j["record"]);
          } catch (const std::invalid_argument& e) {  // a bug; say so, and the record is missing
            std::fprintf(stderr, "reuseport-check: a worker's record is unreadable: %s\n", e.what());
          }
          if (r && !run.finished(*r)) claims.stop();
        }
      }
    }
  }

  std::string problems;
  for (const auto& w : workers) {
    int status = 0;
    while (waitpid(w.pid, &status, 0) < 0 && errno == EINTR) {
    }
    // Exit 1 is GoogleTest's "a test failed": those failures came as records.
    if (WIFEXITED(status) && WEXITSTATUS(status) <= 1) continue;
    problems += problems.empty() ? "" : "; ";
    problems += "worker " + std::to_string(w.pid) +
                (WIFSIGNALED(status) ? std::string(" killed by signal ") + strsignal(WTERMSIG(status))
                                     : " exited with status " + std::to_string(WEXITSTATUS(status)));
  }
  return problems;
}

}  // namespace

std::string run_parallel(const ParallelRun& run) {
  Claims claims(run.items.size() * static_cast<size_t>(run.repeat));
  std::map<std::string, size_t> index;
  std::string shared, alone;
  size_t n_shared = 0;
  for (size_t i = 0; i < run.items.size(); ++i) {
    const auto& it = run.items[i];
    index[it.case_name + "/" + it.variant] = i;
    std::string& f = it.alone ? alone : shared;
    f += (f.empty() ? "" : ":") + it.full;
    n_shared += it.alone ? 0 : 1;
  }
  std::string problems;
  auto add = [&](const std::string& p) {
    if (!p.empty()) problems += (problems.empty() ? "" : "; ") + p;
  };
  // More workers than items would only start and stop.
  const int jobs = static_cast<int>(std::min<size_t>(static_cast<size_t>(run.jobs), n_shared));
  if (!shared.empty()) add(phase(run, claims, index, shared, jobs));
  if (!alone.empty() && !claims.stopped()) add(phase(run, claims, index, alone, 1));
  return problems;
}

}  // namespace rp::cli
