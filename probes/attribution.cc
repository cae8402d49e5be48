#include "probes/attribution.h"

#include <algorithm>

namespace rp::probes {
namespace {

// A cause, the kernel counts that bound it, and what they mean.
struct CauseDef {
  const char* name;
  std::vector<const char*> keys;  // summed; a null one makes the cause unavailable
  const char* evidence;
};

// The order in which a failure is given to a cause when several could have caused it.
const std::vector<CauseDef>& cause_table() {
  static const std::vector<CauseDef> t = {
      {"orphaned_in_accept_queue", {"kernel_orphan_resets"},
       "kernel_orphan_resets: an RST from a never-accepted child in the thread closing its listener"},
      {"request_of_closed_listener", {"kernel_rst_listener_ack", "kernel_rst_forgotten_child"},
       "kernel_rst_listener_ack + kernel_rst_forgotten_child: a listener answered the final ACK of a request whose "
       "own listener had closed (a request socket, or a handshake completed by syncookie, which the other listeners "
       "do not check), or the handshake completed while its listener closed and the new child was reset at once"},
      {"closed_by_owner", {"kernel_rst_owner_abort", "kernel_rst_after_close"},
       "kernel_rst_owner_abort + kernel_rst_after_close: accepted, then closed or killed with unread data (an RST), "
       "or the request arrived after the close (an RST)"},
      {"closed_before_answering", {"kernel_owner_close_unanswered"},
       "kernel_owner_close_unanswered: accepted, then closed or killed before sending a byte, with nothing unread "
       "(a FIN: the client reads EOF)"},
      {"refused_by_steering", {},
       "the case's steering program's own count of SYNs it refused (the kernel answers them as NO_SOCKET)"},
      {"no_listener", {"kernel_rst_no_socket"}, "kernel_rst_no_socket: an RST answering a segment that found no socket"},
      {"syn_retries_exhausted", {"netstat_listen_drops"},
       "TcpExt.ListenDrops - kernel_listen_overflow_drops: SYNs dropped on a full queue, the client's connect timed "
       "out"},
      {"ack_dropped_on_full_queue", {"kernel_listen_overflow_drops", "kernel_no_socket_drops"},
       "kernel_listen_overflow_drops + (kernel_no_socket_drops - kernel_rst_no_socket): the client's ACK or data "
       "dropped on a full accept queue (TCP_LISTEN_OVERFLOW; a syncookie's ACK is dropped as NO_SOCKET without an "
       "RST), the client waited for an answer; counted per segment, so a bound"},
  };
  return t;
}

std::optional<std::uint64_t> get(const CountValues& v, const char* key) {
  auto it = v.find(key);
  return it == v.end() ? std::nullopt : it->second;
}

}  // namespace

const std::vector<std::string>& cause_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& c : cause_table()) n.push_back(c.name);
    return n;
  }();
  return names;
}

ClientFailures client_failures(const nlohmann::json& by_outcome) {
  auto n = [&](const char* k) { return by_outcome.contains(k) ? by_outcome[k].get<std::uint64_t>() : 0; };
  ClientFailures f;
  f.resets = n("reset_before_connect") + n("reset_after_connect");
  f.refused = n("refused");
  f.connect_timeouts = n("connect_timeout");
  f.response_timeouts = n("response_timeout");
  f.closed_unanswered = n("closed_without_response");
  f.other = n("other_error");
  return f;
}

bool reset_reason_given(const std::map<std::string, std::string, std::less<>>& sources) {
  auto it = sources.find("kernel_rst_owner_abort");
  return it != sources.end() && it->second.find("no reset reason") == std::string::npos &&
         it->second.find("not observable") == std::string::npos;
}

Attribution attribute(const CountValues& values, bool reset_reason, const std::optional<ClientFailures>& clients) {
  Attribution a;
  a.method = reset_reason ? "reset reason (tcp_send_reset's reason, 6.10+, checked against the socket's state and owner)"
                          : "socket state and owner (this kernel's tcp_send_reset gives no reason)";
  for (const auto& c : cause_table()) a.causes[c.name] = 0, a.evidence[c.name] = c.evidence;

  // Each cause's capacity: what the kernel counted for it.
  std::map<std::string, std::uint64_t> left;
  bool rst_rows = true;
  for (const auto& c : cause_table()) {
    std::uint64_t n = 0;
    bool have = true;
    for (const char* k : c.keys) {
      auto v = get(values, k);
      have = have && v.has_value();
      n += v.value_or(0);
    }
    if (std::string(c.name) == "syn_retries_exhausted")  // ListenDrops counts the ACK overflows too
      n -= std::min(n, get(values, "kernel_listen_overflow_drops").value_or(0));
    if (std::string(c.name) == "ack_dropped_on_full_queue")  // the NO_SOCKET drops answered by an RST are not
      n -= std::min(get(values, "kernel_no_socket_drops").value_or(0), get(values, "kernel_rst_no_socket").value_or(0));
    if (std::string(c.name) == "refused_by_steering") {
      have = clients && clients->steering_refusals.has_value();
      n = have ? *clients->steering_refusals : 0;
    }
    left[c.name] = have ? n : 0;
  }
  // The RST rows come from the lifecycle programs every kernel attaches; the drop and
  // TcpExt rows may be missing alone (kernel < 5.17), which only leaves their causes empty.
  for (const char* k : {"kernel_orphan_resets", "kernel_rst_listener_ack", "kernel_rst_forgotten_child", "kernel_rst_owner_abort",
                        "kernel_rst_after_close", "kernel_rst_no_socket", "kernel_resets_received"})
    rst_rows = rst_rows && get(values, k).has_value();
  const std::uint64_t received = get(values, "kernel_resets_received").value_or(0);
  const std::uint64_t received_closed = get(values, "kernel_resets_received_closed").value_or(0);
  if (clients) {
    a.client_visible = clients->resets + clients->refused + clients->connect_timeouts + clients->response_timeouts +
                       clients->closed_unanswered + clients->other;
    a.client_visible_source = "the clients' outcomes: resets, refused, connect timeouts, unanswered, other errors";
  } else {
    a.client_visible = received - std::min(received, received_closed);
    a.client_visible_source =
        "kernel_resets_received - kernel_resets_received_closed: RSTs that reached a client of the port whose "
        "application still held the socket";
  }
  if (!rst_rows) {
    a.not_observable = "the probe's RST causes are not observable here (see kernel_rst_* in the sources)";
    a.unattributed = a.client_visible;
    return a;
  }

  // Gives up to n failures to the causes in order; returns what none could take.
  auto give = [&](std::uint64_t n, std::initializer_list<const char*> order) {
    for (const char* c : order) {
      const std::uint64_t take = std::min(n, left[c]);
      a.causes[c] += take;
      left[c] -= take;
      n -= take;
    }
    return n;
  };
  if (clients) {
    // Refusals first: a SYN answered with an RST is only ever no socket or a steering drop,
    // while an established client's RST may be any of them.
    a.unattributed += give(clients->refused, {"refused_by_steering", "no_listener"});
    a.unattributed +=
        give(clients->resets, {"orphaned_in_accept_queue", "request_of_closed_listener", "closed_by_owner", "no_listener"});
    a.unattributed += give(clients->connect_timeouts, {"syn_retries_exhausted"});
    a.unattributed += give(clients->response_timeouts, {"ack_dropped_on_full_queue"});
    a.unattributed += give(clients->closed_unanswered, {"closed_before_answering"});
    a.unattributed += clients->other;
  } else {
    a.unattributed +=
        give(a.client_visible, {"orphaned_in_accept_queue", "request_of_closed_listener", "closed_by_owner", "no_listener"});
  }

  a.not_seen_by_clients["listener_fin_resets"] = get(values, "kernel_listener_fin_resets").value_or(0);
  a.not_seen_by_clients["timewait_resets"] = get(values, "kernel_rst_timewait").value_or(0);
  a.unnamed_resets = get(values, "kernel_rst_unnamed").value_or(0);
  a.not_seen_by_clients["received_by_closed_clients"] = received_closed;
  std::uint64_t surplus = 0;
  for (const char* c : {"orphaned_in_accept_queue", "request_of_closed_listener", "closed_by_owner", "no_listener"})
    surplus += left[c];
  a.not_seen_by_clients["named_resets_beyond_client_failures"] = surplus;
  return a;
}

nlohmann::json Attribution::to_json() const {
  nlohmann::json j = {{"method", method},
                      {"client_visible", client_visible},
                      {"client_visible_source", client_visible_source},
                      {"causes", causes},
                      {"evidence", evidence},
                      {"unattributed", unattributed},
                      {"unnamed_resets_sent", unnamed_resets},
                      {"not_seen_by_clients", not_seen_by_clients},
                      {"not_separated",
                       {{"migrated_then_reset",
                         "a child migrated to another listener and orphaned there is counted under "
                         "orphaned_in_accept_queue: migrations leave no per-socket trace the probe keeps"}}}};
  if (!not_observable.empty()) j["not_observable"] = not_observable;
  return j;
}

std::vector<std::string> Attribution::lines() const {
  std::vector<std::string> out;
  out.push_back("client-visible failures " + std::to_string(client_visible) + " (" + client_visible_source + ")");
  out.push_back("causes, told apart by " + method + ":");
  for (const auto& name : cause_names()) {
    const auto n = causes.at(name);
    if (n) out.push_back("  " + name + " " + std::to_string(n) + "  [" + evidence.at(name) + "]");
  }
  out.push_back("  unattributed " + std::to_string(unattributed) + (not_observable.empty() ? "" : " (" + not_observable + ")"));
  std::string unseen;
  for (const auto& [k, n] : not_seen_by_clients)
    if (n) unseen += (unseen.empty() ? "" : ", ") + k + " " + std::to_string(n);
  if (unnamed_resets) out.push_back("  RSTs sent with no name: " + std::to_string(unnamed_resets));
  out.push_back("RSTs no client saw: " + (unseen.empty() ? std::string("none") : unseen));
  return out;
}

}  // namespace rp::probes
