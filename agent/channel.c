/* SPDX-License-Identifier: Apache-2.0 */
/* Where the agent listens: vsock port 1024 or the virtio-serial port named
 * "agent.0" in the guest, a unix socket in host mode. One connection is
 * served at a time; after a disconnect (or a protocol violation, which
 * drops the connection) the next one is accepted. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent.h"
#include "common/cleanup.h"
#include "common/log.h"

#define AGENT_VSOCK_PORT 1024

static void announce_ready(void)
{
        static const char msg[] = "cocoon-agent ready\n";
        if (agent.guest) {
                int fd = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
                if (fd >= 0) {
                        if (write(fd, msg, sizeof(msg) - 1) < 0) {
                                /* fall through to the log line */
                        }
                        close(fd);
                }
        }
        log_info("cocoon-agent ready");
}

static int accept_loop(ttrpc_server *s, int lfd)
{
        announce_ready();
        for (;;) {
                int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE)
                                continue;
                        log_error("accept: %s", strerror(errno));
                        return -errno;
                }
                log_debug("host connected");
                cc_error *err = NULL;
                int r = ttrpc_server_serve_fd(s, fd, &err);
                if (r == -ECANCELED)
                        return 0;
                if (r < 0) {
                        log_warn("connection dropped: %s", err ? err->msg : strerror(-r));
                        cc_error_free(err);
                } else {
                        log_debug("host disconnected");
                }
                if (agent.destroyed)
                        return 0;
        }
}

int agent_channel_serve_unix(ttrpc_server *s, const char *path)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(path) >= sizeof(sa.sun_path)) {
                log_error("socket path too long: %s", path);
                return -ENAMETOOLONG;
        }
        strcpy(sa.sun_path, path);
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        unlink(path);
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0600) < 0 || listen(fd, 4) < 0) {
                log_error("listen on %s: %s", path, strerror(errno));
                return -errno;
        }
        int r = accept_loop(s, fd);
        unlink(path);
        return r;
}

static int find_vport(char *out, size_t size)
{
        _cleanup_closedir_ DIR *d = opendir("/sys/class/virtio-ports");
        if (!d)
                return -ENOENT;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.' || strlen(de->d_name) > 64)
                        continue;
                char p[400], name[64];
                snprintf(p, sizeof(p), "/sys/class/virtio-ports/%s/name", de->d_name);
                _cleanup_close_ int fd = open(p, O_RDONLY | O_CLOEXEC);
                ssize_t n = fd >= 0 ? read(fd, name, sizeof(name) - 1) : -1;
                if (n <= 0)
                        continue;
                name[n] = 0;
                name[strcspn(name, "\n")] = 0;
                if (strcmp(name, "agent.0") == 0) {
                        snprintf(out, size, "/dev/%s", de->d_name);
                        return 0;
                }
        }
        return -ENOENT;
}

int agent_channel_serve_guest(ttrpc_server *s)
{
        int vfd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (vfd >= 0) {
                struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY,
                                          .svm_port = AGENT_VSOCK_PORT };
                if (bind(vfd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(vfd, 4) == 0) {
                        log_info("listening on vsock port %d", AGENT_VSOCK_PORT);
                        int r = accept_loop(s, vfd);
                        close(vfd);
                        return r;
                }
                log_info("vsock unusable (%s): trying virtio-serial", strerror(errno));
                close(vfd);
        }
        char dev[128];
        if (find_vport(dev, sizeof(dev)) < 0) {
                log_error("no vsock and no virtio-serial port named agent.0");
                return -ENODEV;
        }
        log_info("serving on %s", dev);
        announce_ready();
        for (;;) {
                int fd = open(dev, O_RDWR | O_CLOEXEC | O_NOCTTY);
                if (fd < 0) {
                        log_error("open %s: %s", dev, strerror(errno));
                        return -errno;
                }
                struct timespec t0, t1;
                clock_gettime(CLOCK_MONOTONIC, &t0);
                cc_error *err = NULL;
                int r = ttrpc_server_serve_fd(s, fd, &err);
                if (r == -ECANCELED || agent.destroyed)
                        return 0;
                if (r < 0)
                        log_warn("connection dropped: %s", err ? err->msg : strerror(-r));
                cc_error_free(err);
                /* A port with no host side reports hang-up at once: do not
                 * spin while nobody is connected. */
                clock_gettime(CLOCK_MONOTONIC, &t1);
                if (t1.tv_sec - t0.tv_sec < 1)
                        poll(NULL, 0, 100);
        }
}
