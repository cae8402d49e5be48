"""The "Measured here" paragraphs of docs/semantics.md, one per case (results/figures.py
makes each a block). A paragraph is f(c, rs, recs): the case, all its records, and recs(c,
pattern), its records whose variant matches pattern; results/figures.py reads them.
"""

from __future__ import annotations

from typing import Callable, Iterable

from .figures_format import count, obs_all, pct, quoted, span, total

Records = Callable[..., list]  # recs(case, pattern="*")
SEMANTICS: dict[str, Callable[[str, list, Records], str]] = {}  # in the page's order


def semantics(case: str) -> Callable:
    """Makes f the paragraph of the block `case`."""
    def register(f: Callable[[str, list, Records], str]) -> Callable[[str, list, Records], str]:
        SEMANTICS[case] = f
        return f
    return register


@semantics("close_listener_with_queued_children")
def m_close_listener(c: str, rs: list[dict], recs: Records) -> str:
    m0, m1 = recs(c, "*migrate0"), recs(c, "*migrate1")
    return (
        f"Backlog B held B+1 children (queued_at_close = backlog + 1 in "
        f"{count(m0 + m1, lambda o: o['queued_at_close'] == o['backlog'] + 1)} variants: "
        f"{span(m0, 'queued_at_close', either=True)}). Migration off: client resets = queued = kernel "
        f"orphans = orphan RSTs in "
        f"{count(m0, lambda o: o['client_resets'] == o['queued_at_close'] == o['kernel_orphaned_children'] == o['kernel_orphan_resets'])}"
        f" variants, every other attempt served ({total(m0, 'lost_other')} lost otherwise). "
        f"Migration on: {total(m1, 'client_resets')} client resets, TCPMigrateReqSuccess = "
        f"queued in {count(m1, lambda o: o['netstat_migrate_req_success'] == o['queued_at_close'])}, "
        f"every attempt served in {count(m1, lambda o: o['served'] == o['attempts'])}.")


@semantics("hash_spread")
def m_hash_spread(c: str, rs: list[dict], recs: Records) -> str:
    tcp, udp = recs(c, "tcp*"), recs(c, "udp*")
    return (
        f"Largest share deviation {span(rs, 'max_share_deviation', pct)}, chi-square "
        f"{span(rs, 'chi_square')}; {total(rs, 'tuples_moved')} tuples moved of "
        f"{span(tcp, 'tuples_rechecked')} (TCP) and {span(udp, 'tuples_rechecked')} (UDP) "
        f"rechecked; {span(udp, 'one_port_received')} of {span(udp, 'one_port_datagrams')} "
        f"datagrams of one port at {span(udp, 'one_port_listeners')} listener. TCP: "
        f"{span(tcp, 'accepted')} of {span(tcp, 'attempts')} connections accepted, "
        f"{total(tcp, 'accepted_from_elsewhere')} from a port the case did not use.")


@semantics("group_change_remap")
def m_group_change_remap(c: str, rs: list[dict], recs: Records) -> str:
    parts = []
    for proto in ("udp4", "udp6", "tcp4", "tcp6"):
        add = recs(c, f"{proto}_add")
        moves = ", ".join(span(recs(c, f"{proto}_close_{s}"), "moved_fraction")
                          for s in ("slot0", "slot1", "slot3"))
        parts.append(f"{proto}: {span(add, 'moved_fraction')} (add, "
                     f"{span(add, 'moved_to_new_fraction')} to the new socket), {moves}")
    return (
        f"Moved fraction (add; close slot 0, 1, 3) {'; '.join(parts)}; "
        f"{total(recs(c), 'impossible_transitions')} impossible transitions.")


@semantics("bpf_steering")
def m_bpf_steering(c: str, rs: list[dict], recs: Records) -> str:
    return (
        f"Index 2: every flow at listener 2 in "
        f"{count(rs, lambda o: o['steered_to_target'] == o['flows'])} variants; index 7 and "
        f"after detach: {total(rs, 'fallback_differs_from_hash')} and "
        f"{total(rs, 'detached_differs_from_hash')} flows differ from the hash's choice; the "
        f"bind after attach: {span(rs, 'attach_before_bind_bind')} (TCP and UDP). The eBPF "
        f"program ran once per datagram ({span(recs(c, 'udp*_ebpf'), 'program_runs')} runs for "
        f"{span(recs(c, 'udp*_ebpf'), 'flows')} flows in the two phases with a program) and "
        f"once per SYN ({span(recs(c, 'tcp*_ebpf'), 'program_runs')} for "
        f"{span(recs(c, 'tcp*_ebpf'), 'flows')} flows): the handshake's "
        f"final ACK finds the request socket and does not consult the group.")


@semantics("sk_reuseport_select")
def m_sk_reuseport_select(c: str, rs: list[dict], recs: Records) -> str:
    sel, tdrop, udrop = recs(c, "*_select"), recs(c, "tcp*_drop"), recs(c, "udp*_drop")
    return (
        f"select: every flow at the chosen listener in both phases in "
        f"{count(sel, lambda o: o['on_slot1_listener'] == o['on_slot3_listener'] == o['flows'])}"
        f" variants ({span(recs(c, 'tcp*_select'), 'flows')} TCP, "
        f"{span(recs(c, 'udp*_select'), 'flows')} UDP flows); one program selection per SYN "
        f"or datagram in {count(sel, lambda o: o['program_selected'] == o['answered'])}. drop: "
        f"a dropped SYN is not silent: the kernel answers with a RST, "
        f"{span(tdrop, 'dropped_refused')} of {span(tdrop, 'dropped_attempts')} TCP clients "
        f"got ECONNREFUSED ({span(tdrop, 'program_drops')} program drops); "
        f"{total(udrop, 'dropped_answered')} UDP datagrams answered, "
        f"{span(udrop, 'program_drops')} drops; SK_PASS again: all flows at slot 2 in "
        f"{count(tdrop + udrop, lambda o: o['after_pass_on_slot2_listener'] == o['flows'])}.")


@semantics("incoming_cpu")
def m_incoming_cpu(c: str, rs: list[dict], recs: Records) -> str:
    per_cpu = span(rs, "accepted_per_client_cpu",
                   lambda v: ", ".join(f"`{k}: {v[k]}`" for k in sorted(v)))
    return (
        f"{span(rs, 'to_listener_of_their_cpu')} of {span(rs, 'connections')} connections at "
        f"the listener of their client's CPU ({per_cpu}), "
        f"{span(rs, 'children_with_client_cpu')} accepted children reporting the client's "
        f"CPU.")


@semantics("cbpf_cpu_steering")
def m_cbpf_cpu_steering(c: str, rs: list[dict], recs: Records) -> str:
    per_cpu = span(rs, "received_per_client_cpu",
                   lambda v: ", ".join(f"`{k}: {v[k]}`" for k in sorted(v)))
    return (
        f"{span(rs, 'to_socket_of_their_cpu')} of {span(rs, 'sent')} connections or datagrams "
        f"at the socket whose index is their client's CPU (per client CPU, received per "
        f"socket index: {per_cpu}).")


@semantics("migrated_wakeup")
def m_migrated_wakeup(c: str, rs: list[dict], recs: Records) -> str:
    return (
        f"Waiter asleep in {count(rs, lambda o: o['waiter_was_asleep'] is True)}, woke=true in "
        f"{count(rs, lambda o: o['woke'] is True)} (accept: "
        f"{span(recs(c, '*accept'), 'waiter_result', quoted)}; epoll_wait: "
        f"{span(recs(c, '*epoll'), 'waiter_result', quoted)}), {span(rs, 'migrated')} of "
        f"{span(rs, 'children')} children migrated to B.")


def _rows(recs: Records, case: str, rows: Iterable[str], key: str) -> str:
    return ", ".join(f"{row} {span(recs(case, '*_' + row), key)}" for row in rows)


@semantics("bind_rules")
def m_bind_rules(c: str, rs: list[dict], recs: Records) -> str:
    return "As claimed, every row."


@semantics("same_euid_rule")
def m_same_euid_rule(c: str, rs: list[dict], recs: Records) -> str:
    return (
        f"{_rows(recs, c, ('same_uid', 'other_uid', 'root_socket_then_setuid', 'other_fsuid'), 'second_bind')}"
        f" (second bind), for all four protocol/family pairs.")


@semantics("time_wait_rebind")
def m_time_wait_rebind(c: str, rs: list[dict], recs: Records) -> str:

    def row(pattern: str) -> str:
        r = recs(c, pattern)
        return (f"plain {span(r, 'bind_plain')}, `SO_REUSEADDR` {span(r, 'bind_reuseaddr')}, "
                f"`SO_REUSEPORT` {span(r, 'bind_reuseport')} (and listen "
                f"{span(r, 'listen_reuseport')})")
    return (
        f"{span(rs, 'time_wait_on_port')} TIME_WAIT socket, {span(rs, 'listeners_on_port')} "
        f"listeners on the port. Listener with `SO_REUSEPORT` only: "
        f"{row('*_listener_reuseport')}. Listener with both: "
        f"{row('*_listener_reuseport_reuseaddr')}. Listener with neither: "
        f"{row('*_listener_plain')}. Listener with `SO_REUSEADDR` only: "
        f"{row('*_listener_reuseaddr')}. Loopback and wildcard alike.")


@semantics("unix_reuseport_rejected")
def m_unix(c: str, rs: list[dict], recs: Records) -> str:
    return (
        f"setsockopt on: {span(rs, 'setsockopt_on')}, flag reads {span(rs, 'flag_after')}, "
        f"off: {span(rs, 'setsockopt_off')}, second bind to the same abstract address: "
        f"{span(rs, 'second_bind')}.")


@semantics("payload_steering")
def m_payload_steering(c: str, rs: list[dict], recs: Records) -> str:
    return (
        f"{span(rs, 'on_socket_of_their_payload')} of {span(rs, 'sent')} datagrams or Fast "
        f"Open connections on the socket their payload word named "
        f"({span(rs, 'received')} received).")


@semantics("groups_per_address")
def m_groups_per_address(c: str, rs: list[dict], recs: Records) -> str:
    return (
        f"{span(rs, 'answered')} of {span(rs, 'attempts')} answered over "
        f"{span(rs, 'addresses')} addresses, {span(rs, 'to_other_address')} by a listener of "
        f"another address; every address's traffic reached at least "
        f"{span(rs, 'fewest_listeners_used_per_address')} of its "
        f"{span(rs, 'listeners_per_address')} listeners.")


@semantics("dual_stack_preference")
def m_dual_stack(c: str, rs: list[dict], recs: Records) -> str:
    return (
        f"{span(rs, 'served_by_preferred')} of {span(rs, 'attempts')} connections (TCP) and "
        f"datagrams (UDP) reached the preferred socket in "
        f"{count(rs, lambda o: o['served_by_preferred'] == o['attempts'])} variants; the "
        f"other served {total(rs, 'served_by_other')}.")


@semantics("listen_after_shutdown")
def m_listen_after_shutdown(c: str, rs: list[dict], recs: Records) -> str:
    lost = sum(sum(o.get(k) or 0 for k in ("lost_before", "lost_after_shutdown",
                                          "lost_after_relisten")) for o in obs_all(rs))
    return (
        f"Before: A {span(rs, 'a_before')}, B {span(rs, 'b_before')}. After shutdown: A "
        f"{span(rs, 'a_after_shutdown')}, B {span(rs, 'b_after_shutdown')}. listen() "
        f"{span(rs, 'relisten')}; after it A {span(rs, 'a_after_relisten')}, B "
        f"{span(rs, 'b_after_relisten')}; {lost} lost in any phase. B shut down with children "
        f"queued: migrate=1 moved {span(recs(c, '*_migrate1'), 'a_accepted_after_b_shutdown')} "
        f"to the relistened A ({span(recs(c, '*_migrate1'), 'queued_client_resets')} resets), "
        f"migrate=0 reset {span(recs(c, '*_migrate0'), 'queued_client_resets')}.")


@semantics("listener_shutdown_and_kill")
def m_listener_shutdown_and_kill(c: str, rs: list[dict], recs: Records) -> str:
    s0, s1 = recs(c, "*_shutdown_migrate0"), recs(c, "*_shutdown_migrate1")
    k0, k1 = recs(c, "*_sigkill_*_migrate0"), recs(c, "*_sigkill_*_migrate1")
    return (
        f"shutdown, migrate=0: {span(s0, 'queued_at_fault')} queued, "
        f"{span(s0, 'client_resets')} client resets = {span(s0, 'kernel_orphaned_children')} "
        f"kernel orphans = {span(s0, 'kernel_resets_received')} RSTs received, "
        f"{total(s0, 'lost_other')} lost otherwise; migrate=1: {total(s1, 'client_resets')} "
        f"resets, {span(s1, 'netstat_migrate_req_success')} migrations. SIGKILL, migrate=0: "
        f"{span(k0, 'queued_at_fault')} queued, {span(k0, 'client_resets')} resets; "
        f"migrate=1: {total(k1, 'client_resets')} resets, every attempt served in "
        f"{count(k1, lambda o: o['served'] == o['attempts'])} variants, but TcpExt TCPMigrateReqSuccess "
        f"read {span(k1, 'netstat_migrate_req_success')} for {span(k1, 'queued_at_fault')} "
        f"queued children.")


@semantics("syn_recv_on_close")
def m_syn_recv_on_close(c: str, rs: list[dict], recs: Records) -> str:
    m0, k2m1, alone1 = recs(c, "*_migrate0"), recs(c, "*_k2_migrate1"), recs(c, "*_alone_migrate1")
    return (
        f"{span(rs, 'syn_recv_before_close')} requests in SYN_RECV before the close in "
        f"{count(rs, lambda o: o['syn_recv_before_close'] == o['requests'])} variants. "
        f"migrate=0: {span(m0, 'final_ack_resets')} RSTs for {span(m0, 'requests')} final "
        f"ACKs (k2 and alone); migrate=1 with a second listener: "
        f"{span(k2m1, 'accepted_by_other')} children accepted there, "
        f"{span(k2m1, 'final_ack_resets')} RSTs; migrate=1 alone: "
        f"{span(alone1, 'final_ack_resets')} RSTs.")


@semantics("bind_conflict_matrix")
def m_bind_conflict_matrix(c: str, rs: list[dict], recs: Records) -> str:
    off = ", ".join("`%s` %d" % (r["variant"], r["observed"]["rows_against_rule"])
                    for r in rs if r["observed"].get("rows_against_rule"))
    return (
        f"{total(rs, 'rows')} bind()/listen() rows in {len(rs)} variants, "
        f"{total(rs, 'rows_against_rule')} decided otherwise than the rule: {off or 'none'}.")


@semantics("ephemeral_port_exhaustion")
def m_ephemeral_port_exhaustion(c: str, rs: list[dict], recs: Records) -> str:
    def pair(pattern: str, key: str) -> str:
        return span(recs(c, pattern), key, quoted)
    return (
        f"ip_autobind_reuse=0: SO_REUSEADDR on both {pair('bind0_autobind_reuse0_*', 'holder_reuseaddr__new_reuseaddr')}. "
        f"=1: SO_REUSEADDR on both {pair('bind0_autobind_reuse1_*', 'holder_reuseaddr__new_reuseaddr')}, "
        f"both options on both, same uid {pair('*reuse1_same_uid', 'holder_both__new_both')}, other uid "
        f"{pair('*reuse1_other_uid', 'holder_both__new_both')}, holder listening "
        f"{pair('bind0_autobind_reuse1_*', 'holder_reuseaddr_listening__new_reuseaddr')}. connect(): over a "
        f"bind() port {span(recs(c, 'connect_*'), 'connect_over_bound_port', quoted)}, to another destination "
        f"{span(recs(c, 'connect_*'), 'connect_other_dest_over_connected', quoted)}.")


def _yes_no(v: bool) -> str:
    return "yes" if v else "no"


@semantics("autobind_relisten")
def m_autobind_relisten(c: str, rs: list[dict], recs: Records) -> str:
    auto = recs(c, "*_bind0_*") + recs(c, "*_listen_only_*")
    bound = recs(c, "*_bound_port_*")
    return (
        f"Autobound: relisten {span(auto, 'relisten')}, same port "
        f"{span(auto, 'port_kept_after_relisten', _yes_no)}, "
        f"A then took {span(auto, 'a_on_group_port')} of the group port's connections and "
        f"{span(auto, 'a_on_new_port')} on its new port. Bound to its port: same port "
        f"{span(bound, 'port_kept_after_relisten', _yes_no)}, A took {span(bound, 'a_on_group_port')} of 64.")


@semantics("incoming_cpu_coverage")
def m_incoming_cpu_coverage(c: str, rs: list[dict], recs: Records) -> str:
    unc, gen = recs(c, "uncovered_member_*"), recs(c, "new_generation_without")
    return (
        f"Member without the option: {span(unc, 'to_member_without_option')} of "
        f"{span(unc, 'connections')}, {span(unc, 'to_listener_of_their_cpu')} at the listener of "
        f"their CPU. New generation without it: {span(gen, 'to_new_generation')} while the old one "
        f"listened, {span(gen, 'to_new_generation_after_old_closed')} after it closed.")


@semantics("new_generation_steering")
def m_new_generation_steering(c: str, rs: list[dict], recs: Records) -> str:
    ix, sa = recs(c, "*_index"), recs(c, "*_sockarray")
    return (
        f"Generation 2's program took over in "
        f"{count(rs, lambda o: o['replaced_on_listener'] == 3 and o['old_program_runs_after_replace'] == 0)}"
        f" variants (generation 1's ran {total(rs, 'old_program_runs_after_replace')} times after). "
        f"Index program, listener reached by index 0-3: 4 members "
        f"{span(ix, 'key_map_4_members')}; listener 0 closed {span(ix, 'key_map_after_close_0')}; "
        f"listener 1 closed {span(ix, 'key_map_after_close_1')}. REUSEPORT_SOCKARRAY, slots 0-1: "
        f"{span(sa, 'key_map_4_members')}, {span(sa, 'key_map_after_close_0')}, "
        f"{span(sa, 'key_map_after_close_1')}. Detach through generation 1's socket: flows over "
        f"{span(rs, 'after_detach_listeners_used')} listeners, {total(rs, 'program_runs_after_detach')} "
        f"program runs.")


@semantics("select_reuseport_edges")
def m_select_reuseport_edges(c: str, rs: list[dict], recs: Records) -> str:
    return (
        f"SOCKMAP and SOCKHASH member selected: listener {span(rs, 'sockmap_member_on_listener')} "
        f"and {span(rs, 'sockhash_member_on_listener')}. Helper errors (flows then hashed, -1): "
        f"empty key {span(rs, 'sockmap_empty_key_err')}; other group "
        f"{span(rs, 'sockmap_other_group_err')} (SOCKMAP), {span(rs, 'sockhash_other_group_err')} "
        f"(SOCKHASH), {span(rs, 'sockarray_other_group_err')} (REUSEPORT_SOCKARRAY); a connected "
        f"socket outside any group: SOCKMAP takes it ({span(rs, 'sockmap_put_ungrouped')}), select "
        f"{span(rs, 'sockmap_ungrouped_err')}; REUSEPORT_SOCKARRAY refuses it "
        f"({span(rs, 'sockarray_put_ungrouped')}) and a socket already in a SOCKMAP "
        f"({span(rs, 'sockarray_put_sockmap_socket')}). Detach: {span(rs, 'detach_first')}, then "
        f"{span(rs, 'detach_second')}. Without SO_REUSEPORT: attach unbound "
        f"{span(rs, 'attach_no_reuseport_unbound')}, bound {span(rs, 'attach_no_reuseport_bound')}, "
        f"detach {span(rs, 'detach_no_reuseport_bound')}.")


@semantics("sk_lookup_reuseport")
def m_sk_lookup_reuseport(c: str, rs: list[dict], recs: Records) -> str:
    h, g, n = recs(c, "*_hash"), recs(c, "*_group_program*"), recs(c, "*_no_reuseport")
    return (
        f"{span(rs, 'flows')} flows to the other port, all assigned to listener 0 by the program "
        f"({count(rs, lambda o: o['lookup_assigned'] == o['flows'])} variants). hash: listener 0 "
        f"got {span(h, 'on_assigned_listener')}, listener 1 {span(h, 'on_other_listener')}; "
        f"the group's program (index 1), with or without a connected UDP member: listener 1 got "
        f"{span(g, 'on_other_listener')}; "
        f"BPF_SK_LOOKUP_F_NO_REUSEPORT: listener 0 got {span(n, 'on_assigned_listener')}. After "
        f"the link's fd closed: TCP {span(recs(c, 'tcp*'), 'after_link_closed_tcp')}, UDP "
        f"{span(recs(c, 'udp*'), 'after_link_closed_udp_answered')} answers.")


@semantics("full_listener_not_bypassed")
def m_full_listener_not_bypassed(c: str, rs: list[dict], recs: Records) -> str:
    a0, a1 = recs(c, "*_abort0"), recs(c, "*_abort1")
    return (
        f"The victim held {span(rs, 'victim_queue')} (backlog + 1) while the other listener held "
        f"{span(rs, 'other_queue')} of its {span(rs, 'other_backlog')}; "
        f"{span(rs, 'unanswered_syns')} of {span(rs, 'clients')} clients got no SYN-ACK, each SYN "
        f"counted in ListenOverflows in {count(rs, lambda o: o['syn_listen_overflows'] >= o['unanswered_syns'])} "
        f"variants. The 4 late ACKs: abort=0: {total(a0, 'ack_resets')} RSTs, "
        f"{span(a0, 'syn_recv_after_acks')} requests kept; abort=1: {span(a1, 'ack_resets')} RSTs, "
        f"{span(a1, 'embryonic_rsts')} EmbryonicRsts, {total(a1, 'syn_recv_after_acks')} requests left.")


@semantics("synack_timer_migration")
def m_synack_timer_migration(c: str, rs: list[dict], recs: Records) -> str:
    m0, m1 = recs(c, "*_migrate0"), recs(c, "*_migrate1")
    return (
        f"migrate=1: {span(m1, 'synacks_retransmitted')} SYN+ACKs retransmitted and "
        f"{span(m1, 'migrated_at_timer')} migrations before any ACK, then "
        f"{span(m1, 'accepted_by_other')} accepted by the new listener, {total(m1, 'final_ack_resets')} RSTs; "
        f"migrate=0: {total(m0, 'synacks_retransmitted')} retransmitted, {total(m0, 'syn_recv_after_timer')} "
        f"requests left after the timer, {span(m0, 'final_ack_resets')} RSTs for the ACKs.")


@semantics("syncookie_group")
def m_syncookie_group(c: str, rs: list[dict], recs: Records) -> str:
    c2, c1 = recs(c, "*_count_syncookies2"), recs(c, "*_count_syncookies1")
    mv2, mv1 = recs(c, "*_moved_syncookies2"), recs(c, "*_moved_syncookies1")
    cl2, cl1 = recs(c, "*_close_syncookies2"), recs(c, "*_close_syncookies1")
    return (
        f"The program ran {span(c2, 'program_runs')} times for {span(c2, 'connections')} connections "
        f"with cookies, {span(c1, 'program_runs')} without. Program moved to B after the SYNs: "
        f"{span(mv2, 'accepted_by_b')} accepted by B with cookies, {span(mv1, 'accepted_by_a')} by A "
        f"without. A closed after the SYNs: {span(cl2, 'accepted_by_b')} completed on B with cookies "
        f"({total(cl2, 'final_ack_resets')} RSTs), {span(cl1, 'final_ack_resets')} RSTs without.")


@semantics("tfo_children_on_close")
def m_tfo_children_on_close(c: str, rs: list[dict], recs: Records) -> str:
    m0, m1 = recs(c, "*_migrate0"), recs(c, "*_migrate1")
    return (
        f"{span(rs, 'tfo_children')} Fast Open children in the victim's queue before the close. "
        f"migrate=0: {span(m0, 'resets_at_close')} RSTs at the close, {span(m0, 'final_ack_resets')} "
        f"for the ACKs; migrate=1: {total(m1, 'resets_at_close')} RSTs, {span(m1, 'migrated')} migrated, "
        f"{span(m1, 'accepted_before_ack')} accepted before the ACK with {span(m1, 'syn_data_read')} bytes "
        f"of SYN data, {span(m1, 'established_after_ack')} established by the ACKs.")


@semantics("udp_close_with_queued")
def m_udp_close_with_queued(c: str, rs: list[dict], recs: Records) -> str:
    return (
        f"{span(rs, 'queued_at_close')} datagrams queued on the victim at the close "
        f"({span(rs, 'victim_rmem_at_close')} bytes charged), none read afterwards "
        f"({total(rs, 'misdelivered')} misdelivered), Udp InErrors {span(rs, 'netstat_in_errors')}, "
        f"RcvbufErrors {span(rs, 'netstat_rcvbuf_errors')}; after the close "
        f"{span(rs, 'read_after_close')} of {span(rs, 'sent_after_close')} read by the rest; "
        f"unaccounted {span(rs, 'unaccounted')}.")


@semantics("udp_unread_member")
def m_udp_unread_member(c: str, rs: list[dict], recs: Records) -> str:
    return (
        f"The unread member's flows: {span(rs, 'to_unread')} datagrams, {span(rs, 'queued_in_unread')} "
        f"queued, RcvbufErrors {span(rs, 'netstat_rcvbuf_errors')} = InErrors "
        f"{span(rs, 'netstat_in_errors')}; {total(rs, 'misdelivered')} reached another member; "
        f"unaccounted {span(rs, 'unaccounted')}.")


@semantics("udp_connected_members")
def m_udp_connected_members(c: str, rs: list[dict], recs: Records) -> str:
    return (
        f"The connected member got {span(rs, 'connected_flow_at_connected')} of "
        f"{span(rs, 'connected_flow_sent')} datagrams of its peer and {span(rs, 'unconnected_to_connected')} "
        f"of the other flows; flows against the skip model {span(rs, 'flows_against_skip_model')}, "
        f"against the detach model {span(rs, 'flows_against_detach_model')}.")


@semantics("udp_connection_id_steering")
def m_udp_connection_id_steering(c: str, rs: list[dict], recs: Records) -> str:
    steer, hash_ = recs(c, "*_steer"), recs(c, "*_hash")
    return (
        f"Steered by connection id: {total(steer, 'a_flows_moved')} + {total(steer, 'b_flows_moved')} flows "
        f"moved and {total(steer, 'a_lost')} + {total(steer, 'b_lost')} datagrams lost over "
        f"{span(steer, 'a_sent')} + {span(steer, 'b_sent')} per variant; generation 1's flows all on "
        f"generation 1 and generation 2's on generation 2 in "
        f"{count(steer, lambda o: o['a_flows_on_gen1'] == o['a_flows'] and o['b_flows_on_gen2'] == o['b_flows'])}"
        f" variants. An emptied owner slot: with SK_PASS {span(steer, 'closed_slot_pass_answered')} of "
        f"{span(steer, 'closed_slot_pass_sent')} answered by generation 2 (the hash); with SK_DROP "
        f"{span(steer, 'closed_slot_drop_lost')} lost, UdpNoPorts {span(steer, 'closed_slot_drop_netstat_no_ports')}."
        f" The hash control: {span(hash_, 'a_flows_moved')} of {span(hash_, 'a_flows')} flows moved when "
        f"generation 2 joined, {total(hash_, 'a_lost')} lost; generation 1's close moved "
        f"{span(hash_, 'b_flows_moved')} and lost {span(hash_, 'b_lost')} datagrams of the flows started after it.")
