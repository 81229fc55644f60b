/* SPDX-License-Identifier: Apache-2.0 */
/* The output pump against a fake agent (a ttRPC server on a unix socket in
 * a temp dir) whose ReadStdout/ReadStderr answer what the test feeds, as the
 * real agent does: a read waits for data, the data is consumed only once the
 * answer went out. (The end-to-end runs with the real agent are in
 * test-agent-client.c.) */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/ttrpc.h"
#include "runtime/agent.h"
#include "runtime/ctr-io.h"
#include "runtime/runtime.h"
#include "agent.pb-c.h"
#include "health.pb-c.h"

static uint64_t mono_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- fake agent ---------------------------------------------------------------- */

typedef struct fake {
        ttrpc_server *s;
        int lfd;
        pthread_t t;
        char path[100];

        pthread_mutex_t mu;
        pthread_cond_t cond;      /* a read arrived */
        ttrpc_call *pending[2];   /* stdout, stderr */
        uint32_t want[2];
        char q[2][65536];
        size_t qlen[2];
        bool eof[2];
        unsigned reads[2];        /* read calls seen */
} fake;

static fake *F;

/* Lock held. Answers the pending read if there is something to say. */
static void fake_serve_stream(fake *f, int i)
{
        ttrpc_call *c = f->pending[i];
        if (!c)
                return;
        if (!ttrpc_call_is_alive(c)) {
                ttrpc_call_reply_status(c, TTRPC_CODE_CANCELLED, "gone");
                f->pending[i] = NULL;
                return;
        }
        if (f->qlen[i] == 0 && !f->eof[i])
                return;
        size_t n = f->qlen[i] < f->want[i] ? f->qlen[i] : f->want[i];
        Grpc__ReadStreamResponse rs = GRPC__READ_STREAM_RESPONSE__INIT;
        rs.data.data = (uint8_t *)f->q[i];
        rs.data.len = n;
        f->pending[i] = NULL;
        if (ttrpc_call_reply_pb(c, &rs.base) < 0)
                return; /* not delivered: keep it for the next reader */
        memmove(f->q[i], f->q[i] + n, f->qlen[i] - n);
        f->qlen[i] -= n;
}

static void fake_read(ttrpc_call *call, const uint8_t *p, size_t n, void *ud)
{
        fake *f = F;
        int i = (int)(intptr_t)ud;
        Grpc__ReadStreamRequest *rq = grpc__read_stream_request__unpack(NULL, n, p);
        assert_non_null(rq);
        pthread_mutex_lock(&f->mu);
        fake_serve_stream(f, i); /* drops a dead reader */
        if (f->pending[i]) {
                ttrpc_call_reply_status(call, TTRPC_CODE_FAILED_PRECONDITION, "another read is pending");
        } else {
                f->pending[i] = call;
                f->want[i] = rq->len;
                f->reads[i]++;
                fake_serve_stream(f, i);
        }
        pthread_cond_broadcast(&f->cond);
        pthread_mutex_unlock(&f->mu);
        grpc__read_stream_request__free_unpacked(rq, NULL);
}

static void fake_check(ttrpc_call *call, const uint8_t *p, size_t n, void *ud)
{
        Grpc__HealthCheckResponse rs = GRPC__HEALTH_CHECK_RESPONSE__INIT;
        rs.status = GRPC__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
        ttrpc_call_reply_pb(call, &rs.base);
}

static void feed(int i, const char *data)
{
        pthread_mutex_lock(&F->mu);
        size_t n = strlen(data);
        assert_true(F->qlen[i] + n <= sizeof(F->q[i]));
        memcpy(F->q[i] + F->qlen[i], data, n);
        F->qlen[i] += n;
        fake_serve_stream(F, i);
        pthread_mutex_unlock(&F->mu);
}

static void feed_eof(int i)
{
        pthread_mutex_lock(&F->mu);
        F->eof[i] = true;
        fake_serve_stream(F, i);
        pthread_mutex_unlock(&F->mu);
}

/* Waits until stream i has a read pending (the pump is blocked in it). */
static void wait_pending(int i)
{
        pthread_mutex_lock(&F->mu);
        while (!F->pending[i])
                pthread_cond_wait(&F->cond, &F->mu);
        pthread_mutex_unlock(&F->mu);
}

static void *serve_main(void *arg)
{
        fake *f = arg;
        cc_error *err = NULL;
        ttrpc_server_serve_listener(f->s, f->lfd, &err);
        cc_error_free(err);
        return NULL;
}

static char tmpdir[64];

static rt_agent *dial(void)
{
        vmm_endpoint ep = { .kind = VMM_EP_UNIX };
        snprintf(ep.path, sizeof(ep.path), "%s", F->path);
        rt_agent *a = NULL;
        cc_error *err = NULL;
        if (rt_agent_dial(&ep, 5000, -1, &a, &err) < 0)
                fail_msg("dial: %s", err->msg);
        return a;
}

static int setup(void **state)
{
        fake *f = calloc(1, sizeof(*f));
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/cocoon-ctr-io-XXXXXX");
        assert_non_null(mkdtemp(tmpdir));
        snprintf(f->path, sizeof(f->path), "%s/agent.sock", tmpdir);
        pthread_mutex_init(&f->mu, NULL);
        pthread_cond_init(&f->cond, NULL);
        f->s = ttrpc_server_new(NULL);
        assert_int_equal(ttrpc_server_register(f->s, "grpc.Health", "Check", fake_check, NULL, NULL), 0);
        assert_int_equal(ttrpc_server_register(f->s, "grpc.AgentService", "ReadStdout", fake_read, (void *)0, NULL),
                         0);
        assert_int_equal(ttrpc_server_register(f->s, "grpc.AgentService", "ReadStderr", fake_read, (void *)1, NULL),
                         0);
        f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->path);
        assert_int_equal(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(f->lfd, 8), 0);
        assert_int_equal(pthread_create(&f->t, NULL, serve_main, f), 0);
        F = f;
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        fake *f = *state;
        ttrpc_server_shutdown(f->s);
        pthread_join(f->t, NULL);
        for (int i = 0; i < 2; i++)
                if (f->pending[i])
                        ttrpc_call_reply_status(f->pending[i], TTRPC_CODE_CANCELLED, "bye");
        close(f->lfd);
        ttrpc_server_free(f->s);
        pthread_cond_destroy(&f->cond);
        pthread_mutex_destroy(&f->mu);
        free(f);
        F = NULL;
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
        assert_int_equal(system(cmd), 0);
        return 0;
}

static char *slurp(const char *path)
{
        FILE *f = fopen(path, "re");
        char *buf = calloc(1, 1 << 16);
        if (!f)
                return buf;
        size_t n = fread(buf, 1, (1 << 16) - 1, f);
        buf[n] = 0;
        fclose(f);
        return buf;
}

static bool wait_file_contains(const char *path, const char *needle, int timeout_ms)
{
        uint64_t end = mono_ms() + (uint64_t)timeout_ms;
        for (;;) {
                char *s = slurp(path);
                bool found = strstr(s, needle) != NULL;
                free(s);
                if (found)
                        return true;
                if (mono_ms() >= end)
                        return false;
                poll(NULL, 0, 10);
        }
}

static void log_path(char *out, size_t size, const char *name)
{
        snprintf(out, size, "%s/%s", tmpdir, name);
}

/* ---- tests ------------------------------------------------------------------- */

static void test_two_streams_drain(void **state)
{
        char lp[128];
        log_path(lp, sizeof(lp), "a.log");
        rt_agent *a = dial();
        rt_ctr_io *io = NULL;
        cc_error *err = NULL;
        assert_int_equal(rt_ctr_io_start(a, "c", lp, false, &io, &err), 0);
        feed(0, "out one\nout ");
        feed(1, "err one\n");
        feed(0, "two\n");
        assert_true(wait_file_contains(lp, "stdout F out two", 5000));
        assert_false(rt_ctr_io_drained(io));
        /* one stream at EOF is not drained */
        feed_eof(0);
        uint64_t t0 = mono_ms();
        assert_int_equal(rt_ctr_io_wait_drained(io, 200, &err), -ETIMEDOUT);
        assert_true(mono_ms() - t0 >= 150);
        cc_error_free(err);
        err = NULL;
        feed(1, "no newline");
        feed_eof(1);
        assert_int_equal(rt_ctr_io_wait_drained(io, 5000, &err), 0);
        assert_true(rt_ctr_io_drained(io));
        char *s = slurp(lp);
        assert_non_null(strstr(s, " stdout F out one\n"));
        assert_non_null(strstr(s, " stderr F err one\n"));
        assert_non_null(strstr(s, " stdout F out two\n"));
        assert_non_null(strstr(s, " stderr P no newline\n")); /* flushed once drained */
        free(s);
        rt_ctr_io_free(io);
        rt_agent_unref(a);
}

typedef struct sink_state {
        pthread_mutex_t mu;
        char out[1024];
        size_t len;
        int calls;
        int fail_after; /* return -1 on that call (1-based), 0 = never */
} sink_state;

static int sink_fn(void *ud, rt_agent_stream s, const void *buf, size_t len)
{
        sink_state *k = ud;
        pthread_mutex_lock(&k->mu);
        k->calls++;
        int r = k->fail_after && k->calls >= k->fail_after ? -1 : 0;
        if (s == RT_AGENT_STDOUT && k->len + len < sizeof(k->out)) {
                memcpy(k->out + k->len, buf, len);
                k->len += len;
        }
        pthread_mutex_unlock(&k->mu);
        return r;
}

static void test_sinks_and_no_log(void **state)
{
        rt_agent *a = dial();
        rt_ctr_io *io = NULL;
        cc_error *err = NULL;
        assert_int_equal(rt_ctr_io_start(a, "c", NULL, true, &io, &err), 0); /* tty: stdout only */
        sink_state k1 = { .mu = PTHREAD_MUTEX_INITIALIZER }, k2 = { .mu = PTHREAD_MUTEX_INITIALIZER, .fail_after = 1 };
        int h1 = rt_ctr_io_attach(io, sink_fn, &k1, &err);
        int h2 = rt_ctr_io_attach(io, sink_fn, &k2, &err);
        assert_true(h1 > 0 && h2 > 0 && h1 != h2);
        feed(0, "first");
        wait_pending(0); /* delivered, next read in flight */
        feed(0, "second");
        wait_pending(0);
        rt_ctr_io_detach(io, h1);
        feed(0, "third");
        feed_eof(0);
        assert_int_equal(rt_ctr_io_wait_drained(io, 5000, &err), 0);
        k1.out[k1.len] = 0;
        assert_string_equal(k1.out, "firstsecond"); /* detached before "third" */
        assert_int_equal(k2.calls, 1);              /* detached itself by failing */
        rt_ctr_io_detach(io, h2);                   /* already gone: harmless */
        rt_ctr_io_detach(io, 999);
        assert_int_equal(rt_ctr_io_reopen_log(io, &err), 0); /* no log: nothing to do */
        /* references: the pump lives until the last one */
        rt_ctr_io *ref = rt_ctr_io_ref(io);
        rt_ctr_io_free(io);
        assert_true(rt_ctr_io_drained(ref));
        rt_ctr_io_unref(ref);
        rt_agent_unref(a);
}

/* The connection is lost while a read is pending: the pump waits for a new
 * agent, and what the agent could not deliver reaches the log afterwards. */
static void test_reconnect_loses_nothing(void **state)
{
        char lp[128];
        log_path(lp, sizeof(lp), "b.log");
        rt_agent *a = dial();
        rt_ctr_io *io = NULL;
        cc_error *err = NULL;
        assert_int_equal(rt_ctr_io_start(a, "c", lp, true, &io, &err), 0);
        feed(0, "before\n");
        assert_true(wait_file_contains(lp, "stdout F before", 5000));
        wait_pending(0);
        rt_agent_close(a); /* the pump's read fails with -ECONNABORTED */
        poll(NULL, 0, 100);
        feed(0, "while-away\n"); /* the old reader is dead: kept */
        poll(NULL, 0, 100);
        char *s = slurp(lp);
        assert_null(strstr(s, "while-away"));
        free(s);
        rt_agent *b = dial();
        rt_ctr_io_set_agent(io, b);
        assert_true(wait_file_contains(lp, "stdout F while-away", 5000));
        feed(0, "after\n");
        feed_eof(0);
        assert_int_equal(rt_ctr_io_wait_drained(io, 5000, &err), 0);
        rt_ctr_io_free(io);
        s = slurp(lp);
        char *p = strstr(s, "before");
        assert_non_null(p);
        p = strstr(p, "while-away");
        assert_non_null(p);
        assert_non_null(strstr(p, "after")); /* in order */
        assert_null(strstr(strstr(s, "while-away") + 1, "while-away"));
        free(s);
        rt_agent_unref(a);
        rt_agent_unref(b);
}

/* Freeing the pump while a read is in flight returns at once; the read's
 * answer, whenever it comes, still reaches the log. */
static void test_free_with_read_in_flight(void **state)
{
        char lp[128];
        log_path(lp, sizeof(lp), "c.log");
        rt_agent *a = dial();
        rt_ctr_io *io = NULL;
        cc_error *err = NULL;
        assert_int_equal(rt_ctr_io_start(a, "c", lp, true, &io, &err), 0);
        wait_pending(0);
        uint64_t t0 = mono_ms();
        rt_ctr_io_free(io);
        assert_true(mono_ms() - t0 < 100);
        feed(0, "late\n");
        assert_true(wait_file_contains(lp, "stdout F late", 5000));
        poll(NULL, 0, 100);
        pthread_mutex_lock(&F->mu);
        unsigned reads = F->reads[0];
        pthread_mutex_unlock(&F->mu);
        assert_int_equal(reads, 1); /* stopped: no further read */
        rt_agent_unref(a);
}

/* No agent (set_agent(NULL)): the pump waits; ReopenContainerLog moves the
 * output to the new file. */
static void test_no_agent_and_reopen(void **state)
{
        char lp[128], moved[128];
        log_path(lp, sizeof(lp), "d.log");
        log_path(moved, sizeof(moved), "d.log.1");
        rt_ctr_io *io = NULL;
        cc_error *err = NULL;
        assert_int_equal(rt_ctr_io_start(NULL, "c", lp, true, &io, &err), 0);
        feed(0, "one\n");
        poll(NULL, 0, 100);
        pthread_mutex_lock(&F->mu);
        assert_int_equal(F->reads[0], 0);
        pthread_mutex_unlock(&F->mu);
        rt_agent *a = dial();
        rt_ctr_io_set_agent(io, a);
        assert_true(wait_file_contains(lp, "stdout F one", 5000));
        assert_int_equal(rename(lp, moved), 0);
        assert_int_equal(rt_ctr_io_reopen_log(io, &err), 0);
        feed(0, "two\n");
        assert_true(wait_file_contains(lp, "stdout F two", 5000));
        char *s = slurp(lp);
        assert_null(strstr(s, "one"));
        free(s);
        rt_ctr_io_set_agent(io, NULL);
        rt_agent_unref(a); /* the pump holds its own reference meanwhile */
        feed_eof(0);
        rt_ctr_io_free(io);

        /* bad arguments; a log in a missing directory */
        assert_int_equal(rt_ctr_io_start(NULL, "", NULL, true, &io, &err), -EINVAL);
        cc_error_free(err);
        err = NULL;
        assert_true(rt_ctr_io_start(NULL, "c", "/nonexistent-dir/x.log", true, &io, &err) < 0);
        assert_non_null(err);
        cc_error_free(err);
        rt_ctr_io_free(NULL);
        rt_ctr_io_unref(NULL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_two_streams_drain, setup, teardown),
                cmocka_unit_test_setup_teardown(test_sinks_and_no_log, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reconnect_loses_nothing, setup, teardown),
                cmocka_unit_test_setup_teardown(test_free_with_read_in_flight, setup, teardown),
                cmocka_unit_test_setup_teardown(test_no_agent_and_reopen, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
