#!/bin/sh
# Starts unbound as `reuseport-check deploy --udp --udp-request dns:a.test --start` runs it:
# in the foreground, in the deploy's network namespace, its config and pid file under
# RP_WORKDIR. The first argument names the instance (default u1): swap.sh starts a second.
set -eu
name=${1:-u1}
conf="$RP_WORKDIR/$name.conf"
sed -e "s|@PORT@|$RP_PORT|" -e "s|@DIR@|$RP_WORKDIR|" -e "s|@NAME@|$name|" "$(dirname "$0")/unbound.conf.in" >"$conf"
exec unbound -d -c "$conf"
