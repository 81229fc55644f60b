/* SPDX-License-Identifier: Apache-2.0 */
/* ListPodSandbox: every pod, filtered by id (full or prefix), state and
 * label selector (all of its pairs must match). */
#include <errno.h>

#include "cri-server/pod-convert.h"

static bool pod_matches(const Runtime__V1__PodSandboxFilter *f, const rt_pod_info *p)
{
        if (!f)
                return true;
        if (f->id && *f->id && !cri_id_has_prefix(p->id, f->id))
                return false;
        if (f->state && (int)f->state->state != (int)p->state)
                return false;
        const Runtime__V1__PodSandboxConfig *c = p->config;
        return cri_labels_match((void *const *)f->label_selector, f->n_label_selector,
                                c ? (void *const *)c->labels : NULL, c ? c->n_labels : 0);
}

int cri_rpc_list_pod_sandbox(cri_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **ret_resp,
                             cc_error **ret_err)
{
        const Runtime__V1__ListPodSandboxRequest *req = (const void *)in;
        rt_runtime *rt = NULL;
        int r = cri_runtime(ctx, &rt, ret_err);
        if (r < 0)
                return r;
        rt_pod_info **list = NULL;
        size_t n = 0;
        r = rt_pod_list(rt, &list, &n, ret_err);
        if (r < 0)
                return r;
        Runtime__V1__ListPodSandboxResponse *resp = CRI_NEW(ctx, runtime__v1__list_pod_sandbox_response);
        resp->items = cri_alloc(ctx, (n ? n : 1) * sizeof(void *));
        for (size_t i = 0; i < n; i++)
                if (pod_matches(req->filter, list[i]))
                        resp->items[resp->n_items++] = cri_pod_from_info(ctx, list[i]);
        rt_pod_info_list_free(list, n);
        *ret_resp = &resp->base;
        return 0;
}
