/* SPDX-License-Identifier: Apache-2.0 */
/* Process helpers for a threaded daemon: posix_spawn (never a bare fork),
 * processes identified by pid + start time (never pid alone), pidfds. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/error.h"

typedef struct cc_spawn_opts {
        int stdin_fd, stdout_fd, stderr_fd; /* -1: /dev/null */
        const int *keep_fds;                /* extra fds passed through unchanged */
        int n_keep_fds;
        bool new_session;                   /* setsid(): outlives our process group */
        char *const *envp;                  /* NULL: inherit environ */
        const char *cwd;                    /* NULL: inherit (applied via posix_spawn_file_actions_addchdir_np) */
        /* Signal the child gets when the calling thread exits (or the whole
         * process dies): for a helper that must not outlive its user. */
        int pdeath_signal;
} cc_spawn_opts;

#define CC_SPAWN_OPTS_INIT { -1, -1, -1, NULL, 0, false, NULL, NULL, 0 }

typedef struct cc_proc {
        pid_t pid;
        uint64_t start_time; /* /proc/<pid>/stat field 22, clock ticks since boot */
} cc_proc;

int cc_spawn(const char *path, char *const argv[], const cc_spawn_opts *opts, cc_proc *ret,
             cc_error **ret_err);
/* Reads the start time of pid; -ESRCH if it does not exist. */
int cc_proc_start_time(pid_t pid, uint64_t *ret);
/* True if the very process recorded in p (same pid AND start time) is alive
 * and not a zombie. */
bool cc_proc_alive(const cc_proc *p);
/* pidfd for p, verified against the start time after opening (-ESRCH when the
 * process is gone or the pid was reused). */
int cc_proc_pidfd(const cc_proc *p, cc_error **ret_err);

/* Runs argv, feeding `input` on stdin and capturing stdout/stderr up to max
 * bytes each; kills the process group (SIGKILL) after timeout_ms (<= 0: none).
 * *ret_status gets the wait status. Returns -ETIMEDOUT on timeout. */
int cc_spawn_run(const char *path, char *const argv[], char *const envp[], const char *input,
                 size_t input_len, size_t max_output, int timeout_ms, char **ret_stdout,
                 char **ret_stderr, int *ret_status, cc_error **ret_err);
