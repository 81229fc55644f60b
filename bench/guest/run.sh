#!/bin/sh
# bench/guest: how fast and how small cocoon-agent is as the guest's PID 1.
#
#   bench/guest/run.sh [-n BOOTS] [-c CALLS] [BUILDDIR]
#
# BUILDDIR (default $COCOON_BUILDDIR, else ./build) must hold agent/cocoon-agent
# and tests/tools/agent-ctl (make agent/cocoon-agent tests/tools/agent-ctl).
# Boots the guest BOOTS times (default 10) exactly as
# tests/integration/test_agent_guest.py does (QEMU microvm + virtiofsd, KVM
# when /dev/kvm is usable, TCG otherwise) and measures:
#   - VM start -> agent answers Health.Check (median; from spawning QEMU to
#     agent-ctl's answer, agent-ctl connecting before the guest is up), and
#     the time "cocoon-agent ready" shows on the console;
#   - DestroySandbox -> QEMU exited;
#   - Health.Check round trip p50/p99 over CALLS calls (default 1000) on one
#     connection, after 100 warm-up calls;
#   - the agent's RSS in the guest (/proc/1/status and smaps_rollup read by a
#     container that shares the guest's pid namespace), after the calls and
#     with a sandbox and that container running;
#   - the initrd's size.
#   - the same boot through the production path, runtime/vmm-qemu.c (the
#     argv cocoond uses), driven by tests/tools/cocoon-vmm: from starting
#     cocoon-vmm (virtiofsd + QEMU + the QMP handshake) to agent-ctl's
#     Health.Check answer; and the idle PSS of QEMU + virtiofsd, alone and
#     per pod with 3 pods running (-p 0 skips this part).
# Prints a table with the goals and whether each is met. Needs root.
# GUEST_APPEND="param ...": extra kernel parameters for the first block's VM
# (A/B tests of guest options).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
exec /usr/bin/python3 - "$src" "$@" <<'EOF'
import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

src = pathlib.Path(sys.argv[1])
sys.path.insert(0, str(src / "tests" / "integration"))
sys.path.insert(0, str(src / "bench" / "lib"))
import test_agent_guest as tg  # noqa: E402  (GuestVM, AgentSession, images)
from criclient import pss_kib  # noqa: E402  (no grpc needed for this)

ap = argparse.ArgumentParser(prog="bench/guest/run.sh")
ap.add_argument("-n", "--boots", type=int, default=10)
ap.add_argument("-c", "--calls", type=int, default=1000)
ap.add_argument("-p", "--prod-boots", type=int, default=None,
                help="boots through runtime/vmm-qemu.c (default: BOOTS; 0 skips)")
ap.add_argument("builddir", nargs="?", default=os.environ.get("COCOON_BUILDDIR", str(src / "build")))
args = ap.parse_args(sys.argv[2:])
builddir = pathlib.Path(args.builddir).resolve()
why = tg.missing_prerequisites(builddir)
if why:
    sys.exit("bench/guest: cannot run: %s" % why)
ctl = str(builddir / "tests" / "tools" / "agent-ctl")
images = tg.guest_images(builddir)
vmm_tool = builddir / "tests" / "tools" / "cocoon-vmm"
prod_boots = args.boots if args.prod_boots is None else args.prod_boots
if prod_boots and not vmm_tool.exists():
    sys.exit("bench/guest: %s not built (make tests/tools/cocoon-vmm), or pass -p 0" % vmm_tool)


def hw_kvm():
    """/dev/kvm opens and the CPU has vmx/svm (runtime/vmm.c's rule: a
    PVM host's /dev/kvm cannot boot the stock guest kernel)."""
    if not tg.kvm_usable():
        return False
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return bool({"vmx", "svm"} & set(line.split()))
    return False


ACCEL = "kvm" if hw_kvm() else "tcg"


def tree(pid):
    """pid and its descendants (virtiofsd forks a sandboxed child)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir("/proc/%d/task" % p):
                with open("/proc/%d/task/%s/children" % (p, t)) as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


class ProdVM:
    """One pod VM started the way cocoond starts it (runtime/vmm-qemu.c +
    runtime/virtiofsd.c) through tests/tools/cocoon-vmm."""

    def __init__(self, root, i):
        self.dir = root / ("p%d" % i)
        (self.dir / "share").mkdir(parents=True)
        (self.dir / "run").mkdir()
        self.state = self.dir / "state.json"
        self.id = "bench%d" % i
        self.info = None

    def boot(self):
        argv = [str(vmm_tool), "boot", "--id", self.id, "--run-dir", str(self.dir / "run"),
                "--kernel", images[0], "--initrd", images[1], "--state", str(self.state),
                "--qemu", tg.QEMU, "--virtiofsd", tg.VIRTIOFSD, "--share", str(self.dir / "share"),
                "--accel", ACCEL]
        t0 = time.monotonic()
        p = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise RuntimeError("cocoon-vmm boot: %s" % p.stderr)
        self.info = json.loads(p.stdout.splitlines()[0])
        out = subprocess.run([ctl, "-s", self.info["endpoint"]["path"], "-t", "60000", "health"],
                             capture_output=True, text=True)
        t = time.monotonic() - t0
        if out.returncode != 0:
            raise RuntimeError("health failed: %s %s" % (out.stdout, out.stderr))
        return t

    def pss(self):
        q = pss_kib(self.info["pid"])
        v = sum(pss_kib(p) for p in tree(self.info["virtiofsd_pid"]))
        return q, v

    def stop(self):
        if self.state.exists():
            subprocess.run([str(vmm_tool), "stop", str(self.state), "--timeout", "3000"],
                           capture_output=True, timeout=60)
tmp = pathlib.Path(tempfile.mkdtemp(prefix="cocoon-bench-guest-"))
share = tmp / "share"
tg.make_rootfs(share / "rootfs")

boots, readies, downs = [], [], []
check = rss = None
accel = None
try:
    for i in range(args.boots):
        run = tmp / ("boot%d" % i)
        run.mkdir()
        vm = tg.GuestVM(run, share, builddir=builddir, accel=ACCEL, extra_cmdline=os.environ.get("GUEST_APPEND", "").split())
        accel = vm.accel
        try:
            vm.start(images)
            # agent-ctl connects while the guest boots; QEMU holds the
            # request until the agent opens its port
            out = subprocess.run([ctl, "-s", vm.agent_sock, "-t", "60000", "health"],
                                 capture_output=True, text=True)
            t_check = time.monotonic() - vm.t_spawn
            if out.returncode != 0:
                raise RuntimeError("health failed: %s %s\n%s" % (out.stdout, out.stderr, vm.console_tail()))
            vm.wait_ready(10)
            boots.append(t_check)
            readies.append(vm.t_ready)
            last = i == args.boots - 1
            s = tg.AgentSession(vm.agent_sock, builddir=builddir)
            try:
                if last:
                    s("health", count=100)
                    check = s("health", count=args.calls)
                    s("create-sandbox", share_tag=tg.SHARE_TAG, share_mount=tg.SHARE_MOUNT)
                    s("run", id="rss", root="rootfs", host_pid=True,
                      args=["/bin/sh", "-c", "cat /proc/1/status /proc/1/smaps_rollup"])
                    text = s("read", id="rss", eof=True)["data"]
                    s("wait", id="rss")
                    rss = {}
                    for line in text.splitlines():
                        k, _, v = line.partition(":")
                        if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "Pss", "VmHWM") and v.strip().endswith("kB"):
                            rss[k] = int(v.split()[0])
                t0 = time.monotonic()
                s("destroy")
            finally:
                s.close()
            rc = vm.wait_exit(30)
            if rc is None:
                raise RuntimeError("QEMU did not exit after DestroySandbox")
            downs.append(time.monotonic() - t0)
            print("boot %2d: Check answered %.3f s, ready on console %.3f s (%s), powered off in %.3f s"
                  % (i + 1, t_check, vm.t_ready, vm.ready_line, downs[-1]), file=sys.stderr)
        finally:
            vm.stop()
    prod, pss1, pss3 = [], None, None
    for i in range(prod_boots):
        vm = ProdVM(tmp, i)
        try:
            prod.append(vm.boot())
            print("vmm-qemu.c boot %2d: Check answered %.3f s" % (i + 1, prod[-1]), file=sys.stderr)
            if i == prod_boots - 1:
                time.sleep(3)  # idle
                pss1 = vm.pss()
                more = [ProdVM(tmp, 1000 + k) for k in range(2)]
                try:
                    for m in more:
                        m.boot()
                    time.sleep(3)
                    pss3 = [x.pss() for x in [vm] + more]
                finally:
                    for m in more:
                        m.stop()
        finally:
            vm.stop()
finally:
    shutil.rmtree(tmp, ignore_errors=True)

initrd_size = os.path.getsize(images[1])
med = statistics.median(boots)
ready_goal = 0.150 if accel == "kvm" else 1.0
rows = [
    ("VM start -> Health.Check answered (median of %d, %s)" % (len(boots), accel),
     "%.3f s" % med, "<= %.3f s" % ready_goal, med <= ready_goal),
    ("  'cocoon-agent ready' on the console (median)", "%.3f s" % statistics.median(readies), "", None),
    ("  min / max Check answered", "%.3f / %.3f s" % (min(boots), max(boots)), "", None),
    ("DestroySandbox -> QEMU exited (median)", "%.3f s" % statistics.median(downs), "", None),
    ("agent RSS in the guest (VmRSS)", "%.2f MiB" % (rss["VmRSS"] / 1024), "<= 2 MiB", rss["VmRSS"] <= 2048),
    ("  anon / file / shmem (initramfs text) KiB",
     "%d / %d / %d" % (rss.get("RssAnon", 0), rss.get("RssFile", 0), rss.get("RssShmem", 0)), "", None),
    ("  Pss / peak (VmHWM) KiB", "%d / %d" % (rss.get("Pss", 0), rss.get("VmHWM", 0)), "", None),
    ("initrd size", "%.2f MiB" % (initrd_size / 1048576), "<= 8 MiB", initrd_size <= 8 << 20),
    ("Health.Check round trip p50 (%d calls)" % check["count"], "%.0f us" % check["p50_us"],
     "<= 150 us" if accel == "tcg" else "", check["p50_us"] <= 150 if accel == "tcg" else None),
    ("Health.Check round trip p99", "%.0f us" % check["p99_us"], "", None),
]
if prod:
    pmed = statistics.median(prod)
    rows += [
        ("runtime/vmm-qemu.c: start -> Health.Check (median of %d, %s)" % (len(prod), ACCEL),
         "%.3f s" % pmed, "<= %.3f s" % ready_goal, pmed <= ready_goal),
        ("  min / max", "%.3f / %.3f s" % (min(prod), max(prod)), "", None),
    ]
if pss1:
    t1 = sum(pss1)
    per3 = sum(sum(x) for x in pss3) / len(pss3)
    rows += [
        ("idle pod PSS, 1 pod: QEMU + virtiofsd", "%.1f MiB (%.1f + %.1f)" % (t1 / 1024, pss1[0] / 1024, pss1[1] / 1024),
         "<= 120 MiB", t1 <= 120 * 1024),
        ("idle pod PSS, 3 pods: per pod", "%.1f MiB" % (per3 / 1024), "<= 120 MiB", per3 <= 120 * 1024),
    ]
w = max(len(r[0]) for r in rows)
print("%-*s  %-26s  %-11s  %s" % (w, "metric", "value", "goal", "met"))
print("-" * (w + 49))
for name, value, goal, met in rows:
    print("%-*s  %-26s  %-11s  %s" % (w, name, value, goal, "" if met is None else ("yes" if met else "NO")))
print("\nhost: %s, %d cpus, load %.2f %.2f %.2f (other work on this machine skews TCG timings)"
      % (os.uname().release, os.cpu_count(), *os.getloadavg()))
EOF
