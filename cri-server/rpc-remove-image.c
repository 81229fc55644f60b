/* SPDX-License-Identifier: Apache-2.0 */
/* RemoveImage: by id, tag or digest; idempotent. */
#include <errno.h>

#include "common/log.h"
#include "cri-server/image-convert.h"

int cri_rpc_remove_image(cri_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **ret_resp,
                         cc_error **ret_err)
{
        const Runtime__V1__RemoveImageRequest *req = (const void *)in;
        const char *spec = NULL;
        if (cri_image_spec(req->image, &spec, ret_err) < 0)
                return -EINVAL;
        bool removed = false;
        int r = image_db_remove(ctx->daemon->images, spec, &removed, ret_err);
        if (r < 0)
                return r;
        if (removed)
                log_info("rpc=RemoveImage image=%s removed", spec);
        *ret_resp = CRI_NEW(ctx, runtime__v1__remove_image_response);
        return 0;
}
