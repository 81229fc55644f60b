/* SPDX-License-Identifier: Apache-2.0 */
/* A container's output pump: one thread per stream loops on a blocking
 * ReadStdout/ReadStderr (no client-side timeout: a timed-out call's late
 * answer would be discarded by the ttRPC client while the agent counts it
 * as delivered) and feeds the CRI log and the attached sinks.
 *
 * Lifetime: the owner's reference and one per running thread. A thread
 * blocked in a read cannot be interrupted short of closing the agent
 * connection, so rt_ctr_io_free() does not wait for it: it tells the
 * threads to stop, detaches the sinks and drops the owner's reference; a
 * read still in flight completes whenever the agent answers it (EOF when
 * the process exits, NOT_FOUND when it is removed, an error when the
 * connection closes), its data still goes to the log, and the last
 * reference flushes and closes the log. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/thread.h"
#include "runtime/ctr-io.h"
#include "runtime/runtime.h"

#define READ_BUF (64u * 1024)
#define ERROR_RETRY_MS 1000

typedef struct sink {
        struct sink *next;
        int handle;
        rt_ctr_io_sink_fn fn;
        void *userdata;
} sink;

typedef struct pump_stream {
        rt_ctr_io *io;
        rt_agent_stream s;
        bool eof;
        uint8_t *buf; /* READ_BUF bytes */
} pump_stream;

struct rt_ctr_io {
        unsigned refs; /* atomic: the owner's and one per running thread */
        char *ctr_id;
        runtime_log *log;

        pthread_mutex_t mu;   /* agent, agent_gen, stop, eof flags */
        pthread_cond_t cond;  /* any of them changed */
        rt_agent *agent;      /* referenced; NULL: none (the pump waits) */
        uint64_t agent_gen;   /* bumped by rt_ctr_io_set_agent */
        bool stop;
        unsigned n_streams;
        unsigned n_eof;
        pump_stream streams[2];

        pthread_mutex_t sinks_mu; /* held while sinks run: detach waits for them */
        sink *sinks;
        int next_handle;
};

static void io_destroy(rt_ctr_io *io)
{
        if (!io)
                return;
        _cleanup_error_ cc_error *err = NULL;
        if (io->log && runtime_log_flush(io->log, &err) < 0)
                log_debug("container %s: log flush: %s", io->ctr_id, err->msg);
        runtime_log_close(io->log);
        rt_agent_unref(io->agent);
        while (io->sinks) {
                sink *s = io->sinks;
                io->sinks = s->next;
                free(s);
        }
        pthread_cond_destroy(&io->cond);
        pthread_mutex_destroy(&io->mu);
        pthread_mutex_destroy(&io->sinks_mu);
        free(io->streams[0].buf);
        free(io->streams[1].buf);
        free(io->ctr_id);
        free(io);
}

rt_ctr_io *rt_ctr_io_ref(rt_ctr_io *io)
{
        if (io)
                __atomic_add_fetch(&io->refs, 1, __ATOMIC_RELAXED);
        return io;
}

void rt_ctr_io_unref(rt_ctr_io *io)
{
        if (io && __atomic_sub_fetch(&io->refs, 1, __ATOMIC_ACQ_REL) == 0)
                io_destroy(io);
}

/* Passes one chunk to the log and the sinks. */
static void deliver(rt_ctr_io *io, rt_agent_stream s, const uint8_t *buf, size_t n)
{
        if (io->log) {
                _cleanup_error_ cc_error *err = NULL;
                if (runtime_log_write(io->log, s == RT_AGENT_STDERR ? CRI_LOG_STDERR : CRI_LOG_STDOUT, buf, n,
                                      &err) < 0)
                        log_debug("container %s: log write: %s", io->ctr_id, err->msg);
        }
        pthread_mutex_lock(&io->sinks_mu);
        for (sink **p = &io->sinks; *p;) {
                sink *k = *p;
                if (k->fn(k->userdata, s, buf, n) < 0) {
                        *p = k->next;
                        free(k);
                } else {
                        p = &k->next;
                }
        }
        pthread_mutex_unlock(&io->sinks_mu);
}

static bool conn_lost(int r)
{
        return r == -ECONNABORTED || r == -ECONNRESET || r == -EPIPE || r == -EPROTO || r == -ENOTCONN;
}

static void *pump_main(void *arg)
{
        pump_stream *ps = arg;
        rt_ctr_io *io = ps->io;
        bool eof = false;

        pthread_mutex_lock(&io->mu);
        for (;;) {
                while (!io->stop && !io->agent)
                        pthread_cond_wait(&io->cond, &io->mu);
                if (io->stop)
                        break;
                rt_agent *a = rt_agent_ref(io->agent);
                uint64_t gen = io->agent_gen;
                pthread_mutex_unlock(&io->mu);

                _cleanup_error_ cc_error *err = NULL;
                ssize_t n = rt_agent_read(a, io->ctr_id, "", ps->s, ps->buf, READ_BUF, 0, &err);
                rt_agent_unref(a);
                if (n > 0) /* even after stop: the agent counts it as delivered */
                        deliver(io, ps->s, ps->buf, (size_t)n);
                pthread_mutex_lock(&io->mu);
                if (n > 0)
                        continue;
                /* 0: end of stream; NOT_FOUND: the process was removed and
                 * its stream with it. */
                if (n == 0 || n == -ENOENT) {
                        eof = true;
                        break;
                }
                if (conn_lost((int)n)) {
                        log_debug("container %s: output pump: %s; waiting for a new agent connection",
                                  io->ctr_id, err->msg);
                        while (!io->stop && io->agent_gen == gen)
                                pthread_cond_wait(&io->cond, &io->mu);
                        continue;
                }
                /* Anything else (a reply that failed our checks, a transient
                 * agent error): retry after a pause, at once if the agent is
                 * replaced or the pump stops. */
                log_debug("container %s: output pump: %s; retrying", io->ctr_id, err->msg);
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                ts.tv_sec += ERROR_RETRY_MS / 1000;
                while (!io->stop && io->agent_gen == gen)
                        if (pthread_cond_timedwait(&io->cond, &io->mu, &ts) == ETIMEDOUT)
                                break;
        }
        if (eof) {
                ps->eof = true;
                io->n_eof++;
        }
        pthread_cond_broadcast(&io->cond);
        pthread_mutex_unlock(&io->mu);
        rt_ctr_io_unref(io); /* may be the last reference */
        return NULL;
}

int rt_ctr_io_start(rt_agent *a, const char *ctr_id, const char *log_path, bool tty, rt_ctr_io **ret,
                    cc_error **ret_err)
{
        if (!ctr_id || !*ctr_id || !ret)
                return cc_error_set(ret_err, -EINVAL, "output pump: no container id");
        rt_ctr_io *io = calloc(1, sizeof(*io));
        if (!io)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        pthread_mutex_init(&io->mu, NULL);
        pthread_mutex_init(&io->sinks_mu, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&io->cond, &ca);
        pthread_condattr_destroy(&ca);
        io->refs = 1;
        io->next_handle = 1;
        io->n_streams = tty ? 1 : 2;
        int r;
        if (!(io->ctr_id = strdup(ctr_id))) {
                r = cc_error_set(ret_err, -ENOMEM, "out of memory");
                goto fail;
        }
        for (unsigned i = 0; i < io->n_streams; i++) {
                io->streams[i].io = io;
                io->streams[i].s = i == 0 ? RT_AGENT_STDOUT : RT_AGENT_STDERR;
                if (!(io->streams[i].buf = malloc(READ_BUF))) {
                        r = cc_error_set(ret_err, -ENOMEM, "out of memory");
                        goto fail;
                }
        }
        if (log_path && (r = runtime_log_open(log_path, &io->log, ret_err)) < 0) {
                cc_error_prefix(ret_err, "container %s: output pump", ctr_id);
                goto fail;
        }
        io->agent = rt_agent_ref(a);

        /* Detached threads, each with its own reference. */
        for (unsigned i = 0; i < io->n_streams; i++) {
                rt_ctr_io_ref(io);
                r = cc_thread_start_detached(pump_main, &io->streams[i], 0);
                if (r < 0) {
                        rt_ctr_io_unref(io);
                        cc_error_set(ret_err, r, "container %s: output pump thread: %s", ctr_id, strerror(-r));
                        rt_ctr_io_free(io); /* stops a thread already started */
                        return r;
                }
        }
        *ret = io;
        return 0;
fail:
        io_destroy(io);
        return r;
}

void rt_ctr_io_set_agent(rt_ctr_io *io, rt_agent *a)
{
        if (!io)
                return;
        rt_agent *nw = rt_agent_ref(a);
        pthread_mutex_lock(&io->mu);
        rt_agent *old = io->agent;
        io->agent = nw;
        io->agent_gen++;
        pthread_cond_broadcast(&io->cond);
        pthread_mutex_unlock(&io->mu);
        rt_agent_unref(old);
}

int rt_ctr_io_attach(rt_ctr_io *io, rt_ctr_io_sink_fn fn, void *userdata, cc_error **ret_err)
{
        if (!io || !fn)
                return cc_error_set(ret_err, -EINVAL, "attach: no sink");
        sink *k = calloc(1, sizeof(*k));
        if (!k)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        k->fn = fn;
        k->userdata = userdata;
        pthread_mutex_lock(&io->sinks_mu);
        k->handle = io->next_handle++;
        if (io->next_handle <= 0)
                io->next_handle = 1;
        k->next = io->sinks;
        io->sinks = k;
        int h = k->handle;
        pthread_mutex_unlock(&io->sinks_mu);
        return h;
}

void rt_ctr_io_detach(rt_ctr_io *io, int handle)
{
        if (!io)
                return;
        pthread_mutex_lock(&io->sinks_mu); /* waits for a sink call in progress */
        for (sink **p = &io->sinks; *p; p = &(*p)->next)
                if ((*p)->handle == handle) {
                        sink *k = *p;
                        *p = k->next;
                        free(k);
                        break;
                }
        pthread_mutex_unlock(&io->sinks_mu);
}

int rt_ctr_io_reopen_log(rt_ctr_io *io, cc_error **ret_err)
{
        if (!io)
                return cc_error_set(ret_err, -EINVAL, "reopen log: no output pump");
        if (!io->log)
                return 0;
        return runtime_log_reopen(io->log, ret_err);
}

bool rt_ctr_io_drained(rt_ctr_io *io)
{
        if (!io)
                return true;
        pthread_mutex_lock(&io->mu);
        bool d = io->n_eof == io->n_streams;
        pthread_mutex_unlock(&io->mu);
        return d;
}

int rt_ctr_io_wait_drained(rt_ctr_io *io, int timeout_ms, cc_error **ret_err)
{
        if (!io)
                return 0;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        if (timeout_ms > 0) {
                ts.tv_sec += timeout_ms / 1000;
                ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
                if (ts.tv_nsec >= 1000000000) {
                        ts.tv_sec++;
                        ts.tv_nsec -= 1000000000;
                }
        }
        int r = 0;
        pthread_mutex_lock(&io->mu);
        while (io->n_eof < io->n_streams) {
                if (timeout_ms <= 0) {
                        pthread_cond_wait(&io->cond, &io->mu);
                        continue;
                }
                if (pthread_cond_timedwait(&io->cond, &io->mu, &ts) == ETIMEDOUT && io->n_eof < io->n_streams) {
                        r = -ETIMEDOUT;
                        break;
                }
        }
        pthread_mutex_unlock(&io->mu);
        if (r < 0)
                return cc_error_set(ret_err, r, "container %s: output not drained within %d ms", io->ctr_id,
                                    timeout_ms);
        if (io->log && (r = runtime_log_flush(io->log, ret_err)) < 0)
                return cc_error_prefix(ret_err, "container %s", io->ctr_id);
        return 0;
}

void rt_ctr_io_free(rt_ctr_io *io)
{
        if (!io)
                return;
        pthread_mutex_lock(&io->mu);
        io->stop = true;
        pthread_cond_broadcast(&io->cond);
        pthread_mutex_unlock(&io->mu);
        /* No sink runs after this returns. */
        pthread_mutex_lock(&io->sinks_mu);
        while (io->sinks) {
                sink *k = io->sinks;
                io->sinks = k->next;
                free(k);
        }
        pthread_mutex_unlock(&io->sinks_mu);
        rt_ctr_io_unref(io);
}
