/* SPDX-License-Identifier: Apache-2.0 */
/* Containers (temporary stubs until the implementation lands). */
#include <errno.h>
#include <stdlib.h>

#include "runtime/container.h"

void rt_ctr_info_free(rt_ctr_info *c) { (void)c; }
void rt_ctr_info_list_free(rt_ctr_info **list, size_t n) { (void)list; (void)n; }

int rt_container_create(rt_runtime *rt, const char *pod_id,
                        const Runtime__V1__ContainerConfig *config,
                        const Runtime__V1__PodSandboxConfig *pod_config, char **ret_id,
                        cc_error **ret_err)
{
        (void)rt; (void)pod_id; (void)config; (void)pod_config; (void)ret_id;
        return cc_error_set(ret_err, -ENOSYS, "CreateContainer: not implemented yet");
}
int rt_container_start(rt_runtime *rt, const char *id, cc_error **ret_err)
{
        (void)rt; (void)id;
        return cc_error_set(ret_err, -ENOSYS, "StartContainer: not implemented yet");
}
int rt_container_stop(rt_runtime *rt, const char *id, int64_t timeout_s, cc_error **ret_err)
{
        (void)rt; (void)id; (void)timeout_s;
        return cc_error_set(ret_err, -ENOSYS, "StopContainer: not implemented yet");
}
int rt_container_remove(rt_runtime *rt, const char *id, cc_error **ret_err)
{
        (void)rt; (void)id;
        return cc_error_set(ret_err, -ENOSYS, "RemoveContainer: not implemented yet");
}
int rt_container_status(rt_runtime *rt, const char *id, rt_ctr_info **ret, cc_error **ret_err)
{
        (void)rt; (void)id; (void)ret;
        return cc_error_set(ret_err, -ENOSYS, "ContainerStatus: not implemented yet");
}
int rt_container_list(rt_runtime *rt, rt_ctr_info ***ret, size_t *ret_n, cc_error **ret_err)
{
        (void)rt; (void)ret; (void)ret_n;
        return cc_error_set(ret_err, -ENOSYS, "ListContainers: not implemented yet");
}
int rt_container_reopen_log(rt_runtime *rt, const char *id, cc_error **ret_err)
{
        (void)rt; (void)id;
        return cc_error_set(ret_err, -ENOSYS, "ReopenContainerLog: not implemented yet");
}
