"""Helpers for registry tests: Debian's docker-registry on loopback (optional
htpasswd or token auth, optional TLS with a test CA), a tiny token server (with
the OAuth2 refresh-token grant), a counting/throttling/fault-injecting reverse
proxy, and skopeo pushes. Everything listens on 127.0.0.1 only."""
import base64
import http.client
import http.server
import json
import os
import pathlib
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import warnings

REGISTRY_BIN = "/usr/bin/docker-registry"
SKOPEO = "/usr/bin/skopeo"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("nothing listens on 127.0.0.1:%d" % port)


def htpasswd_line(user, password):
    """bcrypt entry for docker-registry's htpasswd auth (crypt's $2b$)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
        return "%s:%s\n" % (user, crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH)))


def _b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class TokenServer:
    """Docker token auth (distribution's "token" auth): GET /token?service=&scope=
    answers a JWT signed (RS256, openssl CLI) with a self-signed certificate
    that the registry trusts through rootcertbundle. Grants what is asked for
    when the basic credentials (if any are required) match. POST /token is the
    OAuth2 form (grant_type=refresh_token, refresh_token, service, scope,
    client_id): grants when the refresh token is one of refresh_tokens
    (token → user). Records requests (method, path, query or form, user)."""

    def __init__(self, tmp, users=None, service="cocoon-test", issuer="cocoon-test-issuer",
                 expires_in=300, refresh_tokens=None):
        self.tmp = pathlib.Path(tmp)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.users = users or {}
        self.refresh_tokens = refresh_tokens or {}
        self.service = service
        self.issuer = issuer
        self.expires_in = expires_in
        self.key = self.tmp / "token.key"
        self.cert = self.tmp / "token.crt"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        str(self.key), "-out", str(self.cert), "-subj", "/CN=cocoon-token",
                        "-days", "2"], check=True, capture_output=True)
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
                             check=True, capture_output=True).stdout
        self.x5c = base64.b64encode(der).decode()
        self.requests = []
        self.lock = threading.Lock()
        self.port = free_port()
        self.realm = "http://127.0.0.1:%d/token" % self.port
        self._start()

    def _sign(self, claims):
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        signing_input = "%s.%s" % (_b64url(json.dumps(header).encode()),
                                   _b64url(json.dumps(claims).encode()))
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                             input=signing_input.encode(), check=True, capture_output=True).stdout
        return signing_input + "." + _b64url(sig)

    def mint(self, scopes, sub="", expires_in=None):
        """A registry token for scopes ("repository:NAME:pull"), as the token
        server would hand out: what a kubelet passes as AuthConfig.registry_token."""
        access = []
        for scope in scopes:
            parts = scope.split(":")
            access.append({"type": parts[0], "name": ":".join(parts[1:-1]),
                           "actions": parts[-1].split(",")})
        now = int(time.time())
        return self._sign({"iss": self.issuer, "sub": sub, "aud": self.service,
                           "exp": now + (expires_in or self.expires_in), "nbf": now - 10,
                           "iat": now, "jti": os.urandom(8).hex(), "access": access})

    def _start(self):
        ts = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                u = urllib.parse.urlparse(self.path)
                q = urllib.parse.parse_qs(u.query)
                user = None
                auth = self.headers.get("Authorization", "")
                if auth.startswith("Basic "):
                    user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
                    if ts.users.get(user) != pw:
                        user = "!bad"
                with ts.lock:
                    ts.requests.append({"method": "GET", "path": u.path, "query": q,
                                        "user": user,
                                        "agent": self.headers.get("User-Agent", "")})
                if ts.users and (user is None or user == "!bad"):
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                access = []
                for scope in q.get("scope", []):
                    parts = scope.split(":")
                    if len(parts) >= 3:
                        access.append({"type": parts[0], "name": ":".join(parts[1:-1]),
                                       "actions": parts[-1].split(",")})
                now = int(time.time())
                claims = {"iss": ts.issuer, "sub": user or "", "aud": ts.service,
                          "exp": now + ts.expires_in, "nbf": now - 10, "iat": now,
                          "jti": os.urandom(8).hex(), "access": access}
                body = json.dumps({"token": ts._sign(claims), "expires_in": ts.expires_in,
                                   "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                              time.gmtime(now))}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                form = urllib.parse.parse_qs(raw)
                one = {k: v[0] for k, v in form.items()}
                user = ts.refresh_tokens.get(one.get("refresh_token"))
                with ts.lock:
                    ts.requests.append({
                        "method": "POST", "path": urllib.parse.urlparse(self.path).path,
                        "query": form, "user": user,
                        "content_type": self.headers.get("Content-Type", ""),
                        "authorization": "Authorization" in self.headers,
                        "agent": self.headers.get("User-Agent", "")})
                if one.get("grant_type") != "refresh_token" or user is None or \
                        one.get("service") != ts.service:
                    body = json.dumps({"error": "invalid_grant"}).encode()
                    self.send_response(401 if user is None else 400)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                scopes = [s for v in form.get("scope", []) for s in v.split(" ") if s]
                body = json.dumps({"access_token": ts.mint(scopes, sub=user),
                                   "expires_in": ts.expires_in,
                                   "scope": " ".join(scopes)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), H)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def auth_config(self):
        return ("auth:\n  token:\n    realm: %s\n    service: %s\n    issuer: %s\n"
                "    rootcertbundle: %s\n" % (self.realm, self.service, self.issuer, self.cert))

    def requests_by(self, agent_prefix):
        with self.lock:
            return [r for r in self.requests if r["agent"].startswith(agent_prefix)]

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class CertAuthority:
    """A certificate authority made with the openssl CLI, and server
    certificates it signs (for a registry serving HTTPS on loopback)."""

    def __init__(self, tmp, name="cocoon test CA"):
        self.tmp = pathlib.Path(tmp)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.key = self.tmp / "ca.key"
        self.cert = self.tmp / "ca.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-keyout", str(self.key), "-out", str(self.cert), "-days", "2",
                        "-subj", "/CN=%s" % name,
                        "-addext", "basicConstraints=critical,CA:TRUE",
                        "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
                       check=True, capture_output=True)

    def issue(self, name, sans=("IP:127.0.0.1", "DNS:localhost")):
        """(cert, key) paths for a server certificate with these subjectAltNames."""
        key = self.tmp / ("%s.key" % name)
        csr = self.tmp / ("%s.csr" % name)
        crt = self.tmp / ("%s.pem" % name)
        ext = self.tmp / ("%s.ext" % name)
        ext.write_text("subjectAltName=%s\nextendedKeyUsage=serverAuth\n"
                       "basicConstraints=CA:FALSE\n" % ",".join(sans))
        subprocess.run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes",
                        "-keyout", str(key), "-out", str(csr), "-subj", "/CN=%s" % name],
                       check=True, capture_output=True)
        subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(self.cert),
                        "-CAkey", str(self.key), "-CAcreateserial", "-out", str(crt),
                        "-days", "2", "-extfile", str(ext)], check=True, capture_output=True)
        return crt, key


class Registry:
    """docker-registry serving plain HTTP on 127.0.0.1:<port>, or HTTPS when
    tls=(cert, key) is given."""

    def __init__(self, tmp, htpasswd=None, token=None, port=None, tls=None):
        self.tmp = pathlib.Path(tmp)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.storage = self.tmp / "storage"
        self.storage.mkdir(exist_ok=True)
        self.port = port or free_port()
        self.host = "127.0.0.1:%d" % self.port
        self.log = self.tmp / "registry.log"
        self.creds = None
        auth = ""
        if htpasswd:
            user, password = htpasswd
            self.creds = htpasswd
            hp = self.tmp / "htpasswd"
            hp.write_text(htpasswd_line(user, password))
            auth = "auth:\n  htpasswd:\n    realm: cocoon-test\n    path: %s\n" % hp
        elif token:
            auth = token.auth_config()
        self.tls = tls
        tls_conf = "  tls:\n    certificate: %s\n    key: %s\n" % tuple(tls) if tls else ""
        self.config = self.tmp / "config.yml"
        self.config.write_text(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n"
            "storage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\n"
            "  maintenance:\n    uploadpurging:\n      enabled: false\n"
            "http:\n  addr: 127.0.0.1:%d\n  secret: cocoon-test-secret\n%s%s"
            % (self.storage, self.port, tls_conf, auth))
        self.proc = None

    def start(self):
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(self.config)], stdout=logf,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        logf.close()
        try:
            wait_port(self.port)
        except AssertionError:
            self.stop()
            raise AssertionError("docker-registry did not start:\n" + self.log_text())
        return self

    def log_text(self):
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, kill=False):
        if self.proc and self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def blob_path(self, digest):
        hexd = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"

    def push(self, layout_dir, tag, name, dest_tag=None, creds=None, multi_arch=False):
        """skopeo copy oci:LAYOUT:TAG → docker://HOST/NAME:DEST_TAG."""
        cmd = [SKOPEO, "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false"]
        if multi_arch:
            cmd.append("--all")
        if creds or self.creds:
            cmd += ["--dest-creds", "%s:%s" % (creds or self.creds)]
        else:
            cmd.append("--dest-no-creds")
        cmd += ["oci:%s:%s" % (layout_dir, tag),
                "docker://%s/%s:%s" % (self.host, name, dest_tag or tag)]
        env = dict(os.environ, HOME=str(self.tmp))  # no ~/.docker/config.json surprises
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        if p.returncode != 0:
            raise AssertionError("skopeo push failed: %s\n%s\nregistry log:\n%s"
                                 % (" ".join(cmd), p.stderr, self.log_text()[-4000:]))

    def push_raw(self, layout_dir, tag, name, dest_tag=None):
        """Pushes an OCI layout byte for byte over the v2 API (no auth). skopeo
        compresses uncompressed layers on the way to a registry; this does not."""
        layout_dir = pathlib.Path(layout_dir)
        index = json.loads((layout_dir / "index.json").read_text())
        top = [m for m in index["manifests"]
               if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag][0]

        def blob(d):
            return (layout_dir / "blobs" / "sha256" / d[7:]).read_bytes()

        def req(method, path, body=None, headers=None):
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            c.close()
            if r.status >= 300:
                raise AssertionError("%s %s: %d %s" % (method, path, r.status, data[:300]))
            return r

        def put_blob(d):
            r = req("POST", "/v2/%s/blobs/uploads/" % name)
            loc = urllib.parse.urlparse(r.getheader("Location"))
            q = loc.query + ("&" if loc.query else "") + "digest=" + d
            req("PUT", "%s?%s" % (loc.path, q), blob(d),
                {"Content-Type": "application/octet-stream"})

        def put_manifest(desc, ref):
            m = json.loads(blob(desc["digest"]))
            if desc["mediaType"].endswith("index.v1+json"):
                for sub in m["manifests"]:
                    put_manifest(sub, sub["digest"])
            else:
                for d in [m["config"]] + m["layers"]:
                    put_blob(d["digest"])
            req("PUT", "/v2/%s/manifests/%s" % (name, ref), blob(desc["digest"]),
                {"Content-Type": desc["mediaType"]})

        put_manifest(top, dest_tag or tag)


class Proxy:
    """Reverse proxy 127.0.0.1:<port> → upstream, recording every request
    (method, path, status, Range, whether Authorization was sent, agent) and
    optionally throttling response bodies to rate bytes/s, or answering blob
    GETs with a 307 to another port (blob storage elsewhere).

    fault(rec, n) injects failures: called for each request with its record
    and n, how many requests for the same method and path came before; it
    returns None (forward), ("status", CODE) (answer CODE with a registry
    error document, the upstream is not asked) or ("drop", NBYTES) (forward,
    send the headers and NBYTES of the body, then drop the connection)."""

    def __init__(self, upstream_port, port=None, rate=None, redirect_blobs=None, fault=None):
        self.fault = fault
        self.seen = {}
        self.upstream_port = upstream_port
        self.port = port or free_port()
        self.host = "127.0.0.1:%d" % self.port
        self.rate = rate
        self.redirect_blobs = redirect_blobs
        self.log = []
        self.lock = threading.Lock()
        self.conns = set()
        self.httpd = None
        self.start()

    def start(self):
        px = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def setup(self):
                super().setup()
                with px.lock:
                    px.conns.add(self.connection)

            def finish(self):
                try:
                    super().finish()
                finally:
                    with px.lock:
                        px.conns.discard(self.connection)

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "connection", "proxy-connection")}
                rec = {"method": self.command, "path": self.path, "range": self.headers.get("Range"),
                       "auth": "Authorization" in self.headers,
                       "agent": self.headers.get("User-Agent", ""), "status": None, "bytes": 0}
                with px.lock:
                    px.log.append(rec)
                    key = (self.command, self.path)
                    n = px.seen.get(key, 0)
                    px.seen[key] = n + 1
                action = px.fault(rec, n) if px.fault else None
                drop_after = None
                if action and action[0] == "status":
                    rec["status"] = action[1]
                    rec["injected"] = True
                    err = json.dumps({"errors": [{"code": "UNAVAILABLE" if action[1] == 503
                                                  else "UNKNOWN",
                                                  "message": "injected failure"}]}).encode()
                    self.send_response(action[1])
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(err)))
                    self.end_headers()
                    self.wfile.write(err)
                    return
                if action and action[0] == "drop":
                    drop_after = action[1]
                    rec["injected"] = True
                if px.redirect_blobs and self.command == "GET" and "/blobs/" in self.path:
                    rec["status"] = 307
                    self.send_response(307)
                    self.send_header("Location", "http://127.0.0.1:%d%s?sig=SECRET"
                                     % (px.redirect_blobs, self.path))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                try:
                    c = http.client.HTTPConnection("127.0.0.1", px.upstream_port, timeout=60)
                    c.request(self.command, self.path, body=body, headers=headers)
                    r = c.getresponse()
                except OSError:
                    rec["status"] = 502
                    self.send_response(502)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                rec["status"] = r.status
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() in ("connection", "transfer-encoding", "keep-alive"):
                        continue
                    self.send_header(k, v)
                chunked = r.getheader("Content-Length") is None and self.command != "HEAD"
                if chunked:
                    self.send_header("Connection", "close")
                self.end_headers()
                if self.command == "HEAD":
                    return
                while True:
                    try:
                        chunk = r.read(16384 if not px.rate else min(16384, max(1024, px.rate // 20)))
                    except (OSError, http.client.HTTPException):
                        self.close_connection = True
                        break
                    if not chunk:
                        break
                    if drop_after is not None and rec["bytes"] + len(chunk) >= drop_after:
                        self.wfile.write(chunk[:drop_after - rec["bytes"]])
                        rec["bytes"] = drop_after
                        self.wfile.flush()
                        self.connection.shutdown(socket.SHUT_RDWR)
                        self.close_connection = True
                        c.close()
                        return
                    self.wfile.write(chunk)
                    rec["bytes"] += len(chunk)
                    if px.rate:
                        time.sleep(len(chunk) / px.rate)
                if chunked:
                    self.close_connection = True
                c.close()

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), H)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    def kill(self):
        """Stops listening and drops every connection in flight."""
        self.stop()
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def blob_gets(self, digest=None, agent="cocoon/"):
        with self.lock:
            return [r for r in self.log if r["method"] == "GET" and "/blobs/" in r["path"]
                    and r["agent"].startswith(agent)
                    and (digest is None or r["path"].endswith(digest))]
