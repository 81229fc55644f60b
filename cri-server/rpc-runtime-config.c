/* SPDX-License-Identifier: Apache-2.0 */
/* RuntimeConfig: the cgroup driver the kubelet must agree with. */
#include "cri-server/dispatch.h"

#include <string.h>
#include <sys/stat.h>

/* systemd is PID 1 (and so owns the cgroup tree) when /run/systemd/system
 * exists: the same test sd_booted() uses. */
static bool host_uses_systemd(void)
{
        struct stat st;
        return lstat("/run/systemd/system", &st) == 0 && S_ISDIR(st.st_mode);
}

int cri_rpc_runtime_config(cri_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **ret_resp,
                           cc_error **ret_err)
{
        bool systemd = host_uses_systemd();
        Runtime__V1__RuntimeConfigResponse *resp = CRI_NEW(ctx, runtime__v1__runtime_config_response);
        resp->linux = CRI_NEW(ctx, runtime__v1__linux_runtime_configuration);
        resp->linux->cgroup_driver =
                systemd ? RUNTIME__V1__CGROUP_DRIVER__SYSTEMD : RUNTIME__V1__CGROUP_DRIVER__CGROUPFS;
        *ret_resp = &resp->base;
        return 0;
}
