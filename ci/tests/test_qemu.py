"""The qemu layer against a fake qemu: command line, phases, timeouts, KVM fallback."""

import base64
import os
import subprocess
import textwrap
import time

import pytest

from ci.vm import accel, qemu
from ci.vm.kernels import FetchedKernel, Kernel
from ci.vm.qemu import KVM, TCG, Timeouts, _Stream, build_command, run_in_vm

# Behaves like qemu as far as vm.qemu can tell: reads -accel, the second -serial file
# and -append, writes the guest's markers. FAKE_MODE picks the misbehaviour:
#   ok | kvm-abort | kvm-hang | boot-exit | setup-fail | run-hang | no-poweroff
FAKE_QEMU = textwrap.dedent(r'''
    #!/usr/bin/python3
    import base64, os, subprocess, sys, time
    argv = sys.argv[1:]
    accel = argv[argv.index("-accel") + 1].split(",")[0]  # "tcg,thread=single"
    out = [a[5:] for a in argv if a.startswith("file:")][1]
    append = dict(kv.split("=", 1) for kv in argv[argv.index("-append") + 1].split() if "=" in kv)
    mode = os.environ["FAKE_MODE"]
    with open(os.environ["FAKE_CALLS"], "a") as f:
        f.write(f"{accel} {os.getpid()}\n")
    nonce = append["rp.nonce"]
    def emit(s):
        with open(out, "ab") as f:
            f.write(s.encode())
    if accel == "kvm" and mode == "kvm-abort":
        print("qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69", flush=True)
        os.abort()
    if accel == "kvm" and mode == "kvm-hang" or mode == "boot-hang":
        time.sleep(600)
    if mode == "boot-exit":
        sys.exit(0)
    emit(f"RP-BOOTED {nonce} 9.9.9-fake\n")
    if mode == "setup-fail":
        emit(f"RP-SETUP-FAIL {nonce} bpffs\n")
        sys.exit(0)
    emit(f"RP-SETUP-DONE {nonce}\n")
    cmd = base64.b64decode(append["rp.cmd"]).decode() if "rp.cmd" in append else "true"
    proc = subprocess.run(["sh", "-c", cmd], capture_output=True)
    emit(proc.stdout.decode())
    if mode == "run-hang":
        time.sleep(600)
    emit(f"\nRP-EXIT {nonce} {proc.returncode}\n")
    if mode == "no-poweroff":
        time.sleep(600)
''').lstrip()


@pytest.fixture
def fake(tmp_path, monkeypatch, private_cache, processes_mentioning):
    binary = tmp_path / "fake-qemu"
    binary.write_text(FAKE_QEMU)
    binary.chmod(0o755)
    kvm_device = tmp_path / "kvm"
    kvm_device.write_text("")
    monkeypatch.setattr(accel, "KVM_DEVICE", str(kvm_device))
    calls = tmp_path / "calls"
    monkeypatch.setenv("FAKE_CALLS", str(calls))
    monkeypatch.setenv("FAKE_MODE", "ok")
    vmlinuz = tmp_path / "vmlinuz"
    vmlinuz.write_bytes(b"")
    kernel = FetchedKernel(Kernel(name="fake"), vmlinuz, "9.9.9-fake", "pkg", "1")

    def run(command="echo hello", mode="ok", timeouts=Timeouts(kvm_boot=2, run=5), **kw):
        monkeypatch.setenv("FAKE_MODE", mode)
        result = run_in_vm(kernel, command, qemu=str(binary), timeouts=timeouts,
                           workdir=tmp_path / "work", **kw)
        run.accels = [line.split()[0] for line in calls.read_text().splitlines()]
        run.pids = [int(line.split()[1]) for line in calls.read_text().splitlines()]
        calls.write_text("")
        return result

    yield run
    assert processes_mentioning(str(binary)) == [], "a fake qemu was left running"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def test_command_is_two_lists_with_the_command_on_the_kernel_line(tmp_path):
    cmd = build_command(tmp_path / "vmlinuz", tmp_path / "run.cpio", TCG,
                        console_log=tmp_path / "c.log", output_log=tmp_path / "o.log",
                        nonce="abc", command="uname -r; echo 'x y'")
    argv = cmd.argv()
    assert argv[:5] == ["qemu-system-x86_64", "-accel", "tcg", "-cpu", "max,-cx16"]
    assert argv[argv.index("-kernel") + 1] == str(tmp_path / "vmlinuz")
    assert argv[argv.index("-initrd") + 1] == str(tmp_path / "run.cpio")
    assert "-no-reboot" in argv and "-nodefaults" in argv
    serials = [argv[i + 1] for i, a in enumerate(argv) if a == "-serial"]
    assert serials == [f"file:{tmp_path}/c.log", f"file:{tmp_path}/o.log"]
    assert argv[-2] == "-append" and argv[-1] == " ".join(cmd.kernel_args)
    assert cmd.kernel_args[:3] == ["console=ttyS0", "panic=-1", "mitigations=off"]
    assert "rp.nonce=abc" in cmd.kernel_args
    b64 = [a for a in cmd.kernel_args if a.startswith("rp.cmd=")][0][len("rp.cmd="):]
    assert base64.b64decode(b64).decode() == "uname -r; echo 'x y'"
    kvm = build_command(tmp_path / "v", tmp_path / "i", KVM, console_log=tmp_path / "c",
                        output_log=tmp_path / "o", nonce="n", command=None)
    assert kvm.qemu_args[1:5] == ["-accel", "kvm", "-cpu", "host"]
    assert not any(a.startswith("rp.cmd=") for a in kvm.kernel_args)


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_stream_returns_output_byte_for_byte(chunk):
    s = _Stream("n0nce")
    data = (b"RP-BOOTED n0nce 6.1.0-50-cloud-amd64\nRP-SETUP-DONE n0nce\n"
            b"RP-EXIT other 3\nno newline at end\nRP-EXIT n0nce 0 x\nend"
            b"\nRP-EXIT n0nce 42\n")
    for i in range(0, len(data), chunk):
        s.feed(data[i:i + chunk])
    assert s.release == "6.1.0-50-cloud-amd64" and s.phase == "run"
    assert s.exit_code == 42
    assert s.output() == "RP-EXIT other 3\nno newline at end\nRP-EXIT n0nce 0 x\nend"


def test_kvm_abort_falls_back_to_tcg_and_is_remembered(fake):
    result = fake("echo hello; exit 3", mode="kvm-abort")
    assert fake.accels == ["kvm", "tcg"]
    assert (result.status, result.accel, result.phase, result.exit_code) == ("OK", "tcg", "run", 3)
    assert result.output == "hello\n" and result.release == "9.9.9-fake"
    assert "kvm failed to boot" in result.notes[0] and "MSR" in result.notes[0]
    assert result.boot_time is not None
    again = fake("echo again", mode="kvm-abort")
    assert fake.accels == ["tcg"] and again.ok and again.accel == "tcg"
    # The verdict is in a file too, for the other workers of a parallel run.
    accel._verdict.clear()
    fake("true", mode="kvm-abort")
    assert fake.accels == ["tcg"]


def test_kvm_hang_is_cut_at_the_kvm_boot_timeout(fake):
    start = time.monotonic()
    result = fake(mode="kvm-hang", timeouts=Timeouts(kvm_boot=1.0, run=5))
    assert fake.accels == ["kvm", "tcg"] and result.ok and result.accel == "tcg"
    assert time.monotonic() - start < 10
    assert not any(alive(p) for p in fake.pids)


def test_working_kvm_is_used_and_remembered(fake):
    assert fake(mode="ok").accel == "kvm"
    assert fake(mode="ok").accel == "kvm" and fake.accels == ["kvm"]


def test_a_result_prints_as_json_with_its_log_paths_as_strings(fake):
    # `python3 -m ci.vm.boot --json` printed nothing but a TypeError on the logs' Paths.
    import json
    doc = json.loads(json.dumps(fake(mode="ok").to_json()))
    assert isinstance(doc["console_log"], str) and isinstance(doc["output_log"], str)
    assert doc["journal_log"] is None or isinstance(doc["journal_log"], str)


def test_forced_accelerator_skips_the_probe(fake, monkeypatch):
    assert fake(mode="kvm-abort", accel="tcg").accel == "tcg" and fake.accels == ["tcg"]
    monkeypatch.setenv("RP_ACCEL", "kvm")
    result = fake(mode="kvm-abort")
    assert fake.accels == ["kvm"]
    assert (result.status, result.phase) == ("ERROR", "boot")
    assert "killed by signal 6" in result.error and "MSR" in result.error


@pytest.mark.parametrize("mode, phase, error", [
    ("boot-exit", "boot", "qemu ended (exit code 0) in phase boot"),
    ("boot-hang", "boot", "timeout: no progress in phase boot after 2 s"),
    ("setup-fail", "setup", "setup step bpffs failed in the guest"),
    ("run-hang", "run", "timeout: no progress in phase run after 2 s"),
])
def test_failures_are_errors_at_their_phase(fake, mode, phase, error):
    result = fake("echo partial", mode=mode, accel="tcg",
                  timeouts=Timeouts(boot=2, setup=2, run=2))
    assert (result.status, result.phase, result.exit_code) == ("ERROR", phase, None)
    assert result.error.startswith(error)
    assert result.console_log.name == "console.tcg.log"
    assert result.output == ("partial\n" if mode == "run-hang" else "")
    assert not any(alive(p) for p in fake.pids)


def test_no_poweroff_after_exit_is_killed_but_keeps_the_result(fake):
    result = fake("echo done", mode="no-poweroff", accel="tcg",
                  timeouts=Timeouts(run=5, shutdown=0.5))
    assert result.ok and result.exit_code == 0 and result.output == "done\n"
    assert "killed" in result.notes[0]


def test_keyboard_interrupt_leaves_no_qemu(fake, monkeypatch):
    real_sleep = time.sleep
    ticks = []

    def interrupting_sleep(s):
        ticks.append(s)
        if len(ticks) == 20:
            raise KeyboardInterrupt
        real_sleep(s)

    monkeypatch.setattr(qemu.time, "sleep", interrupting_sleep)
    with pytest.raises(KeyboardInterrupt):
        fake(mode="boot-hang", accel="tcg")
    # run() did not return, so read the pid the fake recorded directly.
    pids = [int(l.split()[1]) for l in open(os.environ["FAKE_CALLS"]).read().splitlines()]
    assert pids and not any(alive(p) for p in pids)


def test_long_commands_travel_in_the_initramfs(tmp_path, fake):
    long = "true " + "x" * 3000
    result = fake(long, accel="tcg", keep_initrd=True)
    assert result.ok
    cmdline = (tmp_path / "work" / "cmdline.tcg").read_text()
    assert "rp.cmd=" not in cmdline and len(cmdline) < 1024
    out = tmp_path / "unpacked"
    out.mkdir()
    subprocess.run(["cpio", "-id", "--quiet", "rp/cmd"], cwd=out, check=True,
                   stdin=open(tmp_path / "work" / "initramfs.cpio", "rb"))
    assert (out / "rp" / "cmd").read_text() == long


def test_idle_limit_is_the_guests_measured_scale_times_idle(fake):
    # The guest says it is 2x slower; idle 1 s: hung after 2 s without output, although the
    # run phase as a whole may last 60 s.
    start = time.monotonic()
    result = fake("echo 'RP-SCALE 2 100 1000 2'; echo partial", mode="run-hang", accel="tcg",
                  timeouts=Timeouts(run=60, idle=1.0))
    assert (result.status, result.phase) == ("ERROR", "run")
    assert result.error.startswith("timeout: no output in phase run for 2 s (1 s x the "
                                   "guest's measured scale 2)")
    assert result.scale == 2 and result.output.endswith("partial\n")
    assert 2 <= time.monotonic() - start < 10


def test_smp_guests_take_the_tcg_thread_model_of_accel_toml(tmp_path, monkeypatch):
    data = tmp_path / "accel.toml"
    data.write_text('[[smp]]\naccel = "tcg"\nqemu = "*"\nthread = "multi"\nevidence = "x"\n')
    monkeypatch.setattr(accel, "load_smp_choices", lambda path=data: [
        accel.SmpChoice("tcg", "*", "multi", "x")])
    one = build_command(tmp_path / "v", tmp_path / "i", TCG, console_log=tmp_path / "c",
                        output_log=tmp_path / "o", nonce="n", command="true")
    assert one.qemu_args[1:5] == ["-accel", "tcg", "-cpu", "max,-cx16"]
    assert one.qemu_args[one.qemu_args.index("-smp") + 1] == "1"
    two = build_command(tmp_path / "v", tmp_path / "i", TCG, console_log=tmp_path / "c",
                        output_log=tmp_path / "o", nonce="n", command="true", vcpus=2)
    assert two.qemu_args[1:3] == ["-accel", "tcg,thread=multi"]  # as the data says
    forced = build_command(tmp_path / "v", tmp_path / "i", TCG, console_log=tmp_path / "c",
                           output_log=tmp_path / "o", nonce="n", command="true", vcpus=2,
                           tcg_thread="single")
    assert forced.qemu_args[1:3] == ["-accel", "tcg,thread=single"]
    assert forced.qemu_args[forced.qemu_args.index("-smp") + 1] == "2"
    kvm = build_command(tmp_path / "v", tmp_path / "i", KVM, console_log=tmp_path / "c",
                        output_log=tmp_path / "o", nonce="n", command="true", vcpus=4)
    assert kvm.qemu_args[1:3] == ["-accel", "kvm"]
    with pytest.raises(accel.VmError, match="vcpus must be 1 to 64"):
        build_command(tmp_path / "v", tmp_path / "i", TCG, console_log=tmp_path / "c",
                      output_log=tmp_path / "o", nonce="n", command="true", vcpus=0)


def test_accel_toml_is_read_by_qemu_version_and_checked(tmp_path, monkeypatch):
    data = tmp_path / "accel.toml"
    data.write_text('[[smp]]\naccel = "tcg"\nqemu = "7.2"\nthread = "multi"\nevidence = "m"\n'
                    '[[smp]]\naccel = "tcg"\nqemu = "*"\nthread = "single"\nevidence = "s"\n')
    monkeypatch.setattr(accel, "_qemu_versions", {"q72": "7.2", "q90": "9.0"})
    assert accel.smp_choice("tcg", "q72", data).thread == "multi"
    assert accel.smp_choice("tcg", "q90", data).thread == "single"
    assert accel.smp_choice("kvm", "q90", data) is None
    data.write_text('[[smp]]\naccel = "tcg"\nqemu = "*"\nthread = "fast"\nevidence = "x"\n')
    with pytest.raises(accel.VmError, match="thread = single or multi"):
        accel.load_smp_choices(data)
    data.write_text('[[smp]]\naccel = "tcg"\nqemu = "*"\nthread = "single"\nwhy = "x"\n')
    with pytest.raises(accel.VmError, match="unknown keys \\['why'\\]"):
        accel.load_smp_choices(data)
    # The project's own file: every entry valid, and one for any QEMU version.
    choices = accel.load_smp_choices()
    assert any(c.accel == "tcg" and c.qemu == "*" for c in choices)
