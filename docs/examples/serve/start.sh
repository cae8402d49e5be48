#!/bin/sh
# Generation 1 of the project's own server, as `reuseport-check deploy --start` runs it:
# in the deploy's network namespace, with RP_PORT, RP_WORKDIR and RP_CHECK set. Extra
# arguments go to `serve` (e.g. --accept-delay-ms 1 for a server whose queues fill).
set -eu
exec "$RP_CHECK" serve --port "$RP_PORT" --workers 2 --pidfile "$RP_WORKDIR/gen1.pid" "$@"
