/* SPDX-License-Identifier: Apache-2.0 */
/* Mirroring a pod's CNI interface (the veth, e.g. eth0) to a tap device the
 * VMM can use, inside the pod's network namespace: Kata's "tcfilter" model.
 *
 *     veth ingress ──u32 match-all, mirred egress redirect──▶ tap egress (→ guest)
 *     tap ingress (← guest) ──u32 match-all, mirred egress redirect──▶ veth egress
 *
 * The tap is persistent, single-queue, with a virtio-net header (IFF_VNET_HDR),
 * owned by root, and takes the veth's MTU. The guest NIC takes the veth's MAC,
 * addresses and routes (reported in cni_tap_info). Everything goes through
 * rtnetlink (libnl-route-3); nothing shells out to ip or tc. */
#pragma once

#include <net/if.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stddef.h>

#include "common/error.h"

#define CNI_TAP_DEFAULT_NAME "tap0_cocoon"

typedef struct cni_tap_addr {
        int family;                     /* AF_INET / AF_INET6 */
        char addr[INET6_ADDRSTRLEN];
        int prefixlen;
} cni_tap_addr;

typedef struct cni_tap_route {
        int family;
        char dst[INET6_ADDRSTRLEN + 4]; /* CIDR; the default route is 0.0.0.0/0 or ::/0 */
        char gw[INET6_ADDRSTRLEN];      /* "" if none (on-link) */
} cni_tap_route;

typedef struct cni_tap_info {
        char veth[IFNAMSIZ];
        char tap[IFNAMSIZ];
        int veth_ifindex, tap_ifindex;
        unsigned mtu;
        char mac[18];                   /* the veth's MAC, "aa:bb:cc:dd:ee:ff" */
        cni_tap_addr *addrs;            /* the veth's global addresses */
        size_t n_addrs;
        cni_tap_route *routes;          /* main-table routes through the veth */
        size_t n_routes;
} cni_tap_info;

void cni_tap_info_free(cni_tap_info *i);
static inline void cni_tap_info_freep(cni_tap_info **i) { cni_tap_info_free(*i); }
#define _cleanup_tap_info_ __attribute__((cleanup(cni_tap_info_freep)))

/* In the namespace at netns_path: creates tap (NULL: CNI_TAP_DEFAULT_NAME;
 * an existing one: -EEXIST), brings it up with veth's MTU, and installs the
 * ingress qdiscs and the two redirect filters. *ret_fd (may be NULL: closed)
 * is an O_CLOEXEC fd on the tap, ready to hand to the VMM; *ret_info (may be
 * NULL) describes the veth. On failure nothing is left behind. */
int cni_tap_setup(const char *netns_path, const char *veth, const char *tap, int *ret_fd,
                  cni_tap_info **ret_info, cc_error **ret_err);
/* cni_tap_setup for a tap that already exists in the namespace (made by
 * cni_tap_create for a VM booted before its pod's network existed): brings
 * it up with veth's MTU and mirrors the two; no fd (the VMM has the tap). */
int cni_tap_adopt(const char *netns_path, const char *veth, const char *tap, cni_tap_info **ret_info,
                  cc_error **ret_err);
/* Creates a tap, down and unconnected, in the namespace; *ret_fd as for
 * cni_tap_setup. -EEXIST if the name is taken. */
int cni_tap_create(const char *netns_path, const char *tap, int *ret_fd, cc_error **ret_err);
/* Opens an existing tap of the namespace again (after a daemon restart);
 * -ENOENT if there is none of that name. */
int cni_tap_open(const char *netns_path, const char *tap, int *ret_fd, cc_error **ret_err);
/* Reads the veth's MAC, MTU, addresses and routes. */
int cni_tap_describe(const char *netns_path, const char *veth, cni_tap_info **ret_info, cc_error **ret_err);
/* Removes the filters and the ingress qdisc of veth and deletes the tap.
 * Missing pieces are fine (idempotent); a missing namespace is success. */
int cni_tap_teardown(const char *netns_path, const char *veth, const char *tap, cc_error **ret_err);
