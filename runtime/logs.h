/* SPDX-License-Identifier: Apache-2.0 */
/* Container logs in the kubelet's CRI format, one line per record:
 *
 *     2026-11-22T07:56:25.123456789Z stdout F hello
 *
 * "F" ends a line; a line longer than the record limit (16 KiB, as the
 * kubelet and containerd use) is split into "P" (partial) records followed by
 * a final "F". Output that ends without a newline is flushed as "P" records
 * at close (containerd does the same: the line did not end). Writes are
 * line-granular, so a reader never sees half a record. Thread-safe: stdout
 * and stderr of one container may be fed from two threads. */
#pragma once

#include <stddef.h>
#include <sys/types.h>

#include "common/error.h"

#define CRI_LOG_MAX_LINE (16 * 1024)

typedef enum cri_log_stream {
        CRI_LOG_STDOUT,
        CRI_LOG_STDERR,
} cri_log_stream;

typedef struct runtime_log runtime_log;

/* Opens (creating, appending) path; the directory must exist. */
int runtime_log_open(const char *path, runtime_log **ret, cc_error **ret_err);
/* Feeds bytes that a stream produced; complete lines are written at once. */
int runtime_log_write(runtime_log *l, cri_log_stream s, const void *buf, size_t len,
                      cc_error **ret_err);
/* Writes out a pending partial line of each stream (as "P"). */
int runtime_log_flush(runtime_log *l, cc_error **ret_err);
/* ReopenContainerLog: close and reopen the path (after the kubelet rotated
 * it); pending partial data is kept for the new file. */
int runtime_log_reopen(runtime_log *l, cc_error **ret_err);
/* Flushes and closes. Accepts NULL. */
void runtime_log_close(runtime_log *l);
