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
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent.h"
#include "common/cleanup.h"
#include "common/log.h"

#define AGENT_VSOCK_PORT 1024

/* "cocoon-agent ready" on the console (the host times boots by it) and in
 * the log. PID 1's stderr is /dev/console; a direct write there is not
 * filtered by the kernel's console log level as /dev/kmsg would be. */
static void announce_ready(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_BOOTTIME, &ts);
        if (agent.guest) {
                char msg[96];
                int n = snprintf(msg, sizeof(msg), "cocoon-agent ready (guest uptime %ld.%03ld s)\n",
                                 (long)ts.tv_sec, ts.tv_nsec / 1000000);
                int fd = open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);
                if (fd >= 0) {
                        if (write(fd, msg, (size_t)n) < 0) {
                                /* nothing else to tell it to */
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
        /* Bound and listening under a temporary name, then renamed: the
         * socket appears only once it accepts connections, so whoever
         * started us can wait for the file (inotify) and connect at once. */
        char tmp[sizeof(sa.sun_path)];
        if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
                log_error("socket path too long: %s", path);
                return -ENAMETOOLONG;
        }
        strcpy(sa.sun_path, tmp);
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        unlink(tmp);
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(tmp, 0600) < 0 || listen(fd, 16) < 0 ||
            rename(tmp, path) < 0) {
                int r = -errno;
                log_error("listen on %s: %s", path, strerror(errno));
                unlink(tmp);
                return r;
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

/* True when a vsock transport with a guest CID is present: AF_VSOCK
 * sockets bind and listen without any device, so a listening socket proves
 * nothing. */
static bool vsock_usable(void)
{
        _cleanup_close_ int fd = open("/dev/vsock", O_RDONLY | O_CLOEXEC);
        unsigned int cid = VMADDR_CID_ANY;
        if (fd < 0 || ioctl(fd, IOCTL_VM_SOCKETS_GET_LOCAL_CID, &cid) < 0)
                return false;
        log_debug("vsock local cid %u", cid);
        return cid != VMADDR_CID_ANY && cid > VMADDR_CID_HOST;
}

static int serve_vsock(ttrpc_server *s)
{
        _cleanup_close_ int vfd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (vfd < 0)
                return -errno;
        struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY,
                                  .svm_port = AGENT_VSOCK_PORT };
        if (bind(vfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(vfd, 4) < 0) {
                log_error("vsock port %d: %s", AGENT_VSOCK_PORT, strerror(errno));
                return -errno;
        }
        log_info("listening on vsock port %d", AGENT_VSOCK_PORT);
        return accept_loop(s, vfd);
}

/* The port stays open for the agent's lifetime and each connection is
 * served on a dup of it: closing the port would discard what the host sent
 * meanwhile. The port polls POLLHUP for as long as no host is attached and
 * the kernel offers no event for the attach, so a short sleep bridges the
 * gap between two host connections (not the first: the host connects
 * before the guest boots). */
static int serve_vport(ttrpc_server *s, const char *dev)
{
        _cleanup_close_ int fd = open(dev, O_RDWR | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
                log_error("open %s: %s", dev, strerror(errno));
                return -errno;
        }
        log_info("serving on %s", dev);
        announce_ready();
        for (;;) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                if (poll(&p, 1, 0) < 0 && errno != EINTR)
                        return -errno;
                if (p.revents & POLLHUP) {
                        poll(NULL, 0, 10);
                        continue;
                }
                int cfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
                if (cfd < 0)
                        return -errno;
                log_debug("host connected");
                cc_error *err = NULL;
                int r = ttrpc_server_serve_fd(s, cfd, &err);
                if (r == -ECANCELED || agent.destroyed) {
                        cc_error_free(err);
                        return 0;
                }
                if (r < 0)
                        log_warn("connection dropped: %s", err ? err->msg : strerror(-r));
                else
                        log_debug("host disconnected");
                cc_error_free(err);
        }
}

/* The host offers either a virtio-serial port named agent.0 or vsock. The
 * port appears asynchronously (the device announces its ports after the
 * driver is up), so wait for one of them. */
int agent_channel_serve_guest(ttrpc_server *s)
{
        char dev[128];
        struct timespec t0, now;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        bool warned = false;
        for (;;) {
                if (find_vport(dev, sizeof(dev)) == 0 && access(dev, F_OK) == 0)
                        return serve_vport(s, dev);
                if (vsock_usable())
                        return serve_vsock(s);
                clock_gettime(CLOCK_MONOTONIC, &now);
                if (!warned && now.tv_sec - t0.tv_sec >= 10) {
                        log_warn("still no vsock and no virtio-serial port named agent.0");
                        warned = true;
                }
                /* devices show up from kernel work items: no event to wait on */
                poll(NULL, 0, 2);
        }
}
