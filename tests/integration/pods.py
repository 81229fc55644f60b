"""Shared helpers for the CRI pod and container tests (test_pods.py and
others): a cocoond configured to boot the test guest (the build's vmlinux and
an initrd holding the build's cocoon-agent, as test_agent_guest.py builds
them), a busybox image imported with `cocoonctl image import`, request
builders, state waiters, a CRI log parser and leak checks (processes,
mounts, directories, netns).

    env = PodEnv.start_env()            # daemon + image, one per test module
    pod = env.run_pod("web")         # RunPodSandbox, returns the id
    cid = env.create(pod, "c", ["sh", "-c", "echo hi"])
    env.rt.StartContainer(...)
    env.wait_ctr(cid, pb.CONTAINER_EXITED)
"""
import json
import os
import pathlib
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time
import uuid

import grpc
import pytest

from conftest import BUILDDIR, Daemon, binary, pb
from oci_layout import layer_tar, write_layout
from test_agent_guest import guest_images, missing_prerequisites

IMAGE = "example.com/test/busybox:1.0"
RPC_TIMEOUT = 120
# TCG unless told otherwise: this machine's /dev/kvm opens but QEMU's KVM
# asserts on it (kvm_buf_set_msrs), so "auto" is not safe here.
ACCEL = os.environ.get("COCOON_TEST_ACCEL", "tcg")

POD, CONTAINER, NODE = pb.POD, pb.CONTAINER, pb.NODE


def skip_reason():
    r = missing_prerequisites()
    if r:
        return r
    for b in ("cocoond", "cocoonctl"):
        if not (BUILDDIR / b).exists():
            return "%s not built in %s" % (b, BUILDDIR)
    return None


def busybox_rootfs_layer():
    """A busybox rootfs layer: every applet as a symlink in /bin, the
    directories a container expects, passwd and group."""
    bb = pathlib.Path("/bin/busybox").read_bytes()
    files = [("bin", None, 0o755, None), ("bin/busybox", bb, 0o755, None)]
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for a in sorted(set(applets)):
        if a != "busybox" and "/" not in a:
            files.append(("bin/" + a, None, 0o777, "busybox"))
    for d in ("etc", "proc", "sys", "dev", "tmp", "root", "home", "home/app", "var", "run"):
        files.append((d, None, 0o1777 if d == "tmp" else 0o755, None))
    files.append(("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
                  0o644, None))
    files.append(("etc/group", b"root:x:0:\napp:x:1000:\n", 0o644, None))
    return layer_tar(files)


def code_of(exc):
    return exc.code() if isinstance(exc, grpc.RpcError) else None


def expect_error(code, fn, *args, **kw):
    """Calls fn, which must fail with the gRPC status `code`; returns the
    error's details (message)."""
    try:
        fn(*args, **kw)
    except grpc.RpcError as e:
        assert e.code() == code, "expected %s, got %s: %s" % (code, e.code(), e.details())
        return e.details()
    raise AssertionError("expected %s, the call succeeded" % code)


# ---- leak checks ----------------------------------------------------------

def procs_mentioning(*needles):
    """{pid: cmdline} of processes whose command line contains any needle."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            cmd = pathlib.Path("/proc/%s/cmdline" % d).read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(n in cmd for n in needles):
            out[int(d)] = cmd
    return out


def mounts_under(*prefixes):
    lines = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4]
            if any(mp == p or mp.startswith(p.rstrip("/") + "/") for p in prefixes):
                lines.append(line.strip())
    return lines


def children(pid):
    out = []
    for t in pathlib.Path("/proc/%d/task" % pid).glob("*/children"):
        out += [int(x) for x in t.read_text().split()]
    return out


def pid_alive(pid):
    if not pid:
        return False
    try:
        st = pathlib.Path("/proc/%d/stat" % pid).read_text()
    except OSError:
        return False
    return st.rsplit(")", 1)[1].split()[0] != "Z"


def gone_or_zombie(pid):
    """The whole process has exited (a pidfd turns readable only once every
    thread is gone; /proc's "Z" of the leader comes earlier, and a killed
    cocoond's children may never be reaped by whoever inherits them)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], 0)[0])
    finally:
        os.close(fd)


def wait_until(pred, timeout, what, interval=0.1):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(interval)


# ---- CRI logs -------------------------------------------------------------

LOG_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d)) (stdout|stderr) (P|F) (.*)$",
                    re.S)


def parse_log(path):
    """Records [(ts, stream, tag, text)] of a CRI log file; asserts every
    line is in the kubelet's format."""
    recs = []
    data = pathlib.Path(path).read_bytes().decode()
    if not data:
        return recs
    assert data.endswith("\n"), "log does not end with a newline: %r" % data[-100:]
    for line in data[:-1].split("\n"):
        m = LOG_RE.match(line)
        assert m, "not a CRI log line: %r" % line[:200]
        recs.append(m.groups())
    return recs


def ts_ns(ts):
    """An RFC 3339 timestamp with up to 9 fraction digits (RFC3339Nano
    trims trailing zeros, so the strings do not sort) → ns since the epoch."""
    import calendar
    m = re.match(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|([+-])(\d\d):(\d\d))$", ts)
    assert m, ts
    secs = calendar.timegm(tuple(int(m.group(i)) for i in range(1, 7)))
    if m.group(8) != "Z":
        off = int(m.group(10)) * 3600 + int(m.group(11)) * 60
        secs -= off if m.group(9) == "+" else -off
    return secs * 10**9 + int((m.group(7) or "0").ljust(9, "0"))


def log_lines(path, stream=None):
    """Logical lines (P records joined up to their F) per stream."""
    lines, partial = [], {}
    for ts, s, tag, text in parse_log(path):
        partial[s] = partial.get(s, "") + text
        if tag == "F":
            if stream is None or s == stream:
                lines.append(partial[s])
            partial[s] = ""
    return lines


# ---- the daemon and its pods ----------------------------------------------

class GdbDaemon(Daemon):
    """COCOON_TEST_GDB=1: cocoond under gdb -batch, so a crash leaves every
    thread's backtrace in cocoond.log (for debugging, not for restarts)."""

    def start(self, wait=True):
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            ["gdb", "-q", "-batch", "-ex", "run", "-ex", "thread apply all bt 20", "--args",
             binary("cocoond"), "--config", str(self.config), "--log-level", "debug"] + self.args,
            stdout=logf, stderr=subprocess.STDOUT)
        logf.close()
        if wait:
            self.wait_ready(timeout=60)
        return self


class PodEnv:
    """A cocoond with the test guest and the busybox image, in a short
    temporary directory (unix socket paths under it must stay < 108 bytes)."""

    def __init__(self, tmp, daemon, image_id):
        self.tmp = pathlib.Path(tmp)
        self.daemon = daemon
        self.image_id = image_id
        self.logs = self.tmp / "logs"
        self.logs.mkdir(exist_ok=True)
        self.state_dir = self.tmp / "state"
        self.created = []  # pod ids run_pod returned, for cleanup after a failed test
        conf = self.tmp / "cni-conf" / "10-cocoon-test.conflist"
        self.network = json.loads(conf.read_text()) if conf.exists() else None
        self.connect()

    @staticmethod
    def config(tmp, vm_extra="", runtime_extra="", kernel=None, initrd=None, agent_timeout=120):
        tmp = pathlib.Path(tmp)
        vmlinux, initrd_img = guest_images(BUILDDIR)
        for d in ("cni-conf", "netns", "cni-cache"):
            (tmp / d).mkdir(exist_ok=True)
        # Pods need a CNI network: Debian's bridge + host-local, a bridge and
        # a 10.225.X.0/24 subnet of this daemon's own, never routed off the
        # machine (ipMasq off). close() removes the bridge.
        x = int.from_bytes(os.urandom(1), "big")
        net = {"cniVersion": "0.4.0", "name": "cocoon-test", "plugins": [{
            "type": "bridge", "bridge": "ccpd%02x%02x" % (x, os.urandom(1)[0]), "isGateway": True,
            "ipMasq": False, "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.225.%d.0/24" % x}]],
                                      "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(tmp / "ipam")}}]}
        (tmp / "cni-conf" / "10-cocoon-test.conflist").write_text(json.dumps(net))
        return ('[runtime]\nhost_agent = "%s"\n%s'
                '[vm]\nkernel = "%s"\ninitrd = "%s"\naccel = "%s"\nagent_timeout = %d\n%s'
                '[cni]\nconf_dir = "%s"\nnetns_dir = "%s"\ncache_dir = "%s"\n'
                % (BUILDDIR / "agent" / "cocoon-agent", runtime_extra, kernel or vmlinux, initrd or initrd_img,
                   ACCEL, agent_timeout, vm_extra, tmp / "cni-conf", tmp / "netns", tmp / "cni-cache"))

    @classmethod
    def start_env(cls, factory=None, subdir=None, import_image=True, **config_kw):
        """A new daemon (from conftest's daemon_factory when given, else in a
        fresh /tmp dir) with the test guest configured and the image
        imported. The state dir (sandbox dirs, their sockets) is the Daemon's
        short /run path: unix socket paths must stay under 108 bytes."""
        if factory is not None:
            daemon = factory(start=False, subdir=subdir)
        else:
            daemon = Daemon(tempfile.mkdtemp(prefix="cp-", dir="/tmp"))
        tmp = daemon.tmp
        state = daemon.state  # conftest's Daemon: a short /run path
        if os.environ.get("COCOON_TEST_GDB") == "1":
            daemon.__class__ = GdbDaemon
        daemon.config.write_text(daemon.config.read_text() + cls.config(tmp, **config_kw))
        daemon.start()
        image_id = import_busybox(daemon, tmp) if import_image else None
        env = cls(tmp, daemon, image_id)
        env.state_dir = state
        return env

    def connect(self):
        self.ch = self.daemon.channel()
        self.rt = self.daemon.runtime(self.ch)
        self.im = self.daemon.images(self.ch)

    def ensure_running(self):
        """Restarts a cocoond that died (a crash fails the test it happened
        in; the next tests still get a daemon). Returns the log tail of the
        dead one, or None."""
        if self.daemon.proc is None or self.daemon.proc.poll() is None:
            return None
        text = self.daemon.log_text()
        tail = text[-3000:]
        i = text.rfind("received signal")  # under gdb: the crashing thread's backtrace follows
        if i >= 0:
            j = text.rfind("\n", 0, max(0, i - 1500))
            tail = text[j + 1:i + 200] + "\n...\n"
            m = re.match(r"Thread (\d+) ", text[text.rfind("\n", 0, i) + 1:])
            k = text.find("\nThread %s (" % m.group(1), i) if m else -1
            if k >= 0:
                tail += text[k + 1:k + 3000]
        try:
            self.ch.close()
        except Exception:
            pass
        self.daemon.start()
        self.connect()
        return tail

    def restart(self, sig=signal.SIGKILL):
        """Kills cocoond (SIGKILL by default: no chance to clean up) and
        starts it again on the same config and state."""
        self.ch.close()
        if isinstance(self.daemon, GdbDaemon):
            # The daemon is gdb's child: signal cocoond itself, then gdb.
            for child in children(self.daemon.proc.pid):
                os.kill(child, sig)
        self.daemon.proc.send_signal(sig)
        self.daemon.proc.wait(30)
        self.daemon.start()
        self.connect()

    @property
    def root_dir(self):
        return self.tmp / "root"

    # -- requests

    def pod_config(self, name, uid=None, namespace="default", attempt=0, labels=None, annotations=None,
                   network=POD, pid=CONTAINER, ipc=POD, hostname=None):
        """As the kubelet builds it; pid=CONTAINER unless the pod shares its
        process namespace (pid=POD) or uses the host's (NODE)."""
        uid = uid or str(uuid.uuid4())
        logdir = self.logs / ("%s_%s_%s" % (namespace, name, uid))
        logdir.mkdir(parents=True, exist_ok=True)
        return pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace=namespace, attempt=attempt),
            hostname=hostname or name, log_directory=str(logdir),
            labels=labels or {}, annotations=annotations or {},
            linux=pb.LinuxPodSandboxConfig(
                cgroup_parent="",
                security_context=pb.LinuxSandboxSecurityContext(
                    namespace_options=pb.NamespaceOption(network=network, pid=pid, ipc=ipc))))

    def ctr_config(self, pod_cfg, name, command, attempt=0, image=IMAGE, labels=None, annotations=None,
                   mounts=(), pid=CONTAINER, envs=None):
        """The kubelet's layout: log_path NAME/ATTEMPT.log under the pod's
        log directory, whose NAME directory the kubelet creates."""
        (pathlib.Path(pod_cfg.log_directory) / name).mkdir(parents=True, exist_ok=True)
        nso = pod_cfg.linux.security_context.namespace_options
        return pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name, attempt=attempt),
            image=pb.ImageSpec(image=image), command=list(command),
            envs=[pb.KeyValue(key=k, value=v) for k, v in (envs or {}).items()],
            labels=labels or {}, annotations=annotations or {},
            log_path="%s/%d.log" % (name, attempt), mounts=list(mounts),
            linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(
                namespace_options=pb.NamespaceOption(network=nso.network, pid=pid if nso.pid != NODE else NODE,
                                                     ipc=nso.ipc))))

    def run_pod(self, name, handler="", **kw):
        cfg = self.pod_config(name, **kw)
        r = self.rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg, runtime_handler=handler),
                                  timeout=RPC_TIMEOUT)
        self.created.append(r.pod_sandbox_id)
        return r.pod_sandbox_id, cfg

    def create(self, pod_id, pod_cfg, name, command, **kw):
        cfg = self.ctr_config(pod_cfg, name, command, **kw)
        r = self.rt.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=pod_id, config=cfg,
                                                              sandbox_config=pod_cfg), timeout=RPC_TIMEOUT)
        return r.container_id

    def start(self, cid):
        self.rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=RPC_TIMEOUT)

    def run_ctr(self, pod_id, pod_cfg, name, command, **kw):
        cid = self.create(pod_id, pod_cfg, name, command, **kw)
        self.start(cid)
        return cid

    def pod_status(self, pod_id, verbose=False):
        return self.rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=verbose),
                                        timeout=RPC_TIMEOUT)

    def pod_info(self, pod_id):
        """The verbose info JSON, plus "ip" from the status (for leak checks)."""
        r = self.pod_status(pod_id, verbose=True)
        info = json.loads(r.info["info"])
        info["ip"] = r.status.network.ip
        return info

    def ctr_status(self, cid, verbose=False):
        return self.rt.ContainerStatus(pb.ContainerStatusRequest(container_id=cid, verbose=verbose),
                                       timeout=RPC_TIMEOUT)

    def wait_ctr(self, cid, state, timeout=60):
        def done():
            s = self.ctr_status(cid).status
            return s if s.state == state else None
        return wait_until(done, timeout, "container %s to be %s" % (cid[:12], pb.ContainerState.Name(state)))

    def wait_pod(self, pod_id, state, timeout=60):
        def done():
            s = self.pod_status(pod_id).status
            return s if s.state == state else None
        return wait_until(done, timeout, "pod %s to be %s" % (pod_id[:12], pb.PodSandboxState.Name(state)))

    def wait_log(self, cid, pred, timeout=60, stream=None):
        """Waits until pred(lines of the container's log) is true."""
        path = self.ctr_status(cid).status.log_path

        def done():
            try:
                lines = log_lines(path, stream)
            except FileNotFoundError:
                return None
            return lines if pred(lines) else None
        return wait_until(done, timeout, "log of %s (%s)" % (cid[:12], path))

    def remove_pod(self, pod_id):
        self.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=RPC_TIMEOUT)
        self.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=RPC_TIMEOUT)

    def remove_all(self):
        for p in self.rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=RPC_TIMEOUT).items:
            try:
                self.remove_pod(p.id)
            except grpc.RpcError:
                pass

    # -- leaks

    def assert_pod_gone(self, pod_id, info, timeout=15):
        """Nothing of one pod is left: its processes (the pids its verbose
        status reported, anything naming its id), mounts, directories, netns."""
        def left():
            out = []
            for k in ("vmmPid", "virtiofsdPid", "agentPid"):
                if pid_alive(info.get(k)):
                    out.append("%s %s alive" % (k, info[k]))
            out += ["process %d: %s" % kv for kv in procs_mentioning(pod_id).items()]
            with open("/proc/self/mountinfo") as f:
                out += ["mount: " + l.strip() for l in f if pod_id in l]
            ip = info.get("ip")
            if ip and ip in self.allocated_ips():
                out.append("IP %s still allocated" % ip)
            for k in ("runDir", "netns"):
                if info.get(k) and os.path.lexists(info[k]):
                    out.append("%s %s exists" % (k, info[k]))
            for top in (self.state_dir, self.root_dir, self.tmp / "netns", self.tmp / "cni-cache"):
                for dirpath, dirs, files in os.walk(top):
                    dirs[:] = [d for d in dirs if d not in ("layers", "blobs", "images")]
                    out += [os.path.join(dirpath, n) for n in dirs + files if pod_id in n]
            return out
        deadline = time.monotonic() + timeout
        while True:
            rest = left()
            if not rest or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert not rest, "pod %s left behind: %r" % (pod_id[:12], rest)

    def allocated_ips(self):
        """Addresses host-local still holds for this daemon's network (its
        dataDir has one file per allocation, named by the address)."""
        d = self.tmp / "ipam"
        if not d.is_dir():
            return []
        return sorted(f.name for f in d.rglob("*") if re.match(r"^[0-9a-f.:]+$", f.name) and ("." in f.name or ":" in f.name))

    def leftovers(self):
        """What pods of this daemon may leave on the host: processes naming
        its directories, mounts under them, sandbox dirs, netns pins."""
        needles = (str(self.state_dir), str(self.root_dir), str(self.tmp))
        own = set()
        if self.daemon.proc is not None and self.daemon.proc.poll() is None:
            own = {self.daemon.proc.pid, *children(self.daemon.proc.pid)}  # cocoond (under gdb: its child)
        procs = {p: c for p, c in procs_mentioning(*needles).items() if p not in own}
        sandboxes = []
        for d in (self.state_dir / "sandboxes", self.root_dir / "sandboxes"):
            if d.is_dir():
                sandboxes += [str(x) for x in d.iterdir()]
        netns = [str(x) for x in (self.tmp / "netns").iterdir()] if (self.tmp / "netns").is_dir() else []
        # The netns dir bound onto itself (shared propagation, as iproute2
        # does for /run/netns) is the daemon's, made once, not a pod's.
        mounts = [m for m in mounts_under(*needles) if m.split()[4] != str(self.tmp / "netns")]
        return {"procs": procs, "mounts": mounts, "sandboxes": sandboxes, "netns": netns, "ips": self.allocated_ips()}

    def assert_clean(self, timeout=10):
        """Nothing of any pod is left (waits a little for processes the
        daemon has signalled to be reaped)."""
        deadline = time.monotonic() + timeout
        while True:
            left = self.leftovers()
            if not any(left.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert not any(left.values()), "left behind: %r" % left

    def cni_bridge(self):
        """The CNI bridge of this daemon's network (the bridge plugin makes it
        on the first pod and never deletes it), or None."""
        return self.network["plugins"][0].get("bridge") if self.network else None

    def close(self):
        try:
            self._close()
        finally:
            # Even when stopping the daemon failed: no 10.225.X.1 bridge
            # outlives the test.
            if self.cni_bridge():
                subprocess.run(["ip", "link", "del", self.cni_bridge()], capture_output=True)

    def _close(self):
        try:
            self.remove_all()
        except Exception:
            pass
        try:
            self.ch.close()
        except Exception:
            pass
        if self.daemon.proc and self.daemon.proc.poll() is None:
            try:
                self.daemon.stop()
            except AssertionError:  # did not exit on SIGTERM: Daemon.stop killed it
                pass
            for child in children(self.daemon.proc.pid) if self.daemon.proc.poll() is None else ():
                os.kill(child, signal.SIGKILL)
        # Last resort: nothing of ours keeps running after the tests.
        for pid in procs_mentioning(str(self.state_dir), str(self.root_dir)):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for line in reversed(mounts_under(str(self.tmp))):
            subprocess.run(["umount", "-l", line.split()[4]], capture_output=True)

    def cleanup_dirs(self):
        for line in reversed(mounts_under(str(self.state_dir))):
            subprocess.run(["umount", "-l", line.split()[4]], capture_output=True)
        shutil.rmtree(self.state_dir, ignore_errors=True)
        shutil.rmtree(self.tmp, ignore_errors=True)


def import_busybox(daemon, tmp):
    """Imports the busybox image as IMAGE; returns its id."""
    layout = pathlib.Path(tmp) / "bb-layout"
    if not layout.exists():
        write_layout(layout, [busybox_rootfs_layer()], tag="1.0", cmd=("/bin/sh",))
    p = subprocess.run([binary("cocoonctl"), "-a", daemon.address, "image", "import", "--name",
                        IMAGE.rsplit(":", 1)[0], str(layout)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout.split()[0]


@pytest.fixture(scope="module")
def pod_env():
    """One daemon with the image for a whole test module."""
    r = skip_reason()
    if r:
        pytest.skip(r)
    env = PodEnv.start_env()
    yield env
    env.close()
    env.cleanup_dirs()
    assert_no_bridge(env)


def assert_no_bridge(env):
    """Teardown check: the daemon's CNI bridge is gone with it."""
    name = env.cni_bridge()
    if name:
        p = subprocess.run(["ip", "link", "show", name], capture_output=True)
        assert p.returncode != 0, "CNI bridge %s left behind" % name
