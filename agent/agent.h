/* SPDX-License-Identifier: Apache-2.0 */
/* cocoon-agent internals: one static binary, guest PID 1 or a host-mode test
 * harness, serving the Kata agent protocol over ttRPC.
 *
 * Concurrency: the ttRPC serve loop runs handlers on one thread; a reactor
 * thread (process.c) owns SIGCHLD (signalfd), container output pipes and the
 * OOM watch (inotify). Every container/process object is guarded by
 * agent_lock; children are forked and reaped only under it, so a pid is
 * registered before the reactor can reap it. */
#pragma once

#include <limits.h>
#include <linux/filter.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "common/error.h"
#include "common/ttrpc.h"
#include "agent.pb-c.h"
#include "health.pb-c.h"
#include "oci.pb-c.h"

#define AGENT_VERSION "0.1.0"
#define AGENT_ID_MAX 128
#define AGENT_STREAM_MAX (1u << 20) /* buffered output per stream; writer blocks beyond */
#define AGENT_READ_MAX (1u << 20)   /* largest ReadStdout/ReadStderr answer */
#define AGENT_ARGS_MAX 4096         /* args / env entries */
#define AGENT_GROUPS_MAX 64
#define AGENT_RLIMITS_MAX 16
#define AGENT_SHARED_DIR "/run/cocoon/shared"
#define AGENT_RW_DIR "/run/cocoon/rw"
#define AGENT_VIRTIOFS_WAIT_MS 5000 /* a hot-added virtio-fs device to show up */
#define AGENT_RESEED_MAX 4096       /* ReseedRandomDev data */

/* ---- global state -------------------------------------------------------- */

typedef struct agent_stream {
        int fd;              /* read end (pipe or pty master dup); -1 once closed */
        bool eof;            /* no more data will arrive */
        bool eof_delivered;  /* a reader was answered with EOF */
        bool blocked;        /* not polled: buffer full, the writer blocks */
        uint8_t *buf;
        size_t len;
        ttrpc_call *reader;  /* one pending ReadStdout/ReadStderr */
        uint32_t want;
        uint64_t key;        /* epoll key: process serial * 4 + 1 (out) / 2 (err) */
} agent_stream;

typedef struct agent_container agent_container;

typedef struct agent_process {
        struct agent_process *next;
        agent_container *ctr;
        char *exec_id; /* NULL for the container's init */
        pid_t pid;     /* 0 until spawned */
        bool exited;
        int status;    /* exit code, or 128 + signal (as Kata) */
        bool waited;   /* an exec whose WaitProcess was answered */
        int stdin_fd;  /* -1 once closed */
        int pty_fd;    /* pty master for TtyWinResize, -1 without a terminal */
        agent_stream out, err;
        ttrpc_call **waiters;
        size_t n_waiters;
} agent_process;

typedef enum agent_ctr_state {
        AGENT_CTR_CREATED,
        AGENT_CTR_RUNNING,
        AGENT_CTR_STOPPED,
} agent_ctr_state;

struct agent_container {
        agent_container *next;
        char *id;
        agent_ctr_state state;
        bool paused;
        agent_process *init;
        agent_process *execs;
        int sync_fd;   /* to the init until StartContainer */
        char *cgroup;  /* absolute cgroup v2 directory */
        char *rootfs;  /* absolute rootfs (host mode) or guest path */
        char *overlay; /* guest overlay mount to remove, or NULL */
        int oom_wd;    /* inotify watch on memory.events, -1 if none */
        uint64_t oom_kills;
        Grpc__CreateContainerRequest *req; /* the unpacked request (spec) */
};

typedef struct agent_state {
        bool guest;
        char state_dir[PATH_MAX];
        char cgroup_root[PATH_MAX]; /* cgroup v2 directory containers go under */
        char *hostname;
        char **dns;
        size_t n_dns;
        bool sandbox_created;
        pid_t sandbox_pidns_pid; /* pause process holding the sandbox pid ns */
        agent_container *containers;
        /* OOM events not yet taken by GetOOMEvent, and its waiters. */
        char **oom_queue;
        size_t n_oom;
        ttrpc_call **oom_waiters;
        size_t n_oom_waiters;
        ttrpc_server *server;
        int epoll_fd;
        int inotify_fd;
        bool destroyed;
} agent_state;

extern agent_state agent;
extern pthread_mutex_t agent_lock;

/* ---- rpc.c: registration and request helpers ----------------------------- */

int agent_rpc_register(ttrpc_server *s, cc_error **ret_err);
void agent_rpc_register_containers(ttrpc_server *s);
void agent_rpc_register_processes(ttrpc_server *s);
void agent_rpc_register_misc(ttrpc_server *s);
void agent_rpc_register_net(ttrpc_server *s);
/* id validation: [A-Za-z0-9_.-]{1,128}, not "." or "..". */
int agent_validate_id(const char *what, const char *id, cc_error **ret_err);
/* Relative path without "..", absolute not allowed (confine under a root). */
int agent_validate_relpath(const char *what, const char *p, cc_error **ret_err);
/* Unpack or answer INVALID_ARGUMENT; NULL if answered. */
ProtobufCMessage *agent_unpack(ttrpc_call *call, const ProtobufCMessageDescriptor *d,
                               const uint8_t *payload, size_t len);
int agent_reply_empty(ttrpc_call *call);
/* Logs the failure and answers it (INVALID_ARGUMENT for -EINVAL etc.). */
void agent_reply_fail(ttrpc_call *call, const char *rpc, const char *ctr, cc_error *err);
agent_container *agent_find_container(const char *id);
/* Finds the init ("" / NULL / == container id) or an exec. */
agent_process *agent_find_process(agent_container *c, const char *exec_id);

/* ---- container.c: create/start/remove ------------------------------------ */

int agent_container_create(Grpc__CreateContainerRequest *req, cc_error **ret_err);
int agent_container_start(agent_container *c, cc_error **ret_err);
int agent_container_remove(agent_container *c, uint32_t timeout_s, cc_error **ret_err);
void agent_container_kill_all(void);
int agent_exec_create(agent_container *c, Grpc__ExecProcessRequest *req, cc_error **ret_err);

/* ---- spawn.c: the child side -------------------------------------------- */

typedef struct agent_exec_plan {
        uid_t uid;
        gid_t gid;
        gid_t groups[AGENT_GROUPS_MAX];
        size_t n_groups;
        bool set_user;
        bool has_caps;
        uint64_t caps[5]; /* bounding, effective, permitted, inheritable, ambient */
        bool nnp;
        struct sock_fprog seccomp; /* .len == 0: none */
        struct { int res; struct rlimit lim; } rlimits[AGENT_RLIMITS_MAX];
        size_t n_rlimits;
        bool set_oom;
        int oom_score_adj;
        char **args;
        char **env;
        const char *cwd;
        bool terminal;
        unsigned rows, cols;
} agent_exec_plan;

int agent_plan_build(agent_exec_plan *p, const Grpc__Process *proc, const Grpc__Spec *spec,
                     const char *rootfs, cc_error **ret_err);
void agent_plan_done(agent_exec_plan *p);
/* In the child: applies rlimits, oom, user, caps, nnp, seccomp; returns -errno
 * with *ret_what naming the step. */
int agent_plan_apply(const agent_exec_plan *p, const char **ret_what);
/* execve with a PATH search from the plan's env; returns -errno. */
int agent_plan_exec(const agent_exec_plan *p);

/* ---- caps.c -------------------------------------------------------------- */

int agent_caps_parse(char **names, size_t n, uint64_t *ret_mask, cc_error **ret_err);
int agent_caps_bound(uint64_t bounding);
int agent_caps_apply(const uint64_t caps[5]);

/* ---- seccomp.c ----------------------------------------------------------- */

/* Compiles the profile to BPF in the agent (the child only loads it). */
int agent_seccomp_compile(const Grpc__LinuxSeccomp *s, struct sock_fprog *ret, cc_error **ret_err);

/* ---- mounts.c (child side, in the new mount namespace) ------------------- */

int agent_mounts_setup(const Grpc__Spec *spec, const char *rootfs, const char **ret_what);
/* Opens rel (no ".." escapes, symlinks resolved inside root) under root,
 * creating missing directories (and the last one as a file if !dir). */
int agent_open_in_root(int rootfd, const char *rel, bool create, bool dir);

/* ---- cgroup.c ------------------------------------------------------------ */

int agent_cgroup_create(const char *id, const Grpc__Spec *spec, char **ret_path, cc_error **ret_err);
int agent_cgroup_apply(const char *path, const Grpc__LinuxResources *r, cc_error **ret_err);
int agent_cgroup_remove(const char *path);
int agent_cgroup_freeze(const char *path, bool frozen, cc_error **ret_err);
int agent_cgroup_kill(const char *path);
int agent_cgroup_stats(const char *path, Grpc__StatsContainerResponse *resp);
void agent_cgroup_stats_free(Grpc__StatsContainerResponse *resp);
int agent_cgroup_read_u64(const char *path, const char *file, const char *key, uint64_t *ret);

/* ---- process.c: reactor, reaping, streams -------------------------------- */

int agent_reactor_start(cc_error **ret_err);
agent_process *agent_process_new(agent_container *c, const char *exec_id);
void agent_process_free(agent_process *p);
/* Starts polling p's output fds (lock held). */
int agent_process_watch(agent_process *p);
/* Answers/queues a read on stream (lock held). */
void agent_stream_read(agent_stream *s, ttrpc_call *call, uint32_t len);
/* Closes a stream and fails its pending read (lock held). */
void agent_stream_close(agent_stream *s);
/* Answers a WaitProcess now or later (lock held). */
void agent_process_wait(agent_process *p, ttrpc_call *call);
/* Watches c's memory.events for oom_kill (lock held). */
void agent_oom_watch(agent_container *c);
void agent_oom_unwatch(agent_container *c);
void agent_oom_get(ttrpc_call *call);

/* ---- init.c / channel.c / netlink.c -------------------------------------- */

int agent_init_pid1(cc_error **ret_err);
/* Waits until the kernel modules loaded in the background (after the host
 * channel's) are in: virtio-fs, overlay, virtio-net... Returns at once in
 * host mode. */
void agent_modules_wait(void);
void agent_init_poweroff(void);
int agent_mount_storage(const Grpc__Storage *s, bool *ret_mounted, cc_error **ret_err);
int agent_channel_serve_guest(ttrpc_server *s);
int agent_channel_serve_unix(ttrpc_server *s, const char *path);
