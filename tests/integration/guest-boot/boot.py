#!/usr/bin/python3
"""Boot the cocoon guest (vmlinux + initrd with guest/test-init as /init) in
QEMU microvm N times and check each boot: the init's ready marker on the
serial console, a HELLO / ping / ECHO round trip over the virtio-serial port
"agent.0" (a unix socket on the host), and QEMU exiting by itself after the
guest powers off. Prints one line per boot, the median times and
"N passed, M failed"; exits 1 if any boot failed.

Times are host wall-clock seconds from spawning QEMU to the event.
Standard library only; run with /usr/bin/python3.
"""
import argparse
import os
import resource
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

READY = b"COCOON-GUEST-READY"
MODULES = b"COCOON-MODULES-LOADED"
ECHO_OK = b"COCOON-ECHO-OK"
GUEST_FAIL = b"COCOON-GUEST-FAIL"
MAX_LINE = 4096

# Kernel options; the speed-ups were each measured (see guest/README.md).
BASE_CMDLINE = [
    "console=ttyS0",       # early messages and panics land on the isa-serial port
    "quiet",
    "panic=1",             # a panic resets the VM; -no-reboot turns that into QEMU exiting
    "reboot=t",            # reset by triple fault: needs no ACPI/i8042 reset device
    "cryptomgr.notests",   # crypto self-tests: -0.24 s under TCG
    "swiotlb=noforce",     # no 64 MiB bounce buffer (no IOMMU, not a CoCo guest): -0.15 s
    "8250.nr_uarts=1",     # probe one legacy UART, not four: -0.1 s
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


def host_tsc_khz(script):
    try:
        out = subprocess.run([script], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    v = out.stdout.strip()
    return v if out.returncode == 0 and v.isdigit() else None


def build_argv(args, accel, sock_path):
    cmdline = list(BASE_CMDLINE)
    if accel == "tcg" and args.tsc_khz:
        # microvm has no PIT/HPET/PM timer to calibrate the TSC against
        cmdline.append("tsc_early_khz=%s" % args.tsc_khz)
    cmdline += args.append.split()
    machine = "microvm," + args.machine_opts if args.machine_opts else "microvm"
    argv = [args.qemu, "-M", machine]
    if accel == "kvm":
        argv += ["-accel", "kvm", "-cpu", "host"]
    else:
        argv += ["-accel", "tcg,tb-size=%d" % args.tb_size, "-cpu", "max"]
    argv += [
        "-m", str(args.memory), "-smp", "1",
        "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
        "-kernel", args.kernel, "-initrd", args.initrd,
        "-append", " ".join(cmdline),
        "-serial", "stdio",
        "-global", "virtio-mmio.force-legacy=false",
        "-device", "virtio-serial-device",
        "-chardev", "socket,id=agent0,path=%s" % sock_path,
        "-device", "virtserialport,chardev=agent0,name=agent.0",
    ]
    return argv


class Boot:
    """One QEMU run; an event loop over the console pipe and the agent socket."""

    def __init__(self, argv, sock_path, timeout, nonce):
        self.argv, self.sock_path, self.timeout = argv, sock_path, timeout
        self.nonce = nonce
        self.t = {}
        self.guest = {}
        self.console = bytearray()
        self.error = None
        self.rc = None
        self.cpu = None

    def run(self):
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        lsock.bind(self.sock_path)
        lsock.listen(1)
        lsock.setblocking(False)
        sel = selectors.DefaultSelector()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        os.set_blocking(proc.stdout.fileno(), False)
        sel.register(proc.stdout, selectors.EVENT_READ, "console")
        sel.register(lsock, selectors.EVENT_READ, "listen")
        pidfd = None
        if hasattr(os, "pidfd_open"):
            try:
                pidfd = os.pidfd_open(proc.pid)
                sel.register(pidfd, selectors.EVENT_READ, "exit")
            except OSError:
                pidfd = None
        conn, abuf, cline = None, bytearray(), bytearray()
        sent_ping = False
        deadline = t0 + self.timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.error = "timeout after %.0fs (hang?)" % self.timeout
                    break
                for key, _ in sel.select(min(left, 1.0 if pidfd is not None else 0.02)):
                    now = time.monotonic() - t0
                    if key.data == "exit":
                        sel.unregister(pidfd)
                    elif key.data == "listen":
                        conn, _ = lsock.accept()
                        conn.setblocking(False)
                        sel.unregister(lsock)
                        sel.register(conn, selectors.EVENT_READ, "agent")
                        self.t.setdefault("connect", now)
                    elif key.data == "agent":
                        try:
                            data = conn.recv(4096)
                        except BlockingIOError:
                            continue
                        if not data:
                            sel.unregister(conn)
                            continue
                        abuf += data
                        if len(abuf) > MAX_LINE:
                            self.error = "agent port: line too long"
                        while b"\n" in abuf:
                            line, _, rest = bytes(abuf).partition(b"\n")
                            abuf = bytearray(rest)
                            if line == b"HELLO" and not sent_ping:
                                self.t["hello"] = now
                                conn.sendall(b"ping %d\n" % self.nonce)
                                sent_ping = True
                            elif line == b"ECHO ping %d" % self.nonce:
                                self.t["echo"] = now
                            else:
                                self.error = "agent port: unexpected %r" % line[:80]
                    elif key.data == "console":
                        data = proc.stdout.read(65536)
                        if not data:
                            sel.unregister(proc.stdout)
                            continue
                        self.console += data
                        cline += data
                        while b"\n" in cline:
                            line, _, rest = bytes(cline).partition(b"\n")
                            cline = bytearray(rest)
                            self.on_console(line.rstrip(b"\r"), now)
                        if len(cline) > MAX_LINE:
                            cline = bytearray()
                if self.error:
                    break
                if proc.poll() is not None:
                    self.rc = proc.returncode
                    self.t["exit"] = time.monotonic() - t0
                    break
        finally:
            if self.rc is None:
                proc.kill()
                proc.wait()
            rest = proc.stdout.read() if proc.stdout else None
            if rest:
                self.console += rest
            ru = resource.getrusage(resource.RUSAGE_CHILDREN)
            self.cpu = (ru.ru_utime - ru0.ru_utime) + (ru.ru_stime - ru0.ru_stime)
            sel.close()
            if pidfd is not None:
                os.close(pidfd)
            if conn:
                conn.close()
            lsock.close()
        if self.error is None:
            if "ready" not in self.t:
                self.error = "no %s marker" % READY.decode()
            elif "echo" not in self.t:
                self.error = "no echo over agent.0"
            elif self.rc != 0:
                self.error = "qemu exited with %s" % self.rc
        return self.error is None

    def on_console(self, line, now):
        for key, marker in (("ready", READY), ("modules", MODULES), ("echo_ok", ECHO_OK)):
            i = line.find(marker)
            if i >= 0:
                self.t.setdefault(key, now)
                fields = line[i + len(marker):].split()
                if fields:
                    try:
                        self.guest[key] = float(fields[-1])
                    except ValueError:
                        pass
        if GUEST_FAIL in line:
            self.error = line[line.find(GUEST_FAIL):].decode(errors="replace")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    top = os.path.abspath(os.path.join(here, "..", "..", ".."))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kernel", required=True)
    p.add_argument("--initrd", required=True)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per boot")
    p.add_argument("--accel", choices=["auto", "kvm", "tcg"], default="auto")
    p.add_argument("--tb-size", type=int, default=256, help="TCG translation cache, MiB")
    p.add_argument("--memory", type=int, default=256, help="guest RAM, MiB")
    p.add_argument("--machine-opts", default="x-option-roms=off,pit=off,pic=off,rtc=on,isa-serial=on")
    p.add_argument("--append", default="", help="extra kernel options")
    p.add_argument("--tsc-khz", default=None, help="host TSC kHz (default: guest/host-tsc-khz.sh)")
    p.add_argument("--qemu", default=shutil.which("qemu-system-x86_64") or "qemu-system-x86_64")
    p.add_argument("--log-dir", default=None, help="keep each boot's console here")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args()

    accel = args.accel
    if accel == "auto":
        accel = "kvm" if kvm_usable() else "tcg"
    if accel == "tcg" and args.tsc_khz is None:
        args.tsc_khz = host_tsc_khz(os.path.join(top, "guest", "host-tsc-khz.sh"))
        if args.tsc_khz is None:
            # last resort: calibrate against the PIT; measured to hang ~4 boots in 10 under
            # TCG ("tsc: Unable to calibrate against PIT"), so expect failures
            print("warning: host TSC frequency unknown; booting without tsc_early_khz, PIT on",
                  file=sys.stderr)
            args.machine_opts = ",".join(o for o in args.machine_opts.split(",")
                                         if o and not o.startswith("pit="))

    tmp = tempfile.mkdtemp(prefix="cocoon-guest-boot.")
    passed, failed, results = 0, 0, []
    try:
        sock_path = os.path.join(tmp, "agent.sock")
        argv = build_argv(args, accel, sock_path)
        print("qemu argv:", " ".join(a if a and " " not in a else "'%s'" % a for a in argv))
        for i in range(args.runs):
            if os.path.exists(sock_path):
                os.unlink(sock_path)
            b = Boot(argv, sock_path, args.timeout, nonce=1000 + i)
            ok = b.run()
            if args.log_dir:
                os.makedirs(args.log_dir, exist_ok=True)
                with open(os.path.join(args.log_dir, "boot-%02d.log" % i), "wb") as f:
                    f.write(bytes(b.console))
            t = b.t
            print("boot %2d: %s  init %s  modules %s  echo %s  exit %s  (guest uptime at init %s,"
                  " qemu cpu %.3fs)%s" % (
                i, "ok  " if ok else "FAIL",
                *("%.3fs" % t[k] if k in t else "-" for k in ("ready", "modules", "echo", "exit")),
                "%.3fs" % b.guest["ready"] if "ready" in b.guest else "-", b.cpu or 0.0,
                "" if ok else ": " + b.error))
            if not ok or args.verbose:
                sys.stdout.write(bytes(b.console[-3000:]).decode(errors="replace"))
                sys.stdout.write("\n")
            sys.stdout.flush()
            if ok:
                passed += 1
                results.append(b)
            else:
                failed += 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    if results:
        def med(key):
            v = [r.t[key] for r in results if key in r.t]
            return "%.3fs" % statistics.median(v) if v else "-"
        gi = [r.guest["ready"] for r in results if "ready" in r.guest]
        print("median over %d good boots (%s): init %s, modules loaded %s, echo %s, qemu exit %s; "
              "guest uptime at init %s; qemu cpu %.3fs" % (
                  len(results), accel, med("ready"), med("modules"), med("echo"), med("exit"),
                  "%.3fs" % statistics.median(gi) if gi else "-",
                  statistics.median(r.cpu for r in results)))
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
