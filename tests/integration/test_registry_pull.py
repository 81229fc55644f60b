"""image_pull against Debian's docker-registry on loopback, driven through
tests/tools/cocoon-pull (built in $COCOON_BUILDDIR). Images are built with
tests/tools/mkoci.py and pushed with skopeo."""
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from registry import Proxy, Registry, TokenServer, free_port

SRCDIR = pathlib.Path(__file__).resolve().parents[2]
BUILDDIR = pathlib.Path(os.environ.get("COCOON_BUILDDIR", SRCDIR / "build"))
sys.path.insert(0, str(SRCDIR / "tests" / "tools"))
import mkoci  # noqa: E402

pytestmark = pytest.mark.skipif(
    not (os.path.exists("/usr/bin/docker-registry") and os.path.exists("/usr/bin/skopeo")),
    reason="needs Debian's docker-registry and skopeo")


def pull_bin():
    p = BUILDDIR / "tests" / "tools" / "cocoon-pull"
    if not p.exists():
        pytest.fail("cocoon-pull not built (set COCOON_BUILDDIR; looked in %s)" % p)
    return str(p)


def pull(store, ref, *args, ok=True, timeout=120):
    cmd = [pull_bin(), "--store", str(store), "--plain-http", "--backoff-ms", "50"] + \
        list(args) + [ref]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert p.stdout, "no output from %s (rc %d): %s" % (cmd, p.returncode, p.stderr)
    out = json.loads(p.stdout)
    if ok is not None:
        assert (p.returncode == 0) == ok, "%s -> %s\n%s" % (" ".join(cmd), p.stdout, p.stderr)
    return out


def blob_file(store, digest):
    return pathlib.Path(store) / "blobs" / "sha256" / digest[7:]


def partial_file(store, digest):
    return pathlib.Path(store) / "ingest" / ("sha256-%s.partial" % digest[7:])


def assert_stored(store, digest):
    f = blob_file(store, digest)
    assert f.exists(), "blob %s not in the store" % digest
    assert "sha256:" + hashlib.sha256(f.read_bytes()).hexdigest() == digest


def assert_image(out, img, store):
    assert out["ok"], out
    assert out["manifest_digest"] == img["manifest"]
    assert out["config_digest"] == img["config"]
    assert [l["digest"] for l in out["layers"]] == img["layers"]
    assert [l["diff_id"] for l in out["layers"]] == img["diff_ids"]
    assert [l["media_type"] for l in out["layers"]] == img["media_types"]
    for d in [img["manifest"], img["config"]] + img["layers"]:
        assert_stored(store, d)


@pytest.fixture(scope="module")
def tmp_module():
    d = pathlib.Path(tempfile.mkdtemp(prefix="cc-reg-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def images(tmp_module):
    """One registry with: test/gz:v1 (gzip), test/zstd:v1, test/plain:v1,
    test/multi:v1 (amd64 + arm64 index), test/many:v1 (8 layers)."""
    reg = Registry(tmp_module / "reg").start()
    imgs = {}
    try:
        for name, kw in [("gz", dict(compression="gzip")), ("zstd", dict(compression="zstd")),
                         ("plain", dict(compression="none")),
                         ("many", dict(compression="gzip", layers=8, salt="many"))]:
            lay = tmp_module / ("lay-" + name)
            imgs[name] = mkoci.build(lay, tag="v1", **kw)
            if name == "plain":  # skopeo would gzip uncompressed layers
                reg.push_raw(lay, "v1", "test/" + name)
            else:
                reg.push(lay, "v1", "test/" + name)
        lay = tmp_module / "lay-multi"
        imgs["multi"] = mkoci.build(lay, tag="v1", multi_arch=["arm64", "amd64"], salt="m")
        reg.push(lay, "v1", "test/multi", multi_arch=True)
        yield reg, imgs
    finally:
        reg.stop()


@pytest.fixture
def store(tmp_path):
    return tmp_path / "store"


@pytest.mark.parametrize("name", ["gz", "zstd", "plain", "many"])
def test_pull_single_arch(images, store, name):
    reg, imgs = images
    out = pull(store, "%s/test/%s:v1" % (reg.host, name))
    assert_image(out, imgs[name], store)
    assert out["repo_digest"] == imgs[name]["manifest"]
    assert out["size"] == sum(l["size"] for l in out["layers"]) + \
        blob_file(store, out["config_digest"]).stat().st_size
    # Again: nothing to download.
    again = pull(store, "%s/test/%s:v1" % (reg.host, name))
    assert again["config_digest"] == out["config_digest"]
    assert again["downloaded"] == 0


def test_multi_arch_index_picks_amd64(images, store):
    reg, imgs = images
    m = imgs["multi"]
    out = pull(store, "%s/test/multi:v1" % reg.host)
    assert_image(out, m["images"]["amd64"], store)
    assert out["repo_digest"] == m["index"]
    assert_stored(store, m["index"])
    # The other platform on request.
    arm = pull(store, "%s/test/multi:v1" % reg.host, "--platform", "linux/arm64")
    assert arm["manifest_digest"] == m["images"]["arm64"]["manifest"]
    # A platform the index does not offer.
    bad = pull(store, "%s/test/multi:v1" % reg.host, "--platform", "linux/s390x", ok=False)
    assert bad["errno"] == "ENOENT" and "s390x" in bad["message"], bad


def test_pull_by_digest_and_tag_plus_digest(images, store):
    reg, imgs = images
    img = imgs["gz"]
    out = pull(store, "%s/test/gz@%s" % (reg.host, img["manifest"]))
    assert_image(out, img, store)
    # tag + digest: the digest wins, even when the tag points elsewhere.
    out2 = pull(store.parent / "store2", "%s/test/gz:no-such-tag@%s" % (reg.host, img["manifest"]))
    assert out2["manifest_digest"] == img["manifest"]
    # index by digest
    m = imgs["multi"]
    out3 = pull(store, "%s/test/multi@%s" % (reg.host, m["index"]))
    assert out3["manifest_digest"] == m["images"]["amd64"]["manifest"]
    # a digest the registry does not have
    missing = "sha256:" + "0" * 64
    bad = pull(store, "%s/test/gz@%s" % (reg.host, missing), ok=False)
    assert bad["errno"] == "ENOENT", bad


def test_unknown_image_is_not_found_with_registry_message(images, store):
    reg, _ = images
    out = pull(store, "%s/test/nope:v1" % reg.host, ok=False)
    assert out["errno"] == "ENOENT", out
    assert "not found" in out["message"]
    assert "UNKNOWN" in out["message"], out  # NAME_UNKNOWN / MANIFEST_UNKNOWN from the registry
    assert "test/nope:v1" in out["message"]
    out = pull(store, "%s/test/gz:nosuchtag" % reg.host, ok=False)
    assert out["errno"] == "ENOENT" and "MANIFEST_UNKNOWN" in out["message"], out


def test_htpasswd_auth(tmp_path, store):
    reg = Registry(tmp_path / "reg", htpasswd=("alice", "s3cret")).start()
    try:
        img = mkoci.build(tmp_path / "lay", tag="v1", salt="auth")
        reg.push(tmp_path / "lay", "v1", "priv/bb")
        ref = "%s/priv/bb:v1" % reg.host
        out = pull(store, ref, "--user", "alice", "--password", "s3cret")
        assert_image(out, img, store)
        bad = pull(tmp_path / "s2", ref, "--user", "alice", "--password", "wrong", ok=False)
        assert bad["errno"] == "EACCES", bad
        assert "unauthorized" in bad["message"]
        assert "wrong" not in bad["message"] and "s3cret" not in bad["message"]
        anon = pull(tmp_path / "s3", ref, ok=False)
        assert anon["errno"] == "EACCES" and "unauthorized" in anon["message"], anon
    finally:
        reg.stop()


def test_redirected_blobs_do_not_get_the_credentials(tmp_path, store):
    """Blob GETs answered with a 307 to another host:port (like S3 storage):
    followed, and the registry's Authorization stays behind."""
    reg = Registry(tmp_path / "reg", htpasswd=("carol", "pw1")).start()
    try:
        img = mkoci.build(tmp_path / "lay", tag="v1", salt="redirect")
        reg.push(tmp_path / "lay", "v1", "redir/bb")
        # Storage: an anonymous registry serving the same directory.
        storage = Registry(tmp_path / "storage")
        storage.config.write_text(reg.config.read_text().split("auth:")[0]
                                  .replace(":%d" % reg.port, ":%d" % storage.port))
        storage.start()
        ps = Proxy(storage.port)
        pr = Proxy(reg.port, redirect_blobs=ps.port)
        try:
            out = pull(store, "%s/redir/bb:v1" % pr.host, "--user", "carol", "--password", "pw1")
            assert_image(out, img, store)
            at_registry = pr.blob_gets()
            at_storage = ps.blob_gets()
            assert len(at_registry) == len(at_storage) == 1 + len(img["layers"])
            assert all(r["auth"] for r in at_registry), at_registry
            assert not any(r["auth"] for r in at_storage), at_storage
            assert all(r["path"].endswith("?sig=SECRET") for r in at_storage)
        finally:
            pr.stop()
            ps.stop()
            storage.stop()
    finally:
        reg.stop()


def test_token_auth_token_fetched_once_and_reused(tmp_path, store):
    ts = TokenServer(tmp_path / "tok", users={"bob": "pw"})
    reg = Registry(tmp_path / "reg", token=ts).start()
    try:
        img = mkoci.build(tmp_path / "lay", tag="v1", layers=4, salt="token")
        reg.push(tmp_path / "lay", "v1", "tok/bb", creds=("bob", "pw"))
        ref = "%s/tok/bb:v1" % reg.host
        # Two pulls in one process sharing the token cache: one token request.
        out = pull(store, ref, "--user", "bob", "--password", "pw", "--repeat", "2")
        assert all(p["ok"] for p in out["pulls"]), out
        assert_image(out["pulls"][0], img, store)
        assert out["token_fetches"] == 1
        reqs = ts.requests_by("cocoon/")
        assert len(reqs) == 1, reqs
        assert reqs[0]["user"] == "bob"
        assert reqs[0]["query"]["scope"] == ["repository:tok/bb:pull"]
        assert reqs[0]["query"]["service"] == [ts.service]
        # Wrong password: the token server refuses, a clear auth error.
        bad = pull(tmp_path / "s2", ref, "--user", "bob", "--password", "nope", ok=False)
        assert bad["errno"] == "EACCES" and "unauthorized" in bad["message"], bad
        assert "nope" not in bad["message"]
    finally:
        reg.stop()
        ts.stop()


def test_mirror_is_tried_first_then_origin(tmp_path, store):
    origin = Registry(tmp_path / "origin").start()
    mirror = Registry(tmp_path / "mirror").start()
    po = Proxy(origin.port)
    pm = Proxy(mirror.port)
    try:
        img = mkoci.build(tmp_path / "lay", tag="v1", salt="mirror")
        origin.push(tmp_path / "lay", "v1", "mir/bb")
        mirror.push(tmp_path / "lay", "v1", "mir/bb")
        ref = "%s/mir/bb:v1" % po.host
        out = pull(store, ref, "--mirror", "http://%s" % pm.host)
        assert_image(out, img, store)
        assert len(pm.blob_gets()) == 1 + len(img["layers"]), (pm.log, po.log)
        assert po.log == [], po.log
        # A mirror that lacks the image: fall back to the origin.
        other = mkoci.build(tmp_path / "lay2", tag="v2", salt="origin-only")
        origin.push(tmp_path / "lay2", "v2", "mir/bb")
        s2 = tmp_path / "s2"
        out = pull(s2, "%s/mir/bb:v2" % po.host, "--mirror", "http://%s" % pm.host)
        assert_image(out, other, s2)
        assert len(po.blob_gets()) == 1 + len(other["layers"])
        # A dead mirror: fall back as well.
        dead = "http://127.0.0.1:%d" % free_port()  # nothing listens there
        out = pull(tmp_path / "s3", ref, "--mirror", dead, "--max-attempts", "1")
        assert out["ok"], out
    finally:
        po.stop()
        pm.stop()
        origin.stop()
        mirror.stop()


def test_corrupted_blob_is_rejected_and_not_committed(tmp_path, store):
    reg = Registry(tmp_path / "reg").start()
    try:
        img = mkoci.build(tmp_path / "lay", tag="v1", layers=3, salt="corrupt")
        reg.push(tmp_path / "lay", "v1", "bad/bb")
        victim = img["layers"][0]
        f = reg.blob_path(victim)
        data = bytearray(f.read_bytes())
        data[len(data) // 2] ^= 0xff
        f.write_bytes(bytes(data))
        out = pull(store, "%s/bad/bb:v1" % reg.host, ok=False)
        assert out["errno"] == "EBADMSG", out
        assert "digest mismatch" in out["message"] and victim in out["message"], out
        assert not blob_file(store, victim).exists()
        assert not partial_file(store, victim).exists()
        # No manifest naming a missing blob is left in the store.
        assert not blob_file(store, img["manifest"]).exists()
    finally:
        reg.stop()


def test_registry_killed_mid_pull_then_resume(tmp_path, store):
    reg = Registry(tmp_path / "reg").start()
    img = mkoci.build(tmp_path / "lay", tag="v1", layers=1, compression="none",
                      big_layer=6 << 20, salt="kill")
    reg.push_raw(tmp_path / "lay", "v1", "kill/bb")
    px = Proxy(reg.port, rate=1 << 20)
    big = img["layers"][-1]
    try:
        cmd = [pull_bin(), "--store", str(store), "--plain-http", "--max-attempts", "2",
               "--backoff-ms", "50", "--connect-timeout-ms", "2000", "%s/kill/bb:v1" % px.host]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        part = partial_file(store, big)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if part.exists() and part.stat().st_size > (1 << 20):
                break
            time.sleep(0.05)
        else:
            proc.kill()
            pytest.fail("the download did not start: %s" % (proc.communicate(),))
        reg.stop(kill=True)
        px.kill()
        stdout, stderr = proc.communicate(timeout=60)
        out = json.loads(stdout)
        assert proc.returncode == 1 and not out["ok"], out
        assert out["errno"] in ("ECONNREFUSED", "ECONNRESET"), out
        kept = part.stat().st_size
        assert kept > (1 << 20)
        assert not blob_file(store, big).exists()
        # Back up: the next pull resumes from what was kept.
        reg.start()
        px2 = Proxy(reg.port, port=px.port)
        try:
            out = pull(store, "%s/kill/bb:v1" % px2.host)
            assert_image(out, img, store)
            gets = px2.blob_gets(big)
            assert len(gets) == 1 and gets[0]["range"] == "bytes=%d-" % kept, gets
            assert gets[0]["status"] == 206
            assert out["downloaded"] < (6 << 20)
            assert not part.exists()
        finally:
            px2.stop()
    finally:
        px.stop()
        reg.stop()


def test_parallel_pulls_download_each_blob_once(images, store):
    reg, imgs = images
    img = imgs["many"]
    px = Proxy(reg.port, rate=4 << 20)
    try:
        out = pull(store, "%s/test/many:v1" % px.host, "--parallel", "10", "--concurrency", "3")
        assert len(out["pulls"]) == 10
        for p in out["pulls"]:
            assert_image(p, img, store)
        for d in [img["config"]] + img["layers"]:
            gets = [g for g in px.blob_gets(d) if g["status"] in (200, 206)]
            assert len(gets) == 1, (d, gets)
        assert sum(p["downloaded"] for p in out["pulls"]) == \
            sum(l["size"] for l in out["pulls"][0]["layers"]) + \
            blob_file(store, img["config"]).stat().st_size
    finally:
        px.stop()


def test_cancel_stops_the_pull(tmp_path, store):
    reg = Registry(tmp_path / "reg").start()
    img = mkoci.build(tmp_path / "lay", tag="v1", layers=1, compression="none",
                      big_layer=4 << 20, salt="cancel")
    reg.push_raw(tmp_path / "lay", "v1", "cancel/bb")
    px = Proxy(reg.port, rate=512 << 10)
    try:
        t0 = time.monotonic()
        out = pull(store, "%s/cancel/bb:v1" % px.host, "--cancel-after-ms", "700", ok=False)
        assert out["errno"] == "ECANCELED", out
        assert time.monotonic() - t0 < 5
        assert not blob_file(store, img["layers"][-1]).exists()
        assert not blob_file(store, img["manifest"]).exists()
    finally:
        px.stop()
        reg.stop()
