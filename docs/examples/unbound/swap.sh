#!/bin/sh
# Least loss for a restart: start a second unbound on the same port (so-reuseport lets it
# join the group), wait until it serves, then stop the first. The port always has a socket;
# what the first instance holds in its queues when it closes is freed unanswered, and the
# group's hash moves flows between the instances (invisible in DNS answers).
set -eu
here=$(dirname "$0")
"$here/start.sh" u2 >/dev/null 2>&1 &
while [ ! -s "$RP_WORKDIR/u2.pid" ]; do sleep 0.01; done
while ! grep -q "start of service" "$RP_WORKDIR/u2.log" 2>/dev/null; do sleep 0.01; done
old=$(cat "$RP_WORKDIR/u1.pid")
kill -TERM "$old"
while kill -0 "$old" 2>/dev/null; do sleep 0.01; done
