#!/bin/sh
# Generation 1 of the project's own UDP server, as `reuseport-check deploy --udp --start`
# runs it: in the deploy's network namespace, with RP_PORT, RP_WORKDIR and RP_CHECK set.
# Extra arguments go to `serve` (--drain: on SIGTERM each member answers what its queue
# holds before it closes).
set -eu
exec "$RP_CHECK" serve --udp --port "$RP_PORT" --workers 2 --pidfile "$RP_WORKDIR/gen1.pid" "$@"
