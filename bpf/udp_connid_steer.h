/* Shared between bpf/udp_connid_steer.bpf.c and its loader probes/udp_connid_steer.cc. */
#ifndef RP_UDP_CONNID_STEER_H
#define RP_UDP_CONNID_STEER_H

/* Slots of the REUSEPORT_SOCKARRAY: one per member of both generations. */
#define RP_CONNID_MAX_SOCKS 16
/* Connection ids the program remembers (the owner map). */
#define RP_CONNID_MAX_CONNS 4096
/* Where the id sits, from the UDP header (sk_reuseport_md's data starts there for UDP:
 * udp_rcv() runs after the IP header was pulled): 8 bytes of header, then
 * harness/wire.h FlowRequest {magic, flow, seq}. */
#define RP_CONNID_OFFSET 8
#define RP_CONNID_MAGIC 0x31465052 /* wire::kFlowRequestMagic, "RPF1" */

#endif
