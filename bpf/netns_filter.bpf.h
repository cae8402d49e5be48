/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The network-namespace filter of the tracing programs (reuseport_probe, udp_drops,
 * reuseport_group): the namespace the user watches, by its cookie where the kernel gives
 * user space one (SO_NETNS_COOKIE, 5.14+), else by its inode; both 0 match every
 * namespace. Included after vmlinux.h and libbpf's headers, once per program: it declares
 * the two read-only globals its loader sets between open and load.
 */
#ifndef RP_NETNS_FILTER_BPF_H
#define RP_NETNS_FILTER_BPF_H

const volatile __u64 target_netns = 0;     /* net->net_cookie; 0: see target_netns_ino */
/* net->ns.inum, where user space cannot learn the cookie; used only when target_netns
 * is 0. */
const volatile __u32 target_netns_ino = 0;

/* net->net_cookie was an atomic64_t generated on first use before v5.12 ("net: initialize
 * net->net_cookie at netns setup" made it a plain u64 set at creation). CO-RE picks the
 * layout the running kernel has; a mismatching type makes the relocation fail, so the
 * u64 form is tried first. */
struct net___atomic_cookie {
	atomic64_t net_cookie;
} __attribute__((preserve_access_index));

static __always_inline bool netns_filtered(void)
{
	return target_netns || target_netns_ino;
}

/* For a BTF-typed pointer (tp_btf, fentry, fexit): plain loads, no helper call, which
 * matters on events that fire for every packet or connection of the machine. */
static __always_inline bool net_is_target(const struct net *net)
{
	if (target_netns) {
		if (bpf_core_field_exists(net->net_cookie))
			return net->net_cookie == target_netns;
		return ((const struct net___atomic_cookie *)net)->net_cookie.counter == target_netns;
	}
	if (target_netns_ino)
		return net->ns.inum == target_netns_ino;
	return true;
}

/* The same through bpf_probe_read_kernel(), for pointers a raw_tp hands over untyped. */
static __always_inline bool net_is_target_read(const struct net *net)
{
	if (target_netns) {
		if (bpf_core_field_exists(net->net_cookie))
			return BPF_CORE_READ(net, net_cookie) == target_netns;
		return BPF_CORE_READ((struct net___atomic_cookie *)net, net_cookie.counter) == target_netns;
	}
	if (target_netns_ino)
		return BPF_CORE_READ(net, ns.inum) == target_netns_ino;
	return true;
}

#endif
