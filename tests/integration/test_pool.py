"""The VM pool (`[vm] pool_size`, runtime/pool.c): VMs booted ahead of
RunPodSandbox, taken by pods of the default size, their network wired up
after the fact (the CNI veth mirrored to the VM's existing tap, the guest
NIC given the veth's address), replaced in the background, and stopped when
cocoond exits or, after a SIGKILL, when it starts again. Real VMs (TCG here)
and Debian's CNI bridge plugin."""
import json
import os
import signal
import subprocess
import time

import pytest

from pods import RPC_TIMEOUT, PodEnv, assert_no_bridge, gone_or_zombie, pb, procs_mentioning, skip_reason, wait_until

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")


@pytest.fixture(scope="module")
def env():
    e = PodEnv.start_env(vm_extra="pool_size = 1\n")
    yield e
    e.remove_all()
    e.close()
    e.cleanup_dirs()
    assert_no_bridge(e)


@pytest.fixture(autouse=True)
def clean_after(env):
    yield
    env.ensure_running()
    env.remove_all()


def pooled_vms(env):
    """Ids of the VMs waiting in the pool (their record is pool.json)."""
    d = env.root_dir / "sandboxes"
    return sorted(x.name for x in d.iterdir() if (x / "pool.json").exists()) if d.is_dir() else []


def wait_pooled(env, timeout=60):
    """A VM waits in the pool: its record is written just before cocoond
    puts it in the pool, so wait for Status to count it too."""
    wait_until(lambda: pooled_vms(env), timeout, "a VM in the pool")

    def ready():
        info = json.loads(env.rt.Status(pb.StatusRequest(verbose=True), timeout=RPC_TIMEOUT).info["runtime"])
        return info["vm_pool"]["ready"] >= 1
    wait_until(ready, timeout, "the pooled VM counted ready")
    return pooled_vms(env)[0]


def qemu_of(vm_id):
    return [p for p, c in procs_mentioning("cocoon-" + vm_id).items() if "qemu-system" in c]


def test_pod_takes_the_pooled_vm_and_its_network_works(env):
    vm = wait_pooled(env)
    assert qemu_of(vm), "the pooled VM's QEMU is not running"
    info = json.loads(env.rt.Status(pb.StatusRequest(verbose=True), timeout=RPC_TIMEOUT).info["runtime"])
    assert info["vm_pool"] == {"size": 1, "ready": 1}
    t0 = time.monotonic()
    pod, cfg = env.run_pod("pooled")
    took = time.monotonic() - t0
    assert pod == vm, "the pod did not take the waiting VM"
    info = env.pod_info(pod)
    assert info["mode"] == "vm" and info["vmmPid"] in qemu_of(vm)
    cid = env.run_ctr(pod, cfg, "c", ["sleep", "3600"])
    env.wait_ctr(cid, pb.CONTAINER_RUNNING)
    # the guest NIC got the pod's address, MAC included, and reaches the bridge
    r = env.rt.ExecSync(pb.ExecSyncRequest(container_id=cid, timeout=30, cmd=[
        "sh", "-c", "cat /sys/class/net/eth0/address; ip -4 addr show eth0; "
                    "ping -c 1 -W 5 $(ip route | awk '/default/ {print $3}')"]), timeout=60)
    out = r.stdout.decode()
    assert r.exit_code == 0, out + r.stderr.decode()
    status = env.pod_status(pod).status
    assert status.network.ip and status.network.ip in out
    mac = out.split()[0]
    veth = subprocess.run(["nsenter", "--net=" + info["netns"], "ip", "-o", "link", "show", "eth0"],
                          capture_output=True, text=True, check=True).stdout
    assert "link/ether " + mac in veth, "guest NIC %s is not the veth's address: %s" % (mac, veth)
    assert " 0% packet loss" in out
    # a replacement boots in the background
    wait_until(lambda: pooled_vms(env) and pooled_vms(env)[0] != vm, 60, "a replacement VM in the pool")
    env.remove_pod(pod)
    env.assert_pod_gone(pod, info)
    print("RunPodSandbox with a pooled VM: %.3f s" % took)


def test_pod_of_another_size_boots_its_own(env):
    vm = wait_pooled(env)
    cfg = env.pod_config("sized")
    cfg.linux.resources.CopyFrom(pb.LinuxContainerResources(cpu_period=100000, cpu_quota=200000,
                                                            memory_limit_in_bytes=192 << 20))
    pod = env.rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg), timeout=RPC_TIMEOUT).pod_sandbox_id
    env.created.append(pod)
    assert pod != vm
    assert pooled_vms(env) == [vm], "the pooled VM was used or lost"
    info = env.pod_info(pod)
    assert info.get("vcpus") in (None, 2)
    env.remove_pod(pod)
    env.assert_pod_gone(pod, info)


def test_a_killed_cocoond_stops_its_pool_on_restart(env):
    vm = wait_pooled(env)
    pids = qemu_of(vm)
    assert pids
    env.restart(signal.SIGKILL)
    # the new cocoond stops the old pooled VM and removes everything of it
    wait_until(lambda: not any(os.path.exists("/proc/%d" % p) for p in pids), 30, "the old pooled QEMU gone")
    wait_until(lambda: vm not in pooled_vms(env) and not (env.state_dir / "sandboxes" / vm).exists()
               and not (env.tmp / "netns" / vm).exists(), 30, "the old pooled VM's dirs and netns gone")
    # and fills the pool again
    assert wait_pooled(env) != vm


def test_cocoond_exit_stops_the_pool(env):
    vm = wait_pooled(env)
    pids = qemu_of(vm)
    env.daemon.proc.send_signal(signal.SIGTERM)
    env.daemon.proc.wait(60)
    try:
        assert not any(os.path.exists("/proc/%d" % p) for p in pids), "pooled QEMU survived cocoond's exit"
        assert not pooled_vms(env) and not (env.state_dir / "sandboxes" / vm).exists()
        assert not (env.tmp / "netns" / vm).exists()
    finally:
        env.daemon.start()
        env.connect()


def test_a_boot_interrupted_by_sigkill_is_stopped_on_restart(env):
    """cocoond killed in the middle of RunPodSandbox (the VM booting): the
    next cocoond stops that VM (its boot.json record) and removes its dirs
    and netns; no pod of it is listed."""
    import threading
    pool = set(pooled_vms(env))
    cfg = env.pod_config("interrupted")
    cfg.linux.resources.CopyFrom(pb.LinuxContainerResources(memory_limit_in_bytes=200 << 20))  # not the pool's size
    errs = []
    t = threading.Thread(target=lambda: errs.append(
        pytest.raises(Exception, env.rt.RunPodSandbox, pb.RunPodSandboxRequest(config=cfg), timeout=RPC_TIMEOUT)))
    t.start()
    rec = env.root_dir / "sandboxes"

    def booting():
        return [d.name for d in rec.iterdir() if (d / "boot.json").exists() and d.name not in pool]
    wait_until(booting, 60, "a VM booting for the pod (boot.json)")
    vm = booting()[0]
    pids = qemu_of(vm)
    assert pids
    env.restart(signal.SIGKILL)
    t.join(30)
    wait_until(lambda: not any(os.path.exists("/proc/%d" % p) for p in pids), 30, "the interrupted pod's QEMU gone")
    wait_until(lambda: not (rec / vm).exists() and not (env.state_dir / "sandboxes" / vm).exists()
               and not (env.tmp / "netns" / vm).exists(), 30, "the interrupted pod's dirs and netns gone")
    assert vm not in [p.id for p in env.rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=RPC_TIMEOUT).items]


def test_a_pooled_vm_that_died_is_not_handed_out(env):
    vm = wait_pooled(env)
    pids = qemu_of(vm)
    for p in pids:
        os.kill(p, signal.SIGKILL)
    wait_until(lambda: all(gone_or_zombie(p) for p in pids), 30, "the pooled QEMU dead")
    pod, cfg = env.run_pod("after-death")
    assert pod != vm, "the pod got the dead VM"
    cid = env.run_ctr(pod, cfg, "c", ["sleep", "3600"])
    env.wait_ctr(cid, pb.CONTAINER_RUNNING)
    wait_until(lambda: not (env.state_dir / "sandboxes" / vm).exists() and not (env.tmp / "netns" / vm).exists(),
               30, "the dead pooled VM's dirs and netns gone")
    info = env.pod_info(pod)
    env.remove_pod(pod)
    env.assert_pod_gone(pod, info)


def test_pooled_pod_survives_a_cocoond_restart_and_concurrent_runs(env):
    """A pod that took a pooled VM is an ordinary pod: recorded, re-attached
    after SIGKILL + restart, exec works. Several RunPodSandbox at once: one
    takes the pooled VM, the others boot their own; all run."""
    import concurrent.futures
    vm = wait_pooled(env)
    pod, cfg = env.run_pod("survivor")
    assert pod == vm
    cid = env.run_ctr(pod, cfg, "c", ["sleep", "3600"])
    env.wait_ctr(cid, pb.CONTAINER_RUNNING)
    env.restart(signal.SIGKILL)
    wait_until(lambda: env.pod_status(pod).status.state == pb.SANDBOX_READY, 60, "the pod READY after restart")
    r = env.rt.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=["echo", "still-here"], timeout=30), timeout=60)
    assert r.exit_code == 0 and r.stdout == b"still-here\n"
    vm2 = wait_pooled(env)
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        pods = [p for p, _ in ex.map(lambda i: env.run_pod("burst%d" % i), range(4))]
    assert len(set(pods)) == 4 and vm2 in pods
    for p in pods:
        assert env.pod_status(p).status.state == pb.SANDBOX_READY
    for p in pods + [pod]:
        env.remove_pod(p)
