"""The QEMU VMM backend (runtime/vmm-qemu.c, runtime/virtiofsd.c) with real
QEMU and virtiofsd, driven through tests/tools/cocoon-vmm, booting Debian's
cloud kernel with tests/tools/vmm-test-init as /init (KVM when /dev/kvm is
usable, TCG otherwise).

The guest (vmlinux from guest/extract-vmlinux.sh, initrd from
guest/mkinitrd.sh) is cached under $COCOON_BUILDDIR/tests/tools/vmm-guest and
rebuilt only when the init binary or the kernel changes.

Every test removes what it started, even when it fails. The boot-to-ping
median and the PSS of an idle VM are printed (pytest -s) and written to
$COCOON_BUILDDIR/tests/tools/vmm-numbers.json.
"""
import fcntl
import json
import os
import pathlib
import shutil
import signal
import socket
import statistics
import subprocess
import time

from test_agent_guest import kvm_usable  # the same rule as runtime/vmm.c

import pytest

from conftest import BUILDDIR, SRCDIR, binary

QEMU = shutil.which("qemu-system-x86_64") or "/usr/bin/qemu-system-x86_64"
VIRTIOFSD = next((p for p in ("/usr/libexec/virtiofsd", "/usr/lib/qemu/virtiofsd")
                  if os.access(p, os.X_OK)), None)
CMD_TIMEOUT = 120


def _cloud_kernel():
    try:
        rels = sorted(r for r in os.listdir("/lib/modules") if r.endswith("-cloud-amd64"))
    except OSError:
        return None
    for rel in reversed(rels):
        if os.access("/boot/vmlinuz-%s" % rel, os.R_OK):
            return rel
    return None


def _newer(a, b):
    """True if file a exists and is at least as new as every file in b."""
    try:
        ma = os.stat(a).st_mtime
    except OSError:
        return False
    return all(ma >= os.stat(x).st_mtime for x in b)


@pytest.fixture(scope="module")
def guest():
    if not os.access(QEMU, os.X_OK):
        pytest.skip("qemu-system-x86_64 not installed")
    if VIRTIOFSD is None:
        pytest.skip("virtiofsd not installed")
    kver = _cloud_kernel()
    if not kver:
        pytest.skip("no Debian cloud kernel (apt-get install linux-image-cloud-amd64)")
    init = binary("tests/tools/vmm-test-init")
    binary("tests/tools/cocoon-vmm")
    cache = BUILDDIR / "tests" / "tools" / "vmm-guest"
    cache.mkdir(parents=True, exist_ok=True)
    vmlinux, initrd, rel = cache / "vmlinux", cache / "initrd.img", cache / "kernel-release"
    if not (rel.exists() and rel.read_text().strip() == kver):
        for p in (vmlinux, initrd):
            if p.exists():
                p.unlink()
    if not vmlinux.exists():
        subprocess.run(["sh", str(SRCDIR / "guest" / "extract-vmlinux.sh"),
                        "/boot/vmlinuz-%s" % kver, str(vmlinux)], check=True, timeout=300,
                       capture_output=True)
    if not _newer(initrd, [init, SRCDIR / "guest" / "mkinitrd.sh"]):
        subprocess.run(["sh", str(SRCDIR / "guest" / "mkinitrd.sh"), "-k", kver, init, str(initrd)],
                       check=True, timeout=300, capture_output=True)
    rel.write_text(kver + "\n")
    return {"kernel": str(vmlinux), "initrd": str(initrd)}


def proc_gone(pid):
    """True if pid does not exist or is a zombie (its parent died: not reaped here)."""
    try:
        stat = pathlib.Path("/proc/%d/stat" % pid).read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2] in "ZX"


def children(pid):
    out = []
    try:
        for t in os.listdir("/proc/%d/task" % pid):
            out += [int(c) for c in
                    pathlib.Path("/proc/%d/task/%s/children" % (pid, t)).read_text().split()]
    except OSError:
        pass
    return out


def pss_kib(pid):
    for line in pathlib.Path("/proc/%d/smaps_rollup" % pid).read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


class VM:
    """One VM driven by cocoon-vmm; remembers every pid it saw, for cleanup."""

    def __init__(self, guest, root, name="vm", share=True, console=False, params=None,
                 kernel=None, extra=()):
        self.guest = guest
        self.id = os.urandom(32).hex()
        self.dir = root / name
        self.run = self.dir / "run"
        self.state = self.dir / "state.json"
        self.shared = self.dir / "state" / "sandboxes" / self.id / "shared" if share else None
        self.console, self.params = console, params
        self.kernel = kernel or guest["kernel"]
        self.extra = list(extra)
        self.pids = []
        self.info = None
        self.holder = None
        self.run.mkdir(parents=True)
        if self.shared:
            self.shared.mkdir(parents=True)

    def boot_argv(self, ping=False, hold=False):
        argv = [binary("tests/tools/cocoon-vmm"), "boot", "--id", self.id[:16],
                "--run-dir", str(self.run), "--kernel", self.kernel,
                "--initrd", self.guest["initrd"], "--state", str(self.state),
                "--qemu", QEMU, "--virtiofsd", VIRTIOFSD]
        if self.shared:
            argv += ["--share", str(self.shared)]
        if self.console:
            argv.append("--console-log")
        if self.params:
            argv += ["--params", self.params]
        argv += self.extra
        if ping:
            argv.append("--ping")
        if hold:
            argv.append("--hold")
        return argv

    def _note(self, info):
        self.info = info
        for k in ("pid", "virtiofsd_pid"):
            if k in info:
                self.pids.append(info[k])
        if "virtiofsd_pid" in info:
            self.pids += children(info["virtiofsd_pid"])

    def boot(self, ping=True, check=True, pass_fds=()):
        p = subprocess.run(self.boot_argv(ping=ping), capture_output=True, text=True,
                           timeout=CMD_TIMEOUT, pass_fds=pass_fds)
        if check:
            assert p.returncode == 0, p.stderr + self.console_tail()
            self._note(json.loads(p.stdout.splitlines()[0]))
        return p

    def console_tail(self):
        try:
            return "\nconsole:\n" + (self.run / "console.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def boot_hold(self):
        """Boots with a driver that stays, waiting on the VMM's exit_fd."""
        self.holder = subprocess.Popen(self.boot_argv(hold=True), stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)
        line = self.holder.stdout.readline()
        assert line, self.holder.stderr.read()
        self._note(json.loads(line))
        return self.holder

    def cmd(self, *args, check=True, timeout=CMD_TIMEOUT):
        p = subprocess.run([binary("tests/tools/cocoon-vmm"), args[0], str(self.state)]
                           + list(args[1:]), capture_output=True, text=True, timeout=timeout)
        if check:
            assert p.returncode == 0, p.stderr
        return json.loads(p.stdout) if p.stdout.strip() else None, p

    def agent(self, line, timeout=30):
        """One command over the agent port; returns the reply (data payload for cat)."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(self.info["endpoint"]["path"])
            s.sendall(line.encode() + b"\n")
            buf = b""
            while b"\n" not in buf:
                d = s.recv(4096)
                assert d, "agent hung up"
                buf += d
            head, _, rest = buf.partition(b"\n")
            if head.startswith(b"data "):
                n = int(head.split()[1])
                while len(rest) < n:
                    d = s.recv(65536)
                    assert d, "agent hung up"
                    rest += d
                return rest[:n]
            return head
        finally:
            s.close()

    def all_pids(self):
        return [p for p in self.pids if not proc_gone(p)]

    def cleanup(self):
        if self.holder and self.holder.poll() is None:
            self.holder.kill()
        if self.holder:
            self.holder.wait()
        if self.state.exists():
            self.cmd("stop", "--timeout", "2000", check=False)
        for pid in self.pids:
            if not proc_gone(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass


@pytest.fixture
def vms(guest, tmpdir_short):
    made = []

    def make(**kw):
        vm = VM(guest, tmpdir_short, name="vm%d" % len(made), **kw)
        made.append(vm)
        return vm

    yield make
    for vm in made:
        vm.cleanup()


def wait_gone(pids, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(proc_gone(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def test_boot_agent_virtiofs_console_pause_stop(vms):
    # loglevel=6: "quiet" would hide the kernel banner
    vm = vms(console=True, params="loglevel=6")
    vm.boot()
    assert vm.info["endpoint"]["kind"] == "unix"
    assert vm.agent("ping") == b"pong"

    # a file written on the host after boot is read by the guest over virtio-fs
    payload = os.urandom(3000).hex().encode()
    (vm.shared / "hello.txt").write_bytes(payload)
    assert vm.agent("cat hello.txt") == payload
    assert vm.agent("cat ../escape").startswith(b"err")

    console = (vm.run / "console.log").read_text(errors="replace")
    assert "Linux version" in console
    assert "VMM-TEST-INIT ready" in console

    # paused: the guest does not answer; resumed: it does
    out, _ = vm.cmd("pause")
    assert out == {"pause": True}
    out, p = vm.cmd("ping", "--timeout", "1500", check=False)
    assert p.returncode == 1 and out["pong"] is False
    out, _ = vm.cmd("resume")
    assert out == {"resume": True}
    out, _ = vm.cmd("ping", "--timeout", "30000")
    assert out["pong"] is True

    pids = vm.all_pids()
    assert len(pids) >= 2  # qemu, virtiofsd (and its sandboxed child)
    out, _ = vm.cmd("stop", "--timeout", "5000")
    assert out["stopped"] and out["was_running"]
    assert wait_gone(pids, 5), "left running: %s" % vm.all_pids()
    # only the console log the test asked for is left
    assert sorted(os.listdir(vm.run)) == ["console.log"]
    assert not vm.state.exists()


def test_reattach_after_driver_killed(vms):
    vm = vms()
    holder = vm.boot_hold()
    qemu = vm.info["pid"]
    holder.kill()  # SIGKILL the driver, not QEMU
    holder.wait()
    assert not proc_gone(qemu)

    # a new driver re-attaches (vmm load: pid + start time, QMP) and pings
    out, _ = vm.cmd("ping", "--timeout", "60000")
    assert out["pong"] is True
    out, _ = vm.cmd("status")
    assert out == {"alive": True, "virtiofsd_alive": True}

    # exit_fd of a re-attached VM (not our child) fires when QEMU dies
    watch = subprocess.Popen([binary("tests/tools/cocoon-vmm"), "watch", str(vm.state),
                              "--timeout", "30000"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)  # let it attach: QMP takes one client at a time
        os.kill(qemu, signal.SIGKILL)
        t0 = time.monotonic()
        out, _ = watch.communicate(timeout=15)
        assert json.loads(out) == {"event": "exit"}
        assert time.monotonic() - t0 < 5
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()

    # stop after QEMU died: cleans up, virtiofsd goes too
    out, _ = vm.cmd("stop")
    assert out["stopped"] and not out["was_running"]
    assert wait_gone(vm.pids, 5), "left running: %s" % vm.all_pids()
    assert os.listdir(vm.run) == []


def test_exit_fd_fires_when_qemu_is_killed(vms):
    vm = vms(share=False)
    holder = vm.boot_hold()
    t0 = time.monotonic()
    os.kill(vm.info["pid"], signal.SIGKILL)
    out, _ = holder.communicate(timeout=15)
    assert json.loads(out) == {"event": "exit"}
    assert holder.returncode == 0
    assert time.monotonic() - t0 < 5


def open_tap(name):
    """A tap device's fd (IFF_TAP | IFF_NO_PI), or None where /dev/net/tun is unusable."""
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return None
    ifr = name.encode().ljust(16, b"\0") + (0x0002 | 0x1000).to_bytes(2, "little") + b"\0" * 22
    try:
        fcntl.ioctl(fd, 0x400454ca, ifr)  # TUNSETIFF
    except OSError:
        os.close(fd)
        return None
    return fd


def test_block_and_net_devices(vms, tmpdir_short):
    disk = tmpdir_short / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(4 << 20)
    tap = open_tap("cctest%d" % (os.getpid() % 10000))
    if tap is None:
        pytest.skip("cannot create a tap device")
    try:
        vm = vms(share=False, extra=["--block", str(disk), "--block-ro", "--tap-fd", str(tap),
                                     "--mac", "52:54:00:ab:cd:ef"])
        vm.boot(pass_fds=(tap,))
        assert vm.agent("exists /sys/block/vda") == b"yes"
        assert vm.agent("exists /sys/class/net/eth0") == b"yes"
        assert vm.agent("exists /sys/block/vdb") == b"no"
        out, _ = vm.cmd("stop", "--timeout", "5000")
        assert out["stopped"]
        assert wait_gone(vm.pids, 5)
    finally:
        os.close(tap)


def assert_failed_boot_left_nothing(vm, before):
    """After a failed boot: an empty run dir, no state file, and no process
    started since `before` (a /proc listing) that names the VM's run dir
    (its QEMU or virtiofsd)."""
    assert os.listdir(vm.run) == []
    assert not vm.state.exists()
    for pid in set(os.listdir("/proc")) - before:
        if not pid.isdigit() or proc_gone(int(pid)):
            continue
        try:
            cmdline = pathlib.Path("/proc/%s/cmdline" % pid).read_bytes()
        except OSError:
            continue
        assert str(vm.run).encode() not in cmdline, cmdline


@pytest.mark.parametrize("kind", ["missing", "garbage"])
def test_broken_kernel_leaves_nothing(vms, tmpdir_short, kind):
    kernel = str(tmpdir_short / "no-such-vmlinux")
    if kind == "garbage":
        kernel = str(tmpdir_short / "garbage-vmlinux")
        pathlib.Path(kernel).write_bytes(os.urandom(4096))
    vm = vms(kernel=kernel)
    before = set(os.listdir("/proc"))
    p = vm.boot(check=False)
    assert p.returncode == 1
    if kind == "missing":
        assert "kernel '%s': No such file or directory" % kernel in p.stderr
    else:
        assert "qemu exited during start" in p.stderr
    assert_failed_boot_left_nothing(vm, before)


def test_failing_virtiofsd_named_and_nothing_left(vms, tmpdir_short):
    """virtiofsd gets its listening socket from the caller and QEMU connects
    at once; when virtiofsd dies on start, QEMU cannot connect, and the error
    says virtiofsd exited, with the end of its log."""
    fake = tmpdir_short / "virtiofsd-fails"
    fake.write_text("#!/bin/sh\necho 'fake virtiofsd: cannot start' >&2\nexit 3\n")
    fake.chmod(0o755)
    vm = vms(share=True)
    before = set(os.listdir("/proc"))
    argv = [a if a != VIRTIOFSD else str(fake) for a in vm.boot_argv(ping=True)]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=CMD_TIMEOUT)
    assert p.returncode == 1
    assert "virtiofsd for '%s' exited" % vm.shared in p.stderr, p.stderr
    assert "fake virtiofsd: cannot start" in p.stderr, p.stderr
    assert_failed_boot_left_nothing(vm, before)


def test_boot_to_ping_time_and_idle_pss(vms):
    times, pss = [], None
    for i in range(5):
        vm = vms()
        vm.boot(ping=True)
        times.append(vm.info["timings"]["boot_to_ping_ms"])
        if i == 0:
            time.sleep(2)  # idle
            qemu = vm.info["pid"]
            fsd = [vm.info["virtiofsd_pid"]] + children(vm.info["virtiofsd_pid"])
            pss = {"qemu_kib": pss_kib(qemu), "virtiofsd_kib": sum(pss_kib(p) for p in fsd)}
            pss["total_kib"] = pss["qemu_kib"] + pss["virtiofsd_kib"]
        out, _ = vm.cmd("stop", "--timeout", "5000")
        assert out["stopped"]
        assert wait_gone(vm.pids, 5)
    numbers = {
        "accel": "kvm" if kvm_usable() else "tcg",
        "boot_to_ping_ms": times,
        "boot_to_ping_median_ms": statistics.median(times),
        "idle_pss": pss,
    }
    print("\nvmm numbers:", json.dumps(numbers))
    (BUILDDIR / "tests" / "tools" / "vmm-numbers.json").write_text(json.dumps(numbers, indent=1) + "\n")
    assert numbers["boot_to_ping_median_ms"] < 60000
