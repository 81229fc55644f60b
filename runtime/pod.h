/* SPDX-License-Identifier: Apache-2.0 */
/* Pods (CRI sandboxes): one VM per pod, or a host-mode agent for pods that
 * need the host's network/PID/IPC namespaces or Bidirectional propagation.
 *
 * RunPodSandbox: runtime handler → mode (VM or host; refused when host mode
 * is forbidden); pod dirs; network (runtime/pod-net.h: netns + CNI, taps for a
 * VM); etc files (hostname, hosts, resolv.conf); the share (runtime/rootfs.h)
 * and virtiofsd; the VMM (runtime/vmm.h: qemu, or the host backend) sized from
 * LinuxPodSandboxConfig resources + overhead within the configured bounds;
 * dial the agent (runtime/agent.h); CreateSandbox; guest network config; the
 * record persisted (state store). Every step is undone on failure.
 *
 * Semantics (as containerd 1.6's CRI plugin): a second RunPodSandbox with the
 * same metadata (name, namespace, uid, attempt) → -EEXIST naming the existing
 * id; Stop of an unknown id → -ENOENT; Stop is idempotent; Remove of an
 * unknown id succeeds (idempotent) and removes the pod's containers; a pod
 * whose VMM (or host agent) died is NOTREADY and its containers EXITED.
 *
 * Thread-safe. Every returned string/array is owned by the caller. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "common/error.h"
#include "image/images.h"
#include "runtime/runtime.h"
#include "api.pb-c.h"

typedef struct rt_net rt_net;

/* Opens the state store under cfg's paths, reloads every pod and container,
 * re-attaches to living VMMs/virtiofsd/agents (re-dial, restart output
 * pumps), marks dead ones NOTREADY/EXITED. images: for container images and
 * the layer-in-use hook; net: may be NULL (pods get loopback only). */
int rt_runtime_open(cc_config *cfg, image_db *images, rt_net *net, rt_runtime **ret,
                    cc_error **ret_err);
/* Frees memory and threads; leaves pods (VMs, agents) running. NULL ok. */
void rt_runtime_free(rt_runtime *rt);

typedef enum rt_pod_state {
        RT_POD_READY = 0,    /* = runtime.v1 SANDBOX_READY */
        RT_POD_NOTREADY = 1,
} rt_pod_state;

typedef enum rt_pod_mode {
        RT_POD_VM,
        RT_POD_HOST,
} rt_pod_mode;

typedef struct rt_pod_info {
        char *id;
        Runtime__V1__PodSandboxConfig *config; /* a copy of the request's config
                                                  (metadata, labels, annotations,
                                                  linux options, dns, ports...);
                                                  free with protobuf_c_message_free_unpacked */
        char *runtime_handler;                 /* "" = default */
        rt_pod_state state;
        rt_pod_mode mode;
        int64_t created_at_ns;                 /* CLOCK_REALTIME */
        char *ip;                              /* "" if none */
        char **extra_ips;                      /* NULL-terminated, never NULL */
        char *netns_path;                      /* "" for host network */
        bool host_network, host_pid, host_ipc;
        bool from_template;
        /* verbose info */
        int vmm_pid, virtiofsd_pid, agent_pid; /* 0 if none */
        char *agent_endpoint;                  /* "unix:/...", "vsock:CID:PORT" */
        int vcpus, memory_mib;                 /* VM size (0 in host mode) */
        char *accel;                           /* "kvm", "tcg", "" */
        char *run_dir;
} rt_pod_info;

void rt_pod_info_free(rt_pod_info *p);
static inline void rt_pod_info_freep(rt_pod_info **p) { rt_pod_info_free(*p); }
#define _cleanup_rt_pod_info_ __attribute__((cleanup(rt_pod_info_freep)))
void rt_pod_info_list_free(rt_pod_info **list, size_t n);

/* What a pod costs the host and moves over its network, for
 * PodSandboxStats (runtime/stats.c). A VM pod's CPU and memory are its VMM's
 * and virtiofsd's (CPU time; PSS: shared pages split with the processes
 * sharing them), the guest's own use included; a host-mode pod has none
 * here (the caller sums its containers'). Interfaces: those in the pod's
 * network namespace but loopback and cocoon's tap mirrors, counted as the
 * pod sees them (rx = received by the pod). */
#define RT_POD_STATS_IFS 8
typedef struct rt_pod_ifstats {
        char name[16];
        uint64_t rx_bytes, rx_errors, tx_bytes, tx_errors;
} rt_pod_ifstats;
typedef struct rt_pod_stats {
        int64_t timestamp_ns;
        bool have_cpu_mem;
        uint64_t cpu_usage_ns, memory_bytes;
        size_t n_ifs;
        rt_pod_ifstats ifs[RT_POD_STATS_IFS];
} rt_pod_stats;
/* Best effort: what cannot be read is left out (a pod that is not ready has
 * no processes and no network). */
void rt_pod_host_stats(const rt_pod_info *p, rt_pod_stats *ret);

/* Lifecycle events (runtime/events.c) for GetContainerEvents: a container's
 * or a pod's (id = pod_id) creation, start, stop (exit, kill, its VM gone)
 * and removal, each once, in order per object. */
typedef enum rt_event_type { /* = runtime.v1 ContainerEventType */
        RT_EVENT_CREATED = 0,
        RT_EVENT_STARTED = 1,
        RT_EVENT_STOPPED = 2,
        RT_EVENT_DELETED = 3,
} rt_event_type;
typedef struct rt_event {
        rt_event_type type;
        char id[65], pod_id[65];
        int64_t ts_ns; /* CLOCK_REALTIME */
} rt_event;
typedef struct rt_event_sub rt_event_sub;
#define RT_EVENTS_MAX_SUBS 8
/* -EMFILE when RT_EVENTS_MAX_SUBS subscribers exist. */
int rt_events_subscribe(rt_runtime *rt, rt_event_sub **ret);
/* 0 and *ret; -ETIMEDOUT; -EOVERFLOW: the subscriber fell too far behind
 * and lost events (unsubscribe: it gets no more). */
int rt_events_next(rt_event_sub *s, int timeout_ms, rt_event *ret);
void rt_events_unsubscribe(rt_runtime *rt, rt_event_sub *s);

int rt_pod_run(rt_runtime *rt, const Runtime__V1__PodSandboxConfig *config,
               const char *runtime_handler, char **ret_id, cc_error **ret_err);
/* Stops every container (SIGKILL after their grace), the VM / host agent and
 * the virtiofsd, and tears the network down (CNI DEL: the IP is free after
 * Stop, as the kubelet expects; the netns pin goes with Remove). Keeps the
 * record (NOTREADY). */
int rt_pod_stop(rt_runtime *rt, const char *id, cc_error **ret_err);
int rt_pod_remove(rt_runtime *rt, const char *id, cc_error **ret_err);
/* id: full id or unique prefix. */
int rt_pod_status(rt_runtime *rt, const char *id, rt_pod_info **ret, cc_error **ret_err);
/* Every pod, sorted by creation time. Filtering is the caller's. */
int rt_pod_list(rt_runtime *rt, rt_pod_info ***ret, size_t *ret_n, cc_error **ret_err);
