/* SPDX-License-Identifier: Apache-2.0 */
#include "cri-server/image-convert.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char **strv_to_arena(cri_ctx *ctx, char *const *v, size_t *ret_n)
{
        size_t n = 0;
        while (v && v[n])
                n++;
        char **out = cri_alloc(ctx, (n ? n : 1) * sizeof(char *));
        for (size_t i = 0; i < n; i++)
                out[i] = cri_strdup(ctx, v[i]);
        *ret_n = n;
        return out;
}

Runtime__V1__Image *cri_image_from_info(cri_ctx *ctx, const image_info *info)
{
        Runtime__V1__Image *img = CRI_NEW(ctx, runtime__v1__image);
        img->id = cri_strdup(ctx, info->id);
        img->repo_tags = strv_to_arena(ctx, info->repo_tags, &img->n_repo_tags);
        img->repo_digests = strv_to_arena(ctx, info->repo_digests, &img->n_repo_digests);
        img->size = info->size > 0 ? (uint64_t)info->size : 0;
        img->spec = CRI_NEW(ctx, runtime__v1__image_spec);
        img->spec->image = cri_strdup(ctx, info->id);
        /* The kubelet wants uid when the image's user is numeric (runAsNonRoot
         * checks), else the user name; "uid:gid" counts as its uid part. */
        const char *user = info->config && info->config->user ? info->config->user : "";
        char ubuf[256];
        snprintf(ubuf, sizeof(ubuf), "%s", user);
        char *colon = strchr(ubuf, ':');
        if (colon)
                *colon = 0;
        char *end = NULL;
        errno = 0;
        long long uid = ubuf[0] ? strtoll(ubuf, &end, 10) : -1;
        if (ubuf[0] && end && *end == 0 && errno == 0 && uid >= 0) {
                img->uid = CRI_NEW(ctx, runtime__v1__int64_value);
                img->uid->value = uid;
                img->username = cri_strdup(ctx, "");
        } else if (!ubuf[0]) {
                /* No user: root, as the kubelet assumes for uid 0. */
                img->uid = CRI_NEW(ctx, runtime__v1__int64_value);
                img->uid->value = 0;
                img->username = cri_strdup(ctx, "");
        } else {
                img->username = cri_strdup(ctx, ubuf);
        }
        img->pinned = false;
        return img;
}

int cri_image_spec(const Runtime__V1__ImageSpec *spec, const char **ret, cc_error **ret_err)
{
        if (!spec || !spec->image || !*spec->image)
                return cc_error_set(ret_err, -EINVAL, "image spec must name an image");
        *ret = spec->image;
        return 0;
}
