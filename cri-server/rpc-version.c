/* SPDX-License-Identifier: Apache-2.0 */
/* Version: the runtime's name and versions. */
#include "config.h"

#include "cri-server/dispatch.h"

int cri_rpc_version(cri_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **ret_resp,
                    cc_error **ret_err)
{
        Runtime__V1__VersionResponse *resp = CRI_NEW(ctx, runtime__v1__version_response);
        /* "version" is the version of the kubelet runtime API this answer
         * speaks; kubelets compare it with their own ("0.1.0"). */
        resp->version = cri_strdup(ctx, "0.1.0");
        resp->runtime_name = cri_strdup(ctx, "cocoon");
        resp->runtime_version = cri_strdup(ctx, PACKAGE_VERSION);
        resp->runtime_api_version = cri_strdup(ctx, ctx->api_version);
        *ret_resp = &resp->base;
        return 0;
}
