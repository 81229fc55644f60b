/* SPDX-License-Identifier: Apache-2.0 */
/* A container's output pump: copies the stdout and stderr of a container's
 * main process from the agent (ReadStdout/ReadStderr, one blocking call per
 * stream in flight, on its own thread) into the container's CRI log file
 * (runtime/logs.h) and to any attached clients (Attach).
 *
 * The agent buffers a bounded amount of output while nobody reads (the
 * container's writes then block), so a cocoond restart loses nothing: the
 * new cocoond starts a new pump on the same log path (append) and the agent
 * hands over what was buffered.
 *
 * With a tty there is only one stream (stdout). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"
#include "runtime/agent.h"
#include "runtime/logs.h"

typedef struct rt_ctr_io rt_ctr_io;

/* log_path may be NULL (no log: output is still drained so the container never
 * blocks). The agent stays owned by the caller and must outlive the pump (or
 * be replaced with rt_ctr_io_set_agent before it is freed). */
int rt_ctr_io_start(rt_agent *a, const char *ctr_id, const char *log_path, bool tty,
                    rt_ctr_io **ret, cc_error **ret_err);

/* After the agent connection was lost and dialed again: the pump threads
 * retry their read on the new connection. NULL: the pump waits (no agent). */
void rt_ctr_io_set_agent(rt_ctr_io *io, rt_agent *a);

/* Attach: every byte read from now on is also passed to fn (from the pump
 * threads; fn may block, which holds the pump: like a slow log disk). fn
 * returning < 0 detaches it. Returns a handle > 0 for rt_ctr_io_detach. */
typedef int (*rt_ctr_io_sink_fn)(void *userdata, rt_agent_stream s, const void *buf, size_t len);
int rt_ctr_io_attach(rt_ctr_io *io, rt_ctr_io_sink_fn fn, void *userdata, cc_error **ret_err);
/* After it returns, fn is not running and will not be called again. */
void rt_ctr_io_detach(rt_ctr_io *io, int handle);

/* ReopenContainerLog. */
int rt_ctr_io_reopen_log(rt_ctr_io *io, cc_error **ret_err);

/* Waits until both streams reached EOF (the process exited and its output
 * was drained) or timeout_ms passed (-ETIMEDOUT), then flushes the log. */
int rt_ctr_io_wait_drained(rt_ctr_io *io, int timeout_ms, cc_error **ret_err);
bool rt_ctr_io_drained(rt_ctr_io *io);

/* Stops the threads (a read in flight is abandoned: the agent keeps the data
 * for the next reader), flushes and closes the log, frees. Accepts NULL. */
void rt_ctr_io_free(rt_ctr_io *io);
