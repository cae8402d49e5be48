// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * reuseport_sockmap: programs that name a socket of a reuseport group through a socket map
 * other than the group's own REUSEPORT_SOCKARRAY, and record what the kernel's helper said,
 * so that a case can put the helper's answer next to where the traffic went.
 *
 *  - sk_reuseport (BPF_PROG_TYPE_SK_REUSEPORT): bpf_sk_select_reuseport() with a SOCKMAP, a
 *    SOCKHASH or a REUSEPORT_SOCKARRAY (the first two allowed by "bpf: Allow selecting
 *    reuseport socket from a SOCKMAP/SOCKHASH", Jakub Sitnicki, 2020). It always returns
 *    SK_PASS: a failed selection then falls back to the group's hash, which is what the
 *    case observes next to the helper's error.
 *  - sk_lookup (BPF_PROG_TYPE_SK_LOOKUP, 5.9, e9ddbb7707ff "bpf: Introduce SK_LOOKUP program
 *    type with a dedicated attach point"): for packets to `lookup_port`, bpf_sk_assign()s the
 *    socket in slot 0 of `lookup_target`, with `lookup_flags` (BPF_SK_LOOKUP_F_NO_REUSEPORT
 *    or 0).
 *
 * Kept apart from reuseport_steer.bpf.c: these programs need SOCKMAP/SOCKHASH maps and a
 * program type (sk_lookup) that attaches to a network namespace by a BPF link, not to a
 * socket; a kernel without sk_lookup must still load the steering programs.
 * Knobs and counts are in .bss, so a case changes them between phases without reloading.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "reuseport_sockmap.h"

#define RP_SK_PASS 1

struct {
  __uint(type, BPF_MAP_TYPE_SOCKMAP);
  __uint(max_entries, RP_SOCKMAP_MAX_SOCKS);
  __type(key, __u32);
  __type(value, __u64);
} sockmap SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_SOCKHASH);
  __uint(max_entries, RP_SOCKMAP_MAX_SOCKS);
  __type(key, __u32);
  __type(value, __u64);
} sockhash SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY);
  __uint(max_entries, RP_SOCKMAP_MAX_SOCKS);
  __type(key, __u32);
  __type(value, __u64);
} sockarray SEC(".maps");

/* sk_lookup's choice: slot 0. A SOCKMAP, the map type bpf_sk_assign() takes sockets from. */
struct {
  __uint(type, BPF_MAP_TYPE_SOCKMAP);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} lookup_target SEC(".maps");

/* Knobs. */
__u32 map_kind = RP_MAP_SOCKMAP; /* sk_reuseport: which map to select from */
__u32 select_key = 0;            /* sk_reuseport: the key looked up in it */
__u32 lookup_port = 0;           /* sk_lookup: the local port (host order) it redirects */
__u64 lookup_flags = 0;          /* sk_lookup: bpf_sk_assign()'s flags */

/* What the programs did; the last error the helper returned (0: none yet). */
__u64 select_runs = 0;
__u64 selected = 0;
__u64 select_errors = 0;
__s64 last_select_err = 0;
__u64 lookup_runs = 0;
__u64 assigned = 0;
__u64 assign_errors = 0;
__s64 last_assign_err = 0;

SEC("sk_reuseport")
int rp_select_from_map(struct sk_reuseport_md *md) {
  __u32 key = select_key;
  long err;
  __sync_fetch_and_add(&select_runs, 1);
  /* One call per map: the verifier wants the map argument to be a constant. */
  if (map_kind == RP_MAP_SOCKMAP)
    err = bpf_sk_select_reuseport(md, &sockmap, &key, 0);
  else if (map_kind == RP_MAP_SOCKHASH)
    err = bpf_sk_select_reuseport(md, &sockhash, &key, 0);
  else
    err = bpf_sk_select_reuseport(md, &sockarray, &key, 0);
  if (err == 0) {
    __sync_fetch_and_add(&selected, 1);
  } else {
    __sync_fetch_and_add(&select_errors, 1);
    last_select_err = err;
  }
  return RP_SK_PASS;
}

SEC("sk_lookup")
int rp_lookup_assign(struct bpf_sk_lookup *ctx) {
  __u32 key = 0;
  struct bpf_sock *sk;
  long err;
  if (ctx->local_port != lookup_port) return RP_SK_PASS;
  __sync_fetch_and_add(&lookup_runs, 1);
  sk = bpf_map_lookup_elem(&lookup_target, &key);
  if (!sk) {
    __sync_fetch_and_add(&assign_errors, 1);
    last_assign_err = -2; /* -ENOENT: the slot is empty */
    return RP_SK_PASS;
  }
  err = bpf_sk_assign(ctx, sk, lookup_flags);
  bpf_sk_release(sk);
  if (err == 0) {
    __sync_fetch_and_add(&assigned, 1);
  } else {
    __sync_fetch_and_add(&assign_errors, 1);
    last_assign_err = err;
  }
  return RP_SK_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
