"""Helpers for tests that run servers in network namespaces of their own."""
import os
import pathlib


def kill_netns_processes(anchor_pid):
    """SIGKILL every process in the network namespace of anchor_pid (daemons such as nginx
    leave their process group, but not their namespace)."""
    try:
        target = os.stat(f"/proc/{anchor_pid}/ns/net").st_ino
    except FileNotFoundError:
        return
    for d in pathlib.Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if os.stat(d / "ns" / "net").st_ino == target:
                os.kill(int(d.name), 9)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            pass
