/* SPDX-License-Identifier: Apache-2.0 */
/* Exec: validate, then hand out a single-use streaming URL; the process is
 * started when the client connects (runtime/stream.c). */
#include <errno.h>
#include <stdlib.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "cri-server/dispatch.h"
#include "cri-server/streaming-glue.h"

int cri_exec_validate_cmd(char *const *cmd, size_t n, cc_error **ret_err);

int cri_rpc_exec(cri_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **ret_resp,
                 cc_error **ret_err)
{
        const Runtime__V1__ExecRequest *req = (const void *)in;
        if (cri_exec_validate_cmd(req->cmd, req->n_cmd, ret_err) < 0)
                return -EINVAL;
        streaming_opts o = { .stdin_ = req->stdin, .stdout_ = req->stdout, .stderr_ = req->stderr,
                             .tty = req->tty };
        if (cri_stream_check_opts(&o, ret_err) < 0)
                return -EINVAL;
        _cleanup_free_ char *id = NULL, *pod = NULL;
        int r = cri_stream_container(ctx->daemon, req->container_id, &id, &pod, ret_err);
        if (r < 0)
                return r;
        _cleanup_free_ char *url = cri_stream_url(ctx->daemon, STREAMING_EXEC, &o, id, pod, req->cmd,
                                                  req->n_cmd, ret_err);
        if (!url)
                return (*ret_err)->code;
        Runtime__V1__ExecResponse *resp = CRI_NEW(ctx, runtime__v1__exec_response);
        resp->url = cri_strdup(ctx, url);
        log_debug("rpc=Exec container=%s cmd=%s tty=%d", id, req->cmd[0], (int)req->tty);
        *ret_resp = &resp->base;
        return 0;
}
