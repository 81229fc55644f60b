"""The pod share (runtime/rootfs.c) seen from a real guest: mounts made on the
host below the share AFTER the VM booted (overlay root filesystems, volume
binds) are read by the guest over virtio-fs, through the real virtiofsd
(sandbox=namespace); their unmounts reach the guest too. A control VM whose
share is a plain directory (not rt_share_prepare'd) does not see them, which
shows the test can fail.

The mounts are made by runtime/rootfs.c itself, through a small driver
compiled here against the build tree's libruntime.a. Boots Debian's cloud
kernel with tests/tools/vmm-test-init as /init (see test_vmm.py). Needs root.
"""
import os
import subprocess
import time

import pytest

from conftest import BUILDDIR, SRCDIR
from test_vmm import guest, vms  # noqa: F401  (fixtures)

# /dev/kvm may exist and still fail (nested virtualisation): TCG unless told
ACCEL = ["--accel", os.environ.get("COCOON_TEST_ACCEL", "tcg")]

DRIVER_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "runtime/rootfs.h"
int main(int argc, char **argv)
{
        cc_error *err = NULL;
        int r = -1;
        if (argc == 3 && !strcmp(argv[1], "share-prepare"))
                r = rt_share_prepare(argv[2], &err);
        else if (argc == 3 && !strcmp(argv[1], "share-destroy"))
                r = rt_share_destroy(argv[2], &err);
        else if (argc >= 5 && !strcmp(argv[1], "rootfs-mount"))
                r = rt_rootfs_mount((const char *const *)argv + 4, (size_t)argc - 4, argv[3], argv[2], false, &err);
        else if (argc == 4 && !strcmp(argv[1], "rootfs-unmount"))
                r = rt_rootfs_unmount(argv[2], argv[3], &err);
        else if (argc == 6 && !strcmp(argv[1], "volume-bind"))
                r = rt_volume_bind(argv[2], argv[3], !strcmp(argv[4], "ro"),
                                   !strcmp(argv[5], "rslave") ? RT_PROP_HOST_TO_CONTAINER : RT_PROP_PRIVATE, &err);
        else if (argc == 3 && !strcmp(argv[1], "volume-unbind"))
                r = rt_volume_unbind(argv[2], &err);
        if (r < 0)
                fprintf(stderr, "%s\n", err ? err->msg : "usage");
        return r < 0;
}
"""


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    libs = [BUILDDIR / "runtime" / "libruntime.a", BUILDDIR / "common" / "libcommon.a"]
    for lib in libs:
        if not lib.exists():
            pytest.fail("%s not built" % lib)
    d = tmp_path_factory.mktemp("share-driver")
    (d / "driver.c").write_text(DRIVER_C)
    out = d / "rootfs-driver"
    subprocess.run(["cc", "-D_GNU_SOURCE", "-I", str(SRCDIR), "-I", str(BUILDDIR), "-o", str(out),
                    str(d / "driver.c")] + [str(x) for x in libs] + ["-ljson-c", "-lpthread"],
                   check=True, capture_output=True, timeout=120)
    return str(out)


def run(driver, *args):
    p = subprocess.run([driver] + [str(a) for a in args], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, "%s: %s" % (args, p.stderr)


def mounts_below(d):
    d = str(d)
    n = 0
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4]
            if mp == d or mp.startswith(d + "/"):
                n += 1
    return n


def host_shared(path):
    """Is the mount path lives on shared (systemd hosts)? Then even a plain
    directory passes later mounts on, and the control proves nothing."""
    best, opt = "", ""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split(" - ")[0].split()
            mp = fields[4]
            if (str(path) + "/").startswith(mp.rstrip("/") + "/") and len(mp) >= len(best):
                best, opt = mp, " ".join(fields[6:])
    return "shared:" in opt


def guest_cat(vm, rel, want, timeout=10):
    """The guest's reply for cat rel, waiting out its dentry cache (1 s)."""
    deadline = time.monotonic() + timeout
    while True:
        got = vm.agent("cat " + rel)
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def test_mounts_after_boot_reach_the_guest(vms, driver, tmp_path):
    vm = vms(extra=ACCEL)
    control = vms(extra=ACCEL)
    share, plain = vm.shared, control.shared
    base = vm.dir / "state" / "sandboxes" / vm.id
    host = tmp_path / "host"
    layers = tmp_path / "layers"
    try:
        run(driver, "share-prepare", share)
        vm.boot()
        control.boot()
        assert vm.agent("ping") == b"pong" and control.agent("ping") == b"pong"

        # an image: two layers, the top one wins
        (layers / "l1").mkdir(parents=True)
        (layers / "l2").mkdir()
        (layers / "l1" / "a").write_text("layer-top")
        (layers / "l2" / "a").write_text("layer-bottom")
        (layers / "l2" / "b").write_text("layer-b")
        (host / "data").mkdir(parents=True)
        (host / "data" / "v").write_text("volume")

        for s, b in ((share, base), (plain, control.dir / "ctr")):
            run(driver, "rootfs-mount", s / "c1" / "rootfs", b / "ctr" / "c1",
                layers / "l1", layers / "l2")
            run(driver, "volume-bind", host / "data", s / "c1" / "mounts" / "0", "ro", "private")
        (share / "c1" / "rootfs" / "written").write_text("by-host")

        assert guest_cat(vm, "c1/rootfs/a", b"layer-top") == b"layer-top"
        assert guest_cat(vm, "c1/rootfs/b", b"layer-b") == b"layer-b"
        assert guest_cat(vm, "c1/rootfs/written", b"by-host") == b"by-host"
        assert guest_cat(vm, "c1/mounts/0/v", b"volume") == b"volume"
        # the control share is a plain directory: virtiofsd's namespace
        # never gets the mounts made after it started
        if not host_shared(plain):
            assert control.agent("cat c1/rootfs/a").startswith(b"err")
            assert control.agent("cat c1/mounts/0/v").startswith(b"err")

        # unmounted on the host: gone in the guest as well
        run(driver, "volume-unbind", share / "c1" / "mounts" / "0")
        run(driver, "rootfs-unmount", share / "c1" / "rootfs", base / "ctr" / "c1")
        assert guest_cat(vm, "c1/rootfs/a", b"").startswith(b"err")
        assert guest_cat(vm, "c1/mounts/0/v", b"").startswith(b"err")
        assert (layers / "l1" / "a").read_text() == "layer-top"
        assert not (layers / "l1" / "written").exists()
    finally:
        for v in (vm, control):
            v.cleanup()
        for s in (share, plain):
            subprocess.run([driver, "share-destroy", str(s)], capture_output=True, timeout=30)
        assert mounts_below(vm.dir.parent) == 0
        assert mounts_below(tmp_path) == 0
