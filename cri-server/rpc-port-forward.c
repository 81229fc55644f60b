/* SPDX-License-Identifier: Apache-2.0 */
/* PortForward: validate the pod, then hand out a single-use streaming URL;
 * connections go through the pod's agent to loopback ports inside the pod
 * (runtime/agent-portfwd.h), whatever the CNI. */
#include <errno.h>
#include <stdlib.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "cri-server/dispatch.h"
#include "cri-server/streaming-glue.h"
#include "runtime/pod.h"

#define PORTFORWARD_PORTS_MAX 64

int cri_rpc_port_forward(cri_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **ret_resp,
                         cc_error **ret_err)
{
        const Runtime__V1__PortForwardRequest *req = (const void *)in;
        if (!req->pod_sandbox_id || !*req->pod_sandbox_id)
                return cc_error_set(ret_err, -EINVAL, "pod_sandbox_id is empty");
        if (req->n_port > PORTFORWARD_PORTS_MAX)
                return cc_error_set(ret_err, -EINVAL, "too many ports (%zu, at most %d)", req->n_port,
                                    PORTFORWARD_PORTS_MAX);
        uint16_t ports[PORTFORWARD_PORTS_MAX];
        for (size_t i = 0; i < req->n_port; i++) {
                if (req->port[i] <= 0 || req->port[i] > 65535)
                        return cc_error_set(ret_err, -EINVAL, "port %d is out of range", req->port[i]);
                ports[i] = (uint16_t)req->port[i];
        }
        _cleanup_rt_pod_info_ rt_pod_info *pod = NULL;
        int r = rt_pod_status(ctx->daemon->rt, req->pod_sandbox_id, &pod, ret_err);
        if (r < 0)
                return r;
        if (pod->state != RT_POD_READY)
                return cc_error_set(ret_err, -ENOTCONN, "pod %s is not ready", pod->id);
        streaming_opts o = { .ports = ports, .n_ports = req->n_port };
        _cleanup_free_ char *url = cri_stream_url(ctx->daemon, STREAMING_PORTFORWARD, &o, NULL, pod->id,
                                                  NULL, 0, ret_err);
        if (!url)
                return (*ret_err)->code;
        Runtime__V1__PortForwardResponse *resp = CRI_NEW(ctx, runtime__v1__port_forward_response);
        resp->url = cri_strdup(ctx, url);
        log_debug("rpc=PortForward pod=%s ports=%zu", pod->id, req->n_port);
        *ret_resp = &resp->base;
        return 0;
}
