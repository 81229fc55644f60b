/* SPDX-License-Identifier: Apache-2.0 */
/* Internals shared by runtime.c (the handle, lookups, watcher, restart),
 * pod.c (RunPodSandbox & co), pod-vm.c (booting/stopping a pod's VMM and
 * agent), container.c and state.c (the persisted records).
 *
 * Locking: rt->lock guards the tables and every mutable field of rt_pod and
 * rt_ctr (state, times, exit codes, agent pointer...); it is never held
 * across a slow operation (VM boot, agent call, mount, file write).
 * pod->op_lock serialises the slow operations of one pod (Run's tail, Stop,
 * Remove, CreateContainer); ctr->op_lock those of one container (Start, Stop,
 * Remove). Order: pod->op_lock → ctr->op_lock → save_lock → rt->lock. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/id.h"
#include "runtime/agent.h"
#include "runtime/container.h"
#include "runtime/ctr-io.h"
#include "runtime/pod-net.h"
#include "runtime/pod.h"
#include "runtime/virtiofsd.h"
#include "runtime/vmm.h"

#define RT_SHARE_TAG "cocoonfs"            /* virtio-fs tag of the pod share */
#define RT_GUEST_SHARE "/run/cocoon/shared" /* where the agent mounts it */
#define RT_AGENT_PORT "agent.0"            /* virtio-serial port name */
#define RT_STATE_VERSION 1
#define RT_CALL_TIMEOUT_MS 30000           /* default agent call timeout */

/* The host-mode backend (runtime/vmm-host.c). */
extern const vmm_ops vmm_host_ops;

typedef struct rt_pod rt_pod;
typedef struct rt_ctr rt_ctr;

struct rt_pod {
        unsigned refs;
        uint64_t serial;             /* watcher key */
        pthread_mutex_t op_lock;
        pthread_mutex_t save_lock;
        char id[CC_ID_LEN + 1];
        Runtime__V1__PodSandboxConfig *config;
        char *handler;
        rt_pod_state state;
        rt_pod_mode mode;
        int64_t created_at_ns;
        bool host_network, host_pid, host_ipc;
        bool from_template; /* its VM started as a copy of the template (runtime/template.c) */
        bool creating;               /* RunPodSandbox in progress: invisible */
        int64_t boot_us[3];          /* rt_pod_vm_start's phases, for the debug log */
        bool removed;                /* out of the table; records gone */
        bool dead;                   /* the VMM / host agent exited */
        bool watched;                /* exit fds in the watcher's epoll set */
        bool reconnecting;           /* re-dial after a restart in progress */
        char *run_dir;               /* <state>/sandboxes/<id> */
        char *rec_dir;               /* <root>/sandboxes/<id> */
        char *share_dir;             /* <run_dir>/shared, NULL in host mode */
        char *etc_dir;               /* hostname, hosts, resolv.conf */
        rt_pod_net *net;             /* NULL: host network or no network */
        char *lo_netns;              /* no CNI config: a netns with loopback only */
        const vmm_ops *ops;
        vmm *vmm;
        virtiofsd *vfsd;
        rt_agent *agent;             /* NULL while (re)connecting or stopped */
        vmm_endpoint ep;
        int vcpus, memory_mib;
        /* What the record keeps of the VMM, virtiofsd and network (their
         * save() output, taken when they were set up). */
        json_object *vmm_j, *vfsd_j, *net_j;
};

struct rt_ctr {
        unsigned refs;
        pthread_mutex_t op_lock;
        pthread_mutex_t save_lock;
        char id[CC_ID_LEN + 1];
        rt_pod *pod;                 /* referenced */
        Runtime__V1__ContainerConfig *config;
        char *image_id, *image_name;
        char **chain_ids;            /* the image's layers (in-use hook) */
        rt_ctr_state state;
        int64_t created_at_ns, started_at_ns, finished_at_ns;
        int32_t exit_code;
        int pid;                     /* the init's, as its agent sees it; 0 if unknown */
        char *reason, *message;
        char *log_path;              /* "" if none */
        Grpc__Spec *spec;
        int stop_signal;             /* 0: SIGTERM */
        bool tty, stdin_;
        bool creating, removed;
        bool oom_killed;
        rt_ctr_io *io;
        char *rootfs;                /* host path of the rootfs mount */
        char *upper;                 /* overlay upper/work base */
        char *dir;                   /* <share>/<cid> (VM), <run>/host/<cid> (host) */
        size_t n_volumes;            /* binds at <dir>/mounts/<i> (VM mode) */
};

/* A template VM of one size (runtime/template.c). */
typedef struct rt_template {
        int vcpus, memory_mib;
        char *run_dir, *dir, *ram, *state; /* <state>/template/V-M (sockets), <root>/template/V-M */
        bool ready, building, failed;
        int discards;
} rt_template;

struct rt_runtime {
        cc_config *cfg;
        image_db *images;
        rt_net *net;
        const vmm_ops *vm_ops;       /* VM backend (qemu; a mock in tests) */
        const vmm_ops *host_ops;     /* host-mode backend, NULL if none */
        char *sb_run_root;           /* <state>/sandboxes */
        char *sb_rec_root;           /* <root>/sandboxes */
        char *layers_root;           /* <root>/layers/sha256 */
        int agent_timeout_ms;        /* dial */
        int stop_timeout_ms;         /* VMM stop after the guest was asked */

        pthread_mutex_t lock;
        pthread_cond_t cond;         /* container state changes, thread exits */
        rt_pod **pods;
        size_t n_pods, cap_pods;
        rt_ctr **ctrs;
        size_t n_ctrs, cap_ctrs;
        uint64_t next_serial;
        unsigned n_threads;          /* detached helper threads still running */
        bool closing;

        int epfd, wake_fd;
        pthread_t watcher;
        bool watcher_started;

        /* VMs booted ahead (runtime/pool.c), under lock */
#define RT_POOL_MAX 64
        rt_pod *pool[RT_POOL_MAX];
        size_t n_pool;
        pthread_cond_t pool_cond;    /* a VM was taken; closing */
        bool pool_started;

        /* the templates pods start from (runtime/template.c), one per VM
         * size, under lock; the roots are set when templates are on */
#define RT_TEMPLATE_MAX 4
        rt_template tmpls[RT_TEMPLATE_MAX];
        size_t n_tmpls;
        char *tmpl_run_root, *tmpl_root;

        rt_event_sub *event_subs;    /* runtime/events.c, under its own lock */
};

/* Options for tests: the backends to use (NULL: the defaults). */
typedef struct rt_runtime_opts {
        const vmm_ops *vm_ops;
        const vmm_ops *host_ops;
} rt_runtime_opts;

int rt_runtime_open_opts(cc_config *cfg, image_db *images, rt_net *net, const rt_runtime_opts *o,
                         rt_runtime **ret, cc_error **ret_err);

/* ---- runtime.c: tables, references, lookups --------------------------------- */
int64_t rt_now_ns(void);
/* runtime/events.c: tells every subscriber (any lock may be held). */
void rt_events_publish(rt_runtime *rt, rt_event_type type, const char *id, const char *pod_id);
rt_pod *rt_pod_ref(rt_pod *p);           /* under rt->lock or holding a ref */
void rt_pod_unref(rt_runtime *rt, rt_pod *p);
rt_ctr *rt_ctr_ref(rt_ctr *c);
void rt_ctr_unref(rt_runtime *rt, rt_ctr *c);
/* Full id or unique prefix; skips creating/removed entries. Referenced. */
int rt_find_pod(rt_runtime *rt, const char *id, rt_pod **ret, cc_error **ret_err);
int rt_find_ctr(rt_runtime *rt, const char *id, rt_ctr **ret, cc_error **ret_err);
int rt_table_add_pod(rt_runtime *rt, rt_pod *p);    /* under rt->lock */
void rt_table_del_pod(rt_runtime *rt, rt_pod *p);   /* under rt->lock */
int rt_table_add_ctr(rt_runtime *rt, rt_ctr *c);
void rt_table_del_ctr(rt_runtime *rt, rt_ctr *c);
/* The pod's containers, referenced (free with rt_ctr_list_unref). */
int rt_pod_ctrs(rt_runtime *rt, rt_pod *p, rt_ctr ***ret, size_t *ret_n);
void rt_ctr_list_unref(rt_runtime *rt, rt_ctr **l, size_t n);
/* The pod's agent, referenced, or NULL (-ENOTCONN with a message). */
rt_agent *rt_pod_agent_get(rt_runtime *rt, rt_pod *p, cc_error **ret_err);
/* Starts a detached helper thread counted in rt->n_threads. */
int rt_thread_start(rt_runtime *rt, void *(*fn)(void *), void *arg, cc_error **ret_err);
void rt_thread_done(rt_runtime *rt);
/* Exit fds of the pod's VMM and agent into the watcher (idempotent). */
void rt_watch_pod(rt_runtime *rt, rt_pod *p);
void rt_unwatch_pod(rt_runtime *rt, rt_pod *p);
/* The VMM or host agent is gone: pod NOTREADY, containers EXITED, saved. */
void rt_pod_mark_dead(rt_runtime *rt, rt_pod *p, const char *why);
/* A protobuf deep copy (pack + unpack); NULL on ENOMEM. */
void *rt_proto_copy(const ProtobufCMessage *m);
char *rt_strdup0(const char *s); /* strdup(s ? s : "") */
/* json_object_put and NULL the pointer. */
static inline void rt_json_clear(json_object **o)
{
        if (*o)
                json_object_put(*o);
        *o = NULL;
}

/* ---- pod-vm.c -------------------------------------------------------------- */
/* Boots the VMM (+ virtiofsd) or the host agent and dials the agent. Pushes
 * its own undo steps. rt_pod_vm_start + rt_pod_vm_dial, which a caller
 * with work to do while the guest boots calls apart. */
typedef struct cc_undo cc_undo;
int rt_pod_vm_boot(rt_runtime *rt, rt_pod *p, cc_undo *undo, cc_error **ret_err);
int rt_pod_vm_start(rt_runtime *rt, rt_pod *p, cc_undo *undo, cc_error **ret_err);
int rt_pod_vm_dial(rt_runtime *rt, rt_pod *p, cc_undo *undo, cc_error **ret_err);
/* Asks the agent to power off, stops VMM and virtiofsd, frees them. */
void rt_pod_vm_shutdown(rt_runtime *rt, rt_pod *p);
/* Restart: re-attach (load) from the record's JSON; dial in background. */
int rt_pod_vm_load(rt_runtime *rt, rt_pod *p, json_object *vmm_j, json_object *vfsd_j,
                   cc_error **ret_err);
void rt_pod_vm_reconnect(rt_runtime *rt, rt_pod *p);
const vmm_ops *rt_ops_by_name(rt_runtime *rt, const char *name);
void rt_vmm_config(rt_runtime *rt, rt_pod *p, vmm_config *c);
/* Starts the OOM event listener of a pod (holds a pod ref). */
void rt_pod_start_oom_watch(rt_runtime *rt, rt_pod *p);
void rt_pod_vm_size(rt_runtime *rt, rt_pod *p);
void rt_pod_vm_adopt(rt_pod *p, rt_pod *pooled, cc_undo *undo);

/* runtime/pool.c */
int rt_pool_start(rt_runtime *rt, cc_error **ret_err);
/* [vm] template (runtime/template.c): start clears what a killed cocoond
 * left (its template QEMUs, files); kick builds the template of a size in
 * the background, once (each VM pod calls it); rt_template_for says whether
 * a VM of that size can start from one (paths owned by rt); remove deletes
 * them (at exit, after the helper threads ended). */
int rt_template_start(rt_runtime *rt, cc_error **ret_err);
void rt_template_kick(rt_runtime *rt, int vcpus, int memory_mib);
/* A copy could not start from it: pods boot until it is built again (by the
 * next kick; up to a few times). */
void rt_template_discard(rt_runtime *rt, int vcpus, int memory_mib);
bool rt_template_for(rt_runtime *rt, int vcpus, int memory_mib, const char **ret_ram, const char **ret_state);
void rt_template_remove(rt_runtime *rt);
/* An fd for rt_agent_dial's cancel_fd: readable once the VMM exits (exit_fd)
 * or the runtime closes; -1 if none could be made. */
int rt_dial_cancel_fd(rt_runtime *rt, int exit_fd);
rt_pod *rt_pool_take(rt_runtime *rt, int vcpus, int memory_mib); /* NULL: none fits */
/* Starts a VM now as the pool boots them (sized for config, a netns with the
 * tap its NIC is on), for a pod to adopt like a pooled one: the pod sets up
 * its network while the guest boots, then dials the agent (rt_pod_vm_dial). */
int rt_pool_boot_now(rt_runtime *rt, const Runtime__V1__PodSandboxConfig *config, rt_pod **ret,
                     cc_error **ret_err);
void rt_pool_wake(rt_runtime *rt);   /* closing: the filler ends */
void rt_pool_drain(rt_runtime *rt);  /* stops the VMs still waiting */
/* A record without pod.json (a pooled VM, or a boot RunPodSandbox never
 * finished: cocoond died in it): stops that VMM and removes the rest. */
bool rt_pool_sweep(rt_runtime *rt, const char *id);
/* <rec_dir>/<name>: the pod's VMM and virtiofsd records, for rt_pool_sweep */
#define RT_BOOT_RECORD "boot.json"
int rt_vm_record_save(rt_pod *p, const char *name, cc_error **ret_err);

/* ---- container.c ------------------------------------------------------------ */
/* Starts the exit waiter + pump of a running container (restart). */
void rt_ctr_reattach(rt_runtime *rt, rt_ctr *c, rt_agent *a);
/* Stop/remove with the container's op_lock taken inside. */
int rt_ctr_stop(rt_runtime *rt, rt_ctr *c, int64_t timeout_s, cc_error **ret_err);
int rt_ctr_remove(rt_runtime *rt, rt_ctr *c, cc_error **ret_err);
/* Host-side rootfs/volume mounts of a container (idempotent). */
void rt_ctr_unmount(rt_ctr *c);
void rt_ctr_free(rt_ctr *c);

/* ---- state.c: records ----------------------------------------------------- */
/* <rec_dir>/pod.json (+ the VMM/virtiofsd/net JSON), atomic. Skips a removed
 * pod. */
int rt_state_save_pod(rt_runtime *rt, rt_pod *p, cc_error **ret_err);
/* <rec_dir>/containers/<id>.json and <id>.spec.pb. */
int rt_state_save_ctr(rt_runtime *rt, rt_ctr *c, cc_error **ret_err);
int rt_state_delete_ctr(rt_runtime *rt, rt_ctr *c);
/* Parses a pod record into a new rt_pod (state, config, dirs); the VMM,
 * virtiofsd and net JSON are handed out (referenced) for the caller to load. */
int rt_state_load_pod(rt_runtime *rt, const char *path, rt_pod **ret, json_object **ret_vmm,
                      json_object **ret_vfsd, json_object **ret_net, cc_error **ret_err);
int rt_state_load_ctr(rt_runtime *rt, rt_pod *p, const char *json_path, rt_ctr **ret,
                      cc_error **ret_err);
/* Derived paths (from the ids and the mode; never read from a record). */
int rt_pod_set_paths(rt_runtime *rt, rt_pod *p);
int rt_ctr_set_paths(rt_ctr *c);
const char *rt_pod_state_to_string(rt_pod_state s);
const char *rt_ctr_state_to_string(rt_ctr_state s);
rt_pod *rt_pod_new(void);
rt_ctr *rt_ctr_new(void);
void rt_pod_free(rt_pod *p);
/* Base64 of protobuf bytes (records keep the CRI configs verbatim). */
char *rt_b64_encode(const uint8_t *buf, size_t len);
int rt_b64_decode(const char *s, uint8_t **ret, size_t *ret_len);
