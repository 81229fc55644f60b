/* SPDX-License-Identifier: Apache-2.0 */
/* Admin.ImportImage: an OCI image layout from a path on the node. */
#include <errno.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "cri-server/dispatch.h"
#include "image/import.h"

int cri_rpc_import_image(cri_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **ret_resp,
                         cc_error **ret_err)
{
        const Cocoon__Admin__V1__ImportImageRequest *req = (const void *)in;
        if (!req->path || req->path[0] != '/')
                return cc_error_set(ret_err, -EINVAL, "import: path must be absolute");
        image_import_opts opts = { .name = req->name && *req->name ? req->name : NULL };
        _cleanup_strv_free_ char **ids = NULL;
        if (image_import(ctx->daemon->image_store, ctx->daemon->images, req->path, &opts, &ids, ret_err) < 0)
                return cc_error_prefix(ret_err, "import");
        Cocoon__Admin__V1__ImportImageResponse *resp = CRI_NEW(ctx, cocoon__admin__v1__import_image_response);
        size_t n = 0;
        while (ids[n])
                n++;
        resp->n_image_ids = n;
        resp->image_ids = cri_alloc(ctx, (n ? n : 1) * sizeof(char *));
        for (size_t i = 0; i < n; i++) {
                resp->image_ids[i] = cri_strdup(ctx, ids[i]);
                log_info("rpc=ImportImage path=%s image=%s", req->path, ids[i]);
        }
        *ret_resp = &resp->base;
        return 0;
}
