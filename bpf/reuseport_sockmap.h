/* Shared between bpf/reuseport_sockmap.bpf.c and its loader probes/reuseport_sockmap.cc. */
#ifndef RP_REUSEPORT_SOCKMAP_H
#define RP_REUSEPORT_SOCKMAP_H

/* Slots of each socket map: a case puts a handful of sockets in them, keyed by index. */
#define RP_SOCKMAP_MAX_SOCKS 8

/* Which map rp_select_from_map() hands to bpf_sk_select_reuseport(). */
#define RP_MAP_SOCKMAP 0
#define RP_MAP_SOCKHASH 1
#define RP_MAP_SOCKARRAY 2

#endif
