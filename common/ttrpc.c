/* SPDX-License-Identifier: Apache-2.0 */
/* ttRPC client and server. See ttrpc.h for the protocol and threading rules.
 *
 * Layout: framing and status helpers, then `conn` (one stream fd shared by a
 * reader and serialized writers, with an eventfd that becomes readable when
 * the connection dies), then the client (a reader thread demultiplexing
 * responses to waiting callers) and the server (a serve loop per connection
 * dispatching to registered handlers, replies possibly deferred). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/ttrpc.h"
#include "ttrpc.pb-c.h"

/* Longest peer-supplied status message kept in a cc_error. */
#define PEER_MSG_MAX 512

/* ---- framing ------------------------------------------------------------ */

void ttrpc_header_encode(const ttrpc_header *h, uint8_t out[TTRPC_HEADER_SIZE])
{
        out[0] = (uint8_t)(h->length >> 24);
        out[1] = (uint8_t)(h->length >> 16);
        out[2] = (uint8_t)(h->length >> 8);
        out[3] = (uint8_t)h->length;
        out[4] = (uint8_t)(h->stream_id >> 24);
        out[5] = (uint8_t)(h->stream_id >> 16);
        out[6] = (uint8_t)(h->stream_id >> 8);
        out[7] = (uint8_t)h->stream_id;
        out[8] = h->type;
        out[9] = h->flags;
}

int ttrpc_header_decode(const uint8_t in[TTRPC_HEADER_SIZE], ttrpc_header *ret, cc_error **ret_err)
{
        ttrpc_header h = {
                .length = (uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 | (uint32_t)in[2] << 8 | in[3],
                .stream_id = (uint32_t)in[4] << 24 | (uint32_t)in[5] << 16 | (uint32_t)in[6] << 8 | in[7],
                .type = in[8],
                .flags = in[9],
        };

        if (h.length > TTRPC_MAX_PAYLOAD)
                return cc_error_set(ret_err, -EMSGSIZE, "ttrpc frame of %" PRIu32 " bytes exceeds %u",
                                    h.length, TTRPC_MAX_PAYLOAD);
        if (h.type < TTRPC_TYPE_REQUEST || h.type > TTRPC_TYPE_DATA)
                return cc_error_set(ret_err, -EBADMSG, "ttrpc frame of unknown type %u", h.type);
        *ret = h;
        return 0;
}

/* ---- status codes ------------------------------------------------------- */

static const char *const code_names[_TTRPC_CODE_MAX] = {
        [TTRPC_CODE_OK] = "OK",
        [TTRPC_CODE_CANCELLED] = "CANCELLED",
        [TTRPC_CODE_UNKNOWN] = "UNKNOWN",
        [TTRPC_CODE_INVALID_ARGUMENT] = "INVALID_ARGUMENT",
        [TTRPC_CODE_DEADLINE_EXCEEDED] = "DEADLINE_EXCEEDED",
        [TTRPC_CODE_NOT_FOUND] = "NOT_FOUND",
        [TTRPC_CODE_ALREADY_EXISTS] = "ALREADY_EXISTS",
        [TTRPC_CODE_PERMISSION_DENIED] = "PERMISSION_DENIED",
        [TTRPC_CODE_RESOURCE_EXHAUSTED] = "RESOURCE_EXHAUSTED",
        [TTRPC_CODE_FAILED_PRECONDITION] = "FAILED_PRECONDITION",
        [TTRPC_CODE_ABORTED] = "ABORTED",
        [TTRPC_CODE_OUT_OF_RANGE] = "OUT_OF_RANGE",
        [TTRPC_CODE_UNIMPLEMENTED] = "UNIMPLEMENTED",
        [TTRPC_CODE_INTERNAL] = "INTERNAL",
        [TTRPC_CODE_UNAVAILABLE] = "UNAVAILABLE",
        [TTRPC_CODE_DATA_LOSS] = "DATA_LOSS",
        [TTRPC_CODE_UNAUTHENTICATED] = "UNAUTHENTICATED",
};

const char *ttrpc_code_to_string(int code)
{
        if (code < 0 || code >= _TTRPC_CODE_MAX)
                return "UNKNOWN_CODE";
        return code_names[code];
}

int ttrpc_code_from_errno(int negative_errno)
{
        switch (negative_errno) {
        case 0: return TTRPC_CODE_OK;
        case -ECANCELED: return TTRPC_CODE_CANCELLED;
        case -EINVAL: return TTRPC_CODE_INVALID_ARGUMENT;
        case -ETIMEDOUT: return TTRPC_CODE_DEADLINE_EXCEEDED;
        case -ENOENT: case -ESRCH: return TTRPC_CODE_NOT_FOUND;
        case -EEXIST: return TTRPC_CODE_ALREADY_EXISTS;
        case -EPERM: case -EACCES: return TTRPC_CODE_PERMISSION_DENIED;
        case -ENOSPC: case -ENOMEM: case -EMSGSIZE: case -EMFILE: return TTRPC_CODE_RESOURCE_EXHAUSTED;
        case -EBUSY: case -ENOTEMPTY: return TTRPC_CODE_FAILED_PRECONDITION;
        case -ERANGE: case -EOVERFLOW: return TTRPC_CODE_OUT_OF_RANGE;
        case -EOPNOTSUPP: case -ENOSYS: return TTRPC_CODE_UNIMPLEMENTED;
        case -EAGAIN: case -ECONNREFUSED: case -ECONNRESET: case -ENOTCONN: return TTRPC_CODE_UNAVAILABLE;
        case -EBADMSG: case -EPROTO: case -EIO: return TTRPC_CODE_INTERNAL;
        default: return TTRPC_CODE_UNKNOWN;
        }
}

int ttrpc_code_to_errno(int code)
{
        switch (code) {
        case TTRPC_CODE_OK: return 0;
        case TTRPC_CODE_CANCELLED: return -ECANCELED;
        case TTRPC_CODE_INVALID_ARGUMENT: return -EINVAL;
        case TTRPC_CODE_DEADLINE_EXCEEDED: return -ETIMEDOUT;
        case TTRPC_CODE_NOT_FOUND: return -ENOENT;
        case TTRPC_CODE_ALREADY_EXISTS: return -EEXIST;
        case TTRPC_CODE_PERMISSION_DENIED: return -EPERM;
        case TTRPC_CODE_RESOURCE_EXHAUSTED: return -ENOSPC;
        case TTRPC_CODE_FAILED_PRECONDITION: case TTRPC_CODE_ABORTED: return -EBUSY;
        case TTRPC_CODE_OUT_OF_RANGE: return -ERANGE;
        case TTRPC_CODE_UNIMPLEMENTED: return -EOPNOTSUPP;
        case TTRPC_CODE_UNAVAILABLE: return -EAGAIN;
        case TTRPC_CODE_UNAUTHENTICATED: return -EACCES;
        default: return -EIO;
        }
}

/* ---- time --------------------------------------------------------------- */

static uint64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* poll(2) timeout until deadline (0 = none → -1), rounded up. */
static int poll_timeout(uint64_t deadline)
{
        if (deadline == 0)
                return -1;
        uint64_t now = now_ns();
        if (now >= deadline)
                return 0;
        uint64_t ms = (deadline - now + 999999) / 1000000;
        return ms > INT_MAX ? INT_MAX : (int)ms;
}

static struct timespec deadline_ts(uint64_t deadline)
{
        return (struct timespec){ .tv_sec = (time_t)(deadline / 1000000000ull),
                                  .tv_nsec = (long)(deadline % 1000000000ull) };
}

static void cond_init_monotonic(pthread_cond_t *c)
{
        pthread_condattr_t a;
        pthread_condattr_init(&a);
        pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
        pthread_cond_init(c, &a);
        pthread_condattr_destroy(&a);
}

/* Waits on c until deadline (0 = none). Returns ETIMEDOUT or 0. */
static int cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m, uint64_t deadline)
{
        if (deadline == 0)
                return pthread_cond_wait(c, m);
        struct timespec ts = deadline_ts(deadline);
        return pthread_cond_timedwait(c, m, &ts);
}

/* ---- connection --------------------------------------------------------- */

typedef struct conn {
        int fd;             /* -1 once closed */
        int wake_fd;        /* eventfd, readable once dead */
        int extra_wake_fd;  /* also ends waits when readable (server shutdown), or -1 */
        bool is_socket;     /* sendmsg(MSG_NOSIGNAL) rather than writev */

        pthread_mutex_t mu;
        pthread_cond_t cond; /* writer hand-off and drain */
        bool writing;
        bool dead;
        bool shut;           /* shutdown(2) done */
        unsigned refs;
} conn;

/* Takes ownership of fd (closed on failure too). */
static int conn_new(int fd, int extra_wake_fd, conn **ret, cc_error **ret_err)
{
        _cleanup_close_ int owned = fd;
        struct stat st;
        int flags;

        if (fd < 0)
                return cc_error_set(ret_err, -EBADF, "ttrpc: invalid fd");
        if (fstat(fd, &st) < 0)
                return cc_error_errno(ret_err, "ttrpc: fstat");
        flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return cc_error_errno(ret_err, "ttrpc: set O_NONBLOCK");
        flags = fcntl(fd, F_GETFD);
        if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0)
                return cc_error_errno(ret_err, "ttrpc: set FD_CLOEXEC");

        conn *c = calloc(1, sizeof(*c));
        if (!c)
                return cc_error_set(ret_err, -ENOMEM, "ttrpc: out of memory");
        c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (c->wake_fd < 0) {
                int r = cc_error_errno(ret_err, "ttrpc: eventfd");
                free(c);
                return r;
        }
        c->fd = TAKE_FD(owned);
        c->extra_wake_fd = extra_wake_fd;
        c->is_socket = S_ISSOCK(st.st_mode);
        c->refs = 1;
        pthread_mutex_init(&c->mu, NULL);
        cond_init_monotonic(&c->cond);
        *ret = c;
        return 0;
}

static void conn_ref(conn *c)
{
        pthread_mutex_lock(&c->mu);
        c->refs++;
        pthread_mutex_unlock(&c->mu);
}

static void conn_unref(conn *c)
{
        if (!c)
                return;
        pthread_mutex_lock(&c->mu);
        bool last = --c->refs == 0;
        pthread_mutex_unlock(&c->mu);
        if (!last)
                return;
        if (c->fd >= 0)
                close(c->fd);
        close(c->wake_fd);
        pthread_cond_destroy(&c->cond);
        pthread_mutex_destroy(&c->mu);
        free(c);
}

/* Marks the connection dead, wakes every waiter, and shuts the socket down so
 * the peer sees EOF. Idempotent. */
static void conn_kill(conn *c)
{
        pthread_mutex_lock(&c->mu);
        if (!c->dead) {
                c->dead = true;
                uint64_t one = 1;
                (void)!write(c->wake_fd, &one, sizeof(one));
        }
        if (!c->shut && c->fd >= 0 && c->is_socket) {
                shutdown(c->fd, SHUT_RDWR);
                c->shut = true;
        }
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->mu);
}

static bool conn_is_dead(conn *c)
{
        pthread_mutex_lock(&c->mu);
        bool d = c->dead;
        pthread_mutex_unlock(&c->mu);
        return d;
}

/* Kills the connection, waits for the writer to leave, closes the fd. */
static void conn_close_fd(conn *c)
{
        conn_kill(c);
        pthread_mutex_lock(&c->mu);
        while (c->writing)
                pthread_cond_wait(&c->cond, &c->mu);
        if (c->fd >= 0) {
                close(c->fd);
                c->fd = -1;
        }
        pthread_mutex_unlock(&c->mu);
}

/* Becomes the only writer. -ETIMEDOUT at deadline, -ENOTCONN if dead. */
static int conn_writer_lock(conn *c, uint64_t deadline)
{
        int r = 0;

        pthread_mutex_lock(&c->mu);
        while (c->writing && !c->dead) {
                if (cond_wait_until(&c->cond, &c->mu, deadline) == ETIMEDOUT && c->writing && !c->dead) {
                        r = -ETIMEDOUT;
                        break;
                }
        }
        if (r == 0 && c->dead)
                r = -ENOTCONN;
        if (r == 0)
                c->writing = true;
        pthread_mutex_unlock(&c->mu);
        return r;
}

static void conn_writer_unlock(conn *c)
{
        pthread_mutex_lock(&c->mu);
        c->writing = false;
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->mu);
}

/* Waits for fd to become ready for `events`. 1 ready, 0 timeout, -ENOTCONN
 * if woken (connection dead or server shutdown), -errno on poll failure. */
static int conn_wait(conn *c, short events, uint64_t deadline)
{
        for (;;) {
                struct pollfd p[3] = {
                        { .fd = c->fd, .events = events },
                        { .fd = c->wake_fd, .events = POLLIN },
                        { .fd = c->extra_wake_fd, .events = POLLIN },
                };
                int n = poll(p, c->extra_wake_fd >= 0 ? 3 : 2, poll_timeout(deadline));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (p[1].revents || (c->extra_wake_fd >= 0 && p[2].revents))
                        return -ENOTCONN;
                if (n == 0)
                        return 0;
                if (p[0].revents)
                        return 1;
        }
}

/* Writes one frame; caller holds the writer lock. A frame cut short leaves
 * the byte stream unusable, so any failure after the first byte kills the
 * connection. */
static int conn_write_frame_locked(conn *c, const ttrpc_header *h, const void *payload,
                                   uint64_t deadline)
{
        uint8_t hdr[TTRPC_HEADER_SIZE];
        struct iovec iov[2] = {
                { .iov_base = hdr, .iov_len = sizeof(hdr) },
                { .iov_base = (void *)payload, .iov_len = h->length },
        };
        size_t total = sizeof(hdr) + h->length, sent = 0;
        int r = 0;

        ttrpc_header_encode(h, hdr);
        while (sent < total) {
                struct iovec v[2];
                int nv = 0;
                size_t off = sent;
                for (int i = 0; i < 2; i++) {
                        if (off >= iov[i].iov_len) {
                                off -= iov[i].iov_len;
                                continue;
                        }
                        v[nv].iov_base = (uint8_t *)iov[i].iov_base + off;
                        v[nv].iov_len = iov[i].iov_len - off;
                        nv++;
                        off = 0;
                }
                ssize_t n;
                if (c->is_socket) {
                        struct msghdr m = { .msg_iov = v, .msg_iovlen = (size_t)nv };
                        n = sendmsg(c->fd, &m, MSG_NOSIGNAL);
                } else
                        n = writev(c->fd, v, nv);
                if (n > 0) {
                        sent += (size_t)n;
                        continue;
                }
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno != EAGAIN) {
                        r = -errno;
                        break;
                }
                r = conn_wait(c, POLLOUT, deadline);
                if (r == 0) {
                        r = -ETIMEDOUT;
                        break;
                }
                if (r < 0)
                        break;
                r = 0;
        }
        if (r < 0 && (sent > 0 || (r != -ETIMEDOUT && r != -ENOTCONN)))
                conn_kill(c);
        return r;
}

static int conn_write_frame(conn *c, const ttrpc_header *h, const void *payload, uint64_t deadline)
{
        int r = conn_writer_lock(c, deadline);
        if (r < 0)
                return r;
        r = conn_write_frame_locked(c, h, payload, deadline);
        conn_writer_unlock(c);
        return r;
}

/* Reads exactly n bytes. 0 ok, 1 EOF before the first byte, -ECONNRESET EOF
 * later, -ENOTCONN if woken, -errno. Only the connection's reader calls it. */
static int conn_read_full(conn *c, void *buf, size_t n)
{
        size_t got = 0;

        while (got < n) {
                ssize_t k = read(c->fd, (uint8_t *)buf + got, n - got);
                if (k > 0) {
                        got += (size_t)k;
                        continue;
                }
                if (k == 0)
                        return got == 0 ? 1 : -ECONNRESET;
                if (errno == EINTR)
                        continue;
                if (errno != EAGAIN)
                        return errno == EPIPE ? -ECONNRESET : -errno;
                int r = conn_wait(c, POLLIN, 0);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Reads one frame. 0 with *ret_payload malloc'd (NULL if empty), 1 on clean
 * EOF at a frame boundary, negative errno otherwise (ret_err set except for
 * -ENOTCONN, which means "woken, connection dead or shut down"). */
static int conn_read_frame(conn *c, ttrpc_header *ret_h, uint8_t **ret_payload, cc_error **ret_err)
{
        uint8_t raw[TTRPC_HEADER_SIZE];
        ttrpc_header h;
        int r;

        /* Drop what woke us if the connection was killed meanwhile. */
        if (conn_is_dead(c))
                return -ENOTCONN;
        r = conn_read_full(c, raw, sizeof(raw));
        if (r == 1 || r == -ENOTCONN)
                return r;
        if (r < 0)
                return r == -ECONNRESET ? cc_error_set(ret_err, r, "ttrpc: connection closed inside a frame header")
                                        : cc_error_set(ret_err, r, "ttrpc: read: %s", strerror(-r));
        r = ttrpc_header_decode(raw, &h, ret_err);
        if (r < 0)
                return r;

        _cleanup_free_ uint8_t *p = NULL;
        if (h.length > 0) {
                p = malloc(h.length);
                if (!p)
                        return cc_error_set(ret_err, -ENOMEM, "ttrpc: out of memory");
                r = conn_read_full(c, p, h.length);
                if (r == -ENOTCONN)
                        return r;
                if (r != 0)
                        return cc_error_set(ret_err, r > 0 ? -ECONNRESET : r,
                                            "ttrpc: connection closed inside a %" PRIu32 "-byte frame",
                                            h.length);
        }
        *ret_h = h;
        *ret_payload = TAKE_PTR(p);
        return 0;
}

/* Starts a thread with every signal blocked, so that signals stay with the
 * application's threads. */
static int thread_start(pthread_t *ret, bool detached, void *(*fn)(void *), void *arg)
{
        sigset_t all, old;
        pthread_attr_t a;
        int r;

        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        pthread_attr_init(&a);
        if (detached)
                pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        r = pthread_create(ret, &a, fn, arg);
        pthread_attr_destroy(&a);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        return -r;
}

/* Copy of a peer-supplied string safe to log: bounded, control characters
 * replaced. */
static char *peer_string(const char *s)
{
        size_t n = s ? strnlen(s, PEER_MSG_MAX) : 0;
        char *o = malloc(n + 1);
        if (!o)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                unsigned char ch = (unsigned char)s[i];
                o[i] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
        }
        o[n] = 0;
        return o;
}

/* ---- client ------------------------------------------------------------- */

typedef struct pending {
        struct pending *next;
        uint32_t id;
        bool done;
        int err;         /* local failure (negative errno), 0 if answered */
        int code;        /* peer status code */
        char *msg;       /* peer status message, sanitised */
        uint8_t *payload;
        size_t len;
        pthread_cond_t cond;
} pending;

struct ttrpc_client {
        conn *conn;
        pthread_t reader;
        bool reader_started;

        pthread_mutex_t mu;  /* everything below */
        pthread_cond_t idle; /* in_flight reached 0 */
        pending *pending;
        uint32_t next_id;
        unsigned in_flight;
        bool closed;
        int close_reason;
};

/* Fails every pending call with reason and kills the connection. The first
 * reason sticks. */
static void client_shutdown(ttrpc_client *c, int reason)
{
        pthread_mutex_lock(&c->mu);
        if (!c->closed) {
                c->closed = true;
                c->close_reason = reason;
                for (pending *p = c->pending; p; p = p->next)
                        if (!p->done) {
                                p->done = true;
                                p->err = reason;
                                pthread_cond_signal(&p->cond);
                        }
        }
        pthread_mutex_unlock(&c->mu);
        conn_kill(c->conn);
}

static void client_deliver(ttrpc_client *c, const ttrpc_header *h, const uint8_t *payload)
{
        static const uint8_t empty[1];
        Ttrpc__Response *rs = ttrpc__response__unpack(NULL, h->length, payload ? payload : empty);
        int err = 0, code = 0;
        _cleanup_free_ char *msg = NULL;
        _cleanup_free_ uint8_t *data = NULL;
        size_t len = 0;

        if (!rs)
                err = -EBADMSG;
        else {
                if (rs->status && rs->status->code != 0) {
                        code = rs->status->code;
                        msg = peer_string(rs->status->message);
                        if (!msg)
                                err = -ENOMEM;
                }
                if (err == 0 && code == 0 && rs->payload.len > 0) {
                        data = malloc(rs->payload.len);
                        if (data) {
                                memcpy(data, rs->payload.data, rs->payload.len);
                                len = rs->payload.len;
                        } else
                                err = -ENOMEM;
                }
                ttrpc__response__free_unpacked(rs, NULL);
        }

        pthread_mutex_lock(&c->mu);
        pending *p = c->pending;
        while (p && p->id != h->stream_id)
                p = p->next;
        if (p && !p->done) {
                p->done = true;
                p->err = err;
                p->code = code;
                p->msg = TAKE_PTR(msg);
                p->payload = TAKE_PTR(data);
                p->len = len;
                pthread_cond_signal(&p->cond);
        }
        pthread_mutex_unlock(&c->mu);
        if (!p)
                log_debug("ttrpc client: dropped response for unknown stream %" PRIu32, h->stream_id);
}

static void *client_reader(void *arg)
{
        ttrpc_client *c = arg;

        for (;;) {
                _cleanup_error_ cc_error *err = NULL;
                _cleanup_free_ uint8_t *payload = NULL;
                ttrpc_header h;
                int r = conn_read_frame(c->conn, &h, &payload, &err);

                if (r == -ENOTCONN) {
                        /* Closed locally, or a failed write broke the stream. */
                        client_shutdown(c, -EPIPE);
                        break;
                }
                if (r == 1) {
                        log_debug("ttrpc client: peer closed the connection");
                        client_shutdown(c, -ECONNRESET);
                        break;
                }
                if (r < 0) {
                        log_debug("ttrpc client: %s; closing the connection", err ? err->msg : strerror(-r));
                        client_shutdown(c, r == -EMSGSIZE || r == -EBADMSG ? -EPROTO : r);
                        break;
                }
                if (h.type != TTRPC_TYPE_RESPONSE || h.stream_id % 2 == 0) {
                        log_debug("ttrpc client: unexpected frame type %u on stream %" PRIu32
                                  "; closing the connection", h.type, h.stream_id);
                        client_shutdown(c, -EPROTO);
                        break;
                }
                client_deliver(c, &h, payload);
        }
        return NULL;
}

ttrpc_client *ttrpc_client_new(int fd, cc_error **ret_err)
{
        ttrpc_client *c = calloc(1, sizeof(*c));
        int r;

        if (!c) {
                if (fd >= 0)
                        close(fd);
                return cc_error_set(ret_err, -ENOMEM, "ttrpc: out of memory"), NULL;
        }
        r = conn_new(fd, -1, &c->conn, ret_err);
        if (r < 0) {
                free(c);
                return NULL;
        }
        pthread_mutex_init(&c->mu, NULL);
        pthread_cond_init(&c->idle, NULL);
        c->next_id = 1;
        r = thread_start(&c->reader, false, client_reader, c);
        if (r < 0) {
                cc_error_set(ret_err, r, "ttrpc: cannot start reader thread: %s", strerror(-r));
                ttrpc_client_free(c);
                return NULL;
        }
        c->reader_started = true;
        return c;
}

static const char *close_reason_str(int r)
{
        switch (r) {
        case -ECONNABORTED: return "connection closed";
        case -ECONNRESET: return "connection closed by the peer";
        case -EPROTO: return "peer broke the ttrpc protocol, connection closed";
        case -EPIPE: return "connection broken";
        default: return strerror(-r);
        }
}

int ttrpc_client_call(ttrpc_client *c, const char *service, const char *method,
                      const void *req, size_t req_len, int64_t timeout_ms,
                      uint8_t **ret_resp, size_t *ret_resp_len, cc_error **ret_err)
{
        uint64_t deadline = timeout_ms > 0 ? now_ns() + (uint64_t)timeout_ms * 1000000ull : 0;
        Ttrpc__Request rq = TTRPC__REQUEST__INIT;
        _cleanup_free_ uint8_t *buf = NULL;
        pending p = { 0 };
        size_t sz;
        int r;

        if (!c || !service || !method)
                return cc_error_set(ret_err, -EINVAL, "ttrpc: invalid call arguments");
        if (req_len > TTRPC_MAX_PAYLOAD)
                return cc_error_set(ret_err, -EMSGSIZE, "ttrpc %s/%s: request of %zu bytes is too large",
                                    service, method, req_len);
        rq.service = (char *)service;
        rq.method = (char *)method;
        rq.payload.data = (uint8_t *)req;
        rq.payload.len = req ? req_len : 0;
        rq.timeout_nano = timeout_ms > 0 ? timeout_ms * 1000000 : 0;
        sz = ttrpc__request__get_packed_size(&rq);
        if (sz > TTRPC_MAX_PAYLOAD)
                return cc_error_set(ret_err, -EMSGSIZE, "ttrpc %s/%s: request of %zu bytes is too large",
                                    service, method, sz);
        buf = malloc(sz ? sz : 1);
        if (!buf)
                return cc_error_set(ret_err, -ENOMEM, "ttrpc: out of memory");
        ttrpc__request__pack(&rq, buf);

        pthread_mutex_lock(&c->mu);
        if (c->closed) {
                r = c->close_reason;
                pthread_mutex_unlock(&c->mu);
                return cc_error_set(ret_err, r, "ttrpc %s/%s: %s", service, method, close_reason_str(r));
        }
        c->in_flight++;
        pthread_mutex_unlock(&c->mu);
        cond_init_monotonic(&p.cond);

        /* Stream ids are allocated under the writer lock so that they reach
         * the wire strictly increasing, as servers require. */
        r = conn_writer_lock(c->conn, deadline);
        if (r == 0) {
                pthread_mutex_lock(&c->mu);
                if (c->closed)
                        r = c->close_reason;
                else if (c->next_id > UINT32_MAX - 2)
                        r = -EOVERFLOW; /* 2^31 calls: the owner reconnects */
                else {
                        p.id = c->next_id;
                        c->next_id += 2;
                        p.next = c->pending;
                        c->pending = &p;
                }
                pthread_mutex_unlock(&c->mu);
                if (r == 0) {
                        ttrpc_header h = { .length = (uint32_t)sz, .stream_id = p.id,
                                           .type = TTRPC_TYPE_REQUEST };
                        r = conn_write_frame_locked(c->conn, &h, buf, deadline);
                }
                conn_writer_unlock(c->conn);
                if (r < 0 && r != -ETIMEDOUT && conn_is_dead(c->conn))
                        client_shutdown(c, r == -ENOTCONN ? -EPIPE : r);
                else if (r == -ETIMEDOUT && conn_is_dead(c->conn))
                        client_shutdown(c, -EPIPE); /* timed out mid-frame */
        }

        pthread_mutex_lock(&c->mu);
        if (r == 0)
                while (!p.done)
                        if (cond_wait_until(&p.cond, &c->mu, deadline) == ETIMEDOUT && !p.done) {
                                r = -ETIMEDOUT;
                                break;
                        }
        for (pending **i = &c->pending; *i; i = &(*i)->next)
                if (*i == &p) {
                        *i = p.next;
                        break;
                }
        if (r == -ENOTCONN && c->closed)
                r = c->close_reason;
        if (--c->in_flight == 0)
                pthread_cond_broadcast(&c->idle);
        pthread_mutex_unlock(&c->mu);
        pthread_cond_destroy(&p.cond);

        if (r == 0 && p.done && p.err < 0)
                r = p.err;
        if (r == -ETIMEDOUT)
                cc_error_set(ret_err, r, "ttrpc %s/%s: timed out after %" PRId64 " ms", service, method,
                             timeout_ms);
        else if (r == -EBADMSG)
                cc_error_set(ret_err, r, "ttrpc %s/%s: malformed response envelope", service, method);
        else if (r < 0)
                cc_error_set(ret_err, r, "ttrpc %s/%s: %s", service, method, close_reason_str(r));
        else if (p.code != 0) {
                int code = p.code > 0 && p.code < _TTRPC_CODE_MAX ? p.code : TTRPC_CODE_UNKNOWN;
                r = cc_error_set(ret_err, ttrpc_code_to_errno(code), "ttrpc %s/%s: %s: %s", service, method,
                                 ttrpc_code_to_string(code), p.msg ? p.msg : "");
                if (ret_err)
                        (*ret_err)->grpc = code;
        }
        free(p.msg);
        if (r < 0) {
                free(p.payload);
                return r;
        }
        if (ret_resp)
                *ret_resp = p.payload;
        else
                free(p.payload);
        if (ret_resp_len)
                *ret_resp_len = p.len;
        return 0;
}

int ttrpc_client_call_pb(ttrpc_client *c, const char *service, const char *method,
                         const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
                         int64_t timeout_ms, ProtobufCMessage **ret_resp, cc_error **ret_err)
{
        static const uint8_t empty[1];
        _cleanup_free_ uint8_t *buf = NULL, *resp = NULL;
        size_t sz, resp_len = 0;
        int r;

        if (!req || !resp_desc || !method)
                return cc_error_set(ret_err, -EINVAL, "ttrpc: invalid call arguments");
        sz = protobuf_c_message_get_packed_size(req);
        if (sz > TTRPC_MAX_PAYLOAD)
                return cc_error_set(ret_err, -EMSGSIZE, "ttrpc %s/%s: request of %zu bytes is too large",
                                    service ? service : "", method, sz);
        buf = malloc(sz ? sz : 1);
        if (!buf)
                return cc_error_set(ret_err, -ENOMEM, "ttrpc: out of memory");
        protobuf_c_message_pack(req, buf);
        r = ttrpc_client_call(c, service, method, buf, sz, timeout_ms, &resp, &resp_len, ret_err);
        if (r < 0)
                return r;
        ProtobufCMessage *m = protobuf_c_message_unpack(resp_desc, NULL, resp_len, resp ? resp : empty);
        if (!m)
                return cc_error_set(ret_err, -EBADMSG, "ttrpc %s/%s: malformed %s response", service, method,
                                    resp_desc->name);
        if (ret_resp)
                *ret_resp = m;
        else
                protobuf_c_message_free_unpacked(m, NULL);
        return 0;
}

void ttrpc_client_close(ttrpc_client *c)
{
        if (c)
                client_shutdown(c, -ECONNABORTED);
}

bool ttrpc_client_is_closed(ttrpc_client *c)
{
        pthread_mutex_lock(&c->mu);
        bool r = c->closed;
        pthread_mutex_unlock(&c->mu);
        return r;
}

int ttrpc_client_closed_fd(ttrpc_client *c)
{
        return c->conn->wake_fd;
}

void ttrpc_client_free(ttrpc_client *c)
{
        if (!c)
                return;
        client_shutdown(c, -ECONNABORTED);
        pthread_mutex_lock(&c->mu);
        while (c->in_flight > 0)
                pthread_cond_wait(&c->idle, &c->mu);
        pthread_mutex_unlock(&c->mu);
        if (c->reader_started)
                pthread_join(c->reader, NULL);
        conn_close_fd(c->conn);
        conn_unref(c->conn);
        pthread_cond_destroy(&c->idle);
        pthread_mutex_destroy(&c->mu);
        free(c);
}

/* ---- server ------------------------------------------------------------- */

typedef struct method_entry {
        struct method_entry *next;
        char *service;
        char *method;
        ttrpc_handler_fn fn;
        void *userdata;
} method_entry;

struct ttrpc_server {
        method_entry *methods;
        int shutdown_fd; /* eventfd, readable once shut down */

        pthread_mutex_t mu;
        pthread_cond_t cond; /* conn_threads changed */
        unsigned conn_threads;
        bool shutting_down;
};

struct ttrpc_call {
        conn *conn;
        uint32_t stream_id;
        int64_t timeout_ns;
        char *service;
        char *method;
};

ttrpc_server *ttrpc_server_new(cc_error **ret_err)
{
        ttrpc_server *s = calloc(1, sizeof(*s));
        if (!s)
                return cc_error_set(ret_err, -ENOMEM, "ttrpc: out of memory"), NULL;
        s->shutdown_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (s->shutdown_fd < 0) {
                cc_error_errno(ret_err, "ttrpc: eventfd");
                free(s);
                return NULL;
        }
        pthread_mutex_init(&s->mu, NULL);
        pthread_cond_init(&s->cond, NULL);
        return s;
}

static method_entry *server_lookup(ttrpc_server *s, const char *service, const char *method)
{
        for (method_entry *e = s->methods; e; e = e->next)
                if (strcmp(e->service, service) == 0 && strcmp(e->method, method) == 0)
                        return e;
        return NULL;
}

int ttrpc_server_register(ttrpc_server *s, const char *service, const char *method,
                          ttrpc_handler_fn fn, void *userdata, cc_error **ret_err)
{
        if (!s || !service || !method || !fn)
                return cc_error_set(ret_err, -EINVAL, "ttrpc: invalid handler registration");
        if (server_lookup(s, service, method))
                return cc_error_set(ret_err, -EEXIST, "ttrpc: %s/%s already registered", service, method);
        method_entry *e = calloc(1, sizeof(*e));
        if (!e || !(e->service = strdup(service)) || !(e->method = strdup(method))) {
                if (e) {
                        free(e->service);
                        free(e);
                }
                return cc_error_set(ret_err, -ENOMEM, "ttrpc: out of memory");
        }
        e->fn = fn;
        e->userdata = userdata;
        e->next = s->methods;
        s->methods = e;
        return 0;
}

static int send_response(conn *c, uint32_t id, int code, const char *msg, const void *payload, size_t len)
{
        Ttrpc__Status st = TTRPC__STATUS__INIT;
        Ttrpc__Response rs = TTRPC__RESPONSE__INIT;
        _cleanup_free_ uint8_t *buf = NULL;

        if (len > TTRPC_MAX_PAYLOAD)
                return -EMSGSIZE;
        if (code != TTRPC_CODE_OK) {
                st.code = code;
                st.message = (char *)(msg ? msg : "");
                rs.status = &st;
        }
        rs.payload.data = (uint8_t *)payload;
        rs.payload.len = payload ? len : 0;
        size_t sz = ttrpc__response__get_packed_size(&rs);
        if (sz > TTRPC_MAX_PAYLOAD)
                return -EMSGSIZE;
        buf = malloc(sz ? sz : 1);
        if (!buf)
                return -ENOMEM;
        ttrpc__response__pack(&rs, buf);
        ttrpc_header h = { .length = (uint32_t)sz, .stream_id = id, .type = TTRPC_TYPE_RESPONSE };
        int r = conn_write_frame(c, &h, buf, 0);
        if (r < 0)
                log_debug("ttrpc server: reply on stream %" PRIu32 " not sent: %s", id, strerror(-r));
        return r;
}

static void call_free(ttrpc_call *call)
{
        conn_unref(call->conn);
        free(call->service);
        free(call->method);
        free(call);
}

static int call_reply_status_str(ttrpc_call *call, int code, const char *msg)
{
        if (code <= TTRPC_CODE_OK || code >= _TTRPC_CODE_MAX)
                code = TTRPC_CODE_UNKNOWN;
        int r = send_response(call->conn, call->stream_id, code, msg, NULL, 0);
        if (r == -EMSGSIZE) /* an absurd message: send the code alone */
                r = send_response(call->conn, call->stream_id, code, "", NULL, 0);
        call_free(call);
        return r;
}

int ttrpc_call_reply(ttrpc_call *call, const void *payload, size_t len)
{
        int r = send_response(call->conn, call->stream_id, TTRPC_CODE_OK, NULL, payload, len);
        if (r == -EMSGSIZE) {
                send_response(call->conn, call->stream_id, TTRPC_CODE_RESOURCE_EXHAUSTED,
                              "response too large for one ttrpc frame", NULL, 0);
        }
        call_free(call);
        return r;
}

int ttrpc_call_reply_pb(ttrpc_call *call, const ProtobufCMessage *msg)
{
        size_t sz = protobuf_c_message_get_packed_size(msg);
        if (sz > TTRPC_MAX_PAYLOAD) {
                call_reply_status_str(call, TTRPC_CODE_RESOURCE_EXHAUSTED, "response too large for one ttrpc frame");
                return -EMSGSIZE;
        }
        _cleanup_free_ uint8_t *buf = malloc(sz ? sz : 1);
        if (!buf) {
                call_reply_status_str(call, TTRPC_CODE_RESOURCE_EXHAUSTED, "out of memory");
                return -ENOMEM;
        }
        protobuf_c_message_pack(msg, buf);
        return ttrpc_call_reply(call, buf, sz);
}

int ttrpc_call_reply_status(ttrpc_call *call, int code, const char *fmt, ...)
{
        _cleanup_free_ char *msg = NULL;
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        return call_reply_status_str(call, code, msg ? msg : "");
}

int ttrpc_call_reply_error(ttrpc_call *call, const cc_error *err)
{
        int code = TTRPC_CODE_UNKNOWN;
        if (err)
                code = err->grpc > 0 ? err->grpc : ttrpc_code_from_errno(err->code);
        return call_reply_status_str(call, code, err && err->msg ? err->msg : "");
}

const char *ttrpc_call_service(const ttrpc_call *call) { return call->service; }
const char *ttrpc_call_method(const ttrpc_call *call) { return call->method; }
uint32_t ttrpc_call_stream_id(const ttrpc_call *call) { return call->stream_id; }
int64_t ttrpc_call_timeout_ns(const ttrpc_call *call) { return call->timeout_ns; }
bool ttrpc_call_is_alive(const ttrpc_call *call) { return !conn_is_dead(call->conn); }

/* Handles one frame. Negative (with ret_err) drops the connection. */
static int server_handle_frame(ttrpc_server *s, conn *c, const ttrpc_header *h, const uint8_t *payload,
                               uint32_t *last_id, cc_error **ret_err)
{
        static const uint8_t empty[1];

        if (h->type != TTRPC_TYPE_REQUEST)
                return cc_error_set(ret_err, -EPROTO, "ttrpc: unexpected frame type %u on stream %" PRIu32,
                                    h->type, h->stream_id);
        if (h->stream_id % 2 == 0 || h->stream_id <= *last_id)
                return cc_error_set(ret_err, -EPROTO,
                                    "ttrpc: request stream id %" PRIu32 " is not odd and increasing",
                                    h->stream_id);
        *last_id = h->stream_id;

        Ttrpc__Request *rq = ttrpc__request__unpack(NULL, h->length, payload ? payload : empty);
        if (!rq)
                return cc_error_set(ret_err, -EBADMSG, "ttrpc: malformed request on stream %" PRIu32,
                                    h->stream_id);

        method_entry *e = NULL;
        if (h->flags & TTRPC_FLAG_REMOTE_OPEN)
                send_response(c, h->stream_id, TTRPC_CODE_UNIMPLEMENTED, "streaming calls are not supported",
                              NULL, 0);
        else if (!(e = server_lookup(s, rq->service, rq->method))) {
                _cleanup_free_ char *svc = peer_string(rq->service), *m = peer_string(rq->method);
                _cleanup_free_ char *msg = NULL;
                if (asprintf(&msg, "method %s/%s not implemented", svc ? svc : "", m ? m : "") < 0)
                        msg = NULL;
                log_debug("ttrpc server: %s", msg ? msg : "unknown method");
                send_response(c, h->stream_id, TTRPC_CODE_UNIMPLEMENTED, msg ? msg : "method not implemented",
                              NULL, 0);
        } else {
                ttrpc_call *call = calloc(1, sizeof(*call));
                if (call) {
                        call->service = strdup(e->service);
                        call->method = strdup(e->method);
                }
                if (!call || !call->service || !call->method) {
                        if (call) {
                                free(call->service);
                                free(call->method);
                                free(call);
                        }
                        send_response(c, h->stream_id, TTRPC_CODE_RESOURCE_EXHAUSTED, "out of memory", NULL, 0);
                } else {
                        conn_ref(c);
                        call->conn = c;
                        call->stream_id = h->stream_id;
                        call->timeout_ns = rq->timeout_nano;
                        e->fn(call, rq->payload.data ? rq->payload.data : empty, rq->payload.len, e->userdata);
                }
        }
        ttrpc__request__free_unpacked(rq, NULL);
        return 0;
}

int ttrpc_server_serve_fd(ttrpc_server *s, int fd, cc_error **ret_err)
{
        uint32_t last_id = 0;
        conn *c = NULL;
        int r;

        r = conn_new(fd, s->shutdown_fd, &c, ret_err);
        if (r < 0)
                return r;
        for (;;) {
                _cleanup_free_ uint8_t *payload = NULL;
                ttrpc_header h;

                pthread_mutex_lock(&s->mu);
                bool down = s->shutting_down;
                pthread_mutex_unlock(&s->mu);
                r = down ? -ENOTCONN : conn_read_frame(c, &h, &payload, ret_err);
                if (r == 1) {
                        log_debug("ttrpc server: peer closed the connection");
                        r = 0;
                        break;
                }
                if (r == -ENOTCONN) {
                        pthread_mutex_lock(&s->mu);
                        down = s->shutting_down;
                        pthread_mutex_unlock(&s->mu);
                        r = down ? cc_error_set(ret_err, -ECANCELED, "ttrpc: server shut down")
                                 : cc_error_set(ret_err, -EPIPE, "ttrpc: write to the connection failed");
                        break;
                }
                if (r < 0)
                        break;
                r = server_handle_frame(s, c, &h, payload, &last_id, ret_err);
                if (r < 0)
                        break;
        }
        conn_close_fd(c);
        conn_unref(c);
        return r;
}

typedef struct serve_arg {
        ttrpc_server *s;
        int fd;
} serve_arg;

static void *serve_thread(void *arg)
{
        serve_arg *a = arg;
        ttrpc_server *s = a->s;
        _cleanup_error_ cc_error *err = NULL;

        int r = ttrpc_server_serve_fd(s, a->fd, &err);
        if (r < 0 && r != -ECANCELED)
                log_debug("ttrpc server: connection dropped: %s", err->msg);
        free(a);
        pthread_mutex_lock(&s->mu);
        s->conn_threads--;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->mu);
        return NULL;
}

int ttrpc_server_serve_listener(ttrpc_server *s, int listen_fd, cc_error **ret_err)
{
        int flags = fcntl(listen_fd, F_GETFL), r;

        if (flags < 0 || fcntl(listen_fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return cc_error_errno(ret_err, "ttrpc: set O_NONBLOCK on listener");
        for (;;) {
                struct pollfd p[2] = {
                        { .fd = listen_fd, .events = POLLIN },
                        { .fd = s->shutdown_fd, .events = POLLIN },
                };
                if (poll(p, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        r = cc_error_errno(ret_err, "ttrpc: poll");
                        break;
                }
                if (p[1].revents) {
                        r = cc_error_set(ret_err, -ECANCELED, "ttrpc: server shut down");
                        break;
                }
                if (!p[0].revents)
                        continue;
                int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0) {
                        if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED ||
                            errno == EPROTO || errno == EPERM)
                                continue;
                        r = cc_error_errno(ret_err, "ttrpc: accept");
                        break;
                }
                serve_arg *a = malloc(sizeof(*a));
                pthread_t t;
                if (!a) {
                        close(fd);
                        continue;
                }
                *a = (serve_arg){ .s = s, .fd = fd };
                pthread_mutex_lock(&s->mu);
                s->conn_threads++;
                pthread_mutex_unlock(&s->mu);
                r = thread_start(&t, true, serve_thread, a);
                if (r < 0) {
                        log_debug("ttrpc server: cannot start connection thread: %s", strerror(-r));
                        close(fd);
                        free(a);
                        pthread_mutex_lock(&s->mu);
                        s->conn_threads--;
                        pthread_mutex_unlock(&s->mu);
                }
        }
        /* Connection threads end once the server is shut down; on a hard
         * accept error they keep serving until their peers leave. */
        if (r == -ECANCELED) {
                pthread_mutex_lock(&s->mu);
                while (s->conn_threads > 0)
                        pthread_cond_wait(&s->cond, &s->mu);
                pthread_mutex_unlock(&s->mu);
        }
        return r;
}

void ttrpc_server_shutdown(ttrpc_server *s)
{
        uint64_t one = 1;

        pthread_mutex_lock(&s->mu);
        s->shutting_down = true;
        pthread_mutex_unlock(&s->mu);
        (void)!write(s->shutdown_fd, &one, sizeof(one));
}

void ttrpc_server_free(ttrpc_server *s)
{
        if (!s)
                return;
        /* Threads of serve_listener may still be leaving after a hard error. */
        ttrpc_server_shutdown(s);
        pthread_mutex_lock(&s->mu);
        while (s->conn_threads > 0)
                pthread_cond_wait(&s->cond, &s->mu);
        pthread_mutex_unlock(&s->mu);
        while (s->methods) {
                method_entry *e = s->methods;
                s->methods = e->next;
                free(e->service);
                free(e->method);
                free(e);
        }
        close(s->shutdown_fd);
        pthread_cond_destroy(&s->cond);
        pthread_mutex_destroy(&s->mu);
        free(s);
}
