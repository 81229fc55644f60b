/* SPDX-License-Identifier: Apache-2.0 */
/* ttRPC server: a serve loop per connection reads requests and dispatches
 * them to handlers registered by (service, method); a handler's call object
 * holds a reference on the connection so that it can be answered later from
 * another thread.
 *
 * Sessions: on a virtio-serial port a host that disconnects and connects
 * again quickly is not seen as a new connection: the guest keeps reading
 * the same byte stream, and the new client starts again at stream id 1. A
 * Request on stream 1 after higher ids therefore starts a new session on the
 * connection. The calls of the old session are then dead (as if their
 * connection had closed): ttrpc_call_is_alive() is false and their replies
 * are dropped with -ENOTCONN, so a deferred answer (ReadStdout, WaitProcess)
 * can never reach the new client on a stream id it reuses, and the handler
 * keeps what it would have sent (the agent keeps undelivered output). The
 * switch is made under the connection's writer lock, so no old-session reply
 * is written once the serve loop has seen the new session's first request.
 * What the old session had written before that point (the server cannot know
 * of the new client earlier) reaches the new client, whose ttRPC client
 * drops responses for stream ids it has no call pending on. */
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

/* One client session on a connection (see above). */
typedef struct serve_session {
        unsigned refs;  /* atomic */
        bool stale;     /* written under the conn's writer lock, read with atomics */
} serve_session;

struct ttrpc_call {
        ttrpc_conn *conn;
        serve_session *session;
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

static serve_session *session_new(void)
{
        serve_session *ss = calloc(1, sizeof(*ss));
        if (ss)
                ss->refs = 1;
        return ss;
}

static serve_session *session_ref(serve_session *ss)
{
        __atomic_add_fetch(&ss->refs, 1, __ATOMIC_RELAXED);
        return ss;
}

static void session_unref(serve_session *ss)
{
        if (ss && __atomic_sub_fetch(&ss->refs, 1, __ATOMIC_ACQ_REL) == 0)
                free(ss);
}

static bool session_is_stale(const serve_session *ss)
{
        return ss && __atomic_load_n(&ss->stale, __ATOMIC_ACQUIRE);
}

/* Ends a session: waits for a reply being written to finish, so that none
 * of its replies is written after this returns. */
static void session_end(ttrpc_conn *c, serve_session *ss)
{
        bool locked = ttrpc_conn_writer_lock(c, 0) == 0; /* -ENOTCONN: dead, nothing is written */
        __atomic_store_n(&ss->stale, true, __ATOMIC_RELEASE);
        if (locked)
                ttrpc_conn_writer_unlock(c);
}

/* Sends a Response frame; ss: the session the call belongs to (NULL: the
 * current one, from the serve loop). -ENOTCONN if that session is over. */
static int send_response(ttrpc_conn *c, serve_session *ss, uint32_t id, int code, const char *msg,
                         const void *payload, size_t len)
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
        int r = ttrpc_conn_writer_lock(c, 0);
        if (r == 0) {
                if (session_is_stale(ss))
                        r = -ENOTCONN; /* a later session reuses the stream ids */
                else
                        r = ttrpc_conn_write_frame_locked(c, &h, buf, 0);
                ttrpc_conn_writer_unlock(c);
        }
        if (r < 0)
                log_debug("ttrpc server: reply on stream %" PRIu32 " not sent: %s", id, strerror(-r));
        return r;
}

static void call_free(ttrpc_call *call)
{
        ttrpc_conn_unref(call->conn);
        session_unref(call->session);
        free(call->service);
        free(call->method);
        free(call);
}

static int call_reply_status_str(ttrpc_call *call, int code, const char *msg)
{
        if (code <= TTRPC_CODE_OK || code >= _TTRPC_CODE_MAX)
                code = TTRPC_CODE_UNKNOWN;
        int r = send_response(call->conn, call->session, call->stream_id, code, msg, NULL, 0);
        if (r == -EMSGSIZE) /* an absurd message: send the code alone */
                r = send_response(call->conn, call->session, call->stream_id, code, "", NULL, 0);
        call_free(call);
        return r;
}

int ttrpc_call_reply(ttrpc_call *call, const void *payload, size_t len)
{
        int r = send_response(call->conn, call->session, call->stream_id, TTRPC_CODE_OK, NULL, payload, len);
        if (r == -EMSGSIZE) {
                send_response(call->conn, call->session, call->stream_id, TTRPC_CODE_RESOURCE_EXHAUSTED,
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
bool ttrpc_call_is_alive(const ttrpc_call *call)
{
        return !session_is_stale(call->session) && !ttrpc_conn_is_dead(call->conn);
}

/* Handles one frame. Negative (with ret_err) drops the connection. */
static int server_handle_frame(ttrpc_server *s, ttrpc_conn *c, const ttrpc_header *h, const uint8_t *payload,
                               uint32_t *last_id, serve_session **session, cc_error **ret_err)
{
        static const uint8_t empty[1];

        if (h->type != TTRPC_TYPE_REQUEST)
                return cc_error_set(ret_err, -EPROTO, "ttrpc: unexpected frame type %u on stream %" PRIu32,
                                    h->type, h->stream_id);
        if (h->stream_id == 1 && *last_id >= 1) {
                /* A new client on the same byte stream (virtio-serial
                 * reconnect): the old session's calls are over. */
                serve_session *ns = session_new();
                if (!ns)
                        return cc_error_set(ret_err, -ENOMEM, "ttrpc: out of memory");
                log_debug("ttrpc server: stream id 1 after %" PRIu32 ": a new client session", *last_id);
                session_end(c, *session);
                session_unref(*session);
                *session = ns;
                *last_id = 0;
        }
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
                send_response(c, NULL, h->stream_id, TTRPC_CODE_UNIMPLEMENTED, "streaming calls are not supported",
                              NULL, 0);
        else if (!(e = server_lookup(s, rq->service, rq->method))) {
                _cleanup_free_ char *svc = ttrpc_peer_string(rq->service), *m = ttrpc_peer_string(rq->method);
                _cleanup_free_ char *msg = NULL;
                if (asprintf(&msg, "method %s/%s not implemented", svc ? svc : "", m ? m : "") < 0)
                        msg = NULL;
                log_debug("ttrpc server: %s", msg ? msg : "unknown method");
                send_response(c, NULL, h->stream_id, TTRPC_CODE_UNIMPLEMENTED, msg ? msg : "method not implemented",
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
                        send_response(c, NULL, h->stream_id, TTRPC_CODE_RESOURCE_EXHAUSTED, "out of memory", NULL, 0);
                } else {
                        ttrpc_conn_ref(c);
                        call->conn = c;
                        call->session = session_ref(*session);
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
        ttrpc_conn *c = NULL;
        serve_session *session = session_new();
        int r;

        if (!session) {
                close(fd);
                return cc_error_set(ret_err, -ENOMEM, "ttrpc: out of memory");
        }
        r = ttrpc_conn_new(fd, s->shutdown_fd, &c, ret_err);
        if (r < 0) {
                session_unref(session);
                return r;
        }
        for (;;) {
                _cleanup_free_ uint8_t *payload = NULL;
                ttrpc_header h;

                pthread_mutex_lock(&s->mu);
                bool down = s->shutting_down;
                pthread_mutex_unlock(&s->mu);
                r = down ? -ENOTCONN : ttrpc_conn_read_frame(c, &h, &payload, ret_err);
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
                r = server_handle_frame(s, c, &h, payload, &last_id, &session, ret_err);
                if (r < 0)
                        break;
        }
        ttrpc_conn_close_fd(c);
        ttrpc_conn_unref(c);
        session_unref(session);
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
                r = ttrpc_thread_start(&t, true, serve_thread, a);
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
