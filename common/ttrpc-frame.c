/* SPDX-License-Identifier: Apache-2.0 */
/* ttRPC framing, status codes, and the connection shared by client and
 * server: one reader, serialized writers with deadlines, an eventfd that
 * releases every waiter when the connection dies. */
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
#include "common/ttrpc-internal.h"

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

uint64_t ttrpc_now_ns(void)
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
        uint64_t now = ttrpc_now_ns();
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

void ttrpc_cond_init_monotonic(pthread_cond_t *c)
{
        pthread_condattr_t a;
        pthread_condattr_init(&a);
        pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
        pthread_cond_init(c, &a);
        pthread_condattr_destroy(&a);
}

/* Waits on c until deadline (0 = none). Returns ETIMEDOUT or 0. */
int ttrpc_cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m, uint64_t deadline)
{
        if (deadline == 0)
                return pthread_cond_wait(c, m);
        struct timespec ts = deadline_ts(deadline);
        return pthread_cond_timedwait(c, m, &ts);
}

/* ---- connection --------------------------------------------------------- */


/* Takes ownership of fd (closed on failure too). */
int ttrpc_conn_new(int fd, int extra_wake_fd, ttrpc_conn **ret, cc_error **ret_err)
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

        ttrpc_conn *c = calloc(1, sizeof(*c));
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
        ttrpc_cond_init_monotonic(&c->cond);
        *ret = c;
        return 0;
}

void ttrpc_conn_ref(ttrpc_conn *c)
{
        pthread_mutex_lock(&c->mu);
        c->refs++;
        pthread_mutex_unlock(&c->mu);
}

void ttrpc_conn_unref(ttrpc_conn *c)
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
void ttrpc_conn_kill(ttrpc_conn *c)
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

bool ttrpc_conn_is_dead(ttrpc_conn *c)
{
        pthread_mutex_lock(&c->mu);
        bool d = c->dead;
        pthread_mutex_unlock(&c->mu);
        return d;
}

/* Kills the connection, waits for the writer to leave, closes the fd. */
void ttrpc_conn_close_fd(ttrpc_conn *c)
{
        ttrpc_conn_kill(c);
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
int ttrpc_conn_writer_lock(ttrpc_conn *c, uint64_t deadline)
{
        int r = 0;

        pthread_mutex_lock(&c->mu);
        while (c->writing && !c->dead) {
                if (ttrpc_cond_wait_until(&c->cond, &c->mu, deadline) == ETIMEDOUT && c->writing && !c->dead) {
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

void ttrpc_conn_writer_unlock(ttrpc_conn *c)
{
        pthread_mutex_lock(&c->mu);
        c->writing = false;
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->mu);
}

/* Waits for fd to become ready for `events`. 1 ready, 2 hung up or in error
 * without being ready (POLLHUP/POLLERR: the caller tries its I/O once more,
 * which reports EOF or the error; if that still says EAGAIN, the connection
 * is gone: a virtio-serial port without a host polls POLLHUP and writes
 * EAGAIN for as long as the host stays away, so waiting again would spin),
 * 0 timeout, -ENOTCONN if woken (connection dead or server shutdown), -errno
 * on poll failure. */
static int conn_wait(ttrpc_conn *c, short events, uint64_t deadline)
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
                if (p[0].revents & events)
                        return 1;
                if (p[0].revents & POLLNVAL)
                        return -EBADF;
                if (p[0].revents & (POLLHUP | POLLERR))
                        return 2;
        }
}

/* Writes one frame; caller holds the writer lock. A frame cut short leaves
 * the byte stream unusable, so any failure after the first byte kills the
 * connection. */
int ttrpc_conn_write_frame_locked(ttrpc_conn *c, const ttrpc_header *h, const void *payload,
                                   uint64_t deadline)
{
        uint8_t hdr[TTRPC_HEADER_SIZE];
        struct iovec iov[2] = {
                { .iov_base = hdr, .iov_len = sizeof(hdr) },
                { .iov_base = (void *)payload, .iov_len = h->length },
        };
        size_t total = sizeof(hdr) + h->length, sent = 0;
        int r = 0;

        bool hup = false;

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
                if (hup) { /* hung up and still not writable */
                        r = -EPIPE;
                        break;
                }
                r = conn_wait(c, POLLOUT, deadline);
                if (r == 0) {
                        r = -ETIMEDOUT;
                        break;
                }
                if (r < 0)
                        break;
                hup = r == 2;
                r = 0;
        }
        if (r < 0 && (sent > 0 || (r != -ETIMEDOUT && r != -ENOTCONN)))
                ttrpc_conn_kill(c);
        return r;
}

int ttrpc_conn_write_frame(ttrpc_conn *c, const ttrpc_header *h, const void *payload, uint64_t deadline)
{
        int r = ttrpc_conn_writer_lock(c, deadline);
        if (r < 0)
                return r;
        r = ttrpc_conn_write_frame_locked(c, h, payload, deadline);
        ttrpc_conn_writer_unlock(c);
        return r;
}

/* Reads exactly n bytes, through the connection's buffer: what is there
 * first, then small remainders by refilling it (taking whatever else the
 * peer sent), large ones straight into buf. wait_first: poll before the
 * first read, for a caller that expects to wait (the start of a frame):
 * saves the read that would only say EAGAIN. 0 ok, 1 EOF before the first
 * byte, -ECONNRESET EOF later, -ENOTCONN if woken, -errno. Only the
 * connection's reader calls it. */
static int conn_read_full(ttrpc_conn *c, void *buf, size_t n, bool wait_first)
{
        size_t got = CC_MIN(n, c->rlen - c->rpos);
        bool hup = false;

        memcpy(buf, c->rbuf + c->rpos, got);
        c->rpos += got;
        if (got < n && wait_first) {
                int r = conn_wait(c, POLLIN, 0);
                if (r < 0)
                        return r;
                hup = r == 2;
        }
        while (got < n) {
                bool direct = n - got >= sizeof(c->rbuf);
                ssize_t k = direct ? read(c->fd, (uint8_t *)buf + got, n - got)
                                   : read(c->fd, c->rbuf, sizeof(c->rbuf));
                if (k > 0) {
                        if (direct) {
                                got += (size_t)k;
                        } else {
                                size_t take = CC_MIN((size_t)k, n - got);
                                memcpy((uint8_t *)buf + got, c->rbuf, take);
                                got += take;
                                c->rpos = take;
                                c->rlen = (size_t)k;
                        }
                        hup = false;
                        continue;
                }
                if (k == 0)
                        return got == 0 ? 1 : -ECONNRESET;
                if (errno == EINTR)
                        continue;
                if (errno != EAGAIN)
                        return errno == EPIPE ? -ECONNRESET : -errno;
                if (hup) /* hung up, yet neither data nor EOF: treat as EOF */
                        return got == 0 ? 1 : -ECONNRESET;
                int r = conn_wait(c, POLLIN, 0);
                if (r < 0)
                        return r;
                hup = r == 2;
        }
        return 0;
}

/* Reads one frame. 0 with *ret_payload malloc'd (NULL if empty), 1 on clean
 * EOF at a frame boundary, negative errno otherwise (ret_err set except for
 * -ENOTCONN, which means "woken, connection dead or shut down"). */
int ttrpc_conn_read_frame(ttrpc_conn *c, ttrpc_header *ret_h, uint8_t **ret_payload, cc_error **ret_err)
{
        uint8_t raw[TTRPC_HEADER_SIZE];
        ttrpc_header h;
        int r;

        /* Drop what woke us if the connection was killed meanwhile. */
        if (ttrpc_conn_is_dead(c))
                return -ENOTCONN;
        r = conn_read_full(c, raw, sizeof(raw), true);
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
                r = conn_read_full(c, p, h.length, false);
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
int ttrpc_thread_start(pthread_t *ret, bool detached, void *(*fn)(void *), void *arg)
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
char *ttrpc_peer_string(const char *s)
{
        size_t n = s ? strnlen(s, TTRPC_PEER_MSG_MAX) : 0;
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

