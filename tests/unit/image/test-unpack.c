/* SPDX-License-Identifier: Apache-2.0 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "common/cleanup.h"
#include "image/manifest.h"
#include "image/store.h"
#include "image/unpack.h"
#include "image/util.h"

#define MT_TAR "application/vnd.oci.image.layer.v1.tar"
#define MT_GZ "application/vnd.oci.image.layer.v1.tar+gzip"
#define MT_ZST "application/vnd.oci.image.layer.v1.tar+zstd"
#define MT_DOCKER_GZ "application/vnd.docker.image.rootfs.diff.tar.gzip"

typedef struct spec {
        mode_t type; /* AE_IF* */
        const char *path;
        mode_t mode;
        int uid, gid;
        const char *data;     /* regular file content */
        const char *link;     /* symlink target */
        const char *hardlink; /* hardlink target */
        int major, minor;
        const char *xattr;    /* name=value */
} spec;

static char root[64];
static image_store *store;
static bool is_root;

static int setup(void **state)
{
        strcpy(root, "/tmp/image-unpack-XXXXXX");
        assert_non_null(mkdtemp(root));
        assert_int_equal(image_store_open(root, &store, NULL), 0);
        is_root = geteuid() == 0;
        return 0;
}

static int teardown(void **state)
{
        image_store_free(store);
        image_rm_rf_at(AT_FDCWD, root);
        return 0;
}

/* Builds a tar (optionally compressed) in memory. Returns its length. */
static size_t build(const spec *s, size_t n, image_compression c, char **ret_buf,
                    char tar_digest[IMAGE_DIGEST_BUFSIZE])
{
        size_t cap = 1 << 20, used = 0;
        for (size_t i = 0; i < n; i++)
                cap += s[i].data ? strlen(s[i].data) + 4096 : 1024;
        char *buf = malloc(cap);
        /* the plain tar first, for the diff id */
        for (int pass = 0; pass < 2; pass++) {
                struct archive *a = archive_write_new();
                assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
                if (pass == 1 && c == IMAGE_COMPRESSION_GZIP)
                        assert_int_equal(archive_write_add_filter_gzip(a), ARCHIVE_OK);
                if (pass == 1 && c == IMAGE_COMPRESSION_ZSTD)
                        assert_int_equal(archive_write_add_filter_zstd(a), ARCHIVE_OK);
                /* default blocking: the tar ends in zero padding that the diff id covers */
                assert_int_equal(archive_write_open_memory(a, buf, cap, &used), ARCHIVE_OK);
                for (size_t i = 0; i < n; i++) {
                        struct archive_entry *e = archive_entry_new();
                        archive_entry_set_pathname(e, s[i].path);
                        archive_entry_set_filetype(e, s[i].type);
                        archive_entry_set_perm(e, s[i].mode ?: (s[i].type == AE_IFDIR ? 0755 : 0644));
                        archive_entry_set_uid(e, s[i].uid);
                        archive_entry_set_gid(e, s[i].gid);
                        archive_entry_set_mtime(e, 1700000000 + (time_t)i, 0);
                        if (s[i].link)
                                archive_entry_set_symlink(e, s[i].link);
                        if (s[i].hardlink) {
                                archive_entry_set_hardlink(e, s[i].hardlink);
                                archive_entry_unset_size(e);
                        }
                        if (s[i].type == AE_IFCHR || s[i].type == AE_IFBLK) {
                                archive_entry_set_rdevmajor(e, s[i].major);
                                archive_entry_set_rdevminor(e, s[i].minor);
                        }
                        if (s[i].xattr) {
                                const char *eq = strchr(s[i].xattr, '=');
                                char name[64];
                                snprintf(name, sizeof(name), "%.*s", (int)(eq - s[i].xattr), s[i].xattr);
                                archive_entry_xattr_add_entry(e, name, eq + 1, strlen(eq + 1));
                        }
                        size_t dlen = s[i].data ? strlen(s[i].data) : 0;
                        if (s[i].type == AE_IFREG && !s[i].hardlink)
                                archive_entry_set_size(e, (la_int64_t)dlen);
                        assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
                        if (dlen)
                                assert_int_equal(archive_write_data(a, s[i].data, dlen), (la_ssize_t)dlen);
                        archive_entry_free(e);
                }
                assert_int_equal(archive_write_close(a), ARCHIVE_OK);
                archive_write_free(a);
                if (pass == 0)
                        assert_int_equal(image_sha256_buf(buf, used, tar_digest), 0);
                if (c == IMAGE_COMPRESSION_NONE)
                        break;
        }
        *ret_buf = buf;
        return used;
}

/* Stores the blob, unpacks it as a layer; returns image_layer_unpack's result. */
static int unpack_specs(const spec *s, size_t n, image_compression c, const char *mt,
                        const char *wrong_diff_id, char chain[IMAGE_DIGEST_BUFSIZE],
                        cc_error **e)
{
        char *buf = NULL;
        char diff_id[IMAGE_DIGEST_BUFSIZE], blob[IMAGE_DIGEST_BUFSIZE];
        size_t len = build(s, n, c, &buf, diff_id);
        assert_int_equal(image_sha256_buf(buf, len, blob), 0);
        assert_int_equal(image_store_write_blob(store, blob, buf, len, NULL), 0);
        free(buf);
        strcpy(chain, diff_id); /* a base layer: chain id = diff id */
        return image_layer_unpack(store, blob, mt, wrong_diff_id ?: diff_id, chain, NULL, e);
}

static int layer_dir(const char *chain)
{
        char *p = image_layer_path(store, chain);
        int fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        free(p);
        return fd;
}

static void assert_tmp_empty(void)
{
        char p[128];
        snprintf(p, sizeof(p), "%s/layers/tmp", root);
        DIR *d = opendir(p);
        assert_non_null(d);
        struct dirent *de;
        int n = 0;
        while ((de = readdir(d)))
                if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
                        n++;
        closedir(d);
        assert_int_equal(n, 0);
}

static const spec good[] = {
        { AE_IFDIR, "./", 0755 },
        { AE_IFDIR, "etc", 0755 },
        { AE_IFREG, "etc/hostname", 0644, 0, 0, "box\n" },
        { AE_IFREG, "etc/shadow", 0640, 0, 42, "root:*:\n" },
        { AE_IFREG, "usr/bin/suid", 04755, 1000, 1000, "#!/bin/sh\n" },
        { AE_IFDIR, "home/user", 0700, 1000, 1000 },
        { AE_IFLNK, "bin", 0777, 0, 0, NULL, "usr/bin" },
        { AE_IFLNK, "etc/abs", 0777, 0, 0, NULL, "/etc/passwd" },
        { AE_IFREG, "etc/hard", 0644, 0, 0, NULL, NULL, "etc/hostname" },
        { AE_IFCHR, "dev/null", 0666, 0, 0, NULL, NULL, NULL, 1, 3 },
        { AE_IFIFO, "run/fifo", 0600 },
        { AE_IFREG, "var/x", 0644, 0, 0, "x", NULL, NULL, 0, 0, "user.test=val" },
        { AE_IFREG, "var/ov", 0644, 0, 0, "x", NULL, NULL, 0, 0, "trusted.overlay.redirect=/x" },
        { AE_IFREG, "opt/gone/.wh.file", 0644 },
        { AE_IFDIR, "opt/opq", 0755 },
        { AE_IFREG, "opt/opq/.wh..wh..opq", 0644 },
        { AE_IFREG, "opt/opq/kept", 0644, 0, 0, "k" },
};

static void check_good_layer(const char *chain)
{
        int fd = layer_dir(chain);
        assert_true(fd >= 0);
        struct stat st;
        char buf[64] = { 0 };
        assert_int_equal(fstatat(fd, "etc/hostname", &st, AT_SYMLINK_NOFOLLOW), 0);
        assert_true(S_ISREG(st.st_mode));
        assert_int_equal(st.st_mode & 07777, 0644);
        assert_int_equal(st.st_nlink, 2); /* + etc/hard */
        assert_int_equal(st.st_mtime, 1700000002);
        assert_int_equal(fstatat(fd, "etc/shadow", &st, 0), 0);
        assert_int_equal(st.st_mode & 07777, 0640);
        assert_int_equal(st.st_gid, 42);
        assert_int_equal(fstatat(fd, "usr/bin/suid", &st, 0), 0);
        assert_int_equal(st.st_mode & 07777, 04755);
        assert_int_equal(st.st_uid, 1000);
        assert_int_equal(fstatat(fd, "home/user", &st, 0), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(st.st_mode & 07777, 0700);
        assert_int_equal(st.st_mtime, 1700000005); /* deferred dir mtime */
        assert_int_equal(readlinkat(fd, "bin", buf, sizeof(buf)), 7);
        assert_string_equal(buf, "usr/bin");
        memset(buf, 0, sizeof(buf));
        assert_int_equal(readlinkat(fd, "etc/abs", buf, sizeof(buf)), 11);
        assert_int_equal(fstatat(fd, "dev/null", &st, AT_SYMLINK_NOFOLLOW), 0);
        assert_true(S_ISCHR(st.st_mode));
        assert_int_equal(major(st.st_rdev), 1);
        assert_int_equal(minor(st.st_rdev), 3);
        assert_int_equal(fstatat(fd, "run/fifo", &st, AT_SYMLINK_NOFOLLOW), 0);
        assert_true(S_ISFIFO(st.st_mode));
        assert_int_equal(fstatat(fd, "opt/gone/file", &st, AT_SYMLINK_NOFOLLOW), 0);
        assert_true(S_ISCHR(st.st_mode));
        assert_int_equal(st.st_rdev, makedev(0, 0));
        assert_int_equal(fstatat(fd, "opt/gone/.wh.file", &st, AT_SYMLINK_NOFOLLOW), -1);
        assert_int_equal(fstatat(fd, "opt/opq/.wh..wh..opq", &st, AT_SYMLINK_NOFOLLOW), -1);
        assert_int_equal(fstatat(fd, "opt/opq/kept", &st, AT_SYMLINK_NOFOLLOW), 0);
        int dfd = openat(fd, "opt/opq", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        memset(buf, 0, sizeof(buf));
        assert_int_equal(fgetxattr(dfd, "trusted.overlay.opaque", buf, sizeof(buf)), 1);
        assert_int_equal(buf[0], 'y');
        close(dfd);
        int xfd = openat(fd, "var/x", O_RDONLY | O_CLOEXEC);
        memset(buf, 0, sizeof(buf));
        assert_int_equal(fgetxattr(xfd, "user.test", buf, sizeof(buf)), 3);
        assert_string_equal(buf, "val");
        close(xfd);
        xfd = openat(fd, "var/ov", O_RDONLY | O_CLOEXEC);
        assert_int_equal(fgetxattr(xfd, "trusted.overlay.redirect", buf, sizeof(buf)), -1);
        close(xfd);
        close(fd);
}

static void test_good(void **state)
{
        if (!is_root)
                skip();
        char chain[IMAGE_DIGEST_BUFSIZE];
        cc_error *e = NULL;
        int r = unpack_specs(good, CC_ARRAY_SIZE(good), IMAGE_COMPRESSION_NONE, MT_TAR, NULL,
                             chain, &e);
        if (r < 0)
                fail_msg("%s", e->msg);
        assert_int_equal(r, 0);
        assert_int_equal(image_layer_has(store, chain), 1);
        check_good_layer(chain);
        /* metadata files */
        char p[256];
        snprintf(p, sizeof(p), "%s/layers/sha256/%s/diff_id", root, chain + 7);
        assert_int_equal(access(p, F_OK), 0);
        /* second time: already there */
        assert_int_equal(unpack_specs(good, CC_ARRAY_SIZE(good), IMAGE_COMPRESSION_NONE, MT_TAR,
                                      NULL, chain, &e), 1);
        assert_int_equal(image_layer_delete(store, chain, &e), 0);
        assert_int_equal(image_layer_has(store, chain), 0);
        assert_tmp_empty();
}

static void test_compressed(void **state)
{
        if (!is_root)
                skip();
        char chain[IMAGE_DIGEST_BUFSIZE];
        cc_error *e = NULL;
        int r = unpack_specs(good, CC_ARRAY_SIZE(good), IMAGE_COMPRESSION_GZIP, MT_GZ, NULL,
                             chain, &e);
        if (r < 0)
                fail_msg("gzip: %s", e->msg);
        check_good_layer(chain);
        assert_int_equal(image_layer_delete(store, chain, &e), 0);
        r = unpack_specs(good, CC_ARRAY_SIZE(good), IMAGE_COMPRESSION_ZSTD, MT_ZST, NULL, chain,
                         &e);
        if (r < 0)
                fail_msg("zstd: %s", e->msg);
        check_good_layer(chain);
        assert_int_equal(image_layer_delete(store, chain, &e), 0);
        /* mislabelled: gzip bytes under the uncompressed type still work (magic wins) */
        r = unpack_specs(good, CC_ARRAY_SIZE(good), IMAGE_COMPRESSION_GZIP, MT_TAR, NULL, chain,
                         &e);
        if (r < 0)
                fail_msg("mislabelled: %s", e->msg);
        assert_int_equal(image_layer_delete(store, chain, &e), 0);
        r = unpack_specs(good, CC_ARRAY_SIZE(good), IMAGE_COMPRESSION_GZIP, MT_DOCKER_GZ, NULL,
                         chain, &e);
        if (r < 0)
                fail_msg("docker gzip: %s", e->msg);
        assert_int_equal(image_layer_delete(store, chain, &e), 0);
        /* not a layer type */
        r = unpack_specs(good, 2, IMAGE_COMPRESSION_NONE, "application/x-tar", NULL, chain, &e);
        assert_int_equal(r, -EMEDIUMTYPE);
        cc_error_free(e);
        assert_tmp_empty();
}

static void expect_fail(const spec *s, size_t n, const char *needle)
{
        char chain[IMAGE_DIGEST_BUFSIZE];
        cc_error *e = NULL;
        int r = unpack_specs(s, n, IMAGE_COMPRESSION_NONE, MT_TAR, NULL, chain, &e);
        if (r >= 0)
                fail_msg("layer with '%s' unpacked", needle);
        if (!strstr(e->msg, needle))
                fail_msg("'%s' lacks '%s'", e->msg, needle);
        cc_error_free(e);
        assert_int_equal(image_layer_has(store, chain), 0);
        assert_tmp_empty();
        /* and nothing escaped */
        char p[256];
        snprintf(p, sizeof(p), "%s/layers/x", root);
        assert_int_equal(access(p, F_OK), -1);
        snprintf(p, sizeof(p), "%s/layers/sha256/%s", root, chain + 7);
        assert_int_equal(access(p, F_OK), -1);
}

static void test_escapes(void **state)
{
        if (!is_root)
                skip();
        const spec dotdot[] = { { AE_IFREG, "a", 0644, 0, 0, "a" },
                                { AE_IFREG, "../../../x", 0644, 0, 0, "evil" } };
        expect_fail(dotdot, 2, "'..' component");
        const spec dotdot2[] = { { AE_IFREG, "a/../../x", 0644, 0, 0, "evil" } };
        expect_fail(dotdot2, 1, "'..' component");
        const spec abs[] = { { AE_IFREG, "/tmp/evil-abs", 0644, 0, 0, "evil" } };
        expect_fail(abs, 1, "absolute path");
        assert_int_equal(access("/tmp/evil-abs", F_OK), -1);
        /* a -> /etc, then a/passwd */
        char target[128];
        snprintf(target, sizeof(target), "%s/victim", root);
        mkdir(target, 0755);
        const spec via_link[] = { { AE_IFLNK, "a", 0777, 0, 0, NULL, target },
                                  { AE_IFREG, "a/passwd", 0644, 0, 0, "evil" } };
        expect_fail(via_link, 2, "traverses a symlink");
        char victim[160];
        snprintf(victim, sizeof(victim), "%s/passwd", target);
        assert_int_equal(access(victim, F_OK), -1);
        /* relative symlink escape, deeper */
        const spec via_rel[] = { { AE_IFDIR, "d", 0755 },
                                 { AE_IFLNK, "d/up", 0777, 0, 0, NULL, "../../../../.." },
                                 { AE_IFREG, "d/up/tmp/evil-rel", 0644, 0, 0, "evil" } };
        expect_fail(via_rel, 3, "traverses a symlink");
        assert_int_equal(access("/tmp/evil-rel", F_OK), -1);
        /* dir replaced by a symlink, then written through */
        const spec swap[] = { { AE_IFDIR, "s", 0755 },
                              { AE_IFLNK, "s", 0777, 0, 0, NULL, "/tmp" },
                              { AE_IFREG, "s/evil-swap", 0644, 0, 0, "evil" } };
        expect_fail(swap, 3, "traverses a symlink");
        assert_int_equal(access("/tmp/evil-swap", F_OK), -1);
        /* hardlink out of the layer */
        const spec hl_out[] = { { AE_IFREG, "x", 0644, 0, 0, NULL, NULL, "../../etc/passwd" } };
        expect_fail(hl_out, 1, "'..' component");
        const spec hl_abs[] = { { AE_IFREG, "x", 0644, 0, 0, NULL, NULL, "/etc/passwd" } };
        expect_fail(hl_abs, 1, "absolute path");
        /* hardlink through a symlink */
        const spec hl_link[] = { { AE_IFLNK, "l", 0777, 0, 0, NULL, "/etc" },
                                 { AE_IFREG, "x", 0644, 0, 0, NULL, NULL, "l/passwd" } };
        expect_fail(hl_link, 2, "traverses a symlink");
        const spec hl_missing[] = { { AE_IFREG, "x", 0644, 0, 0, NULL, NULL, "nothere" } };
        expect_fail(hl_missing, 1, "not in the layer");
        const spec bad_wh[] = { { AE_IFREG, "d/.wh..", 0644 } };
        expect_fail(bad_wh, 1, "invalid whiteout");
}

static void test_diff_id_and_bomb(void **state)
{
        if (!is_root)
                skip();
        char chain[IMAGE_DIGEST_BUFSIZE];
        cc_error *e = NULL;
        const char *wrong = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        int r = unpack_specs(good, 3, IMAGE_COMPRESSION_GZIP, MT_GZ, wrong, chain, &e);
        assert_int_equal(r, -EBADMSG);
        assert_non_null(strstr(e->msg, "diff id mismatch: expected sha256:0000"));
        cc_error_free(e);
        e = NULL;
        assert_int_equal(image_layer_has(store, chain), 0);
        assert_tmp_empty();

        /* size bomb: a small gzip that inflates past the limit */
        size_t big = 4 << 20;
        char *data = malloc(big + 1);
        memset(data, 'A', big);
        data[big] = '\0';
        const spec bomb[] = { { AE_IFREG, "bomb", 0644, 0, 0, data } };
        char *buf = NULL;
        char diff_id[IMAGE_DIGEST_BUFSIZE], blob[IMAGE_DIGEST_BUFSIZE];
        size_t len = build(bomb, 1, IMAGE_COMPRESSION_GZIP, &buf, diff_id);
        free(data);
        assert_true(len < 64 * 1024);
        assert_int_equal(image_sha256_buf(buf, len, blob), 0);
        assert_int_equal(image_store_write_blob(store, blob, buf, len, NULL), 0);
        free(buf);
        image_unpack_opts opts = { .max_bytes = 1 << 20 };
        r = image_layer_unpack(store, blob, MT_GZ, diff_id, diff_id, &opts, &e);
        assert_int_equal(r, -EFBIG);
        assert_non_null(strstr(e->msg, "1048576"));
        cc_error_free(e);
        e = NULL;
        assert_int_equal(image_layer_has(store, diff_id), 0);
        assert_tmp_empty();
        /* same layer within the limit is fine */
        opts.max_bytes = 8 << 20;
        assert_int_equal(image_layer_unpack(store, blob, MT_GZ, diff_id, diff_id, &opts, &e), 0);
        /* entry count limit */
        image_unpack_opts few = { .max_entries = 2 };
        r = unpack_specs(good, 3, IMAGE_COMPRESSION_NONE, MT_TAR, NULL, chain, &e);
        assert_int_equal(r, 0);
        assert_int_equal(image_layer_delete(store, chain, NULL), 0);
        char tmp[IMAGE_DIGEST_BUFSIZE];
        len = build(good, 3, IMAGE_COMPRESSION_NONE, &buf, diff_id);
        assert_int_equal(image_sha256_buf(buf, len, tmp), 0);
        free(buf);
        r = image_layer_unpack(store, tmp, MT_TAR, diff_id, diff_id, &few, &e);
        assert_int_equal(r, -EFBIG);
        assert_non_null(strstr(e->msg, "more than 2 entries"));
        cc_error_free(e);
        assert_tmp_empty();
        /* a stale work dir is cleaned up */
        char p[128];
        snprintf(p, sizeof(p), "%s/layers/tmp/stale", root);
        mkdir(p, 0700);
        assert_int_equal(image_layer_cleanup_tmp(store, NULL), 0);
        assert_tmp_empty();
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_good),
                cmocka_unit_test(test_compressed),
                cmocka_unit_test(test_escapes),
                cmocka_unit_test(test_diff_id_and_bomb),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
