/* SPDX-License-Identifier: Apache-2.0 */
/* GetContainerEvents: a stream of container and pod lifecycle events, what
 * the kubelet's evented PLEG reads instead of relisting. Each event names
 * the container (a pod's own events name the pod, as containerd's do) and
 * carries the pod's status and its containers' statuses at the time it is
 * sent; a pod that is gone (DELETED) has none. Events that happen while the
 * stream is open, from the moment it is; a client that falls 1024 events
 * behind gets RESOURCE_EXHAUSTED (and lists again); at most 8 streams at
 * once (each holds a worker thread). */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#include "common/log.h"
#include "cri-server/pod-convert.h"

#define POLL_MS 500 /* how soon a cancelled stream notices with no events */

static Runtime__V1__ContainerEventResponse *event_msg(cri_ctx *ctx, rt_runtime *rt, const rt_event *e)
{
        Runtime__V1__ContainerEventResponse *o = CRI_NEW(ctx, runtime__v1__container_event_response);
        o->container_id = cri_strdup(ctx, e->id);
        o->container_event_type = (Runtime__V1__ContainerEventType)e->type;
        o->created_at = e->ts_ns;
        _cleanup_rt_pod_info_ rt_pod_info *p = NULL;
        cc_error *err = NULL;
        if (rt_pod_status(rt, e->pod_id, &p, &err) < 0) {
                cc_error_free(err); /* removed meanwhile */
                return o;
        }
        o->pod_sandbox_status = cri_pod_status_from_info(ctx, p);
        rt_ctr_info **l = NULL;
        size_t n = 0;
        if (rt_container_list(rt, &l, &n, &err) < 0) {
                cc_error_free(err);
                return o;
        }
        o->containers_statuses = cri_alloc(ctx, (n ? n : 1) * sizeof(void *));
        for (size_t i = 0; i < n; i++)
                if (!strcmp(l[i]->sandbox_id, p->id))
                        o->containers_statuses[o->n_containers_statuses++] = cri_ctr_status_from_info(ctx, l[i]);
        rt_ctr_info_list_free(l, n);
        return o;
}

int cri_rpc_get_container_events(cri_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **ret_resp,
                                 cc_error **ret_err)
{
        (void)in;
        (void)ret_resp;
        rt_runtime *rt = NULL;
        int r = cri_runtime(ctx, &rt, ret_err);
        if (r < 0)
                return r;
        rt_event_sub *sub = NULL;
        if ((r = rt_events_subscribe(rt, &sub)) < 0)
                return cc_error_set(ret_err, r, "GetContainerEvents: %s",
                                    r == -EMFILE ? "too many event streams open" : strerror(-r));
        r = 0;
        while (!atomic_load(ctx->call->cancelled)) {
                rt_event e;
                int n = rt_events_next(sub, POLL_MS, &e);
                if (n == -ETIMEDOUT)
                        continue;
                if (n == -EOVERFLOW) {
                        r = cc_error_set(ret_err, -EOVERFLOW,
                                         "GetContainerEvents: the client fell behind and events were lost");
                        break;
                }
                cri_ctx scratch;
                cri_scratch_begin(ctx, &scratch);
                int s = cri_stream_send(&scratch, &event_msg(&scratch, rt, &e)->base);
                cri_scratch_end(&scratch);
                if (s == -ECANCELED)
                        break; /* the client went away */
                if (s < 0) {
                        r = cc_error_set(ret_err, s, "GetContainerEvents: %s", strerror(-s));
                        break;
                }
        }
        rt_events_unsubscribe(rt, sub);
        return r;
}
