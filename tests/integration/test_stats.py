"""ContainerStats, ListContainerStats, PodSandboxStats and
ListPodSandboxStats through the CRI socket with a real VM pod (TCG here):
CPU time and memory from the container's cgroup in the guest (agent
StatsContainer), the CPU rate between two samples, the writable layer (the
rootfs overlay's upper directory in guest memory, measured by the agent);
for the pod what it costs the host (its VMM's and virtiofsd's CPU time and
PSS), its processes and containers; filters, and the errors."""
import os
import time

import grpc
import pytest

from pods import RPC_TIMEOUT, code_of, pb, pod_env, skip_reason  # noqa: F401  (pod_env: fixture)

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")

BUSY = "while true; do :; done"


@pytest.fixture(scope="module")
def busy(pod_env):
    pod, cfg = pod_env.run_pod("stats", labels={"app": "stats"})
    cid = pod_env.run_ctr(pod, cfg, "spin", ["sh", "-c", BUSY], labels={"role": "spin"})
    idle = pod_env.run_ctr(pod, cfg, "idle", ["sleep", "3600"], labels={"role": "idle"})
    pod_env.wait_ctr(cid, pb.CONTAINER_RUNNING)
    pod_env.wait_ctr(idle, pb.CONTAINER_RUNNING)
    yield pod_env, pod, cfg, cid, idle
    pod_env.remove_pod(pod)


def stats(env, cid):
    return env.rt.ContainerStats(pb.ContainerStatsRequest(container_id=cid), timeout=RPC_TIMEOUT).stats


def test_cpu_memory_and_rate(busy):
    env, pod, cfg, cid, idle = busy
    s1 = stats(env, cid)
    assert s1.attributes.id == cid and s1.attributes.metadata.name == "spin"
    assert s1.attributes.labels["role"] == "spin"
    assert s1.cpu.usage_core_nano_seconds.value > 0
    assert s1.memory.working_set_bytes.value > 0 and s1.memory.usage_bytes.value >= s1.memory.working_set_bytes.value
    time.sleep(1.0)
    s2 = stats(env, cid)
    assert s2.cpu.timestamp > s1.cpu.timestamp
    used = s2.cpu.usage_core_nano_seconds.value - s1.cpu.usage_core_nano_seconds.value
    wall = s2.cpu.timestamp - s1.cpu.timestamp
    # a busy loop in a 1-vCPU guest: most of a core (TCG and the host share 2 CPUs)
    assert used > 0.2 * wall, (used, wall)
    assert s2.cpu.HasField("usage_nano_cores")
    assert 0.2e9 < s2.cpu.usage_nano_cores.value < 1.2e9, s2.cpu.usage_nano_cores.value
    # the idle container barely uses any
    i1 = stats(env, idle)
    time.sleep(0.5)
    i2 = stats(env, idle)
    assert i2.cpu.usage_core_nano_seconds.value - i1.cpu.usage_core_nano_seconds.value < 0.2 * (
        i2.cpu.timestamp - i1.cpu.timestamp)


def test_writable_layer_grows_with_what_the_container_writes(busy):
    env, pod, cfg, cid, idle = busy
    before = stats(env, idle).writable_layer
    # in a VM the layer's upper directory is in guest memory, measured by the agent
    assert before.fs_id.mountpoint == "/run/cocoon/rw/%s/upper" % idle
    r = env.rt.ExecSync(pb.ExecSyncRequest(container_id=idle, timeout=60, cmd=[
        "sh", "-c", "head -c 3000000 /dev/zero > /big; mkdir /d; for i in 1 2 3 4 5; do : > /d/f$i; done; sync"]),
        timeout=RPC_TIMEOUT)
    assert r.exit_code == 0, r.stderr
    after = stats(env, idle).writable_layer
    assert after.used_bytes.value >= before.used_bytes.value + 3000000
    assert after.inodes_used.value >= before.inodes_used.value + 7


def test_list_filters(busy):
    env, pod, cfg, cid, idle = busy
    all_ = env.rt.ListContainerStats(pb.ListContainerStatsRequest(), timeout=RPC_TIMEOUT).stats
    assert {cid, idle} <= {s.attributes.id for s in all_}
    by_pod = env.rt.ListContainerStats(pb.ListContainerStatsRequest(
        filter=pb.ContainerStatsFilter(pod_sandbox_id=pod[:12])), timeout=RPC_TIMEOUT).stats
    assert sorted(s.attributes.id for s in by_pod) == sorted([cid, idle])
    assert all(s.cpu.usage_core_nano_seconds.value > 0 for s in by_pod)
    by_label = env.rt.ListContainerStats(pb.ListContainerStatsRequest(
        filter=pb.ContainerStatsFilter(label_selector={"role": "idle"})), timeout=RPC_TIMEOUT).stats
    assert [s.attributes.id for s in by_label] == [idle]
    by_id = env.rt.ListContainerStats(pb.ListContainerStatsRequest(
        filter=pb.ContainerStatsFilter(id=cid[:10])), timeout=RPC_TIMEOUT).stats
    assert [s.attributes.id for s in by_id] == [cid]
    none = env.rt.ListContainerStats(pb.ListContainerStatsRequest(
        filter=pb.ContainerStatsFilter(pod_sandbox_id="0" * 64)), timeout=RPC_TIMEOUT).stats
    assert list(none) == []


def pod_stats(env, pod):
    return env.rt.PodSandboxStats(pb.PodSandboxStatsRequest(pod_sandbox_id=pod), timeout=RPC_TIMEOUT).stats


def pss(pid):
    with open("/proc/%d/smaps_rollup" % pid) as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("Pss:"))


def cpu_ns(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * (10**9 // os.sysconf("SC_CLK_TCK"))


def test_pod_stats_vm(busy):
    env, pod, cfg, cid, idle = busy
    info = env.pod_info(pod)
    procs = (info["vmmPid"], info["virtiofsdPid"])
    cpu_before = sum(cpu_ns(p) for p in procs)
    s1 = pod_stats(env, pod[:12])
    cpu_after = sum(cpu_ns(p) for p in procs)
    assert s1.attributes.id == pod and s1.attributes.metadata.name == "stats"
    assert s1.attributes.labels["app"] == "stats"
    lx = s1.linux
    assert {cid, idle} <= {c.attributes.id for c in lx.containers}
    assert all(c.cpu.usage_core_nano_seconds.value > 0 for c in lx.containers if c.attributes.id in (cid, idle))
    # the pod's cost on the host: QEMU + virtiofsd, the guest's kernel included,
    # so more than its containers use inside and about the processes' PSS
    ctr_mem = sum(c.memory.working_set_bytes.value for c in lx.containers if c.HasField("memory"))
    mem = lx.memory.working_set_bytes.value
    assert mem > ctr_mem and mem > 16 << 20, (mem, ctr_mem)
    now = pss(info["vmmPid"]) + pss(info["virtiofsdPid"])
    assert 0.5 * now < mem < 2 * now, (mem, now)
    # the host's CPU time of those processes (the guest's own clock, which the
    # containers' figures use, need not agree with it under emulation)
    assert cpu_before <= lx.cpu.usage_core_nano_seconds.value <= cpu_after, (
        cpu_before, lx.cpu.usage_core_nano_seconds.value, cpu_after)
    assert lx.process.process_count.value >= 2  # the busy shell and the sleep
    # no CNI network in this environment: loopback is not reported
    assert not lx.HasField("network") or lx.network.default_interface.name not in ("", "lo")
    time.sleep(1.0)
    s2 = pod_stats(env, pod).linux
    assert s2.cpu.timestamp > lx.cpu.timestamp
    # the busy loop keeps the VM's vCPU (one host thread under TCG) busy
    assert s2.cpu.HasField("usage_nano_cores")
    assert 0.2e9 < s2.cpu.usage_nano_cores.value < 2.5e9, s2.cpu.usage_nano_cores.value


def test_list_pod_stats_filters(busy):
    env, pod, cfg, cid, idle = busy
    ids = lambda **f: [s.attributes.id for s in env.rt.ListPodSandboxStats(pb.ListPodSandboxStatsRequest(
        filter=pb.PodSandboxStatsFilter(**f)), timeout=RPC_TIMEOUT).stats]
    everything = env.rt.ListPodSandboxStats(pb.ListPodSandboxStatsRequest(), timeout=RPC_TIMEOUT).stats
    assert pod in [s.attributes.id for s in everything]
    assert ids(id=pod[:12]) == [pod]
    assert ids(label_selector={"app": "stats"}) == [pod]
    assert ids(label_selector={"app": "nope"}) == []
    assert ids(id="0" * 64) == []
    for bad, code in (("", grpc.StatusCode.INVALID_ARGUMENT), ("f" * 64, grpc.StatusCode.NOT_FOUND)):
        with pytest.raises(grpc.RpcError) as e:
            pod_stats(env, bad)
        assert code_of(e.value) == code, (bad, e.value)


def test_exited_container_and_errors(busy):
    env, pod, cfg, cid, idle = busy
    done = env.run_ctr(pod, cfg, "done", ["true"])
    env.wait_ctr(done, pb.CONTAINER_EXITED)
    s = stats(env, done)
    assert s.attributes.id == done
    assert not s.HasField("cpu") and not s.HasField("memory")  # no cgroup once it exited
    assert s.writable_layer.fs_id.mountpoint
    for bad, code in (("", grpc.StatusCode.INVALID_ARGUMENT), ("f" * 64, grpc.StatusCode.NOT_FOUND)):
        with pytest.raises(grpc.RpcError) as e:
            stats(env, bad)
        assert code_of(e.value) == code, (bad, e.value)


def test_host_mode_pod(pod_env):
    """A host-network pod's container runs on the host under cocoon-agent
    --host: CPU/memory from its cgroup there, the writable layer is cocoond's
    overlay upper directory on the host."""
    env = pod_env
    pod, cfg = env.run_pod("stats-host", network=pb.NODE)
    try:
        cid = env.run_ctr(pod, cfg, "c", ["sleep", "3600"])
        env.wait_ctr(cid, pb.CONTAINER_RUNNING)
        s = stats(env, cid)
        assert s.cpu.usage_core_nano_seconds.value > 0
        # on a cgroup v1 host (this CI machine) the host agent reads no memory
        # counters: then memory is left out, never reported as 0
        if s.HasField("memory"):
            assert s.memory.working_set_bytes.value > 0
        wl = s.writable_layer
        assert wl.fs_id.mountpoint.startswith(str(env.state_dir)) and wl.fs_id.mountpoint.endswith("/upper")
        r = env.rt.ExecSync(pb.ExecSyncRequest(container_id=cid, timeout=60, cmd=[
            "sh", "-c", "head -c 2000000 /dev/zero > /big; sync"]), timeout=RPC_TIMEOUT)
        assert r.exit_code == 0, r.stderr
        assert stats(env, cid).writable_layer.used_bytes.value >= wl.used_bytes.value + 2000000
        # the pod: its containers' sums, no network of its own
        ps = pod_stats(env, pod).linux
        assert [c.attributes.id for c in ps.containers] == [cid]
        assert ps.cpu.usage_core_nano_seconds.value >= ps.containers[0].cpu.usage_core_nano_seconds.value > 0
        if ps.HasField("process"):  # not on a cgroup v1 host (as memory above)
            assert ps.process.process_count.value >= 1
        assert not ps.HasField("network")
        # a stopped pod: not listed, and nothing running to report
        env.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=RPC_TIMEOUT)
        assert pod not in [s.attributes.id for s in env.rt.ListPodSandboxStats(
            pb.ListPodSandboxStatsRequest(), timeout=RPC_TIMEOUT).stats]
        st = pod_stats(env, pod)
        assert st.attributes.id == pod
        assert not st.linux.HasField("cpu") and not st.linux.HasField("process")
    finally:
        env.remove_pod(pod)


def test_stream_twins_of_the_list_methods(busy):
    """StreamPodSandboxes/Containers/Images/ContainerStats/PodSandboxStats
    answer what their List twin answers (here one batch each; filters
    included), and nothing at all when nothing matches."""
    env, pod, cfg, cid, idle = busy

    def streamed(method, req, field):
        msgs = list(getattr(env.rt if method != "StreamImages" else env.im, method)(req, timeout=RPC_TIMEOUT))
        assert all(len(getattr(m, field)) > 0 for m in msgs)  # no empty batches
        return [x for m in msgs for x in getattr(m, field)]

    def key(x):
        return x.attributes.id if hasattr(x, "attributes") else x.id

    cases = [
        ("StreamPodSandboxes", pb.StreamPodSandboxesRequest, "pod_sandboxes", "ListPodSandbox",
         pb.ListPodSandboxRequest, "items", pb.PodSandboxFilter(label_selector={"app": "stats"})),
        ("StreamContainers", pb.StreamContainersRequest, "containers", "ListContainers",
         pb.ListContainersRequest, "containers", pb.ContainerFilter(pod_sandbox_id=pod)),
        ("StreamContainerStats", pb.StreamContainerStatsRequest, "container_stats", "ListContainerStats",
         pb.ListContainerStatsRequest, "stats", pb.ContainerStatsFilter(pod_sandbox_id=pod)),
        ("StreamPodSandboxStats", pb.StreamPodSandboxStatsRequest, "pod_sandbox_stats", "ListPodSandboxStats",
         pb.ListPodSandboxStatsRequest, "stats", pb.PodSandboxStatsFilter(id=pod)),
    ]
    for smethod, sreq, sfield, lmethod, lreq, lfield, flt in cases:
        want = [key(x) for x in getattr(env.rt.__getattribute__(lmethod)(lreq(), timeout=RPC_TIMEOUT), lfield)]
        assert want, lmethod
        assert [key(x) for x in streamed(smethod, sreq(), sfield)] == want, smethod
        want_f = [key(x) for x in getattr(env.rt.__getattribute__(lmethod)(lreq(filter=flt), timeout=RPC_TIMEOUT),
                                          lfield)]
        assert want_f and [key(x) for x in streamed(smethod, sreq(filter=flt), sfield)] == want_f, smethod
    assert {c for c in [key(x) for x in streamed("StreamContainers", pb.StreamContainersRequest(
        filter=pb.ContainerFilter(pod_sandbox_id=pod)), "containers")]} >= {cid, idle}
    assert streamed("StreamContainers", pb.StreamContainersRequest(
        filter=pb.ContainerFilter(id="0" * 64)), "containers") == []
    images = [i.id for i in env.im.ListImages(pb.ListImagesRequest(), timeout=RPC_TIMEOUT).images]
    assert images and [i.id for i in streamed("StreamImages", pb.StreamImagesRequest(), "images")] == images
