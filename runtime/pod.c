/* SPDX-License-Identifier: Apache-2.0 */
/* Pods (temporary stubs until the implementation lands). */
#include <errno.h>
#include <stdlib.h>

#include "runtime/pod.h"

void rt_pod_info_free(rt_pod_info *p) { (void)p; }
void rt_pod_info_list_free(rt_pod_info **list, size_t n) { (void)list; (void)n; }

int rt_pod_run(rt_runtime *rt, const Runtime__V1__PodSandboxConfig *config,
               const char *runtime_handler, char **ret_id, cc_error **ret_err)
{
        (void)rt; (void)config; (void)runtime_handler; (void)ret_id;
        return cc_error_set(ret_err, -ENOSYS, "RunPodSandbox: not implemented yet");
}
int rt_pod_stop(rt_runtime *rt, const char *id, cc_error **ret_err)
{
        (void)rt; (void)id;
        return cc_error_set(ret_err, -ENOSYS, "StopPodSandbox: not implemented yet");
}
int rt_pod_remove(rt_runtime *rt, const char *id, cc_error **ret_err)
{
        (void)rt; (void)id;
        return cc_error_set(ret_err, -ENOSYS, "RemovePodSandbox: not implemented yet");
}
int rt_pod_status(rt_runtime *rt, const char *id, rt_pod_info **ret, cc_error **ret_err)
{
        (void)rt; (void)id; (void)ret;
        return cc_error_set(ret_err, -ENOSYS, "PodSandboxStatus: not implemented yet");
}
int rt_pod_list(rt_runtime *rt, rt_pod_info ***ret, size_t *ret_n, cc_error **ret_err)
{
        (void)rt; (void)ret; (void)ret_n;
        return cc_error_set(ret_err, -ENOSYS, "ListPodSandbox: not implemented yet");
}
