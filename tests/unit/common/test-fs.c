/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for common/fs.c: mkdir -p, atomic writes, bounded reads, rm -rf
 * (symlinks, mount points) and the safe relative path check. The mount
 * tests need root (CAP_SYS_ADMIN) and are skipped without it. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
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
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/fs.h"

static char tmpdir[64];

static int setup(void **state)
{
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/test-fs-XXXXXX");
        return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
        /* Independent of the code under test: the shell's rm. */
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        return system(cmd) == 0 ? 0 : -1;
}

static char *path_of(const char *rel)
{
        char *p = NULL;
        assert_true(asprintf(&p, "%s/%s", tmpdir, rel) > 0);
        return p;
}

static void put(const char *rel, const char *content)
{
        char *p = path_of(rel);
        FILE *f = fopen(p, "w");
        assert_non_null(f);
        fputs(content, f);
        assert_int_equal(fclose(f), 0);
        free(p);
}

static bool exists(const char *rel)
{
        char *p = path_of(rel);
        struct stat st;
        bool r = lstat(p, &st) == 0;
        free(p);
        return r;
}

static bool is_dir(const char *rel)
{
        char *p = path_of(rel);
        struct stat st;
        bool r = lstat(p, &st) == 0 && S_ISDIR(st.st_mode);
        free(p);
        return r;
}

/* Number of entries (other than . and ..) in tmpdir/rel. */
static int count_entries(const char *rel)
{
        char *p = path_of(rel);
        DIR *d = opendir(p);
        free(p);
        assert_non_null(d);
        int n = 0;
        struct dirent *de;
        while ((de = readdir(d)))
                if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
                        n++;
        closedir(d);
        return n;
}

/* ---- mkdir -p ----------------------------------------------------------- */

static void test_mkdir_p_nested(void **state)
{
        cc_error *err = NULL;
        char *p = path_of("a/b/c/d");
        assert_int_equal(cc_mkdir_p(p, 0750, &err), 0);
        assert_null(err);
        assert_true(is_dir("a/b/c/d"));
        /* Existing: success, nothing changes. */
        assert_int_equal(cc_mkdir_p(p, 0750, &err), 0);
        assert_null(err);
        free(p);
        /* Trailing and doubled slashes. */
        p = path_of("x//y/z/");
        assert_int_equal(cc_mkdir_p(p, 0755, &err), 0);
        assert_null(err);
        assert_true(is_dir("x/y/z"));
        free(p);
        assert_int_equal(cc_mkdir_p("/", 0755, &err), 0);
        assert_null(err);
}

static void test_mkdir_p_file_in_the_way(void **state)
{
        cc_error *err = NULL;
        put("file", "x");
        char *p = path_of("file");
        assert_int_equal(cc_mkdir_p(p, 0755, &err), -ENOTDIR);
        assert_non_null(err);
        assert_non_null(strstr(err->msg, p));
        cc_error_free(err);
        err = NULL;
        free(p);
        /* A file as an intermediate component. */
        p = path_of("file/sub/dir");
        assert_int_equal(cc_mkdir_p(p, 0755, &err), -ENOTDIR);
        assert_non_null(err);
        cc_error_free(err);
        err = NULL;
        free(p);
        assert_int_equal(cc_mkdir_p("", 0755, &err), -EINVAL);
        cc_error_free(err);
        err = NULL;
        assert_int_equal(cc_mkdir_p(NULL, 0755, NULL), -EINVAL);
}

/* ---- atomic write ------------------------------------------------------- */

static void test_write_atomic(void **state)
{
        cc_error *err = NULL;
        char *p = path_of("w/out.json");
        assert_int_equal(cc_mkdir_p(tmpdir, 0755, NULL), 0);
        char *d = path_of("w");
        assert_int_equal(mkdir(d, 0755), 0);
        free(d);
        static const char data[] = "{\"a\":1}\0binary";
        assert_int_equal(cc_write_file_atomic(p, data, sizeof(data), 0640, &err), 0);
        assert_null(err);
        struct stat st;
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_size, sizeof(data));
        assert_int_equal(st.st_mode & 07777, 0640); /* exact, umask-independent */
        char *buf = NULL;
        size_t len = 0;
        assert_int_equal(cc_read_file(p, 4096, &buf, &len, &err), 0);
        assert_int_equal(len, sizeof(data));
        assert_memory_equal(buf, data, sizeof(data));
        free(buf);
        assert_int_equal(count_entries("w"), 1); /* no temporary file left */

        /* Replacing: new content, new mode, still one entry. */
        assert_int_equal(cc_write_file_atomic(p, "new", 3, 0600, &err), 0);
        assert_int_equal(cc_read_file(p, 4096, &buf, &len, &err), 0);
        assert_string_equal(buf, "new");
        free(buf);
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
        assert_int_equal(count_entries("w"), 1);

        /* Empty file. */
        assert_int_equal(cc_write_file_atomic(p, "", 0, 0644, &err), 0);
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_size, 0);
        assert_int_equal(count_entries("w"), 1);
        free(p);
}

static void test_write_atomic_failures_leave_nothing(void **state)
{
        cc_error *err = NULL;
        char *d = path_of("wf");
        assert_int_equal(mkdir(d, 0755), 0);
        free(d);

        /* Target is an existing, non-empty directory: rename fails. */
        d = path_of("wf/adir");
        assert_int_equal(mkdir(d, 0755), 0);
        put("wf/adir/inside", "keep");
        assert_true(cc_write_file_atomic(d, "x", 1, 0644, &err) < 0);
        assert_non_null(err);
        cc_error_free(err);
        err = NULL;
        assert_int_equal(count_entries("wf"), 1);
        assert_int_equal(count_entries("wf/adir"), 1);
        assert_true(is_dir("wf/adir"));
        free(d);

        /* Missing directory: nothing created anywhere. */
        char *p = path_of("wf/missing/file");
        assert_int_equal(cc_write_file_atomic(p, "x", 1, 0644, &err), -ENOENT);
        assert_non_null(err);
        assert_non_null(strstr(err->msg, p));
        cc_error_free(err);
        err = NULL;
        assert_int_equal(count_entries("wf"), 1);
        free(p);

        /* NULL ret_err: same code, nothing left. */
        d = path_of("wf/adir");
        assert_true(cc_write_file_atomic(d, "x", 1, 0644, NULL) < 0);
        assert_int_equal(count_entries("wf"), 1);
        free(d);
}

static void test_write_atomic_readonly_dir(void **state)
{
        /* Root bypasses directory permissions; a read-only bind mount does not. */
        if (geteuid() != 0)
                skip();
        char *d = path_of("ro");
        assert_int_equal(mkdir(d, 0755), 0);
        if (mount(d, d, "none", MS_BIND, NULL) < 0) {
                free(d);
                skip();
        }
        assert_int_equal(mount("none", d, "none", MS_BIND | MS_REMOUNT | MS_RDONLY, NULL), 0);
        char *p = path_of("ro/f");
        cc_error *err = NULL;
        int r = cc_write_file_atomic(p, "x", 1, 0644, &err);
        umount2(d, MNT_DETACH);
        assert_int_equal(r, -EROFS);
        assert_non_null(err);
        cc_error_free(err);
        assert_int_equal(count_entries("ro"), 0);
        free(p);
        free(d);
}

/* ---- bounded read ------------------------------------------------------- */

static void test_read_file(void **state)
{
        cc_error *err = NULL;
        put("r", "hello\nworld");
        char *p = path_of("r");
        char *buf = (char *)0x1;
        size_t len = 12345;
        assert_int_equal(cc_read_file(p, 11, &buf, &len, &err), 0); /* exactly max */
        assert_null(err);
        assert_int_equal(len, 11);
        assert_memory_equal(buf, "hello\nworld", 11);
        assert_int_equal(buf[11], 0);
        free(buf);
        /* ret_len may be NULL. */
        assert_int_equal(cc_read_file(p, 100, &buf, NULL, &err), 0);
        assert_string_equal(buf, "hello\nworld");
        free(buf);

        /* One byte over the limit: -EFBIG, outputs untouched. */
        buf = (char *)0x1;
        len = 777;
        assert_int_equal(cc_read_file(p, 10, &buf, &len, &err), -EFBIG);
        assert_non_null(err);
        assert_ptr_equal(buf, (char *)0x1);
        assert_int_equal(len, 777);
        cc_error_free(err);
        err = NULL;
        free(p);

        /* Empty file: an empty, terminated buffer. */
        put("empty", "");
        p = path_of("empty");
        assert_int_equal(cc_read_file(p, 0, &buf, &len, &err), 0);
        assert_int_equal(len, 0);
        assert_string_equal(buf, "");
        free(buf);
        free(p);

        /* Missing: -ENOENT naming the path. */
        p = path_of("nope");
        assert_int_equal(cc_read_file(p, 10, &buf, &len, &err), -ENOENT);
        assert_non_null(strstr(err->msg, p));
        cc_error_free(err);
        err = NULL;
        free(p);

        /* A directory is not a file. */
        assert_true(cc_read_file(tmpdir, 4096, &buf, &len, &err) < 0);
        assert_non_null(err);
        cc_error_free(err);
}

static void test_read_file_binary(void **state)
{
        /* Larger than one read, with NUL bytes: length and bytes exact. */
        size_t n = 100000;
        unsigned char *data = malloc(n);
        assert_non_null(data);
        for (size_t i = 0; i < n; i++)
                data[i] = (unsigned char)(i * 7);
        char *p = path_of("bin");
        assert_int_equal(cc_write_file_atomic(p, data, n, 0644, NULL), 0);
        char *buf = NULL;
        size_t len = 0;
        assert_int_equal(cc_read_file(p, n, &buf, &len, NULL), 0);
        assert_int_equal(len, n);
        assert_memory_equal(buf, data, n);
        assert_int_equal(buf[n], 0);
        free(buf);
        free(data);
        free(p);
}

static void test_read_file_unsized(void **state)
{
        /* Files whose st_size says nothing: bounded by what is read. */
        char *buf = NULL;
        size_t len = 0;
        cc_error *err = NULL;
        assert_int_equal(cc_read_file("/dev/zero", 10000, &buf, &len, &err), -EFBIG);
        assert_non_null(err);
        cc_error_free(err);
        err = NULL;
        assert_int_equal(cc_read_file("/proc/self/status", 16, &buf, &len, &err), -EFBIG);
        cc_error_free(err);
        err = NULL;
        assert_int_equal(cc_read_file("/proc/self/status", 1 << 20, &buf, &len, &err), 0);
        assert_true(len > 16);
        assert_int_equal(strlen(buf), len);
        assert_non_null(strstr(buf, "Pid:"));
        free(buf);
}

/* ---- rm -rf ------------------------------------------------------------- */

static void make_tree(const char *root)
{
        char *p = NULL;
        assert_true(asprintf(&p, "%s/%s/d1/d2/d3", tmpdir, root) > 0);
        assert_int_equal(cc_mkdir_p(p, 0755, NULL), 0);
        free(p);
        char rel[256];
        snprintf(rel, sizeof(rel), "%s/f", root);
        put(rel, "1");
        snprintf(rel, sizeof(rel), "%s/d1/d2/d3/f", root);
        put(rel, "3");
        snprintf(rel, sizeof(rel), "%s/d1/.hidden", root);
        put(rel, "h");
        /* An empty directory and a FIFO (never opened by rm -rf). */
        assert_true(asprintf(&p, "%s/%s/d1/empty", tmpdir, root) > 0);
        assert_int_equal(mkdir(p, 0755), 0);
        free(p);
        assert_true(asprintf(&p, "%s/%s/fifo", tmpdir, root) > 0);
        assert_int_equal(mkfifo(p, 0600), 0);
        free(p);
}

static void test_rm_rf_tree(void **state)
{
        cc_error *err = NULL;
        make_tree("t");
        char *p = path_of("t");
        assert_int_equal(cc_rm_rf(p, &err), 0);
        assert_null(err);
        assert_false(exists("t"));
        /* Missing path: success. */
        assert_int_equal(cc_rm_rf(p, &err), 0);
        assert_null(err);
        free(p);
        /* A single file. */
        put("single", "x");
        p = path_of("single");
        assert_int_equal(cc_rm_rf(p, &err), 0);
        assert_false(exists("single"));
        free(p);
}

static void test_rm_rf_does_not_follow_symlinks(void **state)
{
        cc_error *err = NULL;
        make_tree("outside");
        make_tree("t2");
        char *target = path_of("outside");
        char *target_file = path_of("outside/f");
        char *l1 = path_of("t2/link-dir");
        char *l2 = path_of("t2/d1/link-file");
        char *l3 = path_of("t2/d1/d2/dangling");
        char *l4 = path_of("t2/d1/d2/up");
        assert_int_equal(symlink(target, l1), 0);
        assert_int_equal(symlink(target_file, l2), 0);
        assert_int_equal(symlink("/nonexistent/x", l3), 0);
        assert_int_equal(symlink("../../..", l4), 0);
        char *p = path_of("t2");
        assert_int_equal(cc_rm_rf(p, &err), 0);
        assert_null(err);
        assert_false(exists("t2"));
        /* The outside tree is complete. */
        assert_true(exists("outside/f"));
        assert_true(exists("outside/d1/d2/d3/f"));
        assert_true(exists("outside/d1/.hidden"));
        assert_true(exists("outside/fifo"));

        /* path itself a symlink to a directory: the link goes, not the target. */
        assert_int_equal(symlink(target, p), 0);
        assert_int_equal(cc_rm_rf(p, &err), 0);
        assert_false(exists("t2"));
        assert_true(exists("outside/d1/d2/d3/f"));
        free(p);
        free(l1);
        free(l2);
        free(l3);
        free(l4);
        free(target);
        free(target_file);
}

static void test_rm_rf_deep(void **state)
{
        /* Deeper than PATH_MAX allows as one path string. */
        char *p = path_of("deep");
        assert_int_equal(mkdir(p, 0755), 0);
        int fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(fd >= 0);
        static const char comp[] = "ddddddddddddddddddddddddddddddddddddddddddddddddd";
        for (int i = 0; i < 200; i++) {
                assert_int_equal(mkdirat(fd, comp, 0755), 0);
                int nfd = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                assert_true(nfd >= 0);
                close(fd);
                fd = nfd;
        }
        int ffd = openat(fd, "leaf", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        assert_true(ffd >= 0);
        close(ffd);
        close(fd);
        cc_error *err = NULL;
        assert_int_equal(cc_rm_rf(p, &err), 0);
        assert_null(err);
        assert_false(exists("deep"));
        free(p);
}

/* Mounts something at tmpdir/<rel_mnt> inside a tree, checks cc_rm_rf
 * refuses with -EBUSY (with and without an error out-parameter) and that
 * the mounted content survives. bind_src: NULL for a tmpfs. */
static void check_rm_rf_mount(const char *tree, const char *bind_src_rel)
{
        if (geteuid() != 0)
                skip();
        char rel[256];
        snprintf(rel, sizeof(rel), "%s/sub/mnt", tree);
        char *mnt = path_of(rel);
        assert_int_equal(cc_mkdir_p(mnt, 0755, NULL), 0);
        snprintf(rel, sizeof(rel), "%s/sub/sibling", tree);
        put(rel, "s");
        char *src = bind_src_rel ? path_of(bind_src_rel) : NULL;
        int r = src ? mount(src, mnt, "none", MS_BIND, NULL)
                    : mount("cocoon-test", mnt, "tmpfs", 0, "size=1m");
        if (r < 0) {
                free(mnt);
                free(src);
                skip();
        }
        if (!src) {
                snprintf(rel, sizeof(rel), "%s/sub/mnt/precious", tree);
                put(rel, "keep me");
        }

        cc_error *err = NULL;
        char *root = path_of(tree);
        int rr = cc_rm_rf(root, &err);
        int rr_null = cc_rm_rf(root, NULL);
        char inside[256];
        snprintf(inside, sizeof(inside), "%s/sub/mnt/precious", tree);
        bool survived = exists(inside);
        umount2(mnt, MNT_DETACH);
        if (src) {
                snprintf(inside, sizeof(inside), "%s/precious", bind_src_rel);
                survived = survived && exists(inside);
        }

        assert_true(survived);
        assert_int_equal(rr, -EBUSY);
        assert_non_null(err);
        assert_non_null(strstr(err->msg, "mnt"));
        cc_error_free(err);
        /* The code must not depend on whether the caller wants a message. */
        assert_int_equal(rr_null, -EBUSY);
        free(root);
        free(mnt);
        free(src);
}

static void test_rm_rf_tmpfs_mount(void **state) { check_rm_rf_mount("mt", NULL); }

static void test_rm_rf_bind_mount(void **state)
{
        /* A bind mount from the same filesystem has the same st_dev: still a
         * mount point that must not be crossed (volumes, rootfs binds). */
        char *src = path_of("bindsrc");
        assert_int_equal(mkdir(src, 0755), 0);
        put("bindsrc/precious", "keep me");
        free(src);
        check_rm_rf_mount("bt", "bindsrc");
}

/* ---- safe relative paths ------------------------------------------------ */

static void test_path_is_safe_relative(void **state)
{
        static const struct {
                const char *path;
                int safe;
        } cases[] = {
                { "a", 1 },
                { "a/b/c", 1 },
                { "etc/passwd", 1 },
                { "...", 1 },
                { "..a", 1 },
                { "a..", 1 },
                { "a/..b/c", 1 },
                { ".hidden/x", 1 },
                { "", 0 },
                { "/", 0 },
                { "/etc/passwd", 0 },
                { "..", 0 },
                { "../", 0 },
                { "../a", 0 },
                { "a/..", 0 },
                { "a/../b", 0 },
                { "a/b/../../..", 0 },
                { "a//../b", 0 },
                { "./..", 0 },
                { "a/../", 0 },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                int got = cc_path_is_safe_relative(cases[i].path);
                if (!!got != cases[i].safe)
                        fail_msg("'%s': got %d, want %d", cases[i].path, got, cases[i].safe);
        }
        assert_false(cc_path_is_safe_relative(NULL));
}

static void test_disk_usage(void **state)
{
        (void)state;
        char *d = path_of("du");
        assert_int_equal(mkdir(d, 0755), 0);
        char *sub = path_of("du/sub"), *big = path_of("du/sub/big");
        assert_int_equal(mkdir(sub, 0755), 0);
        int fd = open(big, O_WRONLY | O_CREAT | O_EXCL, 0644);
        assert_true(fd >= 0);
        static char buf[1 << 20];
        memset(buf, 'x', sizeof(buf));
        for (int i = 0; i < 3; i++)
                assert_int_equal(write(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
        close(fd);
        uint64_t bytes = 0, inodes = 0;
        assert_int_equal(cc_disk_usage(d, 1000, &bytes, &inodes), 0);
        assert_int_equal(inodes, 3); /* du, sub, big */
        assert_true(bytes >= 3u << 20);
        /* counting stops at the bound */
        assert_int_equal(cc_disk_usage(d, 2, &bytes, &inodes), 0);
        assert_int_equal(inodes, 2);
        char *none = path_of("du/none");
        assert_int_equal(cc_disk_usage(none, 1000, &bytes, &inodes), -ENOENT);
        cc_error *err = NULL;
        assert_int_equal(cc_rm_rf(d, &err), 0);
        free(none);
        free(big);
        free(sub);
        free(d);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_mkdir_p_nested),
                cmocka_unit_test(test_mkdir_p_file_in_the_way),
                cmocka_unit_test(test_write_atomic),
                cmocka_unit_test(test_write_atomic_failures_leave_nothing),
                cmocka_unit_test(test_write_atomic_readonly_dir),
                cmocka_unit_test(test_read_file),
                cmocka_unit_test(test_read_file_binary),
                cmocka_unit_test(test_read_file_unsized),
                cmocka_unit_test(test_rm_rf_tree),
                cmocka_unit_test(test_rm_rf_does_not_follow_symlinks),
                cmocka_unit_test(test_rm_rf_deep),
                cmocka_unit_test(test_rm_rf_tmpfs_mount),
                cmocka_unit_test(test_rm_rf_bind_mount),
                cmocka_unit_test(test_path_is_safe_relative),
                cmocka_unit_test(test_disk_usage),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
