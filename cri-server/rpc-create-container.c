/* SPDX-License-Identifier: Apache-2.0 */
/* CreateContainer: validates the request and asks the runtime to build the
 * container's rootfs, volumes and spec and create it in the pod's agent. */
#include <errno.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "cri-server/pod-convert.h"

int cri_rpc_create_container(cri_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **ret_resp,
                             cc_error **ret_err)
{
        const Runtime__V1__CreateContainerRequest *req = (const void *)in;
        rt_runtime *rt = NULL;
        int r = cri_require_id(ctx, "pod_sandbox_id", req->pod_sandbox_id, &rt, ret_err);
        if (r < 0)
                return r;
        r = cri_check_container_config(req->config, ret_err);
        if (r < 0)
                return r;
        _cleanup_free_ char *id = NULL;
        r = rt_container_create(rt, req->pod_sandbox_id, req->config, req->sandbox_config, &id, ret_err);
        if (r < 0)
                return r;
        log_info("rpc=CreateContainer pod=%s container=%s name=%s attempt=%u image=%s", req->pod_sandbox_id, id,
                 req->config->metadata->name, req->config->metadata->attempt, req->config->image->image);
        Runtime__V1__CreateContainerResponse *resp = CRI_NEW(ctx, runtime__v1__create_container_response);
        resp->container_id = cri_strdup(ctx, id);
        *ret_resp = &resp->base;
        return 0;
}
