#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""CRI client and traffic generator for bench/net/run.sh (Debian's
python3-grpcio; stubs and the kubelet-shaped pod and container configs from
bench/lib/criclient.py). The same requests go to cocoond and to containerd.

    netclient.py pod --stubs DIR --image REF --logdir D --size-mib N TARGET
        RunPodSandbox + a busybox container serving, on the pod IP:
          5001  sink (reads to EOF, then closes)
          5002  echo (cat)
          5003  source (sends N MiB of zeros, then closes)
        Prints "POD <id> <ip> run_s=<RunPodSandbox seconds>".
    netclient.py remove --stubs DIR TARGET ID
    netclient.py starts --stubs DIR --rounds N --logdir D TARGET
        N times RunPodSandbox alone (no container), then Stop + Remove;
        prints one ROUND line per pod (id, seconds) and RESULT run_s=<median>.
    netclient.py logtimes LOG ID...
        From cocoond's debug log, per pod: RunPodSandbox as the server timed
        it, from the RPC's start to "pod network: ID ..." (netns, CNI ADD,
        taps: the host side of the network setup), and the CNI plugins' own
        ADD times. Prints RESULT with the medians.
    netclient.py traffic --ip IP --size-mib N --pings N [--repeat R]
        Host <-> pod over TCP: throughput host->pod (5001) and pod->host
        (5003), best of R, and round-trip latency of 1-byte messages (5002,
        TCP_NODELAY; median, p99). Prints RESULT tx_mbit=.. rx_mbit=..
        rtt_med_us=.. rtt_p99_us=..
"""
import argparse
import socket
import statistics
import sys
import time
import pathlib

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "lib"))
import criclient as cc  # noqa: E402

SERVE = ("nc -ll -p 5001 -e /bin/sh -c 'cat >/dev/null' & "
         "nc -ll -p 5003 -e /bin/sh -c 'head -c %d /dev/zero' & "
         "exec nc -ll -p 5002 -e /bin/cat")


def cmd_pod(a):
    pb, rt, _ = cc.runtime(a.stubs, a.target)
    pod, _, t = cc.start_pod(pb, rt, a.logdir, "netbench", a.image,
                             command=["/bin/sh", "-c", SERVE % (a.size_mib << 20)], ctr="srv")
    run_s = t[0]
    ip = rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod), timeout=60).status.network.ip
    if not ip:
        sys.exit("netclient: pod %s has no IP" % pod[:12])
    # Wait until the echo port answers.
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection((ip, 5002), timeout=2).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                sys.exit("netclient: %s:5002 does not answer" % ip)
            time.sleep(0.2)
    print("POD %s %s run_s=%.3f" % (pod, ip, run_s))


def cmd_remove(a):
    pb, rt, _ = cc.runtime(a.stubs, a.target)
    cc.stop_pod(pb, rt, a.id)


def cmd_starts(a):
    pb, rt, _ = cc.runtime(a.stubs, a.target)
    times = []
    for i in range(a.warmup + a.rounds):
        cfg = cc.pod_config(pb, a.logdir, "start-%d" % i, "srv")
        t0 = time.monotonic()
        pod = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg), timeout=300).pod_sandbox_id
        t = time.monotonic() - t0
        cc.stop_pod(pb, rt, pod)
        if i < a.warmup:
            print("WARMUP %s run_s=%.3f" % (pod, t), flush=True)
            continue
        times.append(t)
        print("ROUND %s run_s=%.3f" % (pod, t), flush=True)
    print("RESULT run_s=%.3f" % statistics.median(times))


def throughput(ip, port, nbytes, send):
    s = socket.create_connection((ip, port), timeout=60)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    buf = b"\0" * (256 << 10)
    t0 = time.monotonic()
    got = 0
    if send:
        left = nbytes
        while left:
            n = s.send(buf[:min(left, len(buf))])
            left -= n
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):
            pass           # the sink closes once it has read everything
        got = nbytes
    else:
        while True:
            d = s.recv(1 << 20)
            if not d:
                break
            got += len(d)
    dt = time.monotonic() - t0
    s.close()
    if got != nbytes:
        sys.exit("netclient: %s:%d moved %d of %d bytes" % (ip, port, got, nbytes))
    return nbytes * 8 / dt / 1e6


def latency(ip, n):
    s = socket.create_connection((ip, 5002), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rtts = []
    for i in range(n + 50):
        t0 = time.perf_counter_ns()
        s.sendall(b"x")
        if s.recv(16) != b"x":
            sys.exit("netclient: bad echo")
        if i >= 50:                  # warm-up
            rtts.append((time.perf_counter_ns() - t0) / 1000)
    s.close()
    rtts.sort()
    return statistics.median(rtts), rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))]


def cmd_traffic(a):
    n = a.size_mib << 20
    tx = max(throughput(a.ip, 5001, n, True) for _ in range(a.repeat))
    rx = max(throughput(a.ip, 5003, n, False) for _ in range(a.repeat))
    med, p99 = latency(a.ip, a.pings)
    print("RESULT tx_mbit=%.0f rx_mbit=%.0f rtt_med_us=%.0f rtt_p99_us=%.0f" % (tx, rx, med, p99))


def ts_s(line):
    t = line.split(" ", 1)[0].rstrip("Z")
    hms = t.split("T")[1]
    h, m, sec = hms.split(":")
    return int(h) * 3600 + int(m) * 60 + float(sec)


def cmd_logtimes(a):
    ids = set(a.ids)
    start, last_id = None, None
    rpc, net, cni = {}, {}, {}
    with open(a.log, errors="replace") as f:
        for line in f:
            if "rpc=RunPodSandbox api=v1 start" in line:
                start = ts_s(line)
            elif "rpc=RunPodSandbox pod=" in line:
                last_id = line.split("rpc=RunPodSandbox pod=")[1].split()[0]
            elif "rpc=RunPodSandbox api=v1 code=OK duration_us=" in line and last_id in ids:
                rpc[last_id] = int(line.split("duration_us=")[1].split()[0]) / 1000
            elif "pod network: " in line and start is not None:
                pid = line.split("pod network: ")[1].split()[0]
                if pid in ids and "netns=" in line:
                    net[pid] = (ts_s(line) - start) * 1000
            elif "cni: ADD plugin=" in line and " container=" in line:
                pid = line.split(" container=")[1].split()[0]
                if pid in ids:
                    cni[pid] = cni.get(pid, 0) + int(line.split(" ms=")[1].split()[0])
    for i in a.ids:
        f = lambda v: "n/a" if v is None else "%.1f" % v  # noqa: E731
        print("POD %s rpc_ms=%s net_host_ms=%s cni_add_ms=%s" % (i[:12], f(rpc.get(i)), f(net.get(i)), f(cni.get(i))))
    if not net:
        sys.exit("netclient: no 'pod network:' lines for these pods in %s (run cocoond with --log-level debug)"
                 % a.log)
    med = lambda d: statistics.median(d.values()) if d else 0  # noqa: E731
    print("RESULT rpc_ms=%.0f net_host_ms=%.0f cni_add_ms=%.0f" % (med(rpc), med(net), med(cni)))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pod")
    p.add_argument("--stubs", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--logdir", required=True)
    p.add_argument("--size-mib", type=int, default=64)
    p.add_argument("target")
    p = sub.add_parser("remove")
    p.add_argument("--stubs", required=True)
    p.add_argument("target")
    p.add_argument("id")
    p = sub.add_parser("starts")
    p.add_argument("--stubs", required=True)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--logdir", required=True)
    p.add_argument("target")
    p = sub.add_parser("logtimes")
    p.add_argument("log")
    p.add_argument("ids", nargs="+")
    p = sub.add_parser("traffic")
    p.add_argument("--ip", required=True)
    p.add_argument("--size-mib", type=int, default=64)
    p.add_argument("--pings", type=int, default=2000)
    p.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    {"pod": cmd_pod, "remove": cmd_remove, "starts": cmd_starts, "traffic": cmd_traffic, "logtimes": cmd_logtimes}[a.cmd](a)


if __name__ == "__main__":
    main()
