/* SPDX-License-Identifier: Apache-2.0 */
/* Host-side filesystems of a pod (runtime/rootfs.h): the virtio-fs share,
 * overlay root filesystems and volume binds.
 *
 * Propagation, in short: the share is a self-bind mount in a peer group of
 * its own (made private, then shared, so it never joins the peer group of
 * the filesystem it lives on). virtiofsd (sandbox=namespace) copies the mount
 * table into its own namespace, turns it into slaves (MS_REC|MS_SLAVE) and
 * pivots into a bind of the share: every mount made later below the share
 * on the host is a member of (or a new peer group under) the share's peer
 * group and propagates into virtiofsd's namespace; every detach propagates
 * too. Volumes are prepared as a detached tree (open_tree + mount_setattr:
 * read-only and propagation set before anyone can see them) and only then
 * attached below the share, so virtiofsd never sees a half-set-up volume. */
#include "runtime/rootfs.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/openat2.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/undo.h"

#define OVL_MAX_LOWERS 500 /* overlayfs' OVL_MAX_STACK */
#define MOUNTINFO_MAX (16u << 20)
#define DETACH_ROUNDS 64

#ifndef STATX_ATTR_MOUNT_ROOT
#define STATX_ATTR_MOUNT_ROOT 0x00002000
#endif

/* ---- mountinfo ------------------------------------------------------------ */

typedef struct mnt_entry {
        int id;
        char *point;    /* unescaped mount point */
        char *optional; /* "shared:N master:M", "" when private */
} mnt_entry;

typedef struct mnt_table {
        mnt_entry *v;
        size_t n;
} mnt_table;

static void mnt_table_done(mnt_table *t)
{
        for (size_t i = 0; i < t->n; i++) {
                free(t->v[i].point);
                free(t->v[i].optional);
        }
        free(t->v);
        t->v = NULL;
        t->n = 0;
}

/* mountinfo escapes space, tab, newline and backslash as \ooo */
static void unescape(char *s)
{
        char *o = s;
        for (char *p = s; *p;) {
                if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' && p[3] >= '0' &&
                    p[3] <= '7') {
                        *o++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
                        p += 4;
                } else {
                        *o++ = *p++;
                }
        }
        *o = 0;
}

static int mnt_table_read(mnt_table *t, cc_error **ret_err)
{
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        int r = cc_read_file("/proc/self/mountinfo", MOUNTINFO_MAX, &buf, &len, ret_err);
        if (r < 0)
                return r;
        size_t cap = 0;
        for (char *line = buf, *next; line && *line; line = next) {
                next = strchr(line, '\n');
                if (next)
                        *next++ = 0;
                /* id parent major:minor root point options [optional...] - fstype ... */
                char *save = NULL, *f[6];
                int k = 0;
                for (char *tok = strtok_r(line, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
                        f[k++] = tok;
                        if (k == 6)
                                break;
                }
                if (k < 6)
                        continue;
                char *rest = save ? save : (char *)"";
                char *dash = strstr(rest, "- ");
                if (dash && dash != rest)
                        dash[-1] = 0;
                if (dash)
                        *dash = 0;
                if (t->n == cap) {
                        cap = cap ? cap * 2 : 64;
                        mnt_entry *nv = realloc(t->v, cap * sizeof(*nv));
                        if (!nv)
                                goto oom;
                        t->v = nv;
                }
                mnt_entry *e = &t->v[t->n];
                e->id = atoi(f[0]);
                e->point = strdup(f[4]);
                e->optional = strdup(rest);
                if (!e->point || !e->optional) {
                        free(e->point);
                        free(e->optional);
                        goto oom;
                }
                unescape(e->point);
                t->n++;
        }
        return 0;
oom:
        mnt_table_done(t);
        return cc_error_set(ret_err, -ENOMEM, "out of memory");
}

static bool path_at_or_below(const char *p, const char *dir)
{
        size_t n = strlen(dir);
        if (n == 1 && dir[0] == '/')
                return true;
        return strncmp(p, dir, n) == 0 && (p[n] == 0 || p[n] == '/');
}

/* Absolute, canonical in form: no empty, "." or ".." component, no
 * trailing slash, no newline. */
static bool abs_path_clean(const char *p)
{
        if (!p || p[0] != '/' || strlen(p) >= PATH_MAX)
                return false;
        if (p[1] == 0)
                return true;
        for (const char *c = p; *c;) {
                const char *e = strchrnul(c + 1, '/');
                size_t n = (size_t)(e - c - 1);
                if (n == 0 || (n == 1 && c[1] == '.') || (n == 2 && c[1] == '.' && c[2] == '.'))
                        return false;
                c = e;
        }
        return !strchr(p, '\n');
}

/* O_PATH fd of path, following no symbolic link in any component: below
 * the share the guest decides what is a link. -ENOENT without an error set
 * (callers treat a missing path as done); -ELOOP for a link. */
static int open_nofollow(const char *path, int flags, cc_error **ret_err)
{
        struct open_how how = { .flags = (uint64_t)(O_PATH | O_CLOEXEC | flags), .resolve = RESOLVE_NO_SYMLINKS };
        int fd = (int)syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof(how));
        if (fd < 0 && errno == ENOSYS) { /* Linux < 5.6 */
                _cleanup_free_ char *real = realpath(path, NULL);
                if (real && strcmp(real, path) != 0)
                        errno = ELOOP;
                else
                        fd = open(path, O_PATH | O_CLOEXEC | O_NOFOLLOW | flags);
        }
        if (fd >= 0)
                return fd;
        if (errno == ENOENT)
                return -ENOENT;
        if (errno == ELOOP || errno == EXDEV)
                return cc_error_set(ret_err, -ELOOP, "'%s' has a symbolic link in its path; refused", path);
        return cc_error_errno(ret_err, "open '%s'", path);
}

bool rt_is_mountpoint(const char *path)
{
        struct statx stx;
        if (!path)
                return false;
        if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &stx) < 0)
                return false;
        if (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT)
                return (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0;
        /* Linux < 5.8: compare with the mount table */
        _cleanup_free_ char *real = realpath(path, NULL);
        mnt_table t = { 0 };
        if (!real || mnt_table_read(&t, NULL) < 0)
                return false;
        bool found = false;
        for (size_t i = 0; i < t.n && !found; i++)
                found = strcmp(t.v[i].point, real) == 0;
        mnt_table_done(&t);
        return found;
}

static int cmp_deepest_first(const void *a, const void *b)
{
        const mnt_entry *x = a, *y = b;
        size_t lx = strlen(x->point), ly = strlen(y->point);
        if (lx != ly)
                return lx < ly ? 1 : -1;
        return y->id - x->id; /* stacked on the same point: the later first */
}

/* Detaches every mount at or below the canonical path dir; -EBUSY when some
 * survive (the message names one). */
static int detach_all(const char *dir, cc_error **ret_err)
{
        for (int round = 0; round < DETACH_ROUNDS; round++) {
                mnt_table t = { 0 };
                int r = mnt_table_read(&t, ret_err);
                if (r < 0)
                        return r;
                size_t n = 0;
                for (size_t i = 0; i < t.n; i++)
                        if (path_at_or_below(t.v[i].point, dir)) {
                                mnt_entry tmp = t.v[n];
                                t.v[n++] = t.v[i];
                                t.v[i] = tmp;
                        }
                if (n == 0) {
                        mnt_table_done(&t);
                        return 0;
                }
                qsort(t.v, n, sizeof(*t.v), cmp_deepest_first);
                int fail = 0;
                char failed[PATH_MAX] = "";
                for (size_t i = 0; i < n; i++) {
                        if (umount2(t.v[i].point, MNT_DETACH | UMOUNT_NOFOLLOW) == 0) {
                                log_debug("rootfs: detached %s", t.v[i].point);
                                continue;
                        }
                        /* EINVAL: already gone with a parent detached before it */
                        if (errno != EINVAL && errno != ENOENT && !fail) {
                                fail = -errno;
                                snprintf(failed, sizeof(failed), "%s", t.v[i].point);
                        }
                }
                mnt_table_done(&t);
                if (fail && round > 0)
                        return cc_error_set(ret_err, fail, "unmount '%s': %s", failed, strerror(-fail));
        }
        return cc_error_set(ret_err, -EBUSY, "mounts below '%s' keep coming back", dir);
}

/* Detaches every mount at or below path and removes path (a directory tree
 * or a file). Never removes anything while a mount is left below it, and
 * never follows a symbolic link to somewhere else. */
static int teardown(const char *path, cc_error **ret_err)
{
        _cleanup_close_ int fd = open_nofollow(path, 0, ret_err);
        if (fd == -ENOENT)
                return 0;
        if (fd < 0)
                return fd;
        int r = detach_all(path, ret_err);
        if (r < 0)
                return r;
        if (rt_is_mountpoint(path)) /* cc_rm_rf does not check its top */
                return cc_error_set(ret_err, -EBUSY, "'%s' is still a mount point", path);
        return cc_rm_rf(path, ret_err);
}

/* ---- directories ------------------------------------------------------------ */

static void undo_rmdir(void *p) { (void)rmdir(p); }
static void undo_unlink(void *p) { (void)unlink(p); }
static void undo_rm_rf(void *p) { (void)cc_rm_rf(p, NULL); }

static int push_path(cc_undo *u, cc_undo_fn fn, const char *path, cc_error **ret_err)
{
        char *p = strdup(path);
        if (!p || cc_undo_push(u, fn, p, free) < 0) {
                if (!p)
                        fn((void *)path);
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        return 0;
}

/* Creates every missing directory of path (itself too when self), each
 * pushed on u for removal, one component at a time without following a
 * symbolic link. Returns an O_PATH fd of path (self) or of its parent. */
static int mkdirs_tracked(const char *path, bool self, mode_t mode, cc_undo *u, cc_error **ret_err)
{
        _cleanup_free_ char *p = strdup(path);
        if (!p)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        size_t len = strlen(p);
        if (!self) {
                char *slash = strrchr(p, '/');
                *slash = 0;
                len = strlen(p);
        }
        _cleanup_close_ int dfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return cc_error_errno(ret_err, "open '/'");
        for (size_t i = 1, start = 1; i <= len; i++) {
                if (p[i] != '/' && p[i] != 0)
                        continue;
                char c = p[i];
                p[i] = 0;
                const char *name = p + start;
                if (mkdirat(dfd, name, i == len && self ? mode : 0755) == 0) {
                        int r = push_path(u, undo_rmdir, p, ret_err);
                        if (r < 0)
                                return r;
                } else if (errno != EEXIST) {
                        return cc_error_errno(ret_err, "create '%s'", p);
                }
                int nfd = openat(dfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (nfd < 0) {
                        if (errno == ENOTDIR || errno == ELOOP)
                                return cc_error_set(ret_err, -ENOTDIR, "'%s' is not a directory (a symbolic "
                                                                       "link is not followed here)", p);
                        return cc_error_errno(ret_err, "open '%s'", p);
                }
                close(dfd);
                dfd = nfd;
                p[i] = c;
                start = i + 1;
        }
        return TAKE_FD(dfd);
}

/* ---- the share ------------------------------------------------------------ */

int rt_share_prepare(const char *dir, cc_error **ret_err)
{
        if (!abs_path_clean(dir) || strcmp(dir, "/") == 0)
                return cc_error_set(ret_err, -EINVAL, "share: '%s' is not a clean absolute path", dir ? dir : "");
        _cleanup_undo_ cc_undo undo = CC_UNDO_INIT;
        cc_error *err = NULL;
        int r = mkdirs_tracked(dir, true, 0711, &undo, &err);
        if (r < 0)
                goto fail;
        close(r);
        if (!rt_is_mountpoint(dir)) {
                if (mount(dir, dir, NULL, MS_BIND, NULL) < 0) {
                        r = cc_error_errno(&err, "bind '%s' onto itself", dir);
                        goto fail;
                }
                /* private first: a bind of a shared mount would join the
                 * peer group of the filesystem below (and every namespace
                 * that shares it); shared then starts a group of its own */
                if (mount(NULL, dir, NULL, MS_PRIVATE, NULL) < 0 || mount(NULL, dir, NULL, MS_SHARED, NULL) < 0) {
                        r = cc_error_errno(&err, "make '%s' a shared mount", dir);
                        (void)umount2(dir, MNT_DETACH);
                        goto fail;
                }
        } else if (mount(NULL, dir, NULL, MS_SHARED, NULL) < 0) {
                r = cc_error_errno(&err, "make '%s' a shared mount", dir);
                goto fail;
        }
        cc_undo_disarm(&undo);
        return 0;
fail:
        cc_error_prefix(&err, "share");
        return cc_error_propagate(ret_err, err);
}

int rt_share_destroy(const char *dir, cc_error **ret_err)
{
        if (!abs_path_clean(dir) || strcmp(dir, "/") == 0)
                return cc_error_set(ret_err, -EINVAL, "share: '%s' is not a clean absolute path", dir ? dir : "");
        cc_error *err = NULL;
        int r = teardown(dir, &err);
        if (r < 0) {
                cc_error_prefix(&err, "remove share '%s'", dir);
                return cc_error_propagate(ret_err, err);
        }
        return 0;
}

/* ---- binds (volumes, single-layer read-only roots) ------------------------------ */

static const char *prop_name(rt_propagation p)
{
        switch (p) {
        case RT_PROP_PRIVATE: return "private";
        case RT_PROP_HOST_TO_CONTAINER: return "rslave";
        case RT_PROP_BIDIRECTIONAL: return "rshared";
        }
        return "?";
}

/* The optional fields ("shared:N", "master:N") of the mount fd lives on. */
static int mount_optional_of(int fd, char **ret, char **ret_point, cc_error **ret_err)
{
        char path[64];
        snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
        _cleanup_free_ char *info = NULL;
        int r = cc_read_file(path, 1u << 16, &info, NULL, ret_err);
        if (r < 0)
                return r;
        const char *m = strstr(info, "mnt_id:");
        if (!m)
                return cc_error_set(ret_err, -EOPNOTSUPP, "no mnt_id in %s", path);
        int id = atoi(m + 7);
        mnt_table t = { 0 };
        if ((r = mnt_table_read(&t, ret_err)) < 0)
                return r;
        r = -ENOENT;
        for (size_t i = 0; i < t.n; i++)
                if (t.v[i].id == id) {
                        *ret = TAKE_PTR(t.v[i].optional);
                        *ret_point = TAKE_PTR(t.v[i].point);
                        r = 0;
                        break;
                }
        mnt_table_done(&t);
        if (r < 0)
                return cc_error_set(ret_err, -ENOENT, "mount %d is not in the mount table", id);
        return 0;
}

static int check_source_propagation(int fd, const char *source, rt_propagation prop, cc_error **ret_err)
{
        if (prop == RT_PROP_PRIVATE)
                return 0;
        _cleanup_free_ char *opt = NULL, *point = NULL;
        int r = mount_optional_of(fd, &opt, &point, ret_err);
        if (r < 0)
                return r;
        bool shared = strstr(opt, "shared:") != NULL, slave = strstr(opt, "master:") != NULL;
        if (prop == RT_PROP_BIDIRECTIONAL && !shared)
                return cc_error_set(ret_err, -EINVAL, "volume source '%s' is on mount '%s', which is not "
                                                      "shared (needed for Bidirectional propagation)",
                                    source, point);
        if (prop == RT_PROP_HOST_TO_CONTAINER && !shared && !slave)
                return cc_error_set(ret_err, -EINVAL, "volume source '%s' is on mount '%s', which is "
                                                      "neither shared nor a slave (needed for "
                                                      "HostToContainer propagation)", source, point);
        return 0;
}

/* Old kernels (no open_tree/mount_setattr, Linux < 5.12): bind in place. */
static int bind_legacy(int src_fd, int target_fd, const char *target, bool readonly, rt_propagation prop,
                       cc_error **ret_err)
{
        char src[64], dst[64];
        snprintf(src, sizeof(src), "/proc/self/fd/%d", src_fd);
        snprintf(dst, sizeof(dst), "/proc/self/fd/%d", target_fd);
        if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) < 0)
                return cc_error_errno(ret_err, "bind mount at '%s'", target);
        /* from here on the mount is at target: the path names it */
        if (readonly) {
                struct statvfs sv;
                unsigned long keep = 0;
                if (fstatvfs(src_fd, &sv) == 0)
                        keep = sv.f_flag & (ST_NOSUID | ST_NODEV | ST_NOEXEC | ST_NOATIME | ST_NODIRATIME |
                                            ST_RELATIME);
                if (mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | keep, NULL) < 0) {
                        int r = cc_error_errno(ret_err, "make '%s' read-only", target);
                        (void)umount2(target, MNT_DETACH);
                        return r;
                }
        }
        unsigned long pf = prop == RT_PROP_PRIVATE ? MS_PRIVATE : prop == RT_PROP_HOST_TO_CONTAINER ? MS_SLAVE : 0;
        if (pf && mount(NULL, target, NULL, MS_REC | pf, NULL) < 0) {
                int r = cc_error_errno(ret_err, "set propagation of '%s'", target);
                (void)umount2(target, MNT_DETACH);
                return r;
        }
        return 0;
}

/* Binds the object open as src_fd at target (existing), recursively: a
 * detached copy gets read-only and propagation first, then is attached. */
static int bind_fd(int src_fd, int target_fd, const char *target, bool readonly, rt_propagation prop,
                   cc_error **ret_err)
{
        _cleanup_close_ int tree = (int)syscall(SYS_open_tree, src_fd, "",
                                               OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_EMPTY_PATH);
        if (tree < 0) {
                if (errno == ENOSYS)
                        return bind_legacy(src_fd, target_fd, target, readonly, prop, ret_err);
                return cc_error_errno(ret_err, "clone mount tree for '%s'", target);
        }
        struct mount_attr attr = { 0 };
        if (readonly)
                attr.attr_set |= MOUNT_ATTR_RDONLY;
        /* Bidirectional: the clone already is a peer of the (shared) source */
        attr.propagation = prop == RT_PROP_PRIVATE ? MS_PRIVATE : prop == RT_PROP_HOST_TO_CONTAINER ? MS_SLAVE : 0;
        if ((attr.attr_set || attr.propagation) &&
            syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof(attr)) < 0) {
                if (errno == ENOSYS)
                        return bind_legacy(src_fd, target_fd, target, readonly, prop, ret_err);
                return cc_error_errno(ret_err, "set %s%s on the mount for '%s'", readonly ? "read-only, " : "",
                                      prop_name(prop), target);
        }
        if (syscall(SYS_move_mount, tree, "", target_fd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
                return cc_error_errno(ret_err, "attach mount at '%s'", target);
        return 0;
}

int rt_volume_bind(const char *source, const char *target, bool readonly, rt_propagation prop,
                   cc_error **ret_err)
{
        cc_error *err = NULL;
        _cleanup_undo_ cc_undo undo = CC_UNDO_INIT;
        _cleanup_close_ int fd = -1, pfd = -1, tfd = -1;
        int r;
        if (!source || source[0] != '/' || strlen(source) >= PATH_MAX ||
            (source[1] && !cc_path_is_safe_relative(source + 1))) {
                r = cc_error_set(&err, -EINVAL, "source '%s' must be an absolute path without '..'",
                                 source ? source : "");
                goto fail;
        }
        if (!abs_path_clean(target) || strcmp(target, "/") == 0) {
                r = cc_error_set(&err, -EINVAL, "target '%s' must be a clean absolute path", target ? target : "");
                goto fail;
        }
        if (prop != RT_PROP_PRIVATE && prop != RT_PROP_HOST_TO_CONTAINER && prop != RT_PROP_BIDIRECTIONAL) {
                r = cc_error_set(&err, -EINVAL, "unknown propagation %d", (int)prop);
                goto fail;
        }
        /* O_PATH follows symlinks: they resolve on the host, and what is
         * bound is exactly the object opened here */
        fd = open(source, O_PATH | O_CLOEXEC);
        if (fd < 0) {
                if (errno == ENOENT)
                        r = cc_error_set(&err, -ENOENT, "source '%s' does not exist", source);
                else
                        r = cc_error_errno(&err, "open source '%s'", source);
                goto fail;
        }
        struct stat st, tst;
        if (fstat(fd, &st) < 0) {
                r = cc_error_errno(&err, "stat source '%s'", source);
                goto fail;
        }
        if ((r = check_source_propagation(fd, source, prop, &err)) < 0)
                goto fail;
        bool dir = S_ISDIR(st.st_mode);
        if ((r = mkdirs_tracked(target, false, 0755, &undo, &err)) < 0)
                goto fail;
        pfd = r;
        const char *base = strrchr(target, '/') + 1;
        if (fstatat(pfd, base, &tst, AT_SYMLINK_NOFOLLOW) == 0) {
                if (dir ? !S_ISDIR(tst.st_mode) : !S_ISREG(tst.st_mode)) {
                        r = cc_error_set(&err, -EEXIST, "target '%s' exists and is not a %s", target,
                                         dir ? "directory" : "regular file");
                        goto fail;
                }
        } else if (errno != ENOENT) {
                r = cc_error_errno(&err, "stat target '%s'", target);
                goto fail;
        } else if (dir) {
                if (mkdirat(pfd, base, 0755) < 0) {
                        r = cc_error_errno(&err, "create '%s'", target);
                        goto fail;
                }
                if ((r = push_path(&undo, undo_rmdir, target, &err)) < 0)
                        goto fail;
        } else {
                int cfd = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
                if (cfd < 0) {
                        r = cc_error_errno(&err, "create '%s'", target);
                        goto fail;
                }
                close(cfd);
                if ((r = push_path(&undo, undo_unlink, target, &err)) < 0)
                        goto fail;
        }
        tfd = openat(pfd, base, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (tfd < 0 || fstat(tfd, &tst) < 0 || (dir ? !S_ISDIR(tst.st_mode) : !S_ISREG(tst.st_mode))) {
                r = tfd < 0 ? cc_error_errno(&err, "open target '%s'", target)
                            : cc_error_set(&err, -EEXIST, "target '%s' changed under us", target);
                goto fail;
        }
        if (rt_is_mountpoint(target)) {
                r = cc_error_set(&err, -EBUSY, "target '%s' is already a mount point", target);
                goto fail;
        }
        if ((r = bind_fd(fd, tfd, target, readonly, prop, &err)) < 0)
                goto fail;
        log_debug("rootfs: bound %s at %s (%s, %s)", source, target, readonly ? "ro" : "rw", prop_name(prop));
        cc_undo_disarm(&undo);
        return 0;
fail:
        cc_error_prefix(&err, "volume");
        return cc_error_propagate(ret_err, err);
}

int rt_volume_unbind(const char *target, cc_error **ret_err)
{
        if (!abs_path_clean(target) || strcmp(target, "/") == 0)
                return cc_error_set(ret_err, -EINVAL, "volume: target '%s' must be a clean absolute path",
                                    target ? target : "");
        cc_error *err = NULL;
        int r = teardown(target, &err);
        if (r < 0) {
                cc_error_prefix(&err, "volume: unbind '%s'", target);
                return cc_error_propagate(ret_err, err);
        }
        return 0;
}

/* ---- overlay root filesystems -------------------------------------------------- */

/* Characters overlayfs' option parser treats specially. */
static bool ovl_path_ok(const char *p)
{
        return abs_path_clean(p) && !strpbrk(p, ":,\\= \t");
}

typedef struct buf {
        char *s;
        size_t n, cap;
        bool oom;
} buf;

static void buf_add(buf *b, const char *s)
{
        size_t l = strlen(s);
        if (b->oom)
                return;
        if (b->n + l + 1 > b->cap) {
                size_t cap = CC_MAX(b->cap * 2, b->n + l + 256);
                char *ns = realloc(b->s, cap);
                if (!ns) {
                        b->oom = true;
                        return;
                }
                b->s = ns;
                b->cap = cap;
        }
        memcpy(b->s + b->n, s, l + 1);
        b->n += l;
}

/* "lowerdir=L1:L2...[,upperdir=U,workdir=W]"; with fds (non-NULL) each
 * path is /proc/self/fd/N instead (about 17 bytes a layer). */
static char *ovl_options(const char *const *lowers, const int *lfds, size_t n, const char *upper,
                         const char *work, int ufd, int wfd)
{
        buf b = { 0 };
        char tmp[64];
        buf_add(&b, "lowerdir=");
        for (size_t i = 0; i < n; i++) {
                if (i)
                        buf_add(&b, ":");
                if (lfds) {
                        snprintf(tmp, sizeof(tmp), "/proc/self/fd/%d", lfds[i]);
                        buf_add(&b, tmp);
                } else {
                        buf_add(&b, lowers[i]);
                }
        }
        if (upper) {
                buf_add(&b, ",upperdir=");
                if (ufd >= 0) {
                        snprintf(tmp, sizeof(tmp), "/proc/self/fd/%d", ufd);
                        buf_add(&b, tmp);
                } else {
                        buf_add(&b, upper);
                }
                buf_add(&b, ",workdir=");
                if (wfd >= 0) {
                        snprintf(tmp, sizeof(tmp), "/proc/self/fd/%d", wfd);
                        buf_add(&b, tmp);
                } else {
                        buf_add(&b, work);
                }
        }
        if (b.oom) {
                free(b.s);
                return NULL;
        }
        return b.s;
}

static void close_fds(int *fds, size_t n)
{
        for (size_t i = 0; fds && i < n; i++)
                if (fds[i] >= 0)
                        close(fds[i]);
        free(fds);
}

static int mount_overlay(const char *const *lowers, size_t n, const char *upper, const char *work,
                         int target_fd, const char *target, bool readonly, cc_error **ret_err)
{
        char dst[64];
        snprintf(dst, sizeof(dst), "/proc/self/fd/%d", target_fd);
        long page = sysconf(_SC_PAGESIZE);
        size_t max = page > 0 ? (size_t)page - 1 : 4095;
        unsigned long flags = readonly ? MS_RDONLY : 0;
        _cleanup_free_ char *opts = ovl_options(lowers, NULL, n, upper, work, -1, -1);
        if (!opts)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        if (strlen(opts) > max) {
                /* too long for one page: name every directory by an fd of
                 * ours; overlayfs resolves the magic links at mount time */
                int *fds = calloc(n, sizeof(int));
                _cleanup_close_ int ufd = -1, wfd = -1;
                if (!fds)
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
                for (size_t i = 0; i < n; i++)
                        fds[i] = -1;
                for (size_t i = 0; i < n; i++) {
                        fds[i] = open(lowers[i], O_PATH | O_DIRECTORY | O_CLOEXEC);
                        if (fds[i] < 0) {
                                int r = cc_error_errno(ret_err, "open layer '%s'", lowers[i]);
                                close_fds(fds, n);
                                return r;
                        }
                }
                if (upper && ((ufd = open(upper, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0 ||
                              (wfd = open(work, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)) {
                        int r = cc_error_errno(ret_err, "open '%s'", ufd < 0 ? upper : work);
                        close_fds(fds, n);
                        return r;
                }
                free(opts);
                opts = ovl_options(lowers, fds, n, upper, work, ufd, wfd);
                if (!opts) {
                        close_fds(fds, n);
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
                }
                if (strlen(opts) > max) {
                        close_fds(fds, n);
                        return cc_error_set(ret_err, -E2BIG, "%zu layers do not fit in one overlay mount's "
                                                             "options (%zu bytes, at most %zu)",
                                            n, strlen(opts), max);
                }
                int r = mount("overlay", dst, "overlay", flags, opts);
                int e = errno;
                close_fds(fds, n);
                if (r < 0) {
                        errno = e;
                        return cc_error_errno(ret_err, "overlay mount of %zu layers at '%s'", n, target);
                }
                return 0;
        }
        if (mount("overlay", dst, "overlay", flags, opts) < 0)
                return cc_error_errno(ret_err, "overlay mount of %zu layer%s at '%s'", n, n == 1 ? "" : "s",
                                      target);
        return 0;
}

int rt_rootfs_mount(const char *const *lowers, size_t n_lowers, const char *upper_base,
                    const char *target, bool readonly, cc_error **ret_err)
{
        cc_error *err = NULL;
        _cleanup_undo_ cc_undo undo = CC_UNDO_INIT;
        _cleanup_free_ char *upper = NULL, *work = NULL;
        _cleanup_close_ int tfd = -1;
        int r;
        if (!lowers || n_lowers == 0) {
                r = cc_error_set(&err, -EINVAL, "no layers");
                goto fail;
        }
        if (n_lowers > OVL_MAX_LOWERS) {
                r = cc_error_set(&err, -E2BIG, "%zu layers: overlayfs stacks at most %d", n_lowers, OVL_MAX_LOWERS);
                goto fail;
        }
        for (size_t i = 0; i < n_lowers; i++) {
                struct stat st;
                if (!ovl_path_ok(lowers[i])) {
                        r = cc_error_set(&err, -EINVAL, "layer path '%s' is not usable in an overlay mount",
                                         lowers[i] ? lowers[i] : "");
                        goto fail;
                }
                if (stat(lowers[i], &st) < 0) {
                        r = cc_error_errno(&err, "layer '%s'", lowers[i]);
                        goto fail;
                }
                if (!S_ISDIR(st.st_mode)) {
                        r = cc_error_set(&err, -ENOTDIR, "layer '%s' is not a directory", lowers[i]);
                        goto fail;
                }
        }
        if (!abs_path_clean(target) || strcmp(target, "/") == 0) {
                r = cc_error_set(&err, -EINVAL, "target '%s' must be a clean absolute path", target ? target : "");
                goto fail;
        }
        if (!readonly && (!ovl_path_ok(upper_base) || path_at_or_below(upper_base, target) ||
                          path_at_or_below(target, upper_base))) {
                r = cc_error_set(&err, -EINVAL, "upper directory '%s' is not usable (clean absolute path, "
                                                "apart from the target)", upper_base ? upper_base : "");
                goto fail;
        }
        if ((r = mkdirs_tracked(target, true, 0755, &undo, &err)) < 0)
                goto fail;
        tfd = r;
        if (rt_is_mountpoint(target)) {
                r = cc_error_set(&err, -EBUSY, "'%s' is already a mount point", target);
                goto fail;
        }
        if (readonly && n_lowers == 1) {
                _cleanup_close_ int fd = open(lowers[0], O_PATH | O_DIRECTORY | O_CLOEXEC);
                if (fd < 0) {
                        r = cc_error_errno(&err, "open layer '%s'", lowers[0]);
                        goto fail;
                }
                if ((r = bind_fd(fd, tfd, target, true, RT_PROP_PRIVATE, &err)) < 0)
                        goto fail;
        } else {
                if (!readonly) {
                        if ((r = mkdirs_tracked(upper_base, true, 0700, &undo, &err)) < 0)
                                goto fail;
                        close(r);
                        if (asprintf(&upper, "%s/upper", upper_base) < 0 ||
                            asprintf(&work, "%s/work", upper_base) < 0) {
                                r = cc_error_set(&err, -ENOMEM, "out of memory");
                                goto fail;
                        }
                        /* a leftover of a crashed run would leak into the
                         * new container: refuse it (unmount removes both) */
                        if (mkdir(upper, 0755) < 0) {
                                r = cc_error_errno(&err, "create '%s'", upper);
                                goto fail;
                        }
                        if ((r = push_path(&undo, undo_rmdir, upper, &err)) < 0)
                                goto fail;
                        if (mkdir(work, 0700) < 0) {
                                r = cc_error_errno(&err, "create '%s'", work);
                                goto fail;
                        }
                        /* overlayfs fills work (work/work, index): remove it all */
                        if ((r = push_path(&undo, undo_rm_rf, work, &err)) < 0)
                                goto fail;
                }
                if ((r = mount_overlay(lowers, n_lowers, upper, work, tfd, target, readonly, &err)) < 0)
                        goto fail;
        }
        log_debug("rootfs: %s overlay of %zu layer(s) at %s", readonly ? "read-only" : "writable", n_lowers,
                  target);
        cc_undo_disarm(&undo);
        return 0;
fail:
        cc_error_prefix(&err, "rootfs '%s'", target ? target : "");
        return cc_error_propagate(ret_err, err);
}

int rt_rootfs_unmount(const char *target, const char *upper_base, cc_error **ret_err)
{
        cc_error *err = NULL;
        int r = 0;
        if (!abs_path_clean(target) || strcmp(target, "/") == 0 ||
            (upper_base && (!abs_path_clean(upper_base) || strcmp(upper_base, "/") == 0))) {
                r = cc_error_set(&err, -EINVAL, "paths must be clean absolute paths");
                goto fail;
        }
        if ((r = teardown(target, &err)) < 0)
                goto fail;
        if (upper_base && (r = teardown(upper_base, &err)) < 0)
                goto fail;
        return 0;
fail:
        cc_error_prefix(&err, "rootfs '%s': unmount", target ? target : "");
        return cc_error_propagate(ret_err, err);
}
