/* SPDX-License-Identifier: Apache-2.0 */
/* ListImages: every healthy image, or the one the filter names. */
#include <errno.h>

#include "common/cleanup.h"
#include "cri-server/image-convert.h"

int cri_rpc_list_images(cri_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **ret_resp,
                        cc_error **ret_err)
{
        const Runtime__V1__ListImagesRequest *req = (const void *)in;
        Runtime__V1__ListImagesResponse *resp = CRI_NEW(ctx, runtime__v1__list_images_response);
        image_db *db = ctx->daemon->images;
        if (req->filter && req->filter->image && req->filter->image->image && *req->filter->image->image) {
                _cleanup_image_info_ image_info *info = NULL;
                _cleanup_error_ cc_error *err = NULL;
                int r = image_db_get(db, req->filter->image->image, &info, &err);
                if (r < 0 && r != -ENOENT && r != -EINVAL)
                        return cc_error_propagate(ret_err, TAKE_PTR(err));
                if (r == 0) {
                        resp->n_images = 1;
                        resp->images = cri_alloc(ctx, sizeof(void *));
                        resp->images[0] = cri_image_from_info(ctx, info);
                }
                *ret_resp = &resp->base;
                return 0;
        }
        image_info **list = NULL;
        size_t n = 0;
        int r = image_db_list(db, &list, &n, ret_err);
        if (r < 0)
                return r;
        resp->n_images = n;
        resp->images = cri_alloc(ctx, (n ? n : 1) * sizeof(void *));
        for (size_t i = 0; i < n; i++)
                resp->images[i] = cri_image_from_info(ctx, list[i]);
        image_info_list_free(list, n);
        *ret_resp = &resp->base;
        return 0;
}
