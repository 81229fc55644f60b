#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Builds the pull benchmark's image as an OCI layout, reproducibly.

    mkimage.py OUTDIR [--seed S] [--scale F]

Ten gzip layers (level 6, mtime 0, like docker's): layer 0 is Debian's static
busybox with a few links (tests/tools/mkoci.py's base layer), layers 1-8 hold
a few large files each and layer 9 many small ones (per-file costs count
too). File contents come from random.Random(seed), half raw random bytes
(incompressible) and half random hex text (4 bits of entropy a byte), in
64 KiB runs: "incompressible-ish", about 1.3:1 under gzip, so the
decompressor does real work. ~200 MiB uncompressed at --scale 1; the same
seed gives the same digests on every run. Prints a JSON summary on stdout."""
import argparse
import gzip
import hashlib
import json
import pathlib
import platform
import random
import shutil
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tests" / "tools"))
import mkoci  # noqa: E402

MIB = 1 << 20
# Uncompressed data per layer 1..8 (MiB), split over a few files each.
BIG_LAYERS = [36, 30, 26, 24, 22, 20, 18, 14]
SMALL_FILES = 480          # layer 9: this many files ...
SMALL_FILE_BYTES = 20000   # ... of about this size (~9 MiB)
CHUNK = 64 << 10
HEX = bytes.maketrans(bytes(range(256)), b"0123456789abcdef" * 16)


def data(rng, n):
    out = []
    left = n
    raw = True
    while left > 0:
        k = min(CHUNK, left)
        b = rng.randbytes(k)
        out.append(b if raw else b.translate(HEX))
        raw = not raw
        left -= k
    return b"".join(out)


def layers(rng, scale, arch):
    tars = [mkoci.layer_tars(1, arch=arch, salt="bench-pull")[0]]
    for i, mib in enumerate(BIG_LAYERS, start=1):
        total = int(mib * MIB * scale)
        # a few files: 1/2, 1/4, 1/8, 1/8
        sizes = [total // 2, total // 4, total // 8]
        sizes.append(total - sum(sizes))
        entries = [("opt", "dir", None, 0o755), ("opt/l%d" % i, "dir", None, 0o755)]
        for j, sz in enumerate(sizes):
            entries.append(("opt/l%d/f%d.bin" % (i, j), "file", data(rng, sz), 0o644))
        tars.append(mkoci._tar(entries))
    entries = [("usr", "dir", None, 0o755), ("usr/share", "dir", None, 0o755),
               ("usr/share/many", "dir", None, 0o755)]
    for k in range(SMALL_FILES):
        if k % 40 == 0:
            entries.append(("usr/share/many/d%02d" % (k // 40), "dir", None, 0o755))
        sz = max(1, int(rng.randint(SMALL_FILE_BYTES // 4, SMALL_FILE_BYTES * 7 // 4) * scale))
        entries.append(("usr/share/many/d%02d/f%03d" % (k // 40, k), "file", data(rng, sz),
                        0o644))
    tars.append(mkoci._tar(entries))
    return tars


def host_arch():
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def build(outdir, seed, scale, tag="v1"):
    rng = random.Random(seed)
    arch = host_arch()
    lay = mkoci.Layout(outdir)
    descs, diff_ids = [], []
    raw_total = 0
    for raw in layers(rng, scale, arch):
        blob = gzip.compress(raw, compresslevel=6, mtime=0)
        descs.append({"mediaType": mkoci.MT_LAYER["gzip"], "digest": lay.put(blob),
                      "size": len(blob)})
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        raw_total += len(raw)
    config = json.dumps({
        "architecture": arch, "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "bench/pull/mkimage.py seed=%s" % seed}],
    }, sort_keys=True).encode()
    cdesc = {"mediaType": mkoci.MT_CONFIG, "digest": lay.put(config), "size": len(config)}
    manifest = json.dumps({"schemaVersion": 2, "mediaType": mkoci.MT_MANIFEST,
                           "config": cdesc, "layers": descs}, sort_keys=True).encode()
    mdig = lay.put(manifest)
    lay.finish(tag, (mkoci.MT_MANIFEST, mdig, len(manifest)))
    return {"tag": tag, "manifest": mdig, "config": cdesc["digest"], "arch": arch,
            "layers": len(descs),
            "compressed_bytes": sum(d["size"] for d in descs),
            "uncompressed_bytes": raw_total,
            "layer_sizes": [d["size"] for d in descs]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--seed", default="cocoon-bench-pull-1")
    ap.add_argument("--scale", type=float, default=1.0)
    a = ap.parse_args()
    out = pathlib.Path(a.outdir)
    if out.exists():
        shutil.rmtree(out)
    json.dump(build(out, a.seed, a.scale), sys.stdout)
    print()


if __name__ == "__main__":
    main()
