// close_listener_with_queued_children
//
// When a reuseport listener closes, the children still waiting in its accept queue are
// reset, unless the kernel migrates them to another listener of the group
// (net.ipv4.tcp_migrate_req, 5.14+).
//
// Scenario, per variant (family, how the listener goes, K listeners, backlog B, migrate):
//   1. In a fresh network namespace, set net.ipv4.tcp_migrate_req to the variant's value.
//   2. Start K SO_REUSEPORT listeners on one loopback port: the victim (listener 0) never
//      accepts and has backlog B; the other K-1 accept and serve. All are threads for the
//      close() variants, processes for the SIGKILL ones.
//   3. Run a closed-loop load (one client thread, B+1+64 attempts in flight) until
//      sock_diag shows the victim's accept queue full (B+1 children: the queue is full only
//      when it holds more than the backlog). SYNs that hash to it from then on are dropped
//      and retried by the clients.
//   4. Note the queue length Q that sock_diag reports, then close() the victim (or SIGKILL
//      its process).
//   5. Let the load run to its fixed number of attempts; retried SYNs now reach the others.
//   6. Reconcile three ways: the ledger (attempts = outcomes; served per listener as the
//      clients saw it = as the servers counted it), and the kernel's own count from the
//      reuseport probe attached before step 2 (children orphaned by the close, the RSTs
//      they sent, RSTs the clients received) and TcpExt (TCPMigrateReqSuccess). Compare
//      with cases/expectations.json: tcp_migrate_req=0 resets exactly the Q queued
//      children (client resets = kernel orphans = orphan RSTs = Q) and serves everything
//      else; tcp_migrate_req=1 resets nothing and migrates Q.

#include <gtest/gtest.h>

#include <thread>
#include <utility>

#include "cases/lib/case_test.h"
#include "cases/lib/migrate.h"
#include "cases/lib/kernel.h"
#include "probes/kernel_sampler.h"
#include "cases/lib/observe.h"
#include "harness/fault.h"
#include "harness/loadgen.h"
#include "harness/scope.h"
#include "harness/server.h"

namespace rp::cases {
namespace {

struct Variant {
  Family family;
  FaultKind fault;  // Close (threads) or Kill (processes)
  int listeners;
  int backlog;
  int migrate;

  std::string name() const {
    return std::string("tcp") + (family == Family::V4 ? "4" : "6") + (fault == FaultKind::Close ? "_close" : "_sigkill") +
           "_k" + std::to_string(listeners) + "_b" + std::to_string(backlog) + "_migrate" + std::to_string(migrate);
  }
};

constexpr uint16_t kPort = 47200;

nlohmann::json scenario(const Variant& v) {
  const auto migrate = set_migrate_req(v.migrate);

  rp::probes::KernelSampler kernel({.port = kPort});
  const Exec exec = v.fault == FaultKind::Close ? Exec::Thread : Exec::Process;
  ListenerGroup group;
  ListenerSpec victim;
  victim.socket.addr = Endpoint::loopback(v.family, kPort);
  victim.socket.backlog = v.backlog;
  victim.policy = AcceptPolicy::Never;
  victim.exec = exec;
  const int victim_id = group.add(victim);
  for (int i = 1; i < v.listeners; ++i) {
    ListenerSpec s = victim;
    s.policy = AcceptPolicy::Serve;
    s.socket.backlog = 4096;
    group.add(s);
  }

  LoadOptions lo;
  lo.target = Endpoint::loopback(v.family, kPort);
  // One client thread: on loopback each handshake then completes inside its connect(), one
  // after another, so the queue stops at exactly B+1. With two client threads, handshakes
  // completing at once on two CPUs can both pass the (lockless) full-queue check: B+2 was
  // seen here, and an ACK dropped at overflow leaves a request behind that is reset later.
  lo.threads = 1;
  lo.concurrency = static_cast<unsigned>(v.backlog + 1 + 64);
  lo.max_attempts = static_cast<uint64_t>(2 * v.listeners * (v.backlog + 1) + 200);
  lo.max_duration = std::chrono::seconds(20);
  // Long enough for a SYN dropped at the full queue to be retried (1 s, then 3 s) and for
  // the queued children to wait out the close.
  lo.connect_timeout = std::chrono::seconds(8);
  lo.response_timeout = std::chrono::seconds(8);
  LoadGenerator load(lo);
  load.start();

  const Fault fault{v.fault, Trigger::when_queue_full(), {victim_id}};
  std::vector<FaultEvent> events;
  try {
    events = inject(group, load, {fault});
  } catch (...) {
    load.stop();
    throw;
  }
  const uint32_t queued = events.at(0).queued_before.value();
  load.wait();
  const rp::probes::KernelCounts kernel_sample = kernel.sample();  // before stop_all() closes the rest
  group.stop_all();

  nlohmann::json o = ledger_counts(load.ledger(), group);
  o["queued_at_close"] = queued;
  o["backlog"] = v.backlog;
  o["queue_limit"] = v.backlog + 1;
  o["served_by_victim"] = group.served(victim_id);
  o["lost_other"] = o["failed"].get<uint64_t>() - o["client_resets"].get<uint64_t>();
  o.update(kernel_sample.to_json());
  put_orphans_of_only_closed(o, "kernel_orphans_of_victim", kernel_sample);
  put_attribution(o, kernel_sample);
  return o;
}

std::vector<Variant> variants() {
  std::vector<Variant> out;
  for (int migrate : {0, 1})
    for (Family f : {Family::V4, Family::V6})
      for (FaultKind fault : {FaultKind::Close, FaultKind::Kill})
        // Group size and backlog paired, not crossed: (2, 8) and (4, 128). The full cross
        // (also (2, 128) and (4, 8)) gave the same verdicts on every kernel of the matrix and
        // in 20 repeats here (orphans = Q whatever K), and cost the TCG guests a quarter of
        // their time: each variant waits out a SYN retry.
        for (auto [k, b] : {std::pair{2, 8}, std::pair{4, 128}}) out.push_back({f, fault, k, b, migrate});
  return out;
}

RP_CASE(close_listener_with_queued_children, ::testing::ValuesIn(variants()));

}  // namespace
}  // namespace rp::cases
