/* SPDX-License-Identifier: Apache-2.0 */
/* The host backend: boots nothing. For host-mode pods it runs one
 * `cocoon-agent --host` per pod, which creates the containers directly on
 * this machine:
 *
 *   <binary> --host --listen <run_dir>/agent.sock --state-dir <run_dir>/agent
 *            --cgroup-root <cgroup> [--log-level L]
 *
 * vmm_config fields used: id, run_dir (must exist), binary (NULL:
 * COCOON_LIBEXECDIR/cocoon-agent) and kernel_params, read here as
 * space-separated options of this backend:
 *   cgroup_parent=DIR   a directory of a cgroup v2 hierarchy; the pod's cgroup
 *                       is DIR/<id> (default: <cgroup2 mount>/cocoon)
 *   log_level=LEVEL     the agent's --log-level
 *
 * The pod's cgroup (created by start, removed by stop) is the agent's
 * --cgroup-root: container cgroups go below it; the agent itself is moved
 * into its leaf <cgroup>/agent. stop() SIGTERMs the agent, SIGKILLs it after
 * the timeout, then kills whatever is left in the pod's cgroup (containers
 * the agent could not end) through cgroup.kill and removes the cgroup tree,
 * the socket, the agent's state directory and its log (<run_dir>/agent.log).
 *
 * The agent runs in its own session and outlives cocoond; save()/load()
 * re-attach (pid + start time). load() succeeds for a well-formed record even
 * when the agent is gone: alive() says so, stop() still cleans up. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/json.h"
#include "common/log.h"
#include "common/spawn.h"
#include "common/undo.h"
#include "runtime/vmm-proc.h"
#include "runtime/vmm.h"

#ifndef COCOON_LIBEXECDIR
#define COCOON_LIBEXECDIR "/usr/libexec/cocoon"
#endif
#define HOST_DEFAULT_BINARY COCOON_LIBEXECDIR "/cocoon-agent"
#define SOCK_NAME "agent.sock"
#define STATE_NAME "agent"
#define LOG_NAME "agent.log"
#define START_TIMEOUT_MS 10000
#define CGROUP_EMPTY_TIMEOUT_MS 5000
#define SAVE_VERSION 1
#define SUN_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path))

typedef struct host_vm {
        vmm_base base;
        char *id, *run_dir, *binary, *log_level;
        char *sock_path, *state_dir, *log_path, *cgroup;
        cc_proc proc;
        int pidfd;
        bool child, started;
} host_vm;

static void host_free(vmm *v);

/* ---- configuration ------------------------------------------------------------ */

static bool token_ok(const char *s, size_t max)
{
        size_t n = s ? strlen(s) : 0;
        if (n == 0 || n > max)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                      c == '_' || c == '-'))
                        return false;
        }
        return true;
}

static bool abs_path_ok(const char *p, size_t max)
{
        if (!p || p[0] != '/' || strlen(p) >= max)
                return false;
        for (const char *c = p; *c; c++)
                if ((unsigned char)*c < 0x20 || *c == 0x7f)
                        return false;
        return p[1] == 0 || cc_path_is_safe_relative(p + 1);
}

/* The mount point of the cgroup v2 hierarchy (/sys/fs/cgroup, or
 * /sys/fs/cgroup/unified on a hybrid host). */
static int cgroup2_mount(char **ret, cc_error **ret_err)
{
        _cleanup_free_ char *buf = NULL;
        int r = cc_read_file("/proc/self/mountinfo", 16u << 20, &buf, NULL, ret_err);
        if (r < 0)
                return r;
        for (char *line = buf, *next; line && *line; line = next) {
                next = strchr(line, '\n');
                if (next)
                        *next++ = 0;
                char *dash = strstr(line, " - cgroup2 ");
                if (!dash)
                        continue;
                char *save = NULL, *f = NULL;
                f = strtok_r(line, " ", &save);
                for (int k = 0; f && k < 4; k++)
                        f = strtok_r(NULL, " ", &save);
                if (!f || f[0] != '/' || strchr(f, '\\'))
                        continue;
                *ret = strdup(f);
                return *ret ? 0 : cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        return cc_error_set(ret_err, -EOPNOTSUPP, "host mode needs a cgroup v2 hierarchy; none is mounted");
}

/* kernel_params: "cgroup_parent=DIR log_level=LEVEL" */
static int parse_params(const char *params, char **ret_parent, char **ret_level, cc_error **ret_err)
{
        _cleanup_free_ char *copy = strdup(params ? params : "");
        if (!copy)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        char *save = NULL;
        for (char *w = strtok_r(copy, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
                char **dst = NULL;
                const char *v = NULL;
                if (strncmp(w, "cgroup_parent=", 14) == 0) {
                        v = w + 14;
                        if (!abs_path_ok(v, PATH_MAX - 300))
                                return cc_error_set(ret_err, -EINVAL, "host: cgroup_parent must be a clean "
                                                                      "absolute path");
                        dst = ret_parent;
                } else if (strncmp(w, "log_level=", 10) == 0) {
                        v = w + 10;
                        if (!token_ok(v, 16))
                                return cc_error_set(ret_err, -EINVAL, "host: invalid log_level");
                        dst = ret_level;
                } else {
                        return cc_error_set(ret_err, -EINVAL, "host: unknown option '%.*s' (known: "
                                                              "cgroup_parent=, log_level=)",
                                            (int)CC_MIN(strcspn(w, "="), 40), w);
                }
                free(*dst);
                if (!(*dst = strdup(v)))
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        return 0;
}

static int check_config(const vmm_config *c, cc_error **ret_err)
{
        if (!c)
                return cc_error_set(ret_err, -EINVAL, "host: no configuration");
        if (!token_ok(c->id, 128))
                return cc_error_set(ret_err, -EINVAL, "host: invalid pod id");
        if (!abs_path_ok(c->run_dir, SUN_PATH_MAX - sizeof("/" SOCK_NAME)))
                return cc_error_set(ret_err, -EINVAL, "host: run directory must be a clean absolute path "
                                                      "shorter than %zu bytes", SUN_PATH_MAX - sizeof("/" SOCK_NAME));
        if (c->binary && !abs_path_ok(c->binary, PATH_MAX))
                return cc_error_set(ret_err, -EINVAL, "host: agent binary must be an absolute path");
        return 0;
}

static int host_create(const vmm_config *c, vmm **ret, cc_error **ret_err)
{
        int r = check_config(c, ret_err);
        if (r < 0)
                return r;
        _cleanup_free_ char *parent = NULL, *level = NULL;
        if ((r = parse_params(c->kernel_params, &parent, &level, ret_err)) < 0)
                return r;
        if (!parent) {
                _cleanup_free_ char *mnt = NULL;
                if ((r = cgroup2_mount(&mnt, ret_err)) < 0)
                        return r;
                if (asprintf(&parent, "%s/cocoon", mnt) < 0)
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        host_vm *v = calloc(1, sizeof(*v));
        if (!v)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        v->base.ops = &vmm_host_ops;
        v->pidfd = -1;
        v->log_level = TAKE_PTR(level);
        if (!(v->id = strdup(c->id)) || !(v->run_dir = strdup(c->run_dir)) ||
            !(v->binary = strdup(c->binary ? c->binary : HOST_DEFAULT_BINARY)) ||
            asprintf(&v->sock_path, "%s/%s", c->run_dir, SOCK_NAME) < 0 ||
            asprintf(&v->state_dir, "%s/%s", c->run_dir, STATE_NAME) < 0 ||
            asprintf(&v->log_path, "%s/%s", c->run_dir, LOG_NAME) < 0 ||
            asprintf(&v->cgroup, "%s/%s", parent, c->id) < 0) {
                host_free((vmm *)v);
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        *ret = (vmm *)v;
        return 0;
}

static int host_probe(const vmm_config *c, cc_error **ret_err)
{
        vmm *v = NULL;
        int r = host_create(c, &v, ret_err);
        if (r < 0)
                return r;
        host_vm *h = (host_vm *)v;
        if (access(h->binary, X_OK) < 0)
                r = cc_error_errno(ret_err, "host: agent binary '%s'", h->binary);
        host_free(v);
        return r;
}

static int host_add_device(vmm *vv, const vmm_device *d, cc_error **ret_err)
{
        if (!d)
                return cc_error_set(ret_err, -EINVAL, "host: no device");
        /* the host agent reads the pod's files where they are */
        if (d->kind == VMM_DEV_FS)
                return 0;
        return cc_error_set(ret_err, -EOPNOTSUPP, "host: device kind %d has no meaning without a VM",
                            (int)d->kind);
}

/* ---- the pod's cgroup ------------------------------------------------------------ */

static int write_str(const char *dir, const char *file, const char *val)
{
        char p[PATH_MAX];
        if (snprintf(p, sizeof(p), "%s/%s", dir, file) >= (int)sizeof(p))
                return -ENAMETOOLONG;
        _cleanup_close_ int fd = open(p, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        size_t n = strlen(val);
        return write(fd, val, n) == (ssize_t)n ? 0 : -errno;
}

/* Is the cgroup (and everything below it) free of processes? */
static int cgroup_populated(const char *dir)
{
        char p[PATH_MAX];
        snprintf(p, sizeof(p), "%s/cgroup.events", dir);
        _cleanup_free_ char *buf = NULL;
        if (cc_read_file(p, 4096, &buf, NULL, NULL) < 0)
                return -ENOENT;
        const char *m = strstr(buf, "populated ");
        return m && m[10] == '1';
}

/* Kills every process in the cgroup tree and waits (inotify on
 * cgroup.events, no polling) until it is empty. */
static int cgroup_kill_all(const char *dir, int timeout_ms)
{
        int pop = cgroup_populated(dir);
        if (pop <= 0)
                return 0;
        char ev[PATH_MAX];
        snprintf(ev, sizeof(ev), "%s/cgroup.events", dir);
        _cleanup_close_ int ino = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
        if (ino < 0 || inotify_add_watch(ino, ev, IN_MODIFY) < 0)
                return -errno;
        if (write_str(dir, "cgroup.kill", "1") < 0) {
                /* Linux < 5.14: signal every member */
                char procs[PATH_MAX];
                snprintf(procs, sizeof(procs), "%s/cgroup.procs", dir);
                _cleanup_free_ char *buf = NULL;
                if (cc_read_file(procs, 1u << 20, &buf, NULL, NULL) == 0)
                        for (char *s = buf; *s;) {
                                char *end = NULL;
                                long pid = strtol(s, &end, 10);
                                if (end == s)
                                        break;
                                if (pid > 1)
                                        (void)kill((pid_t)pid, SIGKILL);
                                s = end + (*end == '\n');
                        }
        }
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (;;) {
                if (cgroup_populated(dir) <= 0)
                        return 0;
                struct timespec t;
                clock_gettime(CLOCK_MONOTONIC, &t);
                long left = timeout_ms - ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
                if (left <= 0)
                        return -ETIMEDOUT;
                struct pollfd pf = { ino, POLLIN, 0 };
                if (poll(&pf, 1, (int)left) > 0) {
                        char b[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
                        while (read(ino, b, sizeof(b)) > 0)
                                ;
                }
        }
}

/* rmdir of every directory of the tree, deepest first (cgroupfs has no
 * files to unlink). */
static int cgroup_rmdir_tree(int dfd, const char *name)
{
        int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? 0 : -errno;
        _cleanup_closedir_ DIR *d = fdopendir(fd);
        if (!d) {
                close(fd);
                return -errno;
        }
        struct dirent *de;
        int r = 0;
        while ((de = readdir(d)))
                if (de->d_type == DT_DIR && strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
                        int k = cgroup_rmdir_tree(dirfd(d), de->d_name);
                        if (k < 0 && r == 0)
                                r = k;
                }
        if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT && r == 0)
                r = -errno;
        return r;
}

static int cgroup_remove(const char *dir, cc_error **ret_err)
{
        if (access(dir, F_OK) < 0)
                return 0;
        int r = cgroup_kill_all(dir, CGROUP_EMPTY_TIMEOUT_MS);
        if (r < 0)
                return cc_error_set(ret_err, r, "host: processes of cgroup '%s' did not end: %s", dir,
                                    strerror(-r));
        r = cgroup_rmdir_tree(AT_FDCWD, dir);
        if (r < 0)
                return cc_error_set(ret_err, r, "host: remove cgroup '%s': %s", dir, strerror(-r));
        return 0;
}

static void undo_cgroup(void *dir) { (void)cgroup_remove(dir, NULL); }

/* Best effort: the controllers containers are limited with, available down
 * to the pod's cgroup (the agent enables them below it). A controller the
 * kernel or a parent lacks stays off; the cgroup v2 root and our own
 * directories hold no processes, so enabling is allowed. */
static void enable_controllers(const char *parent)
{
        static const char *const ctrls[] = { "+cpu", "+memory", "+pids", "+io" };
        _cleanup_free_ char *mnt = NULL;
        if (cgroup2_mount(&mnt, NULL) < 0)
                return;
        size_t ml = strlen(mnt);
        if (strncmp(parent, mnt, ml) != 0 || (parent[ml] != '/' && parent[ml] != 0))
                return;
        char dir[PATH_MAX];
        snprintf(dir, sizeof(dir), "%s", parent);
        for (size_t i = ml;; i++) {
                if (dir[i] == '/' || dir[i] == 0) {
                        char c = dir[i];
                        dir[i] = 0;
                        for (size_t k = 0; k < CC_ARRAY_SIZE(ctrls); k++)
                                (void)write_str(i == 0 ? "/" : dir, "cgroup.subtree_control", ctrls[k]);
                        dir[i] = c;
                        if (!c)
                                break;
                }
        }
}

static int cgroup_create(host_vm *v, cc_error **ret_err)
{
        _cleanup_free_ char *parent = strdup(v->cgroup);
        if (!parent)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        *strrchr(parent, '/') = 0;
        int r = cc_mkdir_p(parent, 0755, ret_err);
        if (r < 0)
                return r;
        enable_controllers(parent);
        /* a pod cgroup left by a crash (no processes) is cleared first */
        if (access(v->cgroup, F_OK) == 0 && (r = cgroup_remove(v->cgroup, ret_err)) < 0)
                return r;
        if (mkdir(v->cgroup, 0755) < 0)
                return cc_error_errno(ret_err, "host: create cgroup '%s'", v->cgroup);
        char leaf[PATH_MAX];
        snprintf(leaf, sizeof(leaf), "%s/agent", v->cgroup);
        if (mkdir(leaf, 0755) < 0) {
                r = cc_error_errno(ret_err, "host: create cgroup '%s'", leaf);
                (void)rmdir(v->cgroup);
                return r;
        }
        return 0;
}

/* ---- start ------------------------------------------------------------------- */

static void undo_unlink(void *p) { (void)unlink(p); }
static void undo_rm_rf(void *p) { (void)cc_rm_rf(p, NULL); }

static void undo_kill(void *arg)
{
        host_vm *v = arg;
        (void)vmm_proc_terminate(&v->proc, v->pidfd, SIGKILL, 0, v->child);
        if (v->pidfd >= 0)
                close(v->pidfd);
        v->pidfd = -1;
        v->proc = (cc_proc){ 0 };
}

static int push(cc_undo *u, cc_undo_fn fn, const char *path)
{
        char *p = strdup(path);
        if (!p) {
                fn((void *)path);
                return -ENOMEM;
        }
        return cc_undo_push(u, fn, p, free);
}

/* The agent binds its socket, then listens: the file appears a moment
 * before connections are accepted. Connect until it does (bounded; the
 * only retry loop, waiting on the agent's pidfd between tries). */
static int wait_listening(host_vm *v, int timeout_ms, cc_error **ret_err)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", v->sock_path);
        for (int waited = 0;; waited += 2) {
                _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fd < 0)
                        return cc_error_errno(ret_err, "socket");
                if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
                        return 0;
                if (errno != ECONNREFUSED && errno != ENOENT && errno != EAGAIN)
                        return cc_error_errno(ret_err, "connect '%s'", v->sock_path);
                if (waited >= timeout_ms)
                        return cc_error_set(ret_err, -ETIMEDOUT, "'%s' accepts no connection", v->sock_path);
                if (vmm_wait_exit(v->pidfd, 2) == 0)
                        return cc_error_set(ret_err, -ECHILD, "the agent exited during start");
        }
}

static int host_start(vmm *vv, cc_error **ret_err)
{
        host_vm *v = (host_vm *)vv;
        if (v->started)
                return cc_error_set(ret_err, -EALREADY, "host %s: already started", v->id);
        _cleanup_undo_ cc_undo undo = CC_UNDO_INIT;
        _cleanup_close_ int logfd = -1, ino = -1;
        cc_error *err = NULL;
        struct stat st;
        int r;

        if (stat(v->run_dir, &st) < 0) {
                r = cc_error_errno(&err, "run directory '%s'", v->run_dir);
                goto out;
        }
        if (access(v->binary, X_OK) < 0) {
                r = cc_error_errno(&err, "agent binary '%s'", v->binary);
                goto out;
        }
        if (lstat(v->state_dir, &st) == 0) {
                r = cc_error_set(&err, -EEXIST, "'%s' exists (another agent's state?)", v->state_dir);
                goto out;
        }
        (void)unlink(v->sock_path); /* a stale socket of a dead agent */
        if ((r = cgroup_create(v, &err)) < 0)
                goto out;
        if ((r = push(&undo, undo_cgroup, v->cgroup)) < 0)
                goto oom;
        logfd = open(v->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY,
                     0600);
        if (logfd < 0) {
                r = cc_error_errno(&err, "open '%s'", v->log_path);
                goto out;
        }
        if ((r = push(&undo, undo_unlink, v->log_path)) < 0)
                goto oom;
        if ((r = push(&undo, undo_rm_rf, v->state_dir)) < 0 || (r = push(&undo, undo_unlink, v->sock_path)) < 0)
                goto oom;
        if ((ino = vmm_watch_dir(v->run_dir, &err)) < 0) {
                r = ino;
                goto out;
        }

        char *argv[12];
        int n = 0;
        argv[n++] = v->binary;
        argv[n++] = "--host";
        argv[n++] = "--listen";
        argv[n++] = v->sock_path;
        argv[n++] = "--state-dir";
        argv[n++] = v->state_dir;
        argv[n++] = "--cgroup-root";
        argv[n++] = v->cgroup;
        if (v->log_level) {
                argv[n++] = "--log-level";
                argv[n++] = v->log_level;
        }
        argv[n] = NULL;
        cc_spawn_opts so = CC_SPAWN_OPTS_INIT;
        so.stdout_fd = logfd;
        so.stderr_fd = logfd;
        so.new_session = true;
        so.cwd = "/";
        if ((r = cc_spawn(v->binary, argv, &so, &v->proc, &err)) < 0)
                goto out;
        v->child = true;
        v->pidfd = cc_proc_pidfd(&v->proc, &err);
        if (v->pidfd < 0) {
                r = v->pidfd;
                v->pidfd = -1;
                (void)vmm_proc_terminate(&v->proc, -1, SIGKILL, 0, true);
                v->proc = (cc_proc){ 0 };
                if (r == -ESRCH) /* gone already: its log says why */
                        r = vmm_error_exited(&err, "the agent", v->log_path, 300);
                goto out;
        }
        if ((r = cc_undo_push(&undo, undo_kill, v, NULL)) < 0)
                goto oom;
        /* into the pod's cgroup before it can start anything */
        char leaf[PATH_MAX], pid[24];
        snprintf(leaf, sizeof(leaf), "%s/agent", v->cgroup);
        snprintf(pid, sizeof(pid), "%d", (int)v->proc.pid);
        if ((r = write_str(leaf, "cgroup.procs", pid)) < 0) {
                r = cc_error_set(&err, r, "move the agent into cgroup '%s': %s", leaf, strerror(-r));
                goto out;
        }
        r = vmm_wait_file(ino, v->run_dir, SOCK_NAME, v->pidfd, START_TIMEOUT_MS, &err);
        if (r == 0)
                r = wait_listening(v, START_TIMEOUT_MS, &err);
        if (r < 0) {
                if (vmm_wait_exit(v->pidfd, 0) == 0)
                        r = vmm_error_exited(&err, "the agent", v->log_path, 300);
                goto out;
        }
        v->started = true;
        cc_undo_disarm(&undo);
        log_debug("host %s: agent pid %d, socket %s, cgroup %s", v->id, (int)v->proc.pid, v->sock_path,
                  v->cgroup);
        return 0;
oom:
        r = cc_error_set(&err, -ENOMEM, "out of memory");
out:
        cc_undo_run(&undo);
        cc_error_prefix(&err, "host %s: start agent", v->id);
        return cc_error_propagate(ret_err, err);
}

/* ---- running agent ------------------------------------------------------------------ */

static bool host_alive(vmm *vv)
{
        host_vm *v = (host_vm *)vv;
        return v->proc.pid > 0 && cc_proc_alive(&v->proc);
}

static int host_stop(vmm *vv, int timeout_ms, cc_error **ret_err)
{
        host_vm *v = (host_vm *)vv;
        cc_error *err = NULL;
        int r;
        if (v->proc.pid > 0) {
                /* the agent ends its containers on SIGTERM; the cgroup kill
                 * below catches what it could not */
                r = vmm_proc_terminate(&v->proc, v->pidfd, SIGTERM, timeout_ms > 0 ? timeout_ms : 0, v->child);
                if (r < 0)
                        return cc_error_set(ret_err, r, "host %s: agent pid %d survived SIGKILL", v->id,
                                            (int)v->proc.pid);
        }
        if ((r = cgroup_remove(v->cgroup, &err)) < 0) {
                cc_error_prefix(&err, "host %s: stop", v->id);
                return cc_error_propagate(ret_err, err);
        }
        (void)unlink(v->sock_path);
        if ((r = cc_rm_rf(v->state_dir, &err)) < 0) {
                cc_error_prefix(&err, "host %s: stop", v->id);
                return cc_error_propagate(ret_err, err);
        }
        char tail[300];
        vmm_log_tail(v->log_path, tail, sizeof(tail));
        if (tail[0])
                log_debug("host %s: agent's last message: %s", v->id, tail);
        (void)unlink(v->log_path);
        v->started = false;
        return 0;
}

static int host_agent_endpoint(vmm *vv, vmm_endpoint *ret, cc_error **ret_err)
{
        host_vm *v = (host_vm *)vv;
        vmm_endpoint ep = { .kind = VMM_EP_UNIX };
        if (strlen(v->sock_path) >= sizeof(ep.path))
                return cc_error_set(ret_err, -ENAMETOOLONG, "host %s: socket path too long", v->id);
        strcpy(ep.path, v->sock_path);
        *ret = ep;
        return 0;
}

static int host_exit_fd(vmm *v) { return ((host_vm *)v)->pidfd; }
static int host_pid(vmm *v) { return ((host_vm *)v)->proc.pid; }

/* ---- save / load -------------------------------------------------------------------- */

static int host_save(vmm *vv, json_object **ret, cc_error **ret_err)
{
        host_vm *v = (host_vm *)vv;
        if (v->proc.pid <= 0)
                return cc_error_set(ret_err, -ESRCH, "host %s: not started", v->id);
        _cleanup_json_ json_object *o = json_object_new_object();
        if (!o)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        vmm_save_header(o, SAVE_VERSION, "host", v->id, &v->proc, v->run_dir);
        json_object_object_add(o, "binary", json_object_new_string(v->binary));
        json_object_object_add(o, "cgroup", json_object_new_string(v->cgroup));
        *ret = TAKE_PTR(o);
        return 0;
}

static int host_load(const vmm_config *c, json_object *saved, vmm **ret, cc_error **ret_err)
{
        cc_error *err = NULL;
        vmm_saved_header h;
        const char *binary = NULL, *cgroup = NULL;
        _cleanup_free_ char *params = NULL, *parent = NULL;
        host_vm *v = NULL;
        int r;
        if ((r = vmm_load_header(saved, &h, &err)) < 0 ||
            (r = cc_json_get_string(saved, "binary", false, &binary, &err)) < 0 ||
            (r = cc_json_get_string(saved, "cgroup", false, &cgroup, &err)) < 0)
                goto fail;
        if (h.version != SAVE_VERSION || strcmp(h.backend, "host") != 0) {
                r = cc_error_set(&err, -EINVAL, "not a version %d host record", SAVE_VERSION);
                goto fail;
        }
        if (h.pid <= 1 || h.pid > INT_MAX || h.start_time < 0 || !abs_path_ok(cgroup, PATH_MAX) ||
            !strstr(cgroup, "/") || strcmp(strrchr(cgroup, '/') + 1, h.id) != 0) {
                r = cc_error_set(&err, -EINVAL, "invalid pid, start time or cgroup");
                goto fail;
        }
        if (c && c->run_dir && strcmp(c->run_dir, h.run_dir) != 0) {
                r = cc_error_set(&err, -EINVAL, "saved run directory differs from the configured one");
                goto fail;
        }
        if (!(parent = strdup(cgroup))) {
                r = cc_error_set(&err, -ENOMEM, "out of memory");
                goto fail;
        }
        *strrchr(parent, '/') = 0;
        if (asprintf(&params, "cgroup_parent=%s", parent[0] ? parent : "/") < 0) {
                r = cc_error_set(&err, -ENOMEM, "out of memory");
                goto fail;
        }
        vmm_config vc = { .id = h.id, .run_dir = h.run_dir, .binary = binary, .kernel_params = params };
        if ((r = host_create(&vc, (vmm **)&v, &err)) < 0)
                goto fail;
        v->proc = (cc_proc){ .pid = (pid_t)h.pid, .start_time = (uint64_t)h.start_time };
        v->started = true;
        if (cc_proc_alive(&v->proc))
                v->pidfd = cc_proc_pidfd(&v->proc, NULL);
        *ret = (vmm *)v;
        return 0;
fail:
        host_free((vmm *)v);
        cc_error_prefix(&err, "re-attach host agent");
        return cc_error_propagate(ret_err, err);
}

static void host_free(vmm *vv)
{
        host_vm *v = (host_vm *)vv;
        if (!v)
                return;
        if (v->pidfd >= 0)
                close(v->pidfd);
        free(v->id);
        free(v->run_dir);
        free(v->binary);
        free(v->log_level);
        free(v->sock_path);
        free(v->state_dir);
        free(v->log_path);
        free(v->cgroup);
        free(v);
}

const vmm_ops vmm_host_ops = {
        .name = "host",
        .probe = host_probe,
        .create = host_create,
        .add_device = host_add_device,
        .start = host_start,
        .stop = host_stop,
        .agent_endpoint = host_agent_endpoint,
        .exit_fd = host_exit_fd,
        .alive = host_alive,
        .pid = host_pid,
        .save = host_save,
        .load = host_load,
        .free = host_free,
};
