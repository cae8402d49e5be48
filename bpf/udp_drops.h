/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared between bpf/udp_drops.bpf.c and probes/udp_drops.cc.
 * Plain C, fixed-width __u* types only: the layout is the contract between the two sides.
 */
#ifndef RP_BPF_UDP_DROPS_H
#define RP_BPF_UDP_DROPS_H

/* Distinct (location, reason) pairs kept; more land in the overflow counter. */
#define RP_UDP_DROP_KEYS 256

/* skbs remembered as queued on a socket of the port (newest kept). */
#define RP_UDP_QUEUED_SKBS 65536

struct rp_udp_drop_key {
	__u64 location; /* the kernel address that freed the skb (kfree_skb's caller) */
	__u32 reason;   /* enum skb_drop_reason; 0 on kernels whose event has none */
	__u32 pad;      /* 1: the namespace was told by the skb queued on a socket of ours, or
			 * by the destructor of a socket of ours running on this CPU;
			 * 2: it could not be told (any namespace's datagram to the port) */
};

#endif /* RP_BPF_UDP_DROPS_H */
