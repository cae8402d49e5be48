#!/bin/sh
# A restart: stop generation 1, then start generation 2. Between the two nothing is bound
# to the port: every datagram of that gap finds no socket (Udp.NoPorts, an ICMP port
# unreachable to the client). Extra arguments go to the new `serve`.
set -eu
old=$(cat "$RP_WORKDIR/gen1.pid")
kill -TERM "$old"
while kill -0 "$old" 2>/dev/null; do sleep 0.02; done
"$RP_CHECK" serve --udp --port "$RP_PORT" --workers 2 --pidfile "$RP_WORKDIR/gen2.pid" "$@" &
while [ ! -s "$RP_WORKDIR/gen2.pid" ]; do sleep 0.02; done
