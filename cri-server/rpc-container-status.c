/* SPDX-License-Identifier: Apache-2.0 */
/* ContainerStatus: state, times (ns), exit code and reason, image (the name
 * asked for; image_ref the id), mounts, log path; verbose adds info["info"],
 * the JSON `crictl inspect` shows. */
#include <errno.h>

#include "cri-server/pod-convert.h"

int cri_rpc_container_status(cri_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **ret_resp,
                             cc_error **ret_err)
{
        const Runtime__V1__ContainerStatusRequest *req = (const void *)in;
        rt_runtime *rt = NULL;
        int r = cri_require_id(ctx, "container_id", req->container_id, &rt, ret_err);
        if (r < 0)
                return r;
        _cleanup_rt_ctr_info_ rt_ctr_info *c = NULL;
        r = rt_container_status(rt, req->container_id, &c, ret_err);
        if (r < 0)
                return r;
        Runtime__V1__ContainerStatusResponse *resp = CRI_NEW(ctx, runtime__v1__container_status_response);
        resp->status = cri_ctr_status_from_info(ctx, c);
        if (req->verbose) {
                Runtime__V1__ContainerStatusResponse__InfoEntry *e =
                        CRI_NEW(ctx, runtime__v1__container_status_response__info_entry);
                e->key = cri_strdup(ctx, "info");
                e->value = cri_ctr_verbose_info(ctx, c);
                resp->info = cri_alloc(ctx, sizeof(void *));
                resp->info[0] = e;
                resp->n_info = 1;
        }
        *ret_resp = &resp->base;
        return 0;
}
