/* SPDX-License-Identifier: Apache-2.0 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "runtime/logs.h"

typedef struct rec {
        char stream[8];
        char tag;
        char *text;
} rec;

static char dir[64];
static char path[128];

/* Parses the log into records, checking each timestamp's shape. */
static size_t parse(const char *p, rec *out, size_t max)
{
        FILE *f = fopen(p, "r");
        assert_non_null(f);
        size_t n = 0;
        char *line = NULL;
        size_t cap = 0;
        ssize_t len;
        while ((len = getline(&line, &cap, f)) > 0) {
                assert_true(n < max);
                assert_int_equal(line[len - 1], '\n');
                line[len - 1] = 0;
                /* 2026-11-22T07:56:25.123456789Z */
                assert_true(strlen(line) > 31);
                assert_int_equal(line[10], 'T');
                assert_int_equal(line[19], '.');
                assert_int_equal(line[29], 'Z');
                assert_int_equal(line[30], ' ');
                char *s = line + 31;
                char *sp = strchr(s, ' ');
                assert_non_null(sp);
                *sp = 0;
                snprintf(out[n].stream, sizeof(out[n].stream), "%s", s);
                out[n].tag = sp[1];
                assert_int_equal(sp[2], ' ');
                out[n].text = strdup(sp + 3);
                n++;
        }
        free(line);
        fclose(f);
        return n;
}

static void free_recs(rec *r, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(r[i].text);
}

static int setup(void **state)
{
        strcpy(dir, "/tmp/cc-logs-XXXXXX");
        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/0.log", dir);
        return 0;
}

static int teardown(void **state)
{
        char cmd[160];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        assert_int_equal(system(cmd), 0);
        return 0;
}

static void test_lines_and_streams(void **state)
{
        runtime_log *l = NULL;
        cc_error *err = NULL;
        assert_int_equal(runtime_log_open(path, &l, &err), 0);
        assert_int_equal(runtime_log_write(l, CRI_LOG_STDOUT, "hel", 3, &err), 0);
        assert_int_equal(runtime_log_write(l, CRI_LOG_STDERR, "oops\n", 5, &err), 0);
        assert_int_equal(runtime_log_write(l, CRI_LOG_STDOUT, "lo\n\nworld\n", 10, &err), 0);
        runtime_log_close(l);
        rec r[16];
        size_t n = parse(path, r, 16);
        assert_int_equal(n, 4);
        assert_string_equal(r[0].stream, "stderr");
        assert_string_equal(r[0].text, "oops");
        assert_string_equal(r[1].stream, "stdout");
        assert_int_equal(r[1].tag, 'F');
        assert_string_equal(r[1].text, "hello");
        assert_string_equal(r[2].text, "");
        assert_string_equal(r[3].text, "world");
        free_recs(r, n);
}

static void test_long_line_is_split_into_partials(void **state)
{
        runtime_log *l = NULL;
        cc_error *err = NULL;
        assert_int_equal(runtime_log_open(path, &l, &err), 0);
        size_t total = 40000;
        char *big = malloc(total + 1);
        for (size_t i = 0; i < total; i++)
                big[i] = 'a' + (char)(i % 26);
        big[total] = '\n';
        /* Fed in odd-sized pieces, as a pipe would deliver it. */
        for (size_t off = 0; off <= total;) {
                size_t chunk = off + 777 > total + 1 ? total + 1 - off : 777;
                assert_int_equal(runtime_log_write(l, CRI_LOG_STDOUT, big + off, chunk, &err), 0);
                off += chunk;
        }
        assert_int_equal(runtime_log_write(l, CRI_LOG_STDOUT, "tail", 4, &err), 0);
        runtime_log_close(l); /* the unterminated "tail" is flushed as P */
        rec r[16];
        size_t n = parse(path, r, 16);
        assert_int_equal(n, 4);
        assert_int_equal(r[0].tag, 'P');
        assert_int_equal(strlen(r[0].text), CRI_LOG_MAX_LINE);
        assert_int_equal(r[1].tag, 'P');
        assert_int_equal(strlen(r[1].text), CRI_LOG_MAX_LINE);
        assert_int_equal(r[2].tag, 'F');
        assert_int_equal(strlen(r[2].text), total - 2 * CRI_LOG_MAX_LINE);
        char *joined = calloc(1, total + 1);
        strcat(joined, r[0].text);
        strcat(joined, r[1].text);
        strcat(joined, r[2].text);
        assert_memory_equal(joined, big, total);
        assert_int_equal(r[3].tag, 'P');
        assert_string_equal(r[3].text, "tail");
        free(joined);
        free(big);
        free_recs(r, n);
}

static void test_reopen_after_rotation(void **state)
{
        runtime_log *l = NULL;
        cc_error *err = NULL;
        assert_int_equal(runtime_log_open(path, &l, &err), 0);
        assert_int_equal(runtime_log_write(l, CRI_LOG_STDOUT, "one\ntw", 6, &err), 0);
        char rotated[160];
        snprintf(rotated, sizeof(rotated), "%s.1", path);
        assert_int_equal(rename(path, rotated), 0);
        assert_int_equal(runtime_log_reopen(l, &err), 0);
        assert_int_equal(runtime_log_write(l, CRI_LOG_STDOUT, "o\n", 2, &err), 0);
        runtime_log_close(l);
        rec r[4];
        assert_int_equal(parse(rotated, r, 4), 1);
        assert_string_equal(r[0].text, "one");
        free_recs(r, 1);
        assert_int_equal(parse(path, r, 4), 1);
        assert_string_equal(r[0].text, "two"); /* the pending half moved to the new file */
        free_recs(r, 1);
}

static void test_open_failure(void **state)
{
        runtime_log *l = NULL;
        cc_error *err = NULL;
        assert_true(runtime_log_open("/nonexistent-dir/x.log", &l, &err) < 0);
        assert_non_null(err);
        assert_non_null(strstr(err->msg, "/nonexistent-dir/x.log"));
        cc_error_free(err);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_lines_and_streams, setup, teardown),
                cmocka_unit_test_setup_teardown(test_long_line_is_split_into_partials, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reopen_after_rotation, setup, teardown),
                cmocka_unit_test_setup_teardown(test_open_failure, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
