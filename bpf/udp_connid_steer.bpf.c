// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * udp_connid_steer: QUIC-style steering of a UDP reuseport group by a connection id carried
 * in each datagram (harness/wire.h FlowRequest.flow), so a reload keeps every connection on
 * the member that owns it while the group's membership (and with it the hash) changes.
 *
 *  - owner (hash map): connection id -> slot of `members` (REUSEPORT_SOCKARRAY). An id seen
 *    for the first time is given a slot of the current generation, new_first +
 *    id % new_count, and remembered (as a QUIC server encodes its own id into the
 *    connection ids it issues); later datagrams of that id go to the same slot.
 *  - A slot whose socket closed is empty: the sockarray entry is removed when its socket
 *    leaves the group (bpf_sk_reuseport_detach(), 4.19 5dc4c4b7d4e8), and
 *    bpf_sk_select_reuseport() fails with -ENOENT. Then the program returns SK_DROP
 *    (missing_drop = 1) or SK_PASS without a selection, and the kernel picks by the hash
 *    (net/core/sock_reuseport.c reuseport_select_sock(): sk2 == NULL -> select_by_hash).
 *    Counting both tells the case which of the two paths each datagram took.
 *
 * The knobs are in .bss: the case switches new ids to generation 2 without reloading.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "udp_connid_steer.h"

#define RP_SK_DROP 0
#define RP_SK_PASS 1

struct {
  __uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY);
  __uint(max_entries, RP_CONNID_MAX_SOCKS);
  __type(key, __u32);
  __type(value, __u64);
} members SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, RP_CONNID_MAX_CONNS);
  __type(key, __u32);
  __type(value, __u32);
} owner SEC(".maps");

/* Knobs. */
__u32 new_first = 0;     /* the current generation's first slot */
__u32 new_count = 0;     /* ... and how many slots it has (0: one); zero-initialised, so in .bss */
__u32 missing_drop = 0;  /* the owner's slot is empty: 1 = SK_DROP, 0 = fall back to the hash */

/* What the program did. */
__u64 runs = 0;
__u64 no_id = 0;         /* the datagram holds no FlowRequest: left to the hash */
__u64 assigned = 0;      /* ids seen for the first time */
__u64 selected = 0;      /* the owner's slot held a socket, selected */
__u64 empty_slot = 0;    /* the owner's slot was empty */
__u64 dropped = 0;       /* ... and the program returned SK_DROP */

SEC("sk_reuseport")
int rp_connid_select(struct sk_reuseport_md *md) {
  __u32 hdr[2];
  __u32 id, key, count, *slot;

  __sync_fetch_and_add(&runs, 1);
  if (bpf_skb_load_bytes(md, RP_CONNID_OFFSET, hdr, sizeof hdr) || hdr[0] != RP_CONNID_MAGIC) {
    __sync_fetch_and_add(&no_id, 1);
    return RP_SK_PASS;
  }
  id = hdr[1];
  slot = bpf_map_lookup_elem(&owner, &id);
  if (slot) {
    key = *slot;
  } else {
    count = new_count ? new_count : 1;
    key = new_first + id % count;
    bpf_map_update_elem(&owner, &id, &key, BPF_NOEXIST);
    __sync_fetch_and_add(&assigned, 1);
  }
  if (bpf_sk_select_reuseport(md, &members, &key, 0) == 0) {
    __sync_fetch_and_add(&selected, 1);
    return RP_SK_PASS;
  }
  __sync_fetch_and_add(&empty_slot, 1);
  if (missing_drop) {
    __sync_fetch_and_add(&dropped, 1);
    return RP_SK_DROP;
  }
  return RP_SK_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
