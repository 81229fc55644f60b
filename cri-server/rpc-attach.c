/* SPDX-License-Identifier: Apache-2.0 */
/* Attach: validate, then hand out a single-use streaming URL to the
 * container's main process (its output pump and, if created with stdin, its
 * stdin). */
#include <errno.h>
#include <stdlib.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "cri-server/dispatch.h"
#include "cri-server/streaming-glue.h"

int cri_rpc_attach(cri_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **ret_resp,
                   cc_error **ret_err)
{
        const Runtime__V1__AttachRequest *req = (const void *)in;
        streaming_opts o = { .stdin_ = req->stdin, .stdout_ = req->stdout, .stderr_ = req->stderr,
                             .tty = req->tty };
        if (cri_stream_check_opts(&o, ret_err) < 0)
                return -EINVAL;
        _cleanup_free_ char *id = NULL, *pod = NULL;
        int r = cri_stream_container(ctx->daemon, req->container_id, &id, &pod, ret_err);
        if (r < 0)
                return r;
        _cleanup_free_ char *url = cri_stream_url(ctx->daemon, STREAMING_ATTACH, &o, id, pod, NULL, 0,
                                                  ret_err);
        if (!url)
                return (*ret_err)->code;
        Runtime__V1__AttachResponse *resp = CRI_NEW(ctx, runtime__v1__attach_response);
        resp->url = cri_strdup(ctx, url);
        log_debug("rpc=Attach container=%s tty=%d", id, (int)req->tty);
        *ret_resp = &resp->base;
        return 0;
}
