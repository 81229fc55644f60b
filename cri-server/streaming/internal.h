/* SPDX-License-Identifier: Apache-2.0 */
/* Shared between the streaming server's files; not for other modules. */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "cri-server/streaming/server.h"

#define ST_MAX_HEAD 16384        /* HTTP request head */
#define ST_MAX_HEADERS 64
#define ST_STDIN_QUEUE 65536     /* bytes of stdin buffered per session == SPDY window */

/* ---- one accepted TCP connection ---- */
typedef struct st_conn {
        int fd;
        pthread_mutex_t wlock;   /* one writer at a time, whole frames */
        int idle_timeout_ms;     /* 0 = none */
        int linger_ms;           /* >0 once the session finished: bound the wait for the peer */
        _Atomic long long last_activity_ms;
        atomic_bool dead;        /* peer gone or fatal error: writers stop */
        unsigned char *rbuf;     /* bytes read past the HTTP head */
        size_t rlen, roff;
} st_conn;

long long st_now_ms(void);
/* Reads exactly n bytes (0), or fails: -ECONNRESET on EOF, -ETIMEDOUT on idle. */
int st_read_full(st_conn *c, void *buf, size_t n);
/* Reads 1..n bytes. */
ssize_t st_read_some(st_conn *c, void *buf, size_t n);
/* Writes all of iov under wlock. Returns 0 or negative errno (and marks dead). */
int st_writev_all(st_conn *c, struct iovec *iov, int n);
int st_write_locked(st_conn *c, struct iovec *iov, int n); /* caller holds wlock */
/* Marks the connection dead and wakes every blocked reader/writer. */
void st_conn_kill(st_conn *c);

/* ---- the parsed HTTP request ---- */
typedef struct st_header {
        char *name, *value;
} st_header;

typedef struct st_request {
        char *method, *path, *query;
        st_header headers[ST_MAX_HEADERS];
        int n_headers;
} st_request;

/* Value of the first header `name` (case-insensitive), or NULL. */
const char *st_request_header(const st_request *r, const char *name);
/* True if some header `name` contains `token` in its comma-separated list (case-insensitive). */
bool st_request_header_has_token(const st_request *r, const char *name, const char *token);
/* Query parameter (first occurrence), percent-decoded into buf; NULL if absent. */
const char *st_request_query(const st_request *r, const char *key, char *buf, size_t size);
/* Parses an HTTP/1.1 request head (up to and excluding the blank line);
 * strings point into `head`, which is modified. */
int st_request_parse(char *head, st_request *ret);

/* Sends a complete short HTTP response (Connection: close). extra_headers may be NULL;
 * each line must end with \r\n. */
int st_http_respond(st_conn *c, int code, const char *reason, const char *extra_headers, const char *body);

/* ---- what a protocol handler needs to know about the token ---- */
typedef struct st_ticket {
        streaming_kind kind;
        streaming_opts opts;          /* ports points into port_storage */
        uint16_t port_storage[64];
        void *payload;
        void (*payload_free)(void *);
        streaming_server *server;
        const streaming_backend_ops *ops;
        void *backend_data;
        int stream_creation_timeout_ms;
} st_ticket;

/* ---- channels: the protocol-independent view of a connection ---- */
enum {
        ST_CH_STDIN = 0,
        ST_CH_STDOUT = 1,
        ST_CH_STDERR = 2,
        ST_CH_ERROR = 3,
        ST_CH_RESIZE = 4,
        ST_CH_MAX = 5,
};

typedef struct st_transport st_transport;
typedef struct st_transport_ops {
        /* Blocking, honours flow control. 0 or negative errno. */
        int (*send)(st_transport *t, int ch, const void *buf, size_t len);
        /* Half-close (FIN) our side of a channel. */
        int (*close_channel)(st_transport *t, int ch);
        /* n bytes received on ch were consumed: reopen the window. */
        void (*credit)(st_transport *t, int ch, size_t n);
        /* The session is over: say goodbye (GOAWAY / close frame) and shut down writing. */
        void (*finish)(st_transport *t);
} st_transport_ops;

struct st_transport {
        const st_transport_ops *ops;
        st_conn *conn;
        int version;    /* remotecommand protocol: 1..5 (channel.k8s.io = 1, v2..v5) */
};

/* ---- remotecommand session (remotecommand.c) ---- */
typedef struct streaming_session rc_session;
/* Starts the backend; after success, the caller feeds input and must call
 * rc_session_client_gone() (or rc_session_input_eof-style calls) and finally
 * rc_session_join_free(). On failure the error status was already sent. */
int rc_session_start(st_ticket *tk, st_transport *t, rc_session **ret);
/* Input from the client. May block (stdin queue full) unless strict; with
 * strict (peer honours flow control) a full queue returns -ENOBUFS. */
int rc_session_input(rc_session *s, int ch, const void *buf, size_t len, bool strict);
void rc_session_input_eof(rc_session *s, int ch);
/* The connection is gone (EOF, error, idle): cancel the backend. */
void rc_session_client_gone(rc_session *s);
bool rc_session_finished(rc_session *s);
/* Waits for the session thread(s) and frees. */
void rc_session_join_free(rc_session *s);

/* Builds the error-channel text for the final status (exposed for tests):
 * version >= 4: Status JSON; else plain text ("" on success). */
char *rc_status_message(int version, int exit_code, const char *internal_error);

/* ---- server bookkeeping (server.c) ---- */
void st_server_session_count(streaming_server *s, int delta);
int st_server_idle_timeout_ms(streaming_server *s);

/* ---- protocol entry points: consume the connection after the 101 ---- */
void spdy_serve(st_conn *c, const st_request *req, st_ticket *tk);
void ws_serve(st_conn *c, const st_request *req, st_ticket *tk);

/* Thread creation with a small stack, signals blocked. */
int st_thread_create(pthread_t *t, void *(*fn)(void *), void *arg);
