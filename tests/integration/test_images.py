"""ImageService RPCs over images imported from OCI layouts (no network):
ListImages, ImageStatus, RemoveImage, ImageFsInfo, and `cocoonctl image`."""
import json
import os
import pathlib
import shutil
import subprocess

import grpc
import pytest

from conftest import binary, pb
from oci_layout import busybox_layer, chain_ids, layer_tar, write_layout


def ctl(daemon, *args, check=True):
    p = subprocess.run([binary("cocoonctl"), "-a", daemon.address] + list(args),
                       capture_output=True, text=True, timeout=120)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def spec(s):
    return pb.ImageSpec(image=s)


@pytest.fixture
def layout(tmpdir_short):
    d = tmpdir_short / "layout"
    info = write_layout(d, [busybox_layer(), layer_tar([("hello.txt", b"hi\n", 0o644, None)])],
                        tag="1.0", cmd=("/bin/sh", "-c", "echo hi"), user="1000")
    return d, info


def test_import_list_status_remove(daemon, layout, tmpdir_short):
    d, info = layout
    p = ctl(daemon, "image", "import", "--name", "example.com/test/bb", str(d))
    assert p.stdout.split() == [info["config"]]
    im = daemon.images()
    lst = im.ListImages(pb.ListImagesRequest(), timeout=10).images
    assert [i.id for i in lst] == [info["config"]]
    img = lst[0]
    assert list(img.repo_tags) == ["example.com/test/bb:1.0"]
    assert list(img.repo_digests) == ["example.com/test/bb@%s" % info["manifest"]]
    assert img.uid.value == 1000 and img.username == ""
    assert img.size > os.path.getsize("/bin/busybox") // 3  # gzip'd busybox + config
    # Every way of naming it resolves to the same image.
    for name in ("example.com/test/bb:1.0", info["config"], info["config"][7:], info["config"][7:19],
                 "example.com/test/bb@%s" % info["manifest"]):
        r = im.ImageStatus(pb.ImageStatusRequest(image=spec(name), verbose=True), timeout=10)
        assert r.image.id == info["config"], name
    v = json.loads(r.info["info"])
    assert v["config"]["Cmd"] == ["/bin/sh", "-c", "echo hi"]
    assert v["config"]["Labels"] == {"test": "cocoon"}
    assert [l["diffID"] for l in v["layers"]] == info["diff_ids"]
    # The layers are unpacked once per chain id, as overlayfs lower dirs.
    root = daemon.tmp / "root"
    chains = chain_ids(info["diff_ids"])
    assert (root / "layers/sha256" / chains[0][7:] / "diff/bin/busybox").stat().st_size == \
        os.path.getsize("/bin/busybox")
    assert (root / "layers/sha256" / chains[1][7:] / "diff/hello.txt").read_text() == "hi\n"
    # Filter.
    f = im.ListImages(pb.ListImagesRequest(filter=pb.ImageFilter(image=spec("example.com/test/bb:1.0"))), timeout=10)
    assert len(f.images) == 1
    f = im.ListImages(pb.ListImagesRequest(filter=pb.ImageFilter(image=spec("nothere:1"))), timeout=10)
    assert len(f.images) == 0
    # Remove by tag: record, blobs and layers go; removing again is fine.
    im.RemoveImage(pb.RemoveImageRequest(image=spec("example.com/test/bb:1.0")), timeout=10)
    assert len(im.ListImages(pb.ListImagesRequest(), timeout=10).images) == 0
    assert not (root / "layers/sha256" / chains[0][7:]).exists()
    assert not (root / "blobs/sha256" / info["config"][7:]).exists()
    assert list((root / "images").iterdir()) == []
    im.RemoveImage(pb.RemoveImageRequest(image=spec("example.com/test/bb:1.0")), timeout=10)
    r = im.ImageStatus(pb.ImageStatusRequest(image=spec("example.com/test/bb:1.0")), timeout=10)
    assert not r.HasField("image")


def test_shared_layers_survive_removal_of_one_image(daemon, tmpdir_short):
    base = busybox_layer()
    a = write_layout(tmpdir_short / "a", [base, layer_tar([("a", b"a", 0o644, None)])], tag="a")
    b = write_layout(tmpdir_short / "b", [base, layer_tar([("b", b"b", 0o644, None)])], tag="b")
    ctl(daemon, "image", "import", "--name", "shared", str(tmpdir_short / "a"))
    ctl(daemon, "image", "import", "--name", "shared", str(tmpdir_short / "b"))
    im = daemon.images()
    assert len(im.ListImages(pb.ListImagesRequest(), timeout=10).images) == 2
    ctl(daemon, "image", "rm", "shared:a")
    root = daemon.tmp / "root"
    base_chain = chain_ids(a["diff_ids"])[0]
    assert base_chain == chain_ids(b["diff_ids"])[0]
    assert (root / "layers/sha256" / base_chain[7:] / "diff/bin/busybox").exists()
    assert not (root / "layers/sha256" / chain_ids(a["diff_ids"])[1][7:]).exists()
    lst = im.ListImages(pb.ListImagesRequest(), timeout=10).images
    assert [list(i.repo_tags) for i in lst] == [["docker.io/library/shared:b"]]


def test_tag_moves_to_the_newer_image(daemon, tmpdir_short):
    write_layout(tmpdir_short / "x", [busybox_layer()], tag="latest", cmd=("/bin/true",))
    write_layout(tmpdir_short / "y", [busybox_layer()], tag="latest", cmd=("/bin/false",))
    ctl(daemon, "image", "import", "--name", "mover", str(tmpdir_short / "x"))
    second = ctl(daemon, "image", "import", "--name", "mover", str(tmpdir_short / "y")).stdout.strip()
    lst = daemon.images().ListImages(pb.ListImagesRequest(), timeout=10).images
    tagged = {i.id: list(i.repo_tags) for i in lst}
    assert tagged[second] == ["docker.io/library/mover:latest"]
    assert sum(1 for t in tagged.values() if t) == 1


def test_import_tar_with_full_reference(daemon, tmpdir_short):
    tar = tmpdir_short / "img.tar"
    info = write_layout(tmpdir_short / "t", [busybox_layer()], tag="v2",
                        ref_name="registry.local:5000/team/app:v2", tar_path=tar)
    ctl(daemon, "image", "import", str(tar))
    r = daemon.images().ImageStatus(pb.ImageStatusRequest(image=spec("registry.local:5000/team/app:v2")), timeout=10)
    assert r.image.id == info["config"]


def test_import_rejects_bad_layouts(daemon, tmpdir_short):
    im = daemon.images()
    # Not a layout at all.
    p = ctl(daemon, "image", "import", str(tmpdir_short), check=False)
    assert p.returncode != 0 and "not an OCI image layout" in p.stderr
    # A layer blob whose content does not match its digest.
    d = tmpdir_short / "corrupt"
    info = write_layout(d, [busybox_layer()], tag="1")
    blob = d / "blobs/sha256" / info["layers"][0][7:]
    data = bytearray(blob.read_bytes())
    data[100] ^= 0xff
    blob.write_bytes(bytes(data))
    p = ctl(daemon, "image", "import", "--name", "bad", str(d), check=False)
    assert p.returncode != 0
    assert "digest" in p.stderr.lower() or "mismatch" in p.stderr.lower(), p.stderr
    assert len(im.ListImages(pb.ListImagesRequest(), timeout=10).images) == 0
    assert not (daemon.tmp / "root/blobs/sha256" / info["layers"][0][7:]).exists()
    # A bare tag with no repository name.
    d2 = tmpdir_short / "noname"
    write_layout(d2, [busybox_layer()], tag="latest")
    p = ctl(daemon, "image", "import", str(d2), check=False)
    assert p.returncode != 0 and "--name" in p.stderr
    # A layer that escapes its root is rejected and leaves nothing behind.
    d3 = tmpdir_short / "escape"
    write_layout(d3, [layer_tar([("../evil", b"x", 0o644, None)])], tag="1")
    p = ctl(daemon, "image", "import", "--name", "evil", str(d3), check=False)
    assert p.returncode != 0
    assert len(im.ListImages(pb.ListImagesRequest(), timeout=10).images) == 0
    assert not (daemon.tmp / "root" / "evil").exists() and not (daemon.tmp / "evil").exists()
    assert list((daemon.tmp / "root/layers/tmp").iterdir()) == [] if (daemon.tmp / "root/layers/tmp").exists() else True


def test_records_reload_and_damage_is_detected(daemon, layout):
    d, info = layout
    ctl(daemon, "image", "import", "--name", "persist", str(d))
    assert daemon.stop() == 0
    daemon.start()
    lst = daemon.images().ListImages(pb.ListImagesRequest(), timeout=10).images
    assert [i.id for i in lst] == [info["config"]]
    # Simulate a crash that lost an unpacked layer: the image is reported
    # damaged at start and hidden, so the kubelet pulls it again.
    assert daemon.stop() == 0
    chain = chain_ids(info["diff_ids"])[1]
    shutil.rmtree(daemon.tmp / "root/layers/sha256" / chain[7:])
    daemon.start()
    assert len(daemon.images().ListImages(pb.ListImagesRequest(), timeout=10).images) == 0
    assert "damaged" in daemon.log_text()
    # A new import repairs it.
    ctl(daemon, "image", "import", "--name", "persist", str(d))
    lst = daemon.images().ListImages(pb.ListImagesRequest(), timeout=10).images
    assert [i.id for i in lst] == [info["config"]]


def test_image_fs_info(daemon, layout):
    d, _ = layout
    r0 = daemon.images().ImageFsInfo(pb.ImageFsInfoRequest(), timeout=10)
    assert r0.image_filesystems[0].fs_id.mountpoint == str(daemon.tmp / "root")
    ctl(daemon, "image", "import", "--name", "fs", str(d))
    import time
    time.sleep(5.5)  # past the usage cache
    r1 = daemon.images().ImageFsInfo(pb.ImageFsInfoRequest(), timeout=10)
    u0, u1 = r0.image_filesystems[0], r1.image_filesystems[0]
    assert u1.used_bytes.value - u0.used_bytes.value >= os.path.getsize("/bin/busybox")
    assert u1.inodes_used.value > u0.inodes_used.value
    assert u1.timestamp > 0


def test_image_spec_errors(daemon):
    im = daemon.images()
    for call, req in ((im.ImageStatus, pb.ImageStatusRequest(image=spec(""))),
                      (im.RemoveImage, pb.RemoveImageRequest(image=spec(""))),
                      (im.ImageStatus, pb.ImageStatusRequest())):
        with pytest.raises(grpc.RpcError) as e:
            call(req, timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # Malformed reference: not "not found" but a clear error naming the problem.
    with pytest.raises(grpc.RpcError) as e:
        im.ImageStatus(pb.ImageStatusRequest(image=spec("UPPER/Case:tag")), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "lowercase" in e.value.details()


def test_cocoonctl_image_ls(daemon, layout):
    d, info = layout
    ctl(daemon, "image", "import", "--name", "lsme", str(d))
    out = ctl(daemon, "image", "ls").stdout
    assert "docker.io/library/lsme:1.0" in out and info["config"][7:20] in out
    js = json.loads(ctl(daemon, "--json", "image", "ls").stdout)
    assert js[0]["id"] == info["config"]
