#include "harness/server.h"

#include <linux/close_range.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "harness/clock.h"
#include "harness/error.h"
#include "harness/wire.h"

namespace rp {

namespace {

enum Command : int { kNone, kClose, kShutdown, kDrain, kStall, kStop };

}  // namespace

struct ListenerGroup::Slot {
  std::atomic<int> state{static_cast<int>(ListenerState::Starting)};
  std::atomic<int> command{kNone};
  std::atomic<int64_t> command_arg{0};
  std::atomic<uint64_t> accepted{0};
  std::atomic<uint64_t> served{0};
  std::atomic<uint64_t> serve_errors{0};
  std::atomic<uint64_t> inode{0};
  std::atomic<int> pid{0};
  std::atomic<int> listen_fd{-1};  // its number in the listener's own process
  char error[256] = {};
};

const char* to_string(AcceptPolicy p) {
  switch (p) {
    case AcceptPolicy::Serve: return "serve";
    case AcceptPolicy::Never: return "never";
    case AcceptPolicy::Slow: return "slow";
  }
  return "?";
}
const char* to_string(Exec e) { return e == Exec::Thread ? "thread" : "process"; }
const char* to_string(ListenerState s) {
  switch (s) {
    case ListenerState::Starting: return "starting";
    case ListenerState::Listening: return "listening";
    case ListenerState::ShutDown: return "shut down";
    case ListenerState::Closed: return "closed";
    case ListenerState::Killed: return "killed";
    case ListenerState::Stopped: return "stopped";
    case ListenerState::Failed: return "failed";
  }
  return "?";
}

namespace {

void set_state(ListenerGroup::Slot& s, ListenerState st) { s.state.store(static_cast<int>(st), std::memory_order_release); }

void spin_for(std::chrono::microseconds d) {
  auto end = monotonic_ns() + static_cast<uint64_t>(d.count()) * 1000;
  while (monotonic_ns() < end) {
  }
}

// Reads the request and replies with the listener's id. The connection is made blocking
// with a receive timeout so that a client that vanished cannot wedge the listener.
bool serve_one(int conn, uint32_t id, std::chrono::microseconds work, std::atomic<uint64_t>& served) {
  int blocking = 0;
  ioctl(conn, FIONBIO, &blocking);
  timeval tv{2, 0};
  setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(conn, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  char req[sizeof wire::kRequest];
  size_t got = 0;
  while (got < sizeof req) {
    ssize_t n = recv(conn, req + got, sizeof req - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    got += static_cast<size_t>(n);
  }
  if (std::memcmp(req, wire::kRequest, sizeof req) != 0) return false;
  if (work.count() > 0) spin_for(work);
  wire::Reply r = wire::make_reply(id);
  // Counted before the send: a SIGKILL is delivered when send() returns, so counting after
  // it would lose the replies a killed listener had already sent (the ledger then could not
  // reconcile). A failed send takes its count back.
  served.fetch_add(1, std::memory_order_relaxed);
  ssize_t n = send(conn, &r, sizeof r, MSG_NOSIGNAL);
  if (n == static_cast<ssize_t>(sizeof r)) return true;
  served.fetch_sub(1, std::memory_order_relaxed);
  return false;
}

// Accepts what is queued now (all of it, or one: for a slow listener, or one that works on
// each request) and serves it.
void accept_batch(ListenerGroup::Slot& s, int lfd, uint32_t id, const ListenerSpec& spec, bool all) {
  for (;;) {
    if (spec.policy == AcceptPolicy::Slow && spec.accept_delay.count() > 0)
      std::this_thread::sleep_for(spec.accept_delay);
    int c = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (c < 0) return;  // EAGAIN: the queue is empty
    s.accepted.fetch_add(1, std::memory_order_relaxed);
    if (!serve_one(c, id, spec.work, s.served)) s.serve_errors.fetch_add(1, std::memory_order_relaxed);
    ::close(c);
    if (!all) return;
  }
}

void serve_udp(ListenerGroup::Slot& s, int fd, uint32_t id) {
  for (;;) {
    char buf[64];
    sockaddr_storage from;
    socklen_t fl = sizeof from;
    ssize_t n = recvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), &fl);
    if (n < 0) return;
    s.accepted.fetch_add(1, std::memory_order_relaxed);
    // A flow request gets its flow and sequence echoed; anything else the plain reply.
    wire::FlowRequest q;
    wire::FlowReply fr{wire::kFlowReplyMagic, id, 0, 0, 0};
    wire::Reply r = wire::make_reply(id);
    const void* out = &r;
    size_t len = sizeof r;
    if (wire::parse_flow_request(buf, static_cast<size_t>(n), q)) {
      fr.flow = q.flow;
      fr.seq = q.seq;
      out = &fr;
      len = sizeof fr;
    }
    // Counted before the send, as serve_one does: a client may read the reply and the test
    // read the count before this thread runs again; a failed send takes its count back.
    s.served.fetch_add(1, std::memory_order_relaxed);
    if (sendto(fd, out, len, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), fl) != static_cast<ssize_t>(len))
      s.served.fetch_sub(1, std::memory_order_relaxed);
  }
}

// The body of every listener, thread or process. `inherited`: a socket it owns and serves
// instead of opening one (from ListenerSpec::inherited_fd), or -1.
void listener_main(ListenerGroup::Slot& s, int cmd_fd, uint32_t id, const ListenerSpec& spec, int inherited = -1) {
  UniqueFd lfd(inherited);
  try {
    if (!lfd) lfd = open_listener(spec.socket);
    s.inode.store(socket_inode(lfd.get()));
    s.listen_fd.store(lfd.get());
  } catch (const std::exception& e) {
    std::snprintf(s.error, sizeof s.error, "%s", e.what());
    set_state(s, ListenerState::Failed);
    return;
  }
  set_state(s, ListenerState::Listening);
  const bool tcp = spec.socket.proto == Proto::Tcp;
  bool accepting = spec.policy != AcceptPolicy::Never;
  uint64_t stall_until = 0;
  UniqueFd ep;
  bool ep_has_listener = false;
  if (spec.epoll_exclusive) {
    ep.reset(epoll_create1(EPOLL_CLOEXEC));
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = 0;
    if (!ep || epoll_ctl(ep.get(), EPOLL_CTL_ADD, cmd_fd, &ev) < 0) {
      std::snprintf(s.error, sizeof s.error, "epoll for listener %u: %s", id, std::strerror(errno));
      set_state(s, ListenerState::Failed);
      return;
    }
  }
  for (;;) {
    int timeout = -1;
    bool poll_listener = lfd && accepting && static_cast<ListenerState>(s.state.load()) == ListenerState::Listening;
    if (stall_until) {
      uint64_t now = monotonic_ns();
      if (now >= stall_until) {
        stall_until = 0;
      } else {
        poll_listener = false;
        timeout = static_cast<int>((stall_until - now) / 1000000 + 1);
      }
    }
    pollfd p[2] = {{cmd_fd, POLLIN, 0}, {lfd.get(), POLLIN, 0}};
    int n;
    if (ep) {
      // An exclusive entry cannot be modified, only removed and added again.
      if (poll_listener != ep_has_listener) {
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLEXCLUSIVE;
        ev.data.u32 = 1;
        if (epoll_ctl(ep.get(), poll_listener ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, lfd.get(), &ev) == 0)
          ep_has_listener = poll_listener;
      }
      epoll_event evs[2];
      n = epoll_wait(ep.get(), evs, 2, timeout);
      for (int i = 0; i < n; ++i) p[evs[i].data.u32].revents = static_cast<short>(evs[i].events);
    } else {
      n = poll(p, poll_listener ? 2 : 1, timeout);
    }
    if (n < 0 && errno != EINTR) {
      std::snprintf(s.error, sizeof s.error, "poll: %s", std::strerror(errno));
      set_state(s, ListenerState::Failed);
      return;
    }
    if (n > 0 && (p[0].revents & POLLIN)) {
      uint64_t v;
      (void)!read(cmd_fd, &v, sizeof v);
      int cmd = s.command.exchange(kNone);
      switch (cmd) {
        case kClose:
          lfd.reset();
          set_state(s, ListenerState::Closed);
          return;
        case kStop:
          lfd.reset();
          set_state(s, ListenerState::Stopped);
          return;
        case kShutdown:
          check_sys(::shutdown(lfd.get(), SHUT_RDWR), "shutdown listener");
          set_state(s, ListenerState::ShutDown);
          break;
        case kDrain:
          // What nginx does on QUIT: stop taking new work, finish what is already queued.
          if (tcp)
            accept_batch(s, lfd.get(), id, spec, true);
          else
            serve_udp(s, lfd.get(), id);
          lfd.reset();
          set_state(s, ListenerState::Closed);
          return;
        case kStall:
          stall_until = monotonic_ns() + static_cast<uint64_t>(s.command_arg.load()) * 1000000;
          s.command_arg.store(-1);  // acknowledges the stall
          break;
        default:
          break;
      }
      continue;
    }
    if (n > 0 && poll_listener && (p[1].revents & POLLIN)) {
      // A listener that works on each request goes back to poll() after each one, as a
      // prefork worker handles its signals between requests: under a closed loop its queue
      // is never empty, and a batch would not see a close command until the load stopped.
      if (tcp)
        accept_batch(s, lfd.get(), id, spec, spec.policy != AcceptPolicy::Slow && spec.work.count() == 0);
      else
        serve_udp(s, lfd.get(), id);
    }
  }
}

ListenerGroup::Slot* g_signal_slot = nullptr;
int g_signal_cmd_fd = -1;

void on_sigterm(int) {
  g_signal_slot->command.store(kDrain);
  uint64_t one = 1;
  (void)!write(g_signal_cmd_fd, &one, sizeof one);
}

}  // namespace

ListenerGroup::ListenerGroup(size_t capacity) : capacity_(capacity) {
  void* p = mmap(nullptr, sizeof(Slot) * capacity, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw_sys("mmap listener slots");
  slots_ = static_cast<Slot*>(p);
  for (size_t i = 0; i < capacity; ++i) new (&slots_[i]) Slot();
}

ListenerGroup::~ListenerGroup() {
  try {
    stop_all();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "reuseport-check: stopping listeners: %s\n", e.what());
  }
  for (auto& m : members_) {
    if (m->pid > 0 && !m->reaped) {
      ::kill(m->pid, SIGKILL);
      waitpid(m->pid, nullptr, 0);
    }
    if (m->thread.joinable()) m->thread.join();
    if (m->cmd_fd >= 0) ::close(m->cmd_fd);
  }
  munmap(slots_, sizeof(Slot) * capacity_);
}

ListenerGroup::Slot& ListenerGroup::slot(int id) const {
  if (id < 0 || static_cast<size_t>(id) >= members_.size()) throw std::out_of_range("no listener " + std::to_string(id));
  return slots_[id];
}

int ListenerGroup::add(const ListenerSpec& spec) {
  if (members_.size() >= capacity_) throw std::length_error("listener group is full");
  const int id = static_cast<int>(members_.size());
  auto m = std::make_unique<Member>();
  m->spec = spec;
  m->cmd_fd = static_cast<int>(check_sys(eventfd(0, EFD_CLOEXEC), "eventfd for listener commands"));
  Slot& s = slots_[id];
  if (spec.exec == Exec::Thread) {
    s.pid.store(getpid());
    int inherited = -1;
    if (spec.inherited_fd >= 0)
      inherited = static_cast<int>(check_sys(fcntl(spec.inherited_fd, F_DUPFD_CLOEXEC, 0),
                                             "dup inherited listener fd " + std::to_string(spec.inherited_fd)));
    m->thread = std::thread([&s, fd = m->cmd_fd, id, spec, inherited] { listener_main(s, fd, id, spec, inherited); });
  } else {
    const pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) throw_sys("fork listener " + std::to_string(id));
    if (pid == 0) {
      // A listener process must hold nothing of its parent's: an inherited client socket
      // would send its own FIN or RST when this process exits.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(1);
      // The inherited socket goes to fd 4; moved out of the way first, since it may sit
      // where the command fd is about to go.
      int inherited = spec.inherited_fd >= 0 ? fcntl(spec.inherited_fd, F_DUPFD, 16) : -1;
      if (spec.inherited_fd >= 0 && inherited < 0) _exit(1);
      if (dup2(m->cmd_fd, 3) < 0) _exit(1);
      if (inherited >= 0 && dup2(inherited, 4) < 0) _exit(1);
      syscall(SYS_close_range, inherited >= 0 ? 5U : 4U, ~0U, 0U);
      s.pid.store(getpid());
      g_signal_slot = &s;
      g_signal_cmd_fd = 3;
      struct sigaction sa{};
      sa.sa_handler = on_sigterm;
      sigaction(SIGTERM, &sa, nullptr);
      listener_main(s, 3, id, spec, inherited >= 0 ? 4 : -1);
      _exit(0);
    }
    m->pid = pid;
  }
  members_.push_back(std::move(m));
  wait_state(id, {ListenerState::Listening, ListenerState::Failed}, std::chrono::seconds(5));
  if (state(id) == ListenerState::Failed) {
    std::string err = "listener " + std::to_string(id) + ": " + s.error;
    reap(id);
    throw std::runtime_error(err);
  }
  return id;
}

void ListenerGroup::wait_state(int id, std::initializer_list<ListenerState> states, std::chrono::milliseconds timeout) const {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto st = state(id);
    for (auto want : states)
      if (st == want) return;
    if (std::chrono::steady_clock::now() > deadline)
      throw std::runtime_error("listener " + std::to_string(id) + " stuck in state " + to_string(st));
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

void ListenerGroup::command(int id, int cmd, int64_t arg, std::initializer_list<ListenerState> done) {
  Slot& s = slot(id);
  s.command_arg.store(arg);
  s.command.store(cmd);
  uint64_t one = 1;
  check_sys(write(members_[id]->cmd_fd, &one, sizeof one), "eventfd write to listener " + std::to_string(id));
  wait_state(id, done, std::chrono::seconds(10));
  if (cmd != kShutdown && cmd != kStall) reap(id);
}

void ListenerGroup::reap(int id) {
  Member& m = *members_[id];
  if (m.reaped) return;
  if (m.thread.joinable()) m.thread.join();
  if (m.pid > 0) {
    int st;
    while (waitpid(m.pid, &st, 0) < 0 && errno == EINTR) {
    }
  }
  m.reaped = true;
}

void ListenerGroup::close(int id) { command(id, kClose, 0, {ListenerState::Closed}); }
void ListenerGroup::shutdown(int id) { command(id, kShutdown, 0, {ListenerState::ShutDown}); }
void ListenerGroup::drain(int id) { command(id, kDrain, 0, {ListenerState::Closed}); }

void ListenerGroup::stall(int id, std::chrono::milliseconds d) {
  Slot& s = slot(id);
  s.command_arg.store(d.count());
  s.command.store(kStall);
  uint64_t one = 1;
  check_sys(write(members_[id]->cmd_fd, &one, sizeof one), "eventfd write to listener " + std::to_string(id));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (s.command_arg.load() != -1) {
    if (std::chrono::steady_clock::now() > deadline) throw std::runtime_error("listener " + std::to_string(id) + " did not stall");
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

void ListenerGroup::terminate(int id) {
  Member& m = *members_.at(id);
  if (m.pid <= 0) throw std::invalid_argument("listener " + std::to_string(id) + " is a thread: SIGTERM needs Exec::Process");
  check_sys(::kill(m.pid, SIGTERM), "kill SIGTERM listener " + std::to_string(id));
  wait_state(id, {ListenerState::Closed}, std::chrono::seconds(10));
  reap(id);
}

void ListenerGroup::kill(int id) {
  Member& m = *members_.at(id);
  if (m.pid <= 0) throw std::invalid_argument("listener " + std::to_string(id) + " is a thread: SIGKILL needs Exec::Process");
  check_sys(::kill(m.pid, SIGKILL), "kill SIGKILL listener " + std::to_string(id));
  reap(id);  // after waitpid the kernel has closed every fd of the process
  set_state(slot(id), ListenerState::Killed);
}

void ListenerGroup::stop_all() {
  for (int id : ids()) {
    auto st = state(id);
    if (st == ListenerState::Listening || st == ListenerState::ShutDown)
      command(id, kStop, 0, {ListenerState::Stopped});
    else
      reap(id);
  }
}

ListenerState ListenerGroup::state(int id) const { return static_cast<ListenerState>(slot(id).state.load(std::memory_order_acquire)); }
uint64_t ListenerGroup::served(int id) const { return slot(id).served.load(); }
uint64_t ListenerGroup::accepted(int id) const { return slot(id).accepted.load(); }
uint64_t ListenerGroup::inode(int id) const { return slot(id).inode.load(); }
pid_t ListenerGroup::pid(int id) const { return slot(id).pid.load(); }
std::string ListenerGroup::error(int id) const { return slot(id).error; }
const ListenerSpec& ListenerGroup::spec(int id) const { return members_.at(id)->spec; }

std::vector<int> ListenerGroup::ids() const {
  std::vector<int> v;
  for (size_t i = 0; i < members_.size(); ++i) v.push_back(static_cast<int>(i));
  return v;
}

UniqueFd ListenerGroup::listener_fd(int id) const {
  const std::string who = "listener " + std::to_string(id);
  auto st = state(id);
  const int fd = slot(id).listen_fd.load();
  if ((st != ListenerState::Listening && st != ListenerState::ShutDown) || fd < 0)
    throw std::runtime_error(who + " has no socket (state " + to_string(st) + ")");
  const Member& m = *members_.at(id);
  if (m.pid <= 0) return UniqueFd(static_cast<int>(check_sys(fcntl(fd, F_DUPFD_CLOEXEC, 0), "dup socket of " + who)));
  UniqueFd pidfd(static_cast<int>(check_sys(syscall(SYS_pidfd_open, m.pid, 0), "pidfd_open " + who)));
  return UniqueFd(static_cast<int>(check_sys(syscall(SYS_pidfd_getfd, pidfd.get(), fd, 0), "pidfd_getfd socket of " + who)));
}

std::map<int32_t, uint64_t> ListenerGroup::served_by_listener() const {
  std::map<int32_t, uint64_t> m;
  for (int id : ids())
    if (uint64_t n = served(id)) m[id] = n;
  return m;
}

}  // namespace rp
