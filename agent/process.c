/* SPDX-License-Identifier: Apache-2.0 */
/* The reactor: one thread that reaps children (signalfd SIGCHLD), buffers
 * container output (bounded per stream: when full the fd is no longer
 * polled, so the writer blocks and nothing is dropped), answers deferred
 * ReadStdout/ReadStderr/WaitProcess calls, and watches memory.events for
 * OOM kills (inotify). Everything under agent_lock.
 *
 * Host mode: SIGTERM (or SIGINT) stops the containers in order before the
 * agent exits, rather than leaving them to whoever kills the agent's cgroup:
 * each container's init gets SIGTERM (newest container first), then after
 * a short grace (or as soon as every init is gone) what is left of each
 * container is killed (cgroup.kill) and reaped, the containers are removed
 * (cgroups, state) and the ttRPC server is shut down, so main() returns.
 * The host's WaitProcess calls see each init's real exit status. In the
 * guest, PID 1 does not get signals it has no handler for: nothing to do. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/agent.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/thread.h"

agent_state agent = { .epoll_fd = -1, .inotify_fd = -1 };
pthread_mutex_t agent_lock = PTHREAD_MUTEX_INITIALIZER;

static int signal_fd = -1;
static int timer_fd = -1;

/* epoll keys, never pointers: a handler may free a process between
 * epoll_wait() returning and the reactor taking the lock. Keys are looked up
 * again under the lock. Stream keys are >= 5. */
enum { SRC_SIGNAL = 1, SRC_INOTIFY = 2, SRC_TIMER = 3 };

/* Host mode, on SIGTERM: how long the containers' inits get to exit, then
 * how long their killed processes get to be reaped, then how long main()
 * gets to return once the server is shut down (it may sit in accept()). */
#define TERM_GRACE_MS 5000
#define TERM_KILL_WAIT_MS 2000
#define TERM_EXIT_WAIT_MS 1000

typedef enum term_phase {
        TERM_NONE,
        TERM_GRACE,   /* inits were sent SIGTERM */
        TERM_KILLED,  /* the rest was killed */
        TERM_DONE,    /* containers removed, server shut down */
} term_phase;
static term_phase term_phase_now = TERM_NONE;
static uint64_t next_serial = 1;

agent_process *agent_process_new(agent_container *c, const char *exec_id)
{
        agent_process *p = calloc(1, sizeof(*p));
        if (!p)
                return NULL;
        p->ctr = c;
        if (exec_id && !(p->exec_id = strdup(exec_id))) {
                free(p);
                return NULL;
        }
        p->stdin_fd = p->pty_fd = p->out.fd = p->err.fd = -1;
        uint64_t serial = next_serial++;
        p->out.key = serial * 4 + 1;
        p->err.key = serial * 4 + 2;
        return p;
}

/* Drops a pending read whose connection is gone (the host disconnected):
 * the data stays buffered for the next connection's read. */
static void stream_drop_dead_reader(agent_stream *s)
{
        if (s->reader && !ttrpc_call_is_alive(s->reader))
                ttrpc_call_reply_status(TAKE_PTR(s->reader), TTRPC_CODE_CANCELLED, "connection closed");
}

static void stream_reply(agent_stream *s)
{
        stream_drop_dead_reader(s);
        if (!s->reader)
                return;
        Grpc__ReadStreamResponse resp = GRPC__READ_STREAM_RESPONSE__INIT;
        size_t n = CC_MIN((size_t)s->want, s->len);
        if (n == 0 && !s->eof)
                return;
        resp.data.data = s->buf;
        resp.data.len = n;
        /* Output is consumed only once the answer went out: a host that
         * disconnects meanwhile reads it again after reconnecting. */
        int r = ttrpc_call_reply_pb(TAKE_PTR(s->reader), &resp.base);
        if (r == -ENOTCONN || r == -EPIPE || r == -ECONNRESET)
                return;
        if (n == 0) {
                s->eof_delivered = true;
                return;
        }
        memmove(s->buf, s->buf + n, s->len - n);
        s->len -= n;
        if (s->blocked && s->fd >= 0 && s->len < AGENT_STREAM_MAX) {
                struct epoll_event ev = { .events = EPOLLIN, .data.u64 = s->key };
                if (epoll_ctl(agent.epoll_fd, EPOLL_CTL_MOD, s->fd, &ev) == 0)
                        s->blocked = false;
        }
}

void agent_stream_close(agent_stream *s)
{
        if (s->fd >= 0) {
                epoll_ctl(agent.epoll_fd, EPOLL_CTL_DEL, s->fd, NULL);
                close(s->fd);
                s->fd = -1;
        }
        s->eof = true;
        if (s->reader)
                ttrpc_call_reply_status(TAKE_PTR(s->reader), TTRPC_CODE_NOT_FOUND, "process removed");
        free(s->buf);
        s->buf = NULL;
        s->len = 0;
}

void agent_stream_read(agent_stream *s, ttrpc_call *call, uint32_t len)
{
        stream_drop_dead_reader(s);
        if (s->reader) {
                ttrpc_call_reply_status(call, TTRPC_CODE_FAILED_PRECONDITION,
                                        "another read is pending on this stream");
                return;
        }
        s->reader = call;
        s->want = CC_MIN(len ? len : AGENT_READ_MAX, AGENT_READ_MAX);
        stream_reply(s);
}

static void stream_fill(agent_stream *s)
{
        if (!s->buf && !(s->buf = malloc(AGENT_STREAM_MAX))) {
                log_warn("out of memory for an output buffer; output paused");
                return;
        }
        while (s->len < AGENT_STREAM_MAX) {
                ssize_t n = read(s->fd, s->buf + s->len, AGENT_STREAM_MAX - s->len);
                if (n > 0) {
                        s->len += (size_t)n;
                        continue;
                }
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        break;
                /* 0: all writers closed; EIO: pty slave gone. */
                epoll_ctl(agent.epoll_fd, EPOLL_CTL_DEL, s->fd, NULL);
                close(s->fd);
                s->fd = -1;
                s->eof = true;
                break;
        }
        if (s->fd >= 0 && s->len >= AGENT_STREAM_MAX && !s->blocked) {
                struct epoll_event ev = { .events = 0, .data.u64 = s->key };
                if (epoll_ctl(agent.epoll_fd, EPOLL_CTL_MOD, s->fd, &ev) == 0)
                        s->blocked = true;
        }
        stream_reply(s);
}

static int stream_watch(agent_stream *s)
{
        if (s->fd < 0)
                return 0;
        struct epoll_event ev = { .events = EPOLLIN, .data.u64 = s->key };
        return epoll_ctl(agent.epoll_fd, EPOLL_CTL_ADD, s->fd, &ev) < 0 ? -errno : 0;
}

int agent_process_watch(agent_process *p)
{
        int r = stream_watch(&p->out);
        if (r >= 0)
                r = stream_watch(&p->err);
        return r;
}

void agent_process_free(agent_process *p)
{
        if (!p)
                return;
        agent_stream_close(&p->out);
        agent_stream_close(&p->err);
        if (p->stdin_fd >= 0)
                close(p->stdin_fd);
        if (p->pty_fd >= 0)
                close(p->pty_fd);
        for (size_t i = 0; i < p->n_waiters; i++)
                ttrpc_call_reply_status(p->waiters[i], TTRPC_CODE_NOT_FOUND, "process removed");
        free(p->waiters);
        free(p->exec_id);
        free(p);
}

static void answer_waiters(agent_process *p)
{
        Grpc__WaitProcessResponse resp = GRPC__WAIT_PROCESS_RESPONSE__INIT;
        resp.status = p->status;
        bool delivered = false;
        for (size_t i = 0; i < p->n_waiters; i++)
                if (ttrpc_call_reply_pb(p->waiters[i], &resp.base) == 0)
                        delivered = true;
        /* An exec is forgotten only once its exit reached a host: a wait
         * answered into a closed connection does not count. */
        if (delivered && p->exec_id)
                p->waited = true;
        free(p->waiters);
        p->waiters = NULL;
        p->n_waiters = 0;
}

void agent_process_wait(agent_process *p, ttrpc_call *call)
{
        if (p->n_waiters >= 64) {
                ttrpc_call_reply_status(call, TTRPC_CODE_RESOURCE_EXHAUSTED, "too many waiters");
                return;
        }
        ttrpc_call **w = realloc(p->waiters, (p->n_waiters + 1) * sizeof(*w));
        if (!w) {
                ttrpc_call_reply_status(call, TTRPC_CODE_RESOURCE_EXHAUSTED, "out of memory");
                return;
        }
        p->waiters = w;
        p->waiters[p->n_waiters++] = call;
        if (p->exited)
                answer_waiters(p);
}

/* An exec is forgotten once its exit was reported and its output read to
 * EOF: the shim does both, so long-lived containers do not accumulate execs. */
static void gc_execs(agent_container *c)
{
        for (agent_process **pp = &c->execs; *pp;) {
                agent_process *p = *pp;
                bool out_done = p->out.eof_delivered || (p->out.fd < 0 && p->out.len == 0 && !p->out.reader);
                bool err_done = p->err.eof_delivered || (p->err.fd < 0 && p->err.len == 0 && !p->err.reader);
                if (p->waited && out_done && err_done) {
                        *pp = p->next;
                        agent_process_free(p);
                } else {
                        pp = &p->next;
                }
        }
}

static agent_process *find_pid(pid_t pid)
{
        for (agent_container *c = agent.containers; c; c = c->next) {
                if (c->init && c->init->pid == pid)
                        return c->init;
                for (agent_process *p = c->execs; p; p = p->next)
                        if (p->pid == pid)
                                return p;
        }
        return NULL;
}

static agent_stream *find_stream(uint64_t key)
{
        if (key < 4)
                return NULL;
        for (agent_container *c = agent.containers; c; c = c->next) {
                for (agent_process *p = c->init ? c->init : c->execs; p;
                     p = p == c->init ? c->execs : p->next) {
                        if (p->out.key == key)
                                return &p->out;
                        if (p->err.key == key)
                                return &p->err;
                }
        }
        return NULL;
}

static void reap(void)
{
        for (;;) {
                int st;
                pid_t pid = waitpid(-1, &st, WNOHANG);
                if (pid <= 0)
                        break;
                agent_process *p = find_pid(pid);
                if (!p || p->exited)
                        continue; /* a spawn helper, a pause process or an orphan */
                p->exited = true;
                p->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
                log_debug("container=%s exec=%s pid=%d exited status=%d", p->ctr->id,
                          p->exec_id ? p->exec_id : "", (int)pid, p->status);
                if (!p->exec_id) {
                        p->ctr->state = AGENT_CTR_STOPPED;
                        /* The pid namespace is gone with its init: so are
                         * the execs, which may still hold pipes open. */
                }
                answer_waiters(p);
        }
}

/* ---- OOM ----------------------------------------------------------------- */

void agent_oom_watch(agent_container *c)
{
        char p[PATH_MAX];
        snprintf(p, sizeof(p), "%s/memory.events", c->cgroup);
        c->oom_wd = inotify_add_watch(agent.inotify_fd, p, IN_MODIFY);
        if (c->oom_wd >= 0)
                agent_cgroup_read_u64(c->cgroup, "memory.events", "oom_kill", &c->oom_kills);
}

void agent_oom_unwatch(agent_container *c)
{
        if (c->oom_wd >= 0)
                inotify_rm_watch(agent.inotify_fd, c->oom_wd);
        c->oom_wd = -1;
}

static void oom_deliver(void)
{
        while (agent.n_oom && agent.n_oom_waiters) {
                Grpc__OOMEvent ev = GRPC__OOMEVENT__INIT;
                ev.container_id = agent.oom_queue[0];
                ttrpc_call *w = agent.oom_waiters[0];
                memmove(agent.oom_waiters, agent.oom_waiters + 1, --agent.n_oom_waiters * sizeof(ttrpc_call *));
                /* an event answered into a closed connection stays queued */
                if (ttrpc_call_reply_pb(w, &ev.base) < 0)
                        continue;
                free(agent.oom_queue[0]);
                memmove(agent.oom_queue, agent.oom_queue + 1, --agent.n_oom * sizeof(char *));
        }
}

void agent_oom_get(ttrpc_call *call)
{
        if (agent.n_oom_waiters >= 16) {
                ttrpc_call_reply_status(call, TTRPC_CODE_RESOURCE_EXHAUSTED, "too many GetOOMEvent waiters");
                return;
        }
        ttrpc_call **w = realloc(agent.oom_waiters, (agent.n_oom_waiters + 1) * sizeof(*w));
        if (!w) {
                ttrpc_call_reply_status(call, TTRPC_CODE_RESOURCE_EXHAUSTED, "out of memory");
                return;
        }
        agent.oom_waiters = w;
        agent.oom_waiters[agent.n_oom_waiters++] = call;
        /* Drop waiters whose connection went away. */
        for (size_t i = 0; i < agent.n_oom_waiters;) {
                if (!ttrpc_call_is_alive(agent.oom_waiters[i])) {
                        ttrpc_call_reply_status(agent.oom_waiters[i], TTRPC_CODE_CANCELLED, "gone");
                        memmove(agent.oom_waiters + i, agent.oom_waiters + i + 1,
                                (--agent.n_oom_waiters - i) * sizeof(ttrpc_call *));
                } else {
                        i++;
                }
        }
        oom_deliver();
}

static void oom_event(int wd)
{
        for (agent_container *c = agent.containers; c; c = c->next) {
                if (c->oom_wd != wd)
                        continue;
                uint64_t kills = 0;
                if (agent_cgroup_read_u64(c->cgroup, "memory.events", "oom_kill", &kills) < 0 ||
                    kills <= c->oom_kills)
                        return;
                c->oom_kills = kills;
                log_info("container=%s oom_kill=%" PRIu64, c->id, kills);
                if (agent.n_oom >= 64) { /* bounded: keep the newest */
                        free(agent.oom_queue[0]);
                        memmove(agent.oom_queue, agent.oom_queue + 1, --agent.n_oom * sizeof(char *));
                }
                char **q = realloc(agent.oom_queue, (agent.n_oom + 1) * sizeof(char *));
                if (!q)
                        return;
                agent.oom_queue = q;
                if ((q[agent.n_oom] = strdup(c->id)))
                        agent.n_oom++;
                oom_deliver();
                return;
        }
}

static void inotify_drain(void)
{
        char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
        for (;;) {
                ssize_t n = read(agent.inotify_fd, buf, sizeof(buf));
                if (n <= 0)
                        return;
                for (char *p = buf; p < buf + n;) {
                        struct inotify_event *ev = (struct inotify_event *)p;
                        oom_event(ev->wd);
                        p += sizeof(*ev) + ev->len;
                }
        }
}

/* ---- host mode: orderly stop on SIGTERM ------------------------------------ */

static void timer_arm(int ms)
{
        struct itimerspec its = { .it_value = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L } };
        if (timerfd_settime(timer_fd, 0, &its, NULL) < 0)
                log_warn("timerfd: %s", strerror(errno));
}

static bool inits_alive(void)
{
        for (agent_container *c = agent.containers; c; c = c->next)
                if (c->init && c->init->pid > 0 && !c->init->exited)
                        return true;
        return false;
}

static void term_kill_rest(void)
{
        for (agent_container *c = agent.containers; c; c = c->next) {
                if (agent_cgroup_kill(c->cgroup) < 0 && c->init && c->init->pid > 0 && !c->init->exited)
                        kill(c->init->pid, SIGKILL);
        }
        if (agent.sandbox_pidns_pid > 0)
                kill(agent.sandbox_pidns_pid, SIGKILL);
        term_phase_now = TERM_KILLED;
        timer_arm(TERM_KILL_WAIT_MS);
}

/* Everything is dead (or the wait is over): remove the containers and let
 * main() return. */
static void term_finish(void)
{
        size_t n = 0;
        while (agent.containers) {
                agent_container *c = agent.containers;
                cc_error *err = NULL;
                /* its processes are gone: this does not wait */
                if (agent_container_remove(c, 1, &err) < 0) {
                        log_warn("container=%s remove: %s", c->id, err->msg);
                        cc_error_free(err);
                        agent.containers = c->next; /* give up on it */
                }
                n++;
        }
        agent.sandbox_pidns_pid = 0;
        agent.destroyed = true;
        term_phase_now = TERM_DONE;
        log_info("stopped %zu containers; exiting", n);
        if (agent.server)
                ttrpc_server_shutdown(agent.server);
        /* main() returns once its serve loop sees the shutdown; if it sits
         * in accept() with no host connected, the timer ends the process. */
        timer_arm(TERM_EXIT_WAIT_MS);
}

static void term_begin(int sig)
{
        if (term_phase_now == TERM_GRACE) { /* a second signal: no more grace */
                term_kill_rest();
                return;
        }
        if (term_phase_now != TERM_NONE)
                return;
        size_t n = 0;
        /* newest first: the list is in reverse creation order */
        for (agent_container *c = agent.containers; c; c = c->next) {
                if (c->paused)
                        agent_cgroup_freeze(c->cgroup, false, NULL);
                if (c->init && c->init->pid > 0 && !c->init->exited) {
                        kill(c->init->pid, SIGTERM);
                        n++;
                }
        }
        log_info("%s: stopping %zu containers (SIGTERM, SIGKILL after %d ms)", strsignal(sig), n, TERM_GRACE_MS);
        term_phase_now = TERM_GRACE;
        timer_arm(TERM_GRACE_MS);
}

/* No process left in any container (exited ones leave their cgroup at
 * once, whoever reaps them) and every init reaped. */
static bool all_gone(void)
{
        if (inits_alive())
                return false;
        for (agent_container *c = agent.containers; c; c = c->next) {
                uint64_t populated = 0;
                if (agent_cgroup_read_u64(c->cgroup, "cgroup.events", "populated", &populated) == 0 && populated)
                        return false;
        }
        return true;
}

/* After events: moves the stop along once its phase is over. */
static void term_progress(bool timer_fired)
{
        if (term_phase_now == TERM_GRACE && (timer_fired || !inits_alive())) {
                term_kill_rest();
                timer_fired = false;
        }
        if (term_phase_now == TERM_KILLED && (timer_fired || all_gone()))
                term_finish();
        else if (term_phase_now == TERM_DONE && timer_fired)
                _exit(0); /* containers are removed; main() did not get to return */
}

/* ---- loop ---------------------------------------------------------------- */

static void *reactor_main(void *arg)
{
        struct epoll_event evs[32];
        for (;;) {
                int n = epoll_wait(agent.epoll_fd, evs, CC_ARRAY_SIZE(evs), -1);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        log_error("reactor: epoll_wait: %s", strerror(errno));
                        return NULL;
                }
                pthread_mutex_lock(&agent_lock);
                bool timer_fired = false;
                for (int i = 0; i < n; i++) {
                        uint64_t src = evs[i].data.u64;
                        if (src == SRC_SIGNAL) {
                                struct signalfd_siginfo si;
                                int term = 0;
                                while (read(signal_fd, &si, sizeof(si)) == sizeof(si))
                                        if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
                                                term = (int)si.ssi_signo;
                                reap();
                                if (term)
                                        term_begin(term);
                        } else if (src == SRC_INOTIFY) {
                                inotify_drain();
                        } else if (src == SRC_TIMER) {
                                uint64_t ticks;
                                if (read(timer_fd, &ticks, sizeof(ticks)) == sizeof(ticks))
                                        timer_fired = true;
                        }
                }
                if (term_phase_now != TERM_NONE)
                        term_progress(timer_fired);
                for (int i = 0; i < n; i++) {
                        agent_stream *s = find_stream(evs[i].data.u64);
                        if (s && s->fd >= 0 && !s->blocked)
                                stream_fill(s);
                }
                for (agent_container *c = agent.containers; c; c = c->next)
                        gc_execs(c);
                pthread_mutex_unlock(&agent_lock);
        }
        return NULL;
}

int agent_reactor_start(cc_error **ret_err)
{
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        if (!agent.guest) {
                /* Host mode: SIGTERM/SIGINT stop the containers first. They
                 * must be blocked in every thread: main starts none before
                 * the reactor, and later ones inherit this mask. */
                sigset_t term;
                sigemptyset(&term);
                sigaddset(&term, SIGTERM);
                sigaddset(&term, SIGINT);
                pthread_sigmask(SIG_BLOCK, &term, NULL);
                sigaddset(&mask, SIGTERM);
                sigaddset(&mask, SIGINT);
        }
        /* SIGCHLD is blocked in every thread (main blocks it before any
         * thread exists) and read from the signalfd. */
        signal_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        if (signal_fd < 0)
                return cc_error_errno(ret_err, "signalfd");
        timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        if (timer_fd < 0)
                return cc_error_errno(ret_err, "timerfd");
        agent.epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        agent.inotify_fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
        if (agent.epoll_fd < 0 || agent.inotify_fd < 0)
                return cc_error_errno(ret_err, "epoll/inotify");
        struct epoll_event ev = { .events = EPOLLIN, .data.u64 = SRC_SIGNAL };
        if (epoll_ctl(agent.epoll_fd, EPOLL_CTL_ADD, signal_fd, &ev) < 0)
                return cc_error_errno(ret_err, "epoll_ctl");
        ev.data.u64 = SRC_INOTIFY;
        if (epoll_ctl(agent.epoll_fd, EPOLL_CTL_ADD, agent.inotify_fd, &ev) < 0)
                return cc_error_errno(ret_err, "epoll_ctl");
        ev.data.u64 = SRC_TIMER;
        if (epoll_ctl(agent.epoll_fd, EPOLL_CTL_ADD, timer_fd, &ev) < 0)
                return cc_error_errno(ret_err, "epoll_ctl");
        int r = cc_thread_start_detached(reactor_main, NULL, 256 * 1024);
        if (r < 0)
                return cc_error_set(ret_err, r, "reactor thread: %s", strerror(-r));
        return 0;
}
