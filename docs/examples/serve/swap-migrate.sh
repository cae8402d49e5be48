#!/bin/sh
# The same swap as swap.sh, after `net.ipv4.tcp_migrate_req=1` (Linux 5.14+): when a
# listener closes, the kernel moves the children queued on it to another listener of the
# port instead of resetting them, so this deploy loses nothing. The sysctl is per network
# namespace: in the deploy's private namespace it changes nothing else on the machine (do
# not use this script with --host-net unless you mean to set it for the host).
set -eu
sysctl -qw net.ipv4.tcp_migrate_req=1
exec "$(dirname "$0")/swap.sh" "$@"
