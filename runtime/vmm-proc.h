/* SPDX-License-Identifier: Apache-2.0 */
/* Internal to the VMM drivers and virtiofsd (implemented in runtime/vmm.c):
 * waiting for a helper process's socket, ending a process through its pidfd,
 * and reading a log's tail for error messages. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "common/spawn.h"

/* An inotify fd watching dir for created/moved-in entries. Set it up before
 * spawning the process that will create the file, so no event is missed. */
int vmm_watch_dir(const char *dir, cc_error **ret_err);
/* Waits until dir/name exists (checked first, then on every inotify event),
 * the process behind pidfd exits (-ECHILD) or timeout_ms passes
 * (-ETIMEDOUT). No sleeping: one poll on the two fds. */
int vmm_wait_file(int inotify_fd, const char *dir, const char *name, int pidfd, int timeout_ms,
                  cc_error **ret_err);
/* CLOCK_MONOTONIC in ms, for deadlines. */
int64_t vmm_mono_ms(void);
/* Waits until pidfd is readable (the process exited); 0, or -ETIMEDOUT. */
int vmm_wait_exit(int pidfd, int timeout_ms);
/* Sends sig (0: none) to p through pidfd (or kill() after re-checking pid +
 * start time when pidfd < 0), waits timeout_ms, then SIGKILL and waits up to
 * 5 s more; waitpid()s when reap (our child). 0 once the process is gone, or
 * it was already gone; -ETIMEDOUT if it survived SIGKILL (stuck in D state). */
int vmm_proc_terminate(const cc_proc *p, int pidfd, int sig, int timeout_ms, bool reap);
/* Non-blocking waitpid of our child p (no-op when it is not our child). */
void vmm_proc_reap(const cc_proc *p);
/* The last line (at most max bytes, printable ASCII, no trailing newline) of
 * a log file, or "" — for error messages. Never fails. */
void vmm_log_tail(const char *path, char *buf, size_t max);
/* Appends ",," escaping for QEMU's option syntax (a comma in a value must be
 * doubled), so a path never injects options. NULL on ENOMEM. */
char *vmm_qemu_escape(const char *s);

/* After a failed start, when the process behind pidfd has exited: *err is
 * replaced by -EIO "<who> exited during start: <last log line>" (at most
 * tail_max bytes of it). Returns the error code left in *err. */
int vmm_error_exited(cc_error **err, const char *who, const char *log_path, size_t tail_max);

/* The fields every driver's saved record starts with, in this order:
 * version, backend, id, pid, start_time, run_dir. */
typedef struct vmm_saved_header {
        int64_t version, pid, start_time;
        const char *backend, *id, *run_dir; /* point into the record */
} vmm_saved_header;
/* Adds them to o (a driver saving a started process). */
void vmm_save_header(json_object *o, int version, const char *backend, const char *id, const cc_proc *p,
                     const char *run_dir);
/* Reads them from saved: -EINVAL "not an object", or the first missing or
 * mistyped field's error. Checks nothing else: the driver does. */
int vmm_load_header(json_object *saved, vmm_saved_header *ret, cc_error **ret_err);
