"""Identity tokens and registry tokens (the CRI AuthConfig's identity_token
and registry_token) against docker-registry with token auth in front of a
small token server (tests/integration/registry.py: TokenServer signs JWTs
with a key it makes; the registry trusts its certificate).

  registry_token: sent as is as the Bearer token; the token server is never
                  asked.
  identity_token: an OAuth2 refresh token, exchanged at the realm with
                  POST grant_type=refresh_token&service&scope&client_id=cocoon
                  &refresh_token for an access token.

Through tests/tools/cocoon-pull and through cocoond's CRI socket."""
import hashlib
import json
import os
import pathlib
import subprocess
import sys

import grpc
import pytest

from registry import Proxy, Registry, TokenServer

SRCDIR = pathlib.Path(__file__).resolve().parents[2]
BUILDDIR = pathlib.Path(os.environ.get("COCOON_BUILDDIR", SRCDIR / "build"))
sys.path.insert(0, str(SRCDIR / "tests" / "tools"))
import mkoci  # noqa: E402

pytestmark = pytest.mark.skipif(
    not (os.path.exists("/usr/bin/docker-registry") and os.path.exists("/usr/bin/skopeo")),
    reason="needs Debian's docker-registry and skopeo")

REFRESH = "rt-0f3c9a-cocoon-test-refresh"


def pull(store, ref, *args, ok=True):
    exe = BUILDDIR / "tests" / "tools" / "cocoon-pull"
    if not exe.exists():
        pytest.fail("cocoon-pull not built (set COCOON_BUILDDIR; looked in %s)" % exe)
    cmd = [str(exe), "--store", str(store), "--plain-http", "--backoff-ms", "50", "--debug"] + \
        list(args) + [ref]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.stdout, "no output from %s (rc %d): %s" % (cmd, p.returncode, p.stderr)
    out = json.loads(p.stdout)
    assert (p.returncode == 0) == ok, "%s -> %s\n%s" % (" ".join(cmd), p.stdout, p.stderr)
    out["_log"] = p.stderr
    return out


def assert_image(out, img, store):
    assert out["ok"], out
    assert out["manifest_digest"] == img["manifest"]
    for d in [img["manifest"], img["config"]] + img["layers"]:
        f = pathlib.Path(store) / "blobs" / "sha256" / d[7:]
        assert "sha256:" + hashlib.sha256(f.read_bytes()).hexdigest() == d


@pytest.fixture(scope="module")
def tokreg(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("auth")
    ts = TokenServer(tmp / "tok", users={"pusher": "pw"}, refresh_tokens={REFRESH: "kube"})
    reg = Registry(tmp / "reg", token=ts).start()
    try:
        lay = tmp / "lay"
        img = mkoci.build(lay, tag="v1", layers=2, salt="idtok")
        reg.push(lay, "v1", "auth/bb", creds=("pusher", "pw"))
        ts.requests.clear()
        img["layout"] = lay
        yield ts, reg, img
    finally:
        reg.stop()
        ts.stop()


def cocoon_requests(ts):
    reqs = ts.requests_by("cocoon/")
    ts.requests.clear()
    return reqs


def test_identity_token_is_exchanged_at_the_realm(tokreg, tmp_path):
    ts, reg, img = tokreg
    ts.requests.clear()
    out = pull(tmp_path / "s", "%s/auth/bb:v1" % reg.host, "--identity-token", REFRESH)
    assert_image(out, img, tmp_path / "s")
    reqs = cocoon_requests(ts)
    assert len(reqs) == 1, reqs
    r = reqs[0]
    assert r["method"] == "POST" and r["path"] == "/token", r
    assert r["content_type"] == "application/x-www-form-urlencoded", r
    assert not r["authorization"], r  # the refresh token is in the form, not basic auth
    assert r["query"] == {"grant_type": ["refresh_token"], "refresh_token": [REFRESH],
                          "service": [ts.service], "scope": ["repository:auth/bb:pull"],
                          "client_id": ["cocoon"]}, r
    assert r["user"] == "kube"
    assert REFRESH not in out["_log"]  # never logged


def test_bad_identity_token_is_unauthorized(tokreg, tmp_path):
    ts, reg, _ = tokreg
    out = pull(tmp_path / "s", "%s/auth/bb:v1" % reg.host, "--identity-token", "rt-wrong-secret",
               ok=False)
    assert out["errno"] == "EACCES", out
    assert "unauthorized" in out["message"] and "token server refused" in out["message"], out
    assert "rt-wrong-secret" not in out["message"] and "rt-wrong-secret" not in out["_log"]
    reqs = cocoon_requests(ts)
    assert [r["method"] for r in reqs] == ["POST"], reqs


def test_registry_token_is_sent_as_is(tokreg, tmp_path):
    ts, reg, img = tokreg
    tok = ts.mint(["repository:auth/bb:pull"], sub="kube")
    ts.requests.clear()
    px = Proxy(reg.port)
    try:
        out = pull(tmp_path / "s", "%s/auth/bb:v1" % px.host, "--registry-token", tok)
        assert_image(out, img, tmp_path / "s")
        assert cocoon_requests(ts) == []  # the realm is never asked
        # Every request carried it, so none was answered 401.
        mine = [r for r in px.log if r["agent"].startswith("cocoon/")]
        assert mine and all(r["auth"] for r in mine), mine
        assert all(r["status"] in (200, 206) for r in mine), mine
        assert out["token_fetches"] == 0
        assert tok not in out["_log"]
    finally:
        px.stop()


def test_registry_token_refused_is_unauthorized_without_fallback(tokreg, tmp_path):
    ts, reg, _ = tokreg
    ref = "%s/auth/bb:v1" % reg.host
    # A token for another repository: the registry says 401; no token request.
    other = ts.mint(["repository:other/repo:pull"])
    out = pull(tmp_path / "s", ref, "--registry-token", other, ok=False)
    assert out["errno"] == "EACCES" and "unauthorized" in out["message"], out
    assert cocoon_requests(ts) == []
    # Garbage.
    out = pull(tmp_path / "s", ref, "--registry-token", "not-a-jwt", ok=False)
    assert out["errno"] == "EACCES", out
    assert "not-a-jwt" not in out["message"]
    assert cocoon_requests(ts) == []


def test_registry_token_wins_over_identity_token(tokreg, tmp_path):
    ts, reg, img = tokreg
    tok = ts.mint(["repository:auth/bb:pull"])
    out = pull(tmp_path / "s", "%s/auth/bb:v1" % reg.host, "--registry-token", tok,
               "--identity-token", "rt-ignored")
    assert_image(out, img, tmp_path / "s")
    assert cocoon_requests(ts) == []


def test_mirror_gets_no_credentials(tokreg, tmp_path):
    """The CRI credentials belong to the origin: a mirror (here an anonymous
    registry) never sees the registry token."""
    ts, reg, img = tokreg
    mirror = Registry(tmp_path / "mirror").start()
    pm = Proxy(mirror.port)
    try:
        mirror.push(img["layout"], "v1", "auth/bb")
        tok = ts.mint(["repository:auth/bb:pull"])
        out = pull(tmp_path / "s", "%s/auth/bb:v1" % reg.host, "--registry-token", tok,
                   "--mirror", "http://%s" % pm.host)
        assert out["ok"], out
        mine = [r for r in pm.log if r["agent"].startswith("cocoon/")]
        assert mine and not any(r["auth"] for r in mine), mine
    finally:
        pm.stop()
        mirror.stop()


def test_mirror_that_wants_credentials_is_skipped_for_the_origin(tokreg, tmp_path):
    """Mirrors get none of the CRI credentials: one that asks for them (Basic,
    or a bearer token its realm only gives to known users) is passed over and
    the origin, which gets them, serves the pull."""
    ts, reg, img = tokreg
    basic = Registry(tmp_path / "m-basic", htpasswd=("m", "mpw")).start()
    ts2 = TokenServer(tmp_path / "tok2", users={"m": "mpw"}, refresh_tokens={"rt-m": "m"})
    bearer = Registry(tmp_path / "m-bearer", token=ts2).start()
    pb_, pt = Proxy(basic.port), Proxy(bearer.port)
    try:
        basic.push(img["layout"], "v1", "auth/bb")
        bearer.push(img["layout"], "v1", "auth/bb", creds=("m", "mpw"))
        ts.requests.clear()
        ts2.requests.clear()
        out = pull(tmp_path / "s", "%s/auth/bb:v1" % reg.host, "--identity-token", REFRESH,
                   "--mirror", "http://%s" % pb_.host, "--mirror", "http://%s" % pt.host)
        assert_image(out, img, tmp_path / "s")
        for px in (pb_, pt):
            mine = [r for r in px.log if r["agent"].startswith("cocoon/")]
            assert mine and not any(r["auth"] for r in mine), mine
            assert {r["status"] for r in mine} == {401}, mine
        # The bearer mirror's realm was asked anonymously, never with the token.
        asked = ts2.requests_by("cocoon/")
        assert asked and all(r["method"] == "GET" and r["user"] is None for r in asked), asked
        # The origin's realm exchanged the identity token.
        assert [r["method"] for r in cocoon_requests(ts)] == ["POST"]
        assert "trying the next endpoint" in out["_log"]
    finally:
        pb_.stop()
        pt.stop()
        basic.stop()
        bearer.stop()
        ts2.stop()


# ---- through cocoond's CRI socket ----

def cri_pull(daemon, ref, auth):
    from conftest import pb
    req = pb.PullImageRequest(image=pb.ImageSpec(image=ref))
    req.auth.CopyFrom(auth)
    return daemon.images().PullImage(req, timeout=120).image_ref


def test_cri_identity_and_registry_tokens(daemon_factory, tokreg):
    from conftest import pb
    ts, reg, img = tokreg
    ref = "%s/auth/bb:v1" % reg.host
    d = daemon_factory('[image.registries."%s"]\nplain_http = true\n' % reg.host)
    ts.requests.clear()
    assert cri_pull(d, ref, pb.AuthConfig(identity_token=REFRESH)) == img["config"]
    reqs = cocoon_requests(ts)
    assert len(reqs) == 1 and reqs[0]["method"] == "POST", reqs
    assert reqs[0]["query"]["client_id"] == ["cocoon"]

    d2 = daemon_factory('[image.registries."%s"]\nplain_http = true\n' % reg.host, subdir="d2")
    tok = ts.mint(["repository:auth/bb:pull"])
    assert cri_pull(d2, ref, pb.AuthConfig(registry_token=tok)) == img["config"]
    assert cocoon_requests(ts) == []

    d3 = daemon_factory('[image.registries."%s"]\nplain_http = true\n' % reg.host, subdir="d3")
    with pytest.raises(grpc.RpcError) as e:
        cri_pull(d3, ref, pb.AuthConfig(identity_token="rt-wrong"))
    assert e.value.code() in (grpc.StatusCode.PERMISSION_DENIED,
                              grpc.StatusCode.UNAUTHENTICATED), e.value
    assert "rt-wrong" not in e.value.details()
