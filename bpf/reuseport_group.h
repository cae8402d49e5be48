/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared between bpf/reuseport_group.bpf.c and probes/reuseport_group.cc: one record per
 * socket of the port that a socket iterator (iter/tcp, iter/udp) writes with
 * bpf_seq_write(). Plain C, fixed-width types: the layout is the contract.
 */
#ifndef RP_BPF_REUSEPORT_GROUP_H
#define RP_BPF_REUSEPORT_GROUP_H

#define RP_GROUP_PROG_NAME_LEN 16 /* BPF_OBJ_NAME_LEN */
#define RP_GROUP_MAX_SOCKETS 4096 /* UDP sockets counted per cookie */

struct rp_group_member {
	__u64 cookie;         /* skc_cookie; 0 if nobody ever asked for it */
	/* The kernel address of sk_reuseport_cb, only compared: the group's identity. Its
	 * reuseport_id is not one everywhere: kernels that hand it out lazily
	 * (reuseport_get_id(), when a REUSEPORT_SOCKARRAY first takes the group) leave it 0
	 * for every other group. 6.18 gives each group one when it is made (measured: three
	 * live groups had 1, 2, 3, and 0 is a valid id there). */
	__u64 group;
	__u32 reuseport_id;   /* sk_reuseport_cb->reuseport_id */
	__u32 prog_id;        /* prog->aux->id; 0 for a classic BPF program (no id) */
	__u32 prog_type;      /* enum bpf_prog_type */
	__u32 prog_attach_type; /* prog->expected_attach_type (sk_reuseport select/migrate) */
	__s32 incoming_cpu;   /* sk_incoming_cpu, -1 when unset */
	__u16 num_socks;      /* sk_reuseport_cb->num_socks: the kernel's group size */
	__u16 num_closed_socks;
	__u8 reuseport;       /* skc_reuseport: SO_REUSEPORT was set */
	__u8 has_group;       /* sk_reuseport_cb != NULL */
	__u8 has_prog;        /* sk_reuseport_cb->prog != NULL */
	__u8 state;
	char prog_name[RP_GROUP_PROG_NAME_LEN];
};

#endif /* RP_BPF_REUSEPORT_GROUP_H */
