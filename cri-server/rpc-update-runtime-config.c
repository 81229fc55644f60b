/* SPDX-License-Identifier: Apache-2.0 */
/* UpdateRuntimeConfig: the kubelet hands over the node's pod CIDR. We keep
 * it (persisted, so a restart keeps it) for the CNI runtimeConfig. */
#include "cri-server/dispatch.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"

/* "a.b.c.d/n" or "x::y/n", possibly several separated by commas (dual stack). */
static int validate_cidrs(const char *s, cc_error **ret_err)
{
        if (strlen(s) > 512)
                return cc_error_set(ret_err, -EINVAL, "pod_cidr is too long");
        _cleanup_free_ char *copy = strdup(s);
        if (!copy)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        char *save = NULL;
        for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                while (*tok == ' ')
                        tok++;
                char *slash = strchr(tok, '/');
                if (!slash)
                        return cc_error_set(ret_err, -EINVAL, "pod_cidr '%s': missing prefix length", tok);
                *slash = 0;
                unsigned char buf[16];
                int max;
                if (inet_pton(AF_INET, tok, buf) == 1)
                        max = 32;
                else if (inet_pton(AF_INET6, tok, buf) == 1)
                        max = 128;
                else
                        return cc_error_set(ret_err, -EINVAL, "pod_cidr: '%s' is not an IP address", tok);
                char *end;
                errno = 0;
                long n = strtol(slash + 1, &end, 10);
                if (errno || *end || end == slash + 1 || n < 0 || n > max)
                        return cc_error_set(ret_err, -EINVAL, "pod_cidr: bad prefix length '%s'", slash + 1);
        }
        return 0;
}

int cri_rpc_update_runtime_config(cri_ctx *ctx, const ProtobufCMessage *in,
                                  ProtobufCMessage **ret_resp, cc_error **ret_err)
{
        const Runtime__V1__UpdateRuntimeConfigRequest *req = (const void *)in;
        const char *cidr = "";
        if (req->runtime_config && req->runtime_config->network_config)
                cidr = req->runtime_config->network_config->pod_cidr;
        if (*cidr && validate_cidrs(cidr, ret_err) < 0)
                return -EINVAL;
        int r = cocoon_daemon_set_pod_cidr(ctx->daemon, cidr, ret_err);
        if (r < 0)
                return r;
        *ret_resp = CRI_NEW(ctx, runtime__v1__update_runtime_config_response);
        return 0;
}
