// The runs of `reuseport-check report` (cli/report.cc): the profiles and their grids of
// experiments, one isolated run of a deploy strategy or a worker-sharing shape, and the
// connection-rate ceiling the open-loop rates are fractions of. Each run returns its
// measured part as JSON; report.cc adds the parameters and keeps the document.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "harness/strategies.h"
#include "harness/udp_strategies.h"

namespace rp::cli::report {

// One run to do: a deploy strategy (TCP or UDP) or a worker-sharing shape, with its load.
struct Experiment {
  std::string kind;  // "grid", "seed", "seed_busy", "blocked_worker", "nginx_shape", "udp_grid"
  std::optional<Strategy> strategy;
  std::optional<Sharing> sharing;
  LoadOptions::Mode mode = LoadOptions::Mode::Closed;
  unsigned concurrency = 20;  // closed loop; for UDP: datagrams in flight per flow
  double rate_fraction = 0;  // open loop: of the measured ceiling
  int backlog = 128;
  unsigned work_us = 0;
  unsigned workers = 1;
  unsigned repeats = 3;
  // Worker shapes only.
  unsigned duration_ms = 2000, stall_ms = 0, stall_every_ms = 0;
  // UDP strategies only ("udp_grid"): the flows and, open loop, datagrams/s over all of them.
  std::optional<UdpStrategy> udp_strategy = std::nullopt;
  unsigned flows = 64;
  double udp_rate = 0;
};

struct Profile {
  std::string name;
  std::vector<unsigned> concurrency;
  std::vector<int> backlogs;
  std::vector<unsigned> work_us;
  std::vector<double> open_fractions;
  std::vector<int> open_backlogs;
  unsigned repeats, seed_repeats, shape_repeats;
  // quick: work 100 us only at one point, not over the whole grid.
  bool work_grid;
  // The strategies whose loss the report compares across kernels (a close, b kill, h
  // shutdown then drain) get this many repeats at the focus point (closed 20 in flight,
  // backlog 16, work 0) when the profile has that point: a run's loss varies so much from
  // run to run that 3 repeats give intervals too wide to tell kernels apart.
  unsigned focus_repeats = 0;
  // The UDP strategies (u_close, u_drain, u_keep_open, u_steer_id) under 64 flows (per
  // generation for u_steer_id): closed loop at these datagrams in flight per flow, open
  // loop at these rates (datagrams/s, absolute: the TCP ceiling says nothing about UDP).
  std::vector<unsigned> udp_in_flight = {};
  std::vector<double> udp_rates = {};
  unsigned udp_repeats = 3;
};

// Whether a grid experiment is the profile's focus point for its strategy.
bool is_focus(const Experiment& e);

// quick, full or guest; std::invalid_argument for any other name.
Profile profile(const std::string& name);

// Every experiment of the profile, with its repeats (`repeats` overrides the profile's).
std::vector<Experiment> plan_for(const Profile& p, std::optional<unsigned> repeats);

// Every experiment kind a plan can hold, in plan order.
const std::vector<std::string>& experiment_kinds();

// The plan's experiments of these kinds only (`report --experiments`), in plan order;
// std::invalid_argument naming an unknown kind.
std::vector<Experiment> only_kinds(const std::vector<Experiment>& plan, const std::vector<std::string>& kinds);

// The data document's file name: <release>.json for the whole plan, <release>.<k1>+<k2>.json
// for a part of it (make_report.py lays a part over the whole document of its kernel).
std::string data_file_name(const std::string& release, const std::vector<std::string>& kinds);

// The parameters of a run as its record keeps them; `rate` for the open loop.
nlohmann::json params_json(const Experiment& e, double rate);

// One isolated run's measured part (ledger, kernel counts, latencies) as JSON text: a
// deploy strategy, or a worker-sharing shape.
std::string deploy_run(const Experiment& e, double rate);
std::string worker_run(const Experiment& e, double rate);
// A UDP strategy's run (cli/report_udp.cc) and its parameters as its record keeps them.
std::string udp_deploy_run(const Experiment& e);
nlohmann::json udp_params_json(const Experiment& e);

// The closed-loop ceiling (64 in flight, one listener, 1 s) in connections/s; `record`
// gets its run's record. Throws when the run fails.
double measure_ceiling(nlohmann::json& record);

// What a report's runs came to, for its exit status: the runs that ended in an error and
// those whose ledger did not reconcile, each named as "runs[3] grid a_close r0: <why>"
// (the index into the document's runs). A run that did not reconcile is left out of every
// figure, so the report that has one did not measure what it set out to: exit 1, as for
// an error.
struct RunsOutcome {
  std::vector<std::string> errors, unreconciled;
  int exit_status() const { return errors.empty() && unreconciled.empty() ? 0 : 1; }
};
RunsOutcome runs_outcome(const nlohmann::json& doc);

std::string machine_description();
double loadavg();
// "grid close closed:20 backlog 16 work 0us".
std::string describe(const Experiment& e, double rate);

}  // namespace rp::cli::report
