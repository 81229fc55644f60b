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
 * With a tty there is only one stream (stdout).
 *
 * Reads carry no client-side timeout: a call that timed out on our side
 * would have its late answer discarded by the ttRPC client while the agent
 * counts that output as delivered. A read in flight therefore ends only when
 * the agent answers it: with data, with EOF (the process exited and its
 * output is drained), with NOT_FOUND (the container was removed; taken as
 * EOF), or with an error when the connection is closed or lost. After a lost
 * connection (-ECONNABORTED, -ECONNRESET, -EPIPE, -EPROTO) a stream waits for
 * rt_ctr_io_set_agent; the agent keeps what it could not deliver and hands it
 * to the next read. Other errors (e.g. a reply that fails the client's
 * checks) are retried after 1 s.
 *
 * Lifetime: reference counted (rt_ctr_io_ref/unref in runtime/runtime.h);
 * each stream thread holds a reference too. rt_ctr_io_free() never blocks on
 * a read in flight; see there. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"
#include "runtime/agent.h"
#include "runtime/logs.h"

typedef struct rt_ctr_io rt_ctr_io;

/* Start it after CreateContainer succeeded (before StartContainer, so that
 * no output waits): a read for an unknown container counts as EOF.
 * log_path may be NULL (no log: output is still drained so the container never
 * blocks). a may be NULL (the pump waits for rt_ctr_io_set_agent). The pump
 * takes its own reference on the agent; the caller keeps theirs. */
int rt_ctr_io_start(rt_agent *a, const char *ctr_id, const char *log_path, bool tty,
                    rt_ctr_io **ret, cc_error **ret_err);

/* After the agent connection was lost and dialed again: the pump threads
 * retry their read on the new connection (references a; drops its reference
 * on the previous one). NULL: the pump waits (no agent). */
void rt_ctr_io_set_agent(rt_ctr_io *io, rt_agent *a);

/* Attach: every byte read from now on is also passed to fn (from the pump
 * threads, one sink call at a time; fn may block, which holds the pump: like
 * a slow log disk). fn returning < 0 detaches it. fn must not call back into
 * this pump. Returns a handle > 0 for rt_ctr_io_detach. */
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

/* The owner is done with the pump: no read is started any more, every sink is
 * detached (no sink runs after this returns), and the owner's reference is
 * dropped. Returns at once. A read still in flight is not abandoned (its data
 * would be lost: the agent counts an answered read as delivered): it ends
 * when the agent answers it (see above), its data still goes to the log, and
 * the last reference flushes and closes the log. So free the pump once the
 * streams drained, after RemoveContainer, or after closing the agent
 * connection; freed earlier, a stream thread lingers until one of those.
 * Accepts NULL. */
void rt_ctr_io_free(rt_ctr_io *io);
