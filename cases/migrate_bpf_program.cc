// migrate_bpf_program
//
// An sk_reuseport program loaded with the expected attach type
// BPF_SK_REUSEPORT_SELECT_OR_MIGRATE (SEC("sk_reuseport/migrate"); 5.14, d5e4ddaeb6ab "bpf:
// Support socket migration by eBPF.") also runs for every child left in the accept queue of a
// closing listener (md->migrating_sk set) and picks its new listener, or drops it. The program
// decides, not net.ipv4.tcp_migrate_req: reuseport_stop_listen_sock() moves the closing
// listener to the group's closed section when the sysctl is set OR such a program is attached,
// and reuseport_migrate_sock() (net/core/sock_reuseport.c) consults the sysctl only when no
// program of that attach type is attached. Otherwise it runs the program:
// bpf_sk_select_reuseport() -> that listener; SK_PASS without a selection -> the hash;
// SK_DROP -> ERR_PTR(-ECONNREFUSED), which goes to `failure:` (TcpExt.TCPMigrateReqFailure
// += 1) and returns NULL, so inet_csk_listen_stop() resets the child as without migration.
// A migrated child is queued on the target with inet_csk_reqsk_queue_add(), which checks
// only that the target still listens, never its backlog: the target's queue can hold more
// than its backlog (TcpExt.TCPMigrateReqSuccess += 1 per child).
//
// Scenario, per variant (family, how the victim goes, pick/drop, victim backlog B), with
// net.ipv4.tcp_migrate_req=0 throughout:
//   1. In a fresh network namespace, two SO_REUSEPORT listeners on one loopback port: the
//      victim (listener 0, backlog B, never accepts) and the target (listener 1, backlog 8,
//      serves). Threads for close(), processes for SIGKILL. The reuseport probe is attached
//      before (kernel counts).
//   2. The sk_reuseport/migrate program: victim in slot 0, target in slot 1 of its
//      REUSEPORT_SOCKARRAY; new connections go to slot 0 (select_new); migrating children to
//      slot 1 (pick) or SK_DROP (drop). Attached to the victim's socket.
//   3. The target is stalled (accepts nothing) for kStall.
//   4. Load: B+1+4 attempts, all started at once from one client thread, none after. Every
//      SYN goes to the victim: B+1 fill its accept queue (sock_diag), the 4 others are
//      dropped there and retried by the clients after about 1 s (or, sent only after the
//      close, go straight to the target).
//   5. Note the victim's queue Q, close() it (or SIGKILL its process), and read at once, still
//      inside the stall, the target's accept queue from sock_diag.
//   6. The stall ends, the target serves; retried SYNs reach the target (slot 0 is empty
//      now: the program's selection fails and the kernel falls back to the hash).
//   7. Reconcile: ledger (attempts = outcomes; served per listener as clients saw it = as
//      the servers counted it), the program's own counts, TcpExt and the reuseport probe.
//      pick: the target held >= Q (> its backlog 8) right after the close; nothing is reset,
//      every attempt is served; Q migrations succeed. drop: exactly Q client resets = Q
//      kernel orphans = Q orphan RSTs = Q program drops = Q TCPMigrateReqFailure; everything
//      else is served.

#include <gtest/gtest.h>

#include <chrono>

#include "cases/lib/case_test.h"
#include "probes/kernel_sampler.h"
#include "cases/lib/observe.h"
#include "harness/fault.h"
#include "harness/loadgen.h"
#include "harness/scope.h"
#include "harness/server.h"
#include "harness/sockdiag.h"
#include "probes/reuseport_steer.h"

namespace rp::cases {
namespace {

using probes::ReuseportSteer;
using probes::SteerProgram;

struct Variant {
  Family family;
  FaultKind fault;  // Close (threads) or Kill (processes)
  bool drop;        // the program drops migrating children instead of picking the target
  int backlog;      // the victim's

  std::string name() const {
    return std::string("tcp") + (family == Family::V4 ? "4" : "6") + (fault == FaultKind::Close ? "_close" : "_sigkill") +
           (drop ? "_drop" : "_pick") + "_b" + std::to_string(backlog);
  }
};

constexpr uint16_t kPort = 47950;
constexpr int kTargetBacklog = 8;
constexpr uint32_t kVictimSlot = 0;
constexpr uint32_t kTargetSlot = 1;
// The target stops accepting until its queue has been read after the close (it resumes
// then), at most this long: long enough to fill the victim's queue, close it and read the
// target's queue; shorter than the clients' first SYN retry (1 s) on the host, so retried
// SYNs find the target serving. Scaled in emulated guests, where the close itself can take
// longer than 600 ms; the resume keeps a long limit from costing the time it allows.
std::chrono::milliseconds stall_length() { return std::chrono::milliseconds(600) * timeout_scale(); }
// Attempts beyond the victim's B+1: their SYNs find its queue full.
constexpr int kExtra = 4;

nlohmann::json scenario(const Variant& v) {
  // The program decides, not the sysctl (which is per namespace and 0 by default; set it
  // anyway, so a distribution default cannot make the case pass for the wrong reason).
  SysctlScope migrate("net.ipv4.tcp_migrate_req", "0");

  rp::probes::KernelSampler kernel({.port = kPort});
  const Exec exec = v.fault == FaultKind::Close ? Exec::Thread : Exec::Process;
  ListenerGroup group;
  ListenerSpec victim;
  victim.socket.addr = Endpoint::loopback(v.family, kPort);
  victim.socket.backlog = v.backlog;
  victim.policy = AcceptPolicy::Never;
  victim.exec = exec;
  const int victim_id = group.add(victim);
  ListenerSpec target = victim;
  target.socket.backlog = kTargetBacklog;
  target.policy = AcceptPolicy::Serve;
  const int target_id = group.add(target);

  // Loaded after the listeners forked, so no listener process inherits its fds.
  ReuseportSteer prog(SteerProgram::Migrate);
  {
    // Duplicates of the listeners' sockets (pidfd_getfd for processes), closed again before
    // the fault: while one is open, the victim's socket would outlive its close.
    UniqueFd vfd = group.listener_fd(victim_id);
    UniqueFd tfd = group.listener_fd(target_id);
    prog.set_socket(kVictimSlot, vfd.get());
    prog.set_socket(kTargetSlot, tfd.get());
    prog.set_select(kVictimSlot);
    prog.set_select_new(true);
    prog.set_migrate(kTargetSlot, v.drop);
    prog.attach(vfd.get());
  }

  LoadOptions lo;
  lo.target = Endpoint::loopback(v.family, kPort);
  // One client thread: handshakes complete one after another inside connect(), so the
  // victim's queue stops at exactly B+1 (see close_listener_with_queued_children).
  lo.threads = 1;
  // Exactly the attempts in flight at the close, no more: B+1 fill the victim's queue, the
  // kExtra others find it full and are retried after about 1 s, by then to a target that
  // serves. A closed loop that kept B+65 attempts going against the target alone (backlog 8)
  // measured its overflows instead: hundreds of SYNs dropped, and ~75 of 458 attempts timed
  // out in a first version of this case.
  lo.concurrency = static_cast<unsigned>(v.backlog + 1 + kExtra);
  lo.max_attempts = lo.concurrency;
  lo.max_duration = std::chrono::seconds(20);
  lo.connect_timeout = std::chrono::seconds(8);
  lo.response_timeout = std::chrono::seconds(8);
  LoadGenerator load(lo);

  const auto stall_start = std::chrono::steady_clock::now();
  const auto kStall = stall_length();
  group.stall(target_id, kStall);
  load.start();
  std::vector<FaultEvent> events;
  std::optional<ListenInfo> target_after;
  std::chrono::steady_clock::time_point read_at;
  Fault fault;
  fault.kind = v.fault;
  fault.trigger = Trigger::when_queue_full();
  fault.listeners = {victim_id};
  try {
    events = inject(group, load, {fault});
    target_after = tcp_listener_by_inode(kPort, group.inode(target_id));
    read_at = std::chrono::steady_clock::now();
    group.resume(target_id);
  } catch (...) {
    load.stop();
    throw;
  }
  const uint32_t queued = events.at(0).queued_before.value();
  // With 2 CPUs a few of the kExtra handshakes can get their SYN in before the queue is full
  // and wait in SYN_RECV for an ACK the full queue drops: the close migrates (or drops) those
  // requests too. Measured on 6.1 in 2-vCPU guests: 133 = 129 + 4 migrated, 1 run in 3.
  const uint32_t requests = events.at(0).requests_before.value();
  load.wait();
  const rp::probes::KernelCounts kernel_sample = kernel.sample();  // before stop_all() closes the target
  const auto pc = prog.counts();
  group.stop_all();

  // The target's stall began no earlier than stall_start: a read before stall_start + kStall
  // saw the queue before the target accepted anything from it.
  if (read_at - stall_start >= kStall)
    throw std::runtime_error("the target's accept queue was read " +
                             std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(read_at - stall_start).count()) +
                             " ms after its stall began, after the stall (" + std::to_string(kStall.count()) +
                             " ms): too late to count the migrated children");
  if (!target_after) throw std::runtime_error("sock_diag: the target listener is not listed after the close");

  nlohmann::json o = ledger_counts(load.ledger(), group);
  o["queued_at_close"] = queued;
  o["requests_at_close"] = requests;
  o["backlog"] = v.backlog;
  o["queue_limit"] = v.backlog + 1;
  o["extra_attempts"] = kExtra;
  o["target_backlog"] = target_after->backlog;
  o["target_queue_limit"] = target_after->backlog + 1;
  o["target_queue_after_close"] = target_after->accept_queue;
  o["target_over_backlog"] = target_after->accept_queue > target_after->backlog;
  o["served_by_victim"] = group.served(victim_id);
  o["served_by_target"] = group.served(target_id);
  o["lost_other"] = o["failed"].get<uint64_t>() - o["client_resets"].get<uint64_t>();
  o["program_selected"] = pc.selected;
  o["program_select_errors"] = pc.select_errors;
  o["program_migrate_runs"] = pc.migrate_runs;
  o["program_migrated"] = pc.migrated;
  o["program_migrate_dropped"] = pc.migrate_dropped;
  o["program_migrate_errors"] = pc.migrate_errors;
  o.update(kernel_sample.to_json());
  put_orphans_of_only_closed(o, "kernel_orphans_of_victim", kernel_sample);
  put_attribution(o, kernel_sample);
  return o;
}

std::vector<Variant> variants() {
  std::vector<Variant> out;
  for (bool drop : {false, true})
    for (Family f : {Family::V4, Family::V6})
      for (FaultKind fault : {FaultKind::Close, FaultKind::Kill})
        for (int b : {8, 128}) out.push_back({f, fault, drop, b});
  return out;
}

RP_CASE(migrate_bpf_program, ::testing::ValuesIn(variants()));

}  // namespace
}  // namespace rp::cases
