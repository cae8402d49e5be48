#!/bin/sh
# A restart: stop unbound (SIGTERM, wait until it is gone), then start it again. Between
# the two nothing is bound to the port: those queries find no socket (Udp.NoPorts).
set -eu
here=$(dirname "$0")
old=$(cat "$RP_WORKDIR/u1.pid")
kill -TERM "$old"
while kill -0 "$old" 2>/dev/null; do sleep 0.01; done
"$here/start.sh" u2 >/dev/null 2>&1 &
# unbound writes its pid file once it has opened its sockets.
while [ ! -s "$RP_WORKDIR/u2.pid" ]; do sleep 0.01; done
