/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared between bpf/reuseport_probe.bpf.c and probes/reuseport_probe.cc.
 * Plain C, fixed-width __u* types only: the layout is the contract between the two sides.
 */
#ifndef RP_BPF_REUSEPORT_PROBE_H
#define RP_BPF_REUSEPORT_PROBE_H

/* kfree_skb reasons are indexed directly. 6.18 defines 128 core reasons; subsystem reasons
 * (SKB_DROP_REASON_SUBSYS_MASK, upper 16 bits) and anything past this land in
 * drops_out_of_range instead. */
#define RP_MAX_DROP_REASONS 512

/* Threads that may sit between a listener's LISTEN->CLOSE and its destruction at once. */
#define RP_MAX_CLOSING_THREADS 1024

/* Listeners tracked per socket cookie. */
#define RP_MAX_LISTENERS 4096

/* Counters for the filtered port in the filtered network namespace. Every field is only
 * ever incremented with __sync_fetch_and_add; user space reads the mmap'ed .bss. */
struct rp_counters {
	__u64 listener_closes;      /* LISTEN -> CLOSE */
	__u64 orphaned_children;    /* never-accepted child closed by its listener's close */
	__u64 orphan_resets;        /* active RST sent by such a child (reason TCP_STATE) */
	__u64 other_resets_sent;    /* every other RST whose local port is the port */
	__u64 listener_fin_resets;  /* ... of those, a LISTEN socket's replies to a FIN */
	__u64 resets_received;      /* RST received by a client of the port (remote port) */
	__u64 resets_received_local;/* RST received by a socket bound to the port */
	__u64 drops_out_of_range;   /* kfree_skb reason >= RP_MAX_DROP_REASONS */
	__u64 migrate_target_found; /* fexit reuseport_migrate_sock returned a socket */
	__u64 migrate_no_target;    /* ... returned NULL */
	__u64 listener_map_full;    /* a listener could not get a slot in rp_listeners */
	__u64 closing_map_full;     /* a closing window could not be recorded */
	/* Every RST in other_resets_sent is counted again in exactly one of the following by
	 * its cause (issue 14: every client-visible failure has one named cause); the loader's
	 * tests hold other_resets_sent to their sum. */
	__u64 owner_abort_resets;   /* active RST from a socket with an owner (close/kill with
				     * unread data, linger 0): reason TCP_ABORT_ON_CLOSE/LINGER */
	__u64 after_close_resets;   /* reply from a full socket whose owner had closed it, to data
				     * (reason TCP_ABORT_ON_DATA) */
	__u64 no_socket_resets;     /* reply to a segment that found no socket (NO_SOCKET) */
	__u64 listener_ack_resets;  /* reply from a LISTEN socket to a segment without FIN: the
				     * final ACK of a request whose listener had closed */
	__u64 timewait_resets;      /* reply from a TIME_WAIT socket */
	__u64 unnamed_resets;       /* none of the above, or the reason contradicts the state */
	/* Of resets_received: RSTs that reached a client socket its application had already
	 * closed (sk_socket NULL): no application sees them. */
	__u64 resets_received_closed;
	/* A socket of the port closed by its owner (ESTABLISHED -> FIN_WAIT1, sk_socket set)
	 * before it had sent a byte: an accepted connection closed or killed before answering;
	 * its client reads EOF with no answer. */
	__u64 owner_close_unanswered;
	/* Of other_resets_sent: an active RST (TCP_STATE) of a child with no owner outside any
	 * listener's close: a handshake completed while its listener closed, and
	 * inet_csk_reqsk_queue_add() forgot the new child (inet_child_forget()). */
	__u64 forgotten_child_resets;
};

/* Per listener, keyed by the socket cookie (SO_COOKIE from user space). */
struct rp_listener_stats {
	__u64 children;  /* children queued, migrated ones included (sk_data_ready) */
	__u64 orphans;   /* children dropped when this listener closed */
	__u64 closed;    /* 1 once LISTEN -> CLOSE was seen */
};

/* A thread's disconnects of unowned children outside any closing window (counted as
 * orphans already), until the listener shut down in that thread takes them as its own
 * (key: bpf_get_current_pid_tgid()). */
struct rp_pending {
	__u64 children;  /* tcp_disconnect() of an unowned child (inet_sk_error_report) */
};

/* Value of the per-thread closing window (key: bpf_get_current_pid_tgid()). */
struct rp_closing {
	__u64 listener;  /* kernel address of the closing listener, only compared */
	__u64 cookie;    /* its socket cookie, 0 if none was ever generated */
};

#endif /* RP_BPF_REUSEPORT_PROBE_H */
