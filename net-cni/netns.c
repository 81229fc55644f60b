/* SPDX-License-Identifier: Apache-2.0 */
#include "net-cni/netns.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/log.h"

#ifndef NSFS_MAGIC
#define NSFS_MAGIC 0x6e736673
#endif

#define NETNS_NAME_MAX 64

static int validate_name(const char *name, cc_error **ret_err)
{
        size_t n = name ? strlen(name) : 0;
        if (n == 0 || n > NETNS_NAME_MAX || !strcmp(name, ".") || !strcmp(name, ".."))
                return cc_error_set(ret_err, -EINVAL, "invalid netns name '%s'", name ? name : "");
        for (size_t i = 0; i < n; i++) {
                char c = name[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '-'))
                        return cc_error_set(ret_err, -EINVAL, "invalid netns name '%s'", name);
        }
        return 0;
}

/* Serialises the "make dir a shared mount" step between processes (cocoond,
 * test drivers, iproute2 does not lock): flock on dir's parent, which is
 * stable while dir itself may get a mount stacked on it. */
static int lock_parent(const char *dir, cc_error **ret_err)
{
        _cleanup_free_ char *parent = strdup(dir);
        if (!parent)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        char *slash = strrchr(parent, '/');
        if (slash == parent)
                slash[1] = '\0';
        else if (slash)
                *slash = '\0';
        int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return cc_error_errno(ret_err, "open '%s'", parent);
        while (flock(fd, LOCK_EX) < 0) {
                if (errno != EINTR) {
                        int r = cc_error_errno(ret_err, "lock '%s'", parent);
                        close(fd);
                        return r;
                }
        }
        return fd;
}

/* As iproute2: make dir a shared mount point (a bind mount of itself if it is
 * not a mount point yet), so that namespaces pinned below it propagate to
 * every mount namespace that shares it. */
static int ensure_shared(const char *dir, cc_error **ret_err)
{
        _cleanup_close_ int lock = lock_parent(dir, ret_err);
        if (lock < 0)
                return lock;
        if (mount("", dir, "none", MS_SHARED | MS_REC, NULL) == 0)
                return 0;
        if (errno != EINVAL)
                return cc_error_errno(ret_err, "make '%s' a shared mount", dir);
        if (mount(dir, dir, "none", MS_BIND | MS_REC, NULL) < 0)
                return cc_error_errno(ret_err, "bind-mount '%s' onto itself", dir);
        if (mount("", dir, "none", MS_SHARED | MS_REC, NULL) < 0)
                return cc_error_errno(ret_err, "make '%s' a shared mount", dir);
        return 0;
}

static int lo_up(cc_error **ret_err)
{
        _cleanup_close_ int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (s < 0)
                return cc_error_errno(ret_err, "socket");
        struct ifreq ifr = { 0 };
        strcpy(ifr.ifr_name, "lo");
        if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
                return cc_error_errno(ret_err, "get flags of lo");
        ifr.ifr_flags |= IFF_UP;
        if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
                return cc_error_errno(ret_err, "bring lo up");
        return 0;
}

typedef struct create_args {
        const char *path;
        int r;
        cc_error *err;
} create_args;

static void *create_thread(void *p)
{
        create_args *a = p;
        if (unshare(CLONE_NEWNET) < 0) {
                a->r = cc_error_errno(&a->err, "unshare(CLONE_NEWNET)");
                return NULL;
        }
        char src[64];
        snprintf(src, sizeof src, "/proc/self/task/%d/ns/net", (int)gettid());
        if (mount(src, a->path, "none", MS_BIND, NULL) < 0) {
                a->r = cc_error_errno(&a->err, "bind-mount %s onto '%s'", src, a->path);
                return NULL;
        }
        a->r = lo_up(&a->err);
        /* This thread now exits; only the bind mount keeps the namespace. */
        return NULL;
}

int cni_netns_create(const char *dir, const char *name, char **ret_path, cc_error **ret_err)
{
        int r;
        if (!dir || dir[0] != '/')
                return cc_error_set(ret_err, -EINVAL, "netns directory '%s' is not absolute", dir ? dir : "");
        if ((r = validate_name(name, ret_err)) < 0)
                return r;
        if ((r = cc_mkdir_p(dir, 0755, ret_err)) < 0)
                return r;
        if ((r = ensure_shared(dir, ret_err)) < 0)
                return r;
        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "%s/%s", dir, name) < 0)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
        if (fd < 0)
                return cc_error_errno(ret_err, "create '%s'", path);
        close(fd);

        create_args a = { .path = path };
        pthread_t t;
        r = pthread_create(&t, NULL, create_thread, &a);
        if (r != 0) {
                unlink(path);
                return cc_error_set(ret_err, -r, "netns '%s': start helper thread: %s", path, strerror(r));
        }
        pthread_join(t, NULL);
        if (a.r < 0) {
                umount2(path, MNT_DETACH);
                unlink(path);
                cc_error_prefix(&a.err, "create netns '%s'", path);
                return cc_error_propagate(ret_err, a.err);
        }
        log_debug("netns created path=%s", path);
        *ret_path = TAKE_PTR(path);
        return 0;
}

int cni_netns_remove(const char *path, cc_error **ret_err)
{
        if (!path || path[0] != '/')
                return cc_error_set(ret_err, -EINVAL, "netns path '%s' is not absolute", path ? path : "");
        if (umount2(path, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
                return cc_error_errno(ret_err, "unmount netns '%s'", path);
        /* What remains must be the empty file the namespace was pinned on:
         * never unlink anything else a wrong path might name. */
        struct stat st;
        if (lstat(path, &st) < 0) {
                if (errno == ENOENT)
                        return 0;
                return cc_error_errno(ret_err, "stat netns '%s'", path);
        }
        if (!S_ISREG(st.st_mode) || st.st_size != 0)
                return cc_error_set(ret_err, -EINVAL, "'%s' is not a network namespace pin", path);
        if (unlink(path) < 0 && errno != ENOENT)
                return cc_error_errno(ret_err, "remove netns '%s'", path);
        return 0;
}

static bool fd_is_nsfs(int fd)
{
        struct statfs st;
        return fstatfs(fd, &st) == 0 && st.f_type == NSFS_MAGIC;
}

bool cni_netns_is_pinned(const char *path)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        return fd >= 0 && fd_is_nsfs(fd);
}

typedef struct run_args {
        int fd;
        cni_netns_fn fn;
        void *userdata;
        int r;
        cc_error *err;
} run_args;

static void *run_thread(void *p)
{
        run_args *a = p;
        if (setns(a->fd, CLONE_NEWNET) < 0) {
                a->r = cc_error_errno(&a->err, "setns");
                return NULL;
        }
        a->r = a->fn(a->userdata, &a->err);
        if (a->r < 0 && !a->err)
                a->r = cc_error_set(&a->err, a->r, "failed inside the namespace");
        else if (a->r >= 0 && a->err) {
                cc_error_free(a->err);
                a->err = NULL;
        }
        return NULL;
}

int cni_netns_run(const char *path, cni_netns_fn fn, void *userdata, cc_error **ret_err)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return cc_error_errno(ret_err, "open netns '%s'", path);
        if (!fd_is_nsfs(fd))
                return cc_error_set(ret_err, -EINVAL, "'%s' is not a network namespace", path);
        run_args a = { .fd = fd, .fn = fn, .userdata = userdata };
        pthread_t t;
        int r = pthread_create(&t, NULL, run_thread, &a);
        if (r != 0)
                return cc_error_set(ret_err, -r, "netns '%s': start helper thread: %s", path, strerror(r));
        pthread_join(t, NULL);
        if (a.r < 0)
                return cc_error_propagate(ret_err, a.err);
        return a.r;
}
