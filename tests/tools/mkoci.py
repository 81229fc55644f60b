#!/usr/bin/python3
"""Builds OCI image layouts for tests from Debian's static busybox.

    mkoci.py OUTDIR [--tag T] [--layers N] [--compression gzip|zstd|none]
             [--arch amd64] [--multi-arch amd64,arm64] [--big-layer BYTES] [--salt S]

Layer 0 holds /bin/busybox with symlinks (bin/sh, bin/ls) and a hard link
(bin/busybox.hl), /etc/passwd; layer 1 adds /data/{a,b}.txt and /keep/x;
layer 2 whites out /data/a.txt and makes /keep opaque; further layers each
add /layerN.txt. --big-layer appends one uncompressible layer of that size.
Prints a JSON description (digests of manifest, config, layers, index) on
stdout. Importable: build(outdir, ...) returns the same dict."""
import argparse
import gzip
import hashlib
import io
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile

BUSYBOX = "/bin/busybox"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = {"none": "application/vnd.oci.image.layer.v1.tar",
            "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
            "zstd": "application/vnd.oci.image.layer.v1.tar+zstd"}


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def _tar(entries):
    """entries: (path, kind, data/link, mode); kind in file/dir/symlink/hardlink."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for path, kind, data, mode in entries:
            ti = tarfile.TarInfo(path)
            ti.mode = mode
            ti.mtime = 1700000000
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
                t.addfile(ti)
            elif kind == "symlink":
                ti.type = tarfile.SYMTYPE
                ti.linkname = data
                t.addfile(ti)
            elif kind == "hardlink":
                ti.type = tarfile.LNKTYPE
                ti.linkname = data
                t.addfile(ti)
            else:
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def layer_tars(n_layers, arch="amd64", salt="", big_layer=0):
    bb = pathlib.Path(BUSYBOX).read_bytes()
    tars = [_tar([
        ("bin", "dir", None, 0o755),
        ("bin/busybox", "file", bb, 0o755),
        ("bin/busybox.hl", "hardlink", "bin/busybox", 0o755),
        ("bin/sh", "symlink", "busybox", 0o777),
        ("bin/ls", "symlink", "/bin/busybox", 0o777),
        ("etc", "dir", None, 0o755),
        ("etc/passwd", "file", b"root:x:0:0:root:/root:/bin/sh\n", 0o644),
        ("etc/arch", "file", ("%s %s\n" % (arch, salt)).encode(), 0o644),
    ])]
    if n_layers >= 2:
        tars.append(_tar([
            ("data", "dir", None, 0o755),
            ("data/a.txt", "file", b"a\n", 0o644),
            ("data/b.txt", "file", b"b\n", 0o644),
            ("keep", "dir", None, 0o755),
            ("keep/x", "file", b"x\n", 0o644),
        ]))
    if n_layers >= 3:
        tars.append(_tar([
            ("data", "dir", None, 0o755),
            ("data/.wh.a.txt", "file", b"", 0o644),
            ("keep", "dir", None, 0o755),
            ("keep/.wh..wh..opq", "file", b"", 0o644),
            ("keep/y", "file", b"y\n", 0o644),
        ]))
    for i in range(3, n_layers):
        tars.append(_tar([("layer%d.txt" % i, "file", ("layer %d %s\n" % (i, salt)).encode(),
                           0o644)]))
    if big_layer:
        tars.append(_tar([("big.bin", "file", os.urandom(big_layer), 0o644)]))
    return tars


def compress(raw, how):
    if how == "none":
        return raw
    if how == "gzip":
        return gzip.compress(raw, mtime=0)
    if how == "zstd":
        return subprocess.run(["zstd", "-q", "-c", "-3"], input=raw, check=True,
                              capture_output=True).stdout
    raise ValueError("unknown compression %r" % how)


class Layout:
    def __init__(self, outdir):
        self.dir = pathlib.Path(outdir)
        self.blobs = self.dir / "blobs" / "sha256"
        self.blobs.mkdir(parents=True, exist_ok=True)
        (self.dir / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')

    def put(self, b):
        d = sha(b)
        (self.blobs / d[7:]).write_bytes(b)
        return d

    def image(self, n_layers, compression, arch, salt="", big_layer=0):
        descs, diff_ids = [], []
        for raw in layer_tars(n_layers, arch, salt, big_layer):
            blob = compress(raw, compression)
            descs.append({"mediaType": MT_LAYER[compression], "digest": self.put(blob),
                          "size": len(blob)})
            diff_ids.append(sha(raw))
        config = json.dumps({
            "architecture": arch, "os": "linux",
            "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": "mkoci.py"}],
        }, sort_keys=True).encode()
        cdesc = {"mediaType": MT_CONFIG, "digest": self.put(config), "size": len(config)}
        manifest = json.dumps({"schemaVersion": 2, "mediaType": MT_MANIFEST, "config": cdesc,
                               "layers": descs}, sort_keys=True).encode()
        mdig = self.put(manifest)
        return {"manifest": mdig, "manifest_size": len(manifest), "config": cdesc["digest"],
                "layers": [d["digest"] for d in descs], "diff_ids": diff_ids,
                "media_types": [d["mediaType"] for d in descs], "arch": arch}

    def finish(self, tag, top):
        """top: (mediaType, digest, size) that index.json names with the tag."""
        mt, dig, size = top
        (self.dir / "index.json").write_text(json.dumps({
            "schemaVersion": 2, "mediaType": MT_INDEX,
            "manifests": [{"mediaType": mt, "digest": dig, "size": size,
                           "annotations": {"org.opencontainers.image.ref.name": tag}}]}))


def build(outdir, tag="latest", layers=3, compression="gzip", arch="amd64", multi_arch=None,
          big_layer=0, salt=""):
    lay = Layout(outdir)
    if not multi_arch:
        img = lay.image(layers, compression, arch, salt, big_layer)
        lay.finish(tag, (MT_MANIFEST, img["manifest"], img["manifest_size"]))
        img["index"] = None
        return img
    images = {}
    entries = []
    for a in multi_arch:
        img = lay.image(layers, compression, a, salt, big_layer)
        images[a] = img
        plat = {"architecture": a, "os": "linux"}
        if a == "arm64":
            plat["variant"] = "v8"
        entries.append({"mediaType": MT_MANIFEST, "digest": img["manifest"],
                        "size": img["manifest_size"], "platform": plat})
    index = json.dumps({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": entries},
                       sort_keys=True).encode()
    idig = lay.put(index)
    lay.finish(tag, (MT_INDEX, idig, len(index)))
    return {"index": idig, "images": images}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--tag", default="latest")
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--compression", choices=sorted(MT_LAYER), default="gzip")
    ap.add_argument("--arch", default="amd64")
    ap.add_argument("--multi-arch", default=None)
    ap.add_argument("--big-layer", type=int, default=0)
    ap.add_argument("--salt", default="")
    a = ap.parse_args()
    if os.path.exists(a.outdir) and any(pathlib.Path(a.outdir).iterdir()):
        shutil.rmtree(a.outdir)
    res = build(a.outdir, a.tag, a.layers, a.compression, a.arch,
                a.multi_arch.split(",") if a.multi_arch else None, a.big_layer, a.salt)
    json.dump(res, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
