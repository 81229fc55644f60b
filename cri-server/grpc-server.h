/* SPDX-License-Identifier: Apache-2.0 */
/* A small, unary-only gRPC server on the gRPC core C API. This header and
 * grpc-server.c are the only places that know about grpc/grpc.h.
 *
 * One completion-queue thread accepts calls and receives their request
 * message; each call is then handed to a worker pool, so a slow handler
 * never blocks the others. Handlers run on worker threads, concurrently,
 * except the few cheap, non-blocking methods the caller marks inline (see
 * cri_grpc_server_opts.is_inline), which run on the completion-queue thread. */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

typedef struct cri_grpc_server cri_grpc_server;

/* What a handler knows about its call. */
typedef struct cri_call_info {
        const char *method;           /* "/runtime.v1.RuntimeService/Version" */
        int64_t deadline_ms;          /* CLOCK_MONOTONIC ms, INT64_MAX = none */
        const atomic_bool *cancelled; /* set when the client cancels or the deadline passes */
        void *call;                   /* for cri_grpc_stream_send */
} cri_call_info;

/* Server streaming: sends one message of the call's response stream and
 * waits until gRPC has taken it (flow control: a client that does not read
 * holds the sender here until it reads, cancels or goes away). 0, or
 * -ECANCELED when the call is over. The handler then answers with
 * cri_reply.streamed set: the final status goes without a message. */
int cri_grpc_stream_send(const cri_call_info *info, const uint8_t *msg, size_t len);

/* The reply a handler produces. resp is malloc'd (or NULL); msg is malloc'd
 * (or NULL) and only used when code != 0. */
typedef struct cri_reply {
        int code; /* gRPC status code, 0 = OK */
        char *msg;
        uint8_t *resp;
        size_t resp_len;
        bool streamed; /* messages went with cri_grpc_stream_send: status only */
} cri_reply;

typedef void (*cri_grpc_dispatch_fn)(void *userdata, const cri_call_info *info,
                                     const uint8_t *req, size_t req_len, cri_reply *reply);

typedef struct cri_grpc_server_opts {
        const char *address;          /* gRPC target, e.g. "unix:///run/cocoon/cocoon.sock" */
        int workers;                  /* max concurrent handlers */
        int max_recv_message_size;    /* bytes */
        int max_send_message_size;    /* bytes */
        cri_grpc_dispatch_fn dispatch;
        /* Optional: true for a method whose handler never blocks and is
         * cheap; it then runs on the completion-queue thread instead of a
         * worker (no thread hand-off). Must be fast and thread-safe. */
        bool (*is_inline)(void *userdata, const char *method);
        /* Optional: true for a server-streaming method. Its calls run on a
         * thread of their own, not a worker (a stream may last as long as
         * the client likes), and are cancelled when the server shuts down. */
        bool (*is_streaming)(void *userdata, const char *method);
        void *userdata;
} cri_grpc_server_opts;

/* Binds and starts serving. For unix: addresses the caller prepares the
 * directory and the stale-socket check (see cri_socket_prepare). */
int cri_grpc_server_start(const cri_grpc_server_opts *opts, cri_grpc_server **ret,
                          cc_error **ret_err);
/* Stops accepting calls, lets in-flight calls finish for up to timeout_ms,
 * then cancels the rest; returns once every call and worker is done. */
void cri_grpc_server_shutdown(cri_grpc_server *s, int timeout_ms);
void cri_grpc_server_free(cri_grpc_server *s);
/* Calls currently accepted and not yet finished. */
int cri_grpc_server_inflight(cri_grpc_server *s);

/* Process-wide init/teardown of the gRPC library. */
void cri_grpc_init(void);
void cri_grpc_shutdown(void);
