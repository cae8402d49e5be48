// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * reuseport_probe: the kernel-side oracle of reuseport-check.
 *
 * Counts, for one TCP port in one network namespace, which kernel paths ran when
 * SO_REUSEPORT listeners close: listener closes, never-accepted children dropped with
 * their listener ("orphans"), the RSTs those orphans send, the RSTs clients receive,
 * kfree_skb drops by reason, and children queued per listener.
 *
 * Program types, by what attaches where (see probes/reuseport_probe.cc):
 *  - raw_tp for everything that must always work: no tracefs, no BTF attach, and the
 *    arguments arrive unformatted (a classic tracepoint would copy sockaddrs first).
 *  - tp_btf/inet_sock_set_state, preferred over its raw_tp twin where it loads (5.12+):
 *    it can take the closing listener's cookie, which keys the orphans per listener.
 *  - tp_btf/sk_data_ready, optional: bpf_get_socket_cookie() needs a BTF socket pointer,
 *    and the tracepoint only exists on newer kernels (6.18 has it).
 *  - tp_btf/kfree_skb, optional: drops by reason need a kernel whose event has a reason,
 *    and BTF loads keep the cost of this machine-wide event low.
 *  - fexit/reuseport_migrate_sock, optional, off by default: many kernels refuse it (the
 *    6.18 test machine rejects the load with EPERM); migrations are then only visible in
 *    TcpExt TCPMigrateReq*.
 *
 * Per event work is kept small because the cost target is <= 1% of the connection rate
 * (issue 14): every program tests what it gets for free (states, arguments) before it
 * reads memory, then the port, then the namespace, and only then touches a map; counters
 * bumped once per connection are per CPU. The loader attaches only the programs whose
 * counters its user asked for (ProbeOptions).
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "reuseport_probe.h"
#include "netns_filter.bpf.h"

#define RP_AF_INET 2
#define RP_AF_INET6 10
#define RP_ETH_P_IP 0x0800
#define RP_ETH_P_IPV6 0x86DD
#define RP_IPPROTO_TCP 6

/* Tunables, set by the loader between open and load. */
const volatile __u16 target_port = 0;  /* host order; 0 matches every port */

struct rp_counters counters = {};
/* Per CPU, summed by the loader: every connection of the port drops skbs (QUEUE_PURGE at
 * destruction on 6.18) on whichever CPU closes it, and one shared counter would bounce its
 * cache line between the CPUs on each of them. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RP_MAX_DROP_REASONS);
	__type(key, __u32);
	__type(value, __u64);
} rp_drops SEC(".maps");
/* Set once any filtered listener closed: until then tcp_destroy_sock does no map lookup. */
__u64 closing_seen = 0;

/*
 * Why orphans are recognised by thread and window:
 * __tcp_close() of a listener runs tcp_set_state(LISTEN -> CLOSE), then
 * inet_csk_listen_stop(), which for every child still in the accept queue calls
 * inet_child_forget() -> tcp_disconnect() (child -> CLOSE, active RST with reason
 * TCP_STATE) -> inet_csk_destroy_sock(child); then the listener itself is destroyed
 * (tcp_destroy_sock). All of it runs synchronously in the closing thread. A child that
 * was never accepted has sk_socket == NULL (sock_graft() happens in accept()).
 * So an orphan is: a child of the port going ESTABLISHED/CLOSE_WAIT/SYN_RECV -> CLOSE with
 * sk_socket == NULL, in a thread that is between a filtered LISTEN -> CLOSE and the end of
 * that listener's close. The key is the thread (pid_tgid), not the process: a process can
 * close listeners from several threads at once.
 * Where the window ends: __tcp_close() orphans the listener (sock_orphan(): sk_socket =
 * NULL) after inet_csk_listen_stop(). With the listener's cookie (tp_btf, which generates
 * it) the window is checked where it is used (window_of()): open while that socket, same
 * cookie, is in CLOSE with its sk_socket; a freed TCP socket's memory is only reused by
 * another TCP socket (SLAB_TYPESAFE_BY_RCU), zeroed, so its cookie no longer matches. That
 * needs no program on tcp_destroy_sock, which fires twice per connection. Without a cookie
 * (the raw_tp fallback before 5.12) tcp_destroy_sock of the listener closes the window.
 * What it cannot tell apart: a queued child of another listener of the same port reset by
 * its peer in a softirq that happens to run on the closing thread inside the window
 * (needs a peer RST landing in that microsecond window); and a listener shut down with
 * shutdown(SHUT_RD) keeps its window open until the socket is closed or listens again.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, RP_MAX_CLOSING_THREADS);
	__type(key, __u64);
	__type(value, struct rp_closing);
} rp_closing SEC(".maps");

/*
 * Where the kernel offers them (cgroup/sock_release, 5.9; tp_btf/inet_sk_error_report,
 * 5.14; a cgroup v2 hierarchy to attach to), the loader runs the lifecycle without
 * inet_sock_set_state, which fires ten times per connection (issue 14: its dispatch alone
 * cost more than 1% of the connection rate):
 *  - close() or exit: inet_release() runs the cgroup's sock_release program before
 *    tcp_close(), so the listener's window opens there (rp_sock_release), with the same
 *    checks at use (window_of());
 *  - shutdown(SHUT_RD) of a listener (or connect(AF_UNSPEC)): inet_shutdown() ->
 *    tcp_disconnect() resets the children first and reports the listener's error last
 *    (sk_error_report()); no program runs before. An unowned child disconnected outside
 *    a softirq is a listener's orphan whatever the window (inet_child_forget() runs in a
 *    softirq only from inet_csk_reqsk_queue_add(): the forgotten child); the thread keeps
 *    their number (rp_pending) until the listener's own error report takes them as its
 *    orphans, per listener. Every count is final when it is made: none is moved later.
 */
/* Set by the loader on that route: rp_send_reset then takes an unowned child reset outside
 * a window and a softirq as an orphan. */
const volatile bool lifecycle_on_release = false;

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, RP_MAX_CLOSING_THREADS);
	__type(key, __u64);
	__type(value, struct rp_pending);
} rp_pending SEC(".maps");

/*
 * Whether the program runs in a softirq: the kernel's softirq loop (handle_softirqs(),
 * __do_softirq() before 6.10) on the kernel stack, its [start, end) from /proc/kallsyms,
 * set by the loader (both 0: never). A listener forgets a child from a softirq
 * (inet_csk_reqsk_queue_add(), a handshake completing as it closes), and a queued child
 * reset by its peer or by a timer reports from one; a close, exit or shutdown in task
 * context has none on its stack. Only the rare unowned child's RST or disconnect outside a
 * window pays for the stack walk. (in_serving_softirq() would say it in one load, but x86
 * keeps the preempt count in a per-CPU variable whose address the verifier takes from
 * kallsyms, which has no variables without CONFIG_KALLSYMS_ALL: this host.)
 */
const volatile __u64 softirq_lo = 0;
const volatile __u64 softirq_hi = 0;

#define RP_STACK_DEPTH 64

struct rp_stack {
	__u64 ip[RP_STACK_DEPTH];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rp_stack);
} rp_stack_buf SEC(".maps");

static __always_inline bool in_softirq_loop(void *ctx)
{
	__u32 zero = 0;
	struct rp_stack *st = bpf_map_lookup_elem(&rp_stack_buf, &zero);
	long n;

	if (!st || !softirq_lo)
		return false;
	n = bpf_get_stack(ctx, st->ip, sizeof(st->ip), 0);
	if (n <= 0)
		return false;
	n /= sizeof(__u64);
	for (int i = 0; i < RP_STACK_DEPTH; i++) {
		if (i >= n)
			break;
		if (st->ip[i] >= softirq_lo && st->ip[i] < softirq_hi)
			return true;
	}
	return false;
}

/* Per CPU for the same reason: the children counter of a listener is bumped once per
 * connection, from every CPU that completes a handshake. User space sums the CPUs. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, RP_MAX_LISTENERS);
	__type(key, __u64);
	__type(value, struct rp_listener_stats);
} rp_listeners SEC(".maps");

static __always_inline bool sk_netns_ok(const struct sock *sk)
{
	if (!netns_filtered())
		return true;
	return net_is_target_read(BPF_CORE_READ(sk, __sk_common.skc_net.net));
}

/* The same for programs with BTF-typed pointers (tp_btf): plain loads instead of one
 * bpf_probe_read_kernel() call per field, which matters on per-segment events. */
static __always_inline bool sk_netns_ok_btf(const struct sock *sk)
{
	if (!netns_filtered())
		return true;
	return net_is_target(sk->__sk_common.skc_net.net);
}

static __always_inline bool port_ok(__u16 port_net_order)
{
	return !target_port || bpf_ntohs(port_net_order) == target_port;
}

/* The local port of a full socket. skc_num is already 0 when a socket reaches CLOSE
 * (inet_put_port() runs before the tracepoint); inet_sport is kept. */
static __always_inline __u16 sk_local_port_net(const struct sock *sk)
{
	return BPF_CORE_READ((const struct inet_sock *)sk, inet_sport);
}

static __always_inline void count(__u64 *c)
{
	__sync_fetch_and_add(c, 1);
}

static __always_inline struct rp_listener_stats *listener_stats(__u64 cookie)
{
	struct rp_listener_stats zero = {};
	struct rp_listener_stats *s;

	s = bpf_map_lookup_elem(&rp_listeners, &cookie);
	if (s)
		return s;
	/* EEXIST from a racing CPU is fine; only a full map loses the update. */
	bpf_map_update_elem(&rp_listeners, &cookie, &zero, BPF_NOEXIST);
	s = bpf_map_lookup_elem(&rp_listeners, &cookie);
	if (!s)
		count(&counters.listener_map_full);
	return s;
}

/* cookie: the listener's socket cookie, 0 when the program could not get one (then its
 * orphans are counted in total only). */
static __always_inline void on_listener_close(const struct sock *sk, __u64 cookie)
{
	__u64 tid = bpf_get_current_pid_tgid();
	struct rp_closing c = {};

	count(&counters.listener_closes);
	c.listener = (__u64)sk;
	c.cookie = cookie;
	if (bpf_map_update_elem(&rp_closing, &tid, &c, BPF_ANY))
		count(&counters.closing_map_full);
	closing_seen = 1;
	if (c.cookie) {
		struct rp_listener_stats *s = listener_stats(c.cookie);

		if (s)
			s->closed = 1;
	}
}

/* The calling thread's closing window, or NULL; a window whose listener's close has ended
 * is deleted here (see above). */
static __always_inline struct rp_closing *window_of(__u64 tid)
{
	struct rp_closing *c = bpf_map_lookup_elem(&rp_closing, &tid);
	const struct sock *l;

	if (!c || !c->cookie)
		return c;
	l = (const struct sock *)c->listener;
	if (BPF_CORE_READ(l, __sk_common.skc_cookie.counter) == c->cookie &&
	    BPF_CORE_READ(l, __sk_common.skc_state) == TCP_CLOSE && BPF_CORE_READ(l, sk_socket))
		return c;
	bpf_map_delete_elem(&rp_closing, &tid);
	return NULL;
}

/* `n` children orphaned by the listener with this cookie (0: unknown, in total only). */
static __always_inline void count_orphan_of(__u64 cookie, __u64 n)
{
	struct rp_listener_stats *s;

	__sync_fetch_and_add(&counters.orphaned_children, n);
	if (!cookie)
		return;
	s = bpf_map_lookup_elem(&rp_listeners, &cookie);
	if (s)
		__sync_fetch_and_add(&s->orphans, n);
}

static __always_inline void on_child_close(const struct sock *sk)
{
	struct rp_closing *c;

	if (BPF_CORE_READ(sk, sk_socket))
		return;
	if (!port_ok(sk_local_port_net(sk)) || !sk_netns_ok(sk))
		return;
	c = window_of(bpf_get_current_pid_tgid());
	if (c)
		count_orphan_of(c->cookie, 1);
}

static __always_inline bool is_listener_of_port(const struct sock *sk)
{
	if (BPF_CORE_READ(sk, sk_protocol) != RP_IPPROTO_TCP)
		return false;
	return port_ok(sk_local_port_net(sk)) && sk_netns_ok(sk);
}

/* Every transition but one into CLOSE returns at the first test: this event fires about
 * ten times per connection. */
static __always_inline void on_child_transition(const struct sock *sk, int oldstate)
{
	/* tcp_need_reset() states: an accept-queue child can be ESTABLISHED, CLOSE_WAIT (peer
	 * already sent FIN) or SYN_RECV (a TCP Fast Open child). */
	if (oldstate != TCP_ESTABLISHED && oldstate != TCP_CLOSE_WAIT &&
	    oldstate != TCP_SYN_RECV)
		return;
	if (!closing_seen)
		return;
	on_child_close(sk);
}

#include "reuseport_probe_causes.bpf.h"

/*
 * The listener's cookie keys its orphans. bpf_get_socket_cookie() takes a BTF socket
 * pointer, so only tp_btf can call it ("bpf: Expose bpf_get_socket_cookie to tracing
 * programs", v5.12), and it generates the cookie if nobody asked for one yet. The loader
 * prefers this program and falls back to rp_set_state below where it does not load.
 */
SEC("?tp_btf/inet_sock_set_state")
int BPF_PROG(rp_set_state_btf, struct sock *sk, int oldstate, int newstate)
{
	if (newstate != TCP_CLOSE) {
		if (newstate == TCP_FIN_WAIT1 && oldstate == TCP_ESTABLISHED)
			on_owner_fin_btf(sk);
		return 0;
	}
	if (oldstate == TCP_LISTEN) {
		if (is_listener_of_port(sk))
			on_listener_close(sk, bpf_get_socket_cookie(sk));
		return 0;
	}
	on_child_transition(sk, oldstate);
	return 0;
}

/* The same from a raw_tp, where no helper gives the cookie: the raw read is 0 unless
 * someone had one generated before the close (SO_COOKIE, sock_diag, sk_data_ready), so
 * the loader reports per-listener orphans as not observable with this program. */
SEC("?raw_tp/inet_sock_set_state")
int BPF_PROG(rp_set_state, const struct sock *sk, int oldstate, int newstate)
{
	if (newstate != TCP_CLOSE) {
		if (newstate == TCP_FIN_WAIT1 && oldstate == TCP_ESTABLISHED)
			on_owner_fin(sk);
		return 0;
	}
	if (oldstate == TCP_LISTEN) {
		if (is_listener_of_port(sk))
			on_listener_close(sk, BPF_CORE_READ(sk, __sk_common.skc_cookie.counter));
		return 0;
	}
	on_child_transition(sk, oldstate);
	return 0;
}

/* An unowned child's disconnect in task context outside any window: a listener's
 * shutdown in this thread, whose error report comes after (claim_pending()). */
static __always_inline void add_pending(__u64 tid)
{
	struct rp_pending one = {.children = 1};
	struct rp_pending *p = bpf_map_lookup_elem(&rp_pending, &tid);

	if (p) {
		p->children++;
		return;
	}
	if (bpf_map_update_elem(&rp_pending, &tid, &one, BPF_NOEXIST))
		count(&counters.closing_map_full);
}

/* A listener's tcp_disconnect() ended in this thread: the children it disconnected are
 * its orphans (already counted in total). */
static __always_inline void claim_pending(__u64 tid, __u64 cookie)
{
	struct rp_pending *p = bpf_map_lookup_elem(&rp_pending, &tid);
	struct rp_listener_stats *s;
	__u64 children;

	if (!p)
		return;
	children = p->children;
	bpf_map_delete_elem(&rp_pending, &tid);
	if (cookie && children) {
		s = bpf_map_lookup_elem(&rp_listeners, &cookie);
		if (s)
			__sync_fetch_and_add(&s->orphans, children);
	}
}

/*
 * close() or exit of a socket of the port, before tcp_close(). The context is the struct
 * sock itself (struct bpf_sock is its view): its address is kept as the window's listener
 * and read through bpf_probe_read_kernel(), which the verifier allows a privileged loader.
 * Runs for every socket released in the machine: the protocol comes first, from the
 * context's own fields, then the port.
 */
SEC("?cgroup/sock_release")
int rp_sock_release(struct bpf_sock *ctx)
{
	const struct sock *sk = (const struct sock *)ctx;
	__u32 state;

	if (ctx->protocol != RP_IPPROTO_TCP)
		return 1;
	/* struct bpf_sock gives a sock_release program no port or state (src_port is for
	 * post_bind only): read from the socket. */
	if (!port_ok(sk_local_port_net(sk)))
		return 1;
	state = BPF_CORE_READ(sk, __sk_common.skc_state);
	if (state == TCP_LISTEN) {
		if (sk_netns_ok(sk))
			on_listener_close(sk, bpf_get_socket_cookie(ctx));
	} else if (state == TCP_ESTABLISHED) {
		on_owner_release(sk);
	}
	return 1;
}

/* sk_error_report(): every tcp_disconnect() ends with it (an unowned child forgotten by its
 * listener, a listener disconnected), as do received RSTs and timeouts, which are not in
 * CLOSE with an owner-less or listening past. Rare: no connection that ends well reports. */
SEC("?tp_btf/inet_sk_error_report")
int BPF_PROG(rp_error_report, struct sock *sk)
{
	const struct socket *sock;
	struct rp_closing *c;
	__u64 tid, cookie;

	if (sk->__sk_common.skc_state != TCP_CLOSE || sk->sk_protocol != RP_IPPROTO_TCP)
		return 0;
	if (!port_ok(sk_local_port_net(sk)) || !sk_netns_ok_btf(sk))
		return 0;
	tid = bpf_get_current_pid_tgid();
	sock = sk->sk_socket;
	if (!sock) {
		c = closing_seen ? window_of(tid) : NULL;
		if (!c) {
			if (in_softirq_loop(ctx))
				return 0;  /* forgotten (its RST counts it), or reset by its peer */
			count(&counters.orphaned_children);
			add_pending(tid);
			return 0;
		}
		count_orphan_of(c->cookie, 1);
		return 0;
	}
	/* A listener's disconnect: its socket is unconnected (inet_shutdown() and
	 * inet_stream_connect() set the state after), and listen() set its backlog, which no
	 * connected socket of the port has unless it was accepted (SS_CONNECTED). */
	if (sock->state != SS_UNCONNECTED || !sk->sk_max_ack_backlog)
		return 0;
	cookie = bpf_get_socket_cookie(sk);
	count(&counters.listener_closes);
	if (cookie) {
		struct rp_listener_stats *s = listener_stats(cookie);

		if (s)
			s->closed = 1;
	}
	claim_pending(tid, cookie);
	return 0;
}

/* Only with rp_set_state (no cookie to check the window by): the loader leaves it out
 * where rp_set_state_btf loads. */
SEC("?raw_tp/tcp_destroy_sock")
int BPF_PROG(rp_destroy_sock, const struct sock *sk)
{
	struct rp_closing *c;
	__u64 tid;

	if (!closing_seen)
		return 0;
	tid = bpf_get_current_pid_tgid();
	c = bpf_map_lookup_elem(&rp_closing, &tid);
	if (c && c->listener == (__u64)sk)
		bpf_map_delete_elem(&rp_closing, &tid);
	return 0;
}

#include "reuseport_probe_skb.bpf.h"

/*
 * tcp_send_reset(sk, skb[, reason]). The reason argument came with the rstreason series
 * (v6.10), together with the event's `reason` field; the event also lost its sport/dport
 * fields for sockaddr ones in 6.x, while 5.10-6.1 have (sk, skb) and ports. The raw
 * arguments are read here, and whether ctx[2] exists is decided by CO-RE on the event
 * struct: on a kernel without the field the branch is dead and the verifier never sees
 * the read, which would otherwise fail the attach (max_ctx_offset > num_args).
 */
SEC("raw_tp/tcp_send_reset")
int BPF_PROG(rp_send_reset, const struct sock *sk, const struct sk_buff *skb)
{
	bool has_reason = bpf_core_field_exists(struct trace_event_raw_tcp_send_reset, reason);
	__u32 reason = 0;
	__u16 ports[2], local;

	if (has_reason)
		reason = (__u32)ctx[2];

	if (!skb) {
		/* An active reset: sk is a full socket. */
		if (!sk)
			return 0;
		local = sk_local_port_net(sk);
		if (!port_ok(local) || !sk_netns_ok(sk))
			return 0;
		if (BPF_CORE_READ(sk, __sk_common.skc_state) == TCP_CLOSE &&
		    (!has_reason ||
		     reason == bpf_core_enum_value(enum sk_rst_reason, SK_RST_REASON_TCP_STATE)) &&
		    closing_seen) {
			if (window_of(bpf_get_current_pid_tgid())) {
				count(&counters.orphan_resets);
				return 0;
			}
		}
		/* Outside a window, an unowned child reset in task context: a listener's
		 * shutdown in this thread (see lifecycle_on_release). The same test as
		 * forgotten_child_resets' in count_reset_cause(), which takes the others. */
		if (lifecycle_on_release && BPF_CORE_READ(sk, __sk_common.skc_state) == TCP_CLOSE &&
		    (!has_reason ||
		     reason == bpf_core_enum_value(enum sk_rst_reason, SK_RST_REASON_TCP_STATE)) &&
		    !BPF_CORE_READ(sk, sk_socket) && !in_softirq_loop(ctx)) {
			count(&counters.orphan_resets);
			return 0;
		}
		count(&counters.other_resets_sent);
		count_reset_cause(sk, true, skb, has_reason, reason);
		return 0;
	}
	/* A reply to a segment: our port is its destination (sk may be NULL, a listener, a
	 * request or a timewait socket, so it is not read for the port). */
	if (!skb_tcp_ports(skb, ports) || !port_ok(ports[1]))
		return 0;
	if (!skb_netns_ok(skb, sk))
		return 0;
	count(&counters.other_resets_sent);
	count_reset_cause(sk, false, skb, has_reason, reason);
	return 0;
}

SEC("raw_tp/tcp_receive_reset")
int BPF_PROG(rp_recv_reset, const struct sock *sk)
{
	__u16 remote = BPF_CORE_READ(sk, __sk_common.skc_dport);
	__u16 local = sk_local_port_net(sk);

	if (port_ok(remote)) {
		if (sk_netns_ok(sk)) {
			count(&counters.resets_received);
			/* A client that had closed (a late FIN answered by the listener): orphaned
			 * by close(), so no application reads this reset. */
			if (!BPF_CORE_READ(sk, sk_socket))
				count(&counters.resets_received_closed);
		}
	} else if (port_ok(local)) {
		if (sk_netns_ok(sk))
			count(&counters.resets_received_local);
	}
	return 0;
}

/*
 * kfree_skb(skb, location[, reason[, rx_sk]]): the reason came with v5.17 ("net: skb:
 * introduce kfree_skb_reason()"), rx_sk later (6.18 has it). It fires for every dropped
 * skb of the machine (on 6.18 also once per ordinary connection, QUEUE_PURGE at socket
 * destruction), hence tp_btf: the skb fields are plain loads. Optional: the loader only
 * enables it when the event has a reason; the CO-RE test keeps the ctx[2] read out of the
 * verifier's sight on other kernels all the same.
 */
SEC("?tp_btf/kfree_skb")
int BPF_PROG(rp_kfree_skb, struct sk_buff *skb)
{
	const struct sock *sk = NULL;
	__u16 ports[2];
	__u32 reason;

	if (!bpf_core_field_exists(struct trace_event_raw_kfree_skb, reason))
		return 0;
	reason = (__u32)ctx[2];
	if (!tcp_ports_at(skb->head, skb->protocol, skb->network_header, skb->transport_header,
			  ports))
		return 0;
	if (!port_ok(ports[0]) && !port_ok(ports[1]))
		return 0;
	if (netns_filtered()) {
		if (bpf_core_field_exists(struct trace_event_raw_kfree_skb, rx_sk))
			sk = (const struct sock *)ctx[3];
		if (!sk)
			sk = skb->sk;
		if (sk) {
			if (!sk_netns_ok_btf(sk))
				return 0;
		} else if (!skb->dev) {
			return 0;
		} else {
			const struct net *net = skb->dev->nd_net.net;

			if (!net_is_target(net))
				return 0;
		}
	}
	if (reason < RP_MAX_DROP_REASONS) {
		__u64 *n = bpf_map_lookup_elem(&rp_drops, &reason);

		if (n)
			count(n);
	} else {
		count(&counters.drops_out_of_range);
	}
	return 0;
}

/*
 * A listener's sk_data_ready fires once per child it queues: tcp_child_process() wakes
 * the parent when the child leaves SYN_RECV, the Fast Open and syncookie paths likewise,
 * and inet_csk_listen_stop() wakes the listener it migrates a child to (so with
 * tcp_migrate_req a migrated child counts for both listeners; measured on 6.18).
 */
SEC("?tp_btf/sk_data_ready")
int BPF_PROG(rp_data_ready, struct sock *sk)
{
	struct rp_listener_stats *s;
	__u64 cookie;

	if (sk->__sk_common.skc_state != TCP_LISTEN)
		return 0;
	if (sk->sk_protocol != RP_IPPROTO_TCP)
		return 0;
	if (target_port && sk->__sk_common.skc_num != target_port)
		return 0;
	if (!sk_netns_ok_btf(sk))
		return 0;
	cookie = bpf_get_socket_cookie(sk);
	s = listener_stats(cookie);
	if (s)
		__sync_fetch_and_add(&s->children, 1);
	return 0;
}

/* reuseport_migrate_sock(sk, migrating_sk, skb): sk is the listener being left. */
SEC("?fexit/reuseport_migrate_sock")
int BPF_PROG(rp_migrate_exit, struct sock *sk, struct sock *migrating_sk,
	     struct sk_buff *skb, struct sock *ret)
{
	if (!port_ok(sk_local_port_net(sk)) || !sk_netns_ok(sk))
		return 0;
	if (ret)
		count(&counters.migrate_target_found);
	else
		count(&counters.migrate_no_target);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
