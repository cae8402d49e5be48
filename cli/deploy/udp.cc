// `deploy --udp`: the UDP flow load on a thread of its own, the kernel's UDP counts every
// 50 ms, and the attribution of lost datagrams and broken flows (udp_output.cc prints it).
//
// What the kernel tells about a lost datagram, and where this rests:
//  - no socket on the port: Udp.NoPorts (__udp4_lib_rcv()/__udp6_lib_rcv(), then an ICMP
//    port unreachable), per network namespace;
//  - the member's receive buffer was full: Udp.RcvbufErrors, also counted in Udp.InErrors
//    (__udp_queue_rcv_skb(); cases/udp_unread_member measured RcvbufErrors = InErrors);
//  - queued on a member that closed: freed with the socket, no SNMP counter
//    (cases/udp_close_with_queued); the udp_drops probe (tp_btf/kfree_skb) sees each one
//    freed in the socket's destructor (udp_destruct_common() on 6.18, reason NOT_SPECIFIED;
//    a drop with reason QUEUE_PURGE counts the same). Without the probe they stay unattributed.
// A broken flow is one whose answers came from another member (harness/udp_flows.h), which
// only a server naming its member can show; the port's members are sampled beside it.

#include "cli/deploy/udp.h"

#include <netinet/in.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <thread>

#include <sys/socket.h>

#include "harness/clock.h"
#include "harness/fd.h"
#include "harness/sockdiag.h"
#include "probes/netstat.h"
#ifdef RP_HAVE_BPF
#include "probes/udp_drops.h"
#endif

namespace rp::cli::deploy {
namespace {

class UdpLoad : public Load {
 public:
  explicit UdpLoad(UdpFlowOptions opts) : opts_(std::move(opts)) {
    opts_.control = &control_;
    load_.emplace(opts_);  // checks the options now, before anything runs
  }
  ~UdpLoad() override {
    control_.stop.store(true);
    if (thread_.joinable()) thread_.join();
  }
  void start() override {
    thread_ = std::thread([this] {
      try {
        result_ = load_->run();
      } catch (...) {
        error_ = std::current_exception();
      }
      done_.store(true);
    });
  }
  void stop() override { control_.stop.store(true); }
  bool done() const override { return done_.load(); }
  void wait() override {
    if (thread_.joinable()) thread_.join();
    if (error_) std::rethrow_exception(error_);
  }
  uint64_t served() const override { return control_.answers.load(); }
  double bound_s() const override { return static_cast<double>(opts_.max_duration.count()) / 1000; }
  std::string warmup_problem() override {
    // A warm-up shorter than the reply timeout may end before any answer could come.
    if (control_.answers.load() > 0 || done() || std::chrono::duration<double>(opts_.reply_timeout).count() > warmup_s_)
      return {};
    stop();
    return opts_.dns_name.empty()
               ? "none of the datagrams of the warm-up was answered: does the server answer the UDP flow requests "
                 "of `reuseport-check serve --udp` (harness/wire.h FlowRequest)? For a DNS server see --udp-request"
               : "none of the DNS queries for " + opts_.dns_name + " of the warm-up was answered";
  }
  void set_warmup(double s) { warmup_s_ = s; }
  const UdpFlowResult& result() const { return result_; }

 private:
  UdpFlowOptions opts_;
  UdpFlowControl control_;
  std::optional<UdpFlowLoad> load_;
  std::thread thread_;
  UdpFlowResult result_;
  std::exception_ptr error_;
  std::atomic<bool> done_{false};
  double warmup_s_ = 0;
};

std::string when(double first, double last) {
  return std::isnan(first) ? std::string() : " at " + fmt("%+.2f", first) + ".." + fmt("%+.2f", last) + " s";
}

}  // namespace

UdpFlowOptions udp_flow_options(const Options& o) {
  UdpFlowOptions u;
  u.target = target_of(o);
  u.mode = o.mode == LoadOptions::Mode::Closed ? UdpFlowOptions::Mode::Closed : UdpFlowOptions::Mode::Open;
  u.flows = o.flows;
  u.in_flight = o.concurrency;
  u.rate = o.rate > 0 ? o.rate : 1000;
  u.threads = o.threads;
  u.max_datagrams = UINT64_MAX;
  // A bound the run never reaches on its own: stop() ends the sending after --settle.
  u.max_duration = std::chrono::milliseconds(static_cast<int64_t>((o.warmup + o.deploy_timeout + o.settle + 10) * 1000));
  u.reply_timeout = std::chrono::milliseconds(static_cast<int64_t>(o.reply_timeout * 1000));
  u.late_window = 2 * u.reply_timeout;
  u.dns_name = o.dns_name;
  return u;
}

std::unique_ptr<Load> make_udp_load(const Options& o) {
  auto l = std::make_unique<UdpLoad>(udp_flow_options(o));
  l->set_warmup(o.warmup);
  return l;
}

const UdpFlowResult& udp_result(const Load& l) { return static_cast<const UdpLoad&>(l).result(); }

const std::vector<UdpCounterRow>& udp_counter_rows() {
  static const std::vector<UdpCounterRow> rows = {
      {"udp_no_ports", "Udp NoPorts: datagrams that found no socket on their port"},
      {"udp_rcvbuf_errors", "Udp RcvbufErrors: dropped, the socket's receive buffer was full"},
      {"udp_in_errors", "Udp InErrors: every receive error (RcvbufErrors included)"},
      {"udp_queue_purged", "freed in a closed member's receive queue (kfree_skb, probe)"},
  };
  return rows;
}

UdpKernel::UdpKernel(const Options& o) : port_(static_cast<uint16_t>(o.port)), v6_(o.host.find(':') != std::string::npos) {
  read();  // fails now, before the server starts, when the MIB cannot be read
#ifdef RP_HAVE_BPF
  try {
    probe_ = std::make_shared<probes::UdpDrops>(probes::UdpDrops::for_current_netns(port_));
  } catch (const std::exception& e) {
    probe_why_ = std::string("the udp_drops probe did not attach: ") + e.what();
  }
  // Without the queued skbs a purge cannot be told from another namespace's: not observable.
  if (probe_ && !probe_->queued_not_tracked().empty()) probe_why_ = probe_->queued_not_tracked();
#else
  probe_why_ = "built without BPF (RP_ENABLE_BPF=OFF)";
#endif
}

Counts UdpKernel::read() const {
  const auto m = probes::netstat::read_udp_mib(v6_);
  Counts c = {{"udp_no_ports", m.no_ports}, {"udp_rcvbuf_errors", m.rcvbuf_errors}, {"udp_in_errors", m.in_errors},
              {"udp_queue_purged", std::nullopt}};
#ifdef RP_HAVE_BPF
  if (probe_ && probe_why_.empty()) {
    uint64_t purged = 0;
    for (const auto& d : probe_->read())
      if (d.purged_at_close()) purged += d.count;
    c["udp_queue_purged"] = purged;
  }
#endif
  return c;
}

nlohmann::json UdpKernel::drops() const {
  if (!probe_) return nullptr;
  nlohmann::json out = nlohmann::json::array();
#ifdef RP_HAVE_BPF
  // A drop whose namespace was not told is listed as "(namespace unknown) FUNCTION": never
  // counted as this namespace's, shown so that an unattributed loss has a likely place.
  for (const auto& d : probe_->read()) {
    const std::string fn = d.netns_unknown ? "(namespace unknown) " + d.function : d.function;
    auto it = drops_base_.find({fn, d.reason});
    const uint64_t n = d.count - (it == drops_base_.end() ? 0 : it->second);
    if (n)
      out.push_back({{"function", fn}, {"reason", d.reason}, {"count", n},
                     {"purged_at_close", d.purged_at_close()}});
  }
#endif
  return out;
}

void UdpKernel::baseline() {
  base_ = read();
#ifdef RP_HAVE_BPF
  if (probe_) {
    for (const auto& d : probe_->read())
      drops_base_[{d.netns_unknown ? "(namespace unknown) " + d.function : d.function, d.reason}] = d.count;
  }
#endif
}

Sample UdpKernel::sample() {
  Sample s;
  s.ns = monotonic_ns();
  const Counts now = read();
  for (const auto& [k, v] : now) s.k[k] = v ? std::optional<uint64_t>(*v - std::min(*v, val(base_, k))) : std::nullopt;
  try {
    for (const auto& m : port_sockets(IPPROTO_UDP, port_)) {
      ++s.listeners;
      s.accept_queue += m.rqueue;
    }
  } catch (const std::exception&) {
  }
  return s;
}

nlohmann::json UdpKernel::sources() const {
  const std::string f = v6_ ? "/proc/net/snmp6 Udp6" : "/proc/net/snmp Udp.";
  nlohmann::json s = nlohmann::json::object();
  s["udp_no_ports"] = f + "NoPorts";
  s["udp_rcvbuf_errors"] = f + "RcvbufErrors";
  s["udp_in_errors"] = f + "InErrors";
  if (probe_why_.empty())
    s["udp_queue_purged"] = "tp_btf/kfree_skb of datagrams to the port freed in a socket destructor, the namespace told by " +
                            probe_->purges_told_by() + " (bpf/udp_drops.bpf.c)";
  return s;
}

nlohmann::json UdpKernel::not_observable() const {
  nlohmann::json n = nlohmann::json::object();
  if (!probe_why_.empty())
    n["udp_queue_purged"] = probe_why_ +
                            "; datagrams queued on a member that closed are freed with it and no SNMP counter counts "
                            "them: they stay unattributed";
  return n;
}

UdpAttribution attribute_udp(const Options& o, const UdpFlowResult& r, const std::vector<Sample>& samples, uint64_t t0) {
  using nlohmann::json;
  UdpAttribution a;
  a.tally = r.tally();
  auto rel = [&](uint64_t ns) { return (static_cast<double>(ns) - static_cast<double>(t0)) / 1e9; };
  auto interval = [&](uint64_t ns) {
    auto it = std::lower_bound(samples.begin(), samples.end(), ns, [](const Sample& s, uint64_t t) { return s.ns < t; });
    return it == samples.end() ? samples.size() - 1 : static_cast<size_t>(it - samples.begin());
  };
  // Lost and late datagrams by the interval they were sent in; moved flows by the send
  // time of the first datagram the new member answered.
  std::vector<std::map<std::string, uint64_t>> client(samples.size());
  double lf = NAN, ll = NAN, mf = NAN, ml = NAN;
  for (const auto& f : r.flows) {
    for (const auto& d : f.datagrams) {
      if (d.outcome == DatagramOutcome::Answered) continue;
      ++client[interval(d.sent_ns)][to_string(d.outcome)];
      if (d.outcome != DatagramOutcome::Lost) continue;
      if (std::isnan(lf) || rel(d.sent_ns) < lf) lf = rel(d.sent_ns);
      if (std::isnan(ll) || rel(d.sent_ns) > ll) ll = rel(d.sent_ns);
    }
    if (f.moves == 0) continue;
    ++a.broken;
    ++client[interval(f.moved_ns)]["moved"];
    if (std::isnan(mf) || rel(f.moved_ns) < mf) mf = rel(f.moved_ns);
    if (std::isnan(ml) || rel(f.moved_ns) > ml) ml = rel(f.moved_ns);
  }
  a.lost_when = when(lf, ll);
  a.moved_when = when(mf, ml);

  for (size_t i = 1; i < samples.size(); ++i) {
    json k = json::object();
    for (const auto& row : udp_counter_rows()) {
      const uint64_t d = val(samples[i].k, row.key) - std::min(val(samples[i].k, row.key), val(samples[i - 1].k, row.key));
      if (d) k[row.key] = d;
    }
    const bool changed = samples[i].listeners != samples[i - 1].listeners;
    if (client[i].empty() && k.empty() && !changed) continue;
    a.timeline.push_back({{"from_s", rel(samples[i - 1].ns)}, {"to_s", rel(samples[i].ns)}, {"members", samples[i].listeners},
                          {"receive_queue_bytes", samples[i].accept_queue}, {"client", client[i]}, {"kernel", k}});
    a.timeline_lines.push_back(timeline_line(rel(samples[i - 1].ns), rel(samples[i].ns), samples[i - 1].listeners,
                                             samples[i].listeners, client[i], k));
  }

  const Counts& kt = samples.back().k;
  const uint64_t rcvbuf = val(kt, "udp_rcvbuf_errors"), in = val(kt, "udp_in_errors");
  const std::string f = o.host.find(':') != std::string::npos ? "Udp6" : "Udp.";
  const bool probed = kt.count("udp_queue_purged") && kt.at("udp_queue_purged");
  std::vector<std::tuple<std::string, uint64_t, std::string>> evidence = {
      {"no_socket", val(kt, "udp_no_ports"), f + "NoPorts " + std::to_string(val(kt, "udp_no_ports"))},
      {"receive_buffer_full", rcvbuf, f + "RcvbufErrors " + std::to_string(rcvbuf)},
      {"other_receive_errors", in - std::min(in, rcvbuf),
       f + "InErrors " + std::to_string(in) + " less RcvbufErrors " + std::to_string(rcvbuf)},
  };
  if (probed)
    evidence.emplace_back("queue_purged_at_close", val(kt, "udp_queue_purged"),
                          "kfree_skb in a socket destructor " + std::to_string(val(kt, "udp_queue_purged")));
  uint64_t left = a.tally.lost;
  for (const auto& [cause, n, ev] : evidence) {
    const uint64_t take = std::min(left, n);
    a.causes[cause] = take;
    a.evidence[cause] = ev;
    left -= take;
    if (n > take) a.beyond_losses[cause] = n - take;
  }
  a.unattributed = left;
  if (!probed) a.evidence["queue_purged_at_close"] = "not observable here (kernel_not_observable says why)";
  return a;
}

}  // namespace rp::cli::deploy
