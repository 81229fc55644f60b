/* SPDX-License-Identifier: Apache-2.0 */
/* A minimal QMP (QEMU Machine Protocol) client over a unix stream socket.
 *
 * QMP is line-oriented JSON: the server greets with {"QMP": {...}}, the client
 * must send qmp_capabilities, then every {"execute": ..., "id": N} gets one
 * {"return": ...} or {"error": {"class", "desc"}} carrying the same id;
 * asynchronous {"event": ...} lines may arrive at any time.
 *
 * QEMU is trusted-ish, but some strings it sends (error descriptions, device
 * state) can be influenced by the guest: every line is bounded
 * (QMP_MAX_LINE), parsed with a depth limit, and error text is truncated and
 * made printable before it reaches a message. Every call takes a timeout; a
 * reply that arrives after its command timed out is recognised by its id and
 * dropped. A protocol violation (oversize or non-JSON line) breaks the
 * connection: later calls fail with -ENOTCONN. Not thread-safe: one caller at
 * a time per handle. */
#pragma once

#include <json-c/json.h>
#include <stddef.h>

#include "common/error.h"

#define QMP_MAX_LINE (256 * 1024)
#define QMP_MAX_EVENTS 32

typedef struct qmp qmp;

/* Connects to the QMP socket at path, reads the greeting and negotiates
 * capabilities, all within timeout_ms. A refused connection (the socket
 * exists but QEMU is not listening yet) is retried briefly. */
int qmp_connect(const char *path, int timeout_ms, qmp **ret, cc_error **ret_err);
/* Same over an already connected stream fd; takes ownership of fd (closed on
 * failure too). */
int qmp_open_fd(int fd, int timeout_ms, qmp **ret, cc_error **ret_err);
/* Runs one command. args (borrowed, may be NULL) must be a JSON object.
 * On success *ret_return (if ret_return) owns the "return" value. QMP errors
 * → -EOPNOTSUPP (CommandNotFound), -ENODEV (DeviceNotFound), -EIO (others),
 * with "qmp 'cmd': Class: desc" as message; -ETIMEDOUT; -ECONNRESET when QEMU
 * hung up. */
int qmp_execute(qmp *q, const char *cmd, json_object *args, int timeout_ms,
                json_object **ret_return, cc_error **ret_err);
/* getfd: hands fd (borrowed; QEMU gets its own copy) to QEMU under name,
 * for a later command that takes "fd:name" (migrate). */
int qmp_getfd(qmp *q, const char *name, int fd, int timeout_ms, cc_error **ret_err);
/* Pops the oldest collected event (at most QMP_MAX_EVENTS are kept, older ones
 * are dropped); returns 0 and sets *ret, or -ENOENT when none is queued. */
int qmp_next_event(qmp *q, json_object **ret);
/* Reads what is already readable (events) without blocking. */
int qmp_poll_events(qmp *q, cc_error **ret_err);
int qmp_fd(qmp *q);
void qmp_free(qmp *q);
static inline void qmp_freep(qmp **q) { if (*q) qmp_free(*q); }
#define _cleanup_qmp_ __attribute__((cleanup(qmp_freep)))
