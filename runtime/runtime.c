/* SPDX-License-Identifier: Apache-2.0 */
/* The runtime facade (temporary stubs until the implementation lands). */
#include <errno.h>
#include <stdlib.h>

#include "runtime/pod.h"
#include "runtime/runtime.h"

int rt_runtime_open(cc_config *cfg, image_db *images, rt_net *net, rt_runtime **ret,
                    cc_error **ret_err)
{
        (void)cfg; (void)images; (void)net; (void)ret;
        return cc_error_set(ret_err, -ENOSYS, "runtime: not implemented yet");
}

void rt_runtime_free(rt_runtime *rt) { (void)rt; }

int rt_runtime_exec_target(rt_runtime *rt, const char *container_id, rt_exec_target **ret,
                           cc_error **ret_err)
{
        (void)rt; (void)container_id; (void)ret;
        return cc_error_set(ret_err, -ENOSYS, "exec target: not implemented yet");
}

void rt_exec_target_free(rt_exec_target *t) { (void)t; }

int rt_runtime_pod_agent(rt_runtime *rt, const char *sandbox_id, rt_agent **ret_agent,
                         bool *ret_host_network, cc_error **ret_err)
{
        (void)rt; (void)sandbox_id; (void)ret_agent; (void)ret_host_network;
        return cc_error_set(ret_err, -ENOSYS, "pod agent: not implemented yet");
}
