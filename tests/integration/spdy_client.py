"""A small SPDY/3.1 client, written from the SPDY/3.1 draft, for testing
cocoon's streaming server the way client-go's spdystream talks to a kubelet:
an HTTP/1.1 upgrade, then client-initiated streams named by a "streamtype"
header, zlib-compressed header blocks with the SPDY/3 dictionary.

flow_control=True makes it a strict SPDY/3.1 peer (SETTINGS with an initial
window, WINDOW_UPDATE as it consumes, honours the server's windows);
flow_control=False behaves like spdystream (ignores windows entirely)."""
import socket
import struct
import threading
import zlib

_WORDS = [
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
    "accept-encoding", "accept-language", "accept-ranges", "age", "allow", "authorization",
    "cache-control", "connection", "content-base", "content-encoding", "content-language",
    "content-length", "content-location", "content-md5", "content-range", "content-type",
    "date", "etag", "expect", "expires", "from", "host", "if-match", "if-modified-since",
    "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
    "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
    "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent",
    "vary", "via", "warning", "www-authenticate", "method", "get", "status", "200 OK",
    "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin"]
_TAIL = ("100101201202205206300302303304305306307402405406407408409410411412413414415416417"
         "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently"
         "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error"
         "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct "
         "Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,"
         "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,"
         "publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _WORDS) + _TAIL.encode()
assert len(DICTIONARY) == 1423 and zlib.adler32(DICTIONARY) == 0xE3C6A7C2

SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 1
INITIAL_WINDOW = 65536


def control_frame(ftype, flags, payload):
    return struct.pack(">HHI", 0x8003, ftype, (flags << 24) | len(payload)) + payload


def data_frame(sid, flags, payload):
    return struct.pack(">II", sid & 0x7FFFFFFF, (flags << 24) | len(payload)) + payload


def encode_headers(headers):
    raw = struct.pack(">I", len(headers))
    for k, v in headers:
        k, v = k.encode(), v.encode()
        raw += struct.pack(">I", len(k)) + k + struct.pack(">I", len(v)) + v
    return raw


def decode_headers(raw):
    n, = struct.unpack_from(">I", raw, 0)
    off, out = 4, {}
    for _ in range(n):
        kl, = struct.unpack_from(">I", raw, off)
        k = raw[off + 4:off + 4 + kl].decode()
        off += 4 + kl
        vl, = struct.unpack_from(">I", raw, off)
        out[k] = raw[off + 4:off + 4 + vl].decode()
        off += 4 + vl
    return out


class UpgradeError(Exception):
    def __init__(self, status, headers, body):
        super().__init__("HTTP %d: %s" % (status, body))
        self.status, self.headers, self.body = status, headers, body


def http_upgrade(host, port, path, extra_headers, timeout=10):
    """Sends an upgrade request; returns (sock, status, headers(list), body_or_leftover)."""
    s = socket.create_connection((host, port), timeout=timeout)
    req = "GET %s HTTP/1.1\r\nHost: %s:%d\r\n" % (path, host, port)
    for k, v in extra_headers:
        req += "%s: %s\r\n" % (k, v)
    s.sendall((req + "\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
    headers = []
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers.append((k.strip(), v.strip()))
    return s, status, headers, rest


class Stream:
    def __init__(self, conn, sid, headers):
        self.conn, self.id, self.headers = conn, sid, headers
        self.replied = threading.Event()
        self.cond = threading.Condition()
        self.chunks = []
        self.fin_in = False
        self.reset = None
        self.send_window = INITIAL_WINDOW
        self.sink = None  # callable(bytes) instead of buffering

    def _data(self, payload, fin):
        with self.cond:
            if payload:
                if self.sink:
                    self.sink(payload)
                else:
                    self.chunks.append(payload)
            if fin:
                self.fin_in = True
            self.cond.notify_all()

    def write(self, data, fin=False):
        self.conn.send_data(self, data, fin)

    def close(self):
        self.conn.send_data(self, b"", True)

    def read_all(self, timeout=30):
        with self.cond:
            if not self.cond.wait_for(lambda: self.fin_in or self.reset is not None or self.conn.closed, timeout):
                raise TimeoutError("stream %d: no FIN" % self.id)
            return b"".join(self.chunks)

    def read_some(self, timeout=10):
        with self.cond:
            self.cond.wait_for(lambda: self.chunks or self.fin_in or self.reset is not None or self.conn.closed, timeout)
            d = b"".join(self.chunks)
            self.chunks = []
            return d


class SpdyConnection:
    def __init__(self, host, port, path, protocols, flow_control=True, window=4 << 20, timeout=30):
        hdrs = [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")]
        hdrs += [("X-Stream-Protocol-Version", p) for p in protocols]
        self.sock, self.status, self.headers, rest = http_upgrade(host, port, path, hdrs, timeout)
        if self.status != 101:
            body = rest
            try:
                while True:
                    c = self.sock.recv(4096)
                    if not c:
                        break
                    body += c
            except OSError:
                pass
            self.sock.close()
            raise UpgradeError(self.status, self.headers, body.decode(errors="replace"))
        self.protocol = dict((k.lower(), v) for k, v in self.headers).get("x-stream-protocol-version")
        self.sock.settimeout(None)
        self.rbuf = bytearray(rest)
        self.wlock = threading.Lock()
        self.deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, 8,
                                        zlib.Z_DEFAULT_STRATEGY, DICTIONARY)
        self.inflate = zlib.decompressobj(zdict=DICTIONARY)
        self.streams = {}
        self.next_id = 1
        self.flow = flow_control
        self.window = window
        self.session_send_window = INITIAL_WINDOW
        self.cond = threading.Condition()
        self.closed = False
        self.goaway = None
        self.pings = {}
        self.rsts = []
        if flow_control:
            self.send_raw(control_frame(SETTINGS, 0, struct.pack(">IBBHI", 1, 0, 0, 7, window)))
            # open the session window to match
            self.send_raw(control_frame(WINDOW_UPDATE, 0, struct.pack(">II", 0, window - INITIAL_WINDOW)))
        self.reader = threading.Thread(target=self._read_loop, daemon=True)
        self.reader.start()

    def send_raw(self, b):
        with self.wlock:
            self.sock.sendall(b)

    def open_stream(self, headers, fin=False, wait_reply=True):
        with self.wlock:
            sid = self.next_id
            self.next_id += 2
            st = Stream(self, sid, headers)
            self.streams[sid] = st
            block = self.deflate.compress(encode_headers(headers)) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
            payload = struct.pack(">IIBB", sid, 0, 0, 0) + block
            self.sock.sendall(control_frame(SYN_STREAM, FLAG_FIN if fin else 0, payload))
        if wait_reply and not st.replied.wait(10):
            raise TimeoutError("no SYN_REPLY for stream %d" % sid)
        return st

    def send_data(self, st, data, fin):
        view = memoryview(data)
        while True:
            n = min(len(view), 65536)
            if self.flow and n:
                with self.cond:
                    self.cond.wait_for(lambda: (st.send_window > 0 and self.session_send_window > 0) or self.closed or st.reset is not None)
                    if self.closed or st.reset is not None:
                        raise ConnectionError("stream closed")
                    n = min(n, st.send_window, self.session_send_window)
                    st.send_window -= n
                    self.session_send_window -= n
            last = fin and n == len(view)
            self.send_raw(data_frame(st.id, FLAG_FIN if last else 0, bytes(view[:n])))
            view = view[n:]
            if not len(view):
                return

    def ping(self, pid=1, timeout=5):
        ev = threading.Event()
        self.pings[pid] = ev
        self.send_raw(control_frame(PING, 0, struct.pack(">I", pid)))
        return ev.wait(timeout)

    def _recv_exact(self, n):
        while len(self.rbuf) < n:
            c = self.sock.recv(max(262144, n - len(self.rbuf)))
            if not c:
                raise EOFError
            self.rbuf += c
        out = bytes(self.rbuf[:n])
        del self.rbuf[:n]
        return out

    def _read_loop(self):
        try:
            while True:
                h = self._recv_exact(8)
                w0, w1 = struct.unpack(">II", h)
                flags, length = w1 >> 24, w1 & 0xFFFFFF
                payload = self._recv_exact(length)
                if w0 & 0x80000000:
                    self._control((w0 & 0xFFFF), flags, payload)
                else:
                    sid = w0 & 0x7FFFFFFF
                    st = self.streams.get(sid)
                    if st:
                        st._data(payload, flags & FLAG_FIN)
                        if self.flow and payload:
                            self.send_raw(control_frame(WINDOW_UPDATE, 0, struct.pack(">II", sid, len(payload))) +
                                          control_frame(WINDOW_UPDATE, 0, struct.pack(">II", 0, len(payload))))
        except (EOFError, OSError):
            pass
        finally:
            with self.cond:
                self.closed = True
                self.cond.notify_all()
            for st in list(self.streams.values()):
                with st.cond:
                    st.cond.notify_all()

    def _control(self, ftype, flags, p):
        if ftype == SYN_REPLY:
            sid, = struct.unpack_from(">I", p, 0)
            self.inflate.decompress(p[4:])
            st = self.streams.get(sid & 0x7FFFFFFF)
            if st:
                st.replied.set()
                if flags & FLAG_FIN:
                    st._data(b"", True)
        elif ftype == HEADERS:
            self.inflate.decompress(p[4:])
        elif ftype == RST_STREAM:
            sid, code = struct.unpack(">II", p)
            self.rsts.append((sid, code))
            st = self.streams.get(sid)
            if st:
                with st.cond:
                    st.reset = code
                    st.cond.notify_all()
                st.replied.set()
            with self.cond:
                self.cond.notify_all()
        elif ftype == PING:
            pid, = struct.unpack(">I", p)
            if pid in self.pings:
                self.pings[pid].set()
            else:
                self.send_raw(control_frame(PING, 0, p))
        elif ftype == GOAWAY:
            self.goaway = struct.unpack(">II", p)
        elif ftype == WINDOW_UPDATE:
            sid, delta = struct.unpack(">II", p)
            with self.cond:
                if sid == 0:
                    self.session_send_window += delta
                elif sid in self.streams:
                    self.streams[sid].send_window += delta
                self.cond.notify_all()

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
