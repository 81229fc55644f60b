/* SPDX-License-Identifier: Apache-2.0 */
/* Running a CNI network (a plugin list) for one pod: ADD, CHECK, DEL as the
 * CNI spec (SPEC.md, "Execution protocol" and "Attachment operations") and
 * its conventions (runtimeConfig capabilities) lay down.
 *
 * The final ADD result is cached on disk (cache_dir/results/NET-ID-IFNAME,
 * JSON: config, result, CNI_ARGS, runtimeConfig) so that DEL after a daemon
 * restart, or after the configuration changed, sends what ADD saw. A failed
 * ADD runs DEL for the whole list before it returns, so it leaves nothing. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "net-cni/conf.h"
#include "net-cni/result.h"

typedef struct cni_port_mapping {
        int host_port;      /* 1..65535 */
        int container_port; /* 1..65535 */
        const char *protocol; /* "tcp", "udp", "sctp"; NULL: "tcp" */
        const char *host_ip;  /* NULL or "": every address */
} cni_port_mapping;

/* Values for the capabilities a plugin may advertise; each is sent only to
 * plugins that advertise it. Everything optional (NULL / 0 / false). */
typedef struct cni_runtime_conf {
        const cni_port_mapping *port_mappings; /* "portMappings" */
        size_t n_port_mappings;
        bool has_bandwidth;                    /* "bandwidth", bits per second / bits */
        uint64_t ingress_rate, ingress_burst, egress_rate, egress_burst;
        const char *const *dns_servers;        /* "dns": NULL-terminated lists */
        const char *const *dns_searches;
        const char *const *dns_options;
        const char *const *ips;                /* "ips": CIDRs, NULL-terminated */
        const char *mac;                       /* "mac" */
        const char *cgroup_path;               /* "cgroupPath" */
} cni_runtime_conf;

typedef struct cni_pod {
        const char *container_id;  /* the sandbox id: [A-Za-z0-9][A-Za-z0-9_.-]*, <= 128 */
        const char *netns;         /* path of the pinned namespace */
        const char *ifname;        /* NULL: "eth0" */
        const char *pod_namespace; /* K8S_POD_NAMESPACE, may be NULL */
        const char *pod_name;      /* K8S_POD_NAME, may be NULL */
        const char *pod_uid;       /* K8S_POD_UID, may be NULL */
} cni_pod;

typedef struct cni_exec_ctx {
        char *const *bin_dirs; /* NULL-terminated, searched in order */
        const char *cache_dir; /* results cache; created on demand */
        int timeout_ms;        /* per plugin invocation; <= 0: none */
} cni_exec_ctx;

/* ADD: attaches the pod to net. *ret (cni_result_free) is the final result. */
int cni_add(const cni_exec_ctx *ctx, const cni_netconf *net, const cni_pod *pod,
            const cni_runtime_conf *rt, cni_result **ret, cc_error **ret_err);
/* CHECK net against the cached result. A list with disableCheck, or a
 * cniVersion before 0.4.0 (which has no CHECK), returns 0 without running
 * anything. No cached result: -ENOENT. rt NULL: the cached runtimeConfig. */
int cni_check(const cni_exec_ctx *ctx, const cni_netconf *net, const cni_pod *pod,
              const cni_runtime_conf *rt, cc_error **ret_err);
/* DEL, plugins in reverse order. net's name keys the cache: with a cached ADD
 * the cached configuration, result and runtimeConfig (unless rt is given) are
 * used; without one DEL still runs with net (best effort, as containerd does).
 * Every plugin runs even if one fails (the first error is returned and the
 * cache kept for a retry). Idempotent: plugins treat a DEL of what is gone as
 * success. */
int cni_del(const cni_exec_ctx *ctx, const cni_netconf *net, const cni_pod *pod,
            const cni_runtime_conf *rt, cc_error **ret_err);

/* Pieces, exposed for tests. */
/* "IgnoreUnknown=1;K8S_POD_NAMESPACE=..;K8S_POD_NAME=..;
 * K8S_POD_INFRA_CONTAINER_ID=..;K8S_POD_UID=.." (NULL fields left out).
 * Values with ';', '=' or control characters are refused. */
int cni_args_build(const cni_pod *pod, char **ret, cc_error **ret_err);
/* The runtimeConfig object for a plugin (only its capabilities), or every
 * known key when p is NULL. Never NULL (aborts on OOM). */
json_object *cni_runtime_conf_to_json(const cni_runtime_conf *rt, const cni_plugin_conf *p);
/* Filters a full runtimeConfig object down to the plugin's capabilities. */
json_object *cni_runtime_json_filter(json_object *full, const cni_plugin_conf *p);
/* bin_dirs[i]/type for the first i where it is an executable regular file. */
int cni_find_plugin(char *const *bin_dirs, const char *type, char **ret_path, cc_error **ret_err);
/* The stdin document for plugin i of net. prev_result and runtime may be NULL. */
json_object *cni_plugin_stdin(const cni_netconf *net, size_t i, json_object *prev_result,
                              json_object *runtime);
/* The cache file of (network, container, ifname). */
int cni_cache_path(const char *cache_dir, const char *network, const char *container_id,
                   const char *ifname, char **ret, cc_error **ret_err);
