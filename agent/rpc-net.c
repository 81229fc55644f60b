/* SPDX-License-Identifier: Apache-2.0 */
/* Network RPCs over rtnetlink: ListInterfaces, ListRoutes, UpdateInterface,
 * UpdateRoutes, AddARPNeighbors. Every address, prefix and name from the
 * request is parsed strictly before anything is changed. */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "agent/agent.h"
#include "agent/netlink.h"
#include "common/cleanup.h"
#include "common/log.h"

#define MAX_ITEMS 256

static int parse_ip(const char *s, int family_hint, int *ret_family, unsigned char out[16])
{
        if (!s)
                return -EINVAL;
        if (family_hint != AF_INET6 && inet_pton(AF_INET, s, out) == 1) {
                *ret_family = AF_INET;
                return 0;
        }
        if (family_hint != AF_INET && inet_pton(AF_INET6, s, out) == 1) {
                *ret_family = AF_INET6;
                return 0;
        }
        return -EINVAL;
}

/* "a.b.c.d/len", "a.b.c.d" (host route) or "default"/"" (len 0). */
static int parse_prefix(const char *s, int family_hint, int *ret_family, unsigned char out[16], int *ret_len)
{
        if (!s || !*s || strcmp(s, "default") == 0) {
                memset(out, 0, 16);
                *ret_family = family_hint ? family_hint : AF_INET;
                *ret_len = 0;
                return 0;
        }
        char buf[64];
        if (strlen(s) >= sizeof(buf))
                return -EINVAL;
        strcpy(buf, s);
        char *slash = strchr(buf, '/');
        long len = -1;
        if (slash) {
                *slash = 0;
                char *end;
                len = strtol(slash + 1, &end, 10);
                if (*end || end == slash + 1)
                        return -EINVAL;
        }
        if (parse_ip(buf, family_hint, ret_family, out) < 0)
                return -EINVAL;
        long max = *ret_family == AF_INET ? 32 : 128;
        if (len < 0)
                len = max;
        if (len > max)
                return -EINVAL;
        *ret_len = (int)len;
        return 0;
}

static int family_of(Types__IPFamily f) { return f == TYPES__IPFAMILY__v6 ? AF_INET6 : AF_INET; }

static int parse_mac(const char *s, unsigned char out[8], size_t *ret_len);

/* The link with hardware address hw; without hw, or when no link has it,
 * the link named name. *ret_set_mac: the link was found by name although hw
 * was given, so its address must become hw (a VM booted ahead of its pod,
 * from cocoond's pool, has a NIC whose address is only known once the pod's
 * network exists). */
static agent_nl_link *link_by(agent_nl_links *l, const char *name, const char *hw, bool *ret_set_mac)
{
        *ret_set_mac = false;
        for (size_t i = 0; hw && *hw && i < l->n; i++)
                if (strcasecmp(l->v[i].hwaddr, hw) == 0)
                        return &l->v[i];
        for (size_t i = 0; name && *name && i < l->n; i++)
                if (strcmp(l->v[i].name, name) == 0) {
                        *ret_set_mac = hw && *hw;
                        return &l->v[i];
                }
        return NULL;
}

static const char *link_name(agent_nl_links *l, int index)
{
        for (size_t i = 0; i < l->n; i++)
                if (l->v[i].index == index)
                        return l->v[i].name;
        return "";
}

/* Fills an Interface from a link; strings point into l (keep it alive). */
static void fill_iface(Types__Interface *ifc, Types__IPAddress *addrs, Types__IPAddress **ptrs, char masks[][4],
                       agent_nl_link *l)
{
        types__interface__init(ifc);
        ifc->device = l->name;
        ifc->name = l->name;
        ifc->mtu = l->mtu;
        ifc->hwaddr = l->hwaddr;
        ifc->raw_flags = l->flags;
        for (size_t j = 0; j < l->n_addrs; j++) {
                types__ipaddress__init(&addrs[j]);
                addrs[j].family = l->addrs[j].family == AF_INET6 ? TYPES__IPFAMILY__v6 : TYPES__IPFAMILY__v4;
                addrs[j].address = l->addrs[j].addr;
                snprintf(masks[j], 4, "%d", l->addrs[j].prefix);
                addrs[j].mask = masks[j];
                ptrs[j] = &addrs[j];
        }
        ifc->ipaddresses = ptrs;
        ifc->n_ipaddresses = l->n_addrs;
}

static void h_list_ifaces(ttrpc_call *call, const uint8_t *pl, size_t len, void *ud)
{
        ProtobufCMessage *req = agent_unpack(call, &grpc__list_interfaces_request__descriptor, pl, len);
        if (!req)
                return;
        protobuf_c_message_free_unpacked(req, NULL);
        _cleanup_free_ agent_nl_links *l = calloc(1, sizeof(*l));
        int r = l ? agent_nl_list_links(l) : -ENOMEM;
        if (r < 0) {
                ttrpc_call_reply_status(call, TTRPC_CODE_INTERNAL, "list links: %s", strerror(-r));
                return;
        }
        _cleanup_free_ Types__Interface *ifc = calloc(l->n + 1, sizeof(*ifc));
        _cleanup_free_ Types__Interface **ip = calloc(l->n + 1, sizeof(*ip));
        _cleanup_free_ Types__IPAddress *addrs = calloc((l->n + 1) * AGENT_NL_ADDRS, sizeof(*addrs));
        _cleanup_free_ Types__IPAddress **aptrs = calloc((l->n + 1) * AGENT_NL_ADDRS, sizeof(*aptrs));
        _cleanup_free_ char (*masks)[4] = calloc((l->n + 1) * AGENT_NL_ADDRS, 4);
        if (!ifc || !ip || !addrs || !aptrs || !masks) {
                ttrpc_call_reply_status(call, TTRPC_CODE_RESOURCE_EXHAUSTED, "out of memory");
                return;
        }
        for (size_t i = 0; i < l->n; i++) {
                fill_iface(&ifc[i], addrs + i * AGENT_NL_ADDRS, aptrs + i * AGENT_NL_ADDRS, masks + i * AGENT_NL_ADDRS,
                           &l->v[i]);
                ip[i] = &ifc[i];
        }
        Grpc__Interfaces resp = GRPC__INTERFACES__INIT;
        resp.interfaces = ip;
        resp.n_interfaces = l->n;
        ttrpc_call_reply_pb(call, &resp.base);
}

static int reply_routes(ttrpc_call *call)
{
        _cleanup_free_ agent_nl_links *l = calloc(1, sizeof(*l));
        _cleanup_free_ agent_nl_routes *rt = calloc(1, sizeof(*rt));
        int r = l && rt ? agent_nl_list_links(l) : -ENOMEM;
        if (r >= 0)
                r = agent_nl_list_routes(rt);
        if (r < 0)
                return ttrpc_call_reply_status(call, TTRPC_CODE_INTERNAL, "list routes: %s", strerror(-r));
        _cleanup_free_ Types__Route *v = calloc(rt->n + 1, sizeof(*v));
        _cleanup_free_ Types__Route **p = calloc(rt->n + 1, sizeof(*p));
        _cleanup_free_ char (*dst)[64] = calloc(rt->n + 1, 64);
        if (!v || !p || !dst)
                return ttrpc_call_reply_status(call, TTRPC_CODE_RESOURCE_EXHAUSTED, "out of memory");
        for (size_t i = 0; i < rt->n; i++) {
                agent_nl_route *o = &rt->v[i];
                types__route__init(&v[i]);
                if (o->dst_len || o->dst[0])
                        snprintf(dst[i], 64, "%s/%d", o->dst[0] ? o->dst : "0.0.0.0", o->dst_len);
                v[i].dest = dst[i];
                v[i].gateway = o->gw;
                v[i].source = o->src;
                v[i].device = (char *)link_name(l, o->oif);
                v[i].scope = (uint32_t)o->scope;
                v[i].family = o->family == AF_INET6 ? TYPES__IPFAMILY__v6 : TYPES__IPFAMILY__v4;
                p[i] = &v[i];
        }
        Grpc__Routes resp = GRPC__ROUTES__INIT;
        resp.routes = p;
        resp.n_routes = rt->n;
        return ttrpc_call_reply_pb(call, &resp.base);
}

static void h_list_routes(ttrpc_call *call, const uint8_t *pl, size_t len, void *ud)
{
        ProtobufCMessage *req = agent_unpack(call, &grpc__list_routes_request__descriptor, pl, len);
        if (!req)
                return;
        protobuf_c_message_free_unpacked(req, NULL);
        reply_routes(call);
}

static void h_update_iface(ttrpc_call *call, const uint8_t *pl, size_t len, void *ud)
{
        Grpc__UpdateInterfaceRequest *req =
                (void *)agent_unpack(call, &grpc__update_interface_request__descriptor, pl, len);
        if (!req)
                return;
        _cleanup_error_ cc_error *err = NULL;
        _cleanup_free_ agent_nl_links *l = calloc(1, sizeof(*l));
        const Types__Interface *in = req->interface;
        struct { int family, prefix; unsigned char a[16]; } addrs[AGENT_NL_ADDRS];
        agent_nl_link *lk = NULL;
        int r = 0;
        if (!in) {
                cc_error_set(&err, -EINVAL, "no interface");
        } else if (in->n_ipaddresses > AGENT_NL_ADDRS || (in->name && strlen(in->name) >= IFNAMSIZ) ||
                   in->mtu > 65535) {
                cc_error_set(&err, -EINVAL, "interface name, mtu or address count out of range");
        } else {
                for (size_t i = 0; i < in->n_ipaddresses && !err; i++) {
                        const Types__IPAddress *a = in->ipaddresses[i];
                        char *end;
                        long m = a->mask && *a->mask ? strtol(a->mask, &end, 10) : -1;
                        if (parse_ip(a->address, family_of(a->family), &addrs[i].family, addrs[i].a) < 0 || m < 0 ||
                            *end || m > (addrs[i].family == AF_INET ? 32 : 128))
                                cc_error_set(&err, -EINVAL, "bad address '%.64s/%.8s'", a->address ? a->address : "",
                                             a->mask ? a->mask : "");
                        else
                                addrs[i].prefix = (int)m;
                }
        }
        if (!err && (!l || (r = agent_nl_list_links(l)) < 0))
                cc_error_set(&err, l ? r : -ENOMEM, "list links: %s", strerror(l ? -r : ENOMEM));
        bool set_mac = false;
        unsigned char mac[8];
        size_t maclen = 0;
        if (!err && !(lk = link_by(l, in->device && *in->device ? in->device : in->name, in->hwaddr, &set_mac)))
                cc_error_set(&err, -ENOENT, "no link with hwaddr '%.32s' or name '%.16s'", in->hwaddr ? in->hwaddr : "",
                             in->name ? in->name : "");
        if (!err && set_mac && (parse_mac(in->hwaddr, mac, &maclen) < 0 || maclen != 6))
                cc_error_set(&err, -EINVAL, "bad hwaddr '%.32s'", in->hwaddr);
        if (!err && set_mac) {
                log_info("rpc=UpdateInterface link=%s hwaddr %s -> %s", lk->name, lk->hwaddr, in->hwaddr);
                /* the address changes with the link down */
                if ((r = agent_nl_link_set(lk->index, NULL, 0, false)) < 0 ||
                    (r = agent_nl_link_set_mac(lk->index, mac, maclen)) < 0)
                        cc_error_set(&err, r, "set hwaddr of %s: %s", lk->name, strerror(-r));
        }
        if (!err) {
                log_info("rpc=UpdateInterface link=%s", lk->name);
                /* The link ends up with exactly the requested addresses (and
                 * its IPv6 link-local ones); what it has already is left
                 * alone: every netlink change is costly in an emulated guest. */
                bool have[AGENT_NL_ADDRS] = { false };
                for (size_t i = 0; i < lk->n_addrs; i++) {
                        unsigned char a[16];
                        int fam;
                        if (parse_ip(lk->addrs[i].addr, lk->addrs[i].family, &fam, a) < 0 ||
                            (fam == AF_INET6 && a[0] == 0xfe && (a[1] & 0xc0) == 0x80)) /* keep link-local */
                                continue;
                        bool wanted = false;
                        for (size_t j = 0; j < in->n_ipaddresses && !wanted; j++)
                                if (addrs[j].family == fam && addrs[j].prefix == lk->addrs[i].prefix &&
                                    memcmp(addrs[j].a, a, fam == AF_INET ? 4 : 16) == 0)
                                        wanted = have[j] = true;
                        if (!wanted)
                                agent_nl_addr_change(false, lk->index, fam, a, lk->addrs[i].prefix);
                }
                for (size_t i = 0; i < in->n_ipaddresses && r >= 0; i++)
                        if (!have[i])
                                r = agent_nl_addr_change(true, lk->index, addrs[i].family, addrs[i].a,
                                                         addrs[i].prefix);
                const char *newname = in->name && *in->name && strcmp(in->name, lk->name) ? in->name : NULL;
                if (r >= 0 && newname) /* renaming needs the link down */
                        r = agent_nl_link_set(lk->index, NULL, 0, false);
                if (r >= 0 && (newname || set_mac || !(lk->flags & IFF_UP) || (in->mtu && in->mtu != lk->mtu)))
                        r = agent_nl_link_set(lk->index, newname, (uint32_t)in->mtu, true);
                if (r < 0)
                        cc_error_set(&err, r, "configure %s: %s", lk->name, strerror(-r));
        }
        if (err) {
                agent_reply_fail(call, "UpdateInterface", NULL, err);
        } else {
                int idx = lk->index;
                r = agent_nl_list_links(l);
                for (size_t i = 0; r >= 0 && i < l->n; i++)
                        if (l->v[i].index == idx) {
                                Types__Interface ifc;
                                Types__IPAddress a[AGENT_NL_ADDRS], *ap[AGENT_NL_ADDRS];
                                char masks[AGENT_NL_ADDRS][4];
                                fill_iface(&ifc, a, ap, masks, &l->v[i]);
                                ttrpc_call_reply_pb(call, &ifc.base);
                                call = NULL;
                                break;
                        }
                if (call)
                        ttrpc_call_reply_status(call, TTRPC_CODE_INTERNAL, "link vanished");
        }
        protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void h_update_routes(ttrpc_call *call, const uint8_t *pl, size_t len, void *ud)
{
        Grpc__UpdateRoutesRequest *req = (void *)agent_unpack(call, &grpc__update_routes_request__descriptor, pl, len);
        if (!req)
                return;
        _cleanup_error_ cc_error *err = NULL;
        _cleanup_free_ agent_nl_links *l = calloc(1, sizeof(*l));
        size_t n = req->routes ? req->routes->n_routes : 0;
        _cleanup_free_ agent_nl_route_spec *sp = calloc(n + 1, sizeof(*sp));
        int r = l && sp ? agent_nl_list_links(l) : -ENOMEM;
        if (r < 0)
                cc_error_set(&err, r, "list links: %s", strerror(-r));
        else if (n > MAX_ITEMS)
                cc_error_set(&err, -EINVAL, "too many routes");
        for (size_t i = 0; !err && i < n; i++) {
                const Types__Route *rt = req->routes->routes[i];
                agent_nl_route_spec *s = &sp[i];
                int fam = family_of(rt->family), gf;
                if (parse_prefix(rt->dest, fam, &s->family, s->dst, &s->dst_len) < 0) {
                        cc_error_set(&err, -EINVAL, "route %zu: bad destination '%.64s'", i, rt->dest);
                        break;
                }
                if (rt->gateway && *rt->gateway) {
                        if (parse_ip(rt->gateway, s->family, &gf, s->gw) < 0) {
                                cc_error_set(&err, -EINVAL, "route %zu: bad gateway '%.64s'", i, rt->gateway);
                                break;
                        }
                        s->has_gw = true;
                }
                if (rt->source && *rt->source) {
                        if (parse_ip(rt->source, s->family, &gf, s->src) < 0) {
                                cc_error_set(&err, -EINVAL, "route %zu: bad source '%.64s'", i, rt->source);
                                break;
                        }
                        s->has_src = true;
                }
                if (rt->scope > 255) {
                        cc_error_set(&err, -EINVAL, "route %zu: scope %u", i, rt->scope);
                        break;
                }
                s->scope = (int)rt->scope;
                agent_nl_link *lk = rt->device && *rt->device ? link_by(l, rt->device, NULL, &(bool){ false }) : NULL;
                if (rt->device && *rt->device && !lk) {
                        cc_error_set(&err, -ENOENT, "route %zu: no device '%.16s'", i, rt->device);
                        break;
                }
                s->oif = lk ? lk->index : 0;
        }
        /* Routes with a gateway first need their link routes: add in two
         * passes, gateway-less (link scope) before the others. */
        for (int pass = 0; !err && pass < 2; pass++)
                for (size_t i = 0; !err && i < n; i++) {
                        if (sp[i].has_gw != (pass == 1))
                                continue;
                        r = agent_nl_route_change(true, &sp[i]);
                        if (r < 0)
                                cc_error_set(&err, r, "add route %zu (%s): %s", i, req->routes->routes[i]->dest,
                                             strerror(-r));
                }
        if (err)
                agent_reply_fail(call, "UpdateRoutes", NULL, err);
        else
                reply_routes(call);
        protobuf_c_message_free_unpacked(&req->base, NULL);
}

static int parse_mac(const char *s, unsigned char out[8], size_t *ret_len)
{
        size_t n = 0;
        if (!s || !*s) {
                *ret_len = 0;
                return 0;
        }
        for (const char *p = s; *p; ) {
                unsigned v;
                int used;
                if (n >= 8 || sscanf(p, "%2x%n", &v, &used) != 1)
                        return -EINVAL;
                out[n++] = (unsigned char)v;
                p += used;
                if (*p == ':')
                        p++;
                else if (*p)
                        return -EINVAL;
        }
        *ret_len = n;
        return 0;
}

static void h_add_arp(ttrpc_call *call, const uint8_t *pl, size_t len, void *ud)
{
        Grpc__AddARPNeighborsRequest *req =
                (void *)agent_unpack(call, &grpc__add_arpneighbors_request__descriptor, pl, len);
        if (!req)
                return;
        _cleanup_error_ cc_error *err = NULL;
        _cleanup_free_ agent_nl_links *l = calloc(1, sizeof(*l));
        size_t n = req->neighbors ? req->neighbors->n_arpneighbors : 0;
        int r = l ? agent_nl_list_links(l) : -ENOMEM;
        if (r < 0)
                cc_error_set(&err, r, "list links: %s", strerror(-r));
        else if (n > MAX_ITEMS)
                cc_error_set(&err, -EINVAL, "too many neighbours");
        for (size_t i = 0; !err && i < n; i++) {
                const Types__ARPNeighbor *nb = req->neighbors->arpneighbors[i];
                unsigned char ip[16], mac[8];
                size_t maclen;
                int fam;
                agent_nl_link *lk = nb->device ? link_by(l, nb->device, NULL, &(bool){ false }) : NULL;
                if (!nb->toipaddress || parse_ip(nb->toipaddress->address, 0, &fam, ip) < 0 ||
                    parse_mac(nb->lladdr, mac, &maclen) < 0 || nb->state < 0 || nb->state > 0xffff ||
                    nb->flags < 0 || nb->flags > 0xff)
                        cc_error_set(&err, -EINVAL, "neighbour %zu: bad address, lladdr, state or flags", i);
                else if (!lk)
                        cc_error_set(&err, -ENOENT, "neighbour %zu: no device '%.16s'", i, nb->device ? nb->device : "");
                else if ((r = agent_nl_neigh_add(lk->index, fam, ip, mac, maclen, (uint16_t)nb->state,
                                                 (uint8_t)nb->flags)) < 0)
                        cc_error_set(&err, r, "neighbour %zu: %s", i, strerror(-r));
        }
        if (err)
                agent_reply_fail(call, "AddARPNeighbors", NULL, err);
        else
                agent_reply_empty(call);
        protobuf_c_message_free_unpacked(&req->base, NULL);
}

void agent_rpc_register_net(ttrpc_server *s)
{
        static const struct { const char *method; ttrpc_handler_fn fn; } tab[] = {
                { "ListInterfaces", h_list_ifaces }, { "ListRoutes", h_list_routes },
                { "UpdateInterface", h_update_iface }, { "UpdateRoutes", h_update_routes },
                { "AddARPNeighbors", h_add_arp },
        };
        for (size_t i = 0; i < CC_ARRAY_SIZE(tab); i++)
                ttrpc_server_register(s, "grpc.AgentService", tab[i].method, tab[i].fn, NULL, NULL);
}
