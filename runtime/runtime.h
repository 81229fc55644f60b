/* SPDX-License-Identifier: Apache-2.0 */
/* The runtime facade that cri-server's handlers call: pods (sandboxes) and
 * containers, their persisted state, and the lookups the streaming backend
 * needs. The pod/container verbs themselves are declared in runtime/pod.h and
 * runtime/container.h; this file holds the daemon-wide handle and the
 * contract with the streaming backend (runtime/stream.c). */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/config.h"
#include "common/error.h"
#include "runtime/agent.h"
#include "runtime/ctr-io.h"
#include "oci.pb-c.h"

typedef struct rt_runtime rt_runtime;

/* What an exec / attach needs of a container. Holds references: the agent
 * (rt_agent_ref) and the pump (attach), so it stays valid if the container
 * or pod is removed meanwhile (calls then fail cleanly). */
typedef struct rt_exec_target {
        rt_agent *agent;       /* referenced */
        char *sandbox_id;
        char *container_id;    /* full id */
        Grpc__Spec *spec;      /* a copy of the container's spec (env, user, cwd, caps) */
        bool tty;              /* the container's main process has a tty */
        bool stdin_;           /* ... and keeps stdin open (attach) */
        rt_ctr_io *io;         /* the container's output pump (for attach), referenced */
} rt_exec_target;

/* Container id (full, or a unique prefix) → target. The container must be
 * RUNNING, else an errno that cri-server/status.c maps to FAILED_PRECONDITION
 * with a message saying its state. Unknown id → -ENOENT. */
int rt_runtime_exec_target(rt_runtime *rt, const char *container_id, rt_exec_target **ret,
                           cc_error **ret_err);
void rt_exec_target_free(rt_exec_target *t);

/* Pod id → its agent (referenced), for PortForward. host_network: a host-mode
 * pod in the host's network namespace (then the port is on the host). */
int rt_runtime_pod_agent(rt_runtime *rt, const char *sandbox_id, rt_agent **ret_agent,
                         bool *ret_host_network, cc_error **ret_err);

/* The VM pool ([vm] pool_size): how many VMs it keeps, how many wait now. */
void rt_runtime_pool_status(rt_runtime *rt, int *ret_size, int *ret_ready);
/* [vm] template: {"enabled", "templates": [{"vcpus", "memoryMiB", "state":
 * ready|building|failed|discarded}]} (a new object; NULL without memory). */
json_object *rt_runtime_template_status(rt_runtime *rt);

/* The output pump holds references too. */
rt_ctr_io *rt_ctr_io_ref(rt_ctr_io *io);
void rt_ctr_io_unref(rt_ctr_io *io);
