/* SPDX-License-Identifier: Apache-2.0 */
/* The CRI streaming server: the URL that Exec/Attach/PortForward return.
 *
 * A CRI handler validates its request, then calls streaming_token_new() with
 * the session options and an opaque payload (what the backend needs: the
 * container id, the command, ...). The returned URL is single-use and expires
 * after [streaming] token_ttl seconds. When a client (kubelet / kubectl /
 * crictl) opens it, the server negotiates SPDY/3.1 or WebSocket, then drives
 * the backend (the runtime) through streaming_backend_ops.
 *
 * Threads: one accept thread, and per connection one reader thread plus one
 * session thread (bounded by max_connections); output is pushed by whatever
 * threads the backend uses, through streaming_session_write(). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

typedef enum streaming_kind {
        STREAMING_EXEC,
        STREAMING_ATTACH,
        STREAMING_PORTFORWARD,
        _STREAMING_KIND_MAX,
} streaming_kind;

const char *streaming_kind_to_string(streaming_kind k);

/* Which streams an exec/attach wants (from the CRI request); ports for a
 * port-forward (from PortForwardRequest.port; WebSocket clients may also name
 * them in ?port=/?ports=). */
typedef struct streaming_opts {
        bool stdin_, stdout_, stderr_, tty;
        const uint16_t *ports;
        size_t n_ports;
} streaming_opts;

typedef struct streaming_server streaming_server;
typedef struct streaming_session streaming_session;

/* What the runtime implements. `backend` is streaming_server_config.backend_data;
 * `payload` is the pointer given to streaming_token_new(). All ops are called
 * from server threads and may block (except cancel, which must return soon).
 *
 * Exec/attach life cycle, per session:
 *   start() → [write_stdin()* → close_stdin()] ‖ [resize()*] ‖ output pushed by
 *   the backend with streaming_session_write() → wait() → release().
 * cancel() is called (from another thread, possibly concurrently with wait()
 * or write_stdin()) when the client vanishes, the idle timeout fires, or the
 * server stops: the process must be killed (SIGKILL semantics; for attach:
 * detach) and its fds closed so that wait() returns soon.
 * wait() returns only after the process exited AND all of its output was
 * handed to streaming_session_write() (or that returned an error). */
typedef struct streaming_backend_ops {
        int (*start)(void *backend, streaming_session *session, streaming_kind kind, void *payload,
                     const streaming_opts *opts, void **ret_handle, cc_error **ret_err);
        /* Blocking write of all of buf; negative errno on failure. */
        int (*write_stdin)(void *handle, const void *buf, size_t len);
        int (*close_stdin)(void *handle);
        int (*resize)(void *handle, uint16_t width, uint16_t height);
        /* *ret_exit_code: the exit status (0..255; 128+N for signal N). */
        int (*wait)(void *handle, int *ret_exit_code, cc_error **ret_err);
        void (*cancel)(void *handle);
        void (*release)(void *handle);
        /* Port-forward: a connected, full-duplex, O_CLOEXEC fd (socket) to
         * `port` inside the pod. The server owns (closes) it. */
        int (*port_connect)(void *backend, void *payload, uint16_t port, cc_error **ret_err);
} streaming_backend_ops;

typedef enum streaming_channel {
        STREAMING_STDOUT = 1,
        STREAMING_STDERR = 2,
} streaming_channel;

/* Called by the backend: deliver output. Blocks while the client's flow
 * control window (or the TCP socket) is full. Returns 0, or -EPIPE once the
 * client is gone (the backend should stop producing and expect cancel()). */
int streaming_session_write(streaming_session *s, streaming_channel ch, const void *buf, size_t len);
/* Terminal size the client announced last (0,0 if none yet). */
void streaming_session_get_size(streaming_session *s, uint16_t *ret_width, uint16_t *ret_height);

typedef struct streaming_server_config {
        const char *address;   /* IPv4/IPv6 literal */
        uint16_t port;         /* 0 = ephemeral */
        int token_ttl;         /* seconds */
        int idle_timeout;      /* seconds, 0 = none */
        int stream_creation_timeout; /* seconds to wait for a client's streams; 0 = 30 */
        int max_connections;   /* 0 = 256 */
        const char *base_url;  /* NULL: "http://ADDRESS:PORT" */
        const streaming_backend_ops *ops;
        void *backend_data;
} streaming_server_config;

int streaming_server_new(const streaming_server_config *cfg, streaming_server **ret, cc_error **ret_err);
/* Stops accepting, cancels every session, joins all threads, frees. NULL ok. */
void streaming_server_free(streaming_server *s);
static inline void streaming_server_freep(streaming_server **s) { streaming_server_free(*s); }
#define _cleanup_streaming_server_ __attribute__((cleanup(streaming_server_freep)))

/* The bound port (useful with port 0) and the URL prefix. */
uint16_t streaming_server_port(const streaming_server *s);
const char *streaming_server_base_url(const streaming_server *s);

/* Registers a single-use token; returns the URL ("BASE/exec/TOKEN", malloc'd)
 * for the CRI response. The server takes ownership of payload (freed with
 * payload_free, which may be NULL) in every case, success or failure. opts is
 * copied. Fails with -ENOSPC when too many tokens are outstanding. */
char *streaming_token_new(streaming_server *s, streaming_kind kind, const streaming_opts *opts,
                          void *payload, void (*payload_free)(void *), cc_error **ret_err);

/* Counters for tests and metrics. */
typedef struct streaming_stats {
        unsigned active_connections;
        unsigned active_sessions;
        unsigned outstanding_tokens;
        unsigned long long sessions_total;
} streaming_stats;
void streaming_server_stats(streaming_server *s, streaming_stats *ret);
