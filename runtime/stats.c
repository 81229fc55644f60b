/* Container stats (ContainerStats, ListContainerStats): CPU and memory from
 * the container's cgroup, read by the pod's agent (StatsContainer: inside
 * the VM, or on the host for a host-mode pod), and the writable layer's use:
 * in a VM the upper directory of the container's rootfs overlay is in guest
 * memory, measured by the agent (cocoon.agent.Containers/DiskUsage); in host
 * mode it is cocoond's own overlay upper directory, measured here. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/log.h"
#include "cocoon-agent.pb-c.h"
#include "runtime/internal.h"

#define STATS_TIMEOUT_MS 10000
#define DU_MAX_ENTRIES 200000 /* a writable layer with more is counted up to here */

/* The writable layer of a VM container, from its agent. */
static int guest_disk_usage(rt_agent *a, const char *id, rt_ctr_stats *ret, cc_error **ret_err)
{
        Cocoon__Agent__ContainerDiskUsageRequest req = COCOON__AGENT__CONTAINER_DISK_USAGE_REQUEST__INIT;
        req.container_id = (char *)id;
        ProtobufCMessage *resp = NULL;
        if (rt_agent_call_pb(a, "cocoon.agent.Containers", "DiskUsage", &req.base,
                             &cocoon__agent__container_disk_usage_response__descriptor, STATS_TIMEOUT_MS, &resp,
                             ret_err) < 0)
                return -EIO;
        const Cocoon__Agent__ContainerDiskUsageResponse *d = (const void *)resp;
        if (d->present && d->path && *d->path && strlen(d->path) < 4096) {
                ret->have_fs = true;
                ret->fs_used_bytes = d->used_bytes;
                ret->fs_inodes_used = d->inodes_used;
                ret->fs_mountpoint = strdup(d->path);
                ret->have_fs = ret->fs_mountpoint != NULL;
        }
        protobuf_c_message_free_unpacked(resp, NULL);
        return 0;
}

void rt_ctr_stats_clear(rt_ctr_stats *s)
{
        free(s->fs_mountpoint);
        memset(s, 0, sizeof(*s));
}

int rt_container_stats(rt_runtime *rt, const char *id, bool partial_ok, rt_ctr_stats *ret, cc_error **ret_err)
{
        memset(ret, 0, sizeof(*ret));
        rt_ctr *c = NULL;
        if (rt_find_ctr(rt, id, &c, ret_err) < 0)
                return -ENOENT;
        pthread_mutex_lock(&rt->lock);
        bool running = c->state == RT_CTR_RUNNING && !c->pod->dead;
        bool vm = c->pod->mode == RT_POD_VM, alive = !c->pod->dead;
        char *upper = NULL;
        if (!vm && c->upper && asprintf(&upper, "%s/upper", c->upper) < 0)
                upper = NULL;
        pthread_mutex_unlock(&rt->lock);
        ret->timestamp_ns = rt_now_ns();
        int r = 0;
        rt_agent *a = NULL;
        if (running || (vm && alive)) {
                _cleanup_error_ cc_error *err = NULL;
                a = rt_pod_agent_get(rt, c->pod, &err);
                if (!a)
                        log_debug("container=%.12s stats: %s", c->id, err->msg);
        }
        if (running) {
                _cleanup_error_ cc_error *err = NULL;
                rt_agent_stats st;
                if (a && rt_agent_stats_container(a, c->id, STATS_TIMEOUT_MS, &st, &err) == 0) {
                        ret->have_cpu_mem = true;
                        ret->cpu_usage_ns = st.cpu_usage_ns;
                        ret->memory_usage = st.memory_usage;
                        ret->memory_working_set = st.memory_working_set;
                } else if (!partial_ok) {
                        r = cc_error_set(ret_err, err ? err->code : -EIO, "container %.12s: stats: %s", c->id,
                                         err ? err->msg : "no agent");
                } else {
                        log_debug("container=%.12s stats: %s", c->id, err ? err->msg : "no agent");
                }
        }
        if (r == 0 && vm && a) {
                _cleanup_error_ cc_error *err = NULL;
                if (guest_disk_usage(a, c->id, ret, &err) < 0)
                        log_debug("container=%.12s writable layer: %s", c->id, err ? err->msg : "?");
        }
        rt_agent_unref(a);
        if (r == 0 && upper) {
                int e = cc_disk_usage(upper, DU_MAX_ENTRIES, &ret->fs_used_bytes, &ret->fs_inodes_used);
                if (e == 0) {
                        ret->have_fs = true;
                        ret->fs_mountpoint = TAKE_PTR(upper);
                } else if (e != -ENOENT) {
                        log_debug("container=%.12s writable layer %s: %s", c->id, upper, strerror(-e));
                }
        }
        free(upper);
        rt_ctr_unref(rt, c);
        if (r < 0)
                rt_ctr_stats_clear(ret);
        return r;
}
