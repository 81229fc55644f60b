/* SPDX-License-Identifier: Apache-2.0 */
#include "common/fs.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"

int cc_mkdir_p(const char *path, mode_t mode, cc_error **ret_err)
{
        if (!path || !*path)
                return cc_error_set(ret_err, -EINVAL, "mkdir: empty path");
        _cleanup_free_ char *p = strdup(path);
        if (!p)
                return cc_error_set(ret_err, -ENOMEM, "mkdir '%s': out of memory", path);
        for (char *s = p + 1;; s++) {
                if (*s == '/' || *s == 0) {
                        char saved = *s;
                        *s = 0;
                        if (mkdir(p, mode) < 0 && errno != EEXIST)
                                return cc_error_errno(ret_err, "mkdir '%s'", p);
                        *s = saved;
                        if (!saved)
                                break;
                }
        }
        struct stat st;
        if (stat(path, &st) < 0)
                return cc_error_errno(ret_err, "stat '%s'", path);
        if (!S_ISDIR(st.st_mode))
                return cc_error_set(ret_err, -ENOTDIR, "'%s' exists and is not a directory", path);
        return 0;
}

int cc_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
                         cc_error **ret_err)
{
        _cleanup_free_ char *dir_copy = strdup(path);
        _cleanup_free_ char *tmp = NULL;
        if (!dir_copy || asprintf(&tmp, "%s.tmp.XXXXXX", path) < 0)
                return cc_error_set(ret_err, -ENOMEM, "write '%s': out of memory", path);
        _cleanup_close_ int fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return cc_error_errno(ret_err, "write '%s': create temporary file", path);
        const char *p = data;
        size_t left = len;
        int r = 0;
        while (left > 0) {
                ssize_t n = write(fd, p, left);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        r = cc_error_errno(ret_err, "write '%s'", tmp);
                        goto fail;
                }
                p += n;
                left -= (size_t)n;
        }
        if (fchmod(fd, mode) < 0 || fsync(fd) < 0) {
                r = cc_error_errno(ret_err, "write '%s': fsync", tmp);
                goto fail;
        }
        if (rename(tmp, path) < 0) {
                r = cc_error_errno(ret_err, "rename '%s' to '%s'", tmp, path);
                goto fail;
        }
        int dfd = open(dirname(dir_copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
                (void)fsync(dfd);
                close(dfd);
        }
        return 0;
fail:
        unlink(tmp);
        return r;
}

int cc_read_file(const char *path, size_t max, char **ret_buf, size_t *ret_len, cc_error **ret_err)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return cc_error_errno(ret_err, "open '%s'", path);
        struct stat st;
        if (fstat(fd, &st) < 0)
                return cc_error_errno(ret_err, "stat '%s'", path);
        if (S_ISREG(st.st_mode) && (size_t)st.st_size > max)
                return cc_error_set(ret_err, -EFBIG, "'%s' is larger than %zu bytes", path, max);
        size_t cap = S_ISREG(st.st_mode) ? (size_t)st.st_size + 1 : 4096, len = 0;
        _cleanup_free_ char *buf = malloc(cap);
        if (!buf)
                return cc_error_set(ret_err, -ENOMEM, "read '%s': out of memory", path);
        for (;;) {
                if (len + 1 >= cap) {
                        if (cap > max + 1)
                                return cc_error_set(ret_err, -EFBIG, "'%s' is larger than %zu bytes",
                                                    path, max);
                        char *nb = realloc(buf, cap * 2);
                        if (!nb)
                                return cc_error_set(ret_err, -ENOMEM, "read '%s': out of memory", path);
                        buf = nb;
                        cap *= 2;
                }
                ssize_t n = read(fd, buf + len, cap - len - 1);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return cc_error_errno(ret_err, "read '%s'", path);
                }
                if (n == 0)
                        break;
                len += (size_t)n;
                if (len > max)
                        return cc_error_set(ret_err, -EFBIG, "'%s' is larger than %zu bytes", path, max);
        }
        buf[len] = 0;
        *ret_buf = TAKE_PTR(buf);
        if (ret_len)
                *ret_len = len;
        return 0;
}

#ifndef STATX_ATTR_MOUNT_ROOT
#define STATX_ATTR_MOUNT_ROOT 0x00002000
#endif

/* A bind mount from the same filesystem keeps st_dev: ask statx whether the
 * directory is the root of a mount (Linux >= 5.8). */
static bool is_mount_root(int dfd, const char *name)
{
        struct statx stx;
        if (statx(dfd, name, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &stx) < 0)
                return false;
        return (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
               (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
}

static int rm_rf_at(int dfd, const char *name, dev_t dev, bool top, cc_error **ret_err)
{
        struct stat st;
        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : cc_error_errno(ret_err, "stat '%s'", name);
        if (!S_ISDIR(st.st_mode)) {
                if (unlinkat(dfd, name, 0) < 0 && errno != ENOENT)
                        return cc_error_errno(ret_err, "unlink '%s'", name);
                return 0;
        }
        if (st.st_dev != dev || (!top && is_mount_root(dfd, name)))
                return cc_error_set(ret_err, -EBUSY, "'%s' is a mount point; not removing", name);
        int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return cc_error_errno(ret_err, "open '%s'", name);
        _cleanup_closedir_ DIR *d = fdopendir(fd);
        if (!d) {
                close(fd);
                return cc_error_errno(ret_err, "opendir '%s'", name);
        }
        struct dirent *de;
        while ((errno = 0, de = readdir(d))) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                int r = rm_rf_at(dirfd(d), de->d_name, dev, false, ret_err);
                if (r < 0) {
                        cc_error_prefix(ret_err, "%s", name);
                        return r;
                }
        }
        if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
                return cc_error_errno(ret_err, "rmdir '%s'", name);
        return 0;
}

int cc_rm_rf(const char *path, cc_error **ret_err)
{
        struct stat st;
        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0 : cc_error_errno(ret_err, "stat '%s'", path);
        return rm_rf_at(AT_FDCWD, path, st.st_dev, true, ret_err);
}

/* nftw has no user pointer: one walk at a time */
static pthread_mutex_t du_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t du_bytes, du_inodes, du_max;

static int du_fn(const char *path, const struct stat *st, int flag, struct FTW *f)
{
        (void)path, (void)flag, (void)f;
        du_inodes++;
        du_bytes += (uint64_t)st->st_blocks * 512;
        return du_inodes >= du_max ? 1 : 0; /* non-zero: stop the walk */
}

int cc_disk_usage(const char *dir, uint64_t max_entries, uint64_t *ret_bytes, uint64_t *ret_inodes)
{
        pthread_mutex_lock(&du_lock);
        du_bytes = du_inodes = 0;
        du_max = max_entries;
        int r = nftw(dir, du_fn, 16, FTW_PHYS | FTW_MOUNT);
        int e = errno;
        *ret_bytes = du_bytes;
        *ret_inodes = du_inodes;
        pthread_mutex_unlock(&du_lock);
        return r < 0 ? -e : 0;
}

int cc_path_is_safe_relative(const char *rel)
{
        if (!rel || !*rel || rel[0] == '/')
                return 0;
        const char *p = rel;
        while (*p) {
                const char *e = strchrnul(p, '/');
                size_t n = (size_t)(e - p);
                if (n == 2 && p[0] == '.' && p[1] == '.')
                        return 0;
                p = *e ? e + 1 : e;
        }
        return 1;
}

ssize_t cc_send_fd(int sock, const void *data, size_t len, int fd)
{
        struct iovec iov = { .iov_base = (void *)data, .iov_len = len };
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int))];
        } c;
        memset(&c, 0, sizeof(c));
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.buf,
                             .msg_controllen = sizeof(c.buf) };
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof(int));
        ssize_t n;
        while ((n = sendmsg(sock, &mh, MSG_NOSIGNAL)) < 0 && errno == EINTR)
                ;
        return n < 0 ? -errno : n;
}
