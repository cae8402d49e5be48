#!/bin/sh
# Two-instance swap, as blog posts on zero-downtime nginx with SO_REUSEPORT describe it:
# start instance B (its own prefix) on the same port, wait until its workers run, then
# QUIT instance A (graceful: its workers stop accepting and close their listeners).
# With `busy` as the first argument, A's workers are stopped (SIGSTOP) for 0.3 s before the
# QUIT, as workers busy with long requests are: their accept queues fill meanwhile, and
# what is queued when they close their listeners is reset. Without it, the loss depends on
# whether A's queues happen to hold anything at that moment.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
a=$(cat "$RP_WORKDIR/a/nginx.pid")
"$here/start.sh" b
while [ ! -s "$RP_WORKDIR/b/nginx.pid" ]; do sleep 0.02; done
b=$(cat "$RP_WORKDIR/b/nginx.pid")
while [ -z "$(pgrep -P "$b")" ]; do sleep 0.02; done
if [ "${1:-}" = busy ]; then
  workers=$(pgrep -P "$a" | tr '\n' ' ')
  kill -STOP $workers
  sleep 0.3
  kill -QUIT "$a"
  sleep 0.1
  kill -CONT $workers
else
  kill -QUIT "$a"
fi
while kill -0 "$a" 2>/dev/null; do sleep 0.02; done
