/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The causes of the port's failures that are not orphans (issue 14), included by
 * reuseport_probe.bpf.c after its filters and counters (port_ok(), sk_netns_ok(), count(),
 * `counters`): one counter per cause of an RST the port sends, and the owner's close of a
 * connection it never answered. Kept apart so that the probe's main file stays readable.
 */
#ifndef RP_BPF_REUSEPORT_PROBE_CAUSES_BPF_H
#define RP_BPF_REUSEPORT_PROBE_CAUSES_BPF_H

/* Defined in reuseport_probe_skb.bpf.h, which the program includes after this header. */
static __always_inline bool skb_tcp_fin(const struct sk_buff *skb);

/* close() (or exit) of an accepted socket that never answered: __tcp_close() moves it
 * ESTABLISHED -> FIN_WAIT1 while it still has its owner (sock_orphan() comes after), and
 * tcp_sock.bytes_sent ("tcp: add tcpi_bytes_sent to tcp_info", v4.19) is still 0. A
 * client's own sockets also pass here but their port is not the local one. Runs once per
 * connection the server closes first, hence the state test before any read. */
static __always_inline void on_owner_fin(const struct sock *sk)
{
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;

	if (!bpf_core_field_exists(tp->bytes_sent))
		return;
	if (BPF_CORE_READ(tp, bytes_sent) || !port_ok(sk_local_port_net(sk)))
		return;
	if (!BPF_CORE_READ(sk, sk_socket) || !sk_netns_ok(sk))
		return;
	count(&counters.owner_close_unanswered);
}

/* The same at close() or exit (rp_sock_release, before tcp_close()), where no program sees
 * the transition: an ESTABLISHED socket of the port that sent nothing is about to send its
 * FIN, unless __tcp_close() resets it instead (unread data, SO_LINGER with 0 s), which the
 * RST's own counter takes. shutdown(SHUT_WR) without a close is not seen here. */
static __always_inline void on_owner_release(const struct sock *sk)
{
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;
	__u64 flags;

	if (!bpf_core_field_exists(tp->bytes_sent))
		return;
	if (BPF_CORE_READ(tp, bytes_sent) || BPF_CORE_READ(tp, rcv_nxt) != BPF_CORE_READ(tp, copied_seq))
		return;
	flags = BPF_CORE_READ(sk, __sk_common.skc_flags);
	if ((flags & (1ULL << bpf_core_enum_value(enum sock_flags, SOCK_LINGER))) && !BPF_CORE_READ(sk, sk_lingertime))
		return;
	if (!sk_netns_ok(sk))
		return;
	count(&counters.owner_close_unanswered);
}

/* The same from tp_btf, with plain loads (a probe read costs tens of ns, and this runs for
 * every connection of the machine that one side closes first): bytes_sent first, since a
 * socket that answered, by far the most common, is then done after one load. The verifier
 * lets a struct sock pointer be read only as a struct sock: bpf_skc_to_tcp_sock() (v5.9,
 * which every kernel this program loads on has) gives the tcp_sock view. */
static __always_inline void on_owner_fin_btf(struct sock *sk)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);

	if (!tp || !bpf_core_field_exists(tp->bytes_sent))
		return;
	if (tp->bytes_sent || !port_ok(tp->inet_conn.icsk_inet.inet_sport))
		return;
	if (!tp->inet_conn.icsk_inet.sk.sk_socket || !sk_netns_ok_btf(sk))
		return;
	count(&counters.owner_close_unanswered);
}

/* A reset reason by name, or ~0 where the running kernel's enum sk_rst_reason lacks it
 * (the enum came with v6.10, "net: introduce rstreason to detect why the RST is sent", and
 * grew since); ~0 never matches, so a missing name cannot pass a check. */
#define RST_REASON(name)                                                 \
	(bpf_core_enum_value_exists(enum sk_rst_reason, name) ?          \
		 (__u32)bpf_core_enum_value(enum sk_rst_reason, name) :   \
		 ~0U)

/*
 * The cause of an RST that is not an orphan's, one counter each (issue 14). First by the
 * socket's state and owner, which every kernel has; then, where the kernel gives a reason
 * (6.10+), the reason must agree with that, or the RST is unnamed: a state alone cannot
 * tell a close with unread data from a keepalive timeout of the same owned socket.
 *  - active (no skb): a socket with an owner (sk_socket set) reset by its owner's close or
 *    exit with unread data (__tcp_close() sets CLOSE and sends the RST before sock_orphan();
 *    reason TCP_ABORT_ON_CLOSE), or by SO_LINGER 0 (tcp_disconnect(), TCP_STATE) or linger2
 *    (TCP_ABORT_ON_LINGER).
 *  - a reply with no socket: NO_SOCKET (tcp_v4_rcv()'s no_tcp_socket).
 *  - a reply from a LISTEN socket: to a FIN, the client had closed (no one sees it); to
 *    anything else, the final ACK of a request whose listener closed meeting another
 *    listener (tcp_rcv_state_process() answers an ACK in LISTEN with an RST).
 *  - a reply from TIME_WAIT (TCP_TIMEWAIT_SOCKET).
 *  - a reply from a full socket its owner had closed (FIN_WAIT*, CLOSING, LAST_ACK, CLOSE
 *    or no owner), to data that arrived after the close (TCP_ABORT_ON_DATA).
 */
static __always_inline void count_reset_cause(const struct sock *sk, bool active, const struct sk_buff *skb,
					      bool has_reason, __u32 reason)
{
	__u8 state;

	if (active) {
		if (BPF_CORE_READ(sk, sk_socket)) {
			if (!has_reason || reason == RST_REASON(SK_RST_REASON_TCP_ABORT_ON_CLOSE) ||
			    reason == RST_REASON(SK_RST_REASON_TCP_STATE) ||
			    reason == RST_REASON(SK_RST_REASON_TCP_ABORT_ON_LINGER))
				count(&counters.owner_abort_resets);
			else
				count(&counters.unnamed_resets);
		} else if (BPF_CORE_READ(sk, __sk_common.skc_state) == TCP_CLOSE &&
			   (!has_reason || reason == RST_REASON(SK_RST_REASON_TCP_STATE))) {
			/* tcp_disconnect() of a child nobody owns, outside a listener's close:
			 * inet_child_forget() from inet_csk_reqsk_queue_add() when the final ACK
			 * completed a handshake just as the listener left LISTEN. */
			count(&counters.forgotten_child_resets);
		} else {
			count(&counters.unnamed_resets);
		}
		return;
	}
	if (!sk) {
		if (!has_reason || reason == RST_REASON(SK_RST_REASON_NO_SOCKET))
			count(&counters.no_socket_resets);
		else
			count(&counters.unnamed_resets);
		return;
	}
	/* skc_state is in sock_common, which request and timewait sockets start with. */
	state = BPF_CORE_READ(sk, __sk_common.skc_state);
	if (state == TCP_LISTEN) {
		if (skb_tcp_fin(skb))
			count(&counters.listener_fin_resets);
		else
			count(&counters.listener_ack_resets);
		return;
	}
	if (state == TCP_TIME_WAIT) {
		if (!has_reason || reason == RST_REASON(SK_RST_REASON_TCP_TIMEWAIT_SOCKET))
			count(&counters.timewait_resets);
		else
			count(&counters.unnamed_resets);
		return;
	}
	if ((state == TCP_FIN_WAIT1 || state == TCP_FIN_WAIT2 || state == TCP_CLOSING ||
	     state == TCP_LAST_ACK || state == TCP_CLOSE) &&
	    (!has_reason || reason == RST_REASON(SK_RST_REASON_TCP_ABORT_ON_DATA))) {
		count(&counters.after_close_resets);
		return;
	}
	count(&counters.unnamed_resets);
}

#endif /* RP_BPF_REUSEPORT_PROBE_CAUSES_BPF_H */
