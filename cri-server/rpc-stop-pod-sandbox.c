/* SPDX-License-Identifier: Apache-2.0 */
/* StopPodSandbox: placeholder until its handler lands; answers UNIMPLEMENTED. */
#include <errno.h>

#include "cri-server/dispatch.h"

int cri_rpc_stop_pod_sandbox(cri_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **ret_resp,
                    cc_error **ret_err)
{
        return cc_error_set(ret_err, -ENOSYS, "method StopPodSandbox is not implemented by cocoon yet");
}
