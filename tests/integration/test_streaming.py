"""Protocol tests for the CRI streaming server (cri-server/streaming/).

They drive tests/tools/cocoon-stream-test, which runs the real server with a
FAKE backend executing real local processes, with independent clients: our
SPDY/3.1 client (spdy_client.py, written from the draft) and Debian's
python3-websocket. Throughput numbers are printed (pytest -s shows them)."""
import hashlib
import http.server
import json
import os
import pathlib
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.parse

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import spdy_client as sc  # noqa: E402

websocket = pytest.importorskip("websocket")  # Debian: python3-websocket

SRCDIR = pathlib.Path(__file__).resolve().parents[2]
BUILDDIR = pathlib.Path(os.environ.get("COCOON_BUILDDIR", SRCDIR / "build"))
V4 = "v4.channel.k8s.io"
SUCCESS = b'{"metadata":{},"status":"Success"}'


def status_exit(code):
    return ('{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: '
            'exit status %d","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode",'
            '"message":"%d"}]}}' % (code, code)).encode()


class Driver:
    def __init__(self, *args):
        exe = BUILDDIR / "tests" / "tools" / "cocoon-stream-test"
        if not exe.exists():
            pytest.fail("cocoon-stream-test not built (set COCOON_BUILDDIR; looked in %s)" % BUILDDIR)
        self.p = subprocess.Popen([str(exe)] + list(args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True, bufsize=1)
        line = self.p.stdout.readline().split()
        assert line and line[0] == "READY", line
        u = urllib.parse.urlparse(line[1])
        self.host, self.port = u.hostname, u.port
        self.lock = threading.Lock()

    def cmd(self, c):
        with self.lock:
            assert self.p.poll() is None, "driver died"
            self.p.stdin.write(c + "\n")
            self.p.stdin.flush()
            return self.p.stdout.readline().strip()

    def url(self, c):
        u = self.cmd(c)
        assert u.startswith("http://"), u
        return urllib.parse.urlparse(u).path

    def stats(self):
        return dict(kv.split("=") for kv in self.cmd("stats").split())

    def settle(self, base, timeout=10):
        """Waits until fds/threads/sessions are back to the baseline."""
        deadline = time.time() + timeout
        while True:
            s = self.stats()
            if (int(s["fds"]) <= int(base["fds"]) and int(s["threads"]) <= int(base["threads"])
                    and s["sessions"] == "0" and s["conns"] == "0"):
                return s
            if time.time() > deadline:
                return s
            time.sleep(0.1)

    def stop(self):
        try:
            self.cmd("quit")
            self.p.wait(10)
        finally:
            if self.p.poll() is None:
                self.p.kill()


@pytest.fixture(scope="module")
def drv():
    d = Driver()
    yield d
    d.stop()


def spdy(d, path, protocols=(V4,), **kw):
    return sc.SpdyConnection(d.host, d.port, path, list(protocols), **kw)


def exec_streams(c, names):
    return {n: c.open_stream([("streamtype", n)]) for n in names}


def ws_connect(d, path, protocols=(V4,), query=""):
    return websocket.create_connection("ws://%s:%d%s%s" % (d.host, d.port, path, query),
                                       subprotocols=list(protocols), timeout=60)


def ws_collect(ws, base64=False, sink=None):
    """Reads until close; returns {channel: bytes}."""
    out = {}
    while True:
        try:
            op, data = ws.recv_data(control_frame=True)
        except (websocket.WebSocketConnectionClosedException, BrokenPipeError, ConnectionResetError):
            # the client library answers the server's close frame with its own;
            # the server may have closed the socket already (checked by content)
            break
        if op == websocket.ABNF.OPCODE_CLOSE:
            break
        if op not in (websocket.ABNF.OPCODE_BINARY, websocket.ABNF.OPCODE_TEXT) or not data:
            continue
        if base64:
            import base64 as b64
            ch, payload = data[0] - ord("0"), b64.b64decode(data[1:])
        else:
            ch, payload = data[0], data[1:]
        if sink and ch == 1:
            sink(payload)
        else:
            out[ch] = out.get(ch, b"") + payload
    return out


ZERO_SHA = None


def zeros_sha(n):
    h = hashlib.sha256()
    blk = bytes(1 << 20)
    while n > 0:
        h.update(blk[:min(n, len(blk))])
        n -= min(n, len(blk))
    return h.hexdigest()


# ---------------- exec over SPDY ----------------

@pytest.mark.parametrize("flow", [True, False], ids=["strict-flow-control", "spdystream-like"])
def test_spdy_stdout_100mb_exact(drv, flow):
    size = 100_000_000
    c = spdy(drv, drv.url("exec o head -c %d /dev/zero" % size), flow_control=flow)
    s = exec_streams(c, ["error", "stdout"])
    h, n = hashlib.sha256(), [0]

    def sink(b):
        h.update(b)
        n[0] += len(b)
    s["stdout"].sink = sink
    t0 = time.time()
    assert s["error"].read_all(300) == SUCCESS
    s["stdout"].read_all(300)
    dt = time.time() - t0
    c.close()
    assert n[0] == size and h.hexdigest() == zeros_sha(size)
    print("\nSPDY stdout (%s): %.1f MB/s" % ("flow control" if flow else "no flow control", size / dt / 1e6))


def test_spdy_exit_codes_and_stderr(drv):
    for code, want in ((0, SUCCESS), (7, status_exit(7))):
        c = spdy(drv, drv.url("exec oe echo out; echo err >&2; exit %d" % code))
        s = exec_streams(c, ["error", "stdout", "stderr"])
        assert s["stdout"].read_all() == b"out\n"
        assert s["stderr"].read_all() == b"err\n"
        assert s["error"].read_all() == want
        c.close()


def test_spdy_older_versions_plain_text_error(drv):
    c = spdy(drv, drv.url("exec o exit 3"), protocols=("v3.channel.k8s.io", "v2.channel.k8s.io"))
    assert c.protocol == "v3.channel.k8s.io"
    s = exec_streams(c, ["error", "stdout"])
    assert s["error"].read_all() == b"command terminated with non-zero exit code: exit status 3"
    c.close()


def test_spdy_negotiation_prefers_newest(drv):
    c = spdy(drv, drv.url("exec o true"), protocols=("channel.k8s.io", V4, "v5.channel.k8s.io"))
    assert c.protocol == "v5.channel.k8s.io"
    s = exec_streams(c, ["error", "stdout"])
    assert s["error"].read_all() == SUCCESS
    c.close()


def test_spdy_version_negotiation_403(drv):
    path = drv.url("exec o true")
    with pytest.raises(sc.UpgradeError) as e:
        spdy(drv, path, protocols=("v9.channel.k8s.io",))
    assert e.value.status == 403
    acc = [v for k, v in e.value.headers if k.lower() == "x-accepted-stream-protocol-versions"]
    assert acc == ["v5.channel.k8s.io", V4, "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"]
    # the token was consumed by the failed attempt: nothing runs on retry
    with pytest.raises(sc.UpgradeError) as e:
        spdy(drv, path)
    assert e.value.status == 404


@pytest.mark.parametrize("flow", [True, False], ids=["strict-flow-control", "spdystream-like"])
def test_spdy_stdin_echo(drv, flow):
    c = spdy(drv, drv.url("exec io cat"), flow_control=flow)
    s = exec_streams(c, ["error", "stdin", "stdout"])
    data = os.urandom(3 << 20)
    h = hashlib.sha256()
    got = [0]

    def sink(b):
        h.update(b)
        got[0] += len(b)
    s["stdout"].sink = sink
    s["stdin"].write(data, fin=True)
    assert s["error"].read_all(60) == SUCCESS
    s["stdout"].read_all(60)
    assert got[0] == len(data) and h.hexdigest() == hashlib.sha256(data).hexdigest()
    c.close()


def test_spdy_tty_resize(drv):
    c = spdy(drv, drv.url("exec iot read x; stty size"))
    s = exec_streams(c, ["error", "stdin", "stdout", "resize"])
    s["resize"].write(b'{"Width":123,"Height":45}')
    time.sleep(0.2)
    s["stdin"].write(b"go\n")
    assert s["error"].read_all() == SUCCESS
    out = s["stdout"].read_all()
    assert b"45 123" in out, out
    c.close()


def test_spdy_ping_and_unknown_stream_type(drv):
    c = spdy(drv, drv.url("exec o sleep 0.3"))
    assert c.ping(1)
    bogus = c.open_stream([("streamtype", "bogus")], wait_reply=False)
    deadline = time.time() + 5
    while bogus.reset is None and time.time() < deadline:
        time.sleep(0.05)
    assert bogus.reset == 1  # PROTOCOL_ERROR
    s = exec_streams(c, ["error", "stdout"])
    assert s["error"].read_all() == SUCCESS
    c.close()


def test_attach(drv):
    c = spdy(drv, drv.url("attach o echo attached; exit 9"))
    s = exec_streams(c, ["error", "stdout"])
    assert s["stdout"].read_all() == b"attached\n"
    assert s["error"].read_all() == SUCCESS  # attach reports no exit code
    c.close()


def test_backend_start_failure(drv):
    c = spdy(drv, drv.url("exec o __fail__"))
    s = exec_streams(c, ["error", "stdout"])
    st = json.loads(s["error"].read_all())
    assert st["status"] == "Failure" and st["reason"] == "InternalError" and st["code"] == 500
    assert "not found" in st["message"]
    c.close()


def test_fifty_concurrent_execs(drv):
    base = drv.stats()
    results, errors = {}, []

    def one(i):
        try:
            c = spdy(drv, drv.url("exec o sleep 0.5; echo %d; exit %d" % (i, i % 3)))
            s = exec_streams(c, ["error", "stdout"])
            results[i] = (s["stdout"].read_all(60), s["error"].read_all(60))
            c.close()
        except Exception as e:  # noqa: BLE001
            errors.append((i, e))
    ts = [threading.Thread(target=one, args=(i,)) for i in range(50)]
    t0 = time.time()
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not errors, errors
    for i in range(50):
        out, st = results[i]
        assert out == b"%d\n" % i
        assert st == (SUCCESS if i % 3 == 0 else status_exit(i % 3))
    assert time.time() - t0 < 30
    after = drv.settle(base)
    assert int(after["threads"]) <= int(base["threads"]) and int(after["fds"]) <= int(base["fds"]), (base, after)


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone, or went between open and read
        return False


@pytest.mark.parametrize("proto", ["spdy", "websocket"])
def test_client_disconnect_kills_process(drv, proto):
    base = drv.stats()
    script = "exec io echo $$; exec sh -c 'while :; do head -c 65536 /dev/zero; done'"
    if proto == "spdy":
        c = spdy(drv, drv.url(script))
        s = exec_streams(c, ["error", "stdin", "stdout"])
        buf = b""
        while b"\n" not in buf:
            buf += s["stdout"].read_some()
        pid = int(buf.split(b"\n")[0])
        time.sleep(0.3)  # mid-stream: output is flowing
        c.close()
    else:
        ws = ws_connect(drv, drv.url(script))
        buf = b""
        while b"\n" not in buf:
            op, data = ws.recv_data()
            if data and data[0] == 1:
                buf += data[1:]
        pid = int(buf.split(b"\n")[0])
        time.sleep(0.3)
        ws.sock.shutdown(socket.SHUT_RDWR)
        ws.sock.close()
    deadline = time.time() + 10
    while pid_alive(pid) and time.time() < deadline:
        time.sleep(0.05)
    assert not pid_alive(pid)
    after = drv.settle(base)
    assert int(after["fds"]) <= int(base["fds"]) and int(after["threads"]) <= int(base["threads"]), (base, after)


# ---------------- tokens ----------------

def raw_get(d, path, headers=()):
    s, status, hdrs, rest = sc.http_upgrade(d.host, d.port, path, list(headers))
    s.close()
    return status


def test_unknown_reused_and_wrong_kind_tokens_404(drv):
    assert raw_get(drv, "/exec/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA") == 404
    assert raw_get(drv, "/nothing") == 404
    path = drv.url("exec o echo once")
    c = spdy(drv, path)
    s = exec_streams(c, ["error", "stdout"])
    assert s["stdout"].read_all() == b"once\n"
    c.close()
    with pytest.raises(sc.UpgradeError) as e:
        spdy(drv, path)
    assert e.value.status == 404
    token = drv.url("exec o echo x").rsplit("/", 1)[1]
    assert raw_get(drv, "/attach/" + token, [("Upgrade", "SPDY/3.1"), ("Connection", "Upgrade")]) == 404


def test_token_expiry():
    d = Driver("--token-ttl", "1")
    try:
        path = d.url("exec o echo late")
        time.sleep(1.5)
        with pytest.raises(sc.UpgradeError) as e:
            spdy(d, path)
        assert e.value.status == 404
        assert d.stats()["tokens"] == "0"
    finally:
        d.stop()


def test_idle_timeout_closes_and_kills():
    d = Driver("--idle-timeout", "1")
    try:
        c = spdy(d, d.url("exec io echo $$; exec sleep 100"), flow_control=False)
        s = exec_streams(c, ["error", "stdin", "stdout"])
        buf = b""
        while b"\n" not in buf:
            buf += s["stdout"].read_some()
        pid = int(buf)
        deadline = time.time() + 6
        while not c.closed and time.time() < deadline:
            time.sleep(0.1)
        assert c.closed
        while pid_alive(pid) and time.time() < deadline:
            time.sleep(0.05)
        assert not pid_alive(pid)
    finally:
        d.stop()


# ---------------- malformed input ----------------

def upgraded_socket(d, path):
    s, status, _, rest = sc.http_upgrade(d.host, d.port, path, [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1"),
                                                                ("X-Stream-Protocol-Version", V4)])
    assert status == 101
    return s


def read_until_closed(s, timeout=10):
    s.settimeout(timeout)
    data = b""
    try:
        while True:
            c = s.recv(65536)
            if not c:
                break
            data += c
    except (ConnectionResetError, socket.timeout):
        pass
    return data


@pytest.mark.parametrize("frame", [
    sc.control_frame(sc.SYN_STREAM, 0, struct.pack(">IIBB", 1, 0, 0, 0) + b"\x78\xbb garbage header block"),
    sc.control_frame(sc.SYN_STREAM, 0, b"\x00\x00"),
    struct.pack(">HHI", 0x8003, sc.SETTINGS, 0xFFFFFF),           # huge control frame
    struct.pack(">HHI", 0x8002, sc.PING, 4) + b"\0\0\0\1",        # SPDY/2
    sc.control_frame(sc.SETTINGS, 0, struct.pack(">I", 1000)),  # count beyond length
    sc.control_frame(sc.WINDOW_UPDATE, 0, struct.pack(">II", 0, 0)),
    os.urandom(4096),
], ids=["bad-zlib", "short-syn", "huge-control", "spdy2", "bad-settings", "zero-window-update", "random"])
def test_spdy_malformed_frames_reset_not_crash(drv, frame):
    base = drv.stats()
    s = upgraded_socket(drv, drv.url("exec o sleep 30"))
    s.sendall(frame)
    data = read_until_closed(s)
    s.close()
    # a GOAWAY (or nothing, for frames we cannot even parse) and the connection is gone
    if data and frame[:1] == b"\x80":
        # the last frame we sent is a GOAWAY
        assert struct.unpack(">HH", data[-16:-12]) == (0x8003, sc.GOAWAY), data[-16:]
    assert drv.stats()["conns"] in ("0", "1")
    drv.settle(base)
    c = spdy(drv, drv.url("exec o echo alive"))
    assert exec_streams(c, ["error", "stdout"])["stdout"].read_all() == b"alive\n"
    c.close()


def test_spdy_flow_control_violation_rst(drv):
    c = spdy(drv, drv.url("exec io sleep 2"), flow_control=True)
    s = exec_streams(c, ["error", "stdin", "stdout"])
    # bypass our own window accounting: one 100 KiB frame > the 64 KiB window
    c.send_raw(sc.data_frame(s["stdin"].id, 0, bytes(100 * 1024)))
    deadline = time.time() + 5
    while not c.rsts and time.time() < deadline:
        time.sleep(0.05)
    assert (s["stdin"].id, 7) in c.rsts  # FLOW_CONTROL_ERROR
    assert s["error"].read_all() == SUCCESS
    c.close()


def test_websocket_unmasked_frame_closes_1002(drv):
    ws = ws_connect(drv, drv.url("exec io sleep 30"))
    ws.sock.sendall(b"\x82\x02\x00a")  # unmasked client frame
    # Read the raw frames: websocket-client answers a close frame by sending
    # its own close, which races with the server closing the socket (EPIPE).
    ws.sock.settimeout(10)
    buf = b""
    code = None
    while code is None:
        try:
            chunk = ws.sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        buf += chunk
        while len(buf) >= 2:
            op, n = buf[0] & 0x0F, buf[1] & 0x7F
            hdr = 2 + (2 if n == 126 else 8 if n == 127 else 0)
            if len(buf) < hdr:
                break
            if n == 126:
                n = struct.unpack(">H", buf[2:4])[0]
            elif n == 127:
                n = struct.unpack(">Q", buf[2:10])[0]
            if len(buf) < hdr + n:
                break
            payload, buf = buf[hdr:hdr + n], buf[hdr + n:]
            if op == 0x8:
                code = struct.unpack(">H", payload[:2])[0]
                break
    assert code == 1002
    ws.sock.close()


# ---------------- exec over WebSocket ----------------

def test_ws_stdout_100mb_exact(drv):
    size = 100_000_000
    ws = ws_connect(drv, drv.url("exec o head -c %d /dev/zero" % size), protocols=("v5.channel.k8s.io",))
    assert ws.subprotocol == "v5.channel.k8s.io"
    h, n = hashlib.sha256(), [0]

    def sink(b):
        h.update(b)
        n[0] += len(b)
    t0 = time.time()
    out = ws_collect(ws, sink=sink)
    dt = time.time() - t0
    assert out.get(3) == SUCCESS
    assert n[0] == size and h.hexdigest() == zeros_sha(size)
    print("\nWebSocket stdout: %.1f MB/s" % (size / dt / 1e6))


@pytest.mark.parametrize("proto,code", [(V4, 0), ("v5.channel.k8s.io", 7), ("channel.k8s.io", 7)])
def test_ws_exit_codes(drv, proto, code):
    ws = ws_connect(drv, drv.url("exec oe echo out; echo err >&2; exit %d" % code), protocols=(proto,))
    out = ws_collect(ws)
    assert out.get(1) == b"out\n" and out.get(2) == b"err\n"
    if proto == "channel.k8s.io":
        assert out.get(3, b"") == b"command terminated with non-zero exit code: exit status 7"
    else:
        assert out.get(3) == (SUCCESS if code == 0 else status_exit(code))


def test_ws_base64_and_v5_close_stdin(drv):
    ws = ws_connect(drv, drv.url("exec io cat; echo done"), protocols=("v4.base64.channel.k8s.io",))
    assert ws.subprotocol == "v4.base64.channel.k8s.io"
    import base64 as b64
    ws.send("0" + b64.b64encode(b"hello base64\n").decode())
    # v4 has no way to close stdin: read the echo, then hang up is tested elsewhere
    got = b""
    while b"hello base64\n" not in got:
        op, data = ws.recv_data()
        if data and data[:1] == b"1":
            got += b64.b64decode(data[1:])
    ws.close()

    ws = ws_connect(drv, drv.url("exec io cat; echo done"), protocols=("v5.channel.k8s.io",))
    data = os.urandom(1 << 20)
    for i in range(0, len(data), 100000):
        ws.send_binary(b"\x00" + data[i:i + 100000])
    ws.send_binary(b"\xff\x00")  # v5: close channel 0 (stdin)
    out = ws_collect(ws)
    assert out.get(1) == data + b"done\n"
    assert out.get(3) == SUCCESS


def test_ws_tty_resize(drv):
    ws = ws_connect(drv, drv.url("exec iot read x; stty size"), protocols=("v5.channel.k8s.io",))
    ws.send_binary(b"\x04" + b'{"Width":100,"Height":33}')
    time.sleep(0.2)
    ws.send_binary(b"\x00go\n")
    out = ws_collect(ws)
    assert b"33 100" in out.get(1, b""), out
    assert out.get(3) == SUCCESS


def test_ws_bad_subprotocol_403(drv):
    path = drv.url("exec o true")
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        ws_connect(drv, path, protocols=("v9.channel.k8s.io",))
    assert e.value.status_code == 403


# ---------------- port-forward ----------------

@pytest.fixture(scope="module")
def http_port():
    class H(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            body = b"hello from %s" % self.path.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1]
    srv.shutdown()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def test_portforward_spdy(drv, http_port):
    c = spdy(drv, drv.url("portforward %d" % http_port), protocols=("portforward.k8s.io",))
    assert c.protocol == "portforward.k8s.io"
    for rid, path in ((0, "/a"), (1, "/b")):
        err = c.open_stream([("streamtype", "error"), ("port", str(http_port)), ("requestid", str(rid))])
        data = c.open_stream([("streamtype", "data"), ("port", str(http_port)), ("requestid", str(rid))])
        data.write(b"GET %s HTTP/1.0\r\n\r\n" % path.encode(), fin=True)
        resp = data.read_all()
        assert resp.startswith(b"HTTP/1.0 200") and resp.endswith(b"hello from " + path.encode()), resp
        assert err.read_all() == b""
    # a closed port: the error stream says so
    dead = free_port()
    err = c.open_stream([("streamtype", "error"), ("port", str(dead)), ("requestid", "9")])
    c.open_stream([("streamtype", "data"), ("port", str(dead)), ("requestid", "9")])
    msg = err.read_all()
    assert b"error forwarding port %d" % dead in msg, msg
    c.close()


def test_portforward_websocket(drv, http_port):
    ws = ws_connect(drv, drv.url("portforward %d" % http_port), protocols=(V4,), query="?ports=%d" % http_port)
    first = {}
    while len(first) < 2:
        op, data = ws.recv_data()
        first[data[0]] = data[1:]
    assert first == {0: struct.pack("<H", http_port), 1: struct.pack("<H", http_port)}
    ws.send_binary(b"\x00GET /ws HTTP/1.0\r\n\r\n")
    out = ws_collect(ws)
    assert out.get(0, b"").startswith(b"HTTP/1.0 200") and out[0].endswith(b"hello from /ws"), out
