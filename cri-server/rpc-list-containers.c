/* SPDX-License-Identifier: Apache-2.0 */
/* ListContainers: every container, filtered by id and pod id (full or
 * prefix), state and label selector (all of its pairs must match). */
#include <errno.h>

#include "cri-server/pod-convert.h"

static bool ctr_matches(const Runtime__V1__ContainerFilter *f, const rt_ctr_info *c)
{
        if (!f)
                return true;
        if (f->state && (int)f->state->state != (int)c->state)
                return false;
        return cri_ctr_match(c, f->id, f->pod_sandbox_id, (void *const *)f->label_selector, f->n_label_selector);
}

int cri_rpc_list_containers(cri_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **ret_resp,
                            cc_error **ret_err)
{
        const Runtime__V1__ListContainersRequest *req = (const void *)in;
        rt_runtime *rt = NULL;
        int r = cri_runtime(ctx, &rt, ret_err);
        if (r < 0)
                return r;
        rt_ctr_info **list = NULL;
        size_t n = 0;
        r = rt_container_list(rt, &list, &n, ret_err);
        if (r < 0)
                return r;
        Runtime__V1__ListContainersResponse *resp = CRI_NEW(ctx, runtime__v1__list_containers_response);
        resp->containers = cri_alloc(ctx, (n ? n : 1) * sizeof(void *));
        for (size_t i = 0; i < n; i++)
                if (ctr_matches(req->filter, list[i]))
                        resp->containers[resp->n_containers++] = cri_ctr_from_info(ctx, list[i]);
        rt_ctr_info_list_free(list, n);
        *ret_resp = &resp->base;
        return 0;
}
