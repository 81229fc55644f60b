/* SPDX-License-Identifier: Apache-2.0 */
/* StopPodSandbox: stops the pod's containers, its VM (or host agent) and
 * tears its network down; the record stays (NOTREADY). Idempotent; an
 * unknown id is NOT_FOUND (the kubelet treats that as stopped). */
#include <errno.h>

#include "cri-server/pod-convert.h"

int cri_rpc_stop_pod_sandbox(cri_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **ret_resp,
                             cc_error **ret_err)
{
        const Runtime__V1__StopPodSandboxRequest *req = (const void *)in;
        rt_runtime *rt = NULL;
        int r = cri_require_id(ctx, "pod_sandbox_id", req->pod_sandbox_id, &rt, ret_err);
        if (r < 0)
                return r;
        r = rt_pod_stop(rt, req->pod_sandbox_id, ret_err);
        if (r < 0)
                return r;
        *ret_resp = CRI_NEW(ctx, runtime__v1__stop_pod_sandbox_response);
        return 0;
}
