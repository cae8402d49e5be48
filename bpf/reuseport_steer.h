/* Shared between bpf/reuseport_steer.bpf.c and its loader probes/reuseport_steer.cc. */
#ifndef RP_REUSEPORT_STEER_H
#define RP_REUSEPORT_STEER_H

/* Slots of the REUSEPORT_SOCKARRAY: one per listener of a case, keyed by its index. */
#define RP_STEER_MAX_SOCKS 16

#endif
