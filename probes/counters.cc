#include "probes/counters.h"

#include <linux/types.h>

#include <cstddef>

#include "bpf/reuseport_probe.h"

namespace rp::probes {
namespace {

#define RP_SET_STATE "tracepoint sock:inet_sock_set_state (raw_tp)"
#define RP_SEND_RESET "tracepoint tcp:tcp_send_reset (raw_tp)"
#define RP_RECV_RESET "tracepoint tcp:tcp_receive_reset (raw_tp)"
#define RP_MIGRATE "fexit reuseport_migrate_sock"

#define PROBE(key, field, needs, label, source) \
  {key, label, CounterDef::From::Probe, offsetof(struct rp_counters, field), nullptr, nullptr, source, CounterDef::Needs::needs}
#define DROP(key, reason, label, note) \
  {key, label, CounterDef::From::Drop, 0, reason, nullptr, note, CounterDef::Needs::DropReason}
#define TCPEXT(key, name, label) \
  {key, label, CounterDef::From::TcpExt, 0, name, nullptr, nullptr, CounterDef::Needs::Nothing}
#define SUM(key, a, b, label) {key, label, CounterDef::From::Sum, 0, a, b, nullptr, CounterDef::Needs::Nothing}

const std::vector<CounterDef> kTable = {
    PROBE("kernel_listener_closes", listener_closes, Nothing, "listener closes (LISTEN -> CLOSE)",
          RP_SET_STATE ": LISTEN -> CLOSE"),
    PROBE("kernel_orphaned_children", orphaned_children, Nothing,
          "children orphaned in a closed listener's accept queue",
          RP_SET_STATE ": child -> CLOSE with no struct socket, in the thread closing a listener of the port"),
    PROBE("kernel_orphan_resets", orphan_resets, Nothing, "RSTs those orphans sent",
          RP_SEND_RESET ": active RST from a CLOSE child in the closing thread (reason TCP_STATE where the "
                        "kernel gives one, 6.10+)"),
    PROBE("kernel_other_resets_sent", other_resets_sent, Nothing, "other RSTs sent from the port",
          RP_SEND_RESET ": every other RST whose local port is the port"),
    PROBE("kernel_listener_fin_resets", listener_fin_resets, Nothing,
          "... of those, a listener's replies to a FIN (its client had closed)",
          RP_SEND_RESET ": reply from a LISTEN socket of the port to a segment with FIN set"),
    // The causes of kernel_other_resets_sent, one row each; they sum to it.
    PROBE("kernel_rst_owner_abort", owner_abort_resets, Nothing,
          "... of those, from a socket its owner closed or killed with unread data",
          RP_SEND_RESET ": active RST from a socket with an owner (sk_socket set); reason TCP_ABORT_ON_CLOSE, "
                        "TCP_STATE or TCP_ABORT_ON_LINGER where the kernel gives one (6.10+)"),
    PROBE("kernel_rst_after_close", after_close_resets, Nothing,
          "... of those, answering data sent to a socket its owner had closed",
          RP_SEND_RESET ": reply from a full socket in FIN_WAIT1/2, CLOSING, LAST_ACK or CLOSE; reason "
                        "TCP_ABORT_ON_DATA where the kernel gives one (6.10+)"),
    PROBE("kernel_rst_no_socket", no_socket_resets, Nothing, "... of those, a segment that found no socket",
          RP_SEND_RESET ": reply with no socket; reason NO_SOCKET where the kernel gives one (6.10+)"),
    PROBE("kernel_rst_listener_ack", listener_ack_resets, Nothing,
          "... of those, a listener answering the final ACK of a request whose listener closed",
          RP_SEND_RESET ": reply from a LISTEN socket of the port to a segment without FIN"),
    PROBE("kernel_rst_timewait", timewait_resets, Nothing, "... of those, from a TIME_WAIT socket",
          RP_SEND_RESET ": reply from a TIME_WAIT socket; reason TCP_TIMEWAIT_SOCKET where the kernel gives one "
                        "(6.10+)"),
    PROBE("kernel_rst_forgotten_child", forgotten_child_resets, Nothing,
          "... of those, a child completed as its listener closed, reset at once",
          RP_SEND_RESET ": active RST of a CLOSE socket with no owner outside a listener's close (reason TCP_STATE "
                        "where the kernel gives one, 6.10+): inet_child_forget() from inet_csk_reqsk_queue_add()"),
    PROBE("kernel_rst_unnamed", unnamed_resets, Nothing, "... of those, none of the above",
          RP_SEND_RESET ": any other state, or a reason that contradicts the socket's state (6.10+)"),
    PROBE("kernel_owner_close_unanswered", owner_close_unanswered, Nothing,
          "connections of the port closed by their owner before sending a byte (no RST: the client reads EOF)",
          RP_SET_STATE ": ESTABLISHED -> FIN_WAIT1 of a socket with an owner whose tcp_sock.bytes_sent is 0"),
    SUM("kernel_resets_sent", "kernel_orphan_resets", "kernel_other_resets_sent", "every RST sent from the port"),
    PROBE("kernel_resets_received", resets_received, Nothing, "RSTs received by clients of the port",
          RP_RECV_RESET ": remote port is the port"),
    PROBE("kernel_resets_received_closed", resets_received_closed, Nothing,
          "... of those, by a client socket its application had closed (no one sees it)",
          RP_RECV_RESET ": remote port is the port, the socket has no owner (sk_socket NULL)"),
    PROBE("kernel_resets_received_local", resets_received_local, Nothing, "RSTs received by sockets bound to the port",
          RP_RECV_RESET ": local port is the port"),
    PROBE("kernel_migrate_target_found", migrate_target_found, MigrateFexit,
          "requests migrated (reuseport_migrate_sock found a listener)", RP_MIGRATE ": returned a listener"),
    PROBE("kernel_migrate_no_target", migrate_no_target, MigrateFexit,
          "migrations with no target (reuseport_migrate_sock returned NULL)", RP_MIGRATE ": returned NULL"),
    DROP("kernel_no_socket_drops", "NO_SOCKET", "segments to the port that found no socket (drop NO_SOCKET)", ""),
    // SYNs dropped at a full queue are consumed, not freed: only ACKs show here.
    DROP("kernel_listen_overflow_drops", "TCP_LISTEN_OVERFLOW",
         "ACKs dropped on a full accept queue (drop TCP_LISTEN_OVERFLOW)",
         " (ACKs only: SYNs dropped at a full queue are consumed, not freed)"),
    PROBE("kernel_drops_out_of_range", drops_out_of_range, DropReason,
          "drops with a reason past the probe's table (subsystem reasons)",
          "tracepoint skb:kfree_skb (tp_btf): reason >= RP_MAX_DROP_REASONS"),
    TCPEXT("netstat_listen_overflows", "ListenOverflows", "listen overflows (TcpExt.ListenOverflows)"),
    TCPEXT("netstat_listen_drops", "ListenDrops", "listen drops (TcpExt.ListenDrops)"),
    TCPEXT("netstat_req_q_full_drop", "TCPReqQFullDrop", "SYNs dropped on a full request queue (TcpExt.TCPReqQFullDrop)"),
    TCPEXT("netstat_req_q_full_do_cookies", "TCPReqQFullDoCookies",
           "SYN cookies sent on a full request queue (TcpExt.TCPReqQFullDoCookies)"),
    TCPEXT("netstat_migrate_req_success", "TCPMigrateReqSuccess", "requests migrated (TcpExt.TCPMigrateReqSuccess)"),
    TCPEXT("netstat_migrate_req_failure", "TCPMigrateReqFailure", "migrations that failed (TcpExt.TCPMigrateReqFailure)"),
    TCPEXT("netstat_abort_on_close", "TCPAbortOnClose", "connections closed with unread data (TcpExt.TCPAbortOnClose)"),
};

}  // namespace

const std::vector<CounterDef>& counter_table() { return kTable; }

const CounterDef* find_counter(std::string_view key) {
  for (const auto& c : kTable)
    if (key == c.key) return &c;
  return nullptr;
}

}  // namespace rp::probes
