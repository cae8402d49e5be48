// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * udp_drops: every UDP datagram to one port in one network namespace that the kernel freed
 * as a drop (tracepoint skb:kfree_skb), counted by where it was freed and why.
 *
 * Why location and reason both: a UDP member closed with datagrams in its receive queue
 * frees them in udp_destruct_common() with a plain kfree_skb(), so on 6.18 their reason
 * is NOT_SPECIFIED, shared with many other paths; the location tells them apart. A full
 * receive buffer (SOCKET_RCVBUFF) and no socket (NO_SOCKET) come with their own reasons
 * (5.17+), and the UDP MIB counts them too.
 *
 * tp_btf: the skb fields are plain loads, and the event fires for every drop of the machine.
 * The reason argument came with v5.17 ("net: skb: introduce kfree_skb_reason()"), rx_sk
 * with v6.11; both are tested with CO-RE before they are read.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "udp_drops.h"
#include "netns_filter.bpf.h"

#define RP_ETH_P_IP 0x0800
#define RP_ETH_P_IPV6 0x86DD
#define RP_IPPROTO_UDP 17

const volatile __u16 target_port = 0;  /* host order */

__u64 overflow = 0;        /* a drop of the port that found no free key */
__u64 netns_unknown = 0;   /* a drop of the port whose namespace could not be told (also
			    * in rp_udp_drops with pad 2) */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RP_UDP_DROP_KEYS);
	__type(key, struct rp_udp_drop_key);
	__type(value, __u64);
} rp_udp_drops SEC(".maps");

/* skbs queued on a socket of the port in the namespace, by address, the newest kept: a
 * closing member's queue holds at most its receive buffer's worth, queued last. An address
 * freed and reused by another namespace's datagram to the same port number, dropped with
 * no socket or device, would be miscounted: it needs that other traffic at that moment. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, RP_UDP_QUEUED_SKBS);
	__type(key, __u64);
	__type(value, __u8);
} rp_udp_queued_skbs SEC(".maps");

/*
 * Before 6.7 there is no sk_data_ready tracepoint to remember the queued skbs by (below),
 * but where fentry works (the Debian kernels; not every host) the destructor itself is
 * seen: while a UDP socket of the port in the namespace runs udp_destruct_sock() (or
 * udp_destruct_common(), which both families' destructors call from 6.2 on), this CPU is
 * marked, and a datagram of the port freed meanwhile with neither socket nor device is one
 * of its queue. The destructor runs from an RCU callback in softirq; the mark is per CPU,
 * set at its entry and cleared at its exit, and nothing else frees a UDP datagram of the
 * port on this CPU in between unless a hard interrupt does (kfree_skb from hardirq is
 * deferred by the drivers, dev_kfree_skb_irq).
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} rp_udp_destructing SEC(".maps");

static __always_inline void mark_destructing(__u64 on)
{
	__u32 zero = 0;
	__u64 *m = bpf_map_lookup_elem(&rp_udp_destructing, &zero);

	if (m)
		*m = on;
}

/* The attach target is set by the loader: udp_destruct_common where it exists, else
 * udp_destruct_sock. */
SEC("?fentry/udp_destruct_sock")
int BPF_PROG(rp_udp_destruct_enter, struct sock *sk)
{
	/* Not skc_num: udp_lib_unhash() zeroes inet_num at close; inet_sport is kept. It is
	 * past struct sock, which is all the verifier lets an fentry argument reach with plain
	 * loads (a direct read was refused with EACCES on 5.10 and 6.1). */
	if (sk->sk_protocol != RP_IPPROTO_UDP ||
	    bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport)) != target_port) {
		mark_destructing(0);
		return 0;
	}
	mark_destructing(net_is_target(sk->__sk_common.skc_net.net));
	return 0;
}

SEC("?fexit/udp_destruct_sock")
int BPF_PROG(rp_udp_destruct_exit, struct sock *sk)
{
	mark_destructing(0);
	return 0;
}

static __always_inline bool destructing_ours(void)
{
	__u32 zero = 0;
	__u64 *m = bpf_map_lookup_elem(&rp_udp_destructing, &zero);

	return m && *m;
}

/* sock_def_readable() right after __udp_enqueue_schedule_skb() put the datagram at the tail
 * of sk_receive_queue (the tracepoint exists from 6.7 on). Another CPU may queue one more in
 * between: then that one is recorded twice and this one not at all, and a purge of it stays
 * unknown (unattributed), never counted for the wrong namespace. */
SEC("?tp_btf/sk_data_ready")
int BPF_PROG(rp_udp_queued, struct sock *sk)
{
	__u64 addr;
	__u8 one = 1;

	if (sk->sk_protocol != RP_IPPROTO_UDP || sk->__sk_common.skc_num != target_port)
		return 0;
	if (!net_is_target(sk->__sk_common.skc_net.net))
		return 0;
	addr = (__u64)sk->sk_receive_queue.prev;
	if (addr && addr != (__u64)&sk->sk_receive_queue)
		bpf_map_update_elem(&rp_udp_queued_skbs, &addr, &one, BPF_ANY);
	return 0;
}

static __always_inline bool udp_dport_is(const struct sk_buff *skb, __u16 port)
{
	unsigned char *head = skb->head;
	__u16 nh = skb->network_header, th = skb->transport_header;
	__u16 dport = 0;
	__u8 l4 = 0;

	if (th == (__u16)~0U || nh == (__u16)~0U)
		return false;
	if (skb->protocol == bpf_htons(RP_ETH_P_IP)) {
		if (bpf_probe_read_kernel(&l4, sizeof(l4), head + nh + offsetof(struct iphdr, protocol)))
			return false;
	} else if (skb->protocol == bpf_htons(RP_ETH_P_IPV6)) {
		/* Extension headers are not followed: such datagrams are not counted. */
		if (bpf_probe_read_kernel(&l4, sizeof(l4), head + nh + offsetof(struct ipv6hdr, nexthdr)))
			return false;
	} else {
		return false;
	}
	if (l4 != RP_IPPROTO_UDP)
		return false;
	/* struct udphdr: source, dest. */
	if (bpf_probe_read_kernel(&dport, sizeof(dport), head + th + 2))
		return false;
	return dport == bpf_htons(port);
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(rp_udp_kfree_skb, struct sk_buff *skb, void *location)
{
	struct rp_udp_drop_key key = {};
	const struct sock *sk = NULL;
	__u64 one = 1, *n;

	if (!udp_dport_is(skb, target_port))
		return 0;
	if (netns_filtered()) {
		const struct net *net = NULL;

		if (bpf_core_field_exists(struct trace_event_raw_kfree_skb, rx_sk))
			sk = (const struct sock *)ctx[3];
		if (!sk)
			sk = skb->sk;
		if (sk)
			net = sk->__sk_common.skc_net.net;
		else if (skb->dev)
			net = skb->dev->nd_net.net;
		if (!net) {
			/* A datagram freed from a closed socket's queue has neither (6.18:
			 * udp_destruct_common() passes no rx_sk, the queued skb has no sk and no
			 * dev), and the destructor runs after an RCU grace period (SOCK_RCU_FREE,
			 * every reuseport socket) in whatever task a softirq interrupted (measured:
			 * the current task's namespace was not the deploy's). So it is told by the
			 * skb itself: one that rp_udp_queued saw queued on a socket of the port in
			 * the namespace. */
			__u64 addr = (__u64)skb;

			if (bpf_map_lookup_elem(&rp_udp_queued_skbs, &addr)) {
				bpf_map_delete_elem(&rp_udp_queued_skbs, &addr);
				key.pad = 1;
			} else if (destructing_ours()) {
				key.pad = 1;
			} else {
				/* Kept apart, by function and reason, so that user space can say
				 * what it could not attribute. */
				__sync_fetch_and_add(&netns_unknown, 1);
				key.pad = 2;
			}
		} else if (!net_is_target(net)) {
			return 0;
		}
	}
	key.location = (__u64)location;
	if (bpf_core_field_exists(struct trace_event_raw_kfree_skb, reason))
		key.reason = (__u32)ctx[2];
	n = bpf_map_lookup_elem(&rp_udp_drops, &key);
	if (n) {
		__sync_fetch_and_add(n, 1);
		return 0;
	}
	if (bpf_map_update_elem(&rp_udp_drops, &key, &one, BPF_NOEXIST)) {
		/* Another CPU inserted it meanwhile, or the map is full. */
		n = bpf_map_lookup_elem(&rp_udp_drops, &key);
		if (n)
			__sync_fetch_and_add(n, 1);
		else
			__sync_fetch_and_add(&overflow, 1);
	}
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
