/* SPDX-License-Identifier: Apache-2.0 */
/* Containers on the agent side: CreateContainer (rootfs, cgroup, stdio,
 * spawn), StartContainer, ExecProcess, RemoveContainer. Called with
 * agent_lock held; a failed create leaves nothing behind (undo stack). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "agent/spawn.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/undo.h"

typedef struct child_stdio {
        int child[3];  /* ends for the process */
        int parent[3]; /* stdin write end, stdout/stderr read ends */
        int pty_master; /* from the process (spawn.c), or -1 */
} child_stdio;

static void stdio_close(child_stdio *s)
{
        for (int i = 0; i < 3; i++) {
                if (s->child[i] >= 0)
                        close(s->child[i]);
                if (s->parent[i] >= 0)
                        close(s->parent[i]);
                s->child[i] = s->parent[i] = -1;
        }
        if (s->pty_master >= 0)
                close(s->pty_master);
        s->pty_master = -1;
}

/* Pipes for a process without a terminal; a terminal is allocated by the
 * process itself, from the container's devpts (spawn.c). */
static int stdio_open(child_stdio *s, const agent_exec_plan *plan, cc_error **ret_err)
{
        for (int i = 0; i < 3; i++)
                s->child[i] = s->parent[i] = -1;
        s->pty_master = -1;
        if (plan->terminal)
                return 0;
        for (int i = 0; i < 3; i++) {
                int p[2];
                if (pipe2(p, O_CLOEXEC) < 0)
                        return cc_error_errno(ret_err, "pipe");
                s->child[i] = i == 0 ? p[0] : p[1];
                s->parent[i] = i == 0 ? p[1] : p[0];
                fcntl(s->parent[i], F_SETFL, O_NONBLOCK);
        }
        return 0;
}

/* Moves the agent's ends into the process object. */
static int stdio_attach(child_stdio *s, agent_process *p, cc_error **ret_err)
{
        if (s->pty_master >= 0) {
                fcntl(s->pty_master, F_SETFL, O_NONBLOCK | O_RDWR);
                p->pty_fd = TAKE_FD(s->pty_master);
                p->out.fd = fcntl(p->pty_fd, F_DUPFD_CLOEXEC, 3);
                p->stdin_fd = fcntl(p->pty_fd, F_DUPFD_CLOEXEC, 3);
                if (p->out.fd < 0 || p->stdin_fd < 0)
                        return cc_error_errno(ret_err, "dup pty");
                p->err.eof = true; /* a terminal has one output stream */
        } else {
                p->stdin_fd = TAKE_FD(s->parent[0]);
                p->out.fd = TAKE_FD(s->parent[1]);
                p->err.fd = TAKE_FD(s->parent[2]);
        }
        stdio_close(s);
        if (agent_process_watch(p) < 0)
                return cc_error_errno(ret_err, "epoll");
        return 0;
}

static const struct { const char *name; int flag; } ns_types[] = {
        { "pid", CLONE_NEWPID }, { "network", CLONE_NEWNET }, { "mount", CLONE_NEWNS },
        { "ipc", CLONE_NEWIPC }, { "uts", CLONE_NEWUTS }, { "cgroup", CLONE_NEWCGROUP },
};

static int namespaces(const Grpc__CreateContainerRequest *req, spawn_args *a, cc_error **ret_err)
{
        const Grpc__Linux *lx = req->oci->linux;
        a->unshare_flags = CLONE_NEWNS;
        for (size_t i = 0; lx && i < lx->n_namespaces; i++) {
                const Grpc__LinuxNamespace *ns = lx->namespaces[i];
                size_t j;
                for (j = 0; j < CC_ARRAY_SIZE(ns_types); j++)
                        if (ns->type && strcmp(ns->type, ns_types[j].name) == 0)
                                break;
                if (j == CC_ARRAY_SIZE(ns_types))
                        return cc_error_set(ret_err, -EINVAL, "unsupported namespace type '%.32s'",
                                            ns->type ? ns->type : "");
                if (ns->path && *ns->path) {
                        if (ns->path[0] != '/' || strstr(ns->path, "..") ||
                            strlen(ns->path) >= sizeof(a->join[0].path) || a->n_join >= CC_ARRAY_SIZE(a->join))
                                return cc_error_set(ret_err, -EINVAL, "bad %s namespace path", ns->type);
                        if (ns_types[j].flag == CLONE_NEWNS)
                                return cc_error_set(ret_err, -EINVAL, "joining a mount namespace is not supported");
                        a->join[a->n_join].type = ns_types[j].flag;
                        strcpy(a->join[a->n_join++].path, ns->path);
                } else {
                        a->unshare_flags |= ns_types[j].flag;
                }
        }
        if (req->sandbox_pidns && agent.sandbox_pidns_pid > 0 && a->n_join < CC_ARRAY_SIZE(a->join)) {
                a->unshare_flags &= ~CLONE_NEWPID;
                a->join[a->n_join].type = CLONE_NEWPID;
                snprintf(a->join[a->n_join++].path, sizeof(a->join[0].path), "/proc/%d/ns/pid",
                         (int)agent.sandbox_pidns_pid);
        }
        return 0;
}

static uint64_t mono_us(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void undo_rmdir(void *p) { rmdir(p); }

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
        if (remove(path) < 0 && errno != ENOENT)
                log_debug("remove %s: %s", path, strerror(errno));
        return 0;
}
/* p: the overlay's merged directory, AGENT_RW_DIR/<id>/rootfs */
static void undo_overlay(void *p)
{
        umount2(p, MNT_DETACH);
        char *slash = strrchr(p, '/');
        if (slash) {
                *slash = 0;
                nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
                *slash = '/';
        }
}

/* Guest mode, writable rootfs: an overlay whose upper layer lives in guest
 * memory, so container writes never reach the host's shared directory. */
static int guest_overlay(const char *id, const char *lower, char **ret_merged, cc_error **ret_err)
{
        char base[PATH_MAX], upper[PATH_MAX + 8], work[PATH_MAX + 8], merged[PATH_MAX + 8];
        snprintf(base, sizeof(base), "%s/%s", AGENT_RW_DIR, id);
        snprintf(upper, sizeof(upper), "%s/upper", base);
        snprintf(work, sizeof(work), "%s/work", base);
        snprintf(merged, sizeof(merged), "%s/rootfs", base);
        agent_modules_wait(); /* overlay */
        mkdir("/run/cocoon", 0755);
        mkdir(AGENT_RW_DIR, 0700);
        if ((mkdir(base, 0700) < 0 && errno != EEXIST) || (mkdir(upper, 0755) < 0 && errno != EEXIST) ||
            (mkdir(work, 0700) < 0 && errno != EEXIST) || (mkdir(merged, 0755) < 0 && errno != EEXIST))
                return cc_error_errno(ret_err, "overlay directories for %s", id);
        _cleanup_free_ char *opts = NULL;
        if (asprintf(&opts, "lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work) < 0)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        if (mount("overlay", merged, "overlay", 0, opts) < 0)
                return cc_error_errno(ret_err, "mount overlay rootfs");
        *ret_merged = strdup(merged);
        return *ret_merged ? 0 : cc_error_set(ret_err, -ENOMEM, "out of memory");
}

static int resolve_rootfs(agent_container *c, cc_error **ret_err)
{
        const Grpc__Root *root = c->req->oci->root;
        char path[PATH_MAX];
        if (agent.guest) {
                /* Kata: an absolute guest path inside a storage mounted
                 * below /run/cocoon/ (e.g. AGENT_SHARED_DIR/<id>/rootfs);
                 * a relative path is taken relative to AGENT_SHARED_DIR. */
                const char *p = root->path;
                if (p[0] == '/') {
                        if (strncmp(p, "/run/cocoon/", 12) != 0 ||
                            strncmp(p, AGENT_RW_DIR "/", strlen(AGENT_RW_DIR) + 1) == 0)
                                return cc_error_set(ret_err, -EINVAL, "root path '%.64s' is not below /run/cocoon", p);
                        if (agent_validate_relpath("root.path", p + 12, ret_err) < 0)
                                return -EINVAL;
                        snprintf(path, sizeof(path), "%s", p);
                } else {
                        if (agent_validate_relpath("root.path", p, ret_err) < 0)
                                return -EINVAL;
                        snprintf(path, sizeof(path), "%s/%s", AGENT_SHARED_DIR, p);
                }
        } else {
                snprintf(path, sizeof(path), "%s", root->path);
        }
        struct stat st;
        if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
                return cc_error_set(ret_err, -EINVAL, "rootfs '%.200s' is not a directory", path);
        if (agent.guest && !root->readonly)
                return guest_overlay(c->id, path, &c->rootfs, ret_err);
        c->rootfs = strdup(path);
        return c->rootfs ? 0 : cc_error_set(ret_err, -ENOMEM, "out of memory");
}

static void container_free(agent_container *c)
{
        if (!c)
                return;
        agent_process_free(c->init);
        while (c->execs) {
                agent_process *p = c->execs;
                c->execs = p->next;
                agent_process_free(p);
        }
        if (c->sync_fd >= 0)
                close(c->sync_fd);
        if (c->req)
                protobuf_c_message_free_unpacked(&c->req->base, NULL);
        free(c->cgroup);
        free(c->rootfs);
        free(c->overlay);
        free(c->id);
        free(c);
}

int agent_container_create(Grpc__CreateContainerRequest *req, cc_error **ret_err)
{
        _cleanup_undo_ cc_undo undo = CC_UNDO_INIT;
        agent_container *c = calloc(1, sizeof(*c));
        if (!c || !(c->id = strdup(req->container_id))) {
                free(c);
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        c->req = req;
        c->sync_fd = -1;
        c->oom_wd = -1;
        int r;
        agent_exec_plan plan;
        memset(&plan, 0, sizeof(plan));
        child_stdio io = { .child = { -1, -1, -1 }, .parent = { -1, -1, -1 }, -1 };
        spawn_args a;
        memset(&a, 0, sizeof(a));
        uint64_t t[5];
        t[0] = mono_us();

        if ((r = resolve_rootfs(c, ret_err)) < 0)
                goto fail;
        t[1] = mono_us();
        if (agent.guest && !req->oci->root->readonly) {
                c->overlay = strdup(c->rootfs);
                cc_undo_push(&undo, undo_overlay, strdup(c->rootfs), free);
        }
        if ((r = agent_plan_build(&plan, req->oci->process, req->oci, c->rootfs, ret_err)) < 0)
                goto fail;
        if ((r = namespaces(req, &a, ret_err)) < 0)
                goto fail;
        t[2] = mono_us();
        if ((r = agent_cgroup_create(c->id, req->oci, &c->cgroup, ret_err)) < 0)
                goto fail;
        cc_undo_push(&undo, undo_rmdir, strdup(c->cgroup), free);
        t[3] = mono_us();
        if ((r = stdio_open(&io, &plan, ret_err)) < 0)
                goto fail;
        if (!(c->init = agent_process_new(c, NULL))) {
                r = cc_error_set(ret_err, -ENOMEM, "out of memory");
                goto fail;
        }

        a.spec = req->oci;
        a.rootfs = c->rootfs;
        a.cgroup = c->cgroup;
        a.plan = &plan;
        if (a.unshare_flags & CLONE_NEWUTS)
                a.hostname = req->oci->hostname && *req->oci->hostname ? req->oci->hostname : agent.hostname;
        for (int i = 0; i < 3; i++)
                a.stdio[i] = io.child[i];
        pid_t pid;
        if ((r = agent_spawn(&a, &c->sync_fd, &pid, &io.pty_master, ret_err)) < 0)
                goto fail;
        c->init->pid = pid;
        if ((r = stdio_attach(&io, c->init, ret_err)) < 0) {
                kill(pid, SIGKILL);
                goto fail;
        }
        agent_plan_done(&plan);
        agent_oom_watch(c);
        t[4] = mono_us();
        log_debug("container %.12s created in %.1f ms: rootfs %.1f, plan %.1f, cgroup %.1f, spawn %.1f", c->id,
                  (t[4] - t[0]) / 1e3, (t[1] - t[0]) / 1e3, (t[2] - t[1]) / 1e3, (t[3] - t[2]) / 1e3,
                  (t[4] - t[3]) / 1e3);
        c->state = AGENT_CTR_CREATED;
        c->next = agent.containers;
        agent.containers = c;
        cc_undo_disarm(&undo);
        return 0;
fail:
        agent_plan_done(&plan);
        stdio_close(&io);
        c->req = NULL; /* the caller still owns it */
        container_free(c);
        return r;
}

int agent_container_start(agent_container *c, cc_error **ret_err)
{
        if (c->state != AGENT_CTR_CREATED || c->sync_fd < 0)
                return cc_error_set(ret_err, -EBUSY, "container %s is not in the created state", c->id);
        int r = agent_spawn_start(c->sync_fd, ret_err);
        close(c->sync_fd);
        c->sync_fd = -1;
        if (r < 0)
                return r;
        c->state = AGENT_CTR_RUNNING;
        return 0;
}

int agent_exec_create(agent_container *c, Grpc__ExecProcessRequest *req, cc_error **ret_err)
{
        if (c->state != AGENT_CTR_RUNNING || !c->init || c->init->exited)
                return cc_error_set(ret_err, -EBUSY, "container %s is not running", c->id);
        agent_exec_plan plan;
        int r = agent_plan_build(&plan, req->process, c->req->oci, c->rootfs, ret_err);
        if (r < 0)
                return r;
        child_stdio io = { .child = { -1, -1, -1 }, .parent = { -1, -1, -1 }, -1 };
        agent_process *p = NULL;
        spawn_args a;
        memset(&a, 0, sizeof(a));
        if ((r = stdio_open(&io, &plan, ret_err)) < 0)
                goto out;
        if (!(p = agent_process_new(c, req->exec_id))) {
                r = cc_error_set(ret_err, -ENOMEM, "out of memory");
                goto out;
        }
        a.spec = c->req->oci;
        a.cgroup = c->cgroup;
        a.plan = &plan;
        a.exec_target = c->init->pid;
        for (int i = 0; i < 3; i++)
                a.stdio[i] = io.child[i];
        pid_t pid;
        if ((r = agent_spawn(&a, NULL, &pid, &io.pty_master, ret_err)) < 0)
                goto out;
        p->pid = pid;
        if ((r = stdio_attach(&io, p, ret_err)) < 0) {
                kill(pid, SIGKILL);
                goto out;
        }
        p->next = c->execs;
        c->execs = TAKE_PTR(p);
out:
        agent_process_free(p);
        stdio_close(&io);
        agent_plan_done(&plan);
        return r < 0 ? r : 0;
}

/* Kills every process of the container and waits (bounded) for the init
 * to be reaped. Drops agent_lock while waiting so the reactor can reap. */
static void kill_and_wait(agent_container *c, uint32_t timeout_s)
{
        if (c->paused)
                agent_cgroup_freeze(c->cgroup, false, NULL);
        if (agent_cgroup_kill(c->cgroup) < 0 && c->init && !c->init->exited)
                kill(c->init->pid, SIGKILL);
        struct timespec start;
        clock_gettime(CLOCK_MONOTONIC, &start);
        uint64_t limit_ms = timeout_s ? timeout_s * 1000ull : 10000;
        for (;;) {
                uint64_t procs = 0;
                char p[PATH_MAX];
                snprintf(p, sizeof(p), "%s/cgroup.procs", c->cgroup);
                int fd = open(p, O_RDONLY | O_CLOEXEC);
                char buf[16];
                ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf)) : 0;
                if (fd >= 0)
                        close(fd);
                procs = n > 0;
                if (!procs && (!c->init || c->init->exited))
                        return;
                struct timespec now;
                clock_gettime(CLOCK_MONOTONIC, &now);
                uint64_t el = (now.tv_sec - start.tv_sec) * 1000ull + (now.tv_nsec - start.tv_nsec) / 1000000;
                if (el > limit_ms)
                        return;
                pthread_mutex_unlock(&agent_lock);
                /* cgroup.events "populated 0" could be watched; a removal
                 * is rare enough for a short bounded poll. */
                poll(NULL, 0, 5);
                pthread_mutex_lock(&agent_lock);
        }
}

int agent_container_remove(agent_container *c, uint32_t timeout_s, cc_error **ret_err)
{
        kill_and_wait(c, timeout_s);
        /* c may have been removed by a concurrent call while unlocked: it
         * cannot, handlers run one at a time per connection and the agent
         * serves one connection. Still, look it up again. */
        agent_container **pp;
        for (pp = &agent.containers; *pp && *pp != c; pp = &(*pp)->next)
                ;
        if (!*pp)
                return 0;
        agent_oom_unwatch(c);
        if (agent_cgroup_remove(c->cgroup) < 0) {
                int e = -errno;
                return cc_error_set(ret_err, e, "remove cgroup %s: %s", c->cgroup, strerror(-e));
        }
        if (c->overlay) {
                umount2(c->overlay, MNT_DETACH);
                /* the upper layer lives in guest memory: free it */
                char base[PATH_MAX];
                snprintf(base, sizeof(base), "%s/%s", AGENT_RW_DIR, c->id);
                if (nftw(base, rm_one, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0)
                        log_warn("container=%s: remove %s: %s", c->id, base, strerror(errno));
        }
        *pp = c->next;
        container_free(c);
        return 0;
}

void agent_container_kill_all(void)
{
        while (agent.containers) {
                agent_container *c = agent.containers;
                cc_error *err = NULL;
                if (agent_container_remove(c, 5, &err) < 0) {
                        log_warn("container=%s remove: %s", c->id, err->msg);
                        cc_error_free(err);
                        agent.containers = c->next; /* give up on it */
                }
        }
}
