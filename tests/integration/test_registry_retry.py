"""Retries with backoff: a registry (behind a fault-injecting proxy) that
answers 503 for a while, drops connections in the middle of a blob, or always
answers 500. Driven through tests/tools/cocoon-pull with --debug, whose
stderr carries the client's debug log."""
import hashlib
import json
import os
import pathlib
import subprocess
import sys

import pytest

from registry import Proxy, Registry

SRCDIR = pathlib.Path(__file__).resolve().parents[2]
BUILDDIR = pathlib.Path(os.environ.get("COCOON_BUILDDIR", SRCDIR / "build"))
sys.path.insert(0, str(SRCDIR / "tests" / "tools"))
import mkoci  # noqa: E402

pytestmark = pytest.mark.skipif(
    not (os.path.exists("/usr/bin/docker-registry") and os.path.exists("/usr/bin/skopeo")),
    reason="needs Debian's docker-registry and skopeo")


def pull(store, ref, *args, timeout=120):
    """(returncode, result JSON, stderr)."""
    exe = BUILDDIR / "tests" / "tools" / "cocoon-pull"
    if not exe.exists():
        pytest.fail("cocoon-pull not built (set COCOON_BUILDDIR; looked in %s)" % exe)
    cmd = [str(exe), "--store", str(store), "--plain-http", "--debug", "--backoff-ms", "50"] + \
        list(args) + [ref]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert p.stdout, "no output from %s (rc %d): %s" % (cmd, p.returncode, p.stderr)
    return p.returncode, json.loads(p.stdout), p.stderr


def blob_file(store, digest):
    return pathlib.Path(store) / "blobs" / "sha256" / digest[7:]


def assert_image(out, img, store):
    assert out["ok"], out
    assert out["manifest_digest"] == img["manifest"]
    assert [l["digest"] for l in out["layers"]] == img["layers"]
    for d in [img["manifest"], img["config"]] + img["layers"]:
        f = blob_file(store, d)
        assert f.exists(), d
        assert "sha256:" + hashlib.sha256(f.read_bytes()).hexdigest() == d


def store_blobs(store):
    d = pathlib.Path(store) / "blobs" / "sha256"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


@pytest.fixture(scope="module")
def reg(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("retry")
    r = Registry(tmp / "reg").start()
    imgs = {}
    try:
        lay = tmp / "lay-small"
        imgs["small"] = mkoci.build(lay, tag="v1", layers=2, salt="retry-small")
        r.push(lay, "v1", "retry/small")
        # One uncompressed 3 MiB layer, pushed byte for byte: a blob big enough
        # to be cut in the middle.
        lay = tmp / "lay-big"
        imgs["big"] = mkoci.build(lay, tag="v1", layers=1, compression="none",
                                  big_layer=3 << 20, salt="retry-big")
        r.push_raw(lay, "v1", "retry/big")
        yield r, imgs
    finally:
        r.stop()


def test_503_on_blobs_is_retried_with_backoff(reg, tmp_path):
    r, imgs = reg
    img = imgs["small"]

    def fault(rec, n):  # the first two GETs of every blob: 503
        if rec["method"] == "GET" and "/blobs/" in rec["path"] and n < 2:
            return ("status", 503)
        return None

    px = Proxy(r.port, fault=fault)
    try:
        rc, out, log = pull(tmp_path / "s", "%s/retry/small:v1" % px.host)
        assert rc == 0, (out, log)
        assert_image(out, img, tmp_path / "s")
        for d in [img["config"]] + img["layers"]:
            gets = px.blob_gets(d)
            assert [g["status"] for g in gets] == [503, 503, 200], gets
            # The debug log shows each retry, with its growing delay.
            assert "blobs/%s: HTTP 503: UNAVAILABLE: injected failure (retrying in 50 ms)" % d \
                in log, log
            assert "blobs/%s: HTTP 503: UNAVAILABLE: injected failure (retrying in 100 ms)" % d \
                in log, log
    finally:
        px.stop()


def test_503_on_the_manifest_is_retried(reg, tmp_path):
    r, imgs = reg

    def fault(rec, n):
        return ("status", 503) if "/manifests/" in rec["path"] and n < 1 else None

    px = Proxy(r.port, fault=fault)
    try:
        rc, out, log = pull(tmp_path / "s", "%s/retry/small:v1" % px.host)
        assert rc == 0, (out, log)
        assert_image(out, imgs["small"], tmp_path / "s")
        assert "manifests/v1: HTTP 503" in log and "retrying in 50 ms" in log, log
    finally:
        px.stop()


def test_connection_dropped_mid_blob_resumes_with_range(reg, tmp_path):
    r, imgs = reg
    img = imgs["big"]
    big = img["layers"][-1]
    cut = 1 << 20

    def fault(rec, n):  # the first GET of the big layer dies after 1 MiB
        if rec["method"] == "GET" and rec["path"].endswith(big) and n == 0:
            return ("drop", cut)
        return None

    px = Proxy(r.port, fault=fault)
    try:
        rc, out, log = pull(tmp_path / "s", "%s/retry/big:v1" % px.host)
        assert rc == 0, (out, log)
        assert_image(out, img, tmp_path / "s")
        gets = px.blob_gets(big)
        assert len(gets) == 2, gets
        assert gets[0]["range"] is None and gets[0]["bytes"] == cut
        # The retry asks only for the rest, and gets it.
        assert gets[1]["range"] == "bytes=%d-" % cut, gets
        assert gets[1]["status"] == 206
        assert gets[1]["bytes"] == (3 << 20) - cut or \
            gets[1]["bytes"] == blob_file(tmp_path / "s", big).stat().st_size - cut
        assert "blobs/%s" % big in log and "(retrying in 50 ms)" in log, log
        # Downloaded bytes: each byte once.
        total = sum(blob_file(tmp_path / "s", d).stat().st_size
                    for d in [img["config"]] + img["layers"])
        assert out["downloaded"] == total, out
        assert not list((tmp_path / "s" / "ingest").glob("*.partial"))
    finally:
        px.stop()


def test_connection_dropped_before_any_byte_is_retried(reg, tmp_path):
    r, imgs = reg
    img = imgs["small"]
    victim = img["layers"][0]

    def fault(rec, n):
        return ("drop", 0) if rec["path"].endswith(victim) and n < 2 else None

    px = Proxy(r.port, fault=fault)
    try:
        rc, out, log = pull(tmp_path / "s", "%s/retry/small:v1" % px.host)
        assert rc == 0, (out, log)
        assert_image(out, img, tmp_path / "s")
        assert len(px.blob_gets(victim)) == 3
        assert log.count("blobs/%s" % victim) >= 2, log
    finally:
        px.stop()


def test_always_500_fails_after_bounded_retries(reg, tmp_path):
    r, _ = reg
    px = Proxy(r.port, fault=lambda rec, n: ("status", 500))
    try:
        rc, out, log = pull(tmp_path / "s", "%s/retry/small:v1" % px.host, "--max-attempts", "3")
        assert rc == 1 and not out["ok"], out
        assert out["errno"] == "EAGAIN", out
        msg = out["message"]
        assert "HTTP 500" in msg and "gave up after 3 attempts" in msg, msg
        assert "/v2/retry/small/manifests/v1" in msg, msg
        gets = [g for g in px.log if "/manifests/" in g["path"]]
        assert len(gets) == 3, gets
        assert log.count("(retrying in") == 2, log
        assert store_blobs(tmp_path / "s") == []
    finally:
        px.stop()


def test_blob_always_500_fails_and_leaves_no_image(reg, tmp_path):
    r, imgs = reg
    img = imgs["small"]
    victim = img["layers"][1]

    def fault(rec, n):
        return ("status", 500) if rec["path"].endswith(victim) else None

    px = Proxy(r.port, fault=fault)
    try:
        rc, out, log = pull(tmp_path / "s", "%s/retry/small:v1" % px.host, "--max-attempts", "4")
        assert rc == 1 and out["errno"] == "EAGAIN", out
        assert victim in out["message"] and "gave up after 4 attempts" in out["message"], out
        assert len(px.blob_gets(victim)) == 4
        assert not blob_file(tmp_path / "s", victim).exists()
        assert not blob_file(tmp_path / "s", img["manifest"]).exists()
        # The next pull, with the registry healthy again, succeeds.
        rc, out, log = pull(tmp_path / "s", "%s/retry/small:v1" % r.host)
        assert rc == 0, (out, log)
        assert_image(out, img, tmp_path / "s")
    finally:
        px.stop()
