/* SPDX-License-Identifier: Apache-2.0 */
/* RemovePodSandbox: removes the pod, its containers and everything the pod
 * left on the host. Removing an unknown pod succeeds (idempotent). */
#include <errno.h>

#include "cri-server/pod-convert.h"

int cri_rpc_remove_pod_sandbox(cri_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **ret_resp,
                               cc_error **ret_err)
{
        const Runtime__V1__RemovePodSandboxRequest *req = (const void *)in;
        rt_runtime *rt = NULL;
        int r = cri_require_id(ctx, "pod_sandbox_id", req->pod_sandbox_id, &rt, ret_err);
        if (r < 0)
                return r;
        r = rt_pod_remove(rt, req->pod_sandbox_id, ret_err);
        if (r < 0)
                return r;
        *ret_resp = CRI_NEW(ctx, runtime__v1__remove_pod_sandbox_response);
        return 0;
}
