// Client losses x kernel counts -> causes and a timeline. Every attempt is put in the 50 ms
// sample interval it ended in, next to what the kernel counted in that interval, so that a
// reset the clients saw is shown beside the children the kernel orphaned at that moment.

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "cli/deploy/deploy.h"
#include "harness/error.h"
#include "probes/attribution.h"
#include "probes/counters.h"

namespace rp::cli::deploy {


uint64_t val(const Counts& c, const std::string& k) {
  auto it = c.find(k);
  return it != c.end() && it->second ? *it->second : 0;
}

Endpoint target_of(const Options& o) {
  Endpoint e;
  e.family = o.host.find(':') != std::string::npos ? Family::V6 : Family::V4;
  e.host = o.host;
  e.port = static_cast<uint16_t>(o.port);
  return e;
}

std::string timeline_line(double from_s, double to_s, size_t before, size_t after,
                          const std::map<std::string, uint64_t>& client, const nlohmann::json& kernel) {
  std::string c, kk;
  for (const auto& [w, n] : client) c += (c.empty() ? "" : ", ") + w + " " + std::to_string(n);
  for (const auto& [w, n] : kernel.items()) kk += (kk.empty() ? "" : ", ") + w + " " + n.dump();
  char b[96];
  std::snprintf(b, sizeof b, "  %+7.2f..%+7.2f  %3zu -> %-3zu  ", from_s, to_s, before, after);
  return std::string(b) + (c.empty() ? "-" : c) + "  |  " + (kk.empty() ? "-" : kk);
}

std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

Attribution attribute(const Options& o, const Observed& obs) {
  using nlohmann::json;
  const auto& samples = obs.samples;
  const auto& ledger = obs.ledger;
  const uint64_t t0 = obs.deploy.started_ns();
  auto rel = [&](uint64_t ns) { return (static_cast<double>(ns) - static_cast<double>(t0)) / 1e9; };
  const bool http = !o.http_path.empty();
  Attribution a;

  // Client outcomes by the sample interval their attempt ended in.
  std::vector<std::map<std::string, uint64_t>> client(samples.size());
  for (const auto& at : ledger.attempts()) {
    bool lost = at.outcome != Outcome::Served;
    std::string what = outcome_name(at.outcome);
    if (http && at.outcome == Outcome::Served) {
      ++a.http_statuses[at.http_status];
      if (at.http_status < 200 || at.http_status >= 400) {
        lost = true;
        ++a.bad_status;
        what = "http_" + std::to_string(at.http_status);
      }
    }
    if (!lost) continue;
    auto it = std::lower_bound(samples.begin(), samples.end(), at.end_ns, [](const Sample& s, uint64_t t) { return s.ns < t; });
    size_t i = it == samples.end() ? samples.size() - 1 : static_cast<size_t>(it - samples.begin());
    ++client[i][what];
  }
  a.total = ledger.total();
  a.served = ledger.count(Outcome::Served);
  a.lost = a.total - a.served + a.bad_status;
  a.kernel_totals = samples.back().k;
  const Counts& kt = a.kernel_totals;

  // The timeline: intervals where something was lost, the kernel counted, or the port's
  // listeners changed.
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
    a.timeline.push_back(row);
    a.timeline_lines.push_back(timeline_line(rel(samples[i - 1].ns), rel(samples[i].ns), samples[i - 1].listeners,
                                             samples[i].listeners, client[i], k));
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
  auto& why = a.causes;
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
  {
    nlohmann::json outcomes = nlohmann::json::object();
    for (size_t i = 0; i < kOutcomeCount; ++i)
      outcomes[outcome_name(static_cast<Outcome>(i))] = ledger.count(static_cast<Outcome>(i));
    std::map<std::string, std::string, std::less<>> sources;
    for (auto& [k, v] : obs.kernel_sources.items())
      if (v.is_string()) sources[k] = v.get<std::string>();
    const auto named = rp::probes::attribute(kt, rp::probes::reset_reason_given(sources),
                                             rp::probes::client_failures(outcomes));
    a.named = named.to_json();
    a.named_lines = named.lines();
  }
  if (a.bad_status) why.push_back(std::to_string(a.bad_status) + " HTTP responses with a status outside 2xx/3xx (the server's own answer)");
  return a;
}

}  // namespace rp::cli::deploy
