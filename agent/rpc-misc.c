/* SPDX-License-Identifier: Apache-2.0 */
/* Guest housekeeping RPCs: SetGuestDateTime, ReseedRandomDev,
 * GetGuestDetails, CopyFile, OnlineCPUMem. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/random.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "agent/agent.h"
#include "common/cleanup.h"
#include "common/log.h"

#define COPY_MAX_FILE (256ull << 20)

static void h_set_time(ttrpc_call *call, const uint8_t *pl, size_t len, void *ud)
{
        Grpc__SetGuestDateTimeRequest *req =
                (void *)agent_unpack(call, &grpc__set_guest_date_time_request__descriptor, pl, len);
        if (!req)
                return;
        if (req->sec < 0 || req->usec < 0 || req->usec >= 1000000) {
                ttrpc_call_reply_status(call, TTRPC_CODE_INVALID_ARGUMENT, "bad time");
        } else if (!agent.guest) {
                agent_reply_empty(call); /* never touch the host's clock */
        } else {
                struct timeval tv = { .tv_sec = req->sec, .tv_usec = req->usec };
                if (settimeofday(&tv, NULL) < 0)
                        ttrpc_call_reply_status(call, TTRPC_CODE_INTERNAL, "settimeofday: %s", strerror(errno));
                else
                        agent_reply_empty(call);
        }
        protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* A VM started from a template resumes with the template's kernel RNG
 * state, shared by every other copy: the host's random bytes are mixed in
 * (credited, as the host's getrandom is trusted like the rest of what it
 * runs) and the CRNG reseeded from them at once. */
static void h_reseed(ttrpc_call *call, const uint8_t *pl, size_t len, void *ud)
{
        Grpc__ReseedRandomDevRequest *req =
                (void *)agent_unpack(call, &grpc__reseed_random_dev_request__descriptor, pl, len);
        if (!req)
                return;
        size_t n = req->data.len;
        if (n == 0 || n > AGENT_RESEED_MAX) {
                ttrpc_call_reply_status(call, TTRPC_CODE_INVALID_ARGUMENT, "reseed data must be 1..%d bytes",
                                        AGENT_RESEED_MAX);
        } else if (!agent.guest) {
                agent_reply_empty(call); /* never touch the host's RNG */
        } else {
                struct rand_pool_info *rpi = malloc(sizeof(*rpi) + n);
                _cleanup_close_ int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
                int e = 0;
                if (!rpi)
                        e = ENOMEM;
                else if (fd < 0)
                        e = errno;
                if (!e) {
                        rpi->entropy_count = (int)(n * 8);
                        rpi->buf_size = (int)n;
                        memcpy(rpi->buf, req->data.data, n);
                        if (ioctl(fd, RNDADDENTROPY, rpi) < 0 || ioctl(fd, RNDRESEEDCRNG) < 0)
                                e = errno;
                        explicit_bzero(rpi->buf, n);
                }
                free(rpi);
                if (e)
                        ttrpc_call_reply_status(call, TTRPC_CODE_INTERNAL, "reseed: %s", strerror(e));
                else
                        agent_reply_empty(call);
        }
        protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void h_details(ttrpc_call *call, const uint8_t *pl, size_t len, void *ud)
{
        Grpc__GuestDetailsRequest *req =
                (void *)agent_unpack(call, &grpc__guest_details_request__descriptor, pl, len);
        if (!req)
                return;
        Grpc__GuestDetailsResponse resp = GRPC__GUEST_DETAILS_RESPONSE__INIT;
        Grpc__AgentDetails det = GRPC__AGENT_DETAILS__INIT;
        static char *storage[] = { (char *)"virtio-fs", (char *)"ephemeral", (char *)"local" };
        det.version = (char *)AGENT_VERSION;
        det.init_daemon = agent.guest;
        det.supports_seccomp = true;
        det.storage_handlers = storage;
        det.n_storage_handlers = CC_ARRAY_SIZE(storage);
        resp.agent_details = &det;
        if (req->mem_block_size) {
                char buf[64];
                _cleanup_close_ int fd = open("/sys/devices/system/memory/block_size_bytes", O_RDONLY | O_CLOEXEC);
                ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
                if (n > 0) {
                        buf[n] = 0;
                        resp.mem_block_size_bytes = strtoull(buf, NULL, 16);
                }
        }
        resp.support_mem_hotplug_probe = access("/sys/devices/system/memory/probe", W_OK) == 0;
        ttrpc_call_reply_pb(call, &resp.base);
        protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* CopyFile: only below the shared/run tree in the guest, below the state
 * dir in host mode; written in chunks at offset. */
static void h_copy(ttrpc_call *call, const uint8_t *pl, size_t len, void *ud)
{
        Grpc__CopyFileRequest *req = (void *)agent_unpack(call, &grpc__copy_file_request__descriptor, pl, len);
        if (!req)
                return;
        _cleanup_error_ cc_error *err = NULL;
        const char *root = agent.guest ? "/run/cocoon" : agent.state_dir;
        size_t rl = strlen(root);
        const char *p = req->path;
        if (!p || strncmp(p, root, rl) != 0 || p[rl] != '/' ||
            agent_validate_relpath("path", p + rl + 1, &err) < 0) {
                if (!err)
                        cc_error_set(&err, -EINVAL, "path '%.64s' is outside %s", p ? p : "", root);
        } else if (req->file_size < 0 || (uint64_t)req->file_size > COPY_MAX_FILE || req->offset < 0 ||
                   (uint64_t)req->offset + req->data.len > (uint64_t)req->file_size) {
                cc_error_set(&err, -EINVAL, "size/offset out of range");
        } else if ((req->file_mode & S_IFMT) && !S_ISREG(req->file_mode) && !S_ISDIR(req->file_mode)) {
                cc_error_set(&err, -EINVAL, "only regular files and directories");
        } else {
                _cleanup_close_ int rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
                char rel[PATH_MAX];
                snprintf(rel, sizeof(rel), "%s", p + rl + 1);
                char *slash = strrchr(rel, '/');
                int dfd = -1;
                if (rootfd < 0) {
                        cc_error_errno(&err, "open %s", root);
                } else if (slash) {
                        *slash = 0;
                        dfd = agent_open_in_root(rootfd, rel, true, true);
                        *slash = '/';
                } else {
                        dfd = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
                }
                _cleanup_close_ int dirfd = dfd;
                const char *name = slash ? slash + 1 : rel;
                if (!err && dirfd < 0) {
                        cc_error_set(&err, dirfd, "create parent of %s: %s", p, strerror(-dirfd));
                } else if (!err && S_ISDIR(req->file_mode)) {
                        if (mkdirat(dirfd, name, req->file_mode & 07777) < 0 && errno != EEXIST)
                                cc_error_errno(&err, "mkdir %s", p);
                } else if (!err) {
                        char fdp[64];
                        snprintf(fdp, sizeof(fdp), "/proc/self/fd/%d", dirfd);
                        _cleanup_close_ int dir = open(fdp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                        int fd = dir < 0 ? -1 : openat(dir, name, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
                                                       (req->file_mode & 07777) ? req->file_mode & 07777 : 0644);
                        if (fd < 0 || pwrite(fd, req->data.data, req->data.len, req->offset) != (ssize_t)req->data.len ||
                            (req->offset + (int64_t)req->data.len == req->file_size && ftruncate(fd, req->file_size) < 0))
                                cc_error_errno(&err, "write %s", p);
                        if (fd >= 0)
                                close(fd);
                }
        }
        if (err)
                agent_reply_fail(call, "CopyFile", NULL, err);
        else
                agent_reply_empty(call);
        protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void h_online(ttrpc_call *call, const uint8_t *pl, size_t len, void *ud)
{
        Grpc__OnlineCPUMemRequest *req =
                (void *)agent_unpack(call, &grpc__online_cpumem_request__descriptor, pl, len);
        if (!req)
                return;
        if (agent.guest) {
                for (int i = 1; i < 4096; i++) {
                        char path[96];
                        snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu%d/online", i);
                        int fd = open(path, O_RDWR | O_CLOEXEC);
                        if (fd < 0) {
                                if (errno == ENOENT)
                                        break;
                                continue;
                        }
                        if (write(fd, "1", 1) < 0 && errno != EBUSY)
                                log_debug("online cpu%d: %s", i, strerror(errno));
                        close(fd);
                }
                for (int i = 0; !req->cpu_only && i < 65536; i++) {
                        char path[96];
                        snprintf(path, sizeof(path), "/sys/devices/system/memory/memory%d/online", i);
                        int fd = open(path, O_RDWR | O_CLOEXEC);
                        if (fd < 0)
                                continue;
                        char st;
                        if (read(fd, &st, 1) == 1 && st == '0' && pwrite(fd, "1", 1, 0) < 0)
                                log_debug("online memory%d: %s", i, strerror(errno));
                        close(fd);
                }
        }
        agent_reply_empty(call);
        protobuf_c_message_free_unpacked(&req->base, NULL);
}

void agent_rpc_register_misc(ttrpc_server *s)
{
        static const struct { const char *method; ttrpc_handler_fn fn; } tab[] = {
                { "SetGuestDateTime", h_set_time }, { "ReseedRandomDev", h_reseed },
                { "GetGuestDetails", h_details },
                { "CopyFile", h_copy }, { "OnlineCPUMem", h_online },
        };
        for (size_t i = 0; i < CC_ARRAY_SIZE(tab); i++)
                ttrpc_server_register(s, "grpc.AgentService", tab[i].method, tab[i].fn, NULL, NULL);
}
