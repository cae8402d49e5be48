// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * reuseport_group: the kernel's own answer to "which sockets of port P form a reuseport
 * group, and which steering program does the group run". Nothing in sock_diag or
 * getsockopt() tells the group (sk->sk_reuseport_cb) or its program: SO_ATTACH_REUSEPORT_*
 * has no getsockopt twin. A socket iterator (iter/tcp, iter/udp: Linux 5.9)
 * walks the sockets of the reading process's network namespace and can read both via
 * CO-RE. Also counts datagrams queued per UDP socket of the port (tp_btf/sk_data_ready,
 * optional), the UDP twin of the reuseport probe's per-listener children.
 *
 * The iterators run in the network namespace of the process that creates the iterator
 * (bpf_iter_init_seq_net takes current's), so user space enters the target namespace first.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "reuseport_group.h"
#include "netns_filter.bpf.h"

#define RP_IPPROTO_UDP 17

const volatile __u16 target_port = 0;  /* host order */

/* Datagrams queued per UDP socket of the port, keyed by socket cookie. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RP_GROUP_MAX_SOCKETS);
	__type(key, __u64);
	__type(value, __u64);
} rp_udp_queued SEC(".maps");

static __always_inline void fill(struct rp_group_member *m, struct sock *sk)
{
	struct sock_reuseport *reuse;
	struct bpf_prog *prog;

	m->cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
	m->state = BPF_CORE_READ(sk, __sk_common.skc_state);
	m->reuseport = BPF_CORE_READ_BITFIELD_PROBED(sk, __sk_common.skc_reuseport);
	m->incoming_cpu = BPF_CORE_READ(sk, __sk_common.skc_incoming_cpu);
	reuse = BPF_CORE_READ(sk, sk_reuseport_cb);
	if (!reuse)
		return;
	m->has_group = 1;
	m->group = (__u64)reuse;
	m->reuseport_id = BPF_CORE_READ(reuse, reuseport_id);
	m->num_socks = BPF_CORE_READ(reuse, num_socks);
	/* num_closed_socks came with migration (5.14, 5c040eaf5d17); absent before. */
	if (bpf_core_field_exists(reuse->num_closed_socks))
		m->num_closed_socks = BPF_CORE_READ(reuse, num_closed_socks);
	prog = BPF_CORE_READ(reuse, prog);
	if (!prog)
		return;
	m->has_prog = 1;
	m->prog_type = BPF_CORE_READ(prog, type);
	m->prog_attach_type = BPF_CORE_READ(prog, expected_attach_type);
	m->prog_id = BPF_CORE_READ(prog, aux, id);
	BPF_CORE_READ_STR_INTO(&m->prog_name, prog, aux, name);
}

SEC("iter/tcp")
int rp_group_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct rp_group_member m = {};

	if (!skc)
		return 0;
	/* Listeners only: request and timewait minisocks have no sk_reuseport_cb, and
	 * established children are no members. */
	if (skc->skc_state != TCP_LISTEN || skc->skc_num != target_port)
		return 0;
	fill(&m, (struct sock *)skc);
	bpf_seq_write(ctx->meta->seq, &m, sizeof(m));
	return 0;
}

SEC("iter/udp")
int rp_group_udp(struct bpf_iter__udp *ctx)
{
	struct udp_sock *udp = ctx->udp_sk;
	struct rp_group_member m = {};
	struct sock *sk;

	if (!udp)
		return 0;
	sk = (struct sock *)udp;
	if (BPF_CORE_READ(sk, __sk_common.skc_num) != target_port)
		return 0;
	fill(&m, sk);
	bpf_seq_write(ctx->meta->seq, &m, sizeof(m));
	return 0;
}

/* Every datagram queued to a socket wakes it through sk_data_ready (sock_def_readable from
 * __udp_enqueue_schedule_skb); datagrams dropped on a full buffer never get here (they are
 * SK_MEMINFO_DROPS in sock_diag). */
SEC("?tp_btf/sk_data_ready")
int BPF_PROG(rp_group_udp_ready, struct sock *sk)
{
	__u64 cookie, zero = 0, *n;

	if (sk->sk_protocol != RP_IPPROTO_UDP || sk->__sk_common.skc_num != target_port)
		return 0;
	if (!net_is_target(sk->__sk_common.skc_net.net))
		return 0;
	cookie = bpf_get_socket_cookie(sk);
	n = bpf_map_lookup_elem(&rp_udp_queued, &cookie);
	if (!n) {
		/* EEXIST from a racing CPU is fine; a full map loses the count (seen by user
		 * space as a member without an entry). */
		bpf_map_update_elem(&rp_udp_queued, &cookie, &zero, BPF_NOEXIST);
		n = bpf_map_lookup_elem(&rp_udp_queued, &cookie);
		if (!n)
			return 0;
	}
	__sync_fetch_and_add(n, 1);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
