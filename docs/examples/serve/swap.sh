#!/bin/sh
# The naive hot deploy: start generation 2 on the same port (SO_REUSEPORT lets both
# listen), wait until it listens, then SIGTERM generation 1, which closes its listeners at
# once. Connections waiting in generation 1's accept queues at that moment are reset by the
# kernel: this deploy loses connections under load. Extra arguments go to the new `serve`.
set -eu
old=$(cat "$RP_WORKDIR/gen1.pid")
"$RP_CHECK" serve --port "$RP_PORT" --workers 2 --pidfile "$RP_WORKDIR/gen2.pid" "$@" &
# serve writes its pid file once every listener listens.
while [ ! -s "$RP_WORKDIR/gen2.pid" ]; do sleep 0.02; done
kill -TERM "$old"
while kill -0 "$old" 2>/dev/null; do sleep 0.02; done
