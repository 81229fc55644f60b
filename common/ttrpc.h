/* SPDX-License-Identifier: Apache-2.0 */
/* ttRPC: containerd's lightweight RPC framing, as spoken by the Kata agent.
 *
 * One library for both ends: cocoond is the client (the guest is UNTRUSTED:
 * every byte it sends is bounds-checked, a stalling or garbage-sending peer
 * can make calls fail but never hang or crash the caller), cocoon-agent is the
 * server. Any connected stream fd works: unix socket, vsock, a virtio-serial
 * port (/dev/vport*) or its host-side unix socket. Dependencies: libc,
 * pthread, libprotobuf-c (the agent links this statically).
 *
 * Wire format (containerd/ttrpc PROTOCOL.md): each frame is a 10-byte
 * big-endian header {u32 data length, u32 stream id, u8 type, u8 flags}
 * followed by `length` bytes. Length is at most 4 MiB; a larger frame poisons
 * the connection, which is then closed. Client streams are odd and strictly
 * increasing. A Request frame carries a ttrpc.Request envelope
 * (proto/ttrpc.proto) naming service and method; the Response frame on the
 * same stream carries ttrpc.Response {status, payload}. Only unary calls are
 * implemented (no Data frames / streaming).
 *
 * Status codes are gRPC codes (TTRPC_CODE_*). On the client a non-OK status
 * fails the call with cc_error.grpc = code, cc_error.code = a matching
 * negative errno (ttrpc_code_to_errno) and the peer's message (sanitised and
 * truncated) in cc_error.msg.
 *
 * All fds this library creates are O_CLOEXEC; fds handed to it are switched
 * to O_NONBLOCK and owned by it from then on. No function sleep-polls: waits
 * are poll(2) on the fd plus an eventfd, or condition variables on
 * CLOCK_MONOTONIC. Library code logs at debug level only. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "common/error.h"

/* ---- framing ------------------------------------------------------------ */

#define TTRPC_HEADER_SIZE 10
#define TTRPC_MAX_PAYLOAD (4u * 1024 * 1024)

enum {
        TTRPC_TYPE_REQUEST = 1,
        TTRPC_TYPE_RESPONSE = 2,
        TTRPC_TYPE_DATA = 3,
};

enum {
        TTRPC_FLAG_REMOTE_CLOSED = 0x01,
        TTRPC_FLAG_REMOTE_OPEN = 0x02,
};

typedef struct ttrpc_header {
        uint32_t length;    /* payload bytes following the header */
        uint32_t stream_id;
        uint8_t type;       /* TTRPC_TYPE_* */
        uint8_t flags;
} ttrpc_header;

void ttrpc_header_encode(const ttrpc_header *h, uint8_t out[TTRPC_HEADER_SIZE]);
/* Decodes and validates a header from hostile bytes: -EMSGSIZE if length >
 * TTRPC_MAX_PAYLOAD, -EBADMSG for an unknown type. Never touches *ret on
 * failure. */
int ttrpc_header_decode(const uint8_t in[TTRPC_HEADER_SIZE], ttrpc_header *ret, cc_error **ret_err);

/* ---- status codes ------------------------------------------------------- */

typedef enum ttrpc_code {
        TTRPC_CODE_OK = 0,
        TTRPC_CODE_CANCELLED = 1,
        TTRPC_CODE_UNKNOWN = 2,
        TTRPC_CODE_INVALID_ARGUMENT = 3,
        TTRPC_CODE_DEADLINE_EXCEEDED = 4,
        TTRPC_CODE_NOT_FOUND = 5,
        TTRPC_CODE_ALREADY_EXISTS = 6,
        TTRPC_CODE_PERMISSION_DENIED = 7,
        TTRPC_CODE_RESOURCE_EXHAUSTED = 8,
        TTRPC_CODE_FAILED_PRECONDITION = 9,
        TTRPC_CODE_ABORTED = 10,
        TTRPC_CODE_OUT_OF_RANGE = 11,
        TTRPC_CODE_UNIMPLEMENTED = 12,
        TTRPC_CODE_INTERNAL = 13,
        TTRPC_CODE_UNAVAILABLE = 14,
        TTRPC_CODE_DATA_LOSS = 15,
        TTRPC_CODE_UNAUTHENTICATED = 16,
        _TTRPC_CODE_MAX,
} ttrpc_code;

/* "OK", "NOT_FOUND", ...; "UNKNOWN_CODE" outside the table. */
const char *ttrpc_code_to_string(int code);
/* Negative errno -> gRPC code (-ENOENT -> NOT_FOUND, ...; default UNKNOWN). */
int ttrpc_code_from_errno(int negative_errno);
/* gRPC code -> negative errno (NOT_FOUND -> -ENOENT, ...; default -EIO). */
int ttrpc_code_to_errno(int code);

/* ---- client (cocoond side) ----------------------------------------------
 *
 * Threading: every function may be called from any thread, concurrently,
 * except ttrpc_client_free(), which must be the last use of the client (it
 * may race with ttrpc_client_close() and with calls still in flight: those
 * fail and are waited for). A reader thread owned by the client demultiplexes
 * responses by stream id, so many calls share one connection.
 *
 * Failures of ttrpc_client_call():
 *   -ETIMEDOUT     the per-call timeout expired (a late reply is discarded);
 *   -ECONNABORTED  ttrpc_client_close() was called;
 *   -ECONNRESET    the peer closed the connection;
 *   -EPROTO        the peer broke the protocol (oversize frame, garbage...),
 *                  the connection is closed and every pending call fails;
 *   -EMSGSIZE      the request does not fit in one frame;
 *   -EBADMSG       the response envelope could not be decoded;
 *   other          the peer's non-OK status, mapped by ttrpc_code_to_errno(),
 *                  with err->grpc set to the status code.
 */

typedef struct ttrpc_client ttrpc_client;

/* Takes ownership of the connected stream fd (closed on failure too) and
 * starts the reader thread. */
ttrpc_client *ttrpc_client_new(int fd, cc_error **ret_err);

/* One unary call. timeout_ms <= 0 waits until a reply or the connection dies.
 * The timeout covers queueing for the socket, sending and waiting, and is
 * sent to the server as Request.timeout_nano. On success *ret_resp is a
 * malloc'd copy of the response payload (NULL when empty) of *ret_resp_len
 * bytes; free() it. */
int ttrpc_client_call(ttrpc_client *c, const char *service, const char *method,
                      const void *req, size_t req_len, int64_t timeout_ms,
                      uint8_t **ret_resp, size_t *ret_resp_len, cc_error **ret_err);

/* Same with protobuf-c messages: packs req, unpacks the response with
 * resp_desc. Free *ret_resp with protobuf_c_message_free_unpacked(x, NULL). */
int ttrpc_client_call_pb(ttrpc_client *c, const char *service, const char *method,
                         const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
                         int64_t timeout_ms, ProtobufCMessage **ret_resp, cc_error **ret_err);

/* Shuts the connection down: every pending and later call fails with
 * -ECONNABORTED. Idempotent. Does not free. */
void ttrpc_client_close(ttrpc_client *c);
/* True once the connection is unusable (closed locally, by the peer or for a
 * protocol error). */
bool ttrpc_client_is_closed(ttrpc_client *c);
/* An fd that becomes readable (POLLIN) once the client is closed for any
 * reason; owned by the client, valid until ttrpc_client_free(). For event
 * loops that watch the agent connection. */
int ttrpc_client_closed_fd(ttrpc_client *c);
/* Closes, waits for calls in flight to return and the reader to stop, frees.
 * Accepts NULL. */
void ttrpc_client_free(ttrpc_client *c);
static inline void ttrpc_client_freep(ttrpc_client **c) { ttrpc_client_free(*c); }
#define _cleanup_ttrpc_client_ __attribute__((cleanup(ttrpc_client_freep)))

/* ---- server (cocoon-agent side) -----------------------------------------
 *
 * Register every handler before serving; the method table is read-only while
 * serving. ttrpc_server_serve_fd() may run on several threads at once (one
 * per connection). Handlers run on the serving thread of their connection,
 * one at a time per connection: a handler must not block. A handler answers
 * by calling exactly one ttrpc_call_reply*() either before returning or
 * later from any thread (deferred reply: WaitProcess, ReadStdout...). The
 * reply functions consume the call. If the connection is gone by then, the
 * reply is dropped and -ENOTCONN returned; ttrpc_call_is_alive() lets a
 * long-waiting handler give up early.
 */

typedef struct ttrpc_server ttrpc_server;
typedef struct ttrpc_call ttrpc_call;

/* payload is valid only during the handler; copy what a deferred reply
 * needs. */
typedef void (*ttrpc_handler_fn)(ttrpc_call *call, const uint8_t *payload, size_t payload_len,
                                 void *userdata);

ttrpc_server *ttrpc_server_new(cc_error **ret_err);
/* service e.g. "grpc.AgentService", method e.g. "CreateContainer".
 * -EEXIST if already registered. */
int ttrpc_server_register(ttrpc_server *s, const char *service, const char *method,
                          ttrpc_handler_fn fn, void *userdata, cc_error **ret_err);

/* Serves one connection on the calling thread. Takes ownership of fd and has
 * closed it when it returns. Returns:
 *    0            the peer closed the connection (EOF/hang-up; for a
 *                 virtio-serial port: the host disconnected, re-open it);
 *   -ECANCELED    ttrpc_server_shutdown() was called;
 *   <0 + ret_err  protocol violation (-EPROTO, -EMSGSIZE, -EBADMSG) or I/O
 *                 error; the connection was dropped.
 * Deferred calls of this connection outlive it and answer -ENOTCONN.
 * A guest virtio-serial port reads as EOF and polls POLLHUP for as long as no
 * host is attached: before serving it again, wait for the host (e.g. the
 * port's sysfs/udev notification), or this returns 0 at once. */
int ttrpc_server_serve_fd(ttrpc_server *s, int fd, cc_error **ret_err);

/* Accept loop on a listening socket (unix or vsock): every connection is
 * served on its own thread. Returns -ECANCELED after ttrpc_server_shutdown(),
 * once all connection threads have finished, or a negative errno if accept
 * fails hard. Switches listen_fd to O_NONBLOCK; does not close it. */
int ttrpc_server_serve_listener(ttrpc_server *s, int listen_fd, cc_error **ret_err);

/* Makes every serve loop of this server return -ECANCELED, promptly; later
 * serve calls return at once. Async-signal-unsafe, thread-safe. */
void ttrpc_server_shutdown(ttrpc_server *s);
/* Must not race with running serve loops (shut down and let them return
 * first). Deferred calls may outlive the server. Accepts NULL. */
void ttrpc_server_free(ttrpc_server *s);
static inline void ttrpc_server_freep(ttrpc_server **s) { ttrpc_server_free(*s); }
#define _cleanup_ttrpc_server_ __attribute__((cleanup(ttrpc_server_freep)))

/* Successful reply with a raw payload (may be NULL/0). Consumes call.
 * Returns 0, -ENOTCONN if the connection is gone, -EMSGSIZE if the payload
 * does not fit a frame (the caller then gets RESOURCE_EXHAUSTED). */
int ttrpc_call_reply(ttrpc_call *call, const void *payload, size_t len);
/* Successful reply with a packed protobuf-c message. Consumes call. */
int ttrpc_call_reply_pb(ttrpc_call *call, const ProtobufCMessage *msg);
/* Error reply with a gRPC status code and message. Consumes call. */
int ttrpc_call_reply_status(ttrpc_call *call, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
/* Error reply from a cc_error: code err->grpc if set, else derived from
 * err->code; message err->msg. Consumes call (not err). */
int ttrpc_call_reply_error(ttrpc_call *call, const cc_error *err);

const char *ttrpc_call_service(const ttrpc_call *call);
const char *ttrpc_call_method(const ttrpc_call *call);
uint32_t ttrpc_call_stream_id(const ttrpc_call *call);
/* The client's Request.timeout_nano (0 = none); informational. */
int64_t ttrpc_call_timeout_ns(const ttrpc_call *call);
/* False once the call's connection is closed (a reply would be dropped). */
bool ttrpc_call_is_alive(const ttrpc_call *call);
