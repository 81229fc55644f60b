"""PullImage through cocoond's CRI socket against Debian's docker-registry on
loopback: the image is downloaded, verified, unpacked and recorded; errors
map to the gRPC codes the kubelet expects."""
import base64
import os
import pathlib
import sys
import threading

import grpc
import pytest

from conftest import pb
from registry import Registry

SRCDIR = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(SRCDIR / "tests" / "tools"))
import mkoci  # noqa: E402

pytestmark = pytest.mark.skipif(
    not (os.path.exists("/usr/bin/docker-registry") and os.path.exists("/usr/bin/skopeo")),
    reason="needs Debian's docker-registry and skopeo")


def plain_http(*hosts):
    return "".join('[image.registries."%s"]\nplain_http = true\n' % h for h in hosts)


def pull(daemon, ref, auth=None, timeout=120):
    req = pb.PullImageRequest(image=pb.ImageSpec(image=ref))
    if auth is not None:
        req.auth.CopyFrom(auth)
    return daemon.images().PullImage(req, timeout=timeout).image_ref


@pytest.fixture
def registry(tmpdir_short):
    reg = Registry(tmpdir_short / "reg").start()
    lay = tmpdir_short / "lay"
    img = mkoci.build(lay, tag="v1", compression="gzip", layers=3, salt="cri")
    reg.push(lay, "v1", "cri/app")
    yield reg, img
    reg.stop()


def test_pull_records_and_unpacks(daemon_factory, registry):
    reg, img = registry
    d = daemon_factory(plain_http(reg.host))
    ref = "%s/cri/app:v1" % reg.host
    assert pull(d, ref) == img["config"]
    lst = d.images().ListImages(pb.ListImagesRequest(), timeout=10).images
    assert len(lst) == 1
    assert list(lst[0].repo_tags) == [ref]
    assert list(lst[0].repo_digests) == ["%s/cri/app@%s" % (reg.host, img["manifest"])]
    # Layers are unpacked under the store, one directory per chain id.
    layers = list((d.tmp / "root/layers/sha256").iterdir())
    assert len(layers) == 3 and all((l / "diff").is_dir() for l in layers)
    # Pulling again is cheap and gives the same id; by digest too.
    assert pull(d, ref) == img["config"]
    assert pull(d, "%s/cri/app@%s" % (reg.host, img["manifest"])) == img["config"]
    st = d.images().ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=ref)), timeout=10)
    assert st.image.id == img["config"]


def test_unknown_image_is_not_found(daemon_factory, registry):
    reg, _ = registry
    d = daemon_factory(plain_http(reg.host))
    with pytest.raises(grpc.RpcError) as e:
        pull(d, "%s/cri/nothere:v1" % reg.host)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert "unknown" in e.value.details().lower(), e.value.details()


def test_malformed_reference_is_invalid_argument(daemon):
    with pytest.raises(grpc.RpcError) as e:
        pull(daemon, "Bad/Name:tag")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_registry_down_is_unavailable_and_leaves_nothing(daemon_factory, registry):
    reg, _ = registry
    d = daemon_factory(plain_http(reg.host) + "[image]\nmax_concurrent_downloads = 2\n")
    reg.stop()
    with pytest.raises(grpc.RpcError) as e:
        pull(d, "%s/cri/app:v1" % reg.host)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE, e.value.details()
    assert len(d.images().ListImages(pb.ListImagesRequest(), timeout=10).images) == 0
    reg.start()
    pull(d, "%s/cri/app:v1" % reg.host)  # the next pull succeeds


def test_htpasswd_registry(daemon_factory, tmpdir_short):
    reg = Registry(tmpdir_short / "authreg", htpasswd=("kube", "s3cret")).start()
    try:
        lay = tmpdir_short / "lay"
        img = mkoci.build(lay, tag="v1", compression="gzip", salt="auth")
        reg.push(lay, "v1", "private/app")
        d = daemon_factory(plain_http(reg.host))
        ref = "%s/private/app:v1" % reg.host
        with pytest.raises(grpc.RpcError) as e:
            pull(d, ref)
        assert e.value.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
        with pytest.raises(grpc.RpcError) as e:
            pull(d, ref, pb.AuthConfig(username="kube", password="wrong"))
        assert e.value.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
        assert "s3cret" not in d.log_text() and "wrong" not in d.log_text()
        assert pull(d, ref, pb.AuthConfig(username="kube", password="s3cret")) == img["config"]
        d.images().RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=ref)), timeout=10)
        token = base64.b64encode(b"kube:s3cret").decode()
        assert pull(d, ref, pb.AuthConfig(auth=token)) == img["config"]
        with pytest.raises(grpc.RpcError) as e:
            pull(d, ref, pb.AuthConfig(auth="!!notbase64!!"))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        reg.stop()


def test_concurrent_pulls_of_one_image(daemon_factory, registry):
    reg, img = registry
    d = daemon_factory(plain_http(reg.host))
    ref = "%s/cri/app:v1" % reg.host
    results, errors = [], []

    def one():
        try:
            results.append(pull(d, ref))
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors[:3]
    assert results == [img["config"]] * 8
    assert len(d.images().ListImages(pb.ListImagesRequest(), timeout=10).images) == 1
