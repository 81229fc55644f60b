/* SPDX-License-Identifier: Apache-2.0 */
/* UpdateContainerResources: new CPU/memory limits for a created or running
 * container (the kubelet's in-place pod resize and CPU manager), applied to
 * its cgroup by the pod's agent. Only the Linux part matters here; a VM's own
 * size stays as it booted. */
#include <errno.h>

#include "cri-server/pod-convert.h"

int cri_rpc_update_container_resources(cri_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **ret_resp,
                                       cc_error **ret_err)
{
        const Runtime__V1__UpdateContainerResourcesRequest *req = (const void *)in;
        rt_runtime *rt = NULL;
        int r = cri_require_id(ctx, "container_id", req->container_id, &rt, ret_err);
        if (r < 0)
                return r;
        r = rt_container_update_resources(rt, req->container_id, req->linux, ret_err);
        if (r < 0)
                return r;
        *ret_resp = CRI_NEW(ctx, runtime__v1__update_container_resources_response);
        return 0;
}
