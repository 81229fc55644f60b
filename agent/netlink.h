/* SPDX-License-Identifier: Apache-2.0 */
/* Minimal rtnetlink client for the network RPCs (see netlink.c). All
 * functions return 0 or a negative errno. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AGENT_NL_MAX 256
#define AGENT_NL_ADDRS 16

typedef struct agent_nl_addr {
        int family;
        int prefix;
        char addr[46];
} agent_nl_addr;

typedef struct agent_nl_link {
        int index;
        unsigned flags;
        uint32_t mtu;
        char name[16];
        char hwaddr[32];
        agent_nl_addr addrs[AGENT_NL_ADDRS];
        size_t n_addrs;
} agent_nl_link;

typedef struct agent_nl_links {
        agent_nl_link v[AGENT_NL_MAX];
        size_t n;
} agent_nl_links;

typedef struct agent_nl_route {
        int family, scope, dst_len, oif;
        char dst[46], gw[46], src[46];
} agent_nl_route;

typedef struct agent_nl_routes {
        agent_nl_route v[AGENT_NL_MAX];
        size_t n;
} agent_nl_routes;

typedef struct agent_nl_route_spec {
        int family, scope, dst_len, oif;
        unsigned char dst[16], gw[16], src[16];
        bool has_gw, has_src;
} agent_nl_route_spec;

int agent_nl_list_links(agent_nl_links *out);
int agent_nl_list_routes(agent_nl_routes *out);
int agent_nl_link_set(int index, const char *name, uint32_t mtu, bool up);
int agent_nl_link_set_mac(int index, const unsigned char *mac, size_t len);
int agent_nl_addr_change(bool add, int index, int family, const void *addr, int prefix);
int agent_nl_route_change(bool add, const agent_nl_route_spec *s);
int agent_nl_neigh_add(int index, int family, const void *addr, const unsigned char *lladdr, size_t lllen,
                       uint16_t state, uint8_t flags);
