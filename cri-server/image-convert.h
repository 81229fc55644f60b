/* SPDX-License-Identifier: Apache-2.0 */
/* image_info (image/images.h) → CRI Image message, shared by the image RPCs. */
#pragma once

#include "cri-server/dispatch.h"
#include "image/images.h"

Runtime__V1__Image *cri_image_from_info(cri_ctx *ctx, const image_info *info);
/* The image spec string of a request's ImageSpec, validated (non-empty). */
int cri_image_spec(const Runtime__V1__ImageSpec *spec, const char **ret, cc_error **ret_err);
