#!/bin/sh
# Starts nginx instance A ("a") on $RP_PORT with `listen ... reuseport`, under its own
# prefix in $RP_WORKDIR: config, pid file, logs and temp paths all there. nginx daemonizes
# (the default): `reuseport-check deploy` still finds and stops it at the end.
# Usage: start.sh [NAME] (default a).
set -eu
name=${1:-a}
here=$(cd "$(dirname "$0")" && pwd)
prefix="$RP_WORKDIR/$name"
mkdir -p "$prefix/logs" "$prefix/tmp"
sed -e "s/@PORT@/$RP_PORT/g" -e "s/@NAME@/$name/g" "$here/nginx.conf.in" > "$prefix/nginx.conf"
# An absolute path: a binary upgrade (USR2) re-executes argv[0].
exec /usr/sbin/nginx -p "$prefix" -c nginx.conf
