#!/bin/sh
# Two-instance swap, as blog posts on zero-downtime nginx with SO_REUSEPORT describe it:
# start instance B (its own prefix) on the same port, wait until its workers run, then
# QUIT instance A (graceful: its workers stop accepting and close their listeners).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
a=$(cat "$RP_WORKDIR/a/nginx.pid")
"$here/start.sh" b
while [ ! -s "$RP_WORKDIR/b/nginx.pid" ]; do sleep 0.02; done
b=$(cat "$RP_WORKDIR/b/nginx.pid")
while [ -z "$(pgrep -P "$b")" ]; do sleep 0.02; done
kill -QUIT "$a"
while kill -0 "$a" 2>/dev/null; do sleep 0.02; done
