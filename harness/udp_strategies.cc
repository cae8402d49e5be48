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

#include "bpf/udp_connid_steer.h"
#include "harness/clock.h"
#include "harness/error.h"
#include "harness/wire.h"
#ifdef RP_HAVE_BPF
#include "probes/reuseport_steer.h"
#include "probes/udp_connid_steer.h"
#endif

namespace rp {

const char* to_string(UdpStrategy s) {
  switch (s) {
    case UdpStrategy::Close: return "u_close";
    case UdpStrategy::Drain: return "u_drain";
    case UdpStrategy::KeepOpen: return "u_keep_open";
    case UdpStrategy::SteerId: return "u_steer_id";
  }
  return "?";
}

const std::vector<UdpStrategy>& all_udp_strategies() {
  static const std::vector<UdpStrategy> all = {UdpStrategy::Close, UdpStrategy::Drain, UdpStrategy::KeepOpen,
                                               UdpStrategy::SteerId};
  return all;
}

std::optional<UdpStrategy> udp_strategy_from_string(const std::string& name) {
  for (UdpStrategy s : all_udp_strategies()) {
    const std::string full = to_string(s);
    if (name == full || name == full.substr(2)) return s;
  }
  return std::nullopt;
}

std::string udp_strategy_unavailable(UdpStrategy s) {
  if (s != UdpStrategy::SteerId) return "";
#ifdef RP_HAVE_BPF
  // Our program first; when it does not load, a minimal sk_reuseport program asks the
  // kernel: only its refusal makes the strategy unavailable.
  try {
    probes::UdpConnIdSteer probe;
    return "";
  } catch (const std::exception& ours) {
    const auto k = probes::kernel_answer(probes::SteerProgram::Select);
    if (k.kind == probes::KernelAnswer::Kind::Refuses) return "the kernel refuses it: " + k.why;
    throw std::runtime_error(std::string(ours.what()) +
                             (k.kind == probes::KernelAnswer::Kind::Offers ? "; yet " + k.why + ": our program is at fault"
                                                                           : "; asking the kernel failed too: " + k.why));
  }
#else
  return "built without BPF (RP_ENABLE_BPF=OFF)";
#endif
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
  // Valid until a command closes the socket.
  int fd() const { return fd_.get(); }
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
    case UdpStrategy::SteerId:  // its load has ended: nothing is queued
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

// A load of flows in a thread of its own. The run ends the sending itself (finish());
// max_duration only bounds a run whose deploys hang. A load that fails stops (stopped()),
// and finish() throws what it hit.
class RunningLoad {
 public:
  explicit RunningLoad(UdpFlowOptions o) {
    o.control = &control_;
    o.max_duration = milliseconds(60000);
    load_.emplace(std::move(o));  // throws on bad load options before anything starts
    thread_ = std::thread([this] {
      try {
        result_ = load_->run();
      } catch (...) {
        error_ = std::current_exception();
        control_.stop.store(true);
      }
    });
  }
  ~RunningLoad() { stop(); }
  RunningLoad(const RunningLoad&) = delete;
  RunningLoad& operator=(const RunningLoad&) = delete;

  // Ends the sending; returns once every datagram is answered or the late window is over.
  UdpFlowResult finish() {
    stop();
    if (error_) std::rethrow_exception(error_);
    return std::move(result_);
  }
  bool stopped() const { return control_.stop.load(); }
  // Throws when not every flow was answered within `limit` (our failure, not the kernel's).
  void await_every_flow(std::chrono::milliseconds limit) const {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (control_.flows_answered.load() < load_->options().flows && !stopped()) {
      if (std::chrono::steady_clock::now() > deadline)
        throw std::runtime_error("udp load stalled: " + std::to_string(control_.flows_answered.load()) + " of " +
                                 std::to_string(load_->options().flows) + " flows answered after " +
                                 std::to_string(limit.count()) + " ms");
      std::this_thread::sleep_for(milliseconds(1));
    }
  }

 private:
  void stop() {
    control_.stop.store(true);
    if (thread_.joinable()) thread_.join();
  }
  UdpFlowControl control_;
  std::optional<UdpFlowLoad> load_;
  UdpFlowResult result_;
  std::exception_ptr error_;
  std::thread thread_;
};

// The loads of u_steer_id's generations as one result: flow ids are contiguous over the
// generations (first_flow + gen * flows), so flows[i] stays the flow of id first_flow + i.
void append(UdpFlowResult& all, UdpFlowResult part) {
  if (all.flows.empty()) {
    all = std::move(part);
    return;
  }
  all.started_ns = std::min(all.started_ns, part.started_ns);
  all.ended_ns = std::max(all.ended_ns, part.ended_ns);
  for (auto& f : part.flows) all.flows.push_back(std::move(f));
}

#ifdef RP_HAVE_BPF
// u_steer_id's program: generation g's members fill the slots of bank g % 2, so that the 16
// slots serve any number of deploys. A bank is filled again two generations later, after
// its members closed (a socket's slot empties as it leaves the group, 5dc4c4b7d4e8).
class IdSteering {
 public:
  explicit IdSteering(unsigned members) : members_(members) {}
  // The program holds generation `gen` before any new id is given to its slots, and the
  // group holds the program from generation 0 on (attached after bind: KERNEL-NOTES).
  void join(const Generation& g, unsigned gen) {
    const uint32_t first = (gen % 2) * members_;
    for (uint32_t i = 0; i < g.size(); ++i) prog_.set_member(first + i, g[i]->fd());
    if (gen == 0) prog_.attach(g[0]->fd());
    prog_.set_generation(first, members_);
  }
  UdpSteerCounts counts() const {
    const auto c = prog_.counts();
    return {c.runs, c.no_id, c.assigned, c.selected, c.empty_slot};
  }

 private:
  probes::UdpConnIdSteer prog_;
  unsigned members_;
};
#else
struct IdSteering {
  explicit IdSteering(unsigned) { throw std::runtime_error("u_steer_id: built without BPF"); }
  void join(const Generation&, unsigned) {}
  UdpSteerCounts counts() const { return {}; }
};
#endif

UdpFlowOptions load_for(const UdpDeployPlan& p, unsigned gen) {
  UdpFlowOptions o = p.load;
  o.target = Endpoint::loopback(Family::V4, p.port);
  if (p.strategy == UdpStrategy::SteerId) o.first_flow = p.load.first_flow + gen * p.load.flows;
  return o;
}

}  // namespace

UdpDeployRun run_udp_deploys(const UdpDeployPlan& plan) {
  if (plan.port == 0) throw std::invalid_argument("run_udp_deploys: the plan needs a port");
  if (plan.members == 0 || plan.members > 16) throw std::invalid_argument("run_udp_deploys: members must be 1-16");
  if (plan.deploys == 0) throw std::invalid_argument("run_udp_deploys: deploys must be at least 1");
  // Each generation has loads of its own: its connections live one generation.
  const bool per_generation = plan.strategy == UdpStrategy::SteerId;
  std::optional<IdSteering> steering;
  if (per_generation) {
    if (plan.members > RP_CONNID_MAX_SOCKS / 2)
      throw std::invalid_argument("run_udp_deploys: u_steer_id takes at most " + std::to_string(RP_CONNID_MAX_SOCKS / 2) +
                                  " members (two generations in the program's " + std::to_string(RP_CONNID_MAX_SOCKS) +
                                  " slots)");
    if (uint64_t{plan.load.flows} * (plan.deploys + 1) > RP_CONNID_MAX_CONNS)
      throw std::invalid_argument("run_udp_deploys: u_steer_id's " + std::to_string(plan.load.flows) + " flows x " +
                                  std::to_string(plan.deploys + 1) + " generations exceed the program's " +
                                  std::to_string(RP_CONNID_MAX_CONNS) + " connection ids");
    if (!plan.hash_control) {
      if (std::string why = udp_strategy_unavailable(plan.strategy); !why.empty())
        throw std::runtime_error(std::string(to_string(plan.strategy)) + " cannot run here: " + why);
      steering.emplace(plan.members);
    }
  }
  (void)UdpFlowLoad(load_for(plan, 0));  // bad load options throw before anything starts

  UdpDeployRun out;
  std::vector<Generation> retired;  // kept for their counts
  Generation current = start_generation(plan, 0);
  if (steering) steering->join(current, 0);
  auto load = std::make_unique<RunningLoad>(load_for(plan, 0));
  UdpFlowResult all;
  std::this_thread::sleep_for(plan.warmup);
  for (unsigned d = 0; d < plan.deploys && !load->stopped(); ++d) {
    UdpDeployRecord rec;
    rec.index = d;
    if (per_generation) load->await_every_flow(plan.stall_limit);
    rec.start_ns = monotonic_ns();
    Generation next = start_generation(plan, d + 1);
    std::unique_ptr<RunningLoad> next_load;
    if (per_generation) {
      if (steering) steering->join(next, d + 1);
      next_load = std::make_unique<RunningLoad>(load_for(plan, d + 1));
    }
    std::this_thread::sleep_for(plan.overlap);
    rec.retire_ns = monotonic_ns();
    if (per_generation) {
      // The old connections end: what is in flight to the old members is theirs to answer.
      append(all, load->finish());
      load = std::move(next_load);
    }
    retire(plan, current);
    rec.end_ns = monotonic_ns();
    retired.push_back(std::move(current));
    current = std::move(next);
    out.deploys.push_back(rec);
    if (plan.after_deploy) plan.after_deploy(d);
    std::this_thread::sleep_for(plan.interval);
  }
  std::this_thread::sleep_for(plan.settle);
  append(all, load->finish());
  // The current generation answered until the load ended; its counts are final once it
  // is closed.
  for (auto& m : current) m->command(kClose);
  retired.push_back(std::move(current));
  for (const auto& g : retired)
    for (const auto& m : g) {
      out.served_by_servers[m->id()] = m->served();
      out.drained += m->drained();
    }
  if (steering) out.program = steering->counts();
  out.flows = std::move(all);
  out.mismatches = reconcile(out.flows, out.served_by_servers);
  return out;
}

}  // namespace rp
