"""GetContainerEvents through the CRI socket: the lifecycle events of a VM
pod and its container, in order, each with the pod's status and its
containers' statuses; a container that exits on its own; a pod whose VM was
killed; two streams at once; a cancelled stream leaves the others going;
the stream limit; SIGTERM with a stream open."""
import os
import queue
import signal
import threading
import time

import grpc
import pytest

from pods import RPC_TIMEOUT, code_of, pb, pod_env, skip_reason  # noqa: F401  (pod_env: fixture)

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")

CREATED, STARTED, STOPPED, DELETED = (pb.CONTAINER_CREATED_EVENT, pb.CONTAINER_STARTED_EVENT,
                                      pb.CONTAINER_STOPPED_EVENT, pb.CONTAINER_DELETED_EVENT)


class Stream:
    """GetContainerEvents read on a thread into a queue."""

    def __init__(self, env):
        self.call = env.rt.GetContainerEvents(pb.GetEventsRequest())
        self.q = queue.Queue()
        self.error = None
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        try:
            for ev in self.call:
                self.q.put(ev)
        except grpc.RpcError as e:
            self.error = e
        self.q.put(None)

    def until(self, want, ids, timeout=120):
        """Events of ids until the (id, type) pairs in want have all been
        seen; returns them all in arrival order."""
        got, deadline = [], time.monotonic() + timeout
        want = list(want)
        while want:
            ev = self.q.get(timeout=max(0.1, deadline - time.monotonic()))
            assert ev is not None, "stream ended: %s" % self.error
            if ev.container_id not in ids:
                continue
            got.append(ev)
            if (ev.container_id, ev.container_event_type) == want[0]:
                want.pop(0)
        return got

    def cancel(self):
        self.call.cancel()
        self.t.join(10)


def pairs(evs):
    return [(e.container_id, e.container_event_type) for e in evs]


def test_pod_and_container_lifecycle(pod_env):
    env = pod_env
    s1, s2 = Stream(env), Stream(env)
    time.sleep(0.3)  # both subscribed before anything happens
    pod, cfg = env.run_pod("events", labels={"app": "events"})
    cid = env.run_ctr(pod, cfg, "c", ["sleep", "3600"])
    env.wait_ctr(cid, pb.CONTAINER_RUNNING)
    env.rt.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=2), timeout=RPC_TIMEOUT)
    env.rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=RPC_TIMEOUT)
    env.remove_pod(pod)
    want = [(pod, CREATED), (pod, STARTED), (cid, CREATED), (cid, STARTED), (cid, STOPPED), (cid, DELETED),
            (pod, STOPPED), (pod, DELETED)]
    for s in (s1, s2):
        evs = s.until(want, {pod, cid})
        assert pairs(evs) == want, pairs(evs)  # each once, in order
        by = {(e.container_id, e.container_event_type): e for e in evs}
        assert all(e.created_at > 0 for e in evs)
        assert [e.created_at for e in evs] == sorted(e.created_at for e in evs)
        # the pod's status as of each event; its containers' with their state
        st = by[(cid, STARTED)]
        assert st.pod_sandbox_status.id == pod and st.pod_sandbox_status.state == pb.SANDBOX_READY
        assert st.pod_sandbox_status.metadata.name == "events"
        assert [(c.id, c.state) for c in st.containers_statuses] == [(cid, pb.CONTAINER_RUNNING)]
        stopped = by[(cid, STOPPED)]
        assert [(c.id, c.state) for c in stopped.containers_statuses] == [(cid, pb.CONTAINER_EXITED)]
        assert not by[(cid, DELETED)].containers_statuses
        assert by[(pod, STOPPED)].pod_sandbox_status.state == pb.SANDBOX_NOTREADY
        assert not by[(pod, DELETED)].HasField("pod_sandbox_status")  # gone
    s1.cancel()
    # the other stream goes on after one was cancelled
    pod2, cfg2 = env.run_pod("events-2")
    done = env.run_ctr(pod2, cfg2, "done", ["true"])  # exits by itself
    try:
        evs = s2.until([(done, CREATED), (done, STARTED), (done, STOPPED)], {pod2, done})
        assert pairs(evs)[-1] == (done, STOPPED)
        e = evs[-1]
        assert [(c.id, c.state, c.exit_code) for c in e.containers_statuses] == [(done, pb.CONTAINER_EXITED, 0)]
    finally:
        env.remove_pod(pod2)
        s2.cancel()


def test_vm_killed(pod_env):
    """QEMU killed: the running container and the pod are reported stopped,
    once each, with the statuses ContainerStatus and PodSandboxStatus give."""
    env = pod_env
    s = Stream(env)
    pod, cfg = env.run_pod("events-kill")
    removed = False
    try:
        cid = env.run_ctr(pod, cfg, "c", ["sleep", "3600"])
        env.wait_ctr(cid, pb.CONTAINER_RUNNING)
        os.kill(env.pod_info(pod)["vmmPid"], signal.SIGKILL)
        evs = s.until([(cid, STOPPED), (pod, STOPPED)], {pod, cid}, timeout=60)
        # (container then pod: the order rt_pod_mark_dead reports them in)
        assert pairs(evs)[-2:] == [(cid, STOPPED), (pod, STOPPED)], pairs(evs)
        last = evs[-1]
        assert last.pod_sandbox_status.state == pb.SANDBOX_NOTREADY
        assert [(c.id, c.state, c.exit_code) for c in last.containers_statuses] == [
            (cid, pb.CONTAINER_EXITED, 137)]
        # nothing more for them until they are removed
        env.remove_pod(pod)
        removed = True
        evs = s.until([(cid, DELETED), (pod, DELETED)], {pod, cid}, timeout=60)
        assert pairs(evs) == [(cid, DELETED), (pod, DELETED)], pairs(evs)
    finally:
        s.cancel()
        if not removed:
            env.remove_pod(pod)


def test_stream_limit(pod_env):
    env = pod_env
    time.sleep(1.5)  # streams cancelled earlier end within ~0.5 s on the server
    streams = [Stream(env) for _ in range(8)]
    try:
        time.sleep(0.5)
        assert [s.error for s in streams] == [None] * 8
        extra = env.rt.GetContainerEvents(pb.GetEventsRequest(), timeout=10)
        with pytest.raises(grpc.RpcError) as e:
            next(iter(extra))
        assert code_of(e.value) == grpc.StatusCode.RESOURCE_EXHAUSTED, e.value
        assert "too many event streams" in e.value.details()
    finally:
        for s in streams:
            s.cancel()
    # the slots come back once the streams are cancelled
    deadline = time.monotonic() + 10
    while True:
        s = Stream(env)
        time.sleep(0.3)
        if s.error is None or time.monotonic() > deadline:
            break
        s.cancel()
    assert s.error is None, s.error
    s.cancel()


def test_shutdown_ends_open_streams():
    """SIGTERM with an event stream open: the stream ends and cocoond exits
    without waiting out server.shutdown_timeout (10 s by default) for it."""
    from pods import PodEnv
    env = PodEnv.start_env(import_image=False)
    try:
        s = Stream(env)
        time.sleep(0.5)
        assert s.error is None
        t0 = time.monotonic()
        assert env.daemon.stop(timeout=30) == 0
        took = time.monotonic() - t0
        s.t.join(10)
        assert not s.t.is_alive()
        assert took < 8, "cocoond took %.1f s to stop with a stream open (shutdown_timeout 10)" % took
    finally:
        env.close()
