#include "harness/udp_strategies.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <exception>
#include <memory>
#include <stdexcept>
#include <thread>

#include "harness/clock.h"
#include "harness/error.h"
#include "harness/wire.h"

namespace rp {

const char* to_string(UdpStrategy s) {
  switch (s) {
    case UdpStrategy::Close: return "u_close";
    case UdpStrategy::Drain: return "u_drain";
    case UdpStrategy::KeepOpen: return "u_keep_open";
  }
  return "?";
}

const std::vector<UdpStrategy>& all_udp_strategies() {
  static const std::vector<UdpStrategy> all = {UdpStrategy::Close, UdpStrategy::Drain, UdpStrategy::KeepOpen};
  return all;
}

std::optional<UdpStrategy> udp_strategy_from_string(const std::string& name) {
  for (UdpStrategy s : all_udp_strategies()) {
    const std::string full = to_string(s);
    if (name == full || name == full.substr(2)) return s;
  }
  return std::nullopt;
}

namespace {

using std::chrono::milliseconds;

// serve --udp's bounds on a drain (cli/serve/udp.cc): a drain ends after kDrainLimit
// whatever is left; the second empty read after kLookupRace catches a datagram whose socket
// lookup ran just before the connect().
constexpr milliseconds kDrainLimit{2000};
constexpr milliseconds kLookupRace{20};

enum Cmd : int { kNone, kClose, kDrain, kPause };

// One member: a reuseport UDP socket on the port and the thread that answers it. Commands
// go through an eventfd, and the thread itself closes the socket, so that no close() races
// a poll() on it.
class Member {
 public:
  Member(uint16_t port, int32_t id, std::chrono::microseconds work) : id_(id), work_(work) {
    ListenerOptions lo;
    lo.proto = Proto::Udp;
    lo.addr = Endpoint::loopback(Family::V4, port);
    fd_ = open_listener(lo);
    ev_ = UniqueFd(static_cast<int>(check_sys(eventfd(0, EFD_CLOEXEC), "eventfd for udp member")));
    thread_ = std::thread([this] { run(); });
  }
  ~Member() {
    if (thread_.joinable()) {
      send(kClose);
      thread_.join();
    }
  }

  // Returns once the member has done it: closed (kClose, kDrain) or stopped reading (kPause).
  void command(Cmd c) {
    send(c);
    if (c == kPause) {
      while (!paused_.load()) std::this_thread::sleep_for(milliseconds(1));
    } else {
      thread_.join();
    }
    if (error_) std::rethrow_exception(error_);
  }
  int32_t id() const { return id_; }
  uint64_t served() const { return served_.load(); }
  uint64_t drained() const { return drained_.load(); }

 private:
  void send(Cmd c) {
    cmd_.store(c);
    uint64_t one = 1;
    (void)!write(ev_.get(), &one, sizeof one);
  }

  // False when the queue was empty.
  bool answer_one() {
    char buf[64];
    sockaddr_storage from{};
    socklen_t fl = sizeof from;
    ssize_t n = recvfrom(fd_.get(), buf, sizeof buf, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), &fl);
    if (n < 0) {
      if (errno == EINTR) return true;
      if (errno == EAGAIN) return false;
      throw_sys("recvfrom udp member " + std::to_string(id_));
    }
    wire::FlowRequest q;
    if (!wire::parse_flow_request(buf, static_cast<size_t>(n), q)) return true;
    if (work_.count() > 0) {
      const uint64_t end = monotonic_ns() + static_cast<uint64_t>(work_.count()) * 1000;
      while (monotonic_ns() < end) {
      }
    }
    wire::FlowReply r{wire::kFlowReplyMagic, static_cast<uint32_t>(id_), q.flow, 0, q.seq};
    // Counted before the send, as the TCP listeners do: the client may read the answer and
    // the run read the count before this thread runs again; a failed send takes it back.
    served_.fetch_add(1);
    if (sendto(fd_.get(), &r, sizeof r, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), fl) != sizeof r)
      served_.fetch_sub(1);
    return true;
  }

  void drain() {
    sockaddr_storage self{};
    socklen_t len = sizeof self;
    check_sys(getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&self), &len), "getsockname udp member");
    check_sys(connect(fd_.get(), reinterpret_cast<sockaddr*>(&self), len), "connect udp member to itself");
    const uint64_t end = monotonic_ns() + static_cast<uint64_t>(kDrainLimit.count()) * 1000000;
    for (int pass = 0; pass < 2; ++pass) {
      if (pass) std::this_thread::sleep_for(kLookupRace);
      while (monotonic_ns() < end) {
        const uint64_t before = served_.load();
        if (!answer_one()) break;
        drained_ += served_.load() - before;
      }
    }
  }

  void run() {
    try {
      bool reading = true;
      for (;;) {
        pollfd p[2] = {{ev_.get(), POLLIN, 0}, {fd_.get(), POLLIN, 0}};
        int n = poll(p, reading ? 2 : 1, -1);
        if (n < 0 && errno == EINTR) continue;
        check_sys(n, "poll udp member");
        if (p[0].revents & POLLIN) {
          uint64_t v;
          (void)!read(ev_.get(), &v, sizeof v);
          const int c = cmd_.exchange(kNone);
          if (c == kPause) {
            reading = false;
            paused_.store(true);
            continue;
          }
          if (c == kDrain) drain();
          if (c == kClose || c == kDrain) {
            fd_.reset();  // what is still queued is freed with the socket
            return;
          }
          continue;
        }
        if (reading && (p[1].revents & POLLIN))
          while (answer_one()) {
          }
      }
    } catch (...) {
      error_ = std::current_exception();
      fd_.reset();
      paused_.store(true);  // a command waiting on the pause must not hang
    }
  }

  int32_t id_;
  std::chrono::microseconds work_;
  UniqueFd fd_, ev_;
  std::atomic<int> cmd_{kNone};
  std::atomic<bool> paused_{false};
  std::atomic<uint64_t> served_{0}, drained_{0};
  std::exception_ptr error_;
  std::thread thread_;
};

using Generation = std::vector<std::unique_ptr<Member>>;

Generation start_generation(const UdpDeployPlan& p, unsigned gen) {
  Generation g;
  for (unsigned i = 0; i < p.members; ++i)
    g.push_back(std::make_unique<Member>(p.port, static_cast<int32_t>(gen * p.members + i), p.work));
  return g;
}

void retire(const UdpDeployPlan& p, Generation& g) {
  switch (p.strategy) {
    case UdpStrategy::Close:
      for (auto& m : g) m->command(kClose);
      break;
    case UdpStrategy::Drain: {
      // All at once, as a server's workers get the signal together: one after another, the
      // datagrams of the members still open would wait on the earlier drains.
      std::vector<std::thread> ts;
      std::vector<std::exception_ptr> errs(g.size());
      for (size_t i = 0; i < g.size(); ++i)
        ts.emplace_back([&, i] {
          try {
            g[i]->command(kDrain);
          } catch (...) {
            errs[i] = std::current_exception();
          }
        });
      for (auto& t : ts) t.join();
      for (auto& e : errs)
        if (e) std::rethrow_exception(e);
      break;
    }
    case UdpStrategy::KeepOpen:
      for (auto& m : g) m->command(kPause);
      std::this_thread::sleep_for(p.keep_open);
      for (auto& m : g) m->command(kClose);
      break;
  }
}

}  // namespace

UdpDeployRun run_udp_deploys(const UdpDeployPlan& plan) {
  if (plan.port == 0) throw std::invalid_argument("run_udp_deploys: the plan needs a port");
  if (plan.members == 0 || plan.members > 16) throw std::invalid_argument("run_udp_deploys: members must be 1-16");
  if (plan.deploys == 0) throw std::invalid_argument("run_udp_deploys: deploys must be at least 1");
  UdpFlowControl control;
  UdpFlowOptions lo = plan.load;
  lo.target = Endpoint::loopback(Family::V4, plan.port);
  lo.control = &control;
  // The run ends the sending itself (control.stop); max_duration only bounds a run whose
  // deploys hang.
  lo.max_duration = milliseconds(60000);
  UdpFlowLoad load(lo);  // throws on bad load options before anything starts

  UdpDeployRun out;
  std::vector<Generation> retired;  // kept for their counts
  Generation current = start_generation(plan, 0);
  UdpFlowResult result;
  std::exception_ptr load_error;
  std::thread load_thread([&] {
    try {
      result = load.run();
    } catch (...) {
      load_error = std::current_exception();
      control.stop.store(true);
    }
  });
  auto stop_load = [&] {
    control.stop.store(true);
    if (load_thread.joinable()) load_thread.join();
  };
  try {
    std::this_thread::sleep_for(plan.warmup);
    for (unsigned d = 0; d < plan.deploys && !control.stop.load(); ++d) {
      UdpDeployRecord rec;
      rec.index = d;
      rec.start_ns = monotonic_ns();
      Generation next = start_generation(plan, d + 1);
      std::this_thread::sleep_for(plan.overlap);
      rec.retire_ns = monotonic_ns();
      retire(plan, current);
      rec.end_ns = monotonic_ns();
      retired.push_back(std::move(current));
      current = std::move(next);
      out.deploys.push_back(rec);
      if (plan.after_deploy) plan.after_deploy(d);
      std::this_thread::sleep_for(plan.interval);
    }
    std::this_thread::sleep_for(plan.settle);
  } catch (...) {
    stop_load();
    throw;
  }
  stop_load();
  if (load_error) std::rethrow_exception(load_error);
  // The current generation answered until the load ended; its counts are final once it
  // is closed.
  for (auto& m : current) m->command(kClose);
  retired.push_back(std::move(current));
  for (const auto& g : retired)
    for (const auto& m : g) {
      out.served_by_servers[m->id()] = m->served();
      out.drained += m->drained();
    }
  out.flows = std::move(result);
  out.mismatches = reconcile(out.flows, out.served_by_servers);
  return out;
}

}  // namespace rp
