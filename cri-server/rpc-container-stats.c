/* SPDX-License-Identifier: Apache-2.0 */
/* ContainerStats, ListContainerStats: CPU and memory from the container's
 * cgroup (read in the guest by the pod's agent), the writable layer's use
 * (its overlay upper directory on the host). usage_nano_cores is the CPU
 * rate since the previous sample of that container that cocoond answered
 * (any caller's, at least 100 ms before), as the kubelet's summary API
 * expects; absent on a container's first sample. */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "cri-server/pod-convert.h"

#define RATE_SLOTS 1024
#define RATE_MIN_NS 100000000LL

static struct rate_slot {
        char id[65];
        uint64_t cpu_ns;
        int64_t ts_ns;
} rate_slots[RATE_SLOTS];
static pthread_mutex_t rate_lock = PTHREAD_MUTEX_INITIALIZER;

/* The rate since the previous sample (false if none usable); records this
 * one. The slot of the oldest sample is reused when the table is full. */
bool cri_cpu_rate(const char *id, uint64_t cpu_ns, int64_t ts_ns, uint64_t *ret_nano_cores)
{
        bool ok = false;
        pthread_mutex_lock(&rate_lock);
        struct rate_slot *s = NULL, *oldest = &rate_slots[0];
        for (size_t i = 0; i < RATE_SLOTS && !s; i++) {
                if (!strcmp(rate_slots[i].id, id))
                        s = &rate_slots[i];
                else if (rate_slots[i].ts_ns < oldest->ts_ns)
                        oldest = &rate_slots[i];
        }
        if (s && ts_ns - s->ts_ns >= RATE_MIN_NS && cpu_ns >= s->cpu_ns) {
                *ret_nano_cores = (uint64_t)((double)(cpu_ns - s->cpu_ns) * 1e9 / (double)(ts_ns - s->ts_ns));
                ok = true;
        }
        if (!s) {
                s = oldest;
                snprintf(s->id, sizeof(s->id), "%s", id);
                s->ts_ns = 0;
        }
        if (ts_ns - s->ts_ns >= RATE_MIN_NS) { /* keep the window at least RATE_MIN_NS long */
                s->cpu_ns = cpu_ns;
                s->ts_ns = ts_ns;
        }
        pthread_mutex_unlock(&rate_lock);
        return ok;
}

Runtime__V1__UInt64Value *cri_u64(cri_ctx *ctx, uint64_t v)
{
        Runtime__V1__UInt64Value *o = CRI_NEW(ctx, runtime__v1__uint64_value);
        o->value = v;
        return o;
}

Runtime__V1__ContainerStats *cri_ctr_stats_to_cri(cri_ctx *ctx, const rt_ctr_info *info, const rt_ctr_stats *st)
{
        Runtime__V1__ContainerStats *o = CRI_NEW(ctx, runtime__v1__container_stats);
        o->attributes = cri_ctr_attributes(ctx, info);
        /* A running container has used some CPU and memory: a zero is a
         * counter the agent could not read (a cgroup v1 host in host mode),
         * left out rather than reported as nothing used. */
        if (st->have_cpu_mem && st->cpu_usage_ns > 0) {
                o->cpu = CRI_NEW(ctx, runtime__v1__cpu_usage);
                o->cpu->timestamp = st->timestamp_ns;
                o->cpu->usage_core_nano_seconds = cri_u64(ctx, st->cpu_usage_ns);
                uint64_t rate;
                if (cri_cpu_rate(info->id, st->cpu_usage_ns, st->timestamp_ns, &rate))
                        o->cpu->usage_nano_cores = cri_u64(ctx, rate);
        }
        if (st->have_cpu_mem && st->memory_usage > 0) {
                o->memory = CRI_NEW(ctx, runtime__v1__memory_usage);
                o->memory->timestamp = st->timestamp_ns;
                o->memory->working_set_bytes = cri_u64(ctx, st->memory_working_set);
                o->memory->usage_bytes = cri_u64(ctx, st->memory_usage);
        }
        if (st->have_fs) {
                o->writable_layer = CRI_NEW(ctx, runtime__v1__filesystem_usage);
                o->writable_layer->timestamp = st->timestamp_ns;
                o->writable_layer->fs_id = CRI_NEW(ctx, runtime__v1__filesystem_identifier);
                o->writable_layer->fs_id->mountpoint = cri_strdup(ctx, st->fs_mountpoint);
                o->writable_layer->used_bytes = cri_u64(ctx, st->fs_used_bytes);
                o->writable_layer->inodes_used = cri_u64(ctx, st->fs_inodes_used);
        }
        return o;
}

int cri_rpc_container_stats(cri_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **ret_resp,
                            cc_error **ret_err)
{
        const Runtime__V1__ContainerStatsRequest *req = (const void *)in;
        rt_runtime *rt = NULL;
        int r = cri_require_id(ctx, "container_id", req->container_id, &rt, ret_err);
        if (r < 0)
                return r;
        _cleanup_rt_ctr_info_ rt_ctr_info *info = NULL;
        if ((r = rt_container_status(rt, req->container_id, &info, ret_err)) < 0)
                return r;
        rt_ctr_stats st;
        if ((r = rt_container_stats(rt, info->id, false, &st, ret_err)) < 0)
                return r;
        Runtime__V1__ContainerStatsResponse *resp = CRI_NEW(ctx, runtime__v1__container_stats_response);
        resp->stats = cri_ctr_stats_to_cri(ctx, info, &st);
        rt_ctr_stats_clear(&st);
        *ret_resp = &resp->base;
        return 0;
}

int cri_rpc_list_container_stats(cri_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **ret_resp,
                                 cc_error **ret_err)
{
        const Runtime__V1__ListContainerStatsRequest *req = (const void *)in;
        rt_runtime *rt = NULL;
        int r = cri_runtime(ctx, &rt, ret_err);
        if (r < 0)
                return r;
        rt_ctr_info **list = NULL;
        size_t n = 0;
        if ((r = rt_container_list(rt, &list, &n, ret_err)) < 0)
                return r;
        Runtime__V1__ListContainerStatsResponse *resp = CRI_NEW(ctx, runtime__v1__list_container_stats_response);
        resp->stats = cri_alloc(ctx, (n ? n : 1) * sizeof(void *));
        for (size_t i = 0; i < n; i++) {
                const Runtime__V1__ContainerStatsFilter *f = req->filter;
                if (f && !cri_ctr_match(list[i], f->id, f->pod_sandbox_id, (void *const *)f->label_selector,
                                        f->n_label_selector))
                        continue;
                rt_ctr_stats st;
                cc_error *err = NULL;
                if (rt_container_stats(rt, list[i]->id, true, &st, &err) < 0) {
                        cc_error_free(err); /* removed meanwhile */
                        continue;
                }
                resp->stats[resp->n_stats++] = cri_ctr_stats_to_cri(ctx, list[i], &st);
                rt_ctr_stats_clear(&st);
        }
        rt_ctr_info_list_free(list, n);
        *ret_resp = &resp->base;
        return 0;
}
