/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for common/log.c: levels and their names, line format (plain
 * and journald), one event per line, truncation, errno preservation and
 * whole lines under concurrent writers. stderr is redirected to a file. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/log.h"

static char logpath[64];
static const char *self_path = "/proc/self/exe";
static int saved_stderr = -1;

/* Points fd 2 at a fresh, empty file. */
static void capture_start(void)
{
        snprintf(logpath, sizeof(logpath), "/tmp/test-log-XXXXXX");
        int fd = mkostemp(logpath, O_APPEND | O_CLOEXEC);
        assert_true(fd >= 0);
        if (saved_stderr < 0)
                saved_stderr = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 10);
        assert_true(dup2(fd, STDERR_FILENO) == STDERR_FILENO);
        close(fd);
}

/* Restores stderr; returns what was logged (caller frees). */
static char *capture_end(void)
{
        assert_true(dup2(saved_stderr, STDERR_FILENO) == STDERR_FILENO);
        FILE *f = fopen(logpath, "r");
        assert_non_null(f);
        char *buf = NULL;
        size_t cap = 0;
        ssize_t n = getdelim(&buf, &cap, 0, f); /* whole file: no NUL inside */
        fclose(f);
        unlink(logpath);
        if (n < 0) {
                free(buf);
                return strdup("");
        }
        return buf;
}

static int count_char(const char *s, char c)
{
        int n = 0;
        for (; *s; s++)
                n += *s == c;
        return n;
}

static void assert_matches(const char *s, const char *re)
{
        regex_t rx;
        assert_int_equal(regcomp(&rx, re, REG_EXTENDED | REG_NOSUB), 0);
        int r = regexec(&rx, s, 0, NULL, 0);
        regfree(&rx);
        if (r != 0)
                fail_msg("'%s' does not match /%s/", s, re);
}

static void test_level_strings(void **state)
{
        assert_int_equal(cc_log_level_from_string("error"), CC_LOG_ERROR);
        assert_int_equal(cc_log_level_from_string("warn"), CC_LOG_WARN);
        assert_int_equal(cc_log_level_from_string("warning"), CC_LOG_WARN);
        assert_int_equal(cc_log_level_from_string("info"), CC_LOG_INFO);
        assert_int_equal(cc_log_level_from_string("debug"), CC_LOG_DEBUG);
        assert_int_equal(cc_log_level_from_string(""), -1);
        assert_int_equal(cc_log_level_from_string("trace"), -1);
        assert_int_equal(cc_log_level_from_string("info "), -1);
        assert_int_equal(cc_log_level_from_string(NULL), -1);
        assert_string_equal(cc_log_level_to_string(CC_LOG_ERROR), "error");
        assert_string_equal(cc_log_level_to_string(CC_LOG_WARN), "warn");
        assert_string_equal(cc_log_level_to_string(CC_LOG_INFO), "info");
        assert_string_equal(cc_log_level_to_string(CC_LOG_DEBUG), "debug");
        /* Values between and beyond the defined ones. */
        assert_string_equal(cc_log_level_to_string((cc_log_level)0), "unknown");
        assert_string_equal(cc_log_level_to_string((cc_log_level)5), "unknown");
        assert_string_equal(cc_log_level_to_string((cc_log_level)8), "unknown");
        assert_string_equal(cc_log_level_to_string((cc_log_level)-1), "unknown");
        assert_string_equal(cc_log_level_to_string((cc_log_level)100000), "unknown");
}

static int side_effects;
static int bump(void) { return ++side_effects; }

static void test_levels_filter(void **state)
{
        cc_log_set_level(CC_LOG_WARN);
        assert_int_equal(cc_log_get_level(), CC_LOG_WARN);
        assert_true(cc_log_enabled(CC_LOG_ERROR));
        assert_true(cc_log_enabled(CC_LOG_WARN));
        assert_false(cc_log_enabled(CC_LOG_INFO));
        assert_false(cc_log_enabled(CC_LOG_DEBUG));

        capture_start();
        side_effects = 0;
        log_info("hidden %d", bump());
        log_debug("hidden %d", bump());
        log_warn("shown");
        log_error("shown too");
        char *s = capture_end();
        assert_int_equal(side_effects, 0); /* disabled: arguments not evaluated */
        assert_int_equal(count_char(s, '\n'), 2);
        assert_null(strstr(s, "hidden"));
        assert_non_null(strstr(s, "level=warn shown\n"));
        assert_non_null(strstr(s, "level=error shown too\n"));
        free(s);
        cc_log_set_level(CC_LOG_INFO);
}

static void test_line_format(void **state)
{
        cc_log_set_level(CC_LOG_INFO);
        cc_log_set_component("component=test");
        capture_start();
        log_info("rpc=%s pod=%s", "Version", "p1");
        char *s = capture_end();
        assert_matches(s, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{6}Z "
                          "level=info component=test rpc=Version pod=p1\n$");
        free(s);

        /* Without a component; debug adds the source location. */
        cc_log_set_component(NULL);
        cc_log_set_level(CC_LOG_DEBUG);
        capture_start();
        log_debug("x=1");
        s = capture_end();
        assert_matches(s, "Z level=debug x=1 src=test-log\\.c:[0-9]+\n$");
        free(s);
        cc_log_set_level(CC_LOG_INFO);
}

static void test_one_line_per_event(void **state)
{
        capture_start();
        log_error("a\nlevel=info forged=1\rb");
        char *s = capture_end();
        assert_int_equal(count_char(s, '\n'), 1);
        assert_int_equal(count_char(s, '\r'), 0);
        assert_non_null(strstr(s, "level=error a level=info forged=1 b\n"));
        free(s);
}

static void test_long_message_truncated(void **state)
{
        size_t n = 20000;
        char *big = malloc(n + 1);
        assert_non_null(big);
        memset(big, 'm', n);
        big[n] = 0;
        cc_log_set_component("component=a-rather-long-component-name-for-the-test-0123456789");
        capture_start();
        log_info("%s", big);
        log_info("after");
        char *s = capture_end();
        cc_log_set_component(NULL);
        /* Two lines, the first bounded and still terminated. */
        assert_int_equal(count_char(s, '\n'), 2);
        char *nl = strchr(s, '\n');
        assert_true(nl - s < 4500);
        assert_true(nl - s > 4000);
        assert_non_null(strstr(nl + 1, "-0123456789 after\n"));
        free(s);
        free(big);
}

static void test_errno_preserved(void **state)
{
        capture_start();
        errno = EADDRINUSE;
        log_info("keeps errno %s", "x");
        int e = errno;
        char *s = capture_end();
        free(s);
        assert_int_equal(e, EADDRINUSE);
}

#define N_THREADS 4
#define N_LINES 300

static void *writer(void *arg)
{
        long id = (long)arg;
        char pad[600];
        memset(pad, 'a' + (char)id, sizeof(pad) - 1);
        pad[sizeof(pad) - 1] = 0;
        for (int i = 0; i < N_LINES; i++)
                log_info("t=%ld i=%d pad=%s end", id, i, pad);
        return NULL;
}

static void test_concurrent_lines_intact(void **state)
{
        capture_start();
        pthread_t t[N_THREADS];
        for (long i = 0; i < N_THREADS; i++)
                assert_int_equal(pthread_create(&t[i], NULL, writer, (void *)i), 0);
        for (int i = 0; i < N_THREADS; i++)
                pthread_join(t[i], NULL);
        char *s = capture_end();
        int lines = 0;
        char *save = NULL;
        for (char *line = strtok_r(s, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                lines++;
                long id;
                int i;
                char *pad = strstr(line, "pad=");
                if (!pad || sscanf(strstr(line, "t="), "t=%ld i=%d", &id, &i) != 2)
                        fail_msg("mangled line '%.100s'", line);
                for (int k = 0; k < 599; k++)
                        if (pad[4 + k] != 'a' + id)
                                fail_msg("interleaved line '%.100s'", line);
                assert_string_equal(pad + 4 + 599, " end");
        }
        assert_int_equal(lines, N_THREADS * N_LINES);
        free(s);
}

/* Runs this binary again as "--journal-child" (the journal detection is
 * cached on first use, so it needs a fresh process) with stderr on the
 * capture file and JOURNAL_STREAM naming that file, or another one. */
static char *run_journal_child(bool matching)
{
        capture_start();
        struct stat st;
        assert_int_equal(fstat(STDERR_FILENO, &st), 0);
        char js[64];
        snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev,
                 (unsigned long long)st.st_ino + (matching ? 0 : 1));
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                setenv("JOURNAL_STREAM", js, 1);
                execl(self_path, "test-log", "--journal-child", (char *)NULL);
                _exit(127);
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        char *s = capture_end();
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        return s;
}

static void test_journal_format(void **state)
{
        char *s = run_journal_child(true);
        /* Priority prefix, no timestamp (the journal adds its own). */
        assert_string_equal(s, "<6>level=info hello from child\n<3>level=error bad\n");
        free(s);
        s = run_journal_child(false);
        assert_matches(s, "^[0-9-]{10}T[0-9:.]{15}Z level=info hello from child\n[0-9-]{10}T");
        free(s);
}

int main(int argc, char **argv)
{
        if (argc > 1 && strcmp(argv[1], "--journal-child") == 0) {
                log_info("hello from child");
                log_error("bad");
                return 0;
        }
        if (argc > 0 && strchr(argv[0], '/'))
                self_path = argv[0]; /* also right under valgrind */
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_level_strings),
                cmocka_unit_test(test_levels_filter),
                cmocka_unit_test(test_line_format),
                cmocka_unit_test(test_one_line_per_event),
                cmocka_unit_test(test_long_message_truncated),
                cmocka_unit_test(test_errno_preserved),
                cmocka_unit_test(test_concurrent_lines_intact),
                cmocka_unit_test(test_journal_format),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
