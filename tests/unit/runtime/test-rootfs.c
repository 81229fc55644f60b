/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for runtime/rootfs.c with real mounts: overlay root filesystems
 * (upper/lower, read-only, whiteouts, many layers), volume binds (rw/ro,
 * files, symlinks, propagation), teardown, and that a running virtiofsd
 * (sandbox=namespace) sees mounts made below the share after it started.
 * Needs root; skipped without it. Every test works in its own temporary
 * directory and checks that no mount is left below it. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <limits.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/error.h"
#include "runtime/rootfs.h"
#include "runtime/virtiofsd.h"

static char tmpdir[64];

static char *P(const char *rel)
{
        static char bufs[8][4096];
        static int k;
        char *b = bufs[k++ % 8];
        snprintf(b, sizeof(bufs[0]), "%s/%s", tmpdir, rel);
        return b;
}

/* Mounts in our namespace at or below dir (independent of the code under
 * test: a plain scan of mountinfo). */
static int mounts_below(const char *dir)
{
        FILE *f = fopen("/proc/self/mountinfo", "r");
        assert_non_null(f);
        char line[8192];
        int n = 0;
        size_t l = strlen(dir);
        while (fgets(line, sizeof(line), f)) {
                char point[4096];
                if (sscanf(line, "%*d %*d %*s %*s %4095s", point) != 1)
                        continue;
                if (strncmp(point, dir, l) == 0 && (point[l] == 0 || point[l] == '/'))
                        n++;
        }
        fclose(f);
        return n;
}

static int setup(void **state)
{
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/test-rootfs-XXXXXX");
        return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
        int left = mounts_below(tmpdir);
        char cmd[256];
        if (left) { /* do not let rm cross into a leftover bind */
                snprintf(cmd, sizeof(cmd), "awk '$5 ~ \"^%s\" {print $5}' /proc/self/mountinfo | sort -r | "
                                           "xargs -r -n1 umount -l", tmpdir);
                (void)system(cmd);
        }
        snprintf(cmd, sizeof(cmd), "rm -rf --one-file-system '%s'", tmpdir);
        (void)system(cmd);
        if (left)
                fprintf(stderr, "%d mount(s) left below %s\n", left, tmpdir);
        return left ? -1 : 0;
}

static void put(const char *path, const char *content)
{
        char cmd[4200];
        snprintf(cmd, sizeof(cmd), "mkdir -p \"$(dirname '%s')\"", path);
        assert_int_equal(system(cmd), 0);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(content, f);
        assert_int_equal(fclose(f), 0);
}

static char *get(const char *path)
{
        static char buf[256];
        FILE *f = fopen(path, "r");
        if (!f)
                return NULL;
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        buf[n] = 0;
        fclose(f);
        return buf;
}

/* call must succeed; its error message is shown when it does not */
#define OK(call)                                                                                   \
        do {                                                                                       \
                err = NULL;                                                                        \
                int r_ = (call);                                                                   \
                if (r_ < 0)                                                                        \
                        fprintf(stderr, "%s: %d %s\n", #call, r_, err ? err->msg : "(no error)");   \
                assert_int_equal(r_, 0);                                                           \
                assert_null(err);                                                                  \
        } while (0)

static bool exists(const char *path) { return access(path, F_OK) == 0; }

static void mkdirs(const char *path)
{
        char cmd[4200];
        snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", path);
        assert_int_equal(system(cmd), 0);
}

/* ---- overlay ---------------------------------------------------------------- */

static void test_overlay_rw(void **state)
{
        put(P("l1/a"), "top");
        put(P("l2/a"), "bottom");
        put(P("l2/b"), "b");
        const char *lowers[] = { strdup(P("l1")), strdup(P("l2")) };
        char *target = strdup(P("share/c1/rootfs")), *upper = strdup(P("ctr/c1"));
        cc_error *err = NULL;
        OK(rt_rootfs_mount(lowers, 2, upper, target, false, &err));
        assert_null(err);
        assert_true(rt_is_mountpoint(target));
        assert_string_equal(get(P("share/c1/rootfs/a")), "top");
        assert_string_equal(get(P("share/c1/rootfs/b")), "b");
        put(P("share/c1/rootfs/c"), "new");
        put(P("share/c1/rootfs/b"), "changed");
        assert_string_equal(get(P("ctr/c1/upper/c")), "new");
        assert_string_equal(get(P("ctr/c1/upper/b")), "changed");
        assert_false(exists(P("l1/c")));
        assert_false(exists(P("l2/c")));
        assert_string_equal(get(P("l2/b")), "b");
        struct stat st;
        assert_int_equal(stat(upper, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0700);
        /* a second mount on the same target is refused, nothing changes */
        assert_int_equal(rt_rootfs_mount(lowers, 2, P("ctr/c2"), target, false, &err), -EBUSY);
        cc_error_free(err);
        err = NULL;
        assert_false(exists(P("ctr/c2")));

        OK(rt_rootfs_unmount(target, upper, &err));
        assert_false(exists(target));
        assert_false(exists(upper));
        assert_int_equal(mounts_below(tmpdir), 0);
        assert_string_equal(get(P("l1/a")), "top"); /* layers untouched */
        /* idempotent */
        OK(rt_rootfs_unmount(target, upper, &err));
        free((void *)lowers[0]);
        free((void *)lowers[1]);
        free(target);
        free(upper);
}

static void test_overlay_readonly(void **state)
{
        put(P("l1/a"), "top");
        put(P("l2/b"), "b");
        const char *lowers[] = { strdup(P("l1")), strdup(P("l2")) };
        char *target = strdup(P("share/c1/rootfs")), *upper = strdup(P("ctr/c1"));
        cc_error *err = NULL;
        OK(rt_rootfs_mount(lowers, 2, upper, target, true, &err));
        assert_string_equal(get(P("share/c1/rootfs/b")), "b");
        assert_int_equal(open(P("share/c1/rootfs/new"), O_WRONLY | O_CREAT | O_CLOEXEC, 0644), -1);
        assert_int_equal(errno, EROFS);
        assert_false(exists(upper));
        OK(rt_rootfs_unmount(target, upper, &err));
        assert_int_equal(mounts_below(tmpdir), 0);

        /* one layer: a read-only bind */
        OK(rt_rootfs_mount(lowers, 1, NULL, target, true, &err));
        assert_true(rt_is_mountpoint(target));
        assert_string_equal(get(P("share/c1/rootfs/a")), "top");
        assert_int_equal(open(P("share/c1/rootfs/a"), O_WRONLY | O_CLOEXEC), -1);
        assert_int_equal(errno, EROFS);
        OK(rt_rootfs_unmount(target, NULL, &err));
        assert_false(exists(target));
        assert_int_equal(mounts_below(tmpdir), 0);
        free((void *)lowers[0]);
        free((void *)lowers[1]);
        free(target);
        free(upper);
}

static void test_whiteout(void **state)
{
        put(P("l2/gone"), "old");
        put(P("l2/kept"), "kept");
        mkdirs(P("l1"));
        /* overlayfs' whiteout: a 0/0 character device in the upper layer */
        assert_int_equal(mknod(P("l1/gone"), S_IFCHR | 0, makedev(0, 0)), 0);
        const char *lowers[] = { strdup(P("l1")), strdup(P("l2")) };
        cc_error *err = NULL;
        char *target = strdup(P("share/c1/rootfs")), *upper = strdup(P("ctr/c1"));
        OK(rt_rootfs_mount(lowers, 2, upper, target, false, &err));
        assert_false(exists(P("share/c1/rootfs/gone")));
        assert_int_equal(errno, ENOENT);
        assert_string_equal(get(P("share/c1/rootfs/kept")), "kept");
        /* deleting a lower file leaves a whiteout in upper only */
        assert_int_equal(unlink(P("share/c1/rootfs/kept")), 0);
        assert_false(exists(P("share/c1/rootfs/kept")));
        assert_true(exists(P("l2/kept")));
        OK(rt_rootfs_unmount(target, upper, &err));
        assert_int_equal(mounts_below(tmpdir), 0);
        free((void *)lowers[0]);
        free((void *)lowers[1]);
        free(target);
        free(upper);
}

static void test_many_layers(void **state)
{
        /* layer paths as long as the store's (…/layers/sha256/<64 hex>/diff) */
        enum { N = 400 };
        char **lowers = calloc(N, sizeof(char *));
        char cmd[256];
        snprintf(cmd, sizeof(cmd), "cd '%s' && mkdir -p layers/sha256 && cd layers/sha256 && for i in $(seq 0 %d); "
                                   "do d=$(printf %%064d $i)/diff; mkdir -p $d; echo $i > $d/f$i; done",
                 tmpdir, N - 1);
        assert_int_equal(system(cmd), 0);
        for (int i = 0; i < N; i++) {
                char rel[200];
                snprintf(rel, sizeof(rel), "layers/sha256/%064d/diff", i);
                lowers[i] = strdup(P(rel));
        }
        size_t opt_len = 0;
        for (int i = 0; i < 100; i++)
                opt_len += strlen(lowers[i]) + 1;
        assert_true(opt_len > 8192); /* far beyond one page */
        cc_error *err = NULL;
        char *target = strdup(P("share/c1/rootfs")), *upper = strdup(P("ctr/c1"));
        OK(rt_rootfs_mount((const char *const *)lowers, 100, upper, target, false, &err));
        assert_string_equal(get(P("share/c1/rootfs/f0")), "0\n");
        assert_string_equal(get(P("share/c1/rootfs/f99")), "99\n");
        put(P("share/c1/rootfs/w"), "w");
        assert_string_equal(get(P("ctr/c1/upper/w")), "w");
        OK(rt_rootfs_unmount(target, upper, &err));
        assert_int_equal(mounts_below(tmpdir), 0);

        /* more than even the short form fits: a clear -E2BIG, nothing left */
        assert_int_equal(rt_rootfs_mount((const char *const *)lowers, N, upper, target, false, &err), -E2BIG);
        assert_non_null(strstr(err->msg, "layers"));
        cc_error_free(err);
        err = NULL;
        assert_false(exists(target));
        assert_false(exists(upper));
        assert_int_equal(mounts_below(tmpdir), 0);
        for (int i = 0; i < N; i++)
                free(lowers[i]);
        free(lowers);
        free(target);
        free(upper);
}

static void test_overlay_bad_input(void **state)
{
        cc_error *err = NULL;
        const char *missing[] = { strdup(P("nope")) };
        assert_int_equal(rt_rootfs_mount(missing, 1, P("u"), P("t"), false, &err), -ENOENT);
        assert_non_null(strstr(err->msg, "nope"));
        cc_error_free(err);
        err = NULL;
        mkdirs(P("l,x"));
        const char *comma[] = { strdup(P("l,x")) };
        assert_int_equal(rt_rootfs_mount(comma, 1, P("u"), P("t"), false, &err), -EINVAL);
        cc_error_free(err);
        err = NULL;
        assert_false(exists(P("t")));
        assert_false(exists(P("u")));
        free((void *)missing[0]);
        free((void *)comma[0]);
}

/* ---- volumes ---------------------------------------------------------------------- */

static void test_volume_rw_ro(void **state)
{
        put(P("host/data/x"), "x");
        put(P("host/file"), "file");
        cc_error *err = NULL;
        OK(rt_volume_bind(P("host/data"), P("share/c1/mounts/0"), false, RT_PROP_PRIVATE, &err));
        assert_string_equal(get(P("share/c1/mounts/0/x")), "x");
        put(P("share/c1/mounts/0/y"), "y");
        assert_string_equal(get(P("host/data/y")), "y");

        OK(rt_volume_bind(P("host/data"), P("share/c1/mounts/1"), true, RT_PROP_PRIVATE, &err));
        assert_int_equal(open(P("share/c1/mounts/1/z"), O_WRONLY | O_CREAT | O_CLOEXEC, 0644), -1);
        assert_int_equal(errno, EROFS);

        /* a file: the target is created as a file */
        OK(rt_volume_bind(P("host/file"), P("share/c1/mounts/2"), true, RT_PROP_PRIVATE, &err));
        struct stat st;
        assert_int_equal(stat(P("share/c1/mounts/2"), &st), 0);
        assert_true(S_ISREG(st.st_mode));
        assert_string_equal(get(P("share/c1/mounts/2")), "file");
        assert_int_equal(open(P("share/c1/mounts/2"), O_WRONLY | O_CLOEXEC), -1);
        assert_int_equal(errno, EROFS);

        /* a symlink resolves on the host */
        assert_int_equal(symlink(P("host/data"), P("host/link")), 0);
        OK(rt_volume_bind(P("host/link"), P("share/c1/mounts/3"), false, RT_PROP_PRIVATE, &err));
        assert_int_equal(lstat(P("share/c1/mounts/3"), &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_string_equal(get(P("share/c1/mounts/3/x")), "x");

        for (int i = 0; i < 4; i++) {
                char rel[64];
                snprintf(rel, sizeof(rel), "share/c1/mounts/%d", i);
                OK(rt_volume_unbind(P(rel), &err));
                assert_false(exists(P(rel)));
                OK(rt_volume_unbind(P(rel), &err)); /* idempotent */
        }
        /* the host side is untouched */
        assert_string_equal(get(P("host/data/x")), "x");
        assert_string_equal(get(P("host/file")), "file");
        assert_int_equal(mounts_below(tmpdir), 0);
}

static void test_volume_bad_source(void **state)
{
        cc_error *err = NULL;
        assert_int_equal(rt_volume_bind(P("host/missing"), P("share/c1/mounts/0"), false, RT_PROP_PRIVATE, &err),
                         -ENOENT);
        assert_non_null(strstr(err->msg, P("host/missing")));
        cc_error_free(err);
        err = NULL;
        assert_false(exists(P("share")));
        assert_int_equal(rt_volume_bind("relative/path", P("share/c1/mounts/0"), false, RT_PROP_PRIVATE, &err),
                         -EINVAL);
        cc_error_free(err);
        err = NULL;
        mkdirs(P("host/a"));
        assert_int_equal(rt_volume_bind(P("host/a/../a"), P("share/c1/mounts/0"), false, RT_PROP_PRIVATE, &err),
                         -EINVAL);
        cc_error_free(err);
        err = NULL;
        /* rslave from a private mount: refused, as containerd does */
        assert_int_equal(rt_volume_bind(P("host/a"), P("share/c1/mounts/0"), false, RT_PROP_HOST_TO_CONTAINER,
                                        &err), -EINVAL);
        cc_error_free(err);
        err = NULL;
        assert_false(exists(P("share")));
        assert_int_equal(mounts_below(tmpdir), 0);
}

/* source made a shared mount of its own, as a kubelet host would have it */
static void make_shared_source(const char *dir)
{
        mkdirs(dir);
        assert_int_equal(mount(dir, dir, NULL, MS_BIND, NULL), 0);
        assert_int_equal(mount(NULL, dir, NULL, MS_PRIVATE, NULL), 0);
        assert_int_equal(mount(NULL, dir, NULL, MS_SHARED, NULL), 0);
}

static void test_volume_propagation(void **state)
{
        cc_error *err = NULL;
        make_shared_source(P("host"));
        mkdirs(P("host/sub"));
        OK(rt_volume_bind(P("host"), P("t/slave"), false, RT_PROP_HOST_TO_CONTAINER, &err));
        OK(rt_volume_bind(P("host"), P("t/private"), false, RT_PROP_PRIVATE, &err));
        OK(rt_volume_bind(P("host"), P("t/shared"), false, RT_PROP_BIDIRECTIONAL, &err));
        /* a mount made on the host later */
        assert_int_equal(mount("tmpfs", P("host/sub"), "tmpfs", 0, "size=64k"), 0);
        put(P("host/sub/later"), "later");
        assert_true(rt_is_mountpoint(P("t/slave/sub")));
        assert_string_equal(get(P("t/slave/sub/later")), "later");
        assert_false(rt_is_mountpoint(P("t/private/sub")));
        assert_true(rt_is_mountpoint(P("t/shared/sub")));
        /* rslave: nothing goes back to the host; rshared: it does */
        mkdirs(P("host/sub2"));
        assert_int_equal(mount("tmpfs", P("t/slave/sub2"), "tmpfs", 0, "size=64k"), 0);
        assert_false(rt_is_mountpoint(P("host/sub2")));
        assert_int_equal(umount2(P("t/slave/sub2"), 0), 0);
        assert_int_equal(mount("tmpfs", P("t/shared/sub2"), "tmpfs", 0, "size=64k"), 0);
        assert_true(rt_is_mountpoint(P("host/sub2")));
        assert_int_equal(umount2(P("host/sub2"), MNT_DETACH), 0);
        /* the host unmounts: gone from the slave too */
        assert_int_equal(umount2(P("host/sub"), 0), 0);
        assert_false(rt_is_mountpoint(P("t/slave/sub")));

        OK(rt_volume_unbind(P("t/slave"), &err));
        OK(rt_volume_unbind(P("t/private"), &err));
        OK(rt_volume_unbind(P("t/shared"), &err));
        assert_int_equal(umount2(P("host"), 0), 0);
        assert_int_equal(mounts_below(tmpdir), 0);
}

/* Below the share the guest decides what is a symbolic link: a link in a
 * target's path is never followed, neither to mount nor to remove. */
static void test_symlink_refused(void **state)
{
        cc_error *err = NULL;
        put(P("outside/rootfs/precious"), "precious");
        put(P("host/data/x"), "x");
        put(P("l1/a"), "a");
        mkdirs(P("share"));
        assert_int_equal(symlink(P("outside"), P("share/c1")), 0);
        const char *lowers[] = { strdup(P("l1")) };
        assert_int_equal(rt_rootfs_mount(lowers, 1, P("ctr/c1"), P("share/c1/rootfs2"), false, &err), -ENOTDIR);
        cc_error_free(err);
        err = NULL;
        assert_false(exists(P("outside/rootfs2")));
        assert_false(exists(P("ctr/c1")));
        assert_int_equal(rt_volume_bind(P("host/data"), P("share/c1/mounts/0"), false, RT_PROP_PRIVATE, &err),
                         -ENOTDIR);
        cc_error_free(err);
        err = NULL;
        assert_false(exists(P("outside/mounts")));
        /* teardown through the link: refused, the data behind it stays */
        assert_int_equal(rt_rootfs_unmount(P("share/c1/rootfs"), NULL, &err), -ELOOP);
        cc_error_free(err);
        err = NULL;
        assert_int_equal(rt_volume_unbind(P("share/c1/rootfs"), &err), -ELOOP);
        cc_error_free(err);
        err = NULL;
        assert_string_equal(get(P("outside/rootfs/precious")), "precious");
        /* a link as the target itself */
        assert_int_equal(symlink(P("outside/rootfs"), P("share/t")), 0);
        assert_int_equal(rt_volume_bind(P("host/data"), P("share/t"), false, RT_PROP_PRIVATE, &err), -EEXIST);
        cc_error_free(err);
        err = NULL;
        assert_int_equal(rt_volume_unbind(P("share/t"), &err), -ELOOP);
        cc_error_free(err);
        err = NULL;
        assert_string_equal(get(P("outside/rootfs/precious")), "precious");
        assert_int_equal(mounts_below(tmpdir), 0);
        free((void *)lowers[0]);
}

/* ---- the share ------------------------------------------------------------------------ */

static void test_share_nested(void **state)
{
        cc_error *err = NULL;
        char *share = strdup(P("pod/shared"));
        OK(rt_share_prepare(share, &err));
        OK(rt_share_prepare(share, &err)); /* once */
        assert_int_equal(mounts_below(share), 1);
        assert_true(rt_is_mountpoint(share));
        struct stat st;
        assert_int_equal(stat(share, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0711);

        put(P("l1/a"), "a");
        put(P("host/data/keep"), "keep");
        const char *lowers[] = { strdup(P("l1")) };
        OK(rt_rootfs_mount(lowers, 1, P("pod/ctr/c1"), P("pod/shared/c1/rootfs"), false, &err));
        OK(rt_volume_bind(P("host/data"), P("pod/shared/c1/mounts/0"), false, RT_PROP_PRIVATE, &err));
        mkdirs(P("pod/shared/c1/mounts/0/deeper"));
        assert_int_equal(mount("tmpfs", P("pod/shared/c1/mounts/0/deeper"), "tmpfs", 0, "size=64k"), 0);
        assert_int_equal(mounts_below(share), 4);

        OK(rt_share_destroy(share, &err));
        assert_null(err);
        assert_false(exists(share));
        assert_int_equal(mounts_below(tmpdir), 0);
        /* the volume's host data survived the teardown */
        assert_string_equal(get(P("host/data/keep")), "keep");
        assert_true(exists(P("host/data/deeper")));
        OK(rt_share_destroy(share, &err)); /* idempotent */
        OK(rt_rootfs_unmount(P("pod/shared/c1/rootfs"), P("pod/ctr/c1"), &err));
        assert_false(exists(P("pod/ctr/c1")));
        free((void *)lowers[0]);
        free(share);
}

/* The child virtiofsd forked into its sandbox (a test may wait by polling). */
static int sandboxed_child(int pid)
{
        char p[96];
        snprintf(p, sizeof(p), "/proc/%d/task/%d/children", pid, pid);
        for (int i = 0; i < 500; i++) {
                FILE *f = fopen(p, "r");
                int child = 0;
                if (f && fscanf(f, "%d", &child) == 1 && child > 0) {
                        fclose(f);
                        /* wait until it left our root (pivot_root done) */
                        char root[64], link[PATH_MAX];
                        snprintf(root, sizeof(root), "/proc/%d/root/bin", child);
                        if (access(root, F_OK) < 0 && readlink(root, link, sizeof(link)) < 0)
                                return child;
                } else if (f) {
                        fclose(f);
                }
                usleep(10000);
        }
        return -1;
}

/* virtiofsd started on the share, then mounts made below it: they must show
 * in virtiofsd's own mount namespace (its root is the share). */
static void test_virtiofsd_sees_later_mounts(void **state)
{
        const char *bin = "/usr/lib/qemu/virtiofsd";
        if (access(bin, X_OK) < 0)
                bin = virtiofsd_default_binary();
        if (!bin) {
                fprintf(stderr, "no virtiofsd: skipped\n");
                skip();
        }
        cc_error *err = NULL;
        char *share = strdup(P("pod/shared"));
        mkdirs(P("run"));
        OK(rt_share_prepare(share, &err));
        virtiofsd_config vc = { .binary = bin, .shared_dir = share, .run_dir = P("run"), .sandbox = "namespace" };
        virtiofsd *d = NULL;
        OK(virtiofsd_start(&vc, &d, &err));
        /* virtiofsd builds its sandbox (unshare, fork, pivot_root into the
         * share) once the VMM connects: be the VMM */
        int vmm = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", virtiofsd_socket_path(d));
        /* virtiofsd binds before it listens: the socket file can exist a
         * moment before connections are accepted (seen under load) */
        int cr = -1;
        for (int i = 0; i < 200 && (cr = connect(vmm, (struct sockaddr *)&sa, sizeof(sa))) < 0 &&
                        errno == ECONNREFUSED; i++)
                usleep(10000);
        assert_int_equal(cr, 0);
        int pid = sandboxed_child(virtiofsd_pid(d));
        assert_true(pid > 0);
        char ns_self[64] = "", ns_child[64] = "", nsp[64];
        snprintf(nsp, sizeof(nsp), "/proc/%d/ns/mnt", pid);
        assert_true(readlink("/proc/self/ns/mnt", ns_self, sizeof(ns_self) - 1) > 0);
        assert_true(readlink(nsp, ns_child, sizeof(ns_child) - 1) > 0);
        assert_string_not_equal(ns_self, ns_child); /* really its own namespace */

        /* made after virtiofsd started */
        put(P("l1/a"), "from-layer");
        make_shared_source(P("host"));
        put(P("host/v"), "from-volume");
        const char *lowers[] = { strdup(P("l1")) };
        OK(rt_rootfs_mount(lowers, 1, P("pod/ctr/c1"), P("pod/shared/c1/rootfs"), false, &err));
        OK(rt_volume_bind(P("host"), P("pod/shared/c1/mounts/0"), true, RT_PROP_HOST_TO_CONTAINER,
                                        &err));
        OK(rt_volume_bind(P("host"), P("pod/shared/c1/mounts/1"), false, RT_PROP_PRIVATE, &err));

        char path[256], root[64];
        snprintf(root, sizeof(root), "/proc/%d/root", pid);
        snprintf(path, sizeof(path), "%s/c1/rootfs/a", root);
        assert_non_null(get(path));
        assert_string_equal(get(path), "from-layer");
        snprintf(path, sizeof(path), "%s/c1/mounts/0/v", root);
        assert_string_equal(get(path), "from-volume");
        snprintf(path, sizeof(path), "%s/c1/mounts/1/v", root);
        assert_string_equal(get(path), "from-volume");
        /* read-only there too */
        snprintf(path, sizeof(path), "%s/c1/mounts/0/new", root);
        assert_int_equal(open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644), -1);
        assert_int_equal(errno, EROFS);

        /* a mount the host makes later in an rslave volume's source reaches
         * virtiofsd through the volume (host → share → virtiofsd) */
        mkdirs(P("host/sub"));
        assert_int_equal(mount("tmpfs", P("host/sub"), "tmpfs", 0, "size=64k"), 0);
        put(P("host/sub/later"), "later");
        snprintf(path, sizeof(path), "%s/c1/mounts/0/sub/later", root);
        assert_string_equal(get(path), "later");
        snprintf(path, sizeof(path), "%s/c1/mounts/1/sub/later", root);
        assert_null(get(path)); /* private: not there */
        assert_int_equal(umount2(P("host/sub"), 0), 0);

        /* unmounting on the host unmounts in virtiofsd's namespace too */
        OK(rt_rootfs_unmount(P("pod/shared/c1/rootfs"), P("pod/ctr/c1"), &err));
        OK(rt_volume_unbind(P("pod/shared/c1/mounts/0"), &err));
        OK(rt_volume_unbind(P("pod/shared/c1/mounts/1"), &err));
        char mi[64], line[8192];
        snprintf(mi, sizeof(mi), "/proc/%d/mountinfo", pid);
        FILE *f = fopen(mi, "r");
        assert_non_null(f);
        while (fgets(line, sizeof(line), f))
                assert_null(strstr(line, " /c1/"));
        fclose(f);

        close(vmm); /* the VMM hangs up: virtiofsd exits by itself */
        OK(virtiofsd_stop(d, 2000, &err));
        virtiofsd_free(d);
        OK(rt_share_destroy(share, &err));
        assert_int_equal(umount2(P("host"), 0), 0);
        assert_int_equal(mounts_below(tmpdir), 0);
        free((void *)lowers[0]);
        free(share);
}

int main(void)
{
        if (geteuid() != 0) {
                fprintf(stderr, "test-rootfs: needs root; skipped\n");
                return 77;
        }
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_overlay_rw, setup, teardown),
                cmocka_unit_test_setup_teardown(test_overlay_readonly, setup, teardown),
                cmocka_unit_test_setup_teardown(test_whiteout, setup, teardown),
                cmocka_unit_test_setup_teardown(test_many_layers, setup, teardown),
                cmocka_unit_test_setup_teardown(test_overlay_bad_input, setup, teardown),
                cmocka_unit_test_setup_teardown(test_volume_rw_ro, setup, teardown),
                cmocka_unit_test_setup_teardown(test_volume_bad_source, setup, teardown),
                cmocka_unit_test_setup_teardown(test_volume_propagation, setup, teardown),
                cmocka_unit_test_setup_teardown(test_symlink_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_share_nested, setup, teardown),
                cmocka_unit_test_setup_teardown(test_virtiofsd_sees_later_mounts, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
