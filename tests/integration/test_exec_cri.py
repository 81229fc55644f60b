"""ExecSync, Exec, Attach and PortForward through the CRI socket, against real
VM pods (QEMU, TCG here, the build's cocoon-agent as guest PID 1): the
streaming URLs cocoond hands out are driven with the SPDY/3.1 client of
tests/integration/spdy_client.py (as client-go's spdystream) and with
python3-websocket.

    COCOON_BUILDDIR=/path/to/build /usr/bin/python3 -m pytest -v -s tests/integration/test_exec_cri.py

COCOON_EXEC_BIG sets the size of the byte-exact stdout test (default 100 MB);
throughputs are printed (-s shows them). COCOON_EXEC_POD=host runs the same
tests against a host-mode pod on the host network (cocoon-agent on the host)
instead of a VM pod.
"""
import hashlib
import os
import re
import socket
import struct
import threading
import time
import urllib.parse

import grpc
import pytest

from conftest import pb
from pods import IMAGE, expect_error, pod_env, skip_reason, wait_until  # noqa: F401
import spdy_client as sc

websocket = pytest.importorskip("websocket")  # Debian: python3-websocket

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")

V4 = "v4.channel.k8s.io"
SUCCESS = b'{"metadata":{},"status":"Success"}'
BIG = int(os.environ.get("COCOON_EXEC_BIG", "100000000"))
T = 120
C = grpc.StatusCode

# The pod's main container: two httpd servers (one on loopback only) and a
# long sleep.
MAIN = ("mkdir -p /tmp/www && echo hello-pf > /tmp/www/index.html && "
        "(httpd -f -p 127.0.0.1:%d -h /tmp/www &) && (httpd -f -p 0.0.0.0:%d -h /tmp/www &) && "
        "echo servers-up && exec sleep 100000")
HOST_MODE = os.environ.get("COCOON_EXEC_POD", "vm") == "host"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_exit(code):
    return ('{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: '
            'exit status %d","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode",'
            '"message":"%d"}]}}' % (code, code)).encode()


class Pod:
    pass


def create_ctr(env, pod, pcfg, name, cmd, tty=False, stdin=False):
    cfg = env.ctr_config(pcfg, name, cmd)
    cfg.tty = tty
    cfg.stdin = stdin
    r = env.rt.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=pod, config=cfg, sandbox_config=pcfg),
                               timeout=T)
    env.start(r.container_id)
    return r.container_id


@pytest.fixture(scope="module")
def vm(pod_env):
    env = pod_env
    p = Pod()
    p.env = env
    if HOST_MODE:
        p.pod, p.pcfg = env.run_pod("execpod", network=pb.NODE)
        p.lo_port, p.any_port, p.dead_port = free_port(), free_port(), free_port()
    else:
        p.pod, p.pcfg = env.run_pod("execpod")
        p.lo_port, p.any_port, p.dead_port = 8080, 8081, 8099
    p.main = create_ctr(env, p.pod, p.pcfg, "main", ["sh", "-c", MAIN % (p.lo_port, p.any_port)])
    env.wait_log(p.main, lambda l: any("servers-up" in x for x in l), timeout=120)
    yield p
    try:
        env.remove_pod(p.pod)
    except grpc.RpcError:
        pass


def exec_sync(p, cmd, timeout=0, cid=None):
    return p.env.rt.ExecSync(pb.ExecSyncRequest(container_id=cid or p.main, cmd=cmd, timeout=timeout),
                             timeout=T + timeout)


def url_of(resp):
    u = urllib.parse.urlparse(resp.url)
    return u.hostname, u.port, u.path


def exec_url(p, cmd, tty=False, stdin=False, stdout=True, stderr=False, cid=None):
    return url_of(p.env.rt.Exec(pb.ExecRequest(container_id=cid or p.main, cmd=cmd, tty=tty, stdin=stdin,
                                               stdout=stdout, stderr=stderr), timeout=T))


def spdy(u, protocols=(V4,), **kw):
    return sc.SpdyConnection(u[0], u[1], u[2], list(protocols), **kw)


def streams(c, names):
    return {n: c.open_stream([("streamtype", n)]) for n in names}


def ws_connect(u, protocols=(V4,), query=""):
    return websocket.create_connection("ws://%s:%d%s%s" % (u[0], u[1], u[2], query),
                                       subprotocols=list(protocols), timeout=T)


def ws_collect(ws, sink=None):
    out = {}
    while True:
        try:
            op, data = ws.recv_data(control_frame=True)
        except websocket.WebSocketConnectionClosedException:
            break
        if op == websocket.ABNF.OPCODE_CLOSE:
            break
        if op not in (websocket.ABNF.OPCODE_BINARY, websocket.ABNF.OPCODE_TEXT) or not data:
            continue
        if sink and data[0] == 1:
            sink(data[1:])
        else:
            out[data[0]] = out.get(data[0], b"") + data[1:]
    return out


def zeros_sha(n):
    h = hashlib.sha256()
    blk = bytes(1 << 20)
    while n > 0:
        h.update(blk[:min(n, len(blk))])
        n -= min(n, len(blk))
    return h.hexdigest()


def proc_gone(p, pidfile):
    r = exec_sync(p, ["sh", "-c", "kill -0 $(cat %s) 2>/dev/null && echo alive || echo gone" % pidfile])
    return r.stdout.strip() == b"gone"


# ---- ExecSync ------------------------------------------------------------------

def test_exec_sync_output_and_exit_code(vm):
    r = exec_sync(vm, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (r.stdout, r.stderr, r.exit_code) == (b"out\n", b"err\n", 3)
    r = exec_sync(vm, ["cat", "/tmp/www/index.html"])
    assert (r.stdout, r.stderr, r.exit_code) == (b"hello-pf\n", b"", 0)
    # the image's environment and a signal death (128 + N)
    r = exec_sync(vm, ["sh", "-c", "kill -9 $$"])
    assert r.exit_code == 137


def test_exec_sync_output_capped_at_16mib(vm):
    # Each stream is capped at 16 MiB (the rest drained: the command is not
    # blocked) and the response as a whole fits the kubelet's 16 MiB message
    # limit: stdout gets what stderr leaves of 16 MiB - 64.
    r = exec_sync(vm, ["sh", "-c", "head -c 20000000 /dev/zero; echo done >&2"])
    assert len(r.stdout) == (16 << 20) - 64 - 5 and r.stdout.count(0) == len(r.stdout)
    assert r.stderr == b"done\n" and r.exit_code == 0


def test_exec_sync_timeout_kills_the_process(vm):
    t0 = time.monotonic()
    msg = expect_error(C.DEADLINE_EXCEEDED, exec_sync, vm,
                       ["sh", "-c", "echo $$ > /tmp/to.pid; exec sleep 1000"], 2)
    dt = time.monotonic() - t0
    assert "timed out after 2s" in msg and "sleep 1000" in msg, msg
    assert dt < 20, dt
    assert wait_until(lambda: proc_gone(vm, "/tmp/to.pid"), 15, "the timed-out exec to be killed")


def test_exec_ids_never_collide(vm):
    res = []

    def one(i):
        res.append(exec_sync(vm, ["echo", str(i)]).stdout)
    ts = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert sorted(res) == sorted(b"%d\n" % i for i in range(8))


def test_bad_requests(vm, pod_env):
    env = pod_env
    expect_error(C.NOT_FOUND, exec_sync, vm, ["true"], cid="f" * 64)
    expect_error(C.INVALID_ARGUMENT, exec_sync, vm, [])
    expect_error(C.INVALID_ARGUMENT, exec_url, vm, ["true"], tty=True, stderr=True)
    expect_error(C.INVALID_ARGUMENT, exec_url, vm, ["true"], stdout=False)
    expect_error(C.INVALID_ARGUMENT, exec_url, vm, [])
    expect_error(C.NOT_FOUND, env.rt.Attach, pb.AttachRequest(container_id="e" * 64, stdout=True), timeout=T)
    expect_error(C.NOT_FOUND, env.rt.PortForward, pb.PortForwardRequest(pod_sandbox_id="d" * 64, port=[80]),
                 timeout=T)
    expect_error(C.INVALID_ARGUMENT, env.rt.PortForward,
                 pb.PortForwardRequest(pod_sandbox_id=vm.pod, port=[70000]), timeout=T)
    # an exited container: FAILED_PRECONDITION
    cid = create_ctr(env, vm.pod, vm.pcfg, "short", ["true"])
    env.wait_ctr(cid, pb.CONTAINER_EXITED)
    expect_error(C.FAILED_PRECONDITION, exec_sync, vm, ["true"], cid=cid)
    expect_error(C.FAILED_PRECONDITION, exec_url, vm, ["true"], cid=cid)


# ---- Exec --------------------------------------------------------------------------

def test_exec_spdy_stdout_exact(vm):
    c = spdy(exec_url(vm, ["head", "-c", str(BIG), "/dev/zero"]))
    s = streams(c, ["error", "stdout"])
    h, n = hashlib.sha256(), [0]

    def sink(b):
        h.update(b)
        n[0] += len(b)
    s["stdout"].sink = sink
    t0 = time.time()
    assert s["error"].read_all(900) == SUCCESS
    s["stdout"].read_all(900)
    dt = time.time() - t0
    c.close()
    assert n[0] == BIG and h.hexdigest() == zeros_sha(BIG)
    print("\nexec stdout over SPDY: %d bytes in %.1f s = %.1f MB/s" % (BIG, dt, BIG / dt / 1e6))


def test_exec_websocket_stdout_exact(vm):
    ws = ws_connect(exec_url(vm, ["head", "-c", str(BIG), "/dev/zero"]))
    h, n = hashlib.sha256(), [0]

    def sink(b):
        h.update(b)
        n[0] += len(b)
    t0 = time.time()
    out = ws_collect(ws, sink)
    dt = time.time() - t0
    assert out.get(3) == SUCCESS, out.get(3)
    assert n[0] == BIG and h.hexdigest() == zeros_sha(BIG)
    print("\nexec stdout over WebSocket: %d bytes in %.1f s = %.1f MB/s" % (BIG, dt, BIG / dt / 1e6))


def test_exec_exit_code_and_stderr(vm):
    c = spdy(exec_url(vm, ["sh", "-c", "echo out; echo err >&2; exit 7"], stderr=True))
    s = streams(c, ["error", "stdout", "stderr"])
    assert s["stdout"].read_all() == b"out\n"
    assert s["stderr"].read_all() == b"err\n"
    assert s["error"].read_all() == status_exit(7)
    c.close()


def test_exec_stdin_echo(vm):
    c = spdy(exec_url(vm, ["cat"], stdin=True))
    s = streams(c, ["error", "stdin", "stdout"])
    data = os.urandom(2 << 20)
    h, got = hashlib.sha256(), [0]

    def sink(b):
        h.update(b)
        got[0] += len(b)
    s["stdout"].sink = sink
    s["stdin"].write(data, fin=True)
    assert s["error"].read_all(T) == SUCCESS
    s["stdout"].read_all(T)
    assert got[0] == len(data) and h.hexdigest() == hashlib.sha256(data).hexdigest()
    c.close()


def test_exec_tty_and_resize(vm):
    # `tty` names the terminal: it comes from the container's own devpts
    c = spdy(exec_url(vm, ["sh", "-c", "read x; stty size; test -t 0 && test -t 1 && echo is-a-tty; tty; exit 4"],
                      tty=True, stdin=True))
    s = streams(c, ["error", "stdin", "stdout", "resize"])
    s["resize"].write(b'{"Width":123,"Height":45}')
    time.sleep(0.5)
    s["stdin"].write(b"go\n")
    assert s["error"].read_all(T) == status_exit(4)
    out = s["stdout"].read_all(T)
    assert b"45 123" in out and b"is-a-tty" in out, out
    assert re.search(rb"(?m)^/dev/pts/[0-9]+\r?$", out) and b"not a tty" not in out, out
    c.close()


def _threads_and_fds(pid):
    return (len(os.listdir("/proc/%d/task" % pid)), len(os.listdir("/proc/%d/fd" % pid)))


def test_50_concurrent_execs(vm):
    """50 execs at once through the real runtime (half SPDY, half WebSocket):
    every one gets its own output and exit code, and afterwards cocoond has
    no more threads or fds than before (nothing leaked per session)."""
    pid = vm.env.daemon.proc.pid
    before = _threads_and_fds(pid)
    n = 50
    results, errors = [None] * n, []

    def one(i):
        try:
            cmd = ["sh", "-c", "echo out-%d; exit %d" % (i, i % 7)]
            if i % 2:
                c = spdy(exec_url(vm, cmd))
                s = streams(c, ["error", "stdout"])
                out = s["stdout"].read_all(T)
                err = s["error"].read_all(T)
                c.close()
            else:
                ws = ws_connect(exec_url(vm, cmd))
                got = ws_collect(ws)
                out, err = got.get(1, b""), got.get(3, b"")
            results[i] = (out, err)
        except Exception as e:  # noqa: BLE001  (reported below)
            errors.append("%d: %r" % (i, e))

    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(300)
    assert not errors, errors[:5]
    for i, (out, err) in enumerate(results):
        assert out == b"out-%d\n" % i, (i, out)
        assert err == (SUCCESS if i % 7 == 0 else status_exit(i % 7)), (i, err)
    # Sessions end asynchronously after the client saw the exit: allow a
    # moment, then compare (a few worker threads may stay pooled).
    assert wait_until(lambda: _threads_and_fds(pid)[1] <= before[1] + 2, 30, "cocoond's fds to return"), \
        (before, _threads_and_fds(pid))
    assert wait_until(lambda: _threads_and_fds(pid)[0] <= before[0] + 16, 30, "cocoond's threads to return"), \
        (before, _threads_and_fds(pid))


@pytest.mark.parametrize("proto", ["spdy", "websocket"])
def test_disconnect_mid_stream_leaves_no_process(vm, proto):
    pidfile = "/tmp/dc-%s.pid" % proto
    cmd = ["sh", "-c", "echo $$ > %s; echo ready; exec sh -c 'while :; do head -c 65536 /dev/zero; done'"
           % pidfile]
    u = exec_url(vm, cmd, stdin=True)
    if proto == "spdy":
        c = spdy(u)
        s = streams(c, ["error", "stdin", "stdout"])
        buf = b""
        while b"ready" not in buf:
            buf += s["stdout"].read_some()
        time.sleep(0.5)  # output is flowing
        c.close()
    else:
        ws = ws_connect(u)
        buf = b""
        while b"ready" not in buf:
            op, data = ws.recv_data()
            if data and data[0] == 1:
                buf += data[1:]
        time.sleep(0.5)
        ws.sock.shutdown(socket.SHUT_RDWR)
        ws.sock.close()
    assert wait_until(lambda: proc_gone(vm, pidfile), 20, "the exec to be killed")
    ps = exec_sync(vm, ["ps"]).stdout
    assert b"head -c 65536" not in ps and b"while :" not in ps, ps


def test_token_reuse_404(vm):
    u = exec_url(vm, ["echo", "once"])
    c = spdy(u)
    s = streams(c, ["error", "stdout"])
    assert s["stdout"].read_all() == b"once\n"
    c.close()
    with pytest.raises(sc.UpgradeError) as e:
        spdy(u)
    assert e.value.status == 404


# ---- Attach ------------------------------------------------------------------------

def attach_url(p, cid, tty=False, stdin=False, stdout=True, stderr=False):
    return url_of(p.env.rt.Attach(pb.AttachRequest(container_id=cid, tty=tty, stdin=stdin, stdout=stdout,
                                                   stderr=stderr), timeout=T))


def read_until(st, needle, timeout=60):
    buf = b""
    deadline = time.time() + timeout
    while needle not in buf and time.time() < deadline:
        buf += st.read_some(1)
    assert needle in buf, buf
    return buf


def test_attach_non_tty(vm, pod_env):
    cid = create_ctr(pod_env, vm.pod, vm.pcfg, "echoer",
                     ["sh", "-c", "echo hello-attach; while read l; do echo got:$l; echo err:$l >&2; done; exit 5"],
                     stdin=True)
    pod_env.wait_log(cid, lambda l: any("hello-attach" in x for x in l))
    c = spdy(attach_url(vm, cid, stdin=True, stderr=True))
    s = streams(c, ["error", "stdin", "stdout", "stderr"])
    s["stdin"].write(b"one\n")
    read_until(s["stdout"], b"got:one")
    read_until(s["stderr"], b"err:one")
    c.close()
    # detaching leaves the container running; a second attach works
    assert pod_env.ctr_status(cid).status.state == pb.CONTAINER_RUNNING
    ws = ws_connect(attach_url(vm, cid, stdin=True))
    ws.send_binary(b"\x00two\n")
    buf = b""
    while b"got:two" not in buf:
        op, data = ws.recv_data()
        if data and data[0] == 1:
            buf += data[1:]
    ws.close()


def test_attach_tty(vm, pod_env):
    cid = create_ctr(pod_env, vm.pod, vm.pcfg, "ttyctr",
                     ["sh", "-c", "echo tty-up; while read l; do echo got:$l; tty; stty size; done"],
                     tty=True, stdin=True)
    pod_env.wait_log(cid, lambda l: any("tty-up" in x for x in l))
    c = spdy(attach_url(vm, cid, tty=True, stdin=True))
    s = streams(c, ["error", "stdin", "stdout", "resize"])
    s["resize"].write(b'{"Width":100,"Height":30}')
    time.sleep(0.5)
    s["stdin"].write(b"x\n")
    out = read_until(s["stdout"], b"30 100")
    assert re.search(rb"(?m)^/dev/pts/[0-9]+\r?$", out), out
    c.close()


def test_attach_ends_with_the_container(vm, pod_env):
    cid = create_ctr(pod_env, vm.pod, vm.pcfg, "finite",
                     ["sh", "-c", "echo up; read l; echo bye-$l; exit 3"], stdin=True)
    pod_env.wait_log(cid, lambda l: any("up" in x for x in l))
    c = spdy(attach_url(vm, cid, stdin=True))
    s = streams(c, ["error", "stdin", "stdout"])
    s["stdin"].write(b"now\n")
    assert b"bye-now" in s["stdout"].read_all(T)
    assert s["error"].read_all(T) == SUCCESS  # attach reports no exit code
    c.close()


# ---- PortForward -------------------------------------------------------------------

def pf_url(p, ports):
    return url_of(p.env.rt.PortForward(pb.PortForwardRequest(pod_sandbox_id=p.pod, port=ports), timeout=T))


@pytest.mark.parametrize("which", ["lo_port", "any_port"], ids=["loopback-only", "any-address"])
def test_portforward_spdy(vm, which):
    port = getattr(vm, which)
    c = spdy(pf_url(vm, [port]), protocols=("portforward.k8s.io",))
    for rid in range(2):
        err = c.open_stream([("streamtype", "error"), ("port", str(port)), ("requestid", str(rid))])
        data = c.open_stream([("streamtype", "data"), ("port", str(port)), ("requestid", str(rid))])
        data.write(b"GET /index.html HTTP/1.0\r\n\r\n", fin=True)
        resp = data.read_all(T)
        assert resp.startswith(b"HTTP/1.") and b" 200 " in resp.split(b"\r\n")[0], resp[:200]
        assert resp.endswith(b"hello-pf\n"), resp[-200:]
        assert err.read_all(T) == b""
    # nothing listens on dead_port: the error stream says so
    dead = str(vm.dead_port)
    err = c.open_stream([("streamtype", "error"), ("port", dead), ("requestid", "9")])
    c.open_stream([("streamtype", "data"), ("port", dead), ("requestid", "9")])
    msg = err.read_all(T)
    assert dead.encode() in msg, msg
    c.close()


def test_portforward_websocket(vm):
    port = vm.lo_port
    ws = ws_connect(pf_url(vm, [port]), protocols=(V4,), query="?ports=%d" % port)
    first = {}
    while len(first) < 2:
        op, data = ws.recv_data()
        first[data[0]] = data[1:]
    assert first == {0: struct.pack("<H", port), 1: struct.pack("<H", port)}
    ws.send_binary(b"\x00GET /index.html HTTP/1.0\r\n\r\n")
    out = ws_collect(ws)
    assert out.get(0, b"").endswith(b"hello-pf\n"), out


def test_portforward_token_reuse_404(vm):
    u = pf_url(vm, [vm.lo_port])
    c = spdy(u, protocols=("portforward.k8s.io",))
    c.close()
    with pytest.raises(sc.UpgradeError) as e:
        spdy(u, protocols=("portforward.k8s.io",))
    assert e.value.status == 404
