/* SPDX-License-Identifier: Apache-2.0 */
/* Child side of container creation, in the container's new mount
 * namespace: the OCI mounts, /dev, pivot_root, masked and read-only paths.
 * Every destination is resolved inside the rootfs with openat2
 * (RESOLVE_IN_ROOT) and mounted through /proc/self/fd/N, so symlinks in the
 * image cannot redirect a mount outside it. Only system calls and stack
 * buffers here. */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "agent/agent.h"
#include "common/cleanup.h"

static int openat2_in_root(int rootfd, const char *rel, int flags)
{
        struct open_how how = { .flags = (uint64_t)(flags | O_CLOEXEC),
                                .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS };
        int fd = (int)syscall(SYS_openat2, rootfd, rel, &how, sizeof(how));
        return fd < 0 ? -errno : fd;
}

int agent_open_in_root(int rootfd, const char *rel, bool create, bool dir)
{
        char prefix[PATH_MAX];
        size_t plen = 0;
        const char *s = rel;
        while (*s == '/')
                s++;
        if (!*s)
                return openat2_in_root(rootfd, ".", O_PATH | O_DIRECTORY);
        while (*s) {
                const char *e = strchr(s, '/');
                size_t n = e ? (size_t)(e - s) : strlen(s);
                bool last = true;
                for (const char *t = s + n; *t; t++)
                        if (*t != '/')
                                last = false;
                if (n == 2 && s[0] == '.' && s[1] == '.')
                        return -EINVAL;
                if (plen + n + 2 > sizeof(prefix))
                        return -ENAMETOOLONG;
                size_t parent_len = plen;
                if (plen)
                        prefix[plen++] = '/';
                memcpy(prefix + plen, s, n);
                plen += n;
                prefix[plen] = 0;
                int fd = openat2_in_root(rootfd, prefix, O_PATH);
                if (fd == -ENOENT && create) {
                        char parent[PATH_MAX];
                        memcpy(parent, prefix, parent_len);
                        parent[parent_len] = 0;
                        _cleanup_close_ int pfd = openat2_in_root(rootfd, parent_len ? parent : ".",
                                                                  O_PATH | O_DIRECTORY);
                        if (pfd < 0)
                                return pfd;
                        char name[NAME_MAX + 1];
                        if (n > NAME_MAX)
                                return -ENAMETOOLONG;
                        memcpy(name, s, n);
                        name[n] = 0;
                        if (last && !dir) {
                                int f = openat(pfd, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC,
                                               0644);
                                if (f < 0 && errno != EEXIST)
                                        return -errno;
                                if (f >= 0)
                                        close(f);
                        } else if (mkdirat(pfd, name, 0755) < 0 && errno != EEXIST) {
                                return -errno;
                        }
                        fd = openat2_in_root(rootfd, prefix, O_PATH);
                }
                if (fd < 0)
                        return fd;
                if (last)
                        return fd;
                close(fd);
                s += n;
                while (*s == '/')
                        s++;
        }
        return -EINVAL;
}

typedef struct mount_opts {
        unsigned long flags;
        unsigned long clear; /* flags explicitly cleared (rw, exec...) */
        unsigned long propagation;
        bool bind, rbind;
        char data[1024];
} mount_opts;

static int parse_opts(char **opts, size_t n, mount_opts *o)
{
        static const struct { const char *name; unsigned long set, clear, prop; } table[] = {
                { "ro", MS_RDONLY, 0, 0 }, { "rw", 0, MS_RDONLY, 0 },
                { "nosuid", MS_NOSUID, 0, 0 }, { "suid", 0, MS_NOSUID, 0 },
                { "nodev", MS_NODEV, 0, 0 }, { "dev", 0, MS_NODEV, 0 },
                { "noexec", MS_NOEXEC, 0, 0 }, { "exec", 0, MS_NOEXEC, 0 },
                { "sync", MS_SYNCHRONOUS, 0, 0 }, { "async", 0, MS_SYNCHRONOUS, 0 },
                { "noatime", MS_NOATIME, 0, 0 }, { "atime", 0, MS_NOATIME, 0 },
                { "nodiratime", MS_NODIRATIME, 0, 0 }, { "relatime", MS_RELATIME, 0, 0 },
                { "norelatime", 0, MS_RELATIME, 0 }, { "strictatime", MS_STRICTATIME, 0, 0 },
                { "dirsync", MS_DIRSYNC, 0, 0 }, { "mand", MS_MANDLOCK, 0, 0 },
                { "private", 0, 0, MS_PRIVATE }, { "rprivate", 0, 0, MS_PRIVATE | MS_REC },
                { "slave", 0, 0, MS_SLAVE }, { "rslave", 0, 0, MS_SLAVE | MS_REC },
                { "shared", 0, 0, MS_SHARED }, { "rshared", 0, 0, MS_SHARED | MS_REC },
                { "unbindable", 0, 0, MS_UNBINDABLE }, { "runbindable", 0, 0, MS_UNBINDABLE | MS_REC },
                { "defaults", 0, 0, 0 },
        };
        memset(o, 0, sizeof(*o));
        size_t dlen = 0;
        for (size_t i = 0; i < n; i++) {
                const char *s = opts[i];
                if (strcmp(s, "bind") == 0) {
                        o->bind = true;
                        continue;
                }
                if (strcmp(s, "rbind") == 0) {
                        o->bind = o->rbind = true;
                        continue;
                }
                size_t j;
                for (j = 0; j < CC_ARRAY_SIZE(table); j++)
                        if (strcmp(s, table[j].name) == 0)
                                break;
                if (j < CC_ARRAY_SIZE(table)) {
                        o->flags = (o->flags | table[j].set) & ~table[j].clear;
                        o->clear |= table[j].clear;
                        o->propagation |= table[j].prop;
                        continue;
                }
                size_t l = strlen(s);
                if (dlen + l + 2 > sizeof(o->data))
                        return -E2BIG;
                if (dlen)
                        o->data[dlen++] = ',';
                memcpy(o->data + dlen, s, l + 1);
                dlen += l;
        }
        return 0;
}

static void fdpath(char buf[64], int fd) { snprintf(buf, 64, "/proc/self/fd/%d", fd); }

static const char *const default_devices[] = { "null", "zero", "full", "random", "urandom", "tty" };

/* A tmpfs /dev: the default device nodes (bind mounts of the agent's, which
 * works in user namespaces and host mode alike), links and /dev/pts. */
static int setup_dev(int rootfd)
{
        for (size_t i = 0; i < CC_ARRAY_SIZE(default_devices); i++) {
                char rel[64], host[64], p[64];
                snprintf(rel, sizeof(rel), "dev/%s", default_devices[i]);
                snprintf(host, sizeof(host), "/dev/%s", default_devices[i]);
                int fd = agent_open_in_root(rootfd, rel, true, false);
                if (fd < 0)
                        return fd;
                fdpath(p, fd);
                int r = mount(host, p, NULL, MS_BIND, NULL);
                close(fd);
                if (r < 0 && errno != ENOENT)
                        return -errno;
        }
        static const char *const links[][2] = {
                { "/proc/self/fd", "fd" }, { "/proc/self/fd/0", "stdin" },
                { "/proc/self/fd/1", "stdout" }, { "/proc/self/fd/2", "stderr" },
                { "pts/ptmx", "ptmx" }, { "/proc/kcore", "core" },
        };
        _cleanup_close_ int devfd = agent_open_in_root(rootfd, "dev", false, true);
        if (devfd < 0)
                return devfd;
        for (size_t i = 0; i < CC_ARRAY_SIZE(links); i++)
                if (symlinkat(links[i][0], devfd, links[i][1]) < 0 && errno != EEXIST)
                        return -errno;
        return 0;
}

static int do_mount(int rootfd, const Grpc__Mount *m, bool *dev_tmpfs, const char **ret_what)
{
        mount_opts o;
        const char *type = m->type && *m->type ? m->type : NULL;
        const char *src = m->source && *m->source ? m->source : (type ? type : "none");
        if (!m->destination || m->destination[0] != '/')
                return *ret_what = "mount destination not absolute", -EINVAL;
        if (parse_opts(m->options, m->n_options, &o) < 0)
                return *ret_what = "mount options", -E2BIG;
        if (type && strcmp(type, "bind") == 0)
                o.bind = true;

        bool dir = true;
        struct stat st;
        if (o.bind) {
                if (stat(src, &st) < 0)
                        return *ret_what = m->source, -errno;
                dir = S_ISDIR(st.st_mode);
        }
        _cleanup_close_ int fd = agent_open_in_root(rootfd, m->destination, true, dir);
        if (fd < 0)
                return *ret_what = m->destination, fd;
        char target[64];
        fdpath(target, fd);

        if (o.bind) {
                if (mount(src, target, NULL, MS_BIND | (o.rbind ? MS_REC : 0), NULL) < 0)
                        return *ret_what = m->destination, -errno;
                /* The mount is now on top: re-open to reach it. */
                close(TAKE_FD(fd));
                fd = agent_open_in_root(rootfd, m->destination, false, dir);
                if (fd < 0)
                        return *ret_what = m->destination, fd;
                fdpath(target, fd);
                unsigned long fl = o.flags & ~(MS_REC);
                if (fl && mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | fl, NULL) < 0)
                        return *ret_what = m->destination, -errno;
        } else if (type && (strcmp(type, "cgroup") == 0 || strcmp(type, "cgroup2") == 0)) {
                if (mount("cgroup2", target, "cgroup2", o.flags, NULL) < 0)
                        return *ret_what = "cgroup2", -errno;
        } else {
                if (!type)
                        return *ret_what = "mount without type", -EINVAL;
                if (mount(src, target, type, o.flags, o.data[0] ? o.data : NULL) < 0) {
                        int e = errno;
                        /* sysfs needs a network namespace of our own: bind
                         * the agent's read-only instead (as runc). */
                        if (strcmp(type, "sysfs") == 0 && (e == EPERM || e == EBUSY) &&
                            mount("/sys", target, NULL, MS_BIND | MS_REC, NULL) == 0) {
                                close(TAKE_FD(fd));
                                fd = agent_open_in_root(rootfd, m->destination, false, true);
                                if (fd >= 0) {
                                        fdpath(target, fd);
                                        mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL);
                                }
                                return 0;
                        }
                        return *ret_what = m->destination, -e;
                }
                if (strcmp(type, "tmpfs") == 0 && strcmp(m->destination, "/dev") == 0)
                        *dev_tmpfs = true;
        }
        if (o.propagation && mount(NULL, target, NULL, o.propagation, NULL) < 0)
                return *ret_what = "mount propagation", -errno;
        return 0;
}

static int mask_path(const char *p)
{
        struct stat st;
        if (stat(p, &st) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (S_ISDIR(st.st_mode))
                return mount("tmpfs", p, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0") < 0 ? -errno : 0;
        return mount("/dev/null", p, NULL, MS_BIND, NULL) < 0 ? -errno : 0;
}

static int readonly_path(const char *p)
{
        if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) < 0)
                return errno == ENOENT ? 0 : -errno;
        return mount(NULL, p, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0
                       ? -errno : 0;
}

int agent_mounts_setup(const Grpc__Spec *spec, const char *rootfs, const char **ret_what)
{
        const Grpc__Linux *lx = spec->linux;
        unsigned long prop = MS_SLAVE | MS_REC;
        if (lx && lx->rootfspropagation && *lx->rootfspropagation) {
                mount_opts o;
                char *opt = lx->rootfspropagation;
                if (parse_opts(&opt, 1, &o) < 0 || !o.propagation)
                        return *ret_what = "rootfsPropagation", -EINVAL;
                prop = o.propagation;
        }
        if (mount(NULL, "/", NULL, prop, NULL) < 0)
                return *ret_what = "make / private", -errno;
        if (mount(rootfs, rootfs, NULL, MS_BIND | MS_REC, NULL) < 0)
                return *ret_what = "bind rootfs", -errno;

        _cleanup_close_ int rootfd = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (rootfd < 0)
                return *ret_what = "open rootfs", -errno;
        bool dev_tmpfs = false;
        for (size_t i = 0; i < spec->n_mounts; i++) {
                int r = do_mount(rootfd, spec->mounts[i], &dev_tmpfs, ret_what);
                if (r < 0)
                        return r;
        }
        if (dev_tmpfs) {
                int r = setup_dev(rootfd);
                if (r < 0)
                        return *ret_what = "/dev", r;
        }

        if (chdir(rootfs) < 0)
                return *ret_what = "chdir rootfs", -errno;
        if (syscall(SYS_pivot_root, ".", ".") < 0)
                return *ret_what = "pivot_root", -errno;
        if (umount2(".", MNT_DETACH) < 0)
                return *ret_what = "detach old root", -errno;
        if (chdir("/") < 0)
                return *ret_what = "chdir /", -errno;

        if (lx) {
                for (size_t i = 0; i < lx->n_maskedpaths; i++) {
                        if (lx->maskedpaths[i][0] != '/' || strstr(lx->maskedpaths[i], ".."))
                                return *ret_what = "masked path", -EINVAL;
                        int r = mask_path(lx->maskedpaths[i]);
                        if (r < 0)
                                return *ret_what = lx->maskedpaths[i], r;
                }
                for (size_t i = 0; i < lx->n_readonlypaths; i++) {
                        if (lx->readonlypaths[i][0] != '/' || strstr(lx->readonlypaths[i], ".."))
                                return *ret_what = "readonly path", -EINVAL;
                        int r = readonly_path(lx->readonlypaths[i]);
                        if (r < 0)
                                return *ret_what = lx->readonlypaths[i], r;
                }
        }
        if (spec->root && spec->root->readonly &&
            mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0)
                return *ret_what = "read-only root", -errno;
        return 0;
}
