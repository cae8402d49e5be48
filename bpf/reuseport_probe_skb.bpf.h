/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The TCP segment helpers of bpf/reuseport_probe.bpf.c (included there, after its
 * namespace filter): an skb's ports, its FIN flag, and its namespace. A header of that
 * one program, not shared: it uses the program's globals.
 */
#ifndef RP_REUSEPORT_PROBE_SKB_BPF_H
#define RP_REUSEPORT_PROBE_SKB_BPF_H

/* Source and destination port of an skb's TCP header, the skb's fields given (read by
 * the caller, by CO-RE probe reads or by BTF loads). Returns false when the skb carries
 * no located TCP header. */
static __always_inline bool tcp_ports_at(unsigned char *head, __u16 proto, __u16 nh, __u16 th,
					 __u16 ports[2])
{
	__u8 l4;

	if (th == (__u16)~0U || nh == (__u16)~0U)
		return false;
	if (proto == bpf_htons(RP_ETH_P_IP)) {
		if (bpf_probe_read_kernel(&l4, sizeof(l4),
					  head + nh + offsetof(struct iphdr, protocol)))
			return false;
	} else if (proto == bpf_htons(RP_ETH_P_IPV6)) {
		/* Extension headers are not followed: such segments are not attributed. */
		if (bpf_probe_read_kernel(&l4, sizeof(l4),
					  head + nh + offsetof(struct ipv6hdr, nexthdr)))
			return false;
	} else {
		return false;
	}
	if (l4 != RP_IPPROTO_TCP)
		return false;
	/* struct tcphdr starts with source, dest. */
	return bpf_probe_read_kernel(ports, 2 * sizeof(__u16), head + th) == 0;
}

static __always_inline bool skb_tcp_ports(const struct sk_buff *skb, __u16 ports[2])
{
	return tcp_ports_at(BPF_CORE_READ(skb, head), BPF_CORE_READ(skb, protocol),
			    BPF_CORE_READ(skb, network_header), BPF_CORE_READ(skb, transport_header),
			    ports);
}

/* Whether the segment's FIN flag is set (struct tcphdr: the flags are byte 13). */
static __always_inline bool skb_tcp_fin(const struct sk_buff *skb)
{
	__u16 th = BPF_CORE_READ(skb, transport_header);
	__u8 flags = 0;

	if (th == (__u16)~0U)
		return false;
	if (bpf_probe_read_kernel(&flags, sizeof(flags), BPF_CORE_READ(skb, head) + th + 13))
		return false;
	return flags & 0x01;
}

static __always_inline bool skb_netns_ok(const struct sk_buff *skb, const struct sock *sk)
{
	struct net_device *dev;

	if (!netns_filtered())
		return true;
	if (!sk)
		sk = BPF_CORE_READ(skb, sk);
	if (sk)
		return sk_netns_ok(sk);
	dev = BPF_CORE_READ(skb, dev);
	if (!dev)
		return false;
	return net_is_target_read(BPF_CORE_READ(dev, nd_net.net));
}

#endif /* RP_REUSEPORT_PROBE_SKB_BPF_H */
