/* SPDX-License-Identifier: Apache-2.0 */
/* Containers of a pod. CreateContainer resolves the image (image_db), builds
 * the host-side rootfs (overlay over the image's layers, under the pod's
 * share, runtime/rootfs.h) and volumes, the OCI spec (runtime/spec.h), and
 * asks the pod's agent to create it; StartContainer starts it and its output
 * pump (runtime/ctr-io.h) into the CRI log; a watcher per container waits
 * for its exit (WaitProcess) and records exit code, finish time and reason
 * ("Completed", "Error", "OOMKilled" from the agent's OOM events).
 *
 * Semantics (as containerd 1.6): same metadata (name, attempt) in one pod
 * twice → -EEXIST naming the existing id; Stop of an unknown id → -ENOENT;
 * Stop/Remove idempotent; Remove of an unknown id succeeds; Remove of a
 * running container stops it first (containerd refuses; we follow the
 * kubelet's expectation that Remove always cleans up). Images used by a
 * container keep their layers (image_db in-use hook).
 *
 * Thread-safe. Every returned string/array is owned by the caller. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "runtime/runtime.h"
#include "api.pb-c.h"

typedef enum rt_ctr_state {
        RT_CTR_CREATED = 0, /* = runtime.v1 ContainerState values */
        RT_CTR_RUNNING = 1,
        RT_CTR_EXITED = 2,
        RT_CTR_UNKNOWN = 3,
} rt_ctr_state;

typedef struct rt_ctr_info {
        char *id;
        char *sandbox_id;
        Runtime__V1__ContainerConfig *config; /* a copy of the request's config
                                                 (metadata, image, labels,
                                                 annotations, mounts, log_path) */
        char *image_id;       /* "sha256:..." (ContainerStatus.image_ref) */
        char *image_name;     /* what the request asked for, normalised */
        rt_ctr_state state;
        int64_t created_at_ns, started_at_ns, finished_at_ns; /* 0 if not yet */
        int32_t exit_code;
        int pid;              /* 0 if unknown: the main process's pid while it
                                 runs, as the pod's agent sees it (the guest's
                                 pid namespace in a VM, the host's in host mode) */
        char *reason;         /* "" / "Completed" / "Error" / "OOMKilled" / ... */
        char *message;
        char *log_path;       /* pod log_directory + config log_path, "" if none */
} rt_ctr_info;

void rt_ctr_info_free(rt_ctr_info *c);
static inline void rt_ctr_info_freep(rt_ctr_info **c) { rt_ctr_info_free(*c); }
#define _cleanup_rt_ctr_info_ __attribute__((cleanup(rt_ctr_info_freep)))
void rt_ctr_info_list_free(rt_ctr_info **list, size_t n);

/* pod_config: the CreateContainer request's sandbox_config (may be NULL: the
 * pod's recorded config is used). Unknown pod → -ENOENT; pod not ready →
 * FAILED_PRECONDITION errno; missing image → -ENOENT "image X not found". */
int rt_container_create(rt_runtime *rt, const char *pod_id,
                        const Runtime__V1__ContainerConfig *config,
                        const Runtime__V1__PodSandboxConfig *pod_config, char **ret_id,
                        cc_error **ret_err);
int rt_container_start(rt_runtime *rt, const char *id, cc_error **ret_err);
/* timeout_s: grace before SIGKILL (0: SIGKILL at once). The stop signal is
 * the image's StopSignal, else SIGTERM. Returns once the container exited. */
int rt_container_stop(rt_runtime *rt, const char *id, int64_t timeout_s, cc_error **ret_err);
int rt_container_remove(rt_runtime *rt, const char *id, cc_error **ret_err);
/* id: full id or unique prefix. */
int rt_container_status(rt_runtime *rt, const char *id, rt_ctr_info **ret, cc_error **ret_err);
/* Every container, sorted by creation time. Filtering is the caller's. */
int rt_container_list(rt_runtime *rt, rt_ctr_info ***ret, size_t *ret_n, cc_error **ret_err);
int rt_container_reopen_log(rt_runtime *rt, const char *id, cc_error **ret_err);
/* UpdateContainerResources: the agent applies res to the container's cgroup
 * (in the guest, or on the host in host mode), then the container's recorded
 * config carries them (ContainerStatus reports them). A created or running
 * container of a ready pod only (else an -EBUSY error); a VM's own size does
 * not change. res NULL: nothing to do. */
int rt_container_update_resources(rt_runtime *rt, const char *id, const Runtime__V1__LinuxContainerResources *res,
                                  cc_error **ret_err);

/* ---- stats (runtime/stats.c) -------------------------------------------------- */
typedef struct rt_ctr_stats {
        int64_t timestamp_ns;
        bool have_cpu_mem;          /* running, and its agent answered */
        uint64_t cpu_usage_ns;      /* cumulative */
        uint64_t memory_usage, memory_working_set;
        uint64_t pids;              /* processes in its cgroup (with have_cpu_mem) */
        bool have_fs;               /* its writable layer (the overlay upper dir) */
        char *fs_mountpoint;
        uint64_t fs_used_bytes, fs_inodes_used;
} rt_ctr_stats;
/* id: full id or unique prefix (-ENOENT). A running container whose agent
 * does not answer is an error, or with partial_ok stats without CPU/memory
 * (ListContainerStats: one pod's trouble does not hide the others). */
int rt_container_stats(rt_runtime *rt, const char *id, bool partial_ok, rt_ctr_stats *ret, cc_error **ret_err);
void rt_ctr_stats_clear(rt_ctr_stats *s);

/* ---- exec (runtime/exec.c, on top of rt_exec_target) ----------------------- */
/* Runs argv in the container, collects stdout/stderr (each capped at 16 MiB,
 * the rest drained and dropped, as the kubelet's limit), waits up to
 * timeout_s (0: none); on timeout the process is killed and -ETIMEDOUT
 * returned ("command ... timed out after Ns"), which the RPC maps to
 * DEADLINE_EXCEEDED. */
int rt_exec_sync(rt_runtime *rt, const char *container_id, char *const *argv, size_t argc,
                 int64_t timeout_s, uint8_t **ret_stdout, size_t *ret_stdout_len,
                 uint8_t **ret_stderr, size_t *ret_stderr_len, int *ret_exit_code,
                 cc_error **ret_err);
