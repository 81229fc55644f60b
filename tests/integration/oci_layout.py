"""Builds small OCI image layouts for tests from Debian's static busybox."""
import gzip
import hashlib
import io
import json
import os
import pathlib
import tarfile

BUSYBOX = "/bin/busybox"


def _sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def layer_tar(files):
    """files: list of (path, bytes|None for dir, mode, linkname-for-symlink)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for path, data, mode, link in files:
            ti = tarfile.TarInfo(path)
            ti.mode = mode
            ti.mtime = 1700000000
            if link is not None:
                ti.type = tarfile.SYMTYPE
                ti.linkname = link
                t.addfile(ti)
            elif data is None:
                ti.type = tarfile.DIRTYPE
                t.addfile(ti)
            else:
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def busybox_layer():
    bb = pathlib.Path(BUSYBOX).read_bytes()
    return layer_tar([("bin", None, 0o755, None), ("bin/busybox", bb, 0o755, None),
                      ("bin/sh", None, 0o777, "busybox"), ("etc", None, 0o755, None),
                      ("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n", 0o644, None)])


def write_layout(outdir, layers, tag=None, ref_name=None, cmd=("/bin/sh",), user="", tar_path=None):
    """Writes an OCI layout with the given uncompressed layer tars (gzipped)."""
    outdir = pathlib.Path(outdir)
    blobs = outdir / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(b):
        d = _sha(b)
        (blobs / d[7:]).write_bytes(b)
        return d

    layer_descs, diff_ids = [], []
    for raw in layers:
        gz = gzip.compress(raw, mtime=0)
        layer_descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            "digest": put(gz), "size": len(gz)})
        diff_ids.append(_sha(raw))
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": list(cmd), "Env": ["PATH=/bin"], "User": user, "WorkingDir": "/",
                   "Labels": {"test": "cocoon"}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }).encode()
    cdesc = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(config), "size": len(config)}
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": cdesc, "layers": layer_descs}).encode()
    mdesc = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": put(manifest),
             "size": len(manifest)}
    ann = {}
    if tag:
        ann["org.opencontainers.image.ref.name"] = tag
    if ref_name:
        ann["io.containerd.image.name"] = ref_name
    if ann:
        mdesc["annotations"] = ann
    (outdir / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [mdesc]}))
    (outdir / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    if tar_path:
        with tarfile.open(tar_path, "w") as t:
            for p in sorted(outdir.rglob("*")):
                t.add(p, arcname=str(p.relative_to(outdir)), recursive=False)
    return {"config": cdesc["digest"], "manifest": mdesc["digest"], "diff_ids": diff_ids,
            "layers": [d["digest"] for d in layer_descs]}


def chain_ids(diff_ids):
    out = []
    for d in diff_ids:
        out.append(d if not out else _sha(("%s %s" % (out[-1], d)).encode()))
    return out


if __name__ == "__main__":
    # python3 oci_layout.py OUTDIR TAG: a one-layer busybox image layout.
    import sys
    out, tag = sys.argv[1], sys.argv[2]
    info = write_layout(out, [busybox_layer()], tag=tag, cmd=("/bin/sh",))
    print(info["config"])
