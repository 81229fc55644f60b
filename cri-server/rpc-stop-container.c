/* SPDX-License-Identifier: Apache-2.0 */
/* StopContainer: the image's stop signal (else SIGTERM), SIGKILL after
 * `timeout` seconds; returns once the container exited. Idempotent. */
#include <errno.h>

#include "cri-server/pod-convert.h"

int cri_rpc_stop_container(cri_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **ret_resp,
                           cc_error **ret_err)
{
        const Runtime__V1__StopContainerRequest *req = (const void *)in;
        rt_runtime *rt = NULL;
        int r = cri_require_id(ctx, "container_id", req->container_id, &rt, ret_err);
        if (r < 0)
                return r;
        /* A negative grace means none, as in containerd. */
        r = rt_container_stop(rt, req->container_id, req->timeout > 0 ? req->timeout : 0, ret_err);
        if (r < 0)
                return r;
        *ret_resp = CRI_NEW(ctx, runtime__v1__stop_container_response);
        return 0;
}
