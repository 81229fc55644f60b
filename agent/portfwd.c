/* SPDX-License-Identifier: Apache-2.0 */
/* cocoon.agent.PortForward: see agent/portfwd.h.
 *
 * Handlers (on the ttRPC serving thread) never block: connects are
 * non-blocking, reads that find nothing buffered and writes that find the
 * outgoing buffer full are answered later by the I/O thread, which owns one
 * epoll set over the connections plus a timer for the liveness sweep. All
 * state is under pf_lock. */
#include "agent/portfwd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/thread.h"
#include "cocoon-agent.pb-c.h"

#define PF_SVC "cocoon.agent.PortForward"
#define PF_WRITE_MAX (1u << 20)
#define PF_TIMER_KEY UINT64_MAX

typedef enum pf_state {
        PF_FREE = 0,
        PF_CONNECTING,
        PF_OPEN,
} pf_state;

typedef struct pf_conn {
        pf_state state;
        uint32_t gen;
        int fd;
        uint16_t port;
        bool tried_v6;
        int netns_fd;          /* while connecting: where to retry over IPv6 */
        ttrpc_call *open_call; /* while connecting */
        uint8_t *in;           /* from the server, for Read */
        size_t in_len;
        bool in_eof;
        uint8_t *out;          /* from the host, to the server */
        size_t out_len;
        bool shut_wr_wanted, shut_wr_done;
        int out_err;           /* errno of a failed write, 0 */
        ttrpc_call *reader;
        uint32_t want;
        ttrpc_call *writer;    /* a Write answered once out_len < PORTFWD_BUF */
        int64_t last_call_s;
        uint32_t events;       /* current epoll interest */
} pf_conn;

static pthread_mutex_t pf_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t pf_once = PTHREAD_ONCE_INIT;
static int pf_epoll = -1;
static int pf_init_err;
static pf_conn pf_conns[PORTFWD_MAX_HANDLES];
static unsigned pf_count;

static int64_t now_s(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec;
}

static uint64_t handle_of(size_t slot)
{
        return ((uint64_t)pf_conns[slot].gen << 32) | (uint64_t)(slot + 1);
}

/* NULL for anything that is not a live handle. Lock held. */
static pf_conn *pf_find(uint64_t h)
{
        uint64_t idx = h & 0xffffffffu;
        if (idx == 0 || idx > PORTFWD_MAX_HANDLES)
                return NULL;
        pf_conn *c = &pf_conns[idx - 1];
        if (c->state == PF_FREE || c->gen != (uint32_t)(h >> 32))
                return NULL;
        return c;
}

static uint64_t pf_handle(const pf_conn *c)
{
        return handle_of((size_t)(c - pf_conns));
}

static void pf_interest(pf_conn *c)
{
        uint32_t ev = 0;
        if (c->state == PF_CONNECTING)
                ev = EPOLLOUT;
        else if (c->state == PF_OPEN) {
                if (!c->in_eof && c->in_len < PORTFWD_BUF)
                        ev |= EPOLLIN | EPOLLRDHUP;
                if (c->out_len > 0 && !c->out_err)
                        ev |= EPOLLOUT;
        }
        if (ev == c->events)
                return;
        struct epoll_event e = { .events = ev, .data.u64 = pf_handle(c) };
        if (epoll_ctl(pf_epoll, EPOLL_CTL_MOD, c->fd, &e) == 0)
                c->events = ev;
}

static void pf_free(pf_conn *c, const char *why)
{
        if (c->state == PF_FREE)
                return;
        log_debug("portfwd: handle %llx port %u closed (%s)", (unsigned long long)pf_handle(c),
                  c->port, why);
        if (c->fd >= 0) {
                epoll_ctl(pf_epoll, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
        }
        if (c->netns_fd >= 0)
                close(c->netns_fd);
        if (c->open_call)
                ttrpc_call_reply_status(c->open_call, TTRPC_CODE_UNAVAILABLE, "connection closed");
        if (c->reader)
                ttrpc_call_reply_status(c->reader, TTRPC_CODE_NOT_FOUND, "port-forward closed");
        if (c->writer)
                ttrpc_call_reply_status(c->writer, TTRPC_CODE_NOT_FOUND, "port-forward closed");
        free(c->in);
        free(c->out);
        uint32_t gen = c->gen;
        memset(c, 0, sizeof(*c));
        c->gen = gen + 1;
        c->fd = -1;
        c->netns_fd = -1;
        pf_count--;
}

/* Answers the pending Read if there is something to say. Lock held. */
static void pf_answer_read(pf_conn *c)
{
        if (!c->reader)
                return;
        size_t n = CC_MIN((size_t)c->want, c->in_len);
        if (n == 0 && !c->in_eof)
                return;
        Cocoon__Agent__PortForwardReadResponse resp = COCOON__AGENT__PORT_FORWARD_READ_RESPONSE__INIT;
        resp.data.data = c->in;
        resp.data.len = n;
        resp.eof = n == 0 && c->in_eof;
        int r = ttrpc_call_reply_pb(TAKE_PTR(c->reader), &resp.base);
        if (r == -ENOTCONN || r == -EPIPE || r == -ECONNRESET) {
                pf_free(c, "host gone");
                return;
        }
        memmove(c->in, c->in + n, c->in_len - n);
        c->in_len -= n;
        pf_interest(c);
}

static void pf_answer_write(pf_conn *c)
{
        if (!c->writer)
                return;
        if (c->out_err) {
                ttrpc_call_reply_status(TAKE_PTR(c->writer), TTRPC_CODE_UNAVAILABLE,
                                        "write to port %u: %s", c->port, strerror(c->out_err));
                return;
        }
        if (c->out_len >= PORTFWD_BUF)
                return;
        Cocoon__Agent__PortForwardEmpty e = COCOON__AGENT__PORT_FORWARD_EMPTY__INIT;
        ttrpc_call_reply_pb(TAKE_PTR(c->writer), &e.base);
}

static void pf_fill(pf_conn *c)
{
        if (!c->in && !(c->in = malloc(PORTFWD_BUF)))
                return;
        while (c->in_len < PORTFWD_BUF && !c->in_eof) {
                ssize_t n = read(c->fd, c->in + c->in_len, PORTFWD_BUF - c->in_len);
                if (n > 0) {
                        c->in_len += (size_t)n;
                        continue;
                }
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        break;
                c->in_eof = true; /* 0: the server closed; error: reset */
        }
        pf_answer_read(c);
}

static void pf_flush(pf_conn *c)
{
        size_t off = 0;
        while (off < c->out_len) {
                ssize_t n = send(c->fd, c->out + off, c->out_len - off, MSG_NOSIGNAL);
                if (n > 0) {
                        off += (size_t)n;
                        continue;
                }
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        break;
                c->out_err = n < 0 ? errno : EPIPE;
                off = c->out_len;
        }
        memmove(c->out, c->out + off, c->out_len - off);
        c->out_len -= off;
        if (c->out_len == 0 && c->shut_wr_wanted && !c->shut_wr_done) {
                shutdown(c->fd, SHUT_WR);
                c->shut_wr_done = true;
        }
        pf_interest(c);
        pf_answer_write(c);
}

/* A socket in netns_fd's network namespace (-1: ours), created on a helper
 * thread so the serving thread never changes namespace. */
typedef struct sock_req {
        int netns_fd, family, fd, err;
} sock_req;

static void *sock_thread(void *arg)
{
        sock_req *r = arg;
        if (setns(r->netns_fd, CLONE_NEWNET) < 0) {
                r->err = errno;
                return NULL;
        }
        r->fd = socket(r->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (r->fd < 0)
                r->err = errno;
        return NULL;
}

static int pf_socket(int netns_fd, int family)
{
        if (netns_fd < 0) {
                int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                return fd < 0 ? -errno : fd;
        }
        sock_req r = { .netns_fd = netns_fd, .family = family, .fd = -1 };
        pthread_t t;
        int e = pthread_create(&t, NULL, sock_thread, &r);
        if (e != 0)
                return -e;
        pthread_join(t, NULL);
        return r.fd >= 0 ? r.fd : -r.err;
}

/* The net namespace of a running container's init if it is not ours (a
 * host-mode pod without host networking), else -1. */
static int pf_target_netns(void)
{
        struct stat self;
        if (stat("/proc/self/ns/net", &self) < 0)
                return -1;
        int fd = -1;
        pthread_mutex_lock(&agent_lock);
        for (agent_container *c = agent.containers; c && fd < 0; c = c->next) {
                if (c->state != AGENT_CTR_RUNNING || !c->init || c->init->pid <= 0 || c->init->exited)
                        continue;
                char p[64];
                snprintf(p, sizeof(p), "/proc/%d/ns/net", (int)c->init->pid);
                int nfd = open(p, O_RDONLY | O_CLOEXEC);
                if (nfd < 0)
                        continue;
                struct stat st;
                if (fstat(nfd, &st) == 0 && (st.st_ino != self.st_ino || st.st_dev != self.st_dev))
                        fd = nfd;
                else
                        close(nfd);
                break; /* the pod's containers share one network namespace */
        }
        pthread_mutex_unlock(&agent_lock);
        return fd;
}

/* Starts a connect to loopback: 0 connected, 1 in progress, <0 failed. */
static int pf_connect(pf_conn *c, bool v6)
{
        if (c->fd >= 0) {
                epoll_ctl(pf_epoll, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                c->fd = -1;
                c->events = 0;
        }
        int fd = pf_socket(c->netns_fd, v6 ? AF_INET6 : AF_INET);
        if (fd < 0)
                return fd;
        int r;
        if (v6) {
                struct sockaddr_in6 sa = { .sin6_family = AF_INET6, .sin6_port = htons(c->port),
                                           .sin6_addr = IN6ADDR_LOOPBACK_INIT };
                r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
        } else {
                struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(c->port),
                                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
                r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
        }
        if (r < 0 && errno != EINPROGRESS) {
                int e = errno;
                close(fd);
                return -e;
        }
        c->fd = fd;
        c->tried_v6 = v6;
        struct epoll_event e = { .events = 0, .data.u64 = pf_handle(c) };
        if (epoll_ctl(pf_epoll, EPOLL_CTL_ADD, fd, &e) < 0) {
                int err = errno;
                close(fd);
                c->fd = -1;
                return -err;
        }
        c->events = 0;
        return r == 0 ? 0 : 1;
}

static void pf_reply_open(pf_conn *c, ttrpc_call *call)
{
        Cocoon__Agent__PortForwardOpenResponse resp = COCOON__AGENT__PORT_FORWARD_OPEN_RESPONSE__INIT;
        resp.handle = pf_handle(c);
        if (c->netns_fd >= 0) {
                close(c->netns_fd);
                c->netns_fd = -1;
        }
        c->state = PF_OPEN;
        pf_interest(c);
        if (ttrpc_call_reply_pb(call, &resp.base) < 0)
                pf_free(c, "host gone before the open was answered");
        else
                log_debug("portfwd: port %u open, handle %llx", c->port, (unsigned long long)resp.handle);
}

/* Connect finished (or failed) on the I/O thread. Lock held. */
static void pf_connected(pf_conn *c)
{
        int err = 0;
        socklen_t l = sizeof(err);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
                err = errno;
        if (err == 0) {
                pf_reply_open(c, TAKE_PTR(c->open_call));
                return;
        }
        if (!c->tried_v6) {
                int r = pf_connect(c, true);
                if (r == 0) {
                        pf_reply_open(c, TAKE_PTR(c->open_call));
                        return;
                }
                if (r > 0) {
                        pf_interest(c);
                        return;
                }
        }
        ttrpc_call_reply_status(TAKE_PTR(c->open_call), TTRPC_CODE_UNAVAILABLE,
                                "connect to port %u in the pod: %s", c->port, strerror(err));
        pf_free(c, "connect failed");
}

static void pf_sweep(void)
{
        int64_t now = now_s();
        for (size_t i = 0; i < PORTFWD_MAX_HANDLES; i++) {
                pf_conn *c = &pf_conns[i];
                if (c->state == PF_FREE)
                        continue;
                if (c->state == PF_CONNECTING && now - c->last_call_s >= PORTFWD_CONNECT_TIMEOUT_S) {
                        /* e.g. loopback down: the SYN went out a default route */
                        ttrpc_call_reply_status(TAKE_PTR(c->open_call), TTRPC_CODE_UNAVAILABLE,
                                                "connect to port %u in the pod: timed out", c->port);
                        pf_free(c, "connect timed out");
                        continue;
                }
                if ((c->reader && !ttrpc_call_is_alive(c->reader)) ||
                    (c->writer && !ttrpc_call_is_alive(c->writer)) ||
                    (c->open_call && !ttrpc_call_is_alive(c->open_call)))
                        pf_free(c, "host disconnected");
                else if (!c->reader && !c->writer && now - c->last_call_s > PORTFWD_IDLE_S)
                        pf_free(c, "idle");
        }
}

static void *pf_thread(void *arg)
{
        int tfd = (int)(intptr_t)arg;
        struct epoll_event evs[32];
        for (;;) {
                int n = epoll_wait(pf_epoll, evs, CC_ARRAY_SIZE(evs), -1);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        log_error("portfwd: epoll_wait: %s", strerror(errno));
                        return NULL;
                }
                pthread_mutex_lock(&pf_lock);
                for (int i = 0; i < n; i++) {
                        if (evs[i].data.u64 == PF_TIMER_KEY) {
                                uint64_t ticks;
                                if (read(tfd, &ticks, sizeof(ticks)) < 0) {
                                        /* EAGAIN: nothing to consume */
                                }
                                pf_sweep();
                                continue;
                        }
                        pf_conn *c = pf_find(evs[i].data.u64);
                        if (!c)
                                continue; /* closed meanwhile */
                        if (c->state == PF_CONNECTING) {
                                pf_connected(c);
                                continue;
                        }
                        if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                                pf_fill(c);
                        if ((c = pf_find(evs[i].data.u64)) &&
                            (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && c->out_len > 0)
                                pf_flush(c);
                }
                pthread_mutex_unlock(&pf_lock);
        }
}

static void pf_init(void)
{
        for (size_t i = 0; i < PORTFWD_MAX_HANDLES; i++) {
                pf_conns[i].fd = -1;
                pf_conns[i].netns_fd = -1;
                uint32_t g = 0;
                if (getrandom(&g, sizeof(g), GRND_NONBLOCK) != sizeof(g))
                        g = (uint32_t)time(NULL) ^ (uint32_t)(i * 2654435761u);
                pf_conns[i].gen = g;
        }
        pf_epoll = epoll_create1(EPOLL_CLOEXEC);
        int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        if (pf_epoll < 0 || tfd < 0) {
                pf_init_err = errno;
                return;
        }
        struct itimerspec its = { .it_interval = { PORTFWD_SWEEP_S, 0 }, .it_value = { PORTFWD_SWEEP_S, 0 } };
        struct epoll_event e = { .events = EPOLLIN, .data.u64 = PF_TIMER_KEY };
        if (timerfd_settime(tfd, 0, &its, NULL) < 0 || epoll_ctl(pf_epoll, EPOLL_CTL_ADD, tfd, &e) < 0) {
                pf_init_err = errno;
                return;
        }
        int r = cc_thread_start_detached(pf_thread, (void *)(intptr_t)tfd, 0);
        if (r < 0)
                pf_init_err = -r;
}

/* ---- handlers ---------------------------------------------------------------- */

#define UNPACK(T, lower) \
        (Cocoon__Agent__##T *)agent_unpack(call, &cocoon__agent__##lower##__descriptor, pl, len)

static void h_open(ttrpc_call *call, const uint8_t *pl, size_t len, void *ud)
{
        Cocoon__Agent__PortForwardOpenRequest *req = UNPACK(PortForwardOpenRequest, port_forward_open_request);
        if (!req)
                return;
        uint32_t port = req->port;
        protobuf_c_message_free_unpacked(&req->base, NULL);
        if (port == 0 || port > 65535) {
                ttrpc_call_reply_status(call, TTRPC_CODE_INVALID_ARGUMENT, "port %u is out of range", port);
                return;
        }
        pthread_once(&pf_once, pf_init);
        if (pf_init_err) {
                ttrpc_call_reply_status(call, TTRPC_CODE_INTERNAL, "port-forward: %s", strerror(pf_init_err));
                return;
        }
        int netns = pf_target_netns();
        pthread_mutex_lock(&pf_lock);
        pf_conn *c = NULL;
        for (size_t i = 0; i < PORTFWD_MAX_HANDLES && !c; i++)
                if (pf_conns[i].state == PF_FREE)
                        c = &pf_conns[i];
        if (!c) {
                pthread_mutex_unlock(&pf_lock);
                if (netns >= 0)
                        close(netns);
                ttrpc_call_reply_status(call, TTRPC_CODE_RESOURCE_EXHAUSTED,
                                        "too many port-forward connections (%d)", PORTFWD_MAX_HANDLES);
                return;
        }
        c->state = PF_CONNECTING;
        c->port = (uint16_t)port;
        c->netns_fd = netns;
        c->last_call_s = now_s();
        pf_count++;
        int r = pf_connect(c, false);
        if (r < 0 && r != -ENOMEM && r != -EMFILE)
                r = pf_connect(c, true);
        if (r == 0) {
                pf_reply_open(c, call);
        } else if (r > 0) {
                c->open_call = call;
                pf_interest(c);
        } else {
                ttrpc_call_reply_status(call, TTRPC_CODE_UNAVAILABLE, "connect to port %u in the pod: %s",
                                        port, strerror(-r));
                pf_free(c, "connect failed");
        }
        pthread_mutex_unlock(&pf_lock);
}

static void h_write(ttrpc_call *call, const uint8_t *pl, size_t len, void *ud)
{
        Cocoon__Agent__PortForwardWriteRequest *req = UNPACK(PortForwardWriteRequest, port_forward_write_request);
        if (!req)
                return;
        pthread_mutex_lock(&pf_lock);
        pf_conn *c = pf_find(req->handle);
        if (!c || c->state != PF_OPEN) {
                ttrpc_call_reply_status(call, TTRPC_CODE_NOT_FOUND, "no port-forward handle %llx",
                                        (unsigned long long)req->handle);
        } else if (req->data.len > PF_WRITE_MAX) {
                ttrpc_call_reply_status(call, TTRPC_CODE_INVALID_ARGUMENT, "write of %zu bytes exceeds %u",
                                        req->data.len, PF_WRITE_MAX);
        } else if (c->writer) {
                ttrpc_call_reply_status(call, TTRPC_CODE_FAILED_PRECONDITION, "another write is pending");
        } else if (c->shut_wr_wanted && req->data.len > 0) {
                ttrpc_call_reply_status(call, TTRPC_CODE_FAILED_PRECONDITION, "write after close_write");
        } else if (c->out_err) {
                ttrpc_call_reply_status(call, TTRPC_CODE_UNAVAILABLE, "write to port %u: %s", c->port,
                                        strerror(c->out_err));
        } else {
                c->last_call_s = now_s();
                size_t need = c->out_len + req->data.len;
                uint8_t *nb = need ? realloc(c->out, need) : c->out;
                if (need && !nb) {
                        ttrpc_call_reply_status(call, TTRPC_CODE_RESOURCE_EXHAUSTED, "out of memory");
                } else {
                        c->out = nb;
                        if (req->data.len)
                                memcpy(c->out + c->out_len, req->data.data, req->data.len);
                        c->out_len = need;
                        if (req->close_write)
                                c->shut_wr_wanted = true;
                        c->writer = call;
                        pf_flush(c); /* answers now, or once the buffer drained */
                }
        }
        pthread_mutex_unlock(&pf_lock);
        protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void h_read(ttrpc_call *call, const uint8_t *pl, size_t len, void *ud)
{
        Cocoon__Agent__PortForwardReadRequest *req = UNPACK(PortForwardReadRequest, port_forward_read_request);
        if (!req)
                return;
        uint64_t h = req->handle;
        uint32_t want = req->max_len == 0 || req->max_len > PORTFWD_BUF ? PORTFWD_BUF : req->max_len;
        protobuf_c_message_free_unpacked(&req->base, NULL);
        pthread_mutex_lock(&pf_lock);
        pf_conn *c = pf_find(h);
        if (!c || c->state != PF_OPEN) {
                ttrpc_call_reply_status(call, TTRPC_CODE_NOT_FOUND, "no port-forward handle %llx",
                                        (unsigned long long)h);
        } else if (c->reader && ttrpc_call_is_alive(c->reader)) {
                ttrpc_call_reply_status(call, TTRPC_CODE_FAILED_PRECONDITION, "another read is pending");
        } else {
                if (c->reader)
                        ttrpc_call_reply_status(TAKE_PTR(c->reader), TTRPC_CODE_CANCELLED, "connection closed");
                c->last_call_s = now_s();
                c->reader = call;
                c->want = want;
                pf_answer_read(c);
        }
        pthread_mutex_unlock(&pf_lock);
}

static void h_close(ttrpc_call *call, const uint8_t *pl, size_t len, void *ud)
{
        Cocoon__Agent__PortForwardCloseRequest *req = UNPACK(PortForwardCloseRequest, port_forward_close_request);
        if (!req)
                return;
        uint64_t h = req->handle;
        protobuf_c_message_free_unpacked(&req->base, NULL);
        pthread_mutex_lock(&pf_lock);
        pf_conn *c = pf_find(h);
        if (!c || c->state != PF_OPEN) {
                pthread_mutex_unlock(&pf_lock);
                ttrpc_call_reply_status(call, TTRPC_CODE_NOT_FOUND, "no port-forward handle %llx",
                                        (unsigned long long)h);
                return;
        }
        pf_free(c, "closed by the host");
        pthread_mutex_unlock(&pf_lock);
        Cocoon__Agent__PortForwardEmpty e = COCOON__AGENT__PORT_FORWARD_EMPTY__INIT;
        ttrpc_call_reply_pb(call, &e.base);
}

int agent_portfwd_register(ttrpc_server *s, cc_error **ret_err)
{
        static const struct { const char *method; ttrpc_handler_fn fn; } tab[] = {
                { "Open", h_open },
                { "Write", h_write },
                { "Read", h_read },
                { "Close", h_close },
        };
        for (size_t i = 0; i < CC_ARRAY_SIZE(tab); i++)
                if (ttrpc_server_register(s, PF_SVC, tab[i].method, tab[i].fn, NULL, ret_err) < 0)
                        return -1;
        return 0;
}

unsigned agent_portfwd_count(void)
{
        pthread_mutex_lock(&pf_lock);
        unsigned n = pf_count;
        pthread_mutex_unlock(&pf_lock);
        return n;
}
