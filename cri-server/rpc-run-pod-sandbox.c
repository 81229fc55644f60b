/* SPDX-License-Identifier: Apache-2.0 */
/* RunPodSandbox: validates the config and hands it to the runtime, which
 * boots the pod's VM (or host agent) and undoes everything on failure. */
#include <errno.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "cri-server/pod-convert.h"

int cri_rpc_run_pod_sandbox(cri_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **ret_resp,
                            cc_error **ret_err)
{
        const Runtime__V1__RunPodSandboxRequest *req = (const void *)in;
        rt_runtime *rt = NULL;
        int r = cri_runtime(ctx, &rt, ret_err);
        if (r < 0)
                return r;
        r = cri_check_pod_config(req->config, ret_err);
        if (r < 0)
                return r;
        const Runtime__V1__PodSandboxMetadata *m = req->config->metadata;
        _cleanup_free_ char *id = NULL;
        r = rt_pod_run(rt, req->config, req->runtime_handler ? req->runtime_handler : "", &id, ret_err);
        if (r < 0)
                return r;
        log_info("rpc=RunPodSandbox pod=%s name=%s/%s uid=%s attempt=%u handler=%s", id, m->namespace_, m->name,
                 m->uid, m->attempt, req->runtime_handler && *req->runtime_handler ? req->runtime_handler : "(default)");
        Runtime__V1__RunPodSandboxResponse *resp = CRI_NEW(ctx, runtime__v1__run_pod_sandbox_response);
        resp->pod_sandbox_id = cri_strdup(ctx, id);
        *ret_resp = &resp->base;
        return 0;
}
