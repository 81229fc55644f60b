/* SPDX-License-Identifier: Apache-2.0 */
/* Exec'd processes through the agent (runtime/exec-proc.h) and ExecSync. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/thread.h"
#include "runtime/container.h"
#include "runtime/exec-proc.h"
#include "runtime/spec.h"

#define EXEC_READ_CHUNK (1u << 20)      /* = the agent's largest read answer */
#define EXEC_SYNC_CAP (16u << 20)       /* per stream, as the kubelet */
#define EXEC_KILL_WAIT_NS (10LL * 1000000000LL)

struct rt_exec_proc {
        atomic_int refs;
        rt_agent *agent;
        char *ctr_id;
        char exec_id[64];
        bool tty;

        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool exited;
        int status;
        cc_error *wait_err;      /* WaitProcess failed */
        bool eof[2];             /* per rt_agent_stream */
        bool cancelled;
        unsigned delivering;     /* fn calls in flight */
        rt_exec_out_fn fn;
        void *userdata;
        size_t cap;
        uint8_t *buf[2];
        size_t len[2];
        bool truncated[2];
};

int64_t rt_exec_now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

rt_exec_proc *rt_exec_proc_ref(rt_exec_proc *p)
{
        if (p)
                atomic_fetch_add(&p->refs, 1);
        return p;
}

void rt_exec_proc_unref(rt_exec_proc *p)
{
        if (!p || atomic_fetch_sub(&p->refs, 1) != 1)
                return;
        rt_agent_unref(p->agent);
        free(p->ctr_id);
        cc_error_free(p->wait_err);
        free(p->buf[0]);
        free(p->buf[1]);
        pthread_mutex_destroy(&p->lock);
        pthread_cond_destroy(&p->cond);
        free(p);
}

const char *rt_exec_proc_id(const rt_exec_proc *p)
{
        return p->exec_id;
}

/* A process-unique counter plus 64 random bits: two execs never share an id,
 * not even across a daemon restart (the random part), and a failing
 * getrandom cannot make them collide either (the counter). */
static void new_exec_id(char out[64])
{
        static atomic_uint_fast64_t counter;
        uint64_t rnd = 0;
        if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
                rnd = (uint64_t)rt_exec_now_ns() ^ ((uint64_t)getpid() << 32);
        uint64_t n = atomic_fetch_add(&counter, 1) + 1;
        snprintf(out, 64, "exec-%016" PRIx64 "-%" PRIu64, rnd, n);
}

static void collect(rt_exec_proc *p, rt_agent_stream s, const uint8_t *data, size_t n)
{
        size_t room = p->cap > p->len[s] ? p->cap - p->len[s] : 0;
        size_t take = CC_MIN(room, n);
        if (take < n)
                p->truncated[s] = true;
        if (take == 0)
                return;
        uint8_t *nb = realloc(p->buf[s], p->len[s] + take);
        if (!nb) {
                p->truncated[s] = true;
                return;
        }
        memcpy(nb + p->len[s], data, take);
        p->buf[s] = nb;
        p->len[s] += take;
}

typedef struct pump_arg {
        rt_exec_proc *p;
        rt_agent_stream s;
} pump_arg;

static void *pump_thread(void *arg)
{
        pump_arg a = *(pump_arg *)arg;
        free(arg);
        rt_exec_proc *p = a.p;
        uint8_t *buf = malloc(EXEC_READ_CHUNK);
        for (;;) {
                _cleanup_error_ cc_error *err = NULL;
                ssize_t n = buf ? rt_agent_read(p->agent, p->ctr_id, p->exec_id, a.s, buf,
                                                EXEC_READ_CHUNK, 0, &err)
                                : -ENOMEM;
                if (n <= 0) {
                        if (n < 0)
                                log_debug("exec %s: read %s: %s", p->exec_id,
                                          a.s == RT_AGENT_STDOUT ? "stdout" : "stderr",
                                          err ? err->msg : strerror((int)-n));
                        break;
                }
                pthread_mutex_lock(&p->lock);
                if (!p->fn) {
                        collect(p, a.s, buf, (size_t)n);
                        pthread_mutex_unlock(&p->lock);
                        continue;
                }
                if (p->cancelled) {
                        pthread_mutex_unlock(&p->lock);
                        continue; /* drain */
                }
                p->delivering++;
                pthread_mutex_unlock(&p->lock);
                int r = p->fn(p->userdata, a.s, buf, (size_t)n);
                pthread_mutex_lock(&p->lock);
                p->delivering--;
                if (r < 0)
                        p->fn = NULL, p->cap = 0; /* stop delivering; drain */
                pthread_cond_broadcast(&p->cond);
                pthread_mutex_unlock(&p->lock);
        }
        free(buf);
        pthread_mutex_lock(&p->lock);
        p->eof[a.s] = true;
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
        rt_exec_proc_unref(p);
        return NULL;
}

static void *wait_thread(void *arg)
{
        rt_exec_proc *p = arg;
        int status = -1;
        cc_error *err = NULL;
        int r = rt_agent_wait(p->agent, p->ctr_id, p->exec_id, 0, &status, &err);
        pthread_mutex_lock(&p->lock);
        p->exited = true;
        if (r < 0) {
                p->wait_err = err ? err : NULL;
                if (!p->wait_err)
                        cc_error_set(&p->wait_err, r, "wait for exec %s failed", p->exec_id);
                p->status = -1;
        } else {
                p->status = status;
        }
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
        rt_exec_proc_unref(p);
        return NULL;
}

static int spawn_detached(void *(*fn)(void *), void *arg, cc_error **ret_err)
{
        int r = cc_thread_start_detached(fn, arg, 256 * 1024);
        if (r < 0)
                return cc_error_set(ret_err, r, "cannot start an exec thread: %s", strerror(-r));
        return 0;
}

static int start_pump(rt_exec_proc *p, rt_agent_stream s, cc_error **ret_err)
{
        pump_arg *a = malloc(sizeof(*a));
        if (!a)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        a->p = rt_exec_proc_ref(p);
        a->s = s;
        int r = spawn_detached(pump_thread, a, ret_err);
        if (r < 0) {
                free(a);
                rt_exec_proc_unref(p);
        }
        return r;
}

int rt_exec_proc_start(const rt_exec_target *t, const rt_exec_proc_opts *o, rt_exec_proc **ret,
                       cc_error **ret_err)
{
        if (!o->argv || o->argc == 0 || !o->argv[0] || !*o->argv[0])
                return cc_error_set(ret_err, -EINVAL, "exec: the command is empty");
        Grpc__Process *proc = NULL;
        if (rt_spec_exec_process(t->spec, o->argv, o->argc, o->tty, &proc, ret_err) < 0)
                return cc_error_prefix(ret_err, "exec in container %s", t->container_id);
        Grpc__Box box = GRPC__BOX__INIT;
        Grpc__Box *old_box = proc->consolesize;
        if (o->tty && o->rows && o->cols) {
                box.height = o->rows;
                box.width = o->cols;
                proc->consolesize = &box;
        }

        rt_exec_proc *p = calloc(1, sizeof(*p));
        if (!p) {
                proc->consolesize = old_box;
                rt_spec_process_free(proc);
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        atomic_init(&p->refs, 1);
        pthread_mutex_init(&p->lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&p->cond, &ca);
        pthread_condattr_destroy(&ca);
        p->agent = rt_agent_ref(t->agent);
        p->ctr_id = strdup(t->container_id);
        p->tty = o->tty;
        p->fn = o->fn;
        p->userdata = o->userdata;
        p->cap = o->collect_cap;
        new_exec_id(p->exec_id);
        if (!p->ctr_id) {
                proc->consolesize = old_box;
                rt_spec_process_free(proc);
                rt_exec_proc_unref(p);
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }

        int r = rt_agent_exec(p->agent, p->ctr_id, p->exec_id, proc, 0, ret_err);
        proc->consolesize = old_box;
        rt_spec_process_free(proc);
        if (r < 0) {
                rt_exec_proc_unref(p);
                return cc_error_prefix(ret_err, "exec in container %s", t->container_id);
        }
        log_debug("container %s: exec %s started (%s%s)", p->ctr_id, p->exec_id, o->argv[0],
                  o->tty ? ", tty" : "");

        /* From here the process runs: every failure kills it. */
        _cleanup_error_ cc_error *err = NULL;
        if (!o->stdin_)
                r = rt_agent_close_stdin(p->agent, p->ctr_id, p->exec_id, 0, &err);
        if (r >= 0)
                r = start_pump(p, RT_AGENT_STDOUT, &err);
        if (r >= 0) {
                if (o->tty) {
                        p->eof[RT_AGENT_STDERR] = true; /* one stream */
                } else {
                        r = start_pump(p, RT_AGENT_STDERR, &err);
                }
        }
        if (r >= 0) {
                rt_exec_proc_ref(p);
                r = spawn_detached(wait_thread, p, &err);
                if (r < 0)
                        rt_exec_proc_unref(p);
        }
        if (r < 0) {
                rt_exec_proc_kill(p, NULL);
                rt_exec_proc_cancel(p);
                rt_exec_proc_unref(p);
                cc_error_propagate(ret_err, TAKE_PTR(err));
                return cc_error_prefix(ret_err, "exec in container %s", t->container_id);
        }
        *ret = p;
        return 0;
}

static bool done(const rt_exec_proc *p, bool output)
{
        return p->exited && (!output || (p->eof[0] && p->eof[1]));
}

int rt_exec_proc_wait(rt_exec_proc *p, bool output, int64_t deadline_ns, int *ret_status,
                      cc_error **ret_err)
{
        struct timespec ts = { .tv_sec = deadline_ns / 1000000000LL,
                               .tv_nsec = deadline_ns % 1000000000LL };
        pthread_mutex_lock(&p->lock);
        int r = 0;
        while (!done(p, output) && !p->cancelled) {
                if (deadline_ns > 0) {
                        r = pthread_cond_timedwait(&p->cond, &p->lock, &ts);
                        if (r == ETIMEDOUT && !done(p, output) && !p->cancelled)
                                break;
                        r = 0;
                } else {
                        pthread_cond_wait(&p->cond, &p->lock);
                }
        }
        if (done(p, output) && p->wait_err) {
                r = cc_error_set(ret_err, p->wait_err->code, "%s", p->wait_err->msg);
        } else if (done(p, output)) {
                *ret_status = p->status;
                r = 0;
        } else if (p->cancelled) {
                r = cc_error_set(ret_err, -ECANCELED, "exec %s was cancelled", p->exec_id);
        } else {
                r = cc_error_set(ret_err, -ETIMEDOUT, "exec %s: timed out", p->exec_id);
        }
        pthread_mutex_unlock(&p->lock);
        return r;
}

int rt_exec_proc_kill(rt_exec_proc *p, cc_error **ret_err)
{
        pthread_mutex_lock(&p->lock);
        bool exited = p->exited;
        pthread_mutex_unlock(&p->lock);
        if (exited)
                return 0;
        _cleanup_error_ cc_error *err = NULL;
        int r = rt_agent_signal(p->agent, p->ctr_id, p->exec_id, SIGKILL, false, 0, &err);
        /* Gone already (exited, or reaped and forgotten): nothing to kill. */
        if (r == -ENOENT || r == -ESRCH)
                return 0;
        if (r < 0)
                return cc_error_propagate(ret_err, TAKE_PTR(err));
        return 0;
}

void rt_exec_proc_cancel(rt_exec_proc *p)
{
        pthread_mutex_lock(&p->lock);
        p->cancelled = true;
        pthread_cond_broadcast(&p->cond);
        while (p->delivering > 0)
                pthread_cond_wait(&p->cond, &p->lock);
        pthread_mutex_unlock(&p->lock);
}

int rt_exec_proc_write_stdin(rt_exec_proc *p, const void *buf, size_t len, cc_error **ret_err)
{
        return rt_agent_write_stdin(p->agent, p->ctr_id, p->exec_id, buf, len, 0, ret_err);
}

int rt_exec_proc_close_stdin(rt_exec_proc *p, cc_error **ret_err)
{
        return rt_agent_close_stdin(p->agent, p->ctr_id, p->exec_id, 0, ret_err);
}

int rt_exec_proc_resize(rt_exec_proc *p, uint16_t rows, uint16_t cols, cc_error **ret_err)
{
        if (!p->tty)
                return 0;
        return rt_agent_tty_resize(p->agent, p->ctr_id, p->exec_id, rows, cols, 0, ret_err);
}

void rt_exec_proc_take_output(rt_exec_proc *p, rt_agent_stream s, uint8_t **ret, size_t *ret_len,
                              bool *ret_truncated)
{
        pthread_mutex_lock(&p->lock);
        *ret = TAKE_PTR(p->buf[s]);
        *ret_len = p->len[s];
        if (ret_truncated)
                *ret_truncated = p->truncated[s];
        p->len[s] = 0;
        pthread_mutex_unlock(&p->lock);
}

/* ---- ExecSync ------------------------------------------------------------- */

static char *argv_summary(char *const *argv, size_t argc)
{
        size_t cap = 128, n = 0;
        char *s = malloc(cap + 4);
        if (!s)
                return NULL;
        for (size_t i = 0; i < argc && n < cap; i++) {
                int w = snprintf(s + n, cap - n + 1, "%s%s", i ? " " : "", argv[i]);
                if (w < 0)
                        break;
                n += (size_t)w;
        }
        if (n > cap) {
                n = cap;
                memcpy(s + n, "...", 4);
        }
        return s;
}

int rt_exec_sync(rt_runtime *rt, const char *container_id, char *const *argv, size_t argc,
                 int64_t timeout_s, uint8_t **ret_stdout, size_t *ret_stdout_len,
                 uint8_t **ret_stderr, size_t *ret_stderr_len, int *ret_exit_code,
                 cc_error **ret_err)
{
        if (!argv || argc == 0 || !argv[0] || !*argv[0])
                return cc_error_set(ret_err, -EINVAL, "exec: the command is empty");
        if (timeout_s < 0)
                return cc_error_set(ret_err, -EINVAL, "exec: negative timeout");
        rt_exec_target *t = NULL;
        int r = rt_runtime_exec_target(rt, container_id, &t, ret_err);
        if (r < 0)
                return r;
        int64_t deadline = timeout_s > 0 ? rt_exec_now_ns() + timeout_s * 1000000000LL : 0;
        rt_exec_proc_opts o = {
                .argv = argv, .argc = argc, .tty = false, .stdin_ = false,
                .fn = NULL, .collect_cap = EXEC_SYNC_CAP,
        };
        _cleanup_rt_exec_proc_ rt_exec_proc *p = NULL;
        r = rt_exec_proc_start(t, &o, &p, ret_err);
        rt_exec_target_free(t);
        if (r < 0)
                return r;

        int status = -1;
        _cleanup_error_ cc_error *err = NULL;
        r = rt_exec_proc_wait(p, true, deadline, &status, &err);
        if (r == -ETIMEDOUT) {
                _cleanup_free_ char *cmd = argv_summary(argv, argc);
                _cleanup_error_ cc_error *kerr = NULL;
                if (rt_exec_proc_kill(p, &kerr) < 0)
                        log_debug("exec %s: kill: %s", rt_exec_proc_id(p), kerr->msg);
                /* Give the kill a moment to land so nothing is left running
                 * when we answer; output past this point is dropped. */
                int st;
                _cleanup_error_ cc_error *werr = NULL;
                rt_exec_proc_wait(p, false, rt_exec_now_ns() + EXEC_KILL_WAIT_NS, &st, &werr);
                rt_exec_proc_cancel(p);
                return cc_error_set(ret_err, -ETIMEDOUT, "command '%s' timed out after %" PRId64 "s",
                                    cmd ? cmd : argv[0], timeout_s);
        }
        if (r < 0) {
                rt_exec_proc_kill(p, NULL);
                rt_exec_proc_cancel(p);
                cc_error_propagate(ret_err, TAKE_PTR(err));
                return cc_error_prefix(ret_err, "exec in container %s", container_id);
        }
        uint8_t *out = NULL, *errb = NULL;
        size_t out_len = 0, err_len = 0;
        rt_exec_proc_take_output(p, RT_AGENT_STDOUT, &out, &out_len, NULL);
        rt_exec_proc_take_output(p, RT_AGENT_STDERR, &errb, &err_len, NULL);
        *ret_stdout = out;
        *ret_stdout_len = out_len;
        *ret_stderr = errb;
        *ret_stderr_len = err_len;
        *ret_exit_code = status;
        return 0;
}
