/* SPDX-License-Identifier: Apache-2.0 */
/* A pod's network, between net-cni (which knows nothing of VMs) and the pod
 * orchestration: the pinned network namespace, the CNI ADD/DEL of the
 * configured network, and for VM pods the tap mirror of each CNI interface
 * plus what the guest must configure (MAC, MTU, addresses, routes).
 *
 * Host-network pods never get here (no netns, no CNI). A pod with no CNI
 * configuration yet (NetworkReady=false) gets a netns with loopback only when
 * the daemon is configured to allow it ([network] require_cni = false, the
 * default until a config exists? see cocoon.toml), else RunPodSandbox fails.
 *
 * Thread-safe; every failure leaves nothing: no netns, veth, tap, cached
 * result, IP allocation (a failed ADD runs DEL). */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/config.h"
#include "common/error.h"
#include "runtime/agent.h"

typedef struct rt_net rt_net; /* daemon-wide: config loader, dirs */

int rt_net_new(const cc_config *cfg, rt_net **ret, cc_error **ret_err);
void rt_net_free(rt_net *n);
/* For Status: 0 when a valid CNI config exists; else -ENOENT etc. and a
 * message for the NetworkReady condition ("no network config found in
 * /etc/cni/net.d", "... plugin bridge not found in ..."). */
int rt_net_ready(rt_net *n, cc_error **ret_err);

typedef struct rt_port_mapping {
        int protocol;       /* IPPROTO_TCP / IPPROTO_UDP / IPPROTO_SCTP */
        int container_port;
        int host_port;
        const char *host_ip;
} rt_port_mapping;

typedef struct rt_pod_net_req {
        const char *sandbox_id;
        const char *pod_name, *pod_namespace, *pod_uid;
        const rt_port_mapping *ports;
        size_t n_ports;
        const char *const *dns_servers, *const *dns_searches, *const *dns_options;
        const char *cgroup_parent;
        bool vm;            /* mirror each interface to a tap for the VMM */
        /* A VM booted ahead (runtime/pool.c) made the netns (named by
         * sandbox_id) and RT_POOL_TAP in it, which its VMM holds: use both;
         * the network must then give the pod exactly one interface. */
        bool adopt;
} rt_pod_net_req;

#define RT_POOL_TAP "tap0_cocoon"

typedef struct rt_pod_nic {
        int tap_fd;         /* for the VMM (vm only; -1 otherwise); owned by rt_pod_net */
        char tap[16];
        char mac[18];
        unsigned mtu;
        rt_agent_iface iface;         /* for UpdateInterface (points into this struct) */
        rt_agent_ip ips[8];
} rt_pod_nic;

typedef struct rt_pod_net {
        char *netns_path;   /* pinned netns */
        char *ip;           /* primary pod IP ("" if none) */
        char **extra_ips;   /* NULL-terminated, never NULL */
        rt_pod_nic *nics;
        size_t n_nics;
        rt_agent_route *routes;  /* for UpdateRoutes */
        size_t n_routes;
        /* For AddARPNeighbors (vm only): the permanent (NUD_PERMANENT)
         * neighbour entries CNI or the operator put on the pod's interfaces,
         * read once after setup, as Kata does; device = the guest's name. */
        rt_agent_neigh *neighs;
        size_t n_neighs;
} rt_pod_net;

/* Creates the netns, runs CNI ADD (when configured), and for vm sets up the
 * taps and records the interfaces' permanent neighbours (at most 128, else
 * -E2BIG). */
int rt_pod_net_setup(rt_net *n, const rt_pod_net_req *req, rt_pod_net **ret, cc_error **ret_err);
/* Configures the guest: UpdateInterface for each NIC, UpdateRoutes, then
 * AddARPNeighbors when there are permanent neighbours. */
int rt_pod_net_configure_guest(const rt_pod_net *pn, rt_agent *a, cc_error **ret_err);
/* Taps down, CNI DEL (using the cached result), netns removed. Idempotent;
 * works from a saved record after a restart (rt_pod_net_load). Keeps going
 * after an error and returns the first. */
int rt_pod_net_teardown(rt_net *n, const char *sandbox_id, rt_pod_net *pn, cc_error **ret_err);
/* Persisting in the pod record; load re-opens tap fds when the netns is still there. */
int rt_pod_net_save(const rt_pod_net *pn, json_object **ret, cc_error **ret_err);
int rt_pod_net_load(json_object *saved, rt_pod_net **ret, cc_error **ret_err);
void rt_pod_net_free(rt_pod_net *pn);
