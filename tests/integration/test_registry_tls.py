"""TLS to the registry: docker-registry serving HTTPS with a certificate from
a CA the test makes (openssl CLI). Not trusted → a clear certificate error;
trusted through the registry's ca_file config key → the pull works;
insecure_skip_verify → the pull works without the CA. Through
tests/tools/cocoon-pull (--config applies the [image.registries."HOST"]
table as PullImage does) and through cocoond's CRI socket."""
import hashlib
import json
import os
import pathlib
import subprocess
import sys

import grpc
import pytest

from registry import Registry, CertAuthority

SRCDIR = pathlib.Path(__file__).resolve().parents[2]
BUILDDIR = pathlib.Path(os.environ.get("COCOON_BUILDDIR", SRCDIR / "build"))
sys.path.insert(0, str(SRCDIR / "tests" / "tools"))
import mkoci  # noqa: E402

pytestmark = pytest.mark.skipif(
    not (os.path.exists("/usr/bin/docker-registry") and os.path.exists("/usr/bin/skopeo")),
    reason="needs Debian's docker-registry and skopeo")


def pull(store, ref, *args, ok=True):
    exe = BUILDDIR / "tests" / "tools" / "cocoon-pull"
    if not exe.exists():
        pytest.fail("cocoon-pull not built (set COCOON_BUILDDIR; looked in %s)" % exe)
    cmd = [str(exe), "--store", str(store), "--backoff-ms", "50"] + list(args) + [ref]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.stdout, "no output from %s (rc %d): %s" % (cmd, p.returncode, p.stderr)
    out = json.loads(p.stdout)
    assert (p.returncode == 0) == ok, "%s -> %s\n%s" % (" ".join(cmd), p.stdout, p.stderr)
    return out


def config(tmp, host, **keys):
    f = pathlib.Path(tmp) / ("cocoon-%d.toml" % len(list(pathlib.Path(tmp).glob("cocoon-*"))))
    body = "".join("%s = %s\n" % (k, json.dumps(v)) for k, v in keys.items())
    f.write_text('[image.registries."%s"]\n%s' % (host, body))
    return str(f)


def assert_image(out, img, store):
    assert out["ok"], out
    assert out["manifest_digest"] == img["manifest"]
    for d in [img["manifest"], img["config"]] + img["layers"]:
        f = pathlib.Path(store) / "blobs" / "sha256" / d[7:]
        assert "sha256:" + hashlib.sha256(f.read_bytes()).hexdigest() == d


def store_empty(store):
    d = pathlib.Path(store) / "blobs" / "sha256"
    return not d.exists() or not any(d.iterdir())


@pytest.fixture(scope="module")
def tls_reg(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tls")
    ca = CertAuthority(tmp / "ca")
    other = CertAuthority(tmp / "other", name="some other CA")
    crt, key = ca.issue("registry")
    r = Registry(tmp / "reg", tls=(crt, key)).start()
    try:
        lay = tmp / "lay"
        img = mkoci.build(lay, tag="v1", layers=2, salt="tls")
        r.push(lay, "v1", "tls/bb")  # skopeo --dest-tls-verify=false
        yield r, img, ca, other, tmp
    finally:
        r.stop()


def test_untrusted_ca_is_a_clear_certificate_error(tls_reg, tmp_path):
    r, img, ca, other, _ = tls_reg
    out = pull(tmp_path / "s", "%s/tls/bb:v1" % r.host, ok=False)
    assert out["errno"] == "ECONNABORTED", out
    msg = out["message"]
    assert "https://%s/v2/tls/bb/manifests/v1" % r.host in msg, msg
    assert "certificate" in msg.lower(), msg
    assert "ca_file" in msg and "insecure_skip_verify" in msg, msg
    assert store_empty(tmp_path / "s")
    # Trusting some other CA does not help.
    out = pull(tmp_path / "s", "%s/tls/bb:v1" % r.host,
               "--config", config(tmp_path, r.host, ca_file=str(other.cert)), ok=False)
    assert out["errno"] == "ECONNABORTED" and "certificate" in out["message"].lower(), out


def test_ca_file_from_the_config_makes_it_trusted(tls_reg, tmp_path):
    r, img, ca, _, _ = tls_reg
    out = pull(tmp_path / "s", "%s/tls/bb:v1" % r.host,
               "--config", config(tmp_path, r.host, ca_file=str(ca.cert)))
    assert_image(out, img, tmp_path / "s")
    # The CA is trusted for that registry only: the same pull under another
    # name of the same server (localhost, also in the certificate) has no
    # ca_file and fails.
    port = r.host.split(":")[1]
    out = pull(tmp_path / "s2", "localhost:%s/tls/bb:v1" % port,
               "--config", config(tmp_path, r.host, ca_file=str(ca.cert)), ok=False)
    assert out["errno"] == "ECONNABORTED", out
    out = pull(tmp_path / "s2", "localhost:%s/tls/bb:v1" % port,
               "--config", config(tmp_path, "localhost:%s" % port, ca_file=str(ca.cert)))
    assert_image(out, img, tmp_path / "s2")


def test_certificate_for_another_name_is_refused_even_with_the_ca(tmp_path):
    ca = CertAuthority(tmp_path / "ca")
    crt, key = ca.issue("wrongname", sans=("DNS:registry.example",))
    r = Registry(tmp_path / "reg", tls=(crt, key)).start()
    try:
        lay = tmp_path / "lay"
        img = mkoci.build(lay, tag="v1", layers=1, salt="tls-name")
        r.push(lay, "v1", "tls/name")
        ref = "%s/tls/name:v1" % r.host
        out = pull(tmp_path / "s", ref, "--config", config(tmp_path, r.host, ca_file=str(ca.cert)),
                   ok=False)
        assert out["errno"] == "ECONNABORTED", out
        assert "127.0.0.1" in out["message"] and "certificate" in out["message"].lower(), out
        # insecure_skip_verify skips the name check too.
        out = pull(tmp_path / "s", ref,
                   "--config", config(tmp_path, r.host, insecure_skip_verify=True))
        assert_image(out, img, tmp_path / "s")
    finally:
        r.stop()


def test_insecure_skip_verify(tls_reg, tmp_path):
    r, img, _, _, _ = tls_reg
    out = pull(tmp_path / "s", "%s/tls/bb:v1" % r.host,
               "--config", config(tmp_path, r.host, insecure_skip_verify=True))
    assert_image(out, img, tmp_path / "s")


def test_missing_ca_file_is_a_clear_error(tls_reg, tmp_path):
    r, _, _, _, _ = tls_reg
    out = pull(tmp_path / "s", "%s/tls/bb:v1" % r.host,
               "--config", config(tmp_path, r.host, ca_file=str(tmp_path / "nope.pem")), ok=False)
    assert out["errno"] == "ECONNABORTED", out
    assert "ca_file" in out["message"], out


def test_ca_file_must_be_absolute(tls_reg, tmp_path):
    r, _, _, _, _ = tls_reg
    out = pull(tmp_path / "s", "%s/tls/bb:v1" % r.host,
               "--config", config(tmp_path, r.host, ca_file="relative/ca.pem"), ok=False)
    assert out["errno"] == "EINVAL", out
    assert "ca_file" in out["message"] and "absolute" in out["message"], out


def test_plain_http_client_against_https_registry_fails_cleanly(tls_reg, tmp_path):
    r, _, _, _, _ = tls_reg
    out = pull(tmp_path / "s", "%s/tls/bb:v1" % r.host, "--plain-http", "--max-attempts", "1",
               ok=False)
    assert not out["ok"] and out["message"], out
    assert store_empty(tmp_path / "s")


# ---- through cocoond's CRI socket ----

RPC_PASSES_CA_FILE = "ca_file" in (SRCDIR / "cri-server" / "rpc-pull-image.c").read_text()


def cri_pull(daemon, ref):
    from conftest import pb
    req = pb.PullImageRequest(image=pb.ImageSpec(image=ref))
    return daemon.images().PullImage(req, timeout=120).image_ref


def test_cri_untrusted_is_unavailable_and_insecure_works(daemon_factory, tls_reg):
    r, img, _, _, _ = tls_reg
    ref = "%s/tls/bb:v1" % r.host
    d = daemon_factory()
    with pytest.raises(grpc.RpcError) as e:
        cri_pull(d, ref)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE, e.value
    assert "certificate" in e.value.details().lower(), e.value.details()
    d2 = daemon_factory('[image.registries."%s"]\ninsecure_skip_verify = true\n' % r.host,
                        subdir="d2")
    assert cri_pull(d2, ref) == img["config"]


@pytest.mark.skipif(not RPC_PASSES_CA_FILE,
                    reason="cri-server/rpc-pull-image.c does not pass ca_file to the client yet")
def test_cri_ca_file(daemon_factory, tls_reg):
    r, img, ca, _, _ = tls_reg
    d = daemon_factory('[image.registries."%s"]\nca_file = "%s"\n' % (r.host, ca.cert))
    assert cri_pull(d, "%s/tls/bb:v1" % r.host) == img["config"]
