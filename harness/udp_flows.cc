#include "harness/udp_flows.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "harness/clock.h"
#include "harness/error.h"
#include "harness/socket.h"
#include "harness/wire.h"

namespace rp {

const char* to_string(DatagramOutcome o) {
  switch (o) {
    case DatagramOutcome::Answered: return "answered";
    case DatagramOutcome::Late: return "late";
    case DatagramOutcome::Lost: return "lost";
  }
  return "?";
}

const char* to_string(FlowOutcome o) {
  switch (o) {
    case FlowOutcome::Stayed: return "stayed";
    case FlowOutcome::Moved: return "moved";
    case FlowOutcome::Lost: return "lost";
    case FlowOutcome::MovedAndLost: return "moved_and_lost";
  }
  return "?";
}

std::string dns_query(const std::string& name, uint16_t id) {
  std::string n = name;
  if (!n.empty() && n.back() == '.') n.pop_back();
  if (n.empty()) throw std::invalid_argument("a DNS name needs at least one label");
  if (n.size() > 253) throw std::invalid_argument("a DNS name has at most 253 bytes, '" + name + "' has " + std::to_string(n.size()));
  // Header: ID, flags RD, one question.
  std::string q = {static_cast<char>(id >> 8), static_cast<char>(id & 0xff), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0};
  size_t start = 0;
  for (;;) {
    const size_t dot = n.find('.', start);
    const std::string label = n.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (label.empty() || label.size() > 63)
      throw std::invalid_argument("a DNS label has 1-63 bytes; '" + name + "' has one of " + std::to_string(label.size()));
    q += static_cast<char>(label.size());
    q += label;
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  q += std::string("\0\0\1\0\1", 5);  // root, QTYPE A, QCLASS IN
  return q;
}

UdpFlowLoad::UdpFlowLoad(UdpFlowOptions opts) : opts_(std::move(opts)) {
  auto bad = [](const std::string& m) { throw std::invalid_argument("UdpFlowLoad: " + m); };
  if (opts_.target.port == 0) bad("the target needs a port");
  if (opts_.flows == 0) bad("flows must be at least 1");
  if (!opts_.source_ports.empty() && opts_.source_ports.size() != opts_.flows)
    bad("source_ports must name one port per flow (" + std::to_string(opts_.flows) + ") or be empty");
  if (opts_.threads == 0) bad("threads must be at least 1");
  if (opts_.threads > opts_.flows) bad("threads must not exceed flows (a thread with no flow does nothing)");
  if (opts_.mode == UdpFlowOptions::Mode::Closed && opts_.in_flight == 0) bad("in_flight must be at least 1");
  if (opts_.mode == UdpFlowOptions::Mode::Open && !(opts_.rate > 0)) bad("rate must be positive");
  if (opts_.max_datagrams == 0) bad("max_datagrams must be at least 1");
  if (opts_.max_duration.count() <= 0) bad("max_duration must be positive");
  if (opts_.reply_timeout.count() <= 0) bad("reply_timeout must be positive");
  // A shorter late window would end the run before an in-time answer could still come.
  if (opts_.late_window < opts_.reply_timeout) bad("late_window must be at least reply_timeout");
  if (!opts_.dns_name.empty()) {
    try {
      dns_query(opts_.dns_name, 0);
    } catch (const std::invalid_argument& e) {
      bad(std::string("dns_name: ") + e.what());
    }
  }
}

namespace {

constexpr uint64_t kMs = 1000000;

struct FlowState {
  UniqueFd fd;
  FlowRecord* rec = nullptr;
  unsigned in_flight = 0;
  uint64_t expired_upto = 0;  // every datagram below this was answered or timed out
  bool answered_once = false;
};

// One thread's share of the flows. Sockets stay unconnected: an ICMP port unreachable then
// raises no error on them, so "nothing listened" is a lost datagram like any other.
class FlowWorker {
 public:
  FlowWorker(const UdpFlowOptions& o, std::vector<FlowState*> flows, uint64_t budget, uint64_t t0,
             double rate)
      : o_(o), flows_(std::move(flows)), budget_(budget), t0_(t0), interval_ns_(rate > 0 ? 1e9 / rate : 0) {
    dst_len_ = o.target.to_sockaddr(dst_);
    next_send_ = t0;
  }

  void run() {
    const uint64_t timeout = static_cast<uint64_t>(o_.reply_timeout.count()) * kMs;
    const uint64_t send_end = t0_ + static_cast<uint64_t>(o_.max_duration.count()) * kMs;
    std::vector<pollfd> pfds;
    for (auto* f : flows_) pfds.push_back({f->fd.get(), POLLIN, 0});
    for (;;) {
      uint64_t now = monotonic_ns();
      if (sending_ && (now >= send_end || (o_.control && o_.control->stop.load(std::memory_order_relaxed))))
        sending_ = false;
      if (sending_) send_some(now);
      expire(now, timeout);
      if (!sending_ && (unanswered_ == 0 || now >= last_send_ + static_cast<uint64_t>(o_.late_window.count()) * kMs))
        return;
      int wait_ms = 20;  // bounds how late an expiry or an open-loop send is noticed
      if (sending_ && o_.mode == UdpFlowOptions::Mode::Open && next_send_ > now)
        wait_ms = static_cast<int>(std::min<uint64_t>(20, (next_send_ - now) / kMs));
      int rc = poll(pfds.data(), pfds.size(), wait_ms);
      if (rc < 0 && errno == EINTR) continue;
      check_sys(rc, "poll udp flows");
      for (size_t i = 0; i < pfds.size(); ++i)
        if (pfds[i].revents & (POLLIN | POLLERR)) read_answers(*flows_[i], timeout);
    }
  }

 private:
  bool claim() {
    if (budget_ > 0) {
      --budget_;
      return true;
    }
    sending_ = false;
    return false;
  }

  // False when the socket's send buffer is full: the datagram was not sent, its claim goes back.
  bool send_one(FlowState& f) {
    FlowRecord& r = *f.rec;
    wire::FlowRequest q{wire::kFlowRequestMagic, r.flow, r.datagrams.size()};
    Datagram d;
    d.seq = q.seq;
    d.sent_ns = monotonic_ns();
    ssize_t n;
    if (o_.dns_name.empty()) {
      n = sendto(f.fd.get(), &q, sizeof q, 0, reinterpret_cast<sockaddr*>(&dst_), dst_len_);
    } else {
      const std::string dq = dns_query(o_.dns_name, static_cast<uint16_t>(q.seq & 0xffff));
      n = sendto(f.fd.get(), dq.data(), dq.size(), 0, reinterpret_cast<sockaddr*>(&dst_), dst_len_);
    }
    if (n < 0 && (errno == EAGAIN || errno == ENOBUFS)) {
      ++budget_;
      return false;
    }
    check_sys(n, "sendto udp flow " + std::to_string(r.flow) + " -> " + o_.target.str());
    r.datagrams.push_back(d);
    ++f.in_flight;
    ++unanswered_;
    last_send_ = d.sent_ns;
    return true;
  }

  void send_some(uint64_t now) {
    if (o_.mode == UdpFlowOptions::Mode::Closed) {
      for (auto* f : flows_)
        while (sending_ && f->in_flight < o_.in_flight && claim())
          if (!send_one(*f)) break;
      return;
    }
    while (sending_ && next_send_ <= now && claim()) {
      FlowState& f = *flows_[rr_++ % flows_.size()];
      if (!send_one(f)) break;
      next_send_ += static_cast<uint64_t>(interval_ns_);
    }
  }

  // Frees the slots of datagrams past their timeout; their answer may still come (Late).
  void expire(uint64_t now, uint64_t timeout) {
    for (auto* f : flows_) {
      auto& ds = f->rec->datagrams;
      while (f->expired_upto < ds.size()) {
        const Datagram& d = ds[f->expired_upto];
        if (d.answered_ns == 0) {
          if (d.sent_ns + timeout > now) break;
          --f->in_flight;
        }
        ++f->expired_upto;
      }
    }
  }

  void read_answers(FlowState& f, uint64_t timeout) {
    for (;;) {
      char buf[512];
      ssize_t n = recv(f.fd.get(), buf, sizeof buf, MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == ECONNREFUSED) return;
        throw_sys("recv udp flow answer");
      }
      const uint64_t now = monotonic_ns();
      auto& ds = f.rec->datagrams;
      wire::FlowReply a{};
      if (o_.dns_name.empty()) {
        // Not an answer to this flow (wrong size, magic, flow, an unknown or repeated seq):
        // ignored, so no datagram gets two outcomes.
        if (!wire::parse_flow_reply(buf, static_cast<size_t>(n), a) || a.flow != f.rec->flow) continue;
      } else {
        // A response (QR set) answers the oldest unanswered datagram with its ID.
        if (n < 12 || !(static_cast<uint8_t>(buf[2]) & 0x80)) continue;
        const uint64_t id = static_cast<uint64_t>(static_cast<uint8_t>(buf[0])) << 8 | static_cast<uint8_t>(buf[1]);
        a.seq = id;
        while (a.seq < ds.size() && ds[a.seq].answered_ns != 0) a.seq += 65536;
        a.listener = 0;
      }
      if (a.seq >= ds.size() || ds[a.seq].answered_ns != 0) continue;
      Datagram& d = ds[a.seq];
      d.answered_ns = now;
      d.member = static_cast<int32_t>(a.listener);
      d.outcome = now - d.sent_ns <= timeout ? DatagramOutcome::Answered : DatagramOutcome::Late;
      if (a.seq >= f.expired_upto) --f.in_flight;
      --unanswered_;
      if (o_.control) {
        o_.control->answers.fetch_add(1, std::memory_order_relaxed);
        if (!f.answered_once) o_.control->flows_answered.fetch_add(1, std::memory_order_relaxed);
      }
      f.answered_once = true;
    }
  }

  const UdpFlowOptions& o_;
  std::vector<FlowState*> flows_;
  uint64_t budget_;
  sockaddr_storage dst_{};
  socklen_t dst_len_ = 0;
  uint64_t t0_;
  double interval_ns_;
  uint64_t next_send_ = 0;
  uint64_t last_send_ = 0;
  uint64_t unanswered_ = 0;
  size_t rr_ = 0;
  bool sending_ = true;
};

void classify(FlowRecord& r) {
  for (const Datagram& d : r.datagrams) {
    if (d.outcome == DatagramOutcome::Lost) {
      ++r.lost;
      continue;
    }
    d.outcome == DatagramOutcome::Answered ? ++r.answered : ++r.late;
    ++r.by_member[d.member];
    if (r.first_member < 0) r.first_member = d.member;
  }
  int32_t cur = -1;
  for (const Datagram& d : r.datagrams) {
    if (d.member < 0) continue;
    if (cur >= 0 && d.member != cur) {
      if (r.moves == 0) {
        r.moved_ns = d.sent_ns;
        r.moved_from = cur;
        r.moved_to = d.member;
      }
      ++r.moves;
    }
    cur = d.member;
  }
  const bool moved = r.moves > 0, lost = r.lost > 0;
  r.outcome = moved && lost ? FlowOutcome::MovedAndLost
              : moved      ? FlowOutcome::Moved
              : lost       ? FlowOutcome::Lost
                           : FlowOutcome::Stayed;
}

}  // namespace

UdpFlowResult UdpFlowLoad::run() const {
  UdpFlowResult res;
  res.flows.resize(opts_.flows);
  std::vector<FlowState> states(opts_.flows);
  for (uint32_t i = 0; i < opts_.flows; ++i) {
    states[i].fd = open_udp_source(opts_.target.family, opts_.source_ports.empty() ? 0 : opts_.source_ports[i]);
    states[i].rec = &res.flows[i];
    res.flows[i].flow = opts_.first_flow + i;
    res.flows[i].source_port = local_port(states[i].fd.get());
  }
  std::vector<std::thread> threads;
  std::exception_ptr err;
  std::mutex err_mu;
  res.started_ns = monotonic_ns();
  uint64_t flows_before = 0;
  for (unsigned t = 0; t < opts_.threads; ++t) {
    std::vector<FlowState*> mine;
    for (uint32_t i = t; i < opts_.flows; i += opts_.threads) mine.push_back(&states[i]);
    // Each thread owns its flows' share of the count: with one shared budget a thread that
    // started first (or was scheduled more on a busy machine) took it all, and the other
    // thread's flows sent nothing.
    // Cumulative, so that the shares add up to max_datagrams exactly.
    const uint64_t share = opts_.max_datagrams * (flows_before + mine.size()) / opts_.flows -
                           opts_.max_datagrams * flows_before / opts_.flows;
    flows_before += mine.size();
    threads.emplace_back([&, share, mine = std::move(mine)]() mutable {
      try {
        FlowWorker w(opts_, std::move(mine), share, res.started_ns, opts_.rate / opts_.threads);
        w.run();
      } catch (...) {
        std::lock_guard<std::mutex> lk(err_mu);
        if (!err) err = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  res.ended_ns = monotonic_ns();
  if (err) std::rethrow_exception(err);
  for (auto& r : res.flows) classify(r);
  return res;
}

UdpFlowTally UdpFlowResult::tally() const {
  UdpFlowTally t;
  for (const auto& r : flows) {
    t.sent += r.datagrams.size();
    t.answered += r.answered;
    t.late += r.late;
    t.lost += r.lost;
    ++t.flows[r.outcome];
    for (const auto& [m, n] : r.by_member) t.by_member[m] += n;
  }
  return t;
}

std::vector<std::string> reconcile(const UdpFlowResult& r, const std::map<int32_t, uint64_t>& served_by_servers) {
  std::vector<std::string> out;
  uint64_t flows_counted = 0;
  for (const auto& f : r.flows) {
    const std::string who = "flow " + std::to_string(f.flow);
    if (f.answered + f.late + f.lost != f.datagrams.size())
      out.push_back(who + ": sent " + std::to_string(f.datagrams.size()) + " != answered " +
                    std::to_string(f.answered) + " + late " + std::to_string(f.late) + " + lost " +
                    std::to_string(f.lost));
    uint64_t by_member = 0;
    for (const auto& [m, n] : f.by_member) by_member += n;
    if (by_member != f.answered + f.late) out.push_back(who + ": answers per member do not add up to answered + late");
    ++flows_counted;
  }
  const UdpFlowTally t = r.tally();
  if (t.answered + t.late + t.lost != t.sent) out.push_back("total: sent != answered + late + lost");
  uint64_t outcomes = 0;
  for (const auto& [o, n] : t.flows) outcomes += n;
  if (outcomes != flows_counted) out.push_back("total: flows with an outcome != flows");
  if (!served_by_servers.empty()) {
    std::map<int32_t, uint64_t> all = served_by_servers;
    for (const auto& [m, n] : t.by_member) all.try_emplace(m, 0);
    for (const auto& [m, n] : all) {
      auto it = t.by_member.find(m);
      const uint64_t got = it == t.by_member.end() ? 0 : it->second;
      if (got != n)
        out.push_back("member " + std::to_string(m) + ": servers answered " + std::to_string(n) + ", clients got " +
                      std::to_string(got));
    }
  }
  return out;
}

}  // namespace rp
