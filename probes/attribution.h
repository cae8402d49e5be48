// Every client-visible failure on a port counted under exactly one named cause, from the
// counter table's values (probes/counters.h) and, where the caller ran the clients itself
// (cases, deploy), the clients' outcomes (issue 14). What no cause accounts for is
// `unattributed`, a number that is always there; the suite holds it to 0.
//
// A cause takes at most as many failures as its evidence (a kernel count) allows; the
// failures of one outcome go to its causes in a fixed order until each is used up. So a
// cause's count never exceeds the kernel's, and the causes plus unattributed always add up
// to the failures. RSTs the kernel sent that no client saw (a listener answering a late
// FIN, RSTs reaching clients that had already closed, more RSTs of a cause than failures)
// are shown apart, under not_seen_by_clients.
//
//   auto a = rp::probes::attribute(counts.values, reset_reason_given(counts.sources),
//                                  ClientFailures{.resets = 12});
//   a.causes["orphaned_in_accept_queue"], a.unattributed
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace rp::probes {

using CountValues = std::map<std::string, std::optional<std::uint64_t>, std::less<>>;

// What the clients saw, by ledger outcome (harness/ledger.h).
struct ClientFailures {
  std::uint64_t resets = 0;            // reset before or after connect (ECONNRESET, EPIPE)
  std::uint64_t refused = 0;           // ECONNREFUSED
  std::uint64_t connect_timeouts = 0;  // the handshake never completed
  std::uint64_t response_timeouts = 0;  // connected, no complete answer in time
  std::uint64_t closed_unanswered = 0;  // connected, EOF before a complete answer
  std::uint64_t other = 0;             // any other error: never named
  // SYNs the case's own steering program refused (its counter); nullopt: none attached.
  std::optional<std::uint64_t> steering_refusals;
};

struct Attribution {
  // "reset reason" (tcp_send_reset's reason checked against the socket, 6.10+) or "socket
  // state and owner" (older kernels): how the RST causes were told apart.
  std::string method;
  std::uint64_t client_visible = 0;  // the failures attributed
  std::string client_visible_source;
  // Every cause, 0 included, so that the keys are the same in every document.
  std::map<std::string, std::uint64_t> causes;
  std::map<std::string, std::string> evidence;  // cause -> the counts it rests on
  std::uint64_t unattributed = 0;
  // RSTs the port sent that fit no cause (kernel_rst_unnamed): when clients saw them they
  // are among the unattributed.
  std::uint64_t unnamed_resets = 0;
  // RSTs sent that no client saw, by kind.
  std::map<std::string, std::uint64_t> not_seen_by_clients;
  // Why nothing could be attributed (the probe's RST rows are not observable); empty when
  // the attribution holds. Then unattributed = client_visible.
  std::string not_observable;

  nlohmann::json to_json() const;
  // The console's lines: one per cause with a count, then unattributed and the rest.
  std::vector<std::string> lines() const;
};

// The failures from counts by outcome name (harness/ledger.h's outcome_name(): "refused",
// "connect_timeout", ...), as a case record or deploy's ledger has them; missing ones are 0.
ClientFailures client_failures(const nlohmann::json& by_outcome);

// Every cause name, in the order failures are given to them.
const std::vector<std::string>& cause_names();

// Whether the probe's RST rows were told apart by the kernel's reset reason: read from
// the sources of the counts (a kernel without one says "no reset reason").
bool reset_reason_given(const std::map<std::string, std::string, std::less<>>& sources);

// clients: the clients' outcomes; nullopt when the caller does not run the clients (watch):
// then the client-visible failures are the RSTs clients of the port received while their
// application still held the socket (kernel_resets_received - kernel_resets_received_closed).
Attribution attribute(const CountValues& values, bool reset_reason, const std::optional<ClientFailures>& clients);

}  // namespace rp::probes
