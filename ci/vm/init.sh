#!/bin/sh
# /init of the guest, run by busybox sh. The protocol (see vm/qemu.py):
#  1. Mount /proc and /dev, read rp.nonce and rp.cmd (base64) from /proc/cmdline.
#  2. On ttyS1, print "RP-BOOTED <nonce> <release>": the kernel is up.
#  3. Set up what the cases need; any failure prints "RP-SETUP-FAIL <nonce> <step>".
#  4. Print "RP-SETUP-DONE <nonce>", run the command with stdout and stderr on ttyS1.
#  5. Print "\nRP-EXIT <nonce> <code>" (the newline belongs to the marker, so the
#     output comes back byte for byte) and power off. If /init dies instead, the kernel
#     panics and panic=-1 with qemu -no-reboot ends the VM.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TERM=dumb

mount -t proc proc /proc
mount -t devtmpfs devtmpfs /dev

nonce=none
cmd64=
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	rp.nonce=*) nonce=${arg#rp.nonce=} ;;
	rp.cmd=*) cmd64=${arg#rp.cmd=} ;;
	esac
done

exec 3>/dev/ttyS1
# Raw: no \n -> \r\n translation, the output arrives as the command wrote it.
stty raw -echo <&3

mark() { printf 'RP-%s %s%s\n' "$1" "$nonce" "${2:+ $2}" >&3; }
off() {
	# The last close of the tty waits until its buffer has gone out of the UART.
	exec 3>&-
	poweroff -f
}
fail() {
	mark SETUP-FAIL "$1"
	off
}

mark BOOTED "$(uname -r)"

mount -t sysfs sysfs /sys || fail sysfs
mount -t tmpfs tmpfs /tmp || fail tmpfs
mount -t tmpfs tmpfs /run || fail run
# A kernel without tracefs (CONFIG_FTRACE) or bpffs (CONFIG_BPF_SYSCALL) still runs the
# cases: those that need BPF skip naming the option (cases/lib/kernel.cc), the probe's
# counts are not observable there. Only the mount of a filesystem it has may fail the boot.
mount_if_offered() {
	grep -qw "$1" /proc/filesystems || { echo "RP-MATRIX-WARN: the kernel has no $1"; return 0; }
	mount -t "$1" "$1" "$2" || fail "$1"
}
mount_if_offered tracefs /sys/kernel/tracing
# libbpf 1.1 looks for /sys/kernel/debug/tracing before /sys/kernel/tracing.
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount_if_offered bpf /sys/fs/bpf
# The probe attaches its sock_release program to the cgroup v2 root (a distribution's init
# mounts it; without it the probe takes inet_sock_set_state instead).
mount_if_offered cgroup2 /sys/fs/cgroup
ip link set lo up || fail lo
if [ -f /rp/cmd ]; then
	cmd=$(cat /rp/cmd)
else
	cmd=$(printf '%s' "$cmd64" | base64 -d) || fail cmd
fi
[ -n "$cmd" ] || fail cmd

mark SETUP-DONE
cd /
sh -c "$cmd" </dev/null >&3 2>&3 3>&-
rc=$?
printf '\nRP-EXIT %s %d\n' "$nonce" "$rc" >&3
off
