#!/bin/sh
# Starts Caddy instance NAME (default a) on $RP_PORT in the background (`caddy start`), with
# its config, admin socket and data in $RP_WORKDIR/caddy-NAME. Usage: start.sh [NAME]
set -eu
name=${1:-a}
dir="$RP_WORKDIR/caddy-$name"
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$dir"
sed -e "s|@PORT@|$RP_PORT|g" -e "s|@NAME@|$name|g" -e "s|@DIR@|$dir|g" "$here/Caddyfile.in" > "$dir/Caddyfile"
export HOME="$dir" XDG_DATA_HOME="$dir" XDG_CONFIG_HOME="$dir"
exec /usr/bin/caddy start --config "$dir/Caddyfile" --adapter caddyfile --pidfile "$dir/caddy.pid" >"$dir/start.log" 2>&1
