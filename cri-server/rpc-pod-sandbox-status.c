/* SPDX-License-Identifier: Apache-2.0 */
/* PodSandboxStatus: state, network, namespaces, labels; verbose adds
 * info["info"], the JSON `crictl inspectp` shows (mode, VMM/virtiofsd/agent
 * pids, agent endpoint, VM size, accelerator, netns, run dir). */
#include <errno.h>
#include <time.h>

#include "cri-server/pod-convert.h"

int cri_rpc_pod_sandbox_status(cri_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **ret_resp,
                               cc_error **ret_err)
{
        const Runtime__V1__PodSandboxStatusRequest *req = (const void *)in;
        rt_runtime *rt = NULL;
        int r = cri_require_id(ctx, "pod_sandbox_id", req->pod_sandbox_id, &rt, ret_err);
        if (r < 0)
                return r;
        _cleanup_rt_pod_info_ rt_pod_info *p = NULL;
        r = rt_pod_status(rt, req->pod_sandbox_id, &p, ret_err);
        if (r < 0)
                return r;
        Runtime__V1__PodSandboxStatusResponse *resp = CRI_NEW(ctx, runtime__v1__pod_sandbox_status_response);
        resp->status = cri_pod_status_from_info(ctx, p);
        if (req->verbose) {
                Runtime__V1__PodSandboxStatusResponse__InfoEntry *e =
                        CRI_NEW(ctx, runtime__v1__pod_sandbox_status_response__info_entry);
                e->key = cri_strdup(ctx, "info");
                e->value = cri_pod_verbose_info(ctx, p);
                resp->info = cri_alloc(ctx, sizeof(void *));
                resp->info[0] = e;
                resp->n_info = 1;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        resp->timestamp = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
        *ret_resp = &resp->base;
        return 0;
}
