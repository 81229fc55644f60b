"""Fixtures for cocoon's integration tests.

The tests drive the real cocoond over its real unix socket with an
independent gRPC implementation (Debian's python3-grpcio). The CRI stubs are
generated at test time from proto/api.proto with grpc_tools, so the daemon's
protobuf-c encoding is checked against Google's protobuf implementation.
"""
import hashlib
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

SRCDIR = pathlib.Path(__file__).resolve().parents[2]
BUILDDIR = pathlib.Path(os.environ.get("COCOON_BUILDDIR", SRCDIR / "build"))


def _gen_stubs(outdir, package, fname):
    """Generate python stubs for api.proto under the given package name."""
    outdir.mkdir(parents=True, exist_ok=True)
    src = (SRCDIR / "proto" / "api.proto").read_text()
    if package != "runtime.v1":
        src = src.replace("package runtime.v1;", "package %s;" % package)
    (outdir / fname).write_text(src)
    from grpc_tools import protoc
    import grpc_tools
    include = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    rc = protoc.main(["protoc", "-I%s" % outdir, "-I%s" % include,
                      "--python_out=%s" % outdir, "--grpc_python_out=%s" % outdir,
                      str(outdir / fname)])
    assert rc == 0, "protoc failed for %s" % package


_GEN = pathlib.Path(tempfile.mkdtemp(prefix="cocoon-stubs-"))
# Distinct file names: one protobuf descriptor pool holds both packages.
_gen_stubs(_GEN, "runtime.v1", "api.proto")
_gen_stubs(_GEN, "runtime.v1alpha2", "api_v1alpha2.proto")
sys.path.insert(0, str(_GEN))
import api_pb2 as pb  # noqa: E402
import api_pb2_grpc as pb_grpc  # noqa: E402
import api_v1alpha2_pb2 as pb_alpha  # noqa: E402
import api_v1alpha2_pb2_grpc as pb_alpha_grpc  # noqa: E402


def binary(name):
    p = BUILDDIR / name
    if not p.exists():
        pytest.fail("%s not built (set COCOON_BUILDDIR; looked in %s)" % (name, BUILDDIR))
    return str(p)


class Daemon:
    """A cocoond started on a temporary socket with a temporary config."""

    def __init__(self, tmp, extra_config="", args=()):
        self.tmp = pathlib.Path(tmp)
        self.sock = self.tmp / "cocoon.sock"
        self.address = "unix://%s" % self.sock
        self.config = self.tmp / "cocoon.toml"
        # [paths] state holds the pods' unix sockets (<state>/sandboxes/<64-char
        # id>/virtiofsd.sock must fit in 107 bytes): cocoond refuses a state
        # path over 17 bytes, so it is a short /run dir named after tmp.
        self.state = pathlib.Path("/run/cc" + hashlib.sha256(str(self.tmp).encode()).hexdigest()[:8])
        self.config.write_text(
            '[server]\nlisten = "%s"\n[paths]\nroot = "%s"\nstate = "%s"\n%s'
            % (self.address, self.tmp / "root", self.state, extra_config))
        self.log = self.tmp / "cocoond.log"
        self.args = list(args)
        self.proc = None

    def start(self, wait=True):
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [binary("cocoond"), "--config", str(self.config), "--log-level", "debug"] + self.args,
            stdout=logf, stderr=subprocess.STDOUT)
        logf.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("cocoond exited with %s:\n%s" % (self.proc.returncode, self.log_text()))
            if self.sock.exists():
                try:
                    self.runtime().Version(pb.VersionRequest(version="0.1.0"), timeout=2)
                    return
                except Exception:
                    pass
            time.sleep(0.05)
        raise AssertionError("cocoond did not come up:\n" + self.log_text())

    def log_text(self):
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def channel(self, **opts):
        import grpc
        options = [("grpc.max_send_message_length", 64 << 20),
                   ("grpc.max_receive_message_length", 64 << 20)]
        return grpc.insecure_channel(self.address, options=options)

    def runtime(self, ch=None):
        return pb_grpc.RuntimeServiceStub(ch or self.channel())

    def images(self, ch=None):
        return pb_grpc.ImageServiceStub(ch or self.channel())

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("cocoond did not exit within %ss of %s" % (timeout, sig))
        return self.proc.returncode if self.proc else None


@pytest.fixture
def tmpdir_short():
    # unix socket paths are limited to 107 bytes: keep the directory short.
    d = tempfile.mkdtemp(prefix="cc-", dir="/tmp")
    yield pathlib.Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def daemon_factory(tmpdir_short):
    started = []

    def make(extra_config="", args=(), start=True, subdir=None):
        d = tmpdir_short / subdir if subdir else tmpdir_short
        d.mkdir(exist_ok=True)
        dm = Daemon(d, extra_config, args)
        started.append(dm)
        return dm.start() if start else dm

    yield make
    for dm in started:
        if dm.proc and dm.proc.poll() is None:
            dm.proc.kill()
            dm.proc.wait()
        shutil.rmtree(dm.state, ignore_errors=True)


@pytest.fixture
def daemon(daemon_factory):
    return daemon_factory()
