/* SPDX-License-Identifier: Apache-2.0 */
/* runtime/pod.h and runtime/container.h records → CRI messages, request
 * validation and list filters, shared by the pod and container RPCs. Every
 * message and string returned lives in the call's arena. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "cri-server/dispatch.h"
#include "runtime/container.h"
#include "runtime/pod.h"

/* The daemon's runtime, or -EOPNOTSUPP (UNIMPLEMENTED) when cocoond runs
 * without one. */
int cri_runtime(cri_ctx *ctx, rt_runtime **ret, cc_error **ret_err);

/* An id from a request: non-empty (-EINVAL "<what> must not be empty") and a
 * lowercase-hex id or id prefix (common/id.h; else -EINVAL naming it). */
int cri_check_id(const char *what, const char *id, cc_error **ret_err);

/* The start of every RPC that names one pod or container: the daemon's
 * runtime (cri_runtime) into *ret_rt, then the request's id checked
 * (cri_check_id), in that order. */
int cri_require_id(cri_ctx *ctx, const char *what, const char *id, rt_runtime **ret_rt, cc_error **ret_err);

/* Request validation: missing messages or fields → -EINVAL naming the field. */
int cri_check_pod_config(const Runtime__V1__PodSandboxConfig *config, cc_error **ret_err);
int cri_check_container_config(const Runtime__V1__ContainerConfig *config, cc_error **ret_err);

/* A map<string,string> (any generated *Entry type: they share one layout)
 * copied into the arena as entries of desc's type. */
void **cri_kv_copy(cri_ctx *ctx, const ProtobufCMessageDescriptor *desc, void *const *entries,
                   size_t n, size_t *ret_n);
/* Every selector entry is present with the same value in labels. */
bool cri_labels_match(void *const *selector, size_t n_selector, void *const *labels, size_t n_labels);
/* id starts with prefix ("" matches everything). */
bool cri_id_has_prefix(const char *id, const char *prefix);
/* The part ContainerFilter and ContainerStatsFilter share: id and pod id
 * prefixes (NULL/"" match all) and a label selector. */
bool cri_ctr_match(const rt_ctr_info *c, const char *id, const char *pod_id, void *const *selector,
                   size_t n_selector);

Runtime__V1__PodSandboxMetadata *cri_pod_metadata(cri_ctx *ctx, const Runtime__V1__PodSandboxConfig *c);
Runtime__V1__ContainerMetadata *cri_ctr_metadata(cri_ctx *ctx, const Runtime__V1__ContainerConfig *c);

Runtime__V1__PodSandbox *cri_pod_from_info(cri_ctx *ctx, const rt_pod_info *p);
Runtime__V1__PodSandboxStatus *cri_pod_status_from_info(cri_ctx *ctx, const rt_pod_info *p);
/* The verbose info["info"] JSON of PodSandboxStatus. */
char *cri_pod_verbose_info(cri_ctx *ctx, const rt_pod_info *p);

Runtime__V1__Container *cri_ctr_from_info(cri_ctx *ctx, const rt_ctr_info *c);
/* PodSandboxStats.attributes: id, metadata, labels, annotations */
Runtime__V1__PodSandboxAttributes *cri_pod_attributes(cri_ctx *ctx, const rt_pod_info *p);
/* ContainerStats.attributes: id, metadata, labels, annotations */
Runtime__V1__ContainerAttributes *cri_ctr_attributes(cri_ctx *ctx, const rt_ctr_info *c);
Runtime__V1__ContainerStatus *cri_ctr_status_from_info(cri_ctx *ctx, const rt_ctr_info *c);
/* The verbose info["info"] JSON of ContainerStatus. */
char *cri_ctr_verbose_info(cri_ctx *ctx, const rt_ctr_info *c);

/* Stats (cri-server/rpc-container-stats.c). cri_cpu_rate: the CPU rate of
 * id (a container's or a pod's) since its previous sample that cocoond
 * answered, at least 100 ms before; false when there is none; records this
 * one. */
Runtime__V1__UInt64Value *cri_u64(cri_ctx *ctx, uint64_t v);
bool cri_cpu_rate(const char *id, uint64_t cpu_ns, int64_t ts_ns, uint64_t *ret_nano_cores);
Runtime__V1__ContainerStats *cri_ctr_stats_to_cri(cri_ctx *ctx, const rt_ctr_info *info, const rt_ctr_stats *st);

const char *cri_pod_state_name(rt_pod_state s);
const char *cri_ctr_state_name(rt_ctr_state s);
