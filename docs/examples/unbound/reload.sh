#!/bin/sh
# A reload: SIGHUP. unbound 1.17 re-reads its configuration and keeps its listening sockets
# (cases/tests/test_group_unbound.py: the group shows no join or leave), so nothing is
# unbound from the port; queries that arrive meanwhile wait in the sockets' queues.
set -eu
kill -HUP "$(cat "$RP_WORKDIR/u1.pid")"
# Done when the log says the new configuration serves.
while ! grep -q "start of service" "$RP_WORKDIR/u1.log" 2>/dev/null || [ "$(grep -c 'start of service' "$RP_WORKDIR/u1.log")" -lt 2 ]; do
  sleep 0.01
done
