/* SPDX-License-Identifier: Apache-2.0 */
/* StartContainer: starts the container's process and its output pump into the CRI log. */
#include <errno.h>

#include "cri-server/pod-convert.h"

int cri_rpc_start_container(cri_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **ret_resp,
                           cc_error **ret_err)
{
        const Runtime__V1__StartContainerRequest *req = (const void *)in;
        rt_runtime *rt = NULL;
        int r = cri_require_id(ctx, "container_id", req->container_id, &rt, ret_err);
        if (r < 0)
                return r;
        r = rt_container_start(rt, req->container_id, ret_err);
        if (r < 0)
                return r;
        *ret_resp = CRI_NEW(ctx, runtime__v1__start_container_response);
        return 0;
}
