"""Pods and containers through the CRI socket with real VMs (QEMU microvm,
TCG here, the build's cocoon-agent in the guest) and host-mode pods (the
build's cocoon-agent on the host).

One daemon and one busybox image serve the module; a READY pod ("shared") is
reused by the tests that only need some pod, every other test starts the
pods its scenario needs and checks that nothing of them is left afterwards
(processes, mounts, directories, netns).

    COCOON_BUILDDIR=/path/to/build /usr/bin/python3 -m pytest -v tests/integration/test_pods.py
"""
import ipaddress
import json
import os
import pathlib
import shutil
import signal
import subprocess
import socket
import tempfile
import threading
import time
import urllib.request
import uuid

import grpc
import pytest

from conftest import BUILDDIR, pb
from pods import (CONTAINER, IMAGE, NODE, POD, PodEnv, expect_error, log_lines, parse_log, pid_alive,  # noqa: F401
                  pod_env, skip_reason, ts_ns, wait_until)
from oci_layout import layer_tar, write_layout
from pods import busybox_rootfs_layer
from test_agent_guest import guest_images

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")

NOW_NS = lambda: time.time_ns()  # noqa: E731
S = pb.ContainerState
READY, NOTREADY = pb.SANDBOX_READY, pb.SANDBOX_NOTREADY
C_CREATED, C_RUNNING, C_EXITED = pb.CONTAINER_CREATED, pb.CONTAINER_RUNNING, pb.CONTAINER_EXITED
# A process that runs until stopped and exits 7 on SIGTERM (it is PID 1 of
# its PID namespace: without a handler SIGTERM would be ignored).
SERVE = 'trap "echo got-term; exit 7" TERM; echo started; while true; do sleep 0.1; done'


def rand_id():
    return os.urandom(32).hex()


@pytest.fixture(autouse=True)
def daemon_alive(pod_env, request):
    """Each test starts with a running cocoond; one that crashed during a
    test is reported there (its log tail) and restarted for the next."""
    pod_env.ensure_running()
    keep = set(pod_env.created)
    yield
    tail = pod_env.ensure_running()
    # A failed test's pods go, so that the next tests (and the final clean
    # check) see only their own.
    for pod in [p for p in pod_env.created if p not in keep]:
        try:
            pod_env.remove_pod(pod)
        except grpc.RpcError:
            pass
    if tail is not None:
        pytest.fail("cocoond died during %s; its log ends:\n%s" % (request.node.name, tail), pytrace=False)


@pytest.fixture(scope="module")
def shared(pod_env):
    """A READY VM pod that tests needing "some pod" share."""
    pod, cfg = pod_env.run_pod("shared", labels={"role": "shared"})
    pod_env.created.remove(pod)  # outlives the test that first asks for it
    yield pod, cfg


# ---- lifecycle ------------------------------------------------------------

def test_lifecycle_status_and_filters(pod_env, shared):
    env = pod_env
    t0 = NOW_NS()
    pod, pcfg = env.run_pod("life", labels={"app": "life", "tier": "t1"}, annotations={"note": "x y"})
    t1 = NOW_NS()
    st = env.pod_status(pod).status
    assert st.id == pod and len(pod) == 64
    assert (st.metadata.name, st.metadata.namespace, st.metadata.uid, st.metadata.attempt) == \
        ("life", "default", pcfg.metadata.uid, 0)
    assert st.state == READY
    assert t0 <= st.created_at <= t1, (t0, st.created_at, t1)
    assert dict(st.labels) == {"app": "life", "tier": "t1"}
    assert dict(st.annotations) == {"note": "x y"}
    assert st.runtime_handler == ""
    subnet = env.network["plugins"][0]["ipam"]["ranges"][0][0]["subnet"]
    assert ipaddress.ip_address(st.network.ip) in ipaddress.ip_network(subnet), (st.network.ip, subnet)
    ns = st.linux.namespaces.options
    assert (ns.network, ns.pid, ns.ipc) == (POD, CONTAINER, POD)
    info = env.pod_info(pod)
    assert info["mode"] == "vm"
    assert pid_alive(info["vmmPid"]) and pid_alive(info["virtiofsdPid"])
    assert info["vcpus"] >= 1 and info["memoryMiB"] >= 64
    assert info["accel"] in ("tcg", "kvm")
    assert info["agentEndpoint"].startswith(("unix:", "vsock:"))
    assert os.path.isdir(info["runDir"]) and pod in info["runDir"]
    assert info["netns"] and os.path.exists(info["netns"])

    cid = env.create(pod, pcfg, "main", ["sh", "-c", SERVE], labels={"c": "main"}, annotations={"ca": "1"})
    s = env.ctr_status(cid).status
    assert s.state == C_CREATED and s.created_at > 0 and s.started_at == 0 and s.finished_at == 0
    env.start(cid)
    env.wait_log(cid, lambda l: "started" in l)
    r = env.ctr_status(cid, verbose=True)
    s = r.status
    assert s.id == cid and s.state == C_RUNNING
    assert (s.metadata.name, s.metadata.attempt) == ("main", 0)
    assert s.created_at <= s.started_at <= NOW_NS() and s.finished_at == 0
    assert s.image.image == IMAGE
    assert s.image_ref == env.image_id
    assert s.log_path == os.path.join(pcfg.log_directory, "main/0.log")
    assert dict(s.labels) == {"c": "main"} and dict(s.annotations) == {"ca": "1"}
    v = json.loads(r.info["info"])
    assert v["sandboxID"] == pod
    assert v["pid"] > 1, v  # the guest's pid of the container's init

    # ListPodSandbox filters: id (full, prefix), state, label selector.
    def pods(**f):
        return sorted(p.id for p in env.rt.ListPodSandbox(
            pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(**f)), timeout=30).items)
    sid = shared[0]
    assert {pod, sid} <= set(pods())
    assert pods(id=pod) == [pod] and pods(id=pod[:10]) == [pod]
    assert pods(label_selector={"app": "life"}) == [pod]
    assert pods(label_selector={"app": "life", "tier": "t2"}) == []
    assert {pod, sid} <= set(pods(state=pb.PodSandboxStateValue(state=READY)))
    assert pod not in pods(state=pb.PodSandboxStateValue(state=NOTREADY))
    item = [p for p in env.rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=30).items if p.id == pod][0]
    assert item.metadata.name == "life" and item.state == READY and item.created_at == st.created_at
    assert dict(item.labels) == {"app": "life", "tier": "t1"}

    # ListContainers filters: id, pod, state, label selector.
    def ctrs(**f):
        return [c.id for c in env.rt.ListContainers(
            pb.ListContainersRequest(filter=pb.ContainerFilter(**f)), timeout=30).containers]
    assert ctrs(pod_sandbox_id=pod) == [cid]
    assert ctrs(pod_sandbox_id=pod[:12]) == [cid]
    assert ctrs(id=cid[:8]) == [cid]
    assert ctrs(pod_sandbox_id=pod, state=pb.ContainerStateValue(state=C_RUNNING)) == [cid]
    assert ctrs(pod_sandbox_id=pod, state=pb.ContainerStateValue(state=C_EXITED)) == []
    assert ctrs(label_selector={"c": "main"}) == [cid]
    assert ctrs(label_selector={"c": "other"}) == []
    c = [c for c in env.rt.ListContainers(pb.ListContainersRequest(), timeout=30).containers if c.id == cid][0]
    assert c.pod_sandbox_id == pod and c.image.image == IMAGE and c.image_ref == env.image_id
    assert c.state == C_RUNNING and c.metadata.name == "main"

    # Stop: SIGTERM, the trap exits 7 → EXITED, "Error".
    env.rt.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=10), timeout=60)
    s = env.ctr_status(cid).status
    assert s.state == C_EXITED and s.exit_code == 7 and s.reason == "Error", s
    assert s.started_at <= s.finished_at <= NOW_NS()
    assert "got-term" in env.wait_log(cid, lambda l: "got-term" in l)
    env.rt.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=10), timeout=60)  # idempotent
    env.rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=60)
    expect_error(grpc.StatusCode.NOT_FOUND, env.ctr_status, cid)
    env.rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=60)  # idempotent
    assert ctrs(pod_sandbox_id=pod) == []

    # Stop the pod: NOTREADY, the VM and virtiofsd gone; idempotent.
    env.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=60)
    assert env.pod_status(pod).status.state == NOTREADY
    wait_until(lambda: not pid_alive(info["vmmPid"]) and not pid_alive(info["virtiofsdPid"]), 10,
               "QEMU and virtiofsd to exit after StopPodSandbox")
    env.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=60)
    assert pods(state=pb.PodSandboxStateValue(state=NOTREADY)) == [pod]
    env.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=60)
    expect_error(grpc.StatusCode.NOT_FOUND, env.pod_status, pod)
    env.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=60)  # idempotent
    assert pod not in pods()
    env.assert_pod_gone(pod, info)


def test_remove_pod_removes_running_containers(pod_env):
    env = pod_env
    pod, pcfg = env.run_pod("rmall")
    info = env.pod_info(pod)
    cids = [env.run_ctr(pod, pcfg, "c%d" % i, ["sh", "-c", SERVE]) for i in range(2)]
    for c in cids:
        env.wait_log(c, lambda l: "started" in l)
    # No Stop first: Remove stops and removes the pod's containers.
    env.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=120)
    for c in cids:
        expect_error(grpc.StatusCode.NOT_FOUND, env.ctr_status, c)
    env.assert_pod_gone(pod, info)


# ---- logs and exit codes --------------------------------------------------

def test_log_format_partial_lines_and_exit_codes(pod_env, shared):
    env = pod_env
    pod, pcfg = shared
    long = 20000
    ok = env.run_ctr(pod, pcfg, "logs", ["sh", "-c",
                     "echo line-one; echo to-stderr >&2; head -c %d /dev/zero | tr '\\0' x; echo; "
                     "echo last; exit 0" % long])
    s = env.wait_ctr(ok, C_EXITED)
    assert s.exit_code == 0 and s.reason == "Completed", s
    assert s.created_at <= s.started_at <= s.finished_at
    recs = parse_log(s.log_path)
    assert log_lines(s.log_path, "stdout") == ["line-one", "x" * long, "last"]
    assert log_lines(s.log_path, "stderr") == ["to-stderr"]
    # The long line: partial records of at most 16 KiB, then a full one.
    big = [r for r in recs if r[1] == "stdout" and set(r[3]) == {"x"}]
    assert len(big) >= 2 and [r[2] for r in big[:-1]] == ["P"] * (len(big) - 1) and big[-1][2] == "F"
    assert all(len(r[3]) <= 16384 for r in recs)
    # Timestamps do not go backwards.
    stamps = [ts_ns(r[0]) for r in recs if r[1] == "stdout"]  # per stream: the two are pumped apart
    assert stamps == sorted(stamps)
    assert s.started_at - 10**9 <= stamps[0] and stamps[-1] <= s.finished_at + 10**9, (stamps, s)

    bad = env.run_ctr(pod, pcfg, "fails", ["sh", "-c", "echo bye; exit 3"])
    s = env.wait_ctr(bad, C_EXITED)
    assert s.exit_code == 3 and s.reason == "Error", s
    assert log_lines(s.log_path) == ["bye"]
    for c in (ok, bad):
        env.rt.RemoveContainer(pb.RemoveContainerRequest(container_id=c), timeout=60)


# ---- two containers: shared volume, shared PID namespace ------------------

# Looks for the writer's `sleep 3456` among the processes it can see (the
# number is computed so that this script's own command line never matches);
# 10 tries, ~0.7 s each under TCG.
SEEK = ("n=$((3000+456)); i=0; r=NO-WRITER; while [ $i -lt 10 ]; do "
        "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done > /tmp/ps; "
        "if grep -q \"^sleep $n \" /tmp/ps; then r=SEES-WRITER; break; fi; i=$((i+1)); sleep 0.1; done; echo $r")


def test_two_containers_shared_volume_and_pid_namespace(pod_env):
    env = pod_env
    vol = env.tmp / ("vol-" + uuid.uuid4().hex[:8])
    vol.mkdir()
    pod, pcfg = env.run_pod("two", pid=POD)
    info = env.pod_info(pod)
    assert env.pod_status(pod).status.linux.namespaces.options.pid == POD
    m = [pb.Mount(container_path="/data", host_path=str(vol))]
    writer = env.run_ctr(pod, pcfg, "writer", ["sh", "-c", "echo from-writer > /data/msg; exec sleep 3456"],
                         mounts=m, pid=POD)
    reader = env.run_ctr(pod, pcfg, "reader", ["sh", "-c",
                         "while [ ! -f /data/msg ]; do sleep 0.1; done; cat /data/msg; %s; "
                         "echo from-reader > /data/back" % SEEK], mounts=m, pid=POD)
    s = env.wait_ctr(reader, C_EXITED, timeout=90)
    assert s.exit_code == 0, (s, log_lines(s.log_path))
    assert log_lines(s.log_path) == ["from-writer", "SEES-WRITER"]
    assert [(x.container_path, x.host_path, x.readonly) for x in s.mounts] == [("/data", str(vol), False)]
    # The volume is the host directory itself, both ways.
    assert (vol / "msg").read_text() == "from-writer\n"
    assert (vol / "back").read_text() == "from-reader\n"
    # A container of the same pod in its own PID namespace does not see it.
    loner = env.run_ctr(pod, pcfg, "loner", ["sh", "-c", SEEK], pid=CONTAINER)
    s = env.wait_ctr(loner, C_EXITED, timeout=90)
    assert log_lines(s.log_path) == ["NO-WRITER"]
    assert env.ctr_status(writer).status.state == C_RUNNING
    env.remove_pod(pod)
    env.assert_pod_gone(pod, info)
    assert (vol / "msg").exists()  # the pod's removal leaves the hostPath alone


# ---- semantics and bad input ----------------------------------------------

def test_duplicates_unknown_ids_and_bad_input(pod_env, shared):
    env = pod_env
    pod, pcfg = shared
    E = grpc.StatusCode
    n_pods = len(env.rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=30).items)
    # Same pod metadata again: rejected, naming the existing pod.
    msg = expect_error(E.ALREADY_EXISTS, env.rt.RunPodSandbox, pb.RunPodSandboxRequest(config=pcfg), timeout=60)
    assert pod in msg, msg
    # Same container metadata in one pod: rejected, naming the existing one.
    cid = env.create(pod, pcfg, "dup", ["sh", "-c", "true"])
    cfg = env.ctr_config(pcfg, "dup", ["sh", "-c", "true"])
    msg = expect_error(E.ALREADY_EXISTS, env.rt.CreateContainer,
                       pb.CreateContainerRequest(pod_sandbox_id=pod, config=cfg, sandbox_config=pcfg), timeout=60)
    assert cid in msg, msg
    # Another attempt is another container.
    cid2 = env.create(pod, pcfg, "dup", ["sh", "-c", "true"], attempt=1)
    assert cid2 != cid
    for c in (cid, cid2):
        env.rt.RemoveContainer(pb.RemoveContainerRequest(container_id=c), timeout=60)

    # Unknown ids: NOT_FOUND; Remove is idempotent.
    x = rand_id()
    expect_error(E.NOT_FOUND, env.pod_status, x)
    expect_error(E.NOT_FOUND, env.rt.StopPodSandbox, pb.StopPodSandboxRequest(pod_sandbox_id=x), timeout=30)
    env.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=x), timeout=30)
    expect_error(E.NOT_FOUND, env.ctr_status, x)
    expect_error(E.NOT_FOUND, env.rt.StartContainer, pb.StartContainerRequest(container_id=x), timeout=30)
    expect_error(E.NOT_FOUND, env.rt.StopContainer, pb.StopContainerRequest(container_id=x), timeout=30)
    expect_error(E.NOT_FOUND, env.rt.ReopenContainerLog, pb.ReopenContainerLogRequest(container_id=x), timeout=30)
    env.rt.RemoveContainer(pb.RemoveContainerRequest(container_id=x), timeout=30)
    msg = expect_error(E.NOT_FOUND, env.rt.CreateContainer,
                       pb.CreateContainerRequest(pod_sandbox_id=x, config=env.ctr_config(pcfg, "orphan", ["true"]),
                                                 sandbox_config=pcfg), timeout=30)

    # An image that is not present: a clear error naming it.
    msg = expect_error(E.NOT_FOUND, env.create, pod, pcfg, "noimg", ["true"], image="example.com/nothere/img:9")
    assert "example.com/nothere/img" in msg, msg
    # A runtime handler that is not configured: NOT_FOUND naming it, no pod left.
    cfg2 = env.pod_config("nohandler")
    msg = expect_error(E.NOT_FOUND, env.rt.RunPodSandbox,
                       pb.RunPodSandboxRequest(config=cfg2, runtime_handler="no-such-handler"), timeout=60)
    assert "no-such-handler" in msg, msg

    # Malformed requests: INVALID_ARGUMENT naming the field.
    msg = expect_error(E.INVALID_ARGUMENT, env.rt.RunPodSandbox, pb.RunPodSandboxRequest(), timeout=30)
    assert "config" in msg
    msg = expect_error(E.INVALID_ARGUMENT, env.rt.RunPodSandbox,
                       pb.RunPodSandboxRequest(config=pb.PodSandboxConfig(hostname="h")), timeout=30)
    assert "metadata" in msg
    bad = env.pod_config("x")
    bad.metadata.name = ""
    msg = expect_error(E.INVALID_ARGUMENT, env.rt.RunPodSandbox, pb.RunPodSandboxRequest(config=bad), timeout=30)
    assert "metadata.name" in msg
    msg = expect_error(E.INVALID_ARGUMENT, env.rt.CreateContainer,
                       pb.CreateContainerRequest(pod_sandbox_id=pod, sandbox_config=pcfg), timeout=30)
    assert "config" in msg
    cfg = env.ctr_config(pcfg, "noimage", ["true"])
    cfg.ClearField("image")
    msg = expect_error(E.INVALID_ARGUMENT, env.rt.CreateContainer,
                       pb.CreateContainerRequest(pod_sandbox_id=pod, config=cfg, sandbox_config=pcfg), timeout=30)
    assert "image" in msg
    for bad_id in ("", "not-an-id!", "A" * 64):
        expect_error(E.INVALID_ARGUMENT, env.pod_status, bad_id)
        expect_error(E.INVALID_ARGUMENT, env.ctr_status, bad_id)
    assert len(env.rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=30).items) == n_pods
    assert env.pod_status(pod).status.state == READY


# ---- restart of cocoond -----------------------------------------------------

COUNTER = "i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done"


def numbers(path):
    return [int(x) for x in log_lines(path, "stdout")]


def test_daemon_sigkill_restart_keeps_pods_and_logs(pod_env):
    env = pod_env
    pod, pcfg = env.run_pod("survivor")
    info = env.pod_info(pod)
    cid = env.run_ctr(pod, pcfg, "counter", ["sh", "-c", COUNTER])
    path = env.ctr_status(cid).status.log_path
    env.wait_log(cid, lambda l: len(l) >= 10)
    env.restart(signal.SIGKILL)
    # The VM was not touched: same QEMU, pod READY, container RUNNING and listed.
    assert pid_alive(info["vmmPid"]) and pid_alive(info["virtiofsdPid"])
    st = env.pod_status(pod).status
    assert st.state == READY
    assert env.pod_info(pod)["vmmPid"] == info["vmmPid"]
    assert env.ctr_status(cid).status.state == C_RUNNING
    assert cid in [c.id for c in env.rt.ListContainers(pb.ListContainersRequest(), timeout=30).containers]
    assert pod in [p.id for p in env.rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=30).items]
    n0 = len(numbers(path))
    env.wait_log(cid, lambda l: len(l) >= n0 + 10)
    # ReopenContainerLog after a rotation: the output goes on in the new file.
    os.rename(path, path + ".1")
    env.rt.ReopenContainerLog(pb.ReopenContainerLogRequest(container_id=cid), timeout=30)
    wait_until(lambda: os.path.exists(path) and len(numbers(path)) >= 5, 30, "output in the reopened log")
    env.rt.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=0), timeout=60)
    got = numbers(path + ".1") + numbers(path)
    assert got == list(range(len(got))), "numbers missing or repeated around the restart: %s" % \
        [(a, b) for a, b in zip(got, got[1:]) if b != a + 1][:10]
    assert env.ctr_status(cid).status.state == C_EXITED
    env.remove_pod(pod)
    env.assert_pod_gone(pod, info)


# ---- the VM dies -------------------------------------------------------------

def test_qemu_killed_pod_notready_container_exited(pod_env):
    env = pod_env
    pod, pcfg = env.run_pod("victim")
    info = env.pod_info(pod)
    cid = env.run_ctr(pod, pcfg, "sleeper", ["sh", "-c", SERVE])
    env.wait_log(cid, lambda l: "started" in l)
    os.kill(info["vmmPid"], signal.SIGKILL)
    env.wait_pod(pod, NOTREADY, timeout=30)
    s = env.wait_ctr(cid, C_EXITED, timeout=30)
    assert s.finished_at >= s.started_at > 0
    assert pod in [p.id for p in env.rt.ListPodSandbox(pb.ListPodSandboxRequest(
        filter=pb.PodSandboxFilter(state=pb.PodSandboxStateValue(state=NOTREADY))), timeout=30).items]
    env.remove_pod(pod)
    expect_error(grpc.StatusCode.NOT_FOUND, env.pod_status, pod)
    expect_error(grpc.StatusCode.NOT_FOUND, env.ctr_status, cid)
    env.assert_pod_gone(pod, info)


# ---- concurrency ---------------------------------------------------------------

def test_ten_pods_concurrently(pod_env):
    env = pod_env
    batch = uuid.uuid4().hex[:8]
    ids, errors = [None] * 10, []

    def run(i):
        try:
            ids[i] = env.run_pod("conc-%d" % i, labels={"batch": batch})[0]
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append("pod %d: %s" % (i, e))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors, errors
        assert len(set(ids)) == 10
        listed = env.rt.ListPodSandbox(pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(
            label_selector={"batch": batch})), timeout=30).items
        assert sorted(p.id for p in listed) == sorted(ids)
        assert all(p.state == READY for p in listed)
        infos = {i: env.pod_info(i) for i in ids}
        assert len({v["vmmPid"] for v in infos.values()}) == 10
        assert all(pid_alive(v["vmmPid"]) for v in infos.values())
    finally:
        def rm(i):
            try:
                env.remove_pod(i)
            except Exception as e:  # noqa: BLE001
                errors.append("remove %s: %s" % (i[:12], e))
        threads = [threading.Thread(target=rm, args=(i,)) for i in ids if i]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors
    for i in ids:
        env.assert_pod_gone(i, infos[i])


# ---- failures in the middle of RunPodSandbox ------------------------------------

def cpio_newc(entries):
    """An uncompressed initramfs: entries (name, mode, data)."""
    out = bytearray()

    def add(name, mode, data, ino):
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join("%08X" % v for v in (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0))
        out.extend(hdr.encode() + nb)
        out.extend(b"\0" * (-len(out) % 4))
        out.extend(data)
        out.extend(b"\0" * (-len(out) % 4))
    for i, (name, mode, data) in enumerate(entries, 1):
        add(name, mode, data, i)
    add("TRAILER!!!", 0, b"", 0)
    return bytes(out)


@pytest.mark.parametrize("fault", ["kernel-missing", "agent-never-answers"])
def test_run_failure_leaves_nothing(daemon_factory, fault):
    vmlinux, _ = guest_images(BUILDDIR)
    tmp_env = None
    try:
        if fault == "kernel-missing":
            # The kernel is there when cocoond starts (whatever it checks
            # then), gone when the pod boots.
            d = pathlib.Path(tempfile.mkdtemp(prefix="cpk-", dir="/tmp"))
            kernel = d / "vmlinux"
            shutil.copy(vmlinux, kernel)
            tmp_env = PodEnv.start_env(daemon_factory, subdir=fault, import_image=False, kernel=str(kernel))
            kernel.unlink()
            d.rmdir()
        else:
            # Boots, but its /init is a shell that sleeps: no agent ever answers.
            init = b"#!/bin/busybox sh\nexec /bin/busybox sleep 100000\n"
            fd, initrd = tempfile.mkstemp(prefix="cpi-", dir="/tmp")
            os.close(fd)
            initrd = pathlib.Path(initrd)
            initrd.write_bytes(cpio_newc([("bin", 0o40755, b""),
                                          ("bin/busybox", 0o100755, pathlib.Path("/bin/busybox").read_bytes()),
                                          ("init", 0o100755, init)]))
            tmp_env = PodEnv.start_env(daemon_factory, subdir=fault, import_image=False, initrd=str(initrd),
                                       agent_timeout=5)
            tmp_env.extra_file = initrd
        env = tmp_env
        t0 = time.monotonic()
        code = None
        try:
            env.run_pod("doomed")
        except grpc.RpcError as e:
            code, msg = e.code(), e.details()
        assert code is not None, "RunPodSandbox succeeded with a %s" % fault
        if fault == "kernel-missing":
            assert "vmlinux" in msg, msg
        else:
            assert time.monotonic() - t0 < 60
            assert code == grpc.StatusCode.DEADLINE_EXCEEDED or "agent" in msg, (code, msg)
        assert len(env.rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=30).items) == 0
        env.assert_clean()
    finally:
        if tmp_env:
            tmp_env.close()
            tmp_env.cleanup_dirs()
            if getattr(tmp_env, "extra_file", None):
                tmp_env.extra_file.unlink()


# ---- host-mode pods ------------------------------------------------------------

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


PEEK = ("if [ -r /proc/%(pid)d/cmdline ]; then echo pid:$(tr '\\0' ' ' < /proc/%(pid)d/cmdline); else echo pid:none; fi; "
        "if [ -e /dev/shm/%(shm)s ]; then echo shm:$(cat /dev/shm/%(shm)s); else echo shm:none; fi")


@pytest.fixture
def shm_file():
    name = "cocoon-test-%s" % uuid.uuid4().hex[:8]
    p = pathlib.Path("/dev/shm") / name
    p.write_text("host-shm-%s" % name[-8:])
    yield name, p.read_text()
    p.unlink()


def host_pod(env, name, **ns):
    pod, pcfg = env.run_pod(name, **ns)
    info = env.pod_info(pod)
    assert info["mode"] == "host", info
    assert info["vmmPid"] == 0 and pid_alive(info["agentPid"])
    return pod, pcfg, info


def test_host_network_pod(pod_env, shm_file):
    env = pod_env
    port = free_port()
    pod, pcfg, info = host_pod(env, "hostnet", network=NODE)
    opts = env.pod_status(pod).status.linux.namespaces.options
    assert (opts.network, opts.pid, opts.ipc) == (NODE, CONTAINER, POD)
    peek = PEEK % {"pid": os.getpid(), "shm": shm_file[0]}
    env.run_ctr(pod, pcfg, "web", ["sh", "-c",
                "%s; mkdir -p /tmp/www; echo hello-from-%s > /tmp/www/index.html; "
                "exec httpd -f -p 127.0.0.1:%d -h /tmp/www" % (peek, pod[:8], port)])

    def fetch():
        try:
            return urllib.request.urlopen("http://127.0.0.1:%d/index.html" % port, timeout=2).read()
        except OSError:
            return None
    assert wait_until(fetch, 30, "httpd in the host-network pod") == ("hello-from-%s\n" % pod[:8]).encode()
    cid = env.rt.ListContainers(pb.ListContainersRequest(filter=pb.ContainerFilter(pod_sandbox_id=pod)),
                                timeout=30).containers[0].id
    # Verbose "pid": a host-mode container's main process is a host process.
    pid = json.loads(env.ctr_status(cid, verbose=True).info["info"])["pid"]
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        assert f.read().split(b"\0")[0].endswith(b"httpd")
    # Its own PID and IPC namespaces: the host's processes and shm are not there.
    lines = env.wait_log(cid, lambda l: len(l) >= 2)
    assert lines[:2] == ["pid:none", "shm:none"], lines
    env.remove_pod(pod)
    env.assert_pod_gone(pod, info)
    assert fetch() is None


def test_host_pid_pod(pod_env, shm_file):
    env = pod_env
    pod, pcfg, info = host_pod(env, "hostpid", pid=NODE)
    peek = PEEK % {"pid": os.getpid(), "shm": shm_file[0]}
    cid = env.run_ctr(pod, pcfg, "peek", ["sh", "-c", peek])
    s = env.wait_ctr(cid, C_EXITED)
    lines = log_lines(s.log_path)
    assert len(lines) == 2 and "python" in lines[0], lines   # the test's own process
    assert lines[1] == "shm:none", lines
    env.remove_pod(pod)
    env.assert_pod_gone(pod, info)


def test_host_ipc_pod(pod_env, shm_file):
    env = pod_env
    pod, pcfg, info = host_pod(env, "hostipc", ipc=NODE)
    peek = PEEK % {"pid": os.getpid(), "shm": shm_file[0]}
    cid = env.run_ctr(pod, pcfg, "peek", ["sh", "-c", peek])
    s = env.wait_ctr(cid, C_EXITED)
    assert log_lines(s.log_path) == ["pid:none", "shm:" + shm_file[1]]
    env.remove_pod(pod)
    env.assert_pod_gone(pod, info)


USERS_IMAGE = "example.com/test/users:1.0"


def test_container_user_and_groups(pod_env, shared):
    """A VM pod's container runs as the user the request names, with the
    primary group from the image's /etc/passwd and the groups that list the
    user in its /etc/group (cocoond looks them up in the rootfs it mounted),
    plus the pod's supplemental groups; an exec runs as the same user; a
    name the image does not know is refused."""
    env = pod_env
    pod, pcfg = shared
    layout = env.tmp / "users-layout"
    if not layout.exists():
        group = b"root:x:0:\napp:x:1000:\nextra:x:2000:root,app\nother:x:2001:root\n"
        write_layout(layout, [busybox_rootfs_layer(), layer_tar([("etc", None, 0o755, None),
                                                                 ("etc/group", group, 0o644, None)])],
                     tag="1.0", cmd=("/bin/sh",))
    p = subprocess.run([str(BUILDDIR / "cocoonctl"), "-a", env.daemon.address, "image", "import", "--name",
                        USERS_IMAGE.rsplit(":", 1)[0], str(layout)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr

    def run(name, **sc):
        cfg = env.ctr_config(pcfg, name, ["sh", "-c", "id; sleep 1000"], image=USERS_IMAGE)
        for k, v in sc.items():
            if k == "run_as_user":
                cfg.linux.security_context.run_as_user.value = v
            elif k == "supplemental_groups":
                cfg.linux.security_context.supplemental_groups.extend(v)
            else:
                setattr(cfg.linux.security_context, k, v)
        return env.rt.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=pod, config=cfg,
                                                                sandbox_config=pcfg), timeout=60).container_id

    cid = run("byname", run_as_username="app", supplemental_groups=[3000])
    env.start(cid)
    line = env.wait_log(cid, lambda l: len(l) >= 1)[0]
    assert line.startswith("uid=1000(app) gid=1000(app) groups="), line
    groups = line.split("groups=")[1]
    assert "2000(extra)" in groups and "3000" in groups and "2001" not in groups, line
    r = env.rt.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=["id"], timeout=30), timeout=60)
    assert r.exit_code == 0 and r.stdout.decode().strip() == line, (r.stdout, line)

    cid2 = run("byuid", run_as_user=0)
    env.start(cid2)
    line = env.wait_log(cid2, lambda l: len(l) >= 1)[0]
    assert line.startswith("uid=0(root) gid=0(root) groups=") and "2000(extra)" in line and "2001(other)" in line, \
        line

    msg = expect_error(grpc.StatusCode.INVALID_ARGUMENT, run, "nobody-here", run_as_username="nosuchuser")
    assert "user 'nosuchuser' not found" in msg, msg
    for c in (cid, cid2):
        env.rt.StopContainer(pb.StopContainerRequest(container_id=c, timeout=0), timeout=60)
        env.rt.RemoveContainer(pb.RemoveContainerRequest(container_id=c), timeout=60)


def status_fields(text):
    return {l.split(":", 1)[0]: l.split(":", 1)[1].strip() for l in text.splitlines() if ":" in l}


def test_security_context_hardened_and_privileged(pod_env, shared):
    """What a hardened pod asks for, end to end in the guest: a non-root
    user, a read-only root filesystem, no privilege escalation, the
    RuntimeDefault seccomp profile, every capability dropped but one, the
    masked and read-only /proc paths; and a privileged container, which gets
    all capabilities, no masks and no seccomp filter."""
    env = pod_env
    pod, pcfg = shared
    cfg = env.ctr_config(pcfg, "hardened", ["sleep", "1000"])
    sc = cfg.linux.security_context
    sc.run_as_user.value = 1000
    sc.readonly_rootfs = True
    sc.no_new_privs = True
    sc.seccomp.profile_type = pb.SecurityProfile.RuntimeDefault
    sc.capabilities.drop_capabilities.append("ALL")
    sc.capabilities.add_capabilities.append("NET_BIND_SERVICE")
    cid = env.rt.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=pod, config=cfg, sandbox_config=pcfg),
                                 timeout=60).container_id
    env.start(cid)

    def sh(c, cmd):
        r = env.rt.ExecSync(pb.ExecSyncRequest(container_id=c, cmd=["sh", "-c", cmd], timeout=30), timeout=60)
        return r.exit_code, r.stdout.decode(), r.stderr.decode()
    rc, out, _ = sh(cid, "cat /proc/1/status")
    st = status_fields(out)
    assert st["Uid"].split()[0] == "1000" and st["NoNewPrivs"] == "1" and st["Seccomp"] == "2", st
    assert int(st["CapBnd"], 16) == 1 << 10, st  # CAP_NET_BIND_SERVICE only
    rc, _, err = sh(cid, "touch /x")
    assert rc != 0 and "Read-only file system" in err, err
    rc, out, _ = sh(cid, "cat /proc/keys | wc -c; cat /proc/sys/kernel/hostname >/dev/null && echo readable")
    assert out.split() == ["0", "readable"], out  # masked: /dev/null; /proc/sys readable ...
    rc, _, err = sh(cid, "echo x > /proc/sys/kernel/hostname")
    assert rc != 0, err  # ... but read-only

    for c in (cid,):
        env.rt.StopContainer(pb.StopContainerRequest(container_id=c, timeout=0), timeout=60)
        env.rt.RemoveContainer(pb.RemoveContainerRequest(container_id=c), timeout=60)

    # privileged: the pod is too (the kubelet marks the sandbox privileged)
    ppcfg = env.pod_config("priv")
    ppcfg.linux.security_context.privileged = True
    ppod = env.rt.RunPodSandbox(pb.RunPodSandboxRequest(config=ppcfg), timeout=180).pod_sandbox_id
    env.created.append(ppod)
    pcfg2 = env.ctr_config(ppcfg, "privileged", ["sleep", "1000"])
    pcfg2.linux.security_context.privileged = True
    pcid = env.rt.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=ppod, config=pcfg2,
                                                            sandbox_config=ppcfg), timeout=60).container_id
    env.start(pcid)
    rc, out, _ = sh(pcid, "cat /proc/1/status")
    st = status_fields(out)
    assert st["Uid"].split()[0] == "0" and st["Seccomp"] == "0", st
    last_cap = int(sh(pcid, "cat /proc/sys/kernel/cap_last_cap")[1])
    assert int(st["CapEff"], 16) == (1 << (last_cap + 1)) - 1, (st, last_cap)
    rc, out, err = sh(pcid, "mkdir -p /mnt/t && mount -t tmpfs none /mnt/t && echo mounted")
    assert rc == 0 and "mounted" in out, (out, err)
    rc, out, _ = sh(pcid, "cat /proc/keys | wc -c")
    assert int(out) > 0, out  # not masked
    info = env.pod_info(ppod)
    env.remove_pod(ppod)
    env.assert_pod_gone(ppod, info)


def test_update_container_resources(pod_env, shared):
    """UpdateContainerResources (in-place resize, CPU manager): the new limits
    land in the container's cgroup in the guest and ContainerStatus reports
    them; bad input and containers that cannot take them get clear errors."""
    env = pod_env
    pod, pcfg = shared
    cfg = env.ctr_config(pcfg, "resize", ["sh", "-c", "sleep 1000"])
    cfg.linux.resources.memory_limit_in_bytes = 64 << 20
    cfg.linux.resources.cpu_shares = 256
    cid = env.rt.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=pod, config=cfg, sandbox_config=pcfg),
                                 timeout=60).container_id
    env.start(cid)

    def cgroup():
        r = env.rt.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=["sh", "-c",
                            "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max /sys/fs/cgroup/cpu.weight"],
                            timeout=30), timeout=60)
        assert r.exit_code == 0, r.stderr
        return r.stdout.decode().split("\n")[:3]
    assert cgroup()[0] == str(64 << 20)
    st = env.ctr_status(cid).status
    assert st.resources.linux.memory_limit_in_bytes == 64 << 20 and st.resources.linux.cpu_shares == 256

    new = pb.LinuxContainerResources(memory_limit_in_bytes=96 << 20, cpu_shares=1024, cpu_quota=50000,
                                     cpu_period=100000)
    env.rt.UpdateContainerResources(pb.UpdateContainerResourcesRequest(container_id=cid, linux=new), timeout=60)
    mem, cpu_max, weight = cgroup()
    assert mem == str(96 << 20) and cpu_max == "50000 100000", (mem, cpu_max)
    assert int(weight) > 1 + ((256 - 2) * 9999) // 262142  # shares 1024 -> a higher weight than 256's
    st = env.ctr_status(cid).status
    assert (st.resources.linux.memory_limit_in_bytes, st.resources.linux.cpu_quota) == (96 << 20, 50000)

    msg = expect_error(grpc.StatusCode.INVALID_ARGUMENT, env.rt.UpdateContainerResources,
                       pb.UpdateContainerResourcesRequest(container_id=cid, linux=pb.LinuxContainerResources(
                           memory_limit_in_bytes=-5)), timeout=30)
    assert "memory_limit_in_bytes" in msg, msg
    assert env.ctr_status(cid).status.resources.linux.memory_limit_in_bytes == 96 << 20  # unchanged
    expect_error(grpc.StatusCode.NOT_FOUND, env.rt.UpdateContainerResources,
                 pb.UpdateContainerResourcesRequest(container_id="0" * 64, linux=new), timeout=30)
    env.rt.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=0), timeout=60)
    msg = expect_error(grpc.StatusCode.FAILED_PRECONDITION, env.rt.UpdateContainerResources,
                       pb.UpdateContainerResourcesRequest(container_id=cid, linux=new), timeout=30)
    assert "exited" in msg, msg
    env.rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=60)


def host_cgroup2_has(ctrl):
    """Does the host's cgroup v2 hierarchy offer this controller? (Not on a
    hybrid host, where the controllers are mounted as cgroup v1.)"""
    for line in pathlib.Path("/proc/self/mountinfo").read_text().splitlines():
        if " - cgroup2 " in line:
            mnt = line.split()[4]
            try:
                return ctrl in (pathlib.Path(mnt) / "cgroup.controllers").read_text().split()
            except OSError:
                return False
    return False


def test_host_mode_limits(pod_env):
    """A host-mode container's memory and CPU limits land in its cgroup on a
    cgroup v2 host; on a host with cgroup v1 controllers, where host mode
    cannot apply them, CreateContainer fails and says what to change."""
    env = pod_env
    pod, pcfg, info = host_pod(env, "hostlim", network=NODE)
    cfg = env.ctr_config(pcfg, "lim", ["sh", "-c", "cat /proc/self/cgroup; sleep 1000"])
    cfg.linux.resources.memory_limit_in_bytes = 64 << 20
    cfg.linux.resources.cpu_shares = 512
    cfg.linux.resources.cpu_quota = 50000
    cfg.linux.resources.cpu_period = 100000
    req = pb.CreateContainerRequest(pod_sandbox_id=pod, config=cfg, sandbox_config=pcfg)
    try:
        if not (host_cgroup2_has("memory") and host_cgroup2_has("cpu")):
            msg = expect_error(grpc.StatusCode.FAILED_PRECONDITION, env.rt.CreateContainer, req, timeout=60)
            assert "systemd.unified_cgroup_hierarchy=1" in msg, msg
            return
        cid = env.rt.CreateContainer(req, timeout=60).container_id
        env.start(cid)
        pid = json.loads(env.ctr_status(cid, verbose=True).info["info"])["pid"]
        rel = [l for l in pathlib.Path("/proc/%d/cgroup" % pid).read_text().splitlines()
               if l.startswith("0::")][0][3:]
        mnt = [l.split()[4] for l in pathlib.Path("/proc/self/mountinfo").read_text().splitlines()
               if " - cgroup2 " in l][0]
        cg = pathlib.Path(mnt + rel)
        assert (cg / "memory.max").read_text().strip() == str(64 << 20)
        assert (cg / "cpu.max").read_text().split() == ["50000", "100000"]
    finally:
        env.remove_pod(pod)
        env.assert_pod_gone(pod, info)


def test_shared_pod_still_ready_and_removal_is_clean(pod_env, shared):
    """Runs last: the shared pod went through every test above untouched;
    removing it leaves the daemon with nothing on the host."""
    env = pod_env
    pod, _ = shared
    assert env.pod_status(pod).status.state == READY
    info = env.pod_info(pod)
    env.remove_pod(pod)
    env.assert_pod_gone(pod, info)
    assert len(env.rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=30).items) == 0
    env.assert_clean()
