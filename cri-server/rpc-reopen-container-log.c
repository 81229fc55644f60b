/* SPDX-License-Identifier: Apache-2.0 */
/* ReopenContainerLog: reopens the container's CRI log file (after the kubelet
 * rotated it). */
#include <errno.h>

#include "cri-server/pod-convert.h"

int cri_rpc_reopen_container_log(cri_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **ret_resp,
                                cc_error **ret_err)
{
        const Runtime__V1__ReopenContainerLogRequest *req = (const void *)in;
        rt_runtime *rt = NULL;
        int r = cri_require_id(ctx, "container_id", req->container_id, &rt, ret_err);
        if (r < 0)
                return r;
        r = rt_container_reopen_log(rt, req->container_id, ret_err);
        if (r < 0)
                return r;
        *ret_resp = CRI_NEW(ctx, runtime__v1__reopen_container_log_response);
        return 0;
}
