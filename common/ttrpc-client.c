/* SPDX-License-Identifier: Apache-2.0 */
/* ttRPC client: callers on any thread register a pending call, send their
 * request under the writer lock (stream ids reach the wire increasing) and
 * wait on their own condition variable; one reader thread matches responses
 * to pending calls by stream id. The peer is untrusted: malformed input
 * closes the connection and fails every pending call. */
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
#include "ttrpc.pb-c.h"

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
        ttrpc_conn *conn;
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
        ttrpc_conn_kill(c->conn);
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
                        msg = ttrpc_peer_string(rs->status->message);
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
                int r = ttrpc_conn_read_frame(c->conn, &h, &payload, &err);

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
        r = ttrpc_conn_new(fd, -1, &c->conn, ret_err);
        if (r < 0) {
                free(c);
                return NULL;
        }
        pthread_mutex_init(&c->mu, NULL);
        pthread_cond_init(&c->idle, NULL);
        c->next_id = 1;
        r = ttrpc_thread_start(&c->reader, false, client_reader, c);
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
        uint64_t deadline = timeout_ms > 0 ? ttrpc_now_ns() + (uint64_t)timeout_ms * 1000000ull : 0;
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
        ttrpc_cond_init_monotonic(&p.cond);

        /* Stream ids are allocated under the writer lock so that they reach
         * the wire strictly increasing, as servers require. */
        r = ttrpc_conn_writer_lock(c->conn, deadline);
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
                        r = ttrpc_conn_write_frame_locked(c->conn, &h, buf, deadline);
                }
                ttrpc_conn_writer_unlock(c->conn);
                if (r < 0 && r != -ETIMEDOUT && ttrpc_conn_is_dead(c->conn))
                        client_shutdown(c, r == -ENOTCONN ? -EPIPE : r);
                else if (r == -ETIMEDOUT && ttrpc_conn_is_dead(c->conn))
                        client_shutdown(c, -EPIPE); /* timed out mid-frame */
        }

        pthread_mutex_lock(&c->mu);
        if (r == 0)
                while (!p.done)
                        if (ttrpc_cond_wait_until(&p.cond, &c->mu, deadline) == ETIMEDOUT && !p.done) {
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
        ttrpc_conn_close_fd(c->conn);
        ttrpc_conn_unref(c->conn);
        pthread_cond_destroy(&c->idle);
        pthread_mutex_destroy(&c->mu);
        free(c);
}

