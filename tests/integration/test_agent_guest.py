"""cocoon-agent as the real PID 1 of the cocoon guest in QEMU.

One VM is booted for the whole module (microvm, the kernel and an initrd
whose /init is the current agent/cocoon-agent), with virtiofsd sharing a
temporary directory that holds a busybox rootfs, and the agent's
virtio-serial port "agent.0" on a unix socket (QEMU is the listening side,
so the test can disconnect and reconnect). Every step goes through
tests/tools/agent-ctl, the C ttRPC client, in --script mode (one JSON line
per step over one connection). TCG here, KVM when /dev/kvm is usable.

Needs root (virtiofsd, chroot-free but root-owned rootfs), QEMU, Debian's
virtiofsd (/usr/lib/qemu/virtiofsd), busybox-static and the cloud kernel
(linux-image-cloud-amd64). The initrd is cached under the build directory,
keyed by the agent binary's hash.

    COCOON_BUILDDIR=/path/to/build /usr/bin/python3 -m pytest -v tests/integration/test_agent_guest.py

GuestVM and AgentSession are reused by bench/guest/run.sh.
"""
import hashlib
import json
import os
import pathlib
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import pytest

SRCDIR = pathlib.Path(__file__).resolve().parents[2]
BUILDDIR = pathlib.Path(os.environ.get("COCOON_BUILDDIR", SRCDIR / "build"))
QEMU = shutil.which("qemu-system-x86_64") or "/usr/bin/qemu-system-x86_64"
VIRTIOFSD = "/usr/lib/qemu/virtiofsd"
BUSYBOX = "/bin/busybox"
SHARE_TAG = "cocoonfs"
SHARE_MOUNT = "/run/cocoon/shared"
READY = b"cocoon-agent ready"

BASE_CMDLINE = [
    "console=ttyS0", "quiet", "panic=1", "reboot=t", "cryptomgr.notests",
    "swiotlb=noforce", "8250.nr_uarts=1", "noreplace-smp",
]


def kvm_usable():
    """As runtime/vmm.c decides: /dev/kvm opens AND the CPU has vmx/svm. On
    a PVM/nested host /dev/kvm opens but QEMU's KVM aborts (MSR 0x10a) or the
    guest hangs; COCOON_TEST_ACCEL=tcg|kvm overrides."""
    forced = os.environ.get("COCOON_TEST_ACCEL")
    if forced in ("tcg", "kvm"):
        return forced == "kvm"
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    try:
        with open("/proc/cpuinfo") as f:
            flags = [l for l in f if l.startswith("flags")]
    except OSError:
        return False
    return any(" vmx" in l or " svm" in l for l in flags)


def missing_prerequisites(builddir=BUILDDIR):
    """A reason to skip, or None."""
    if os.geteuid() != 0:
        return "needs root (virtiofsd)"
    for p, what in ((QEMU, "qemu-system-x86_64"), (VIRTIOFSD, "virtiofsd (qemu-system-common)"),
                    (BUSYBOX, "busybox-static")):
        if not os.access(p, os.X_OK):
            return "%s missing" % what
    if not kernel_release() and built_kernel_flavour(builddir) != "lean":
        return "no /lib/modules/*-cloud-amd64 (linux-image-cloud-amd64)"
    for b in ("agent/cocoon-agent", "tests/tools/agent-ctl"):
        if not (pathlib.Path(builddir) / b).exists():
            return "%s not built in %s" % (b, builddir)
    return None


def kernel_release():
    mods = pathlib.Path("/lib/modules")
    rels = sorted((d.name for d in mods.iterdir() if d.name.endswith("-cloud-amd64")),
                  key=lambda s: [int(x) if x.isdigit() else x for x in s.replace("-", ".").split(".")]) \
        if mods.is_dir() else []
    return rels[-1] if rels else None


def host_tsc_khz():
    out = subprocess.run(["/bin/sh", str(SRCDIR / "guest" / "host-tsc-khz.sh")],
                         capture_output=True, text=True, timeout=10)
    v = out.stdout.strip()
    return v if out.returncode == 0 and v.isdigit() else None


def kernel_features(vmlinux):
    """The boot options runtime/vmm-qemu.c looks for in a kernel image (as
    vmm_kernel_features does: NUL-terminated parameter names)."""
    data = pathlib.Path(vmlinux).read_bytes()
    return {n for n in ("virtio_mmio.device", "lapic_timer_khz", "keep_initmem")
            if (b"\0" + n.encode() + b"\0") in data}


def built_kernel_flavour(builddir=BUILDDIR):
    """'lean' when `make guest` built cocoon's own kernel (guest/build-kernel.sh:
    everything built in, no modules), 'debian' when it extracted Debian's, None
    when the build has no guest kernel."""
    rel = pathlib.Path(builddir) / "guest" / "kernel-release"
    if not (pathlib.Path(builddir) / "guest" / "vmlinux").exists() or not rel.exists():
        return None
    return "lean" if rel.read_text().startswith("lean") else "debian"


def guest_images(builddir=BUILDDIR):
    """(vmlinux, initrd) for the current agent, built once and cached under
    builddir/agent-guest-cache (the initrd keyed by the agent's hash). The
    kernel is the one `make guest` built (lean or Debian's) when there is one,
    else Debian's cloud kernel extracted here."""
    builddir = pathlib.Path(builddir)
    cache = builddir / "agent-guest-cache"
    cache.mkdir(exist_ok=True)
    flavour = built_kernel_flavour(builddir)
    kver = kernel_release() if flavour != "lean" else "lean"
    vmlinux = builddir / "guest" / "vmlinux"
    if flavour is None:
        vmlinux = cache / ("vmlinux-%s" % kver)
        if not vmlinux.exists():
            tmp = cache / "vmlinux.tmp"
            subprocess.run(["/bin/sh", str(SRCDIR / "guest" / "extract-vmlinux.sh"),
                            "/boot/vmlinuz-%s" % kver, str(tmp)], check=True, capture_output=True)
            tmp.rename(vmlinux)
    elif flavour == "debian":
        kver = (builddir / "guest" / "kernel-release").read_text().strip()
    agent = builddir / "agent" / "cocoon-agent"
    digest = hashlib.sha256(agent.read_bytes()).hexdigest()[:16]
    initrd = cache / ("initrd-%s-%s.img" % (kver, digest))
    if not initrd.exists():
        for old in cache.glob("initrd-*.img"):
            old.unlink()
        tmp = cache / "initrd.tmp"
        mods = ["-N"] if flavour == "lean" else ["-k", kver]
        subprocess.run(["/bin/sh", str(SRCDIR / "guest" / "mkinitrd.sh")] + mods + [str(agent), str(tmp)],
                       check=True, capture_output=True)
        tmp.rename(initrd)
    return str(vmlinux), str(initrd)


def make_rootfs(root):
    """A busybox rootfs (as tests/unit/agent/test-agent.c builds it), with
    relative applet links so no chroot is needed."""
    root = pathlib.Path(root)
    for d in ("bin", "etc", "proc", "sys", "dev", "tmp", "root", "home/app"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for a in applets:
        if a != "busybox" and "/" not in a:
            try:
                os.symlink("busybox", root / "bin" / a)
            except FileExistsError:
                pass
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\napp:x:1000:\nextra:x:2000:app\n")


class GuestVM:
    """QEMU microvm + virtiofsd; the console goes to a log file, and the
    time (from spawning QEMU) at which "cocoon-agent ready" appeared is
    recorded."""

    def __init__(self, tmp, share, builddir=BUILDDIR, memory=256, extra_cmdline=(), accel=None):
        self.tmp = pathlib.Path(tmp)
        self.share = str(share)
        self.builddir = pathlib.Path(builddir)
        self.memory = memory
        self.extra_cmdline = list(extra_cmdline)
        self.accel = accel or ("kvm" if kvm_usable() else "tcg")
        self.agent_sock = str(self.tmp / "agent.sock")
        self.fs_sock = str(self.tmp / "virtiofsd.sock")
        self.console_path = self.tmp / "console.log"
        self.qemu = self.virtiofsd = None
        self.t_spawn = None
        self.t_ready = None
        self.ready_line = ""
        self._reader = None

    def argv(self, vmlinux, initrd):
        cmdline = list(BASE_CMDLINE)
        feats = kernel_features(vmlinux)
        if self.accel == "tcg":
            khz = host_tsc_khz()
            if khz:
                cmdline.append("tsc_early_khz=%s" % khz)  # mandatory under TCG (guest/README.md)
                # cocoon's kernel options for TCG, as runtime/vmm-qemu.c passes them
                cmdline += [o for f, o in (("lapic_timer_khz", "lapic_timer_khz=1000000"),
                                           ("keep_initmem", "keep_initmem")) if f in feats]
        cmdline += self.extra_cmdline
        # no ACPI when the kernel takes its virtio-mmio devices from the command line
        acpi = "" if "virtio_mmio.device" not in feats else ",acpi=off"
        argv = [QEMU, "-M", "microvm,x-option-roms=off,pit=off,pic=off,rtc=on,isa-serial=on" + acpi]
        if self.accel == "kvm":
            argv += ["-accel", "kvm", "-cpu", "host"]
        else:
            argv += ["-accel", "tcg,tb-size=256", "-cpu", "max"]
        argv += [
            "-m", "%dM" % self.memory, "-smp", "1",
            # virtio-fs needs guest memory the vhost-user backend can map
            "-object", "memory-backend-memfd,id=mem,size=%dM,share=on" % self.memory,
            "-machine", "memory-backend=mem",
            "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
            "-kernel", vmlinux, "-initrd", initrd, "-append", " ".join(cmdline),
            "-serial", "stdio",
            "-global", "virtio-mmio.force-legacy=false",
            "-device", "virtio-serial-device",
            "-chardev", "socket,id=agent,path=%s,server=on,wait=off" % self.agent_sock,
            "-device", "virtserialport,chardev=agent,name=agent.0",
            "-chardev", "socket,id=fs0,path=%s" % self.fs_sock,
            "-device", "vhost-user-fs-device,chardev=fs0,tag=%s" % SHARE_TAG,
        ]
        return argv

    def start(self, images=None):
        vmlinux, initrd = images or guest_images(self.builddir)
        for s in (self.agent_sock, self.fs_sock):
            if os.path.exists(s):
                os.unlink(s)
        self.vfs_log = open(self.tmp / "virtiofsd.log", "wb")
        self.virtiofsd = subprocess.Popen(
            [VIRTIOFSD, "--socket-path=%s" % self.fs_sock, "-o", "source=%s" % self.share,
             "-o", "cache=auto"], stdin=subprocess.DEVNULL, stdout=self.vfs_log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not os.path.exists(self.fs_sock):
            if self.virtiofsd.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("virtiofsd did not start: %s" % (self.tmp / "virtiofsd.log").read_text())
            time.sleep(0.01)
        self.t_spawn = time.monotonic()
        self.qemu = subprocess.Popen(self.argv(vmlinux, initrd), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._ready_evt = threading.Event()
        self._reader = threading.Thread(target=self._read_console, daemon=True)
        self._reader.start()
        # QEMU creates the agent socket before the guest runs
        deadline = time.monotonic() + 10
        while not os.path.exists(self.agent_sock):
            if self.qemu.poll() is not None or time.monotonic() > deadline:
                self._reader.join(2)
                raise RuntimeError("QEMU did not start: %s" % self.console_tail())
            time.sleep(0.005)
        return self

    def _read_console(self):
        buf = b""
        with open(self.console_path, "wb") as log:
            fd = self.qemu.stdout.fileno()
            while True:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    break
                if not data:
                    break
                if self.t_ready is None:
                    buf = (buf + data)[-4096:]
                    if READY in buf and b"\n" in buf[buf.index(READY):]:
                        self.t_ready = time.monotonic() - self.t_spawn
                        line = buf[buf.index(READY):].split(b"\n")[0]
                        self.ready_line = line.decode(errors="replace").strip()
                        self._ready_evt.set()
                log.write(data)
                log.flush()

    def wait_ready(self, timeout=60):
        if not self._ready_evt.wait(timeout):
            raise RuntimeError("no '%s' on the console within %ss: %s" % (READY.decode(), timeout,
                                                                         self.console_tail()))
        return self.t_ready

    def console_tail(self, n=4000):
        try:
            return self.console_path.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def wait_exit(self, timeout):
        try:
            self.qemu.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.qemu.returncode

    def stop(self):
        for p in (self.qemu, self.virtiofsd):
            if p and p.poll() is None:
                p.kill()
        for p in (self.qemu, self.virtiofsd):
            if p:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    pass
        if self._reader:
            self._reader.join(5)
        if self.qemu and self.qemu.stdout:
            self.qemu.stdout.close()
        if getattr(self, "vfs_log", None):
            self.vfs_log.close()


class AgentSession:
    """agent-ctl --script -: one ttRPC connection, one JSON line per step."""

    def __init__(self, sock, builddir=BUILDDIR, timeout_ms=60000, wait_ms=20000):
        self.proc = subprocess.Popen(
            [str(pathlib.Path(builddir) / "tests" / "tools" / "agent-ctl"), "-s", sock, "-t", str(timeout_ms),
             "-w", str(wait_ms), "--script", "-"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        self.buf = b""
        self.timeout = timeout_ms / 1000 + 10

    def send(self, op, **kw):
        kw["op"] = op
        self.proc.stdin.write((json.dumps(kw) + "\n").encode())

    def receive(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("agent-ctl gave no answer")
            r, _, _ = select.select([fd], [], [], left)
            if r:
                data = os.read(fd, 65536)
                if not data:
                    raise EOFError("agent-ctl exited (rc=%s)" % self.proc.poll())
                self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return json.loads(line.decode(errors="replace"))

    def step(self, op, **kw):
        """Runs one step; returns the answer (ok or not)."""
        self.send(op, **kw)
        return self.receive()

    def __call__(self, op, **kw):
        """Runs one step that must succeed."""
        r = self.step(op, **kw)
        assert r["ok"], "%s %s failed: %s" % (op, kw, r)
        return r

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()

    def kill(self):
        """Drops the connection abruptly (SIGKILL), whatever is in flight."""
        self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass


# ---- fixtures -----------------------------------------------------------------


@pytest.fixture(scope="module")
def vm():
    why = missing_prerequisites()
    if why:
        pytest.skip(why)
    tmp = tempfile.mkdtemp(prefix="cocoon-agent-guest-")
    share = pathlib.Path(tmp) / "share"
    make_rootfs(share / "rootfs")
    g = GuestVM(tmp, share)
    try:
        g.start()
        yield g
    finally:
        g.stop()
        print("---- guest console (tail) ----\n" + g.console_tail(6000))
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def agent(vm):
    s = AgentSession(vm.agent_sock)
    try:
        yield s
    finally:
        s.close()


def read_all(agent, cid, exec_id="", stream="out"):
    return agent("read", id=cid, exec=exec_id, stream=stream, eof=True)["data"]


# ---- tests (in order, one VM) ---------------------------------------------------


def test_boot_health(vm, agent):
    t_ready = vm.wait_ready(60)
    r = agent("health")
    assert r["serving"]
    d = agent("details")
    assert d["init_daemon"] is True
    assert "virtio-fs" in d["storage_handlers"]
    print("accel=%s %s, %.3f s after spawning QEMU" % (vm.accel, vm.ready_line, t_ready))


def test_sandbox_share_run(vm, agent):
    agent("create-sandbox", hostname="podhost", sandbox_id="pod1", share_tag=SHARE_TAG, share_mount=SHARE_MOUNT)
    r = agent.step("create-sandbox", hostname="podhost", sandbox_id="pod1")
    assert r["code_name"] == "ALREADY_EXISTS"
    # Kata style: an absolute guest path inside the share
    agent("run", id="c1", root=SHARE_MOUNT + "/rootfs",
          args=["/bin/sh", "-c", "echo hello; cat /proc/1/cgroup; echo err >&2; exit 3"])
    out = read_all(agent, "c1")
    assert out.startswith("hello\n")
    assert "0::/cocoon/c1" in out
    assert read_all(agent, "c1", stream="err") == "err\n"
    assert agent("wait", id="c1")["status"] == 3
    assert agent.step("start", id="c1")["code_name"] == "FAILED_PRECONDITION"
    agent("remove", id="c1")
    assert agent.step("start", id="c1")["code_name"] == "NOT_FOUND"
    # a root outside /run/cocoon is refused
    r = agent.step("run", id="bad", root="/etc", args=["/bin/true"])
    assert r["code_name"] == "INVALID_ARGUMENT"


def test_exec_user_pidns(vm, agent):
    agent("run", id="c2", root="rootfs", hostname="ctrhost", args=["/bin/sh", "-c", "exec sleep 1000"])
    agent("exec", id="c2", exec="e1", user="app", args=["id"])
    out = read_all(agent, "c2", "e1")
    assert "uid=1000(app) gid=1000(app)" in out and "2000(extra)" in out
    assert agent("wait", id="c2", exec="e1")["status"] == 0
    agent("exec", id="c2", exec="e2", args=["/bin/sh", "-c", "ps -o pid,args; hostname"])
    out = read_all(agent, "c2", "e2")
    assert "\n    1 sleep 1000" in out or "\n    1 /bin/sh -c exec sleep" in out, out
    assert "ctrhost\n" in out
    assert agent("wait", id="c2", exec="e2")["status"] == 0
    # stdin
    agent("exec", id="c2", exec="e3", args=["/bin/sh", "-c", "read x; echo got-$x"])
    agent("write", id="c2", exec="e3", data="abc\n", close=True)
    assert read_all(agent, "c2", "e3") == "got-abc\n"
    assert agent("wait", id="c2", exec="e3")["status"] == 0


def test_guest_timer_rate(vm, agent):
    """The guest's timers fire on time. Under TCG the VMM tells the kernel its
    APIC timer rate (lapic_timer_khz) instead of letting it calibrate; a wrong
    rate makes every timer interrupt late by the same factor (early ones are
    re-armed against the TSC), so a 2 s sleep would take 4 s at half the rate."""
    t0 = time.monotonic()
    agent("exec", id="c2", exec="tm", args=["sleep", "2"])
    assert agent("wait", id="c2", exec="tm")["status"] == 0
    took = time.monotonic() - t0
    assert 1.9 <= took < 3.5, "sleep 2 in the guest took %.2f s of host time" % took


def test_writable_rootfs_is_guest_overlay(vm, agent):
    """Writes land in the guest's overlay, never in the host's share."""
    agent("exec", id="c2", exec="w1", args=["/bin/sh", "-c", "echo data > /etc/new && cat /etc/new"])
    assert read_all(agent, "c2", "w1") == "data\n"
    assert agent("wait", id="c2", exec="w1")["status"] == 0
    assert not (pathlib.Path(vm.share) / "rootfs" / "etc" / "new").exists()
    # a read-only root refuses writes
    agent("run", id="ro", root="rootfs", readonly=True,
          args=["/bin/sh", "-c", "echo x > /etc/y; echo rc=$?"])
    assert read_all(agent, "ro") == "rc=1\n"
    assert "Read-only file system" in read_all(agent, "ro", stream="err")
    agent("wait", id="ro")
    agent("remove", id="ro")


def test_tty_resize(vm, agent):
    agent("exec", id="c2", exec="t1", tty=True, rows=24, cols=80, args=["/bin/sh", "-c", "stty size; read x; stty size"])
    agent("resize", id="c2", exec="t1", rows=40, cols=123)
    agent("write", id="c2", exec="t1", data="go\n")
    out = read_all(agent, "c2", "t1")
    assert "40 123" in out, out
    assert agent("wait", id="c2", exec="t1")["status"] == 0
    agent("exec", id="c2", exec="t2", args=["sleep", "100"])
    assert agent.step("resize", id="c2", exec="t2", rows=1, cols=1)["code_name"] == "FAILED_PRECONDITION"
    agent("signal", id="c2", exec="t2", signal=9)
    assert agent("wait", id="c2", exec="t2")["status"] == 128 + 9


def test_signals(vm, agent):
    agent("exec", id="c2", exec="s1", args=["/bin/sh", "-c", "trap 'echo caught; exit 7' USR1; "
                                                               "echo armed; while :; do sleep 0.05; done"])
    r = agent("read", id="c2", exec="s1")
    assert r["data"].startswith("armed")
    agent("signal", id="c2", exec="s1", signal=int(signal.SIGUSR1))
    assert agent("wait", id="c2", exec="s1")["status"] == 7
    assert "caught" in read_all(agent, "c2", "s1")
    agent("exec", id="c2", exec="s2", args=["sleep", "100"])
    agent("signal", id="c2", exec="s2", signal=int(signal.SIGTERM))
    assert agent("wait", id="c2", exec="s2")["status"] == 128 + signal.SIGTERM


def test_stats(vm, agent):
    r = agent("stats", id="c2")
    assert r["memory_usage"] > 0
    assert r["cpu_usage_ns"] > 0
    assert r["pids_current"] >= 1


def test_seccomp_denies_syscall(vm, agent):
    agent("run", id="sc", root="rootfs", seccomp_deny=["mkdir", "mkdirat"],
          args=["/bin/sh", "-c", "mkdir /tmp/x; echo rc=$?"])
    assert read_all(agent, "sc") == "rc=1\n"
    assert "Operation not permitted" in read_all(agent, "sc", stream="err")
    assert agent("wait", id="sc")["status"] == 0
    agent("remove", id="sc")


def test_memory_limit_oom(vm, agent):
    """Skipped on hosts without the memory controller; the guest has it."""
    agent("run", id="mem", root="rootfs", mem=16 << 20, args=["/bin/sh", "-c", "exec sleep 1000"])
    st = agent("stats", id="mem")
    assert st["memory_limit"] == 16 << 20 and st["memory_usage"] > 0
    agent("exec", id="mem", exec="hog", args=["/bin/sh", "-c", "head -c 64m /dev/zero | tail > /dev/null"])
    assert agent("wait", id="mem", exec="hog")["status"] == 128 + signal.SIGKILL
    ev = agent("oom", timeout_ms=20000)
    assert ev["container_id"] == "mem"
    assert agent("stats", id="mem")["oom_kills"] >= 1
    agent("remove", id="mem")


def test_disconnect_reconnect_no_output_lost(vm, agent):
    """A host that goes away mid-read (SIGKILL while a ReadStdout is
    pending) loses nothing: output produced while no host is connected is
    buffered and read after reconnecting, with no gap."""
    script = ("i=0; while [ $i -lt 30 ]; do echo $i; i=$((i+1)); "
              "if [ $i -eq 10 ]; then sleep 2; else sleep 0.05; fi; done")
    agent("run", id="cnt", root="rootfs", args=["/bin/sh", "-c", script])
    agent.close()  # one host connection at a time: free the port
    first = AgentSession(vm.agent_sock, wait_ms=5000)
    got = ""
    try:
        while "9\n" not in got:
            got += first("read", id="cnt")["data"]
        first.send("read", id="cnt")  # pending: the counter pauses now
        time.sleep(0.3)
    finally:
        first.kill()
    time.sleep(2.0)  # the counter goes on with no host connected
    second = AgentSession(vm.agent_sock)
    try:
        got += second("read", id="cnt", eof=True)["data"]
        assert got.split() == [str(i) for i in range(30)], got
        assert second("wait", id="cnt")["status"] == 0
        second("remove", id="cnt")
        assert second("health")["serving"]
    finally:
        second.close()


def test_destroy_powers_off(vm):
    s = AgentSession(vm.agent_sock)
    try:
        s("remove", id="c2")
        s("destroy")
    finally:
        s.close()
    rc = vm.wait_exit(20)
    assert rc is not None, "QEMU still running 20 s after DestroySandbox"
    assert rc == 0
    try:
        vm.virtiofsd.wait(10)
    except subprocess.TimeoutExpired:
        pytest.fail("virtiofsd still running after the guest powered off")
