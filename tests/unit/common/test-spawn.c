/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for common/spawn.c: cc_spawn_run (capture, stdin, status,
 * timeouts that kill the whole process group, output cap), cc_spawn options,
 * and processes identified by pid + start time (alive, pidfd). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/spawn.h"

static int64_t now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int count_fds(void)
{
        DIR *d = opendir("/proc/self/fd");
        assert_non_null(d);
        int n = 0;
        struct dirent *de;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        n++;
        closedir(d);
        return n;
}

/* valgrind emulates posix_spawn's CLONE_VFORK as a plain fork (exec
 * failures then look like a child exiting 127) and does not know
 * pidfd_open; checks that depend on those are skipped under it. */
static bool under_valgrind(void)
{
        const char *p = getenv("LD_PRELOAD");
        return p && strstr(p, "vgpreload");
}

/* Runs `sh -c script` through cc_spawn_run. */
static int run_sh(const char *script, const char *input, size_t input_len, size_t max_output,
                  int timeout_ms, char **out, char **errout, int *status, cc_error **err)
{
        char *const argv[] = { "sh", "-c", (char *)script, NULL };
        return cc_spawn_run("/bin/sh", argv, NULL, input, input_len, max_output, timeout_ms, out,
                            errout, status, err);
}

static void test_run_capture_and_status(void **state)
{
        int fds = count_fds();
        char *out = NULL, *errout = NULL;
        int status = -1;
        cc_error *err = NULL;
        assert_int_equal(run_sh("echo out; echo err >&2; echo more; exit 3", NULL, 0, 4096, 5000,
                                &out, &errout, &status, &err),
                         0);
        assert_null(err);
        assert_string_equal(out, "out\nmore\n");
        assert_string_equal(errout, "err\n");
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 3);
        free(out);
        free(errout);

        /* No output at all: empty strings, not NULL. */
        assert_int_equal(run_sh("exit 0", NULL, 0, 4096, 0, &out, &errout, &status, &err), 0);
        assert_string_equal(out, "");
        assert_string_equal(errout, "");
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        free(out);
        free(errout);

        /* Killed by a signal. */
        assert_int_equal(run_sh("kill -TERM $$", NULL, 0, 4096, 5000, NULL, NULL, &status, &err), 0);
        assert_true(WIFSIGNALED(status));
        assert_int_equal(WTERMSIG(status), SIGTERM);
        assert_int_equal(count_fds(), fds);
}

static void test_run_stdin(void **state)
{
        char *out = NULL;
        int status = -1;
        cc_error *err = NULL;
        char *const cat[] = { "cat", NULL };
        assert_int_equal(cc_spawn_run("/bin/cat", cat, NULL, "hello\0world", 11, 4096, 5000, &out,
                                      NULL, &status, &err),
                         0);
        assert_memory_equal(out, "hello\0world", 11);
        free(out);

        /* More than a pipe buffer each way at once: no deadlock. */
        size_t n = 1 << 20;
        char *big = malloc(n);
        assert_non_null(big);
        for (size_t i = 0; i < n; i++)
                big[i] = 'a' + (char)(i % 26);
        assert_int_equal(cc_spawn_run("/bin/cat", cat, NULL, big, n, n, 20000, &out, NULL, &status,
                                      &err),
                         0);
        assert_null(err);
        assert_memory_equal(out, big, n);
        assert_int_equal(out[n], 0);
        free(out);

        /* A child that never reads its stdin: no hang, no SIGPIPE for us. */
        assert_int_equal(run_sh("exit 0", big, n, 4096, 20000, NULL, NULL, &status, &err), 0);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        free(big);

        /* No input: the child sees EOF at once. */
        assert_int_equal(cc_spawn_run("/bin/cat", cat, NULL, NULL, 0, 4096, 5000, &out, NULL,
                                      &status, &err),
                         0);
        assert_string_equal(out, "");
        free(out);
}

static void test_run_env(void **state)
{
        char *const envp[] = { "COCOON_T=v1", "PATH=/usr/bin:/bin", NULL };
        char *const argv[] = { "sh", "-c", "echo \"$COCOON_T:${HOME-unset}\"", NULL };
        char *out = NULL;
        assert_int_equal(cc_spawn_run("/bin/sh", argv, envp, NULL, 0, 4096, 5000, &out, NULL, NULL,
                                      NULL),
                         0);
        assert_string_equal(out, "v1:unset\n");
        free(out);
}

static void test_run_output_cap(void **state)
{
        char *out = NULL, *errout = NULL;
        int status = -1;
        int64_t t0 = now_ms();
        /* Far more than the cap on both streams: capped, and the child is
         * drained to completion instead of blocking on a full pipe. */
        assert_int_equal(run_sh("yes | head -c 1000000; yes e | head -c 1000000 >&2; exit 0", NULL, 0,
                                1000, 20000, &out, &errout, &status, NULL),
                         0);
        assert_true(now_ms() - t0 < 15000);
        assert_int_equal(strlen(out), 1000);
        assert_int_equal(strlen(errout), 1000);
        assert_int_equal(strncmp(out, "y\ny\n", 4), 0);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        free(out);
        free(errout);
}

/* Whether any live (non-zombie) process is in process group pgid. */
static bool group_has_live_process(pid_t pgid)
{
        DIR *d = opendir("/proc");
        assert_non_null(d);
        bool found = false;
        struct dirent *de;
        while (!found && (de = readdir(d))) {
                if (de->d_name[0] < '0' || de->d_name[0] > '9')
                        continue;
                char path[300], buf[1024];
                snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
                int fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        continue;
                ssize_t n = read(fd, buf, sizeof(buf) - 1);
                close(fd);
                if (n <= 0)
                        continue;
                buf[n] = 0;
                char *p = strrchr(buf, ')');
                char st;
                int ppid, pgrp;
                if (p && sscanf(p + 1, " %c %d %d", &st, &ppid, &pgrp) == 3 && pgrp == pgid &&
                    st != 'Z' && st != 'X')
                        found = true;
        }
        closedir(d);
        return found;
}

static void test_run_timeout_kills_group(void **state)
{
        char pidfile[] = "/tmp/test-spawn-pid-XXXXXX";
        int pfd = mkstemp(pidfile);
        assert_true(pfd >= 0);
        close(pfd);
        char script[256];
        snprintf(script, sizeof(script), "echo $$ > %s; sleep 100 & sleep 100", pidfile);
        int fds = count_fds();
        char *out = (char *)0x1;
        cc_error *err = NULL;
        int64_t t0 = now_ms();
        int r = run_sh(script, NULL, 0, 4096, 300, &out, NULL, NULL, &err);
        int64_t dt = now_ms() - t0;
        assert_int_equal(r, -ETIMEDOUT);
        assert_non_null(err);
        assert_int_equal(err->code, -ETIMEDOUT);
        cc_error_free(err);
        assert_ptr_equal(out, (char *)0x1); /* untouched on failure */
        assert_true(dt >= 250);
        assert_true(dt < 5000);
        assert_int_equal(count_fds(), fds);

        FILE *f = fopen(pidfile, "r");
        assert_non_null(f);
        int pgid = 0;
        assert_int_equal(fscanf(f, "%d", &pgid), 1);
        fclose(f);
        unlink(pidfile);
        assert_true(pgid > 1);
        /* SIGKILL is asynchronous: allow the group a moment to die. */
        bool alive = true;
        for (int i = 0; i < 100 && alive; i++) {
                alive = group_has_live_process(pgid);
                if (alive)
                        usleep(10000);
        }
        assert_false(alive);
}

static void test_run_timeout_after_stdio_closed(void **state)
{
        /* The child closes stdout/stderr and keeps running: the timeout
         * still applies to waiting for it. */
        int64_t t0 = now_ms();
        cc_error *err = NULL;
        int r = run_sh("exec >/dev/null 2>&1; sleep 5", NULL, 0, 4096, 300, NULL, NULL, NULL, &err);
        int64_t dt = now_ms() - t0;
        cc_error_free(err);
        if (r != -ETIMEDOUT || dt > 3000)
                fail_msg("got %d after %lld ms, want -ETIMEDOUT after ~300 ms", r, (long long)dt);
}

static void test_run_missing_program(void **state)
{
        if (under_valgrind())
                skip();
        int fds = count_fds();
        char *const argv[] = { "nope", NULL };
        cc_error *err = NULL;
        char *out = (char *)0x1;
        int r = cc_spawn_run("/nonexistent/cocoon-test", argv, NULL, NULL, 0, 100, 1000, &out, NULL,
                             NULL, &err);
        assert_int_equal(r, -ENOENT);
        assert_non_null(err);
        assert_non_null(strstr(err->msg, "/nonexistent/cocoon-test"));
        cc_error_free(err);
        assert_ptr_equal(out, (char *)0x1);
        assert_int_equal(count_fds(), fds);
}

/* ---- cc_spawn ----------------------------------------------------------- */

static char *read_all(int fd)
{
        static char buf[4096];
        size_t len = 0;
        ssize_t n;
        while (len < sizeof(buf) - 1 && (n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
                len += (size_t)n;
        buf[len] = 0;
        return buf;
}

static void test_spawn_opts(void **state)
{
        int p[2], extra[2];
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        assert_int_equal(pipe2(extra, O_CLOEXEC), 0);
        char script[128];
        /* cwd applied, kept fd usable although it is O_CLOEXEC here, new session. */
        snprintf(script, sizeof(script), "pwd; echo kept >&%d; cut -d' ' -f6 /proc/$$/stat", extra[1]);
        char *const argv[] = { "sh", "-c", script, NULL };
        int keep[] = { extra[1] };
        cc_spawn_opts o = CC_SPAWN_OPTS_INIT;
        o.stdout_fd = p[1];
        o.keep_fds = keep;
        o.n_keep_fds = 1;
        o.cwd = "/proc";
        o.new_session = true;
        cc_proc proc = { 0 };
        cc_error *err = NULL;
        assert_int_equal(cc_spawn("/bin/sh", argv, &o, &proc, &err), 0);
        assert_null(err);
        close(p[1]);
        close(extra[1]);
        assert_true(proc.pid > 0);
        int status;
        assert_int_equal(waitpid(proc.pid, &status, 0), proc.pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        char expect[64];
        snprintf(expect, sizeof(expect), "/proc\n%d\n", (int)proc.pid); /* session id == pid */
        assert_string_equal(read_all(p[0]), expect);
        assert_string_equal(read_all(extra[0]), "kept\n");
        close(p[0]);
        close(extra[0]);
}

static void test_spawn_no_fd_leak_into_child(void **state)
{
        /* An O_CLOEXEC fd of ours that is not kept must not reach the child. */
        int p[2], probe[2];
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        assert_int_equal(pipe2(probe, O_CLOEXEC), 0);
        char script[64];
        snprintf(script, sizeof(script), "test -e /proc/$$/fd/%d && echo leak || echo ok", probe[1]);
        char *const argv[] = { "sh", "-c", script, NULL };
        cc_spawn_opts o = CC_SPAWN_OPTS_INIT;
        o.stdout_fd = p[1];
        cc_proc proc;
        assert_int_equal(cc_spawn("/bin/sh", argv, &o, &proc, NULL), 0);
        close(p[1]);
        waitpid(proc.pid, NULL, 0);
        assert_string_equal(read_all(p[0]), "ok\n");
        close(p[0]);
        close(probe[0]);
        close(probe[1]);
}

static void test_spawn_missing(void **state)
{
        if (under_valgrind())
                skip();
        char *const argv[] = { "x", NULL };
        cc_proc proc = { .pid = 4242, .start_time = 7 };
        cc_error *err = NULL;
        assert_true(cc_spawn("/nonexistent/x", argv, NULL, &proc, &err) < 0);
        assert_non_null(err);
        cc_error_free(err);
        assert_int_equal(proc.pid, 4242); /* untouched */
        assert_int_equal(proc.start_time, 7);
}

/* ---- pid + start time --------------------------------------------------- */

static void test_proc_self(void **state)
{
        uint64_t st = 0;
        assert_int_equal(cc_proc_start_time(getpid(), &st), 0);
        assert_true(st > 0);
        cc_proc self = { getpid(), st };
        assert_true(cc_proc_alive(&self));
        cc_proc wrong = { getpid(), st + 1 };
        assert_false(cc_proc_alive(&wrong));
        assert_false(cc_proc_alive(NULL));
        cc_proc zero = { 0, 0 };
        assert_false(cc_proc_alive(&zero));

        /* A hostile comm with spaces and ')' does not shift the fields. */
        char old[17] = "";
        prctl(PR_GET_NAME, old);
        prctl(PR_SET_NAME, "a) b ) c 9 9 9");
        uint64_t st2 = 0;
        int r = cc_proc_start_time(getpid(), &st2);
        prctl(PR_SET_NAME, old);
        assert_int_equal(r, 0);
        assert_true(st2 == st);

        assert_int_equal(cc_proc_start_time(0x7ffffff0, &st), -ESRCH);
}

static void test_proc_child_lifecycle(void **state)
{
        char *const argv[] = { "sleep", "100", NULL };
        cc_proc p;
        cc_error *err = NULL;
        assert_int_equal(cc_spawn("/bin/sleep", argv, NULL, &p, &err), 0);
        uint64_t st = 0;
        assert_int_equal(cc_proc_start_time(p.pid, &st), 0);
        assert_true(st == p.start_time);
        assert_true(cc_proc_alive(&p));

        bool pidfds = !under_valgrind();
        int pfd = -1;
        struct pollfd pf = { -1, POLLIN, 0 };
        if (pidfds) {
                pfd = cc_proc_pidfd(&p, &err);
                assert_true(pfd >= 0);
                assert_null(err);
                assert_true(fcntl(pfd, F_GETFD) & FD_CLOEXEC);
                pf.fd = pfd;
                assert_int_equal(poll(&pf, 1, 0), 0); /* not exited yet */
        }

        /* Same pid, other start time: a reused pid is not our process. */
        cc_proc reused = { p.pid, p.start_time + 1 };
        assert_false(cc_proc_alive(&reused));
        if (pidfds) {
                assert_int_equal(cc_proc_pidfd(&reused, &err), -ESRCH);
                assert_non_null(err);
                cc_error_free(err);
                err = NULL;
        }

        assert_int_equal(kill(p.pid, SIGKILL), 0);
        if (pidfds) {
                assert_int_equal(poll(&pf, 1, 5000), 1); /* the pidfd reports the exit */
                close(pfd);
        } else {
                siginfo_t si;
                assert_int_equal(waitid(P_PID, (id_t)p.pid, &si, WEXITED | WNOWAIT), 0);
        }
        /* A zombie is not alive. */
        assert_false(cc_proc_alive(&p));
        assert_int_equal(cc_proc_start_time(p.pid, &st), -ESRCH);
        assert_int_equal(waitpid(p.pid, NULL, 0), p.pid);
        /* Reaped: gone for good. */
        assert_false(cc_proc_alive(&p));
        assert_int_equal(cc_proc_start_time(p.pid, &st), -ESRCH);
        assert_true(cc_proc_pidfd(&p, &err) < 0);
        assert_non_null(err);
        cc_error_free(err);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_run_capture_and_status),
                cmocka_unit_test(test_run_stdin),
                cmocka_unit_test(test_run_env),
                cmocka_unit_test(test_run_output_cap),
                cmocka_unit_test(test_run_timeout_kills_group),
                cmocka_unit_test(test_run_timeout_after_stdio_closed),
                cmocka_unit_test(test_run_missing_program),
                cmocka_unit_test(test_spawn_opts),
                cmocka_unit_test(test_spawn_no_fd_leak_into_child),
                cmocka_unit_test(test_spawn_missing),
                cmocka_unit_test(test_proc_self),
                cmocka_unit_test(test_proc_child_lifecycle),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
