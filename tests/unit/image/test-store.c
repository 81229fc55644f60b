/* SPDX-License-Identifier: Apache-2.0 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "image/store.h"
#include "image/util.h"

/* sha256("hello world") */
#define HELLO "sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"

static char root[64];

static int setup(void **state)
{
        strcpy(root, "/tmp/image-store-XXXXXX");
        assert_non_null(mkdtemp(root));
        return 0;
}

static int teardown(void **state)
{
        image_rm_rf_at(AT_FDCWD, root);
        return 0;
}

static bool exists(const char *rel)
{
        char p[256];
        snprintf(p, sizeof(p), "%s/%s", root, rel);
        return access(p, F_OK) == 0;
}

static void test_ingest_ok(void **state)
{
        image_store *s = NULL;
        cc_error *e = NULL;
        assert_int_equal(image_store_open(root, &s, &e), 0);
        assert_int_equal(image_store_has(s, HELLO), 0);
        image_ingest *w = NULL;
        assert_int_equal(image_store_ingest_begin(s, HELLO, 11, &w, &e), 0);
        assert_int_equal(image_ingest_offset(w), 0);
        assert_int_equal(image_ingest_write(w, "hello ", 6, &e), 0);
        assert_int_equal(image_ingest_write(w, "world", 5, &e), 0);
        assert_int_equal(image_ingest_commit(w, &e), 0);
        assert_int_equal(image_store_has(s, HELLO), 1);
        assert_true(exists("blobs/sha256/b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"));
        assert_false(exists("ingest/sha256-b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9.partial"));
        /* second ingest: already there */
        assert_int_equal(image_store_ingest_begin(s, HELLO, 11, &w, &e), 1);
        char *buf = NULL;
        size_t len = 0;
        assert_int_equal(image_store_read_blob(s, HELLO, 100, &buf, &len, &e), 0);
        assert_int_equal(len, 11);
        assert_string_equal(buf, "hello world");
        free(buf);
        assert_int_equal(image_store_read_blob(s, HELLO, 5, &buf, &len, &e), -E2BIG);
        cc_error_free(e);
        e = NULL;
        int fd = -1;
        int64_t size = 0;
        assert_int_equal(image_store_open_blob(s, HELLO, &fd, &size, &e), 0);
        assert_int_equal(size, 11);
        close(fd);
        assert_int_equal(image_store_verify(s, HELLO, &e), 0);
        assert_int_equal(image_store_delete(s, HELLO, &e), 0);
        assert_int_equal(image_store_has(s, HELLO), 0);
        assert_int_equal(image_store_delete(s, HELLO, &e), 0);
        assert_int_equal(image_store_open_blob(s, HELLO, &fd, &size, &e), -ENOENT);
        cc_error_free(e);
        e = NULL;
        /* write_blob convenience + bad digests */
        assert_int_equal(image_store_write_blob(s, HELLO, "hello world", 11, &e), 0);
        assert_int_equal(image_store_write_blob(s, HELLO, "hello world", 11, &e), 0);
        assert_int_equal(image_store_has(s, "sha256:nothex"), -EINVAL);
        assert_int_equal(image_store_ingest_begin(s, "md5:abc", 1, &w, &e), -EINVAL);
        cc_error_free(e);
        e = NULL;
        assert_int_equal(image_store_ingest_begin(s, HELLO, -1, &w, &e), -EINVAL);
        cc_error_free(e);
        image_store_free(s);
}

static void test_ingest_mismatch(void **state)
{
        image_store *s = NULL;
        cc_error *e = NULL;
        assert_int_equal(image_store_open(root, &s, &e), 0);
        image_store_delete(s, HELLO, NULL);
        image_ingest *w = NULL;
        /* wrong content of the right size */
        assert_int_equal(image_store_ingest_begin(s, HELLO, 11, &w, &e), 0);
        assert_int_equal(image_ingest_write(w, "HELLO WORLD", 11, &e), 0);
        assert_int_equal(image_ingest_commit(w, &e), -EBADMSG);
        assert_non_null(strstr(e->msg, "expected " HELLO ", got sha256:"));
        cc_error_free(e);
        e = NULL;
        assert_int_equal(image_store_has(s, HELLO), 0);
        assert_false(exists("ingest/sha256-b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9.partial"));
        /* too many bytes: fails at once */
        assert_int_equal(image_store_ingest_begin(s, HELLO, 11, &w, &e), 0);
        assert_int_equal(image_ingest_write(w, "hello world!", 12, &e), -EFBIG);
        assert_non_null(strstr(e->msg, "more data than the expected 11 bytes"));
        cc_error_free(e);
        e = NULL;
        image_ingest_abort(w, false);
        assert_false(exists("ingest/sha256-b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9.partial"));
        /* corrupt blob on disk is caught by verify */
        assert_int_equal(image_store_write_blob(s, HELLO, "hello world", 11, &e), 0);
        char p[256];
        snprintf(p, sizeof(p), "%s/blobs/sha256/%s", root, HELLO + 7);
        chmod(p, 0644);
        FILE *f = fopen(p, "w");
        fputs("hello worle", f);
        fclose(f);
        assert_int_equal(image_store_verify(s, HELLO, &e), -EBADMSG);
        cc_error_free(e);
        assert_int_equal(image_store_has(s, HELLO), 0);
        image_store_free(s);
}

static void test_resume(void **state)
{
        image_store *s = NULL;
        cc_error *e = NULL;
        assert_int_equal(image_store_open(root, &s, &e), 0);
        image_store_delete(s, HELLO, NULL);
        image_ingest *w = NULL;
        assert_int_equal(image_store_ingest_begin(s, HELLO, 11, &w, &e), 0);
        assert_int_equal(image_ingest_write(w, "hello", 5, &e), 0);
        image_ingest_abort(w, true); /* network dropped */
        image_store_free(s);

        /* a fresh store (daemon restart) resumes at byte 5 */
        assert_int_equal(image_store_open(root, &s, &e), 0);
        assert_int_equal(image_store_ingest_begin(s, HELLO, 11, &w, &e), 0);
        assert_int_equal(image_ingest_offset(w), 5);
        assert_int_equal(image_ingest_write(w, " world", 6, &e), 0);
        assert_int_equal(image_ingest_commit(w, &e), 0);
        assert_int_equal(image_store_verify(s, HELLO, &e), 0);
        image_store_delete(s, HELLO, NULL);

        /* server ignored Range: reset and take the whole body */
        assert_int_equal(image_store_ingest_begin(s, HELLO, 11, &w, &e), 0);
        assert_int_equal(image_ingest_write(w, "hel", 3, &e), 0);
        assert_int_equal(image_ingest_commit(w, &e), -EPIPE); /* short: prefix kept */
        assert_non_null(strstr(e->msg, "got 3 of 11"));
        cc_error_free(e);
        e = NULL;
        assert_int_equal(image_store_ingest_begin(s, HELLO, 11, &w, &e), 0);
        assert_int_equal(image_ingest_offset(w), 3);
        assert_int_equal(image_ingest_reset(w, &e), 0);
        assert_int_equal(image_ingest_offset(w), 0);
        assert_int_equal(image_ingest_write(w, "hello world", 11, &e), 0);
        assert_int_equal(image_ingest_commit(w, &e), 0);
        image_store_free(s);
}

struct racer {
        image_store *s;
        int result;
        bool wrote;
        bool fail;
        pthread_barrier_t *started;
};

static void *race_thread(void *arg)
{
        struct racer *r = arg;
        image_ingest *w = NULL;
        cc_error *e = NULL;
        r->result = image_store_ingest_begin(r->s, HELLO, 11, &w, &e);
        if (r->result == 0) {
                r->wrote = true;
                usleep(100 * 1000);
                if (r->fail) {
                        image_ingest_abort(w, false);
                        return NULL;
                }
                image_ingest_write(w, "hello world", 11, NULL);
                r->result = image_ingest_commit(w, NULL);
        }
        cc_error_free(e);
        return NULL;
}

static void race(bool first_fails)
{
        image_store *s = NULL;
        assert_int_equal(image_store_open(root, &s, NULL), 0);
        image_store_delete(s, HELLO, NULL);
        struct racer r[3] = { { s, -1, false, first_fails, NULL },
                              { s, -1, false, false, NULL },
                              { s, -1, false, false, NULL } };
        pthread_t t[3];
        /* the first becomes the leader, then the others start and must wait */
        assert_int_equal(pthread_create(&t[0], NULL, race_thread, &r[0]), 0);
        usleep(20 * 1000);
        assert_int_equal(pthread_create(&t[1], NULL, race_thread, &r[1]), 0);
        assert_int_equal(pthread_create(&t[2], NULL, race_thread, &r[2]), 0);
        for (int i = 0; i < 3; i++)
                pthread_join(t[i], NULL);
        int writers = r[0].wrote + r[1].wrote + r[2].wrote;
        if (!first_fails) {
                assert_int_equal(writers, 1);
                assert_true(r[0].wrote);
                assert_int_equal(r[0].result, 0);
                assert_int_equal(r[1].result, 1);
                assert_int_equal(r[2].result, 1);
        } else {
                /* one of the waiters took over, the other saw its result */
                assert_int_equal(writers, 2);
                assert_int_equal(r[1].result + r[2].result, 1);
        }
        assert_int_equal(image_store_has(s, HELLO), 1);
        image_store_free(s);
}

static void test_concurrent(void **state)
{
        race(false);
        race(true);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_ingest_ok),
                cmocka_unit_test(test_ingest_mismatch),
                cmocka_unit_test(test_resume),
                cmocka_unit_test(test_concurrent),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
