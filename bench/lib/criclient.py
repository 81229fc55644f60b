#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""CRI client pieces shared by the benchmark clients (bench/podstart,
bench/exec, bench/net, bench/pull): runtime.v1 stubs generated from
proto/api.proto at run time with Debian's python3-grpc-tools (as
tests/integration/conftest.py does), the channel, the kubelet-shaped pod and
container configs every benchmark sends to both cocoond and containerd, and
the test images. Import it (sys.path gets bench/lib) or run it:

    criclient.py stubs DIR
        generate api_pb2*.py into DIR (once per run)
    criclient.py images OUTDIR
        busybox.tar (OCI archive named IMAGE, for ctr import), busybox/ (the
        same layout, for cocoonctl image import) and pause.tar (the sandbox
        image containerd needs, named PAUSE); prints the image id
    criclient.py version --stubs DIR [--timeout S] TARGET
        one Version call (readiness probe); exit 0 if it answers
"""
import argparse
import pathlib
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
        sys.exit("criclient: protoc failed")


def load_stubs(d):
    sys.path.insert(0, str(d))
    import api_pb2
    import api_pb2_grpc
    return api_pb2, api_pb2_grpc


def channel(target):
    import grpc
    return grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 64 << 20)])


def runtime(stubs, target):
    """(api_pb2, RuntimeServiceStub, ImageServiceStub) on one channel."""
    pb, pbg = load_stubs(stubs)
    ch = channel(target)
    return pb, pbg.RuntimeServiceStub(ch), pbg.ImageServiceStub(ch)


def _namespaces(pb):
    # What the kubelet asks for by default: pod network and IPC, pid
    # namespace per container.
    return pb.NamespaceOption(network=pb.POD, pid=pb.CONTAINER, ipc=pb.POD)


def pod_config(pb, logdir, name, ctr="c"):
    """A kubelet-shaped PodSandboxConfig; its log directory (under logdir)
    is created with a subdirectory for the container named ctr."""
    uid = str(uuid.uuid4())
    ld = pathlib.Path(logdir) / ("bench_%s_%s" % (name, uid))
    (ld / ctr).mkdir(parents=True, exist_ok=True)
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace="bench", attempt=0),
        hostname=name, log_directory=str(ld),
        linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
            namespace_options=_namespaces(pb))))


def container_config(pb, image, command, ctr="c"):
    return pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name=ctr, attempt=0), image=pb.ImageSpec(image=image),
        command=list(command), log_path="%s/0.log" % ctr,
        linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(
            namespace_options=_namespaces(pb))))


def start_pod(pb, rt, logdir, name, image, handler="", command=("/bin/sleep", "3600"), ctr="c"):
    """RunPodSandbox + CreateContainer + StartContainer, timed on the client.
    Returns (pod id, container id, (run_s, create_s, start_s, total_s))."""
    pod_cfg = pod_config(pb, logdir, name, ctr)
    ctr_cfg = container_config(pb, image, command, ctr)
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
    """StopPodSandbox + RemovePodSandbox."""
    rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=300)
    rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=300)


def pss_kib(pid):
    """Proportional set size of pid (0 if it is gone)."""
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


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


def write_images(outdir):
    """The busybox image and the pause stand-in; returns the image id."""
    sys.path.insert(0, str(SRCDIR / "tests" / "integration"))
    from oci_layout import write_layout
    out = pathlib.Path(outdir)
    layer = busybox_layer()
    info = write_layout(out / "busybox", [layer], tag="1.0", ref_name=IMAGE, cmd=("/bin/sh",),
                        tar_path=out / "busybox.tar")
    # A pause stand-in: PID 1 that sleeps (containerd SIGKILLs sandboxes).
    write_layout(out / "pause", [layer], tag="3.6", ref_name=PAUSE, cmd=("/bin/sleep", "2147483647"),
                 tar_path=out / "pause.tar")
    return info["config"]


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("stubs")
    p.add_argument("dir")
    p = sub.add_parser("images")
    p.add_argument("outdir")
    p = sub.add_parser("version")
    p.add_argument("--stubs", required=True)
    p.add_argument("--timeout", type=float, default=5)
    p.add_argument("target")
    a = ap.parse_args()
    if a.cmd == "stubs":
        gen_stubs(a.dir)
    elif a.cmd == "images":
        print(write_images(a.outdir))
    else:
        pb, rt, _ = runtime(a.stubs, a.target)
        rt.Version(pb.VersionRequest(version="0.1.0"), timeout=a.timeout)


if __name__ == "__main__":
    main()
