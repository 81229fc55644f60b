/* SPDX-License-Identifier: Apache-2.0 */
/* One exec'd process in a container, driven through the agent: the shared
 * core of ExecSync (runtime/exec.c) and the streaming backend's Exec
 * (runtime/stream.c). Internal to runtime/.
 *
 * Three detached threads per process, each holding a reference: two output
 * pumps (ReadStdout/ReadStderr until EOF; a tty has only stdout) and a waiter
 * (WaitProcess). So a caller that gives up (timeout, client gone) never
 * blocks on the guest: it kills the process and drops its reference, and the
 * threads end when the agent answers (EOF, exit, or the connection closing).
 *
 * Output goes to a callback (streaming) or, with fn == NULL, into two
 * buffers capped at collect_cap bytes each; what is past the cap is read and
 * dropped so the process never blocks on a full pipe. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "runtime/runtime.h"

typedef struct rt_exec_proc rt_exec_proc;

/* From the pump threads. Returning < 0 stops delivery (the rest is still
 * drained and dropped). */
typedef int (*rt_exec_out_fn)(void *userdata, rt_agent_stream s, const void *buf, size_t len);

typedef struct rt_exec_proc_opts {
        char *const *argv;
        size_t argc;
        bool tty;
        bool stdin_;            /* false: stdin is closed at once (EOF) */
        uint16_t rows, cols;    /* initial tty size, 0: none */
        rt_exec_out_fn fn;      /* NULL: collect */
        void *userdata;
        size_t collect_cap;
} rt_exec_proc_opts;

/* t is borrowed (the process takes its own references). */
int rt_exec_proc_start(const rt_exec_target *t, const rt_exec_proc_opts *o, rt_exec_proc **ret,
                       cc_error **ret_err);
const char *rt_exec_proc_id(const rt_exec_proc *p);

/* Waits until the process exited and (with output) both streams reached EOF,
 * or the absolute CLOCK_MONOTONIC deadline (ns, 0: none) passed (-ETIMEDOUT),
 * or rt_exec_proc_cancel() was called (-ECANCELED). *ret_status: 0..255, or
 * 128+N for signal N. A failed WaitProcess (agent gone) is returned as its
 * error. */
int rt_exec_proc_wait(rt_exec_proc *p, bool output, int64_t deadline_ns, int *ret_status,
                      cc_error **ret_err);
/* SIGKILL to the process (not waited for). */
int rt_exec_proc_kill(rt_exec_proc *p, cc_error **ret_err);
/* Makes rt_exec_proc_wait() return -ECANCELED and stops delivery to fn;
 * after it returns fn is not running and will not be called again. */
void rt_exec_proc_cancel(rt_exec_proc *p);

int rt_exec_proc_write_stdin(rt_exec_proc *p, const void *buf, size_t len, cc_error **ret_err);
int rt_exec_proc_close_stdin(rt_exec_proc *p, cc_error **ret_err);
int rt_exec_proc_resize(rt_exec_proc *p, uint16_t rows, uint16_t cols, cc_error **ret_err);

/* Collect mode: hands out what was collected (malloc'd, may be NULL with
 * *ret_len 0) and whether the cap cut some off. */
void rt_exec_proc_take_output(rt_exec_proc *p, rt_agent_stream s, uint8_t **ret, size_t *ret_len,
                              bool *ret_truncated);

rt_exec_proc *rt_exec_proc_ref(rt_exec_proc *p);
void rt_exec_proc_unref(rt_exec_proc *p);
static inline void rt_exec_proc_unrefp(rt_exec_proc **p) { rt_exec_proc_unref(*p); }
#define _cleanup_rt_exec_proc_ __attribute__((cleanup(rt_exec_proc_unrefp)))

int64_t rt_exec_now_ns(void);
