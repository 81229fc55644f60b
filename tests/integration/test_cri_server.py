"""The CRI server: Version, Status, RuntimeConfig, UpdateRuntimeConfig, the
UNIMPLEMENTED answers, malformed and oversize requests, concurrency and
graceful shutdown, the config file and the socket rules."""
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import threading
import time

import grpc
import pytest

from conftest import Daemon, binary, pb, pb_alpha, pb_alpha_grpc, pb_grpc

IMPLEMENTED = {"Version", "Status", "RuntimeConfig", "UpdateRuntimeConfig",
               "ListImages", "ImageStatus", "RemoveImage", "ImageFsInfo", "PullImage",
               # pods and containers (tests/integration/test_pods.py), exec and
               # streaming (test_exec_cri.py)
               "RunPodSandbox", "StopPodSandbox", "RemovePodSandbox", "PodSandboxStatus",
               "ListPodSandbox", "CreateContainer", "StartContainer", "StopContainer",
               "RemoveContainer", "ContainerStatus", "ListContainers", "ReopenContainerLog",
               "ExecSync", "Exec", "Attach", "PortForward", "UpdateContainerResources",
               # stats (test_stats.py)
               "ContainerStats", "ListContainerStats", "PodSandboxStats", "ListPodSandboxStats",
               # events (test_events.py), the Stream* twins of the lists (test_stats.py)
               "GetContainerEvents", "StreamPodSandboxes", "StreamContainers", "StreamImages",
               "StreamContainerStats", "StreamPodSandboxStats"}


def test_version(daemon):
    r = daemon.runtime().Version(pb.VersionRequest(version="0.1.0"), timeout=5)
    assert r.runtime_name == "cocoon"
    assert r.version == "0.1.0"
    assert r.runtime_api_version == "v1"
    out = subprocess.run([binary("cocoond"), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "cocoond %s" % r.runtime_version


def test_version_v1alpha2(daemon):
    stub = pb_alpha_grpc.RuntimeServiceStub(daemon.channel())
    r = stub.Version(pb_alpha.VersionRequest(version="0.1.0"), timeout=5)
    assert r.runtime_name == "cocoon"
    assert r.runtime_api_version == "v1alpha2"
    s = stub.Status(pb_alpha.StatusRequest(), timeout=5)
    assert {c.type for c in s.status.conditions} == {"RuntimeReady", "NetworkReady"}


def test_v1alpha2_can_be_disabled(daemon_factory):
    d = daemon_factory(start=False)
    d.config.write_text(d.config.read_text().replace(
        '[server]\n', '[server]\nenable_v1alpha2 = false\n'))
    d.start()
    assert d.runtime().Version(pb.VersionRequest(), timeout=5).runtime_name == "cocoon"
    stub = pb_alpha_grpc.RuntimeServiceStub(d.channel())
    with pytest.raises(grpc.RpcError) as e:
        stub.Version(pb_alpha.VersionRequest(), timeout=5)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED


def _conditions(resp):
    return {c.type: c for c in resp.status.conditions}


def test_status_reports_missing_vm_prerequisites(daemon_factory, tmpdir_short):
    d = daemon_factory('[vm]\nkernel = "%s/nokernel"\ninitrd = "%s/noinitrd"\n'
                       % (tmpdir_short, tmpdir_short))
    r = d.runtime().Status(pb.StatusRequest(verbose=False), timeout=5)
    c = _conditions(r)
    assert not c["RuntimeReady"].status
    assert c["RuntimeReady"].reason == "VMPrerequisitesMissing"
    assert "nokernel" in c["RuntimeReady"].message and "noinitrd" in c["RuntimeReady"].message
    assert not c["NetworkReady"].status
    assert c["NetworkReady"].reason == "NetworkPluginNotReady"
    assert r.status.conditions and not r.info  # info only when verbose
    assert [h.name for h in r.runtime_handlers] == [""]


def test_status_ready_when_prerequisites_exist(daemon_factory, tmpdir_short):
    k = tmpdir_short / "vmlinux"
    i = tmpdir_short / "initrd.img"
    k.write_bytes(b"\x7fELF" + b"\0" * 60)
    i.write_bytes(b"070701" + b"0" * 100)
    fake_qemu = tmpdir_short / "qemu"
    fake_qemu.write_text("#!/bin/sh\nexit 0\n")
    fake_qemu.chmod(0o755)
    d = daemon_factory('[vm]\nkernel = "%s"\ninitrd = "%s"\nqemu = "%s"\nvirtiofsd = "%s"\n'
                       '[runtime.handlers.hostmode]\nmode = "host"\n'
                       % (k, i, fake_qemu, fake_qemu))
    r = d.runtime().Status(pb.StatusRequest(verbose=True), timeout=5)
    c = _conditions(r)
    assert c["RuntimeReady"].status, c["RuntimeReady"].message
    assert c["RuntimeReady"].reason == "" and c["RuntimeReady"].message == ""
    assert sorted(h.name for h in r.runtime_handlers) == ["", "hostmode"]
    info = {k: json.loads(v) for k, v in r.info.items()}
    assert info["checks"]["kernel"]["ok"] is True
    assert info["runtime"]["accel"] in ("tcg", "kvm")
    assert 'listen = "%s"' % d.address in info["config"]
    # Removing the kernel flips the condition: the check is live, not cached.
    k.unlink()
    r = d.runtime().Status(pb.StatusRequest(), timeout=5)
    assert not _conditions(r)["RuntimeReady"].status


def test_runtime_config_cgroup_driver(daemon):
    r = daemon.runtime().RuntimeConfig(pb.RuntimeConfigRequest(), timeout=5)
    systemd = os.path.isdir("/run/systemd/system")
    want = pb.SYSTEMD if systemd else pb.CGROUPFS
    assert r.linux.cgroup_driver == want


def test_update_runtime_config_persists(daemon_factory):
    d = daemon_factory()
    rt = d.runtime()
    rt.UpdateRuntimeConfig(pb.UpdateRuntimeConfigRequest(runtime_config=pb.RuntimeConfig(
        network_config=pb.NetworkConfig(pod_cidr="10.88.0.0/16,fd00:10::/64"))), timeout=5)
    info = json.loads(rt.Status(pb.StatusRequest(verbose=True), timeout=5).info["runtime"])
    assert info["pod_cidr"] == "10.88.0.0/16,fd00:10::/64"
    for bad in ("10.88.0.0", "10.88.0.0/33", "nonsense/8", "fd00::/129"):
        with pytest.raises(grpc.RpcError) as e:
            rt.UpdateRuntimeConfig(pb.UpdateRuntimeConfigRequest(runtime_config=pb.RuntimeConfig(
                network_config=pb.NetworkConfig(pod_cidr=bad))), timeout=5)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
        assert "pod_cidr" in e.value.details()
    # Survives a restart.
    assert d.stop() == 0
    d.start()
    info = json.loads(d.runtime().Status(pb.StatusRequest(verbose=True), timeout=5).info["runtime"])
    assert info["pod_cidr"] == "10.88.0.0/16,fd00:10::/64"


def _all_methods():
    for svc_name in ("RuntimeService", "ImageService"):
        svc = pb.DESCRIPTOR.services_by_name[svc_name]
        for m in svc.methods:
            yield svc_name, m


def test_every_other_method_is_unimplemented_by_name(daemon):
    ch = daemon.channel()
    seen = 0
    for svc_name, m in _all_methods():
        if m.name in IMPLEMENTED:
            continue
        req_cls = getattr(pb, m.input_type.name)
        path = "/runtime.v1.%s/%s" % (svc_name, m.name)
        if m.server_streaming:
            call = ch.unary_stream(path, request_serializer=req_cls.SerializeToString,
                                   response_deserializer=lambda b: b)
            with pytest.raises(grpc.RpcError) as e:
                list(call(req_cls(), timeout=5))
        else:
            call = ch.unary_unary(path, request_serializer=req_cls.SerializeToString,
                                  response_deserializer=lambda b: b)
            with pytest.raises(grpc.RpcError) as e:
                call(req_cls(), timeout=5)
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED, path
        assert m.name in e.value.details(), (path, e.value.details())
        seen += 1
    assert seen >= 5  # 14 until UpdateContainerResources, pod stats, events and the Stream* lists


def test_unknown_method(daemon):
    ch = daemon.channel()
    for path in ("/runtime.v1.RuntimeService/NoSuchMethod", "/runtime.v2.RuntimeService/Version",
                 "/foo.Bar/Baz", "/runtime.v1.RuntimeService/Versionx"):
        call = ch.unary_unary(path, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as e:
            call(b"", timeout=5)
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED, path


@pytest.mark.parametrize("payload", [b"\xff\xff\xff\xff", b"\x0a\x05ab", b"\x08" + b"\xff" * 11])
def test_malformed_request_is_invalid_argument(daemon, payload):
    ch = daemon.channel()
    call = ch.unary_unary("/runtime.v1.RuntimeService/Version",
                          request_serializer=lambda b: b, response_deserializer=lambda b: b)
    with pytest.raises(grpc.RpcError) as e:
        call(payload, timeout=5)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Version" in e.value.details()
    # The daemon is still fine.
    assert daemon.runtime().Version(pb.VersionRequest(), timeout=5).runtime_name == "cocoon"


def test_oversize_message_is_resource_exhausted(daemon_factory):
    d = daemon_factory(start=False)
    d.config.write_text(d.config.read_text().replace(
        "[server]\n", "[server]\nmax_recv_message_size = 4096\n"))
    d.start()
    with pytest.raises(grpc.RpcError) as e:
        d.runtime().UpdateRuntimeConfig(pb.UpdateRuntimeConfigRequest(runtime_config=pb.RuntimeConfig(
            network_config=pb.NetworkConfig(pod_cidr="x" * 10000))), timeout=5)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert d.runtime().Version(pb.VersionRequest(), timeout=5).runtime_name == "cocoon"


def test_concurrent_clients(daemon):
    """200 concurrent clients x 50 calls, each client on its own connection."""
    errors = []
    counts = [0] * 200
    barrier = threading.Barrier(200)

    def client(i):
        try:
            ch = daemon.channel()
            stub = pb_grpc.RuntimeServiceStub(ch)
            barrier.wait(timeout=60)
            for j in range(50):
                if j % 5 == 4:
                    r = stub.Status(pb.StatusRequest(), timeout=30)
                    assert len(r.status.conditions) == 2
                else:
                    r = stub.Version(pb.VersionRequest(), timeout=30)
                    assert r.runtime_name == "cocoon"
                counts[i] += 1
            ch.close()
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not errors, errors[:5]
    assert sum(counts) == 200 * 50


def test_sigterm_under_load_exits_cleanly(daemon):
    stop = threading.Event()
    ok = [0]
    bad = []

    def load():
        stub = daemon.runtime()
        while not stop.is_set():
            try:
                stub.Version(pb.VersionRequest(), timeout=5)
                ok[0] += 1
            except grpc.RpcError as e:
                if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                    bad.append(e.code())
                return

    threads = [threading.Thread(target=load) for _ in range(16)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    assert ok[0] > 0
    t0 = time.monotonic()
    rc = daemon.stop(signal.SIGTERM, timeout=15)
    elapsed = time.monotonic() - t0
    stop.set()
    for t in threads:
        t.join(10)
    assert rc == 0, daemon.log_text()[-2000:]
    assert elapsed < 12
    assert not daemon.sock.exists()
    assert not bad, bad
    assert "cocoond stopped" in daemon.log_text()


def test_sigint_exits_cleanly(daemon):
    assert daemon.stop(signal.SIGINT) == 0
    assert not daemon.sock.exists()


def test_refuses_socket_served_by_live_daemon(daemon, tmpdir_short):
    second = Daemon(tmpdir_short, "")
    second.config = tmpdir_short / "second.toml"
    second.config.write_text(daemon.config.read_text())
    p = subprocess.run([binary("cocoond"), "--config", str(second.config)],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode != 0
    assert "already serving" in p.stderr
    # The first daemon is unharmed.
    assert daemon.runtime().Version(pb.VersionRequest(), timeout=5).runtime_name == "cocoon"


def test_refuses_socket_served_by_foreign_process(daemon_factory, tmpdir_short):
    d = daemon_factory(start=False)
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(d.sock))
    s.listen(1)
    try:
        p = subprocess.run([binary("cocoond"), "--config", str(d.config)],
                           capture_output=True, text=True, timeout=20)
        assert p.returncode != 0
        assert "already serving" in p.stderr
        assert d.sock.exists()
    finally:
        s.close()


def test_replaces_stale_socket(daemon_factory):
    d = daemon_factory(start=False)
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(d.sock))
    s.close()  # bound, never listening: a stale socket file
    assert d.sock.exists()
    d.start()
    assert d.runtime().Version(pb.VersionRequest(), timeout=5).runtime_name == "cocoon"
    assert oct(os.stat(d.sock).st_mode & 0o777) == oct(0o660)


def test_refuses_non_socket_file(daemon_factory):
    d = daemon_factory(start=False)
    d.sock.write_text("precious")
    p = subprocess.run([binary("cocoond"), "--config", str(d.config)],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode != 0
    assert "not a socket" in p.stderr
    assert d.sock.read_text() == "precious"


def test_socket_directory_is_created(daemon_factory, tmpdir_short):
    d = daemon_factory(start=False)
    sub = tmpdir_short / "a" / "b"
    d.sock = sub / "c.sock"
    d.address = "unix://%s" % d.sock
    d.config.write_text(d.config.read_text().replace(
        'listen = "unix://%s/cocoon.sock"' % tmpdir_short, 'listen = "%s"' % d.address))
    d.start()
    assert d.sock.exists()


@pytest.mark.parametrize("content,needle", [
    ('[server]\nworkers = "many"\n', ":2:"),
    ('[server]\nno_such_key = 1\n', "no_such_key"),
    ('[server\n', ":1:"),
    ('[vm]\naccel = "warp"\n', "accel"),
])
def test_broken_config_refuses_to_start(tmpdir_short, content, needle):
    cfg = tmpdir_short / "bad.toml"
    cfg.write_text(content)
    p = subprocess.run([binary("cocoond"), "--config", str(cfg)], capture_output=True,
                       text=True, timeout=20)
    assert p.returncode != 0
    assert str(cfg) in p.stderr
    assert needle in p.stderr, p.stderr


def test_too_long_state_path_refuses_to_start(tmpdir_short):
    # <state>/sandboxes/<64-char pod id>/virtiofsd.sock must fit in a unix
    # socket path (107 bytes): a longer state would only fail at RunPodSandbox.
    state = pathlib.Path("/run/cc-state-" + os.urandom(2).hex())  # 18 bytes
    cfg = tmpdir_short / "long-state.toml"
    cfg.write_text('[server]\nlisten = "unix://%s/c.sock"\n[paths]\nroot = "%s/root"\nstate = "%s"\n'
                   % (tmpdir_short, tmpdir_short, state))
    try:
        p = subprocess.run([binary("cocoond"), "--config", str(cfg)], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        p = None
    finally:
        shutil.rmtree(state, ignore_errors=True)
    assert p is not None, "cocoond started with a %d-byte state path" % len(str(state))
    assert p.returncode != 0
    assert ("paths.state: invalid value \"%s\": too long" % state) in p.stderr, p.stderr
    assert "at most 17 bytes" in p.stderr, p.stderr
    assert not state.exists()


def test_broken_dropin_names_its_file(tmpdir_short):
    cfg = tmpdir_short / "cocoon.toml"
    cfg.write_text('[log]\nlevel = "info"\n')
    (tmpdir_short / "cocoon.d").mkdir()
    (tmpdir_short / "cocoon.d" / "10-x.toml").write_text('[log]\nlevel = "loud"\n')
    p = subprocess.run([binary("cocoond"), "--config", str(cfg), "--print-config"],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode != 0
    assert "10-x.toml:2:" in p.stderr


def test_print_config_applies_dropins(tmpdir_short):
    cfg = tmpdir_short / "cocoon.toml"
    cfg.write_text('[server]\nworkers = 4\n')
    (tmpdir_short / "cocoon.d").mkdir()
    (tmpdir_short / "cocoon.d" / "20-b.toml").write_text('[server]\nworkers = 9\n')
    (tmpdir_short / "cocoon.d" / "10-a.toml").write_text('[server]\nworkers = 7\nshutdown_timeout = 3\n')
    p = subprocess.run([binary("cocoond"), "--config", str(cfg), "--print-config"],
                       capture_output=True, text=True, timeout=20, check=True)
    assert "workers = 9" in p.stdout
    assert "shutdown_timeout = 3" in p.stdout


def test_missing_explicit_config_is_an_error(tmpdir_short):
    p = subprocess.run([binary("cocoond"), "--config", str(tmpdir_short / "nope.toml")],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode != 0
    assert "nope.toml" in p.stderr


def test_help_and_bad_args():
    p = subprocess.run([binary("cocoond"), "--help"], capture_output=True, text=True, check=True)
    assert "--config" in p.stdout and "--print-config" in p.stdout
    p = subprocess.run([binary("cocoond"), "--bogus"], capture_output=True, text=True)
    assert p.returncode == 2
    p = subprocess.run([binary("cocoond"), "--log-level", "loud"], capture_output=True, text=True)
    assert p.returncode == 2 and "loud" in p.stderr


def test_cocoonctl(daemon):
    env = dict(os.environ, COCOON_ADDRESS=daemon.address)
    p = subprocess.run([binary("cocoonctl"), "version"], capture_output=True, text=True, env=env, timeout=20)
    assert p.returncode == 0, p.stderr
    assert "RuntimeName:       cocoon" in p.stdout
    p = subprocess.run([binary("cocoonctl"), "--json", "info"], capture_output=True, text=True, env=env, timeout=20)
    info = json.loads(p.stdout)
    types = {c["type"]: c for c in info["conditions"]}
    assert set(types) == {"RuntimeReady", "NetworkReady"}
    # exit status 3 = reachable but not ready (NetworkReady is false today)
    assert p.returncode == 3
    p = subprocess.run([binary("cocoonctl"), "-a", "unix:///nonexistent/x.sock", "-t", "2", "version"],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode == 1 and p.stderr
