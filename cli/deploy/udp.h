// `deploy --udp`: the UDP flow load, what the kernel is sampled for, and the report
// (cli/deploy/udp.cc, udp_output.cc).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <optional>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/deploy/deploy.h"
#include "harness/udp_flows.h"

namespace rp::probes {
class UdpDrops;
}

namespace rp::cli::deploy {

// The UDP flows of o (harness/udp_flows.h), run on a thread of their own.
std::unique_ptr<Load> make_udp_load(const Options& o);
const UdpFlowResult& udp_result(const Load& l);
UdpFlowOptions udp_flow_options(const Options& o);

// Every 50 ms: the namespace's UDP MIB of the port's family (deltas since baseline(),
// under the keys of udp_counter_rows()), the UDP sockets bound to the port and the bytes in
// their receive queues.
class UdpKernel {
 public:
  explicit UdpKernel(const Options& o);
  void baseline();
  Sample sample();
  // Where each count comes from, and the counts this kernel cannot give with their reason.
  nlohmann::json sources() const;
  nlohmann::json not_observable() const;
  // The kernel's drops of the port by function and reason (bpf/udp_drops.bpf.c) since the
  // baseline; null when the probe is not attached.
  nlohmann::json drops() const;

 private:
  uint16_t port_;
  bool v6_;
  Counts base_;
  std::shared_ptr<probes::UdpDrops> probe_;  // null: not attached (probe_why_ says why)
  std::string probe_why_;
  std::map<std::pair<std::string, std::string>, uint64_t> drops_base_;
  Counts read() const;
};

struct UdpCounterRow {
  const char* key;
  const char* label;
};
const std::vector<UdpCounterRow>& udp_counter_rows();

// Every lost datagram under one named cause, in this order, each cause taking at most its
// kernel count: no_socket (Udp.NoPorts), receive_buffer_full (Udp.RcvbufErrors),
// other_receive_errors (Udp.InErrors less RcvbufErrors), queue_purged_at_close (the
// udp_drops probe: datagrams freed in a member's destructor); the rest is `unattributed`,
// always present. Kernel counts beyond the losses (datagrams no client missed: ICMP-less
// probes of other programs under --host-net, answers dropped after their datagram was
// already counted late) are shown apart.
struct UdpAttribution {
  UdpFlowTally tally;
  uint64_t broken = 0;  // flows whose answers came from another member (Moved + MovedAndLost)
  std::map<std::string, uint64_t> causes;
  std::map<std::string, std::string> evidence;
  uint64_t unattributed = 0;
  std::map<std::string, uint64_t> beyond_losses;
  std::string lost_when, moved_when;  // " at +a..+b s" (send times), or ""
  nlohmann::json timeline = nlohmann::json::array();
  std::vector<std::string> timeline_lines;
};
UdpAttribution attribute_udp(const Options& o, const UdpFlowResult& r, const std::vector<Sample>& samples, uint64_t t0);

// Lost datagrams and broken flows, attributed, printed, written to --json and --junit;
// returns 0 or 1.
int udp_report(const Options& o, const Load& load, const std::vector<Sample>& samples, const Process& deploy,
               const UdpKernel& kernel, double elapsed_s);

}  // namespace rp::cli::deploy
