/* SPDX-License-Identifier: Apache-2.0 */
/* cc_user_resolve: users and groups from a rootfs's /etc/passwd and
 * /etc/group, as the agent and cocoond look them up for a container. The
 * files come from an untrusted image: symlinks stay inside the rootfs, and a
 * FIFO or device in their place counts as missing instead of blocking. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/fs.h"
#include "common/user.h"

static char root[64];

static void put(const char *rel, const char *text)
{
        char p[256];
        snprintf(p, sizeof(p), "%s/%s", root, rel);
        FILE *f = fopen(p, "w");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
}

static int setup(void **state)
{
        (void)state;
        snprintf(root, sizeof(root), "/tmp/test-user-XXXXXX");
        assert_non_null(mkdtemp(root));
        char p[256];
        snprintf(p, sizeof(p), "%s/etc", root);
        assert_int_equal(mkdir(p, 0755), 0);
        put("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"
                          "# a comment line\n"
                          "broken line without fields\n"
                          "app:x:1000:1001::/home/app:/bin/sh\n");
        put("etc/group", "root:x:0:\napp:x:1001:\nextra:x:2000:root,app\nother:x:2001:root\nwheel:x:10:app,x\n");
        return 0;
}

static int teardown(void **state)
{
        (void)state;
        assert_int_equal(cc_rm_rf(root, NULL), 0);
        return 0;
}

static void resolve(const char *name, uid_t hint, int want_r, uid_t want_uid, gid_t want_gid, const gid_t *want_groups,
                    size_t n_want)
{
        uid_t uid = 99;
        gid_t gid = 99, groups[8];
        size_t n = 0;
        cc_error *err = NULL;
        int r = cc_user_resolve(root, name, hint, &uid, &gid, groups, 8, &n, &err);
        assert_int_equal(r, want_r);
        if (r < 0) {
                assert_non_null(err);
                cc_error_free(err);
                return;
        }
        assert_int_equal(uid, want_uid);
        assert_int_equal(gid, want_gid);
        assert_int_equal(n, n_want);
        for (size_t i = 0; i < n_want; i++)
                assert_int_equal(groups[i], want_groups[i]);
}

static void test_names_and_numbers(void **state)
{
        (void)state;
        const gid_t app_groups[] = { 2000, 10 }, root_groups[] = { 2000, 2001 };
        resolve("app", 0, 0, 1000, 1001, app_groups, 2);
        resolve("1000", 0, 0, 1000, 1001, app_groups, 2);  /* a number with a passwd entry */
        resolve("root", 0, 0, 0, 0, root_groups, 2);
        resolve("4242", 0, 0, 4242, 0, NULL, 0);           /* no entry: gid 0, no groups */
        resolve("app:extra", 0, 0, 1000, 2000, (const gid_t[]){ 10 }, 1); /* the group replaces the primary */
        resolve("app:3000", 0, 0, 1000, 3000, (const gid_t[]){ 2000, 10 }, 2);
        resolve("nosuchuser", 0, -EINVAL, 0, 0, NULL, 0);
        resolve("app:nosuchgroup", 0, -EINVAL, 0, 0, NULL, 0);
        resolve("app:", 0, -EINVAL, 0, 0, NULL, 0);
}

static void test_groups_bounded(void **state)
{
        (void)state;
        uid_t uid;
        gid_t gid, groups[1];
        size_t n = 0;
        assert_int_equal(cc_user_resolve(root, "app", 0, &uid, &gid, groups, 1, &n, NULL), 0);
        assert_int_equal(n, 1);
        assert_int_equal(groups[0], 2000);
}

/* An absolute symlink resolves inside the rootfs, never to the host's file. */
static void test_symlink_stays_inside(void **state)
{
        (void)state;
        char p[256], t[256];
        snprintf(p, sizeof(p), "%s/etc/passwd", root);
        assert_int_equal(unlink(p), 0);
        put("etc/mine", "svc:x:777:778::/:/bin/sh\n");
        assert_int_equal(symlink("/etc/mine", p), 0);
        resolve("svc", 0, 0, 777, 778, NULL, 0);
        assert_int_equal(unlink(p), 0);
        snprintf(t, sizeof(t), "../../../../../../etc/passwd");
        assert_int_equal(symlink(t, p), 0); /* the host's would know root; inside it is missing */
        resolve("root", 0, -EINVAL, 0, 0, NULL, 0);
}

/* A FIFO must not hang the lookup (nothing would ever write it). */
static void test_fifo_is_missing(void **state)
{
        (void)state;
        char p[256];
        snprintf(p, sizeof(p), "%s/etc/passwd", root);
        assert_int_equal(unlink(p), 0);
        assert_int_equal(mkfifo(p, 0644), 0);
        resolve("app", 0, -EINVAL, 0, 0, NULL, 0);
        resolve("1000", 0, 0, 1000, 0, NULL, 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_names_and_numbers, setup, teardown),
                cmocka_unit_test_setup_teardown(test_groups_bounded, setup, teardown),
                cmocka_unit_test_setup_teardown(test_symlink_stays_inside, setup, teardown),
                cmocka_unit_test_setup_teardown(test_fifo_is_missing, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
