#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""CRI client for bench/podstart/run.sh (Debian's python3-grpcio; runtime.v1
stubs generated from proto/api.proto at run time, as bench/pull/pullclient.py
does). The same requests go to cocoond and to containerd: kubelet-shaped pod
and container configs (log directory, NAME/ATTEMPT.log, pid namespace per
container).

    podclient.py stubs DIR
    podclient.py images OUTDIR
        busybox.tar (OCI archive named IMAGE, for ctr import), busybox/ (the
        same layout, for cocoonctl image import) and pause.tar (the sandbox
        image containerd needs, named registry.k8s.io/pause:3.6)
    podclient.py version --stubs DIR TARGET
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
import os
import pathlib
import statistics
import subprocess
import sys
import time
import uuid

SRCDIR = pathlib.Path(__file__).resolve().parents[2]
IMAGE = "example.com/bench/busybox:1.0"
PAUSE = "registry.k8s.io/pause:3.6"


def gen_stubs(outdir):
    outdir = pathlib.Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "api.proto").write_text((SRCDIR / "proto" / "api.proto").read_text())
    from grpc_tools import protoc
    import grpc_tools
    include = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    rc = protoc.main(["protoc", "-I%s" % outdir, "-I%s" % include, "--python_out=%s" % outdir,
                      "--grpc_python_out=%s" % outdir, str(outdir / "api.proto")])
    if rc != 0:
        sys.exit("podclient: protoc failed")


def load_stubs(d):
    sys.path.insert(0, str(d))
    import api_pb2
    import api_pb2_grpc
    return api_pb2, api_pb2_grpc


def runtime(stubs, target):
    import grpc
    pb, pbg = load_stubs(stubs)
    ch = grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 64 << 20)])
    return pb, pbg.RuntimeServiceStub(ch), pbg.ImageServiceStub(ch)


def busybox_layer():
    sys.path.insert(0, str(SRCDIR / "tests" / "integration"))
    from oci_layout import layer_tar
    bb = pathlib.Path("/bin/busybox").read_bytes()
    files = [("bin", None, 0o755, None), ("bin/busybox", bb, 0o755, None)]
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True, check=True).stdout.split()
    files += [("bin/" + a, None, 0o777, "busybox") for a in sorted(set(applets)) if a != "busybox" and "/" not in a]
    for d in ("etc", "proc", "sys", "dev", "tmp", "root", "var", "run"):
        files.append((d, None, 0o755, None))
    files.append(("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644, None))
    files.append(("etc/group", b"root:x:0:\n", 0o644, None))
    return layer_tar(files)


def cmd_images(a):
    sys.path.insert(0, str(SRCDIR / "tests" / "integration"))
    from oci_layout import write_layout
    out = pathlib.Path(a.outdir)
    layer = busybox_layer()
    info = write_layout(out / "busybox", [layer], tag="1.0", ref_name=IMAGE, cmd=("/bin/sh",),
                        tar_path=out / "busybox.tar")
    # A pause stand-in: PID 1 that sleeps (containerd SIGKILLs sandboxes).
    write_layout(out / "pause", [layer], tag="3.6", ref_name=PAUSE, cmd=("/bin/sleep", "2147483647"),
                 tar_path=out / "pause.tar")
    print(info["config"])


def cmd_version(a):
    pb, rt, _ = runtime(a.stubs, a.target)
    rt.Version(pb.VersionRequest(version="0.1.0"), timeout=5)


def configs(pb, logdir, name, image):
    uid = str(uuid.uuid4())
    ld = pathlib.Path(logdir) / ("bench_%s_%s" % (name, uid))
    (ld / "c").mkdir(parents=True, exist_ok=True)
    pod = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace="bench", attempt=0),
        hostname=name, log_directory=str(ld),
        linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
            namespace_options=pb.NamespaceOption(network=pb.POD, pid=pb.CONTAINER, ipc=pb.POD))))
    ctr = pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name="c", attempt=0), image=pb.ImageSpec(image=image),
        command=["/bin/sleep", "3600"], log_path="c/0.log",
        linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(
            namespace_options=pb.NamespaceOption(network=pb.POD, pid=pb.CONTAINER, ipc=pb.POD))))
    return pod, ctr


def start_pod(pb, rt, logdir, name, image, handler=""):
    pod_cfg, ctr_cfg = configs(pb, logdir, name, image)
    t0 = time.monotonic()
    pod = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=pod_cfg, runtime_handler=handler), timeout=300).pod_sandbox_id
    t1 = time.monotonic()
    cid = rt.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=pod, config=ctr_cfg, sandbox_config=pod_cfg),
                             timeout=300).container_id
    t2 = time.monotonic()
    rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=300)
    t3 = time.monotonic()
    return pod, cid, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)


def stop_pod(pb, rt, pod):
    rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=300)
    rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=300)


def cmd_podstart(a):
    pb, rt, _ = runtime(a.stubs, a.target)
    rows = []
    for i in range(a.warmup + a.rounds):
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


def pss_kib(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def ppid(pid):
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    return int(s[s.rindex(")") + 2:].split()[1])


def cmd_mem(a):
    pb, rt, _ = runtime(a.stubs, a.target)
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
    p = sub.add_parser("stubs")
    p.add_argument("dir")
    p = sub.add_parser("images")
    p.add_argument("outdir")
    for name in ("version", "podstart", "mem"):
        p = sub.add_parser(name)
        p.add_argument("--stubs", required=True)
        p.add_argument("target")
        if name == "version":
            continue
        p.add_argument("--image", default=IMAGE)
        p.add_argument("--logdir", required=True)
        p.add_argument("--handler", default="")
        if name == "podstart":
            p.add_argument("--rounds", type=int, default=10)
            p.add_argument("--warmup", type=int, default=1)
        else:
            p.add_argument("--pods", type=int, default=10)
            p.add_argument("--settle", type=float, default=10)
            p.add_argument("--kind", choices=("cocoon", "containerd"), required=True)
    a = ap.parse_args()
    if a.cmd == "stubs":
        gen_stubs(a.dir)
    elif a.cmd == "images":
        cmd_images(a)
    else:
        {"version": cmd_version, "podstart": cmd_podstart, "mem": cmd_mem}[a.cmd](a)


if __name__ == "__main__":
    main()
