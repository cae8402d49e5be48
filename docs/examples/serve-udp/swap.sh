#!/bin/sh
# The naive hot deploy of a UDP server: start generation 2 on the same port (SO_REUSEPORT
# lets both bind), wait until it is bound, then SIGTERM generation 1. What this costs:
#  - flows move: the group's hash of a flow's 4-tuple picks among more members when
#    generation 2 joins and among fewer when generation 1 leaves, so most flows change
#    member (a QUIC connection breaks on it), although nothing was lost;
#  - a generation 1 started without --drain closes its members at once, and what sits in
#    their receive queues is freed unanswered (no SNMP counter counts it).
# Extra arguments go to the new `serve`.
set -eu
old=$(cat "$RP_WORKDIR/gen1.pid")
"$RP_CHECK" serve --udp --port "$RP_PORT" --workers 2 --pidfile "$RP_WORKDIR/gen2.pid" "$@" &
# serve writes its pid file once every member is bound.
while [ ! -s "$RP_WORKDIR/gen2.pid" ]; do sleep 0.02; done
kill -TERM "$old"
while kill -0 "$old" 2>/dev/null; do sleep 0.02; done
