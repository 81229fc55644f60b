/* SPDX-License-Identifier: Apache-2.0 */
#include "cri-server/socket.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"

int cri_socket_path_from_address(const char *address, char **ret_path, cc_error **ret_err)
{
        const char *p = NULL;
        if (strncmp(address, "unix://", 7) == 0)
                p = address + 7;
        else if (strncmp(address, "unix:", 5) == 0)
                p = address + 5;
        if (!p || p[0] != '/')
                return cc_error_set(ret_err, -EINVAL,
                                    "listen address '%s' must be unix:///absolute/path", address);
        if (strlen(p) >= sizeof(((struct sockaddr_un *)0)->sun_path))
                return cc_error_set(ret_err, -ENAMETOOLONG, "socket path '%s' is too long", p);
        *ret_path = strdup(p);
        if (!*ret_path)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        return 0;
}

/* 1: something accepts connections there; 0: nobody does. */
static int socket_is_live(const char *path)
{
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return 0;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        return connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
}

int cri_socket_prepare(const char *address, cri_socket *ret, cc_error **ret_err)
{
        _cleanup_free_ char *path = NULL;
        if (cri_socket_path_from_address(address, &path, ret_err) < 0)
                return -EINVAL;
        _cleanup_free_ char *dir = strdup(path);
        if (!dir)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        if (cc_mkdir_p(dirname(dir), 0711, ret_err) < 0)
                return cc_error_prefix(ret_err, "socket directory");

        _cleanup_free_ char *lock_path = NULL;
        if (asprintf(&lock_path, "%s.lock", path) < 0)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        _cleanup_close_ int lfd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (lfd < 0)
                return cc_error_errno(ret_err, "open lock file '%s'", lock_path);
        if (flock(lfd, LOCK_EX | LOCK_NB) < 0) {
                if (errno == EWOULDBLOCK)
                        return cc_error_set(ret_err, -EADDRINUSE,
                                            "another cocoond is already serving %s (lock %s is held)",
                                            path, lock_path);
                return cc_error_errno(ret_err, "lock '%s'", lock_path);
        }

        struct stat st;
        if (lstat(path, &st) == 0) {
                if (!S_ISSOCK(st.st_mode))
                        return cc_error_set(ret_err, -EEXIST,
                                            "'%s' exists and is not a socket; not replacing it", path);
                if (socket_is_live(path))
                        return cc_error_set(ret_err, -EADDRINUSE,
                                            "another process is already serving on %s", path);
                if (unlink(path) < 0)
                        return cc_error_errno(ret_err, "remove stale socket '%s'", path);
        } else if (errno != ENOENT) {
                return cc_error_errno(ret_err, "stat '%s'", path);
        }
        ret->path = TAKE_PTR(path);
        ret->lock_fd = TAKE_FD(lfd);
        return 0;
}

int cri_socket_set_perms(const cri_socket *s, mode_t mode, const char *group, cc_error **ret_err)
{
        if (group && *group) {
                struct group grbuf, *gr = NULL;
                char buf[4096];
                if (getgrnam_r(group, &grbuf, buf, sizeof(buf), &gr) != 0 || !gr)
                        return cc_error_set(ret_err, -ENOENT, "socket group '%s' does not exist", group);
                if (chown(s->path, (uid_t)-1, gr->gr_gid) < 0)
                        return cc_error_errno(ret_err, "chown '%s'", s->path);
        }
        if (chmod(s->path, mode) < 0)
                return cc_error_errno(ret_err, "chmod '%s'", s->path);
        return 0;
}

void cri_socket_release(cri_socket *s)
{
        if (s->path) {
                unlink(s->path);
                free(s->path);
                s->path = NULL;
        }
        if (s->lock_fd >= 0) {
                close(s->lock_fd);
                s->lock_fd = -1;
        }
}
