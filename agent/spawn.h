/* SPDX-License-Identifier: Apache-2.0 */
/* Forking a container's init or an exec'd process (see spawn.c). */
#pragma once

#include "agent/agent.h"

typedef struct spawn_args {
        const Grpc__Spec *spec;       /* container spec (mounts, sysctls, ...) */
        const char *rootfs;           /* init only */
        const char *cgroup;           /* directory to join, or NULL */
        const char *hostname;         /* set in a new uts namespace, or NULL */
        const agent_exec_plan *plan;
        int unshare_flags;            /* init only: CLONE_NEW* */
        struct { int type; char path[PATH_MAX]; } join[8];
        size_t n_join;
        pid_t exec_target;            /* exec: the container init whose namespaces to enter */
        int stdio[3];                 /* child ends, or -1 */
        int sync_child;               /* internal */
} spawn_args;

/* Forks the helper and the process; returns after the process reported
 * READY (init: it now waits for agent_spawn_start on *ret_sync) or, for an
 * exec, after execve() succeeded. With plan->terminal the process allocated
 * its pty from the container's /dev/ptmx: *ret_pty is the master
 * (O_CLOEXEC, blocking). Caller holds agent_lock. */
int agent_spawn(spawn_args *a, int *ret_sync, pid_t *ret_pid, int *ret_pty, cc_error **ret_err);
/* Lets a created init exec its process; fails with the child's error. */
int agent_spawn_start(int sync_fd, cc_error **ret_err);
