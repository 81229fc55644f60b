"""A full disk while pulling (issue 3, "Bad input": disk full -> an error, the
store stays consistent).

The image store lives on a small tmpfs the test mounts. Images come from
Debian's docker-registry on loopback and are built here (tests/tools/mkoci.py's
layout writer, our own layer contents):

  big     one gzip layer of 5 MiB of random bytes: the blob does not fit;
  pair    two gzip layers of 2 MiB random bytes each: one may fit, both do not;
  zeros   one gzip layer holding 8 MiB of zeros: the ~8 KiB blob fits, the
          unpacked layer does not (CRI only: cocoon-pull does not unpack);
  inodes  one gzip layer of 400 empty files, for a tmpfs limited to 200
          inodes: creating files fails with ENOSPC part way through the unpack;
  small   one gzip layer of 64 KiB: fits, before and after the failures.

Pulled through tests/tools/cocoon-pull (download only) and through cocoond's
PullImage (download, unpack, record). After each failure: a clear ENOSPC
error, no image record, no partial or corrupt blob, no half-unpacked layer,
the tmpfs close to empty again, a small image still pulls, and after the
tmpfs is remounted bigger the same pull succeeds and verifies.

Design note (image/store.h, image/registry.c): the ingest of the blob whose
write failed is deleted. Partials of sibling layers that were downloading in
parallel when the pull gave up are kept in ingest/ for a resume, exactly like
after a network failure: each is named by a layer digest of the image, is no
larger than that layer's declared size, and the next pull resumes it (asserted
below from the bytes downloaded)."""
import hashlib
import json
import os
import pathlib
import subprocess
import sys

import grpc
import pytest

from conftest import pb
from registry import Registry

SRCDIR = pathlib.Path(__file__).resolve().parents[2]
BUILDDIR = pathlib.Path(os.environ.get("COCOON_BUILDDIR", SRCDIR / "build"))
sys.path.insert(0, str(SRCDIR / "tests" / "tools"))
import mkoci  # noqa: E402

pytestmark = [
    pytest.mark.skipif(
        not (os.path.exists("/usr/bin/docker-registry") and os.path.exists("/usr/bin/skopeo")),
        reason="needs Debian's docker-registry and skopeo"),
    pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs: needs root"),
]

MiB = 1 << 20
ENOSPC_TEXT = "No space left on device"


# ------------------------------------------------------------------ images --

def build_image(outdir, layers, salt):
    """An OCI layout with one gzip layer per entry of `layers` (each a list of
    (path, bytes)); returns the digests/sizes the tests compare with."""
    lay = mkoci.Layout(outdir)
    descs, diff_ids = [], []
    for files in layers:
        raw = mkoci._tar([(p, "file", data, 0o644) for p, data in files])
        blob = mkoci.compress(raw, "gzip")
        descs.append({"mediaType": mkoci.MT_LAYER["gzip"], "digest": lay.put(blob),
                      "size": len(blob)})
        diff_ids.append(mkoci.sha(raw))
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["/x"], "Labels": {"s": salt}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }, sort_keys=True).encode()
    cdesc = {"mediaType": mkoci.MT_CONFIG, "digest": lay.put(config), "size": len(config)}
    manifest = json.dumps({"schemaVersion": 2, "mediaType": mkoci.MT_MANIFEST,
                           "config": cdesc, "layers": descs}, sort_keys=True).encode()
    mdig = lay.put(manifest)
    lay.finish("v1", (mkoci.MT_MANIFEST, mdig, len(manifest)))
    return {"manifest": mdig, "config": cdesc["digest"], "config_size": len(config),
            "layers": [d["digest"] for d in descs], "sizes": [d["size"] for d in descs],
            "diff_ids": diff_ids}


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("diskfull")
    reg = Registry(tmp / "reg").start()
    imgs = {}
    try:
        specs = {
            "big": [[("big.bin", os.urandom(5 * MiB))]],
            "pair": [[("a.bin", os.urandom(2 * MiB))], [("b.bin", os.urandom(2 * MiB))]],
            "zeros": [[("zeros.bin", bytes(8 * MiB))]],
            "small": [[("small.bin", os.urandom(64 << 10))]],
            "inodes": [[("f%04d" % i, b"") for i in range(400)]],
        }
        for name, layers in specs.items():
            imgs[name] = build_image(tmp / name, layers, salt=name)
            reg.push_raw(tmp / name, "v1", "full/" + name)  # byte for byte
        assert imgs["big"]["sizes"][0] > 5 * MiB - (64 << 10)      # incompressible
        assert imgs["zeros"]["sizes"][0] < 64 << 10                # compresses well
        yield reg, imgs
    finally:
        reg.stop()


def ref(reg, name):
    return "%s/full/%s:v1" % (reg.host, name)


# ------------------------------------------------------------------- tmpfs --

@pytest.fixture
def tmpfs(tmpdir_short):
    """mount(path, size) mounts a tmpfs; unmounted at teardown whatever
    happened. Depends on tmpdir_short and is listed before daemon_factory by
    the tests, so it is torn down after the daemons are killed and before the
    directory is removed."""
    mounted = []

    def mount(path, size, opts=""):
        path = pathlib.Path(path)
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700%s" % (size, opts),
                        "tmpfs", str(path)], check=True, capture_output=True)
        mounted.append(path)
        return path

    yield mount
    for p in reversed(mounted):
        if subprocess.run(["umount", str(p)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(p)], capture_output=True)


def remount(path, size, opts=""):
    subprocess.run(["mount", "-o", "remount,size=%s%s" % (size, opts), str(path)], check=True,
                   capture_output=True)


def used_bytes(path):
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


# ------------------------------------------------------------- consistency --

def files(d):
    d = pathlib.Path(d)
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def assert_consistent(root, img, partial_ok=()):
    """The store after a failed pull of `img`: every committed blob hashes to
    its name, none of the image's layers is half there, no layer directory
    (complete or in the work dir), no image record, and any partial left in
    ingest/ belongs to one of `partial_ok` (layer digests) and is bounded by
    that layer's size. Returns {digest: partial size}."""
    root = pathlib.Path(root)
    for name in files(root / "blobs/sha256"):
        data = (root / "blobs/sha256" / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == name, "blob %s is corrupt/partial" % name
    assert not [n for n in files(root / "blobs/sha256") if n.startswith(".")], \
        "temporary files in blobs/"
    assert files(root / "layers/sha256") == [], "layer left behind"
    assert files(root / "layers/tmp") == [], "half-unpacked layer left in layers/tmp"
    assert [n for n in files(root / "images") if n.endswith(".json") or n.startswith(".")] == [], \
        "image record left behind"
    sizes = dict(zip(img["layers"], img["sizes"]))
    kept = {}
    for name in files(root / "ingest"):
        assert name.startswith("sha256-") and name.endswith(".partial"), name
        digest = "sha256:" + name[len("sha256-"):-len(".partial")]
        assert digest in partial_ok, "partial %s of the blob that hit ENOSPC kept" % digest
        size = (root / "ingest" / name).stat().st_size
        assert size <= sizes[digest], "partial %s larger than its layer" % digest
        kept[digest] = size
    return kept


def committed(root, digest):
    return (pathlib.Path(root) / "blobs/sha256" / digest[7:]).exists()


def assert_verified(root, digest):
    f = pathlib.Path(root) / "blobs/sha256" / digest[7:]
    assert f.exists(), "blob %s not in the store" % digest
    assert "sha256:" + hashlib.sha256(f.read_bytes()).hexdigest() == digest


def expected_download(root, img, kept):
    """Bytes the next pull must fetch: what is neither committed nor kept."""
    n = 0 if committed(root, img["config"]) else img["config_size"]
    for d, size in zip(img["layers"], img["sizes"]):
        if not committed(root, d):
            n += size - kept.get(d, 0)
    return n


# --------------------------------------------------------------- cocoon-pull --

def pull_tool(store, r, *args, ok=True):
    exe = BUILDDIR / "tests" / "tools" / "cocoon-pull"
    if not exe.exists():
        pytest.fail("cocoon-pull not built (set COCOON_BUILDDIR; looked in %s)" % exe)
    cmd = [str(exe), "--store", str(store), "--plain-http", "--backoff-ms", "50"] + \
        list(args) + [r]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.stdout, "no output from %s (rc %d): %s" % (cmd, p.returncode, p.stderr)
    out = json.loads(p.stdout)
    assert (p.returncode == 0) == ok, "%s -> %s\n%s" % (" ".join(cmd), p.stdout, p.stderr)
    return out


def assert_enospc(out):
    assert out["errno"] == "ENOSPC", out
    assert ENOSPC_TEXT in out["message"], out


def test_blob_larger_than_the_disk_cocoon_pull(registry, tmpfs, tmpdir_short):
    reg, imgs = registry
    big = imgs["big"]
    store = tmpfs(tmpdir_short / "store", "3m")
    base = used_bytes(store)
    out = pull_tool(store, ref(reg, "big"), ok=False)
    assert_enospc(out)
    assert big["layers"][0] in out["message"], out  # names the blob
    assert assert_consistent(store, big) == {}
    assert not committed(store, big["layers"][0])
    # The 3 MiB it filled are free again (only the tiny config blob stays).
    assert used_bytes(store) - base < 64 << 10, used_bytes(store) - base
    # A small image still fits.
    small = pull_tool(store, ref(reg, "small"))
    assert small["config_digest"] == imgs["small"]["config"]
    for d in [imgs["small"]["manifest"], imgs["small"]["config"]] + imgs["small"]["layers"]:
        assert_verified(store, d)
    # Make room: the same pull now succeeds and verifies.
    want = expected_download(store, big, {})
    remount(store, "16m")
    out = pull_tool(store, ref(reg, "big"))
    assert out["manifest_digest"] == big["manifest"]
    assert out["downloaded"] == want, (out["downloaded"], want)
    for d in [big["manifest"], big["config"]] + big["layers"]:
        assert_verified(store, d)
    assert files(pathlib.Path(store) / "ingest") == []


def test_parallel_layers_keep_bounded_partials_and_resume(registry, tmpfs, tmpdir_short):
    reg, imgs = registry
    pair = imgs["pair"]
    store = tmpfs(tmpdir_short / "store", "3m")
    out = pull_tool(store, ref(reg, "pair"), "--concurrency", "2", ok=False)
    assert_enospc(out)
    kept = assert_consistent(store, pair, partial_ok=pair["layers"])
    # The layer that hit ENOSPC is named and has nothing left of it.
    failed = [d for d in pair["layers"] if d in out["message"]]
    assert len(failed) == 1, out
    assert failed[0] not in kept and not committed(store, failed[0])
    # The failure freed enough room for a small pull.
    pull_tool(store, ref(reg, "small"))
    # Room: the pull resumes what was kept and downloads only the rest.
    want = expected_download(store, pair, kept)
    remount(store, "16m")
    out = pull_tool(store, ref(reg, "pair"), "--concurrency", "2")
    assert out["downloaded"] == want, (out["downloaded"], want, kept)
    for d in [pair["manifest"], pair["config"]] + pair["layers"]:
        assert_verified(store, d)
    assert files(pathlib.Path(store) / "ingest") == []


# ----------------------------------------------------------------------- CRI --

def cri_pull(d, r, timeout=120):
    return d.images().PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=r)),
                                timeout=timeout).image_ref


def cri_images(d):
    return list(d.images().ListImages(pb.ListImagesRequest(), timeout=10).images)


def cri_status(d, r):
    return d.images().ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=r)),
                                  timeout=10)


@pytest.fixture
def cocoond_on_tmpfs(tmpfs, daemon_factory, registry):
    """start(opts) -> (cocoond, root): its [paths] root is a 3 MiB tmpfs
    (plus mount options `opts`)."""
    reg, _ = registry

    def start(opts=""):
        d = daemon_factory('[image.registries."%s"]\nplain_http = true\n' % reg.host,
                           start=False)
        root = tmpfs(d.tmp / "root", "3m", opts)
        d.start()
        return d, root
    return start


def assert_cri_failed_cleanly(d, root, img, r, partial_ok=()):
    assert cri_images(d) == []
    st = cri_status(d, r)
    assert not st.HasField("image"), st
    assert not cri_status(d, img["config"]).HasField("image")
    return assert_consistent(root, img, partial_ok)


def test_cri_blob_larger_than_the_disk(cocoond_on_tmpfs, registry):
    d, root = cocoond_on_tmpfs()
    reg, imgs = registry
    big = imgs["big"]
    base = used_bytes(root)
    with pytest.raises(grpc.RpcError) as e:
        cri_pull(d, ref(reg, "big"))
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e.value.details()
    assert ENOSPC_TEXT in e.value.details(), e.value.details()
    assert assert_cri_failed_cleanly(d, root, big, ref(reg, "big")) == {}
    assert not committed(root, big["layers"][0])
    assert used_bytes(root) - base < 64 << 10
    # A restart finds nothing to report: no record, so nothing damaged.
    d.stop()
    d.start()
    assert cri_images(d) == []
    assert "damaged" not in d.log_text()
    # A small image still pulls, unpacks and is recorded.
    small = imgs["small"]
    assert cri_pull(d, ref(reg, "small")) == small["config"]
    assert [i.id for i in cri_images(d)] == [small["config"]]
    # Room: the big pull succeeds; its blobs verify; both images listed.
    remount(root, "32m")
    assert cri_pull(d, ref(reg, "big")) == big["config"]
    for dg in [big["manifest"], big["config"]] + big["layers"]:
        assert_verified(root, dg)
    assert sorted(i.id for i in cri_images(d)) == sorted([small["config"], big["config"]])
    assert cri_status(d, ref(reg, "big")).image.id == big["config"]
    assert (root / "images" / (big["config"][7:] + ".json")).exists()
    assert files(root / "ingest") == [] and files(root / "layers/tmp") == []


def test_cri_unpacked_layer_larger_than_the_disk(cocoond_on_tmpfs, registry):
    """The compressed blob fits, the 8 MiB of zeros it unpacks to do not."""
    d, root = cocoond_on_tmpfs()
    reg, imgs = registry
    z = imgs["zeros"]
    base = used_bytes(root)
    with pytest.raises(grpc.RpcError) as e:
        cri_pull(d, ref(reg, "zeros"))
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e.value.details()
    assert ENOSPC_TEXT in e.value.details(), e.value.details()
    assert "zeros.bin" in e.value.details(), e.value.details()  # names the file it was writing
    assert assert_cri_failed_cleanly(d, root, z, ref(reg, "zeros")) == {}
    # The verified blobs stay (small; the next pull reuses them); the 3 MiB
    # of half-unpacked layer are gone.
    for dg in [z["manifest"], z["config"]] + z["layers"]:
        assert_verified(root, dg)
    assert used_bytes(root) - base < 128 << 10, used_bytes(root) - base
    small = imgs["small"]
    assert cri_pull(d, ref(reg, "small")) == small["config"]
    assert [i.id for i in cri_images(d)] == [small["config"]]
    remount(root, "32m")
    assert cri_pull(d, ref(reg, "zeros")) == z["config"]
    assert cri_status(d, ref(reg, "zeros")).image.id == z["config"]
    layers = [p for p in (root / "layers/sha256").iterdir()
              if (p / "diff" / "zeros.bin").exists()]
    assert len(layers) == 1
    assert (layers[0] / "diff" / "zeros.bin").stat().st_size == 8 * MiB
    assert files(root / "layers/tmp") == []


def test_cri_out_of_inodes_while_unpacking(cocoond_on_tmpfs, registry):
    """ENOSPC from creating a file (not writing one): a tmpfs with 200 inodes,
    a layer of 400 empty files."""
    d, root = cocoond_on_tmpfs(",nr_inodes=200")
    reg, imgs = registry
    img = imgs["inodes"]
    free_before = os.statvfs(root).f_ffree
    with pytest.raises(grpc.RpcError) as e:
        cri_pull(d, ref(reg, "inodes"))
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e.value.details()
    assert ENOSPC_TEXT in e.value.details(), e.value.details()
    assert assert_cri_failed_cleanly(d, root, img, ref(reg, "inodes")) == {}
    # Only the three verified blobs (manifest, config, layer) hold inodes now.
    assert free_before - os.statvfs(root).f_ffree <= 3, (free_before, os.statvfs(root).f_ffree)
    small = imgs["small"]
    assert cri_pull(d, ref(reg, "small")) == small["config"]
    remount(root, "3m", ",nr_inodes=4096")
    assert cri_pull(d, ref(reg, "inodes")) == img["config"]
    layers = [p for p in (root / "layers/sha256").iterdir() if (p / "diff" / "f0399").exists()]
    assert len(layers) == 1 and len(list((layers[0] / "diff").iterdir())) == 400
    assert files(root / "layers/tmp") == []
