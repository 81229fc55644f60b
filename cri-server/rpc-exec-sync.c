/* SPDX-License-Identifier: Apache-2.0 */
/* ExecSync: run a command in a running container, collect its output
 * (16 MiB per stream, the rest dropped) and exit code; timeout → the process
 * is killed and DEADLINE_EXCEEDED returned. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "cri-server/dispatch.h"
#include "runtime/container.h"

#define EXEC_ARGS_MAX 4096
#define EXEC_ARGV_BYTES_MAX (1u << 20)
/* The kubelet receives at most 16 MiB per CRI message (and our server sends
 * no more): stdout + stderr + framing must fit, whatever each stream's own
 * 16 MiB cap (runtime/container.h) let through. */
#define EXEC_SYNC_RESPONSE_MAX ((16u << 20) - 64)

int cri_exec_validate_cmd(char *const *cmd, size_t n, cc_error **ret_err);

int cri_exec_validate_cmd(char *const *cmd, size_t n, cc_error **ret_err)
{
        if (n == 0 || !cmd[0] || !*cmd[0])
                return cc_error_set(ret_err, -EINVAL, "cmd is empty");
        if (n > EXEC_ARGS_MAX)
                return cc_error_set(ret_err, -EINVAL, "cmd has %zu arguments (at most %d)", n, EXEC_ARGS_MAX);
        size_t total = 0;
        for (size_t i = 0; i < n; i++)
                total += strlen(cmd[i]) + 1;
        if (total > EXEC_ARGV_BYTES_MAX)
                return cc_error_set(ret_err, -EINVAL, "cmd is %zu bytes long (at most %u)", total,
                                    EXEC_ARGV_BYTES_MAX);
        return 0;
}

int cri_rpc_exec_sync(cri_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **ret_resp,
                      cc_error **ret_err)
{
        const Runtime__V1__ExecSyncRequest *req = (const void *)in;
        if (!req->container_id || !*req->container_id)
                return cc_error_set(ret_err, -EINVAL, "container_id is empty");
        if (cri_exec_validate_cmd(req->cmd, req->n_cmd, ret_err) < 0)
                return -EINVAL;
        if (req->timeout < 0)
                return cc_error_set(ret_err, -EINVAL, "timeout %lld is negative", (long long)req->timeout);
        _cleanup_free_ uint8_t *out = NULL, *err = NULL;
        size_t out_len = 0, err_len = 0;
        int code = 0;
        int r = rt_exec_sync(ctx->daemon->rt, req->container_id, req->cmd, req->n_cmd, req->timeout,
                             &out, &out_len, &err, &err_len, &code, ret_err);
        if (r < 0)
                return r;
        if (out_len + err_len > EXEC_SYNC_RESPONSE_MAX) {
                /* stderr keeps up to half (more if stdout is short), stdout the rest */
                size_t keep_err = CC_MIN(err_len, CC_MAX(EXEC_SYNC_RESPONSE_MAX - CC_MIN(out_len, EXEC_SYNC_RESPONSE_MAX),
                                                         EXEC_SYNC_RESPONSE_MAX / 2));
                out_len = CC_MIN(out_len, EXEC_SYNC_RESPONSE_MAX - keep_err);
                err_len = keep_err;
        }
        Runtime__V1__ExecSyncResponse *resp = CRI_NEW(ctx, runtime__v1__exec_sync_response);
        if (out_len) {
                resp->stdout.data = cri_alloc(ctx, out_len);
                memcpy(resp->stdout.data, out, out_len);
                resp->stdout.len = out_len;
        }
        if (err_len) {
                resp->stderr.data = cri_alloc(ctx, err_len);
                memcpy(resp->stderr.data, err, err_len);
                resp->stderr.len = err_len;
        }
        resp->exit_code = code;
        log_debug("rpc=ExecSync container=%s exit=%d stdout=%zu stderr=%zu", req->container_id, code,
                  out_len, err_len);
        *ret_resp = &resp->base;
        return 0;
}
