/* SPDX-License-Identifier: Apache-2.0 */
#include "runtime/virtiofsd.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/id.h"
#include "common/json.h"
#include "common/log.h"
#include "common/spawn.h"
#include "common/undo.h"
#include "runtime/vmm-proc.h"

#define SOCK_NAME "virtiofsd.sock"
#define LOG_NAME "virtiofsd.log"
#define SAVE_VERSION 1

struct virtiofsd {
        cc_proc proc;
        int pidfd;
        bool child; /* spawned by this process: reap it */
        char *socket_path;
        char *shared_dir;
        char *log_path; /* may be NULL (loaded from an older record) */
};

static const char *const default_binaries[] = {
        "/usr/libexec/virtiofsd",  /* the Rust virtiofsd (Debian 13's package) */
        "/usr/lib/qemu/virtiofsd", /* the C one from qemu-system-common (Debian 12) */
};

const char *virtiofsd_default_binary(void)
{
        for (size_t i = 0; i < CC_ARRAY_SIZE(default_binaries); i++)
                if (access(default_binaries[i], X_OK) == 0)
                        return default_binaries[i];
        return NULL;
}

int virtiofsd_shared_dir(const char *state_dir, const char *id, char **ret, cc_error **ret_err)
{
        if (!state_dir || state_dir[0] != '/')
                return cc_error_set(ret_err, -EINVAL, "virtiofsd: state directory must be absolute");
        if (!cc_id_is_valid(id))
                return cc_error_set(ret_err, -EINVAL, "virtiofsd: invalid sandbox id");
        char *p = NULL;
        if (asprintf(&p, "%s/sandboxes/%s/shared", state_dir, id) < 0)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        *ret = p;
        return 0;
}

static bool one_of(const char *s, const char *const *allowed, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (strcmp(s, allowed[i]) == 0)
                        return true;
        return false;
}

static void undo_unlink(void *path) { (void)unlink(path); }

static void undo_kill(void *arg)
{
        virtiofsd *d = arg;
        (void)vmm_proc_terminate(&d->proc, d->pidfd, SIGKILL, 0, true);
}

int virtiofsd_start(const virtiofsd_config *c, virtiofsd **ret, cc_error **ret_err)
{
        static const char *const caches[] = { "auto", "always", "none" };
        static const char *const sandboxes[] = { "namespace", "chroot" };
        const char *binary = c->binary ? c->binary : virtiofsd_default_binary();
        const char *cache = c->cache ? c->cache : "auto";
        const char *sandbox = c->sandbox ? c->sandbox : "namespace";
        struct stat st;

        if (!binary)
                return cc_error_set(ret_err, -ENOENT,
                                    "virtiofsd: not installed (looked for /usr/libexec/virtiofsd and "
                                    "/usr/lib/qemu/virtiofsd)");
        if (access(binary, X_OK) < 0)
                return cc_error_errno(ret_err, "virtiofsd: '%s' is not executable", binary);
        if (!one_of(cache, caches, CC_ARRAY_SIZE(caches)))
                return cc_error_set(ret_err, -EINVAL, "virtiofsd: unknown cache mode");
        if (!one_of(sandbox, sandboxes, CC_ARRAY_SIZE(sandboxes)))
                return cc_error_set(ret_err, -EINVAL, "virtiofsd: unknown sandbox mode");
        if (!c->shared_dir || c->shared_dir[0] != '/')
                return cc_error_set(ret_err, -EINVAL, "virtiofsd: shared directory must be absolute");
        if (stat(c->shared_dir, &st) < 0)
                return cc_error_errno(ret_err, "virtiofsd: shared directory '%s'", c->shared_dir);
        if (!S_ISDIR(st.st_mode))
                return cc_error_set(ret_err, -ENOTDIR, "virtiofsd: '%s' is not a directory", c->shared_dir);
        if (!c->run_dir || c->run_dir[0] != '/')
                return cc_error_set(ret_err, -EINVAL, "virtiofsd: run directory must be absolute");

        _cleanup_free_ virtiofsd *d = calloc(1, sizeof(*d));
        _cleanup_free_ char *src_opt = NULL, *cache_opt = NULL, *sandbox_opt = NULL;
        if (!d || asprintf(&d->socket_path, "%s/%s", c->run_dir, SOCK_NAME) < 0 ||
            !(d->shared_dir = strdup(c->shared_dir)) ||
            asprintf(&d->log_path, "%s/%s", c->run_dir, LOG_NAME) < 0 ||
            asprintf(&src_opt, "source=%s", c->shared_dir) < 0 ||
            asprintf(&cache_opt, "cache=%s", cache) < 0 ||
            asprintf(&sandbox_opt, "sandbox=%s", sandbox) < 0) {
                if (d) {
                        free(d->socket_path);
                        free(d->shared_dir);
                        free(d->log_path);
                }
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        d->pidfd = -1;
        if (strlen(d->socket_path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
                free(d->socket_path);
                free(d->shared_dir);
                free(d->log_path);
                return cc_error_set(ret_err, -ENAMETOOLONG, "virtiofsd: socket path too long");
        }
        _cleanup_undo_ cc_undo undo = CC_UNDO_INIT;
        _cleanup_close_ int logfd = -1, lfd = -1;
        cc_error *err = NULL;
        int r;

        /* A stale socket of a previous run would make virtiofsd fail. */
        (void)unlink(d->socket_path);
        logfd = open(d->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC |
                                                           O_NOFOLLOW | O_NOCTTY, 0600);
        if (logfd < 0) {
                r = cc_error_errno(&err, "open '%s'", d->log_path);
                goto fail;
        }
        cc_undo_push(&undo, undo_unlink, strdup(d->log_path), free);

        /* The listening socket is ours, handed over with --fd: the VMM can
         * connect at once (the connection waits in the backlog until
         * virtiofsd is up) instead of cocoond waiting for virtiofsd to
         * create it, ~15 ms of every pod start. */
        lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", d->socket_path);
        if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                r = cc_error_errno(&err, "socket '%s'", d->socket_path);
                goto fail;
        }
        cc_undo_push(&undo, undo_unlink, strdup(d->socket_path), free);
        if (chmod(d->socket_path, 0600) < 0 || listen(lfd, 4) < 0) {
                r = cc_error_errno(&err, "socket '%s'", d->socket_path);
                goto fail;
        }
        char fd_opt[32];
        snprintf(fd_opt, sizeof(fd_opt), "--fd=%d", lfd);
        char *argv[] = {
                (char *)binary, fd_opt, "-o", src_opt, "-o", cache_opt, "-o", sandbox_opt,
                "-o", "log_level=warn", NULL,
        };
        int keep[] = { lfd };
        cc_spawn_opts so = CC_SPAWN_OPTS_INIT;
        so.stdout_fd = logfd;
        so.stderr_fd = logfd;
        so.keep_fds = keep;
        so.n_keep_fds = 1;
        so.new_session = true;
        so.cwd = "/";
        r = cc_spawn(binary, argv, &so, &d->proc, &err);
        if (r < 0)
                goto fail;
        d->child = true;
        d->pidfd = cc_proc_pidfd(&d->proc, NULL);
        cc_undo_push(&undo, undo_kill, d, NULL);
        log_debug("virtiofsd pid=%d socket=%s shared=%s", (int)d->proc.pid, d->socket_path,
                  d->shared_dir);
        cc_undo_disarm(&undo);
        *ret = TAKE_PTR(d);
        return 0;
fail:
        cc_undo_run(&undo);
        if (d->pidfd >= 0)
                close(d->pidfd);
        free(d->socket_path);
        free(d->shared_dir);
        free(d->log_path);
        cc_error_prefix(&err, "virtiofsd for '%s'", c->shared_dir);
        return cc_error_propagate(ret_err, err);
}

int virtiofsd_stop(virtiofsd *d, int timeout_ms, cc_error **ret_err)
{
        if (!d)
                return 0;
        int r = vmm_proc_terminate(&d->proc, d->pidfd, SIGTERM, timeout_ms, d->child);
        if (r < 0)
                return cc_error_set(ret_err, r, "virtiofsd %d survived SIGKILL", (int)d->proc.pid);
        if (d->socket_path)
                (void)unlink(d->socket_path);
        if (d->log_path) {
                char tail[256];
                vmm_log_tail(d->log_path, tail, sizeof(tail));
                if (tail[0])
                        log_debug("virtiofsd %d: last message: %s", (int)d->proc.pid, tail);
                (void)unlink(d->log_path);
        }
        return 0;
}

bool virtiofsd_alive(virtiofsd *d) { return d && cc_proc_alive(&d->proc); }

/* 0 while virtiofsd runs; else an error with the end of its log. */
static int virtiofsd_check(virtiofsd *d, cc_error **ret_err)
{
        if (!d || virtiofsd_alive(d))
                return 0;
        char tail[256];
        vmm_log_tail(d->log_path, tail, sizeof(tail));
        return cc_error_set(ret_err, -ESRCH, "virtiofsd for '%s' exited%s%s", d->shared_dir, tail[0] ? ": " : "",
                            tail);
}

void virtiofsd_explain(virtiofsd *d, cc_error **vmm_err)
{
        cc_error *ferr = NULL;
        /* QEMU names the socket (connection refused) or the device (the
         * connection dropped during the vhost-user handshake) */
        if (!d || !*vmm_err ||
            !(strstr((*vmm_err)->msg, d->socket_path) || strstr((*vmm_err)->msg, "vhost-user-fs")) ||
            virtiofsd_check(d, &ferr) == 0)
                return;
        cc_error_free(*vmm_err);
        *vmm_err = ferr;
}

int virtiofsd_pid(virtiofsd *d) { return d ? d->proc.pid : -1; }
int virtiofsd_exit_fd(virtiofsd *d) { return d ? d->pidfd : -1; }
const char *virtiofsd_socket_path(virtiofsd *d) { return d ? d->socket_path : NULL; }
const char *virtiofsd_shared_path(virtiofsd *d) { return d ? d->shared_dir : NULL; }

int virtiofsd_save(virtiofsd *d, json_object **ret, cc_error **ret_err)
{
        _cleanup_json_ json_object *o = json_object_new_object();
        if (!o)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        json_object_object_add(o, "version", json_object_new_int(SAVE_VERSION));
        json_object_object_add(o, "pid", json_object_new_int64(d->proc.pid));
        json_object_object_add(o, "start_time", json_object_new_int64((int64_t)d->proc.start_time));
        json_object_object_add(o, "socket", json_object_new_string(d->socket_path));
        json_object_object_add(o, "shared_dir", json_object_new_string(d->shared_dir));
        if (d->log_path)
                json_object_object_add(o, "log", json_object_new_string(d->log_path));
        *ret = TAKE_PTR(o);
        return 0;
}

int virtiofsd_load(json_object *saved, virtiofsd **ret, cc_error **ret_err)
{
        int64_t version = 0, pid = 0, start = 0;
        const char *sock = NULL, *shared = NULL, *log = NULL;
        cc_error *err = NULL;
        if (!saved || !json_object_is_type(saved, json_type_object)) {
                cc_error_set(&err, -EINVAL, "not an object");
                goto fail;
        }
        if (cc_json_get_int64(saved, "version", false, &version, &err) < 0 ||
            cc_json_get_int64(saved, "pid", false, &pid, &err) < 0 ||
            cc_json_get_int64(saved, "start_time", false, &start, &err) < 0 ||
            cc_json_get_string(saved, "socket", false, &sock, &err) < 0 ||
            cc_json_get_string(saved, "shared_dir", false, &shared, &err) < 0 ||
            cc_json_get_string(saved, "log", true, &log, &err) < 0)
                goto fail;
        if (version != SAVE_VERSION) {
                cc_error_set(&err, -EINVAL, "unsupported version %lld", (long long)version);
                goto fail;
        }
        if (pid <= 1 || pid > INT_MAX || start < 0) {
                cc_error_set(&err, -EINVAL, "invalid pid or start time");
                goto fail;
        }
        if (sock[0] != '/' || strlen(sock) >= sizeof(((struct sockaddr_un *)0)->sun_path) ||
            shared[0] != '/' || strlen(shared) >= PATH_MAX ||
            (log && (log[0] != '/' || strlen(log) >= PATH_MAX))) {
                cc_error_set(&err, -EINVAL, "invalid socket or shared directory path");
                goto fail;
        }
        virtiofsd *d = calloc(1, sizeof(*d));
        if (!d || !(d->socket_path = strdup(sock)) || !(d->shared_dir = strdup(shared)) ||
            (log && !(d->log_path = strdup(log)))) {
                if (d) {
                        free(d->socket_path);
                        free(d->shared_dir);
                }
                free(d);
                cc_error_set(&err, -ENOMEM, "out of memory");
                goto fail;
        }
        d->proc.pid = (pid_t)pid;
        d->proc.start_time = (uint64_t)start;
        d->pidfd = cc_proc_alive(&d->proc) ? cc_proc_pidfd(&d->proc, NULL) : -1;
        *ret = d;
        return 0;
fail:
        cc_error_prefix(&err, "virtiofsd: load saved state");
        return cc_error_propagate(ret_err, err);
}

void virtiofsd_free(virtiofsd *d)
{
        if (!d)
                return;
        if (d->pidfd >= 0)
                close(d->pidfd);
        free(d->socket_path);
        free(d->shared_dir);
        free(d->log_path);
        free(d);
}
