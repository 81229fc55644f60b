/* SPDX-License-Identifier: Apache-2.0 */
/* Container lifecycle RPCs: CreateContainer, StartContainer,
 * RemoveContainer, StatsContainer, PauseContainer, ResumeContainer,
 * UpdateContainer, GetOOMEvent. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <stdio.h>
#include <sys/mount.h>

#include "agent/agent.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "common/log.h"
#include "cocoon-agent.pb-c.h"

#define MAX_MOUNTS 256

static int validate_spec(const Grpc__CreateContainerRequest *req, cc_error **ret_err)
{
        const Grpc__Spec *spec = req->oci;
        if (!spec)
                return cc_error_set(ret_err, -EINVAL, "no OCI spec");
        if (!spec->root || !spec->root->path || !*spec->root->path)
                return cc_error_set(ret_err, -EINVAL, "no root path in the spec");
        if (!spec->process)
                return cc_error_set(ret_err, -EINVAL, "no process in the spec");
        const char *p = spec->root->path;
        if (!agent.guest && p[0] != '/')
                return cc_error_set(ret_err, -EINVAL, "root path '%.64s' must be absolute", p);
        while (*p == '/')
                p++;
        if (*p && agent_validate_relpath("root path", p, ret_err) < 0)
                return -EINVAL;
        if (spec->n_mounts > MAX_MOUNTS)
                return cc_error_set(ret_err, -EINVAL, "too many mounts (%zu)", spec->n_mounts);
        for (size_t i = 0; i < spec->n_mounts; i++) {
                const Grpc__Mount *m = spec->mounts[i];
                if (!m->destination || m->destination[0] != '/' ||
                    agent_validate_relpath("mount destination", m->destination[1] ? m->destination + 1 : ".",
                                           ret_err) < 0) {
                        if (!*ret_err)
                                cc_error_set(ret_err, -EINVAL, "mount %zu: destination must be absolute", i);
                        return -EINVAL;
                }
                if (m->n_options > 64)
                        return cc_error_set(ret_err, -EINVAL, "mount %zu: too many options", i);
        }
        if (spec->hostname && strlen(spec->hostname) > 64)
                return cc_error_set(ret_err, -EINVAL, "hostname longer than 64 bytes");
        const Grpc__Linux *lx = spec->linux;
        if (lx) {
                if (lx->n_maskedpaths > 256 || lx->n_readonlypaths > 256 || lx->n_sysctl > 256 ||
                    lx->n_namespaces > 16)
                        return cc_error_set(ret_err, -EINVAL, "too many entries in spec.linux");
                for (size_t i = 0; i < lx->n_sysctl; i++) {
                        const char *k = lx->sysctl[i]->key;
                        if (!k || !*k || strlen(k) > 128 || strstr(k, "..") || k[strspn(k,
                            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/")])
                                return cc_error_set(ret_err, -EINVAL, "bad sysctl key '%.64s'", k ? k : "");
                        if (lx->sysctl[i]->value && strlen(lx->sysctl[i]->value) > 4096)
                                return cc_error_set(ret_err, -EINVAL, "sysctl value too long");
                }
                if (lx->n_uidmappings || lx->n_gidmappings)
                        return cc_error_set(ret_err, -EINVAL, "user namespaces are not supported");
        }
        return 0;
}

static void h_create(ttrpc_call *call, const uint8_t *pl, size_t len, void *ud)
{
        Grpc__CreateContainerRequest *req =
                (void *)agent_unpack(call, &grpc__create_container_request__descriptor, pl, len);
        if (!req)
                return;
        _cleanup_error_ cc_error *err = NULL;
        _cleanup_free_ char *id = NULL;
        if (agent_validate_id("container_id", req->container_id, &err) < 0 ||
            (req->exec_id && *req->exec_id && agent_validate_id("exec_id", req->exec_id, &err) < 0) ||
            validate_spec(req, &err) < 0) {
                agent_reply_fail(call, "CreateContainer", NULL, err);
                protobuf_c_message_free_unpacked(&req->base, NULL);
                return;
        }
        id = strdup(req->container_id);
        log_info("rpc=CreateContainer container=%s", id);
        pthread_mutex_lock(&agent_lock);
        if (agent_find_container(req->container_id))
                cc_error_set(&err, -EEXIST, "container %s already exists", req->container_id);
        bool mounted[64] = { false };
        if (!err && req->n_storages > CC_ARRAY_SIZE(mounted))
                cc_error_set(&err, -EINVAL, "too many storages");
        for (size_t i = 0; !err && i < req->n_storages; i++)
                agent_mount_storage(req->storages[i], &mounted[i], &err);
        int r = err ? -1 : agent_container_create(req, &err);
        for (size_t i = CC_MIN(req->n_storages, CC_ARRAY_SIZE(mounted)); r < 0 && i-- > 0;)
                if (mounted[i])
                        umount2(req->storages[i]->mount_point, MNT_DETACH);
        pthread_mutex_unlock(&agent_lock);
        if (r < 0) {
                agent_reply_fail(call, "CreateContainer", id, err);
                protobuf_c_message_free_unpacked(&req->base, NULL);
                return;
        }
        /* req now belongs to the container */
        agent_reply_empty(call);
        log_info("rpc=CreateContainer container=%s ok", id);
}

/* Common prologue: decode, validate the id, lock, find. Returns the
 * container with agent_lock held, or NULL (answered, unlocked). */
#define LOOKUP(call, desc, type, req, rpc)                                                   \
        type *req = (void *)agent_unpack(call, &desc, pl, len);                             \
        if (!req)                                                                          \
                return;                                                                    \
        _cleanup_error_ cc_error *err = NULL;                                              \
        if (agent_validate_id("container_id", req->container_id, &err) < 0) {              \
                agent_reply_fail(call, rpc, NULL, err);                                    \
                protobuf_c_message_free_unpacked(&req->base, NULL);                        \
                return;                                                                    \
        }                                                                                  \
        pthread_mutex_lock(&agent_lock);                                                   \
        agent_container *c = agent_find_container(req->container_id);                      \
        if (!c) {                                                                          \
                pthread_mutex_unlock(&agent_lock);                                         \
                cc_error_set(&err, -ENOENT, "container %.128s not found", req->container_id); \
                agent_reply_fail(call, rpc, req->container_id, err);                       \
                protobuf_c_message_free_unpacked(&req->base, NULL);                        \
                return;                                                                    \
        }

#define FINISH(call, req, rpc, r)                                                          \
        do {                                                                               \
                if ((r) < 0)                                                               \
                        agent_reply_fail(call, rpc, req->container_id, err);               \
                else                                                                       \
                        agent_reply_empty(call);                                           \
                protobuf_c_message_free_unpacked(&req->base, NULL);                        \
        } while (0)

static void h_start(ttrpc_call *call, const uint8_t *pl, size_t len, void *ud)
{
        LOOKUP(call, grpc__start_container_request__descriptor, Grpc__StartContainerRequest, req,
               "StartContainer");
        int r = agent_container_start(c, &err);
        pthread_mutex_unlock(&agent_lock);
        log_info("rpc=StartContainer container=%s%s", req->container_id, r < 0 ? "" : " ok");
        FINISH(call, req, "StartContainer", r);
}

static void h_remove(ttrpc_call *call, const uint8_t *pl, size_t len, void *ud)
{
        LOOKUP(call, grpc__remove_container_request__descriptor, Grpc__RemoveContainerRequest, req,
               "RemoveContainer");
        int r = agent_container_remove(c, req->timeout, &err);
        pthread_mutex_unlock(&agent_lock);
        log_info("rpc=RemoveContainer container=%s%s", req->container_id, r < 0 ? "" : " ok");
        FINISH(call, req, "RemoveContainer", r);
}

static void h_pause(ttrpc_call *call, const uint8_t *pl, size_t len, void *ud)
{
        LOOKUP(call, grpc__pause_container_request__descriptor, Grpc__PauseContainerRequest, req,
               "PauseContainer");
        int r = agent_cgroup_freeze(c->cgroup, true, &err);
        if (r >= 0)
                c->paused = true;
        pthread_mutex_unlock(&agent_lock);
        FINISH(call, req, "PauseContainer", r);
}

static void h_resume(ttrpc_call *call, const uint8_t *pl, size_t len, void *ud)
{
        LOOKUP(call, grpc__resume_container_request__descriptor, Grpc__ResumeContainerRequest, req,
               "ResumeContainer");
        int r = agent_cgroup_freeze(c->cgroup, false, &err);
        if (r >= 0)
                c->paused = false;
        pthread_mutex_unlock(&agent_lock);
        FINISH(call, req, "ResumeContainer", r);
}

static void h_update(ttrpc_call *call, const uint8_t *pl, size_t len, void *ud)
{
        LOOKUP(call, grpc__update_container_request__descriptor, Grpc__UpdateContainerRequest, req,
               "UpdateContainer");
        int r = req->resources ? agent_cgroup_apply(c->cgroup, req->resources, &err) : 0;
        pthread_mutex_unlock(&agent_lock);
        log_info("rpc=UpdateContainer container=%s%s", req->container_id, r < 0 ? "" : " ok");
        FINISH(call, req, "UpdateContainer", r);
}

static void h_stats(ttrpc_call *call, const uint8_t *pl, size_t len, void *ud)
{
        LOOKUP(call, grpc__stats_container_request__descriptor, Grpc__StatsContainerRequest, req,
               "StatsContainer");
        Grpc__StatsContainerResponse resp = GRPC__STATS_CONTAINER_RESPONSE__INIT;
        int r = agent_cgroup_stats(c->cgroup, &resp);
        pthread_mutex_unlock(&agent_lock);
        if (r < 0) {
                cc_error_set(&err, r, "stats of %s: %s", req->container_id, strerror(-r));
                agent_reply_fail(call, "StatsContainer", req->container_id, err);
        } else {
                ttrpc_call_reply_pb(call, &resp.base);
        }
        agent_cgroup_stats_free(&resp);
        protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void h_oom(ttrpc_call *call, const uint8_t *pl, size_t len, void *ud)
{
        Grpc__GetOOMEventRequest *req = (void *)agent_unpack(call, &grpc__get_oomevent_request__descriptor, pl, len);
        if (!req)
                return;
        protobuf_c_message_free_unpacked(&req->base, NULL);
        pthread_mutex_lock(&agent_lock);
        agent_oom_get(call);
        pthread_mutex_unlock(&agent_lock);
}

/* cocoon.agent.Containers/Pid (proto/cocoon-agent.proto). */
static void h_pid(ttrpc_call *call, const uint8_t *pl, size_t len, void *ud)
{
        LOOKUP(call, cocoon__agent__container_pid_request__descriptor, Cocoon__Agent__ContainerPidRequest, req,
               "Pid");
        Cocoon__Agent__ContainerPidResponse resp = COCOON__AGENT__CONTAINER_PID_RESPONSE__INIT;
        if (c->init && c->init->pid > 0 && !c->init->exited)
                resp.pid = c->init->pid;
        pthread_mutex_unlock(&agent_lock);
        ttrpc_call_reply_pb(call, &resp.base);
        protobuf_c_message_free_unpacked(&req->base, NULL);
}

#define DU_MAX_ENTRIES 200000 /* a writable layer with more is counted up to here */

/* cocoon.agent.Containers/DiskUsage (proto/cocoon-agent.proto). */
static void h_disk_usage(ttrpc_call *call, const uint8_t *pl, size_t len, void *ud)
{
        LOOKUP(call, cocoon__agent__container_disk_usage_request__descriptor, Cocoon__Agent__ContainerDiskUsageRequest,
               req, "DiskUsage");
        char upper[PATH_MAX] = "";
        if (agent.guest && c->overlay)
                snprintf(upper, sizeof(upper), "%s/%s/upper", AGENT_RW_DIR, c->id);
        pthread_mutex_unlock(&agent_lock);
        Cocoon__Agent__ContainerDiskUsageResponse resp = COCOON__AGENT__CONTAINER_DISK_USAGE_RESPONSE__INIT;
        if (*upper) {
                uint64_t bytes = 0, inodes = 0;
                resp.present = cc_disk_usage(upper, DU_MAX_ENTRIES, &bytes, &inodes) == 0;
                resp.used_bytes = bytes;
                resp.inodes_used = inodes;
                resp.path = upper;
        }
        ttrpc_call_reply_pb(call, &resp.base);
        protobuf_c_message_free_unpacked(&req->base, NULL);
}

void agent_rpc_register_containers(ttrpc_server *s)
{
        static const struct { const char *method; ttrpc_handler_fn fn; } tab[] = {
                { "CreateContainer", h_create }, { "StartContainer", h_start },
                { "RemoveContainer", h_remove }, { "PauseContainer", h_pause },
                { "ResumeContainer", h_resume }, { "UpdateContainer", h_update },
                { "StatsContainer", h_stats }, { "GetOOMEvent", h_oom },
        };
        for (size_t i = 0; i < CC_ARRAY_SIZE(tab); i++)
                ttrpc_server_register(s, "grpc.AgentService", tab[i].method, tab[i].fn, NULL, NULL);
        ttrpc_server_register(s, "cocoon.agent.Containers", "Pid", h_pid, NULL, NULL);
        ttrpc_server_register(s, "cocoon.agent.Containers", "DiskUsage", h_disk_usage, NULL, NULL);
}
