// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * reuseport_steer: programs that choose the socket of a reuseport group, and count what
 * they did, so a case can compare what the kernel did with what the program asked for.
 *
 *  - socket (BPF_PROG_TYPE_SOCKET_FILTER) for SO_ATTACH_REUSEPORT_EBPF (4.5,
 *    538950a1b752 "soreuseport: setsockopt SO_ATTACH_REUSEPORT_[CE]BPF"): its return value
 *    is an index into the group's socks[]; an index >= the group size falls back to the
 *    hash (net/core/sock_reuseport.c, run_bpf_filter()).
 *  - sk_reuseport (BPF_PROG_TYPE_SK_REUSEPORT, 4.19, 2dbb9b9e6df6 "bpf: Introduce
 *    BPF_PROG_TYPE_SK_REUSEPORT"): bpf_sk_select_reuseport() picks a socket of a
 *    REUSEPORT_SOCKARRAY; SK_DROP drops the packet.
 *  - sk_reuseport/migrate (expected attach type BPF_SK_REUSEPORT_SELECT_OR_MIGRATE, 5.14,
 *    d5e4ddaeb6ab "bpf: Support socket migration by eBPF."): also runs for each child of a
 *    closing listener (md->migrating_sk set), and picks its new listener or drops it.
 *
 * All knobs are in .bss, so a case changes them between phases without reloading.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "reuseport_steer.h"

#define RP_SK_DROP 0
#define RP_SK_PASS 1

struct {
  __uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY);
  __uint(max_entries, RP_STEER_MAX_SOCKS);
  __type(key, __u32);
  __type(value, __u64);
} socks SEC(".maps");

/* Knobs. */
__u32 steer_index = 0;    /* socket filter: the index it returns */
__u32 select_key = 0;     /* sk_reuseport: the slot of `socks` new packets go to */
__u32 select_drop = 0;    /* sk_reuseport: 1 = SK_DROP every packet */
__u32 select_new = 0;     /* migrate program: 1 = also steer new packets to select_key */
__u32 migrate_key = 0;    /* migrate program: the slot migrating children go to */
__u32 migrate_drop = 0;   /* migrate program: 1 = SK_DROP migrating children */

/* What the programs did. */
__u64 filter_runs = 0;
__u64 select_runs = 0;
__u64 selected = 0;
__u64 select_errors = 0;
__u64 dropped = 0;
__u64 migrate_runs = 0;
__u64 migrated = 0;
__u64 migrate_dropped = 0;
__u64 migrate_errors = 0;

SEC("socket")
int rp_steer_filter(struct __sk_buff *skb) {
  __sync_fetch_and_add(&filter_runs, 1);
  return steer_index;
}

SEC("sk_reuseport")
int rp_steer_select(struct sk_reuseport_md *md) {
  __u32 key = select_key;
  __sync_fetch_and_add(&select_runs, 1);
  if (select_drop) {
    __sync_fetch_and_add(&dropped, 1);
    return RP_SK_DROP;
  }
  if (bpf_sk_select_reuseport(md, &socks, &key, 0) == 0) {
    __sync_fetch_and_add(&selected, 1);
  } else {
    /* SK_PASS without a selection: the kernel falls back to the hash. */
    __sync_fetch_and_add(&select_errors, 1);
  }
  return RP_SK_PASS;
}

SEC("sk_reuseport/migrate")
int rp_steer_migrate(struct sk_reuseport_md *md) {
  __u32 key;
  if (!md->migrating_sk) {
    if (!select_new) return RP_SK_PASS;
    key = select_key;
    __sync_fetch_and_add(&select_runs, 1);
    if (bpf_sk_select_reuseport(md, &socks, &key, 0) == 0)
      __sync_fetch_and_add(&selected, 1);
    else
      __sync_fetch_and_add(&select_errors, 1);
    return RP_SK_PASS;
  }
  __sync_fetch_and_add(&migrate_runs, 1);
  if (migrate_drop) {
    __sync_fetch_and_add(&migrate_dropped, 1);
    return RP_SK_DROP;
  }
  key = migrate_key;
  if (bpf_sk_select_reuseport(md, &socks, &key, 0) == 0)
    __sync_fetch_and_add(&migrated, 1);
  else
    __sync_fetch_and_add(&migrate_errors, 1);
  return RP_SK_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
