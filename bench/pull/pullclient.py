#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""CRI client and sampler for bench/pull/run.sh (Debian's python3-grpcio; the
runtime.v1 stubs from bench/lib/criclient.py stubs). The client's own cost
is negligible next to a 200 MB pull; what is measured is the daemon's (by
pid).

    pullclient.py pull --stubs DIR --pid PID --image REF [--expect-id ID] TARGET
        one PullImage timed end to end (client side), the daemon's VmRSS
        polled every --interval seconds (peak), its CPU time (own + reaped
        children, /proc/PID/stat) across the call, then ListImages must show
        REF with the returned id. Prints one RESULT key=value line.
    pullclient.py phases LOG
        cocoond's debug log -> RESULT fetch_s=... commit_s=... (see README)
"""
import argparse
import datetime
import os
import pathlib
import re
import sys
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "lib"))
import criclient as cc  # noqa: E402


def status_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    fields = s[s.rindex(")") + 2:].split()
    # utime stime cutime cstime: fields 14-17 of stat, 12-15 after "(comm) "
    return sum(int(x) for x in fields[11:15])


class Sampler(threading.Thread):
    """Polls the daemon's VmRSS (peak) and, per thread, /proc/PID/task/*/schedstat
    (time on a CPU, time runnable but waiting for one; a thread's last
    reading is kept after it exits). timeline: (unix time, run_ns, runq_ns)."""

    def __init__(self, pid, interval):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak = 0
        self.n = 0
        self.sched = {}
        self.sched0 = None
        self.timeline = []
        self.stop_ev = threading.Event()
        self.error = None

    def read_sched(self):
        base = "/proc/%d/task" % self.pid
        for tid in os.listdir(base):
            try:
                with open("%s/%s/schedstat" % (base, tid)) as f:
                    run, wait = (int(x) for x in f.read().split()[:2])
            except (OSError, ValueError):
                continue  # the thread just exited
            self.sched[tid] = (run, wait)
        return (sum(v[0] for v in self.sched.values()), sum(v[1] for v in self.sched.values()))

    def sample(self):
        rss = status_kib(self.pid, "VmRSS")
        self.peak = max(self.peak, rss)
        run, wait = self.read_sched()
        self.timeline.append((time.time(), run, wait))
        self.n += 1

    def run(self):
        nxt = time.monotonic()
        try:
            while not self.stop_ev.is_set():
                self.sample()
                nxt += self.interval
                self.stop_ev.wait(max(0.0, nxt - time.monotonic()))
        except OSError as e:
            self.error = e


def cmd_pull(a):
    pb, rt, im = cc.runtime(a.stubs, a.target)
    rt.Version(pb.VersionRequest(version="0.1.0"), timeout=10)  # connected before timing
    rss0 = status_kib(a.pid, "VmRSS")
    hz = os.sysconf("SC_CLK_TCK")
    s = Sampler(a.pid, a.interval)
    s.sample()  # the baseline: RSS and per-thread schedstat before the call
    cpu0 = cpu_ticks(a.pid)
    s.start()
    t0 = time.perf_counter()
    resp = im.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=a.image)), timeout=a.timeout)
    wall = time.perf_counter() - t0
    s.stop_ev.set()
    s.join()
    s.sample()
    cpu1 = cpu_ticks(a.pid)
    hwm = status_kib(a.pid, "VmHWM")
    if s.error:
        sys.exit("pullclient: sampling pid %d failed: %s" % (a.pid, s.error))
    if a.expect_id and resp.image_ref != a.expect_id:
        sys.exit("pullclient: PullImage returned %r, expected %r" % (resp.image_ref, a.expect_id))
    listed = [i for i in im.ListImages(pb.ListImagesRequest(), timeout=30).images
              if a.image in i.repo_tags]
    if len(listed) != 1 or (a.expect_id and listed[0].id != a.expect_id):
        sys.exit("pullclient: ListImages does not show %s%s after the pull: %r"
                 % (a.image, " as " + a.expect_id if a.expect_id else "", listed))
    t_first, t_last = s.timeline[0], s.timeline[-1]
    if a.timeline:
        with open(a.timeline, "w") as f:
            for t, run, wait in s.timeline:
                f.write("%.6f %d %d\n" % (t, run - t_first[1], wait - t_first[2]))
    print("RESULT wall_s=%.3f rss_before_kib=%d peak_rss_kib=%d hwm_kib=%d cpu_s=%.2f "
          "oncpu_s=%.2f runq_s=%.2f samples=%d image_ref=%s listed_size=%d"
          % (wall, rss0, s.peak, hwm, (cpu1 - cpu0) / hz, (t_last[1] - t_first[1]) / 1e9,
             (t_last[2] - t_first[2]) / 1e9, s.n, resp.image_ref, listed[0].size))


TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z ")


def cmd_phases(a):
    """start: 'rpc=PullImage api=... start' (dispatch.c); each layer blob's
    'layer sha256:...: downloaded' (pull.c, debug); 'rpc=PullImage image=...
    id=...' (rpc-pull-image.c, after image_commit: unpack + record)."""
    start = last_dl = done = None
    n_dl = 0
    for line in open(a.log, errors="replace"):
        m = TS.match(line)
        if not m:
            continue
        t = datetime.datetime.fromisoformat(m.group(1)).timestamp()
        if re.search(r" rpc=PullImage api=\S+ start\b", line):
            start = t
        elif re.search(r" layer sha256:[0-9a-f]{64}: downloaded", line):
            last_dl = t
            n_dl += 1
        elif "rpc=PullImage image=" in line:
            done = t
    if start is None or last_dl is None or done is None:
        sys.exit("pullclient: phases not found in %s (start=%s last_download=%s done=%s;"
                 " is cocoond at --log-level debug?)" % (a.log, start, last_dl, done))
    out = "RESULT fetch_s=%.3f commit_s=%.3f layers_downloaded=%d" % (
        last_dl - start, done - last_dl, n_dl)
    if a.timeline:
        tl = [tuple(float(x) for x in line.split()) for line in open(a.timeline)]

        def at(t):  # cumulative (run, runq) at the last sample not after t
            best = tl[0]
            for row in tl:
                if row[0] <= t:
                    best = row
            return best[1] / 1e9, best[2] / 1e9
        for name, t0, t1 in (("fetch", start, last_dl), ("commit", last_dl, done)):
            r0, q0 = at(t0)
            r1, q1 = at(t1)
            out += " %s_oncpu_s=%.2f %s_runq_s=%.2f" % (name, r1 - r0, name, q1 - q0)
    print(out)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pull")
    p.add_argument("--stubs", required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--expect-id")
    p.add_argument("--interval", type=float, default=0.02)
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--timeline", help="write 'unix_time run_ns runq_ns' per sample here")
    p.add_argument("target")
    p = sub.add_parser("phases")
    p.add_argument("--timeline", help="from pull --timeline: CPU/run-queue time per phase")
    p.add_argument("log")
    a = ap.parse_args()
    if a.cmd == "pull":
        cmd_pull(a)
    else:
        cmd_phases(a)


if __name__ == "__main__":
    main()
