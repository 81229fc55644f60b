"""Pods started from a template (`[vm] template`, runtime/template.c): once
the first VM pod starts, cocoond boots one VM of the default size in the
background and saves its device state (its RAM stays in a file), and each
later pod of that size starts as a copy of it: its own copy of the
RAM, the template's device state loaded, its virtiofsd hot-added into a PCIe
root port, the guest's clock set and its CRNG reseeded. Real VMs (TCG here),
the lean guest kernel (`make guest`, PCIe hotplug) and Debian's CNI bridge
plugin."""
import json
import pathlib
import signal
import subprocess
import time

import pytest

from pods import (BUILDDIR, RPC_TIMEOUT, PodEnv, assert_no_bridge, gone_or_zombie, guest_images, pb, procs_mentioning,
                  skip_reason, wait_until)

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")


DEFAULT = (1, 320)  # the default VM size: 1 vCPU, 256 + 64 MiB


def templates(env):
    """{(vcpus, memoryMiB): state} from Status verbose."""
    t = status_info(env)["vm_template"]
    return {(x["vcpus"], x["memoryMiB"]): x["state"] for x in t["templates"]}


def template_file(env, name, size=DEFAULT):
    return env.root_dir / "template" / ("%d-%d" % size) / name


def template_dirs(env):
    return [env.root_dir / "template", env.state_dir / "template"]


def template_qemus(env):
    """This cocoond's template QEMUs (its socket under our state dir)."""
    mine = "%s/template/" % env.state_dir
    return [p for p, c in procs_mentioning("cocoon-template").items()
            if "qemu-system" in c and mine in c and not gone_or_zombie(p)]


@pytest.fixture(scope="module")
def env():
    e = PodEnv.start_env(vm_extra="template = true\n")
    yield e
    e.remove_all()
    e.close()
    # a clean exit removes the template's files; its QEMU exited when saved
    for d in template_dirs(e):
        assert not d.exists(), "%s left behind" % d
    assert not template_qemus(e)
    e.cleanup_dirs()
    assert_no_bridge(e)


@pytest.fixture(autouse=True)
def clean_after(env):
    yield
    env.ensure_running()
    env.remove_all()


def status_info(env):
    return json.loads(env.rt.Status(pb.StatusRequest(verbose=True), timeout=RPC_TIMEOUT).info["runtime"])


def wait_template(env, timeout=120):
    """The default size's template is built once a VM pod of that size has
    started: start one if need be."""
    if templates(env).get(DEFAULT) != "ready":
        pod, _ = env.run_pod("primer")
        env.remove_pod(pod)
    wait_until(lambda: templates(env).get(DEFAULT) == "ready", timeout, "the template VM saved")


def exec_ok(env, cid, script, timeout=30):
    r = env.rt.ExecSync(pb.ExecSyncRequest(container_id=cid, timeout=timeout, cmd=["sh", "-c", script]),
                        timeout=timeout + 30)
    out = r.stdout.decode()
    assert r.exit_code == 0, "%s: %s%s" % (script, out, r.stderr.decode())
    return out


def test_no_template_until_a_vm_pod_runs_then_the_first_pod_boots(env):
    env.restart(signal.SIGTERM)
    time.sleep(2)
    assert status_info(env)["vm_template"] == {"enabled": True, "templates": []}
    assert not (env.root_dir / "template").exists() and not template_qemus(env)
    pod, _ = env.run_pod("first")
    assert env.pod_info(pod)["startedFrom"] == "boot"
    wait_until(lambda: templates(env) == {DEFAULT: "ready"}, 120, "the template VM saved")
    env.remove_pod(pod)


def test_pod_starts_from_the_template_and_works(env):
    wait_template(env)
    assert templates(env)[DEFAULT] == "ready"
    ram = template_file(env, "ram")
    assert ram.is_file() and template_file(env, "state").is_file()
    assert not template_qemus(env), "the template's QEMU still runs after it was saved"
    t0 = time.monotonic()
    pod, cfg = env.run_pod("copy")
    took = time.monotonic() - t0
    pinfo = env.pod_info(pod)
    assert pinfo["startedFrom"] == "template"
    cid = env.run_ctr(pod, cfg, "c", ["sleep", "3600"])
    env.wait_ctr(cid, pb.CONTAINER_RUNNING)
    # the rootfs came through the hot-added virtio-fs device: the image's
    # files, and writes to the container's own layer
    out = exec_ok(env, cid, "echo written > /tmp/w && cat /tmp/w && ls /bin/busybox && date +%s")
    assert "written" in out and "/bin/busybox" in out
    # the guest clock was set from the host's, not left at the template's
    guest_now = int(out.split()[-1])
    assert abs(guest_now - time.time()) < 10, "guest clock %d vs host %d" % (guest_now, time.time())
    # the NIC got the pod's MAC and address, and reaches the bridge
    out = exec_ok(env, cid, "cat /sys/class/net/eth0/address; ip -4 addr show eth0; "
                            "ping -c 1 -W 5 $(ip route | awk '/default/ {print $3}')")
    status = env.pod_status(pod).status
    assert status.network.ip and status.network.ip in out
    veth = subprocess.run(["nsenter", "--net=" + pinfo["netns"], "ip", "-o", "link", "show", "eth0"],
                          capture_output=True, text=True, check=True).stdout
    assert "link/ether " + out.split()[0] in veth, "guest NIC is not the veth's address: %s" % veth
    assert " 0% packet loss" in out
    # the copy's RAM is its own, not the template's file
    maps = open("/proc/%d/maps" % pinfo["vmmPid"]).read()
    assert str(ram) not in maps
    env.remove_pod(pod)
    env.assert_pod_gone(pod, pinfo)
    print("RunPodSandbox from the template: %.3f s" % took)


def test_copies_are_independent_and_reseeded(env):
    wait_template(env)
    pods = [env.run_pod("twin%d" % i) for i in range(2)]
    outs = []
    for i, (pod, cfg) in enumerate(pods):
        assert env.pod_info(pod)["startedFrom"] == "template"
        cid = env.run_ctr(pod, cfg, "c", ["sleep", "3600"])
        exec_ok(env, cid, "echo twin%d > /tmp/who" % i)
        outs.append((cid, exec_ok(env, cid, "cat /tmp/who; head -c 32 /dev/urandom | od -An -tx1")))
    assert outs[0][1].split()[0] == "twin0" and outs[1][1].split()[0] == "twin1"
    # Both resumed with the template's CRNG state and ran the same steps
    # since: without the reseed they would read the same bytes.
    assert outs[0][1].split()[1:] != outs[1][1].split()[1:]
    for pod, _ in pods:
        env.remove_pod(pod)


def test_a_pod_of_another_size_boots_then_that_size_has_a_template(env):
    wait_template(env)

    def sized(name):
        cfg = env.pod_config(name)
        cfg.linux.resources.CopyFrom(pb.LinuxContainerResources(cpu_period=100000, cpu_quota=200000,
                                                                memory_limit_in_bytes=192 << 20))
        pod = env.rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg), timeout=RPC_TIMEOUT).pod_sandbox_id
        env.created.append(pod)
        return pod, cfg

    pod, cfg = sized("sized")
    info = env.pod_info(pod)
    assert info["startedFrom"] == "boot" and (info["vcpus"], info["memoryMiB"]) == (2, 256)
    cid = env.run_ctr(pod, cfg, "c", ["sleep", "3600"])
    assert "ok" in exec_ok(env, cid, "echo ok")
    # that pod had a template of its size built; the next one starts from it
    wait_until(lambda: templates(env).get((2, 256)) == "ready", 120, "the 2 vCPU 256 MiB template")
    assert templates(env)[DEFAULT] == "ready"
    pod2, cfg2 = sized("sized2")
    info2 = env.pod_info(pod2)
    assert info2["startedFrom"] == "template" and (info2["vcpus"], info2["memoryMiB"]) == (2, 256)
    cid2 = env.run_ctr(pod2, cfg2, "c", ["sleep", "3600"])
    assert exec_ok(env, cid2, "grep -c ^processor /proc/cpuinfo").strip() == "2"
    for p, i in ((pod, info), (pod2, info2)):
        env.remove_pod(p)
        env.assert_pod_gone(p, i)


def test_a_killed_cocoond_keeps_the_copies_and_rebuilds_the_template(env):
    wait_template(env)
    pod, cfg = env.run_pod("survivor")
    cid = env.run_ctr(pod, cfg, "c", ["sleep", "3600"])
    assert env.pod_info(pod)["startedFrom"] == "template"
    env.restart(signal.SIGKILL)
    # the pod and its container live on, and still say where they came from
    assert env.pod_status(pod).status.state == pb.SANDBOX_READY
    assert env.pod_info(pod)["startedFrom"] == "template"
    assert "alive" in exec_ok(env, cid, "echo alive")
    # the new cocoond builds a template of its own once a VM pod starts
    wait_template(env)
    assert not template_qemus(env)
    pod2, cfg2 = env.run_pod("after")
    assert env.pod_info(pod2)["startedFrom"] == "template"
    cid2 = env.run_ctr(pod2, cfg2, "c", ["sleep", "3600"])
    assert "ok" in exec_ok(env, cid2, "echo ok")


def test_killed_while_the_template_boots_leaves_no_qemu(env):
    """cocoond SIGKILLed while the template VM boots: that QEMU dies with it
    (a parent-death signal), and the next cocoond builds its own."""
    env.restart(signal.SIGKILL)
    pod, _ = env.run_pod("kick")
    wait_until(lambda: template_qemus(env), 30, "the template's QEMU started")
    old = template_qemus(env)
    env.restart(signal.SIGKILL)
    wait_until(lambda: all(gone_or_zombie(p) for p in old), 10, "the old template QEMU gone")
    env.remove_pod(pod)
    wait_template(env)
    assert not template_qemus(env)


def test_a_template_that_cannot_be_loaded_is_rebuilt_and_the_pod_boots(env):
    """A copy that cannot start from the template (as after a QEMU upgrade
    that changed its device state format): the pod boots its VM instead, and
    the template is built again for the next pods."""
    wait_template(env)
    state = template_file(env, "state")
    old_inode = state.stat().st_ino
    state.write_bytes(b"QEVM\0\0\0\x03not a device state")
    pod, cfg = env.run_pod("fallback")
    assert env.pod_info(pod)["startedFrom"] == "boot"
    cid = env.run_ctr(pod, cfg, "c", ["sleep", "3600"])
    assert "ok" in exec_ok(env, cid, "echo ok")
    assert "cannot start from the template" in env.daemon.log_text()
    wait_until(lambda: templates(env).get(DEFAULT) == "ready", 120, "the template built again")
    assert state.stat().st_ino != old_inode
    pod2, _ = env.run_pod("after-rebuild")
    assert env.pod_info(pod2)["startedFrom"] == "template"


def test_no_template_with_a_kernel_that_is_not_cocoons(tmp_path):
    """Copies need a guest kernel that takes a hot-plugged virtio-pci device
    (cocoon's, marked by its pcie_link_delay option): with another, cocoond
    builds no template and pods boot."""
    vmlinux, _ = guest_images(BUILDDIR)
    data = pathlib.Path(vmlinux).read_bytes()
    assert data.count(b"\0pcie_link_delay\0") == 1
    other = tmp_path / "vmlinux"
    other.write_bytes(data.replace(b"\0pcie_link_delay\0", b"\0pcie_link_delaX\0"))
    e = PodEnv.start_env(kernel=str(other))
    try:
        assert status_info(e)["vm_template"] == {"enabled": False, "templates": []}
        assert "is not cocoon's" in e.daemon.log_text()
        for i in range(2):
            pod, _ = e.run_pod("plain%d" % i)
            assert e.pod_info(pod)["startedFrom"] == "boot"
        time.sleep(1)
        assert not (e.root_dir / "template").exists() and not template_qemus(e)
    finally:
        e.remove_all()
        e.close()
        e.cleanup_dirs()
