#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""CRI client for bench/podstart/run.sh (Debian's python3-grpcio; stubs,
images and the kubelet-shaped pod and container configs come from
bench/lib/criclient.py). The same requests go to cocoond and to containerd.

    podclient.py podstart --stubs DIR --rounds N --image REF --logdir D TARGET
        N times: RunPodSandbox + CreateContainer + StartContainer, timed end
        to end (client side), then StopPodSandbox + RemovePodSandbox (not
        timed). Prints one ROUND line per round and a RESULT line (medians).
    podclient.py mem --stubs DIR --pods N --image REF --logdir D --kind K TARGET
        N pods, each with one idle container; after --settle seconds the PSS
        (/proc/PID/smaps_rollup) of each pod's host processes: for cocoond
        (K=cocoon) the VMM and virtiofsd from PodSandboxStatus verbose info,
        for containerd (K=containerd) the shim, pause and container process.
        Prints RESULT mean_pss_kib=... then removes the pods.
"""
import argparse
import json
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "lib"))
import criclient as cc  # noqa: E402
from criclient import IMAGE, pss_kib, start_pod, stop_pod  # noqa: E402


def cmd_podstart(a):
    pb, rt, _ = cc.runtime(a.stubs, a.target)
    rows = []
    for i in range(a.warmup + a.rounds):
        if a.wait_template and a.warmup and i == a.warmup:
            # cocoond's [vm] template: built in the background once the
            # first VM pod (the warm-up) started; the timed pods use it
            t0 = time.monotonic()
            while True:
                st = rt.Status(pb.StatusRequest(verbose=True), timeout=60)
                tmpl = json.loads(st.info.get("runtime", "{}")).get("vm_template", {})
                if any(t.get("state") == "ready" for t in tmpl.get("templates", [])):
                    break
                if time.monotonic() - t0 > 120:
                    sys.exit("podclient: cocoond's template not ready after 120 s")
                time.sleep(0.1)
            print("TEMPLATEWAIT %.3f" % (time.monotonic() - t0), flush=True)
        if a.wait_pool:
            # cocoond's VM pool: start each pod when a VM waits (its record
            # is <root>/sandboxes/<id>/pool.json), as pods that do not arrive
            # back to back find it
            t0 = time.monotonic()
            sb = pathlib.Path(a.wait_pool) / "sandboxes"
            while not any(sb.glob("*/pool.json")):
                if time.monotonic() - t0 > 120:
                    sys.exit("podclient: no VM in cocoond's pool after 120 s")
                time.sleep(0.05)
            print("POOLWAIT %d %.3f" % (i, time.monotonic() - t0), flush=True)
        pod, cid, t = start_pod(pb, rt, a.logdir, "ps-%d" % i, a.image, a.handler)
        if i == 0:
            r = rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod, verbose=True), timeout=60)
            try:
                info = json.loads(r.info.get("info", "{}"))
            except ValueError:
                info = {}
            if info.get("accel"):
                print("ACCEL %s" % info["accel"], flush=True)
        st = rt.ContainerStatus(pb.ContainerStatusRequest(container_id=cid), timeout=60).status
        if st.state != pb.CONTAINER_RUNNING:
            sys.exit("podclient: round %d: container is %s, not RUNNING" % (i, pb.ContainerState.Name(st.state)))
        stop_pod(pb, rt, pod)
        if i < a.warmup:
            print("WARMUP %d run_s=%.3f create_s=%.3f start_s=%.3f total_s=%.3f" % ((i,) + t), flush=True)
            continue
        rows.append(t)
        print("ROUND %d run_s=%.3f create_s=%.3f start_s=%.3f total_s=%.3f" % ((i - a.warmup,) + t), flush=True)
    med = [statistics.median(r[k] for r in rows) for k in range(4)]
    tot = [r[3] for r in rows]
    print("RESULT run_s=%.3f create_s=%.3f start_s=%.3f total_s=%.3f min_s=%.3f max_s=%.3f"
          % (med[0], med[1], med[2], med[3], min(tot), max(tot)))


def ppid(pid):
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    return int(s[s.rindex(")") + 2:].split()[1])


def cmd_mem(a):
    pb, rt, _ = cc.runtime(a.stubs, a.target)
    pods = []
    try:
        for i in range(a.pods):
            pod, cid, _ = start_pod(pb, rt, a.logdir, "mem-%d" % i, a.image, a.handler)
            pods.append((pod, cid))
        time.sleep(a.settle)
        per_pod, parts = [], []
        for pod, cid in pods:
            info = json.loads(rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod, verbose=True),
                                                  timeout=60).info["info"])
            if a.kind == "cocoon":
                pids = [info.get("vmmPid", 0), info.get("virtiofsdPid", 0)]
                if not all(pids):
                    sys.exit("podclient: pod %s: no VMM/virtiofsd pid in verbose info: %s" % (pod[:12], info))
            else:
                pause = info["pid"]
                cinfo = json.loads(rt.ContainerStatus(pb.ContainerStatusRequest(container_id=cid, verbose=True),
                                                      timeout=60).info["info"])
                pids = [ppid(pause), pause, cinfo["pid"]]
            kib = [pss_kib(p) for p in pids]
            per_pod.append(sum(kib))
            parts.append(kib)
            print("POD %s pids=%s pss_kib=%s" % (pod[:12], ",".join(map(str, pids)), ",".join(map(str, kib))),
                  flush=True)
        names = ["vmm", "virtiofsd"] if a.kind == "cocoon" else ["shim", "pause", "container"]
        split = ",".join("%s:%d" % (n, statistics.mean(k[i] for k in parts)) for i, n in enumerate(names))
        print("RESULT mean_pss_kib=%d min_pss_kib=%d max_pss_kib=%d pods=%d split_kib=%s"
              % (statistics.mean(per_pod), min(per_pod), max(per_pod), len(per_pod), split))
    finally:
        for pod, _ in pods:
            try:
                stop_pod(pb, rt, pod)
            except Exception as e:  # noqa: BLE001 - keep removing the others
                print("podclient: removing %s: %s" % (pod[:12], e), file=sys.stderr)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("podstart", "mem"):
        p = sub.add_parser(name)
        p.add_argument("--stubs", required=True)
        p.add_argument("target")
        p.add_argument("--image", default=IMAGE)
        p.add_argument("--logdir", required=True)
        p.add_argument("--handler", default="")
        if name == "podstart":
            p.add_argument("--rounds", type=int, default=10)
            p.add_argument("--warmup", type=int, default=1)
            p.add_argument("--wait-pool", default="", help="cocoond root: wait for a pooled VM before each pod")
            p.add_argument("--wait-template", action="store_true",
                           help="wait for cocoond's template after the warm-up rounds")
        else:
            p.add_argument("--pods", type=int, default=10)
            p.add_argument("--settle", type=float, default=10)
            p.add_argument("--kind", choices=("cocoon", "containerd"), required=True)
    a = ap.parse_args()
    {"podstart": cmd_podstart, "mem": cmd_mem}[a.cmd](a)


if __name__ == "__main__":
    main()
