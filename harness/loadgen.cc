#include "harness/loadgen.h"

#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <exception>

#include "harness/clock.h"
#include "harness/error.h"
#include "harness/fd.h"
#include "harness/loadgen_internal.h"
#include "harness/wire.h"

// The epoll engine: the workers' event loop, the Wire protocol, and LoadGenerator itself.
// HTTP request building and the Raw/Http stream protocols live in loadgen_protocol.cc.

namespace rp {

LoadGenerator::Worker::Worker(LoadGenerator& lg, unsigned slots) : lg(lg), conns(slots), stream(lg.opts_.protocol != LoadOptions::Protocol::Wire) {
  for (unsigned i = 0; i < slots; ++i) free_slots.push_back(slots - 1 - i);
  if (stream) streams.resize(slots);
}

void LoadGenerator::Worker::finish(uint32_t slot, Outcome o, int err) {
  Conn& c = conns[slot];
  c.a.outcome = o;
  c.a.err = err;
  c.a.end_ns = monotonic_ns();
  if (c.fd >= 0) ::close(c.fd);
  c.fd = -1;
  ledger.add(c.a);
  completed.fetch_add(1, std::memory_order_relaxed);
  if (o == Outcome::Served) served.fetch_add(1, std::memory_order_relaxed);
  free_slots.push_back(slot);
}

// Claims one attempt of the global budget; false when the budget or the time is spent.
bool LoadGenerator::Worker::claim(uint32_t& id, uint64_t end_ns) {
  if (lg.stop_.load(std::memory_order_relaxed) || monotonic_ns() >= end_ns) return false;
  uint64_t n = lg.next_id_.fetch_add(1, std::memory_order_relaxed);
  if (n >= lg.opts_.max_attempts) return false;
  id = static_cast<uint32_t>(n);
  return true;
}

void LoadGenerator::Worker::send_request(uint32_t slot) {
  Conn& c = conns[slot];
  c.phase = Phase::Connected;
  c.a.connected_ns = monotonic_ns();
  c.deadline_ns = c.a.connected_ns + static_cast<uint64_t>(lg.opts_.response_timeout.count()) * 1000000;
  if (lg.opts_.record_source_port) note_source_port(c);
  ssize_t n = send(c.fd, wire::kRequest, sizeof wire::kRequest, MSG_NOSIGNAL);
  if (n != static_cast<ssize_t>(sizeof wire::kRequest))
    finish(slot, n < 0 ? classify_error(errno, Phase::Connected) : Outcome::OtherError, n < 0 ? errno : EMSGSIZE);
}

void LoadGenerator::Worker::start_one(uint32_t id) {
  started.fetch_add(1, std::memory_order_relaxed);
  ledger.note_started();
  uint32_t slot = free_slots.back();
  free_slots.pop_back();
  Conn& c = conns[slot];
  c = Conn{};
  c.a.id = id;
  c.a.start_ns = monotonic_ns();
  c.deadline_ns = c.a.start_ns + static_cast<uint64_t>(lg.opts_.connect_timeout.count()) * 1000000;
  c.fd = socket(af, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c.fd < 0) {
    finish(slot, Outcome::OtherError, errno);
    return;
  }
  int rc = connect(c.fd, reinterpret_cast<sockaddr*>(&addr), addr_len);
  if (rc != 0 && errno != EINPROGRESS) {
    finish(slot, classify_error(errno, Phase::Connecting), errno);
    return;
  }
  if (stream) {
    start_stream(slot);
    return;
  }
  // On loopback the handshake has usually completed by the time connect() returns
  // EINPROGRESS: sending at once saves waiting for EPOLLOUT. A socket still in SYN_SENT
  // answers EAGAIN and is left to epoll.
  bool connected = false;
  ssize_t n = send(c.fd, wire::kRequest, sizeof wire::kRequest, MSG_NOSIGNAL);
  if (n == static_cast<ssize_t>(sizeof wire::kRequest)) {
    connected = true;
    c.phase = Phase::Connected;
    c.a.connected_ns = monotonic_ns();
    c.deadline_ns = c.a.connected_ns + static_cast<uint64_t>(lg.opts_.response_timeout.count()) * 1000000;
    if (lg.opts_.record_source_port) note_source_port(c);
  } else if (n >= 0 || errno != EAGAIN) {
    // An error before the handshake completed (a refused SYN surfaces here).
    finish(slot, n < 0 ? classify_error(errno, Phase::Connecting) : Outcome::OtherError, n < 0 ? errno : EMSGSIZE);
    return;
  }
  // Edge-triggered: one epoll_ctl per attempt.
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET | (connected ? 0u : static_cast<uint32_t>(EPOLLOUT));
  ev.data.u32 = slot;
  if (epoll_ctl(ep.get(), EPOLL_CTL_ADD, c.fd, &ev) != 0) finish(slot, Outcome::OtherError, errno);
}

void LoadGenerator::Worker::note_source_port(Conn& c) {
  sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(c.fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0)
    c.a.source_port = ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);  // same offset in sockaddr_in6
}

void LoadGenerator::Worker::mark_connected(Conn& c) {
  c.phase = Phase::Connected;
  c.a.connected_ns = monotonic_ns();
  c.deadline_ns = c.a.connected_ns + static_cast<uint64_t>(lg.opts_.response_timeout.count()) * 1000000;
  if (lg.opts_.record_source_port) note_source_port(c);
}

// For a socket still connecting: true once the handshake completed; finishes the attempt
// when it failed; false (nothing to do yet) otherwise.
bool LoadGenerator::Worker::handshake_done(uint32_t slot, uint32_t events) {
  Conn& c = conns[slot];
  if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return false;
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) {
    finish(slot, classify_error(err, Phase::Connecting), err);
    return false;
  }
  return (events & EPOLLOUT) != 0;
}

void LoadGenerator::Worker::on_event(uint32_t slot, uint32_t events) {
  Conn& c = conns[slot];
  if (c.fd < 0) return;
  if (stream) {
    on_stream_event(slot, events);
    return;
  }
  if (c.phase == Phase::Connecting) {
    if (!handshake_done(slot, events)) return;
    send_request(slot);
    if (c.fd < 0) return;
    if (!(events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP))) return;
  }
  while (c.got < sizeof c.buf) {
    ssize_t n = recv(c.fd, c.buf + c.got, sizeof c.buf - c.got, 0);
    if (n > 0) {
      c.got = static_cast<uint8_t>(c.got + n);
      continue;
    }
    if (n == 0) {
      finish(slot, Outcome::ClosedWithoutResponse, 0);
      return;
    }
    if (errno == EAGAIN || errno == EINTR) return;
    finish(slot, classify_error(errno, Phase::Connected), errno);
    return;
  }
  uint32_t listener;
  if (!wire::parse_reply(c.buf, listener)) {
    finish(slot, Outcome::OtherError, EBADMSG);
    return;
  }
  c.a.listener = static_cast<int32_t>(listener);
  finish(slot, Outcome::Served, 0);
}

void LoadGenerator::Worker::expire(uint64_t now) {
  for (uint32_t slot = 0; slot < conns.size(); ++slot) {
    Conn& c = conns[slot];
    if (c.fd >= 0 && now >= c.deadline_ns)
      finish(slot, c.phase == Phase::Connecting ? Outcome::ConnectTimeout : Outcome::ResponseTimeout, ETIMEDOUT);
  }
}

void LoadGenerator::Worker::run(unsigned share_closed, double share_rate) {
  const LoadOptions& o = lg.opts_;
  ep.reset(epoll_create1(EPOLL_CLOEXEC));
  if (!ep) throw_sys("epoll_create1");
  addr_len = o.target.to_sockaddr(addr);
  af = af_of(o.target.family);
  const uint64_t t0 = monotonic_ns();
  const uint64_t end_ns = t0 + static_cast<uint64_t>(o.max_duration.count()) * 1000000;
  const bool open = o.mode == LoadOptions::Mode::Open;
  const unsigned cap = open ? static_cast<unsigned>(conns.size()) : share_closed;
  const double interval_ns = open && share_rate > 0 ? 1e9 / share_rate : 0;
  double next_start = static_cast<double>(t0);
  uint64_t next_scan = t0;
  bool exhausted = false;
  std::vector<epoll_event> evs(256);
  for (;;) {
    uint64_t now = monotonic_ns();
    if (!exhausted) {
      uint32_t id;
      while (in_flight() < cap && (!open || now >= next_start)) {
        if (!claim(id, end_ns)) {
          exhausted = true;
          break;
        }
        start_one(id);
        if (open) next_start += interval_ns;
      }
      // An open loop that fell behind its schedule does not burst to catch up.
      if (open && next_start < static_cast<double>(now) - 1e8) next_start = static_cast<double>(now);
    }
    if (exhausted && in_flight() == 0) break;
    int timeout = 10;
    if (open && !exhausted) {
      double wait_ms = (next_start - static_cast<double>(monotonic_ns())) / 1e6;
      timeout = wait_ms <= 0 ? 0 : std::min(10, static_cast<int>(std::ceil(wait_ms)));
    }
    int n = epoll_wait(ep.get(), evs.data(), static_cast<int>(evs.size()), timeout);
    if (n < 0 && errno != EINTR) throw_sys("epoll_wait");
    for (int i = 0; i < n; ++i) on_event(evs[i].data.u32, evs[i].events);
    now = monotonic_ns();
    if (now >= next_scan) {
      expire(now);
      next_scan = now + 5000000;
    }
  }
}

LoadGenerator::LoadGenerator(LoadOptions opts) : opts_(std::move(opts)) {
  if (opts_.threads == 0) throw std::invalid_argument("load: threads must be at least 1");
  if (opts_.mode == LoadOptions::Mode::Closed && opts_.concurrency < opts_.threads)
    throw std::invalid_argument("load: concurrency " + std::to_string(opts_.concurrency) + " is below threads " +
                                std::to_string(opts_.threads));
  if (opts_.mode == LoadOptions::Mode::Open && !(opts_.rate > 0))
    throw std::invalid_argument("load: open loop needs a rate above 0");
  if (opts_.protocol != LoadOptions::Protocol::Wire && opts_.payload.empty())
    throw std::invalid_argument(std::string("load: the ") + to_string(opts_.protocol) + " protocol needs a payload to send");
}

LoadGenerator::~LoadGenerator() {
  stop();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
}

void LoadGenerator::start() {
  const unsigned n = opts_.threads;
  for (unsigned i = 0; i < n; ++i) {
    unsigned share = opts_.concurrency / n + (i < opts_.concurrency % n ? 1 : 0);
    unsigned slots = opts_.mode == LoadOptions::Mode::Closed ? share : opts_.max_in_flight / n + 1;
    workers_.push_back(std::make_unique<Worker>(*this, slots));
  }
  for (unsigned i = 0; i < n; ++i) {
    Worker* w = workers_[i].get();
    unsigned share = static_cast<unsigned>(w->conns.size());
    double rate = opts_.rate / n;
    threads_.emplace_back([w, share, rate] {
      try {
        w->run(share, rate);
      } catch (...) {
        w->error = std::current_exception();
      }
      w->finished.store(true);
    });
  }
}

void LoadGenerator::stop() { stop_.store(true); }

void LoadGenerator::wait() {
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  if (waited_) return;
  waited_ = true;
  for (auto& w : workers_) {
    if (w->error) std::rethrow_exception(w->error);
    ledger_.merge(w->ledger);
  }
}

Ledger LoadGenerator::run() {
  start();
  wait();
  return ledger_;
}

uint64_t LoadGenerator::started() const {
  uint64_t n = 0;
  for (auto& w : workers_) n += w->started.load(std::memory_order_relaxed);
  return n;
}
uint64_t LoadGenerator::completed() const {
  uint64_t n = 0;
  for (auto& w : workers_) n += w->completed.load(std::memory_order_relaxed);
  return n;
}
uint64_t LoadGenerator::served() const {
  uint64_t n = 0;
  for (auto& w : workers_) n += w->served.load(std::memory_order_relaxed);
  return n;
}
bool LoadGenerator::done() const {
  for (auto& w : workers_)
    if (!w->finished.load()) return false;
  return !workers_.empty();
}

}  // namespace rp
