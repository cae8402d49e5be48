// `reuseport-check deploy`, behind its thin command file (cli/deploy.cc: options and
// validation): the roles it is made of.
//   session.cc      the PID and network namespaces, the user's commands, the load, the
//                   50 ms samples of the kernel's counts and the port's listeners, cleanup
//   attribution.cc  client losses x kernel counts -> causes and a timeline
//   output.cc       console, JSON, JUnit
//   udp.cc          --udp: the UDP flow load, the UDP MIB and the port's members sampled,
//                   lost datagrams and broken flows attributed and reported
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "harness/ledger.h"
#include "harness/loadgen.h"
#include "harness/process.h"

namespace rp::cli::deploy {

struct Options {
  std::string start, deploy, host = "127.0.0.1", request_file, http_path, json_path, junit_path;
  // RP_WORKDIR, made by run() before the PID namespace (empty: the session makes its own).
  std::string workdir;
  long port = -1;
  LoadOptions::Mode mode = LoadOptions::Mode::Closed;
  unsigned concurrency = 32, threads = 1;
  double rate = 0;
  double warmup = 1, settle = 2, listen_timeout = 10, deploy_timeout = 30;
  long max_lost = 0;
  bool host_net = false;
  // --udp: UDP flows (harness/udp_flows.h) instead of TCP connections; closed:N is then N
  // datagrams in flight per flow, rate:R datagrams per second over all flows.
  bool udp = false;
  unsigned flows = 32;
  double reply_timeout = 1;  // seconds; an answer after it is late, not lost
  std::string dns_name;      // --udp-request dns:NAME: DNS queries, whose answers name no member
};

// The load a deploy runs under: TCP connections (session.cc) or UDP flows (udp.cc).
class Load {
 public:
  virtual ~Load() = default;
  virtual void start() = 0;
  virtual void stop() = 0;
  virtual bool done() const = 0;
  virtual void wait() = 0;  // rethrows what the load hit
  virtual uint64_t served() const = 0;
  // After the warm-up: why the run cannot go on (nothing answered what was sent), or "".
  virtual std::string warmup_problem() = 0;
  virtual double bound_s() const = 0;  // the load's own time bound
};

// An error that ends the run with exit status 2 after cleanup.
struct SetupError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Runs the whole deploy check (namespaces included); the exit status: 0, 1 or 2.
int run(const Options& o);

// The load generator's options for o (target, protocol, payload, bounds).
LoadOptions load_options(const Options& o);

using Counts = std::map<std::string, std::optional<uint64_t>, std::less<>>;

// The kernel's counts at one moment (since the baseline), and the port's listeners.
struct Sample {
  uint64_t ns = 0;
  Counts k;
  size_t listeners = 0;
  uint64_t accept_queue = 0;  // UDP: bytes in the members' receive queues
};

// A finished run, as attribution and output see it.
struct Observed {
  const Ledger& ledger;
  const std::vector<Sample>& samples;
  const Process& deploy;  // the deploy command; its start is t = 0
  nlohmann::json kernel_sources, kernel_not_observable, kernel_errors;
  std::string namespace_filter;  // the probe's ("netns cookie N", "netns inode N (...)"), "" without
  // Orphans per closed listener {cookie: count}, null where not observable; and its source.
  nlohmann::json orphans_by_listener;
  std::string orphans_by_listener_source;
};

// What the losses were and what the kernel did about them.
struct Attribution {
  uint64_t total = 0, served = 0, lost = 0, bad_status = 0;
  std::map<int32_t, uint64_t> http_statuses;
  Counts kernel_totals;
  nlohmann::json timeline = nlohmann::json::array();
  std::vector<std::string> timeline_lines;  // the console's rendering of the timeline
  std::vector<std::string> causes;          // one line per kind of loss
  // Every connection the clients lost under exactly one named cause (probes/attribution.h);
  // HTTP answers with a bad status are the server's own and not in it.
  nlohmann::json named = nlohmann::json::object();
  std::vector<std::string> named_lines;
};

Attribution attribute(const Options& o, const Observed& obs);

// Prints the verdict, writes --json and --junit; returns 0 or 1.
int report(const Options& o, const Observed& obs, const Attribution& a, double elapsed_s);

// A JUnit document for a run that ended in an error (setup, interrupted).
void write_error_junit(const Options& o, const std::string& error, double elapsed_s);

// Counter values: missing or not observable reads 0; a value or null for JSON.
uint64_t val(const Counts& c, const std::string& k);
std::string fmt(const char* f, double v);
inline double seconds(uint64_t ns) { return static_cast<double>(ns) / 1e9; }

// The port the load goes to: --host (IPv6 when it has a colon) and --port.
Endpoint target_of(const Options& o);

// One line of the text timeline: the interval, the group's size before and after, what the
// clients lost and what the kernel counted in it (TCP and UDP deploys alike).
std::string timeline_line(double from_s, double to_s, size_t before, size_t after,
                          const std::map<std::string, uint64_t>& client, const nlohmann::json& kernel);

}  // namespace rp::cli::deploy
