/* SPDX-License-Identifier: Apache-2.0 */
/* A pod's network: netns + CNI ADD/DEL + (VM pods) the tap mirror of each
 * CNI interface in the pod, and what the guest must configure. */
#include "runtime/pod-net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/neighbour.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <netlink/netlink.h>
#include <netlink/route/link.h>
#include <netlink/route/neighbour.h>

#include "common/cleanup.h"
#include "common/json.h"
#include "common/log.h"
#include "common/undo.h"
#include "net-cni/conf.h"
#include "net-cni/exec.h"
#include "net-cni/netns.h"
#include "net-cni/result.h"
#include "net-cni/tap.h"

#define PN_MAX_NICS 16
#define PN_MAX_ROUTES 256
#define PN_MAX_IPS 32
#define PN_MAX_NEIGHS 128
#define PN_SAVED_MAX_NETWORK (1024 * 1024)
#define PN_IPS_PER_NIC (sizeof(((rt_pod_nic *)0)->ips) / sizeof(rt_agent_ip))

struct rt_net {
        cni_conf_loader *loader;
        char *conf_dir, *netns_dir, *cache_dir;
        char **bin_dirs;
        int timeout_ms;
};

typedef struct pn_route_store {
        char dest[INET6_ADDRSTRLEN + 4];
        char gw[INET6_ADDRSTRLEN];
        char dev[IFNAMSIZ];
} pn_route_store;

typedef struct pn_neigh_store {
        char ip[INET6_ADDRSTRLEN];
        char lladdr[18];
        char dev[IFNAMSIZ];
} pn_neigh_store;

/* What rt_pod_net hands out is the first member of this. */
typedef struct pn_priv {
        rt_pod_net pub;
        char *sandbox_id, *pod_name, *pod_namespace, *pod_uid;
        json_object *network;     /* the conflist that ADD used (DEL after a restart) */
        char (*ifnames)[IFNAMSIZ]; /* per NIC: the CNI interface = the guest's name */
        pn_route_store *rstore;   /* backs pub.routes' strings */
        pn_neigh_store *nstore;   /* backs pub.neighs' strings */
        bool vm, torn_down;
} pn_priv;

static pn_priv *priv_of(rt_pod_net *pn) { return (pn_priv *)pn; }

/* ---- rt_net ------------------------------------------------------------------ */

int rt_net_new(const cc_config *cfg, rt_net **ret, cc_error **ret_err)
{
        if (!cfg)
                return cc_error_set(ret_err, -EINVAL, "pod network: no configuration");
        rt_net *n = calloc(1, sizeof *n);
        if (!n)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        size_t nb = 0;
        while (cfg->cni.bin_dirs && cfg->cni.bin_dirs[nb])
                nb++;
        n->bin_dirs = calloc(nb + 1, sizeof(char *));
        n->conf_dir = strdup(cfg->cni.conf_dir);
        n->netns_dir = strdup(cfg->cni.netns_dir);
        n->cache_dir = strdup(cfg->cni.cache_dir);
        bool ok = n->bin_dirs && n->conf_dir && n->netns_dir && n->cache_dir;
        for (size_t i = 0; ok && i < nb; i++)
                ok = (n->bin_dirs[i] = strdup(cfg->cni.bin_dirs[i])) != NULL;
        if (ok)
                ok = (n->loader = cni_conf_loader_new(n->conf_dir)) != NULL;
        if (!ok) {
                rt_net_free(n);
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        n->timeout_ms = (int)(cfg->cni.plugin_timeout * 1000);
        *ret = n;
        return 0;
}

void rt_net_free(rt_net *n)
{
        if (!n)
                return;
        cni_conf_loader_free(n->loader);
        cc_strv_free(n->bin_dirs);
        free(n->conf_dir);
        free(n->netns_dir);
        free(n->cache_dir);
        free(n);
}

static cni_exec_ctx exec_ctx(const rt_net *n)
{
        cni_exec_ctx c = { .bin_dirs = n->bin_dirs, .cache_dir = n->cache_dir, .timeout_ms = n->timeout_ms };
        return c;
}

int rt_net_ready(rt_net *n, cc_error **ret_err)
{
        if (!n)
                return cc_error_set(ret_err, -EINVAL, "pod network: not initialised");
        _cleanup_netconf_ cni_netconf *net = NULL;
        int r = cni_conf_loader_get(n->loader, &net, ret_err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < net->n_plugins; i++) {
                _cleanup_free_ char *path = NULL;
                cc_error *err = NULL;
                if ((r = cni_find_plugin(n->bin_dirs, net->plugins[i].type, &path, &err)) < 0) {
                        cc_error_prefix(&err, "network '%s' (%s)", net->name, net->path);
                        return cc_error_propagate(ret_err, err);
                }
        }
        return 0;
}

/* ---- rt_pod_net lifetime ------------------------------------------------------ */

static pn_priv *priv_new(void)
{
        pn_priv *p = calloc(1, sizeof *p);
        if (!p)
                return NULL;
        p->pub.extra_ips = calloc(1, sizeof(char *));
        p->pub.ip = strdup("");
        if (!p->pub.extra_ips || !p->pub.ip) {
                free(p->pub.extra_ips);
                free(p->pub.ip);
                free(p);
                return NULL;
        }
        return p;
}

static void close_taps(rt_pod_net *pn)
{
        for (size_t i = 0; i < pn->n_nics; i++)
                if (pn->nics[i].tap_fd >= 0) {
                        close(pn->nics[i].tap_fd);
                        pn->nics[i].tap_fd = -1;
                }
}

void rt_pod_net_free(rt_pod_net *pn)
{
        if (!pn)
                return;
        pn_priv *p = priv_of(pn);
        close_taps(pn);
        free(pn->netns_path);
        free(pn->ip);
        cc_strv_free(pn->extra_ips);
        free(pn->nics);
        free(pn->routes);
        free(p->sandbox_id);
        free(p->pod_name);
        free(p->pod_namespace);
        free(p->pod_uid);
        if (p->network)
                json_object_put(p->network);
        free(p->ifnames);
        free(p->rstore);
        free(pn->neighs);
        free(p->nstore);
        free(p);
}

static void priv_freep(pn_priv **p) { if (*p) rt_pod_net_free(&(*p)->pub); }
#define _cleanup_priv_ _cleanup_(priv_freep)

static int dup_opt(const char *s, char **ret)
{
        *ret = s ? strdup(s) : NULL;
        return s && !*ret ? -ENOMEM : 0;
}

/* Allocates n NICs (and their name slots) and up to max_routes routes. */
static int alloc_nics(pn_priv *p, size_t n, size_t max_routes)
{
        p->pub.nics = calloc(n ? n : 1, sizeof(rt_pod_nic));
        p->ifnames = calloc(n ? n : 1, IFNAMSIZ);
        p->pub.routes = calloc(max_routes ? max_routes : 1, sizeof(rt_agent_route));
        p->rstore = calloc(max_routes ? max_routes : 1, sizeof(pn_route_store));
        if (!p->pub.nics || !p->ifnames || !p->pub.routes || !p->rstore)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                p->pub.nics[i].tap_fd = -1;
        return 0;
}

/* Points the NIC's agent view at its own fields. */
static void nic_link(pn_priv *p, size_t i, size_t n_ips)
{
        rt_pod_nic *nic = &p->pub.nics[i];
        nic->iface.name = p->ifnames[i];
        nic->iface.mac = nic->mac;
        nic->iface.mtu = nic->mtu;
        nic->iface.ips = nic->ips;
        nic->iface.n_ips = n_ips;
}

static int add_route(pn_priv *p, size_t max, int family, const char *dest, const char *gw, const char *dev)
{
        if (p->pub.n_routes >= max)
                return -E2BIG;
        pn_route_store *s = &p->rstore[p->pub.n_routes];
        if (strlen(dest) >= sizeof s->dest || strlen(gw) >= sizeof s->gw || strlen(dev) >= sizeof s->dev)
                return -EINVAL;
        strcpy(s->dest, dest);
        strcpy(s->gw, gw);
        strcpy(s->dev, dev);
        rt_agent_route *r = &p->pub.routes[p->pub.n_routes++];
        r->family = family;
        r->dest = s->dest;
        r->gateway = s->gw;
        r->device = s->dev;
        return 0;
}

/* The route the kernel adds by itself for an address ("10.1.2.0/24 dev eth0
 * proto kernel scope link"): the guest's kernel adds it too when the agent
 * sets the address, and sending it would only replace it with a
 * universe-scope copy, through which no gateway is reachable. */
static bool is_prefix_route(const cni_tap_route *rt, const rt_pod_nic *nic)
{
        if (rt->gw[0])
                return false;
        for (size_t k = 0; k < nic->iface.n_ips; k++) {
                const rt_agent_ip *ip = &nic->ips[k];
                unsigned char a[16];
                if (ip->family != rt->family || inet_pton(ip->family, ip->addr, a) != 1)
                        continue;
                int bits = ip->prefixlen, len = ip->family == AF_INET ? 4 : 16;
                for (int b = 0; b < len; b++) {
                        int keep = bits >= 8 ? 8 : bits > 0 ? bits : 0;
                        a[b] &= (unsigned char)(0xff << (8 - keep));
                        bits -= keep;
                }
                char net[INET6_ADDRSTRLEN], cidr[INET6_ADDRSTRLEN + 4];
                inet_ntop(ip->family, a, net, sizeof net);
                snprintf(cidr, sizeof cidr, "%s/%d", net, ip->prefixlen);
                if (strcmp(cidr, rt->dst) == 0)
                        return true;
        }
        return false;
}

/* Fills NIC i from the veth's description (tap: NULL when not mirrored). */
static int nic_fill(pn_priv *p, size_t i, const cni_tap_info *info, const char *tap, int tap_fd, size_t max_routes,
                    cc_error **ret_err)
{
        rt_pod_nic *nic = &p->pub.nics[i];
        snprintf(p->ifnames[i], IFNAMSIZ, "%s", info->veth);
        snprintf(nic->tap, sizeof nic->tap, "%s", tap ? tap : "");
        snprintf(nic->mac, sizeof nic->mac, "%s", info->mac);
        nic->mtu = info->mtu;
        nic->tap_fd = tap_fd;
        size_t k = 0;
        for (size_t j = 0; j < info->n_addrs && k < PN_IPS_PER_NIC; j++) {
                rt_agent_ip *ip = &nic->ips[k++];
                ip->family = info->addrs[j].family;
                snprintf(ip->addr, sizeof ip->addr, "%s", info->addrs[j].addr);
                ip->prefixlen = info->addrs[j].prefixlen;
        }
        nic_link(p, i, k);
        for (size_t j = 0; j < info->n_routes; j++) {
                const cni_tap_route *rt = &info->routes[j];
                if (is_prefix_route(rt, nic))
                        continue;
                int r = add_route(p, max_routes, rt->family, rt->dst, rt->gw, info->veth);
                if (r < 0)
                        return cc_error_set(ret_err, r, "pod network: routes of %s: %s", info->veth,
                                            r == -E2BIG ? "too many" : "invalid");
        }
        return 0;
}

static char *strip_prefix(const char *cidr)
{
        char *s = strdup(cidr);
        if (s) {
                char *slash = strchr(s, '/');
                if (slash)
                        *slash = 0;
        }
        return s;
}

/* Pod IPs: the addresses CNI gave the pod's interfaces, IPv4 first (as
 * containerd picks the primary). */
static int fill_ips(pn_priv *p, const cni_result *res)
{
        const cni_ip *primary = cni_result_first_ip(res, AF_INET);
        if (!primary)
                primary = cni_result_first_ip(res, AF_INET6);
        if (!primary)
                return 0;
        free(p->pub.ip);
        if (!(p->pub.ip = strip_prefix(primary->address)))
                return -ENOMEM;
        size_t n = 0;
        for (size_t i = 0; i < res->n_ips && n < PN_MAX_IPS; i++) {
                const cni_ip *ip = &res->ips[i];
                if (ip == primary)
                        continue;
                if (ip->interface >= 0 && ((size_t)ip->interface >= res->n_interfaces ||
                                           !*res->interfaces[ip->interface].sandbox))
                        continue;
                char **v = realloc(p->pub.extra_ips, (n + 2) * sizeof(char *));
                if (!v)
                        return -ENOMEM;
                p->pub.extra_ips = v;
                if (!(v[n] = strip_prefix(ip->address)))
                        return -ENOMEM;
                v[++n] = NULL;
        }
        return 0;
}

static const char *proto_name(int p)
{
        switch (p) {
        case IPPROTO_TCP: return "tcp";
        case IPPROTO_UDP: return "udp";
        case IPPROTO_SCTP: return "sctp";
        default: return NULL;
        }
}

/* ---- teardown pieces (also the undo steps of setup) ---------------------------- */

static int run_del(rt_net *n, pn_priv *p, const char *sandbox_id, const char *netns, cc_error **ret_err)
{
        _cleanup_netconf_ cni_netconf *net = NULL;
        cc_error *err = NULL;
        if (p && p->network)
                net = cni_netconf_from_json(p->network, "saved pod network", &err);
        if (!net) {
                cc_error_free(err);
                err = NULL;
                if (cni_conf_loader_get(n->loader, &net, &err) < 0) {
                        cc_error_prefix(&err, "pod network: CNI DEL of %s", sandbox_id);
                        return cc_error_propagate(ret_err, err);
                }
        }
        cni_exec_ctx ctx = exec_ctx(n);
        cni_pod pod = { .container_id = sandbox_id, .netns = netns,
                        .pod_name = p ? p->pod_name : NULL, .pod_namespace = p ? p->pod_namespace : NULL,
                        .pod_uid = p ? p->pod_uid : NULL };
        int r = cni_del(&ctx, net, &pod, NULL, &err);
        if (r < 0) {
                cc_error_prefix(&err, "pod network");
                return cc_error_propagate(ret_err, err);
        }
        return 0;
}

static void keep_first(cc_error **first, cc_error *e)
{
        if (!e)
                return;
        if (*first)
                cc_error_free(e);
        else
                *first = e;
}

typedef struct undo_arg {
        rt_net *n;
        pn_priv *p;
        size_t i;
} undo_arg;

static void undo_tap(void *arg)
{
        undo_arg *u = arg;
        rt_pod_nic *nic = &u->p->pub.nics[u->i];
        if (nic->tap_fd >= 0)
                close(TAKE_FD(nic->tap_fd));
        _cleanup_error_ cc_error *err = NULL;
        if (cni_tap_teardown(u->p->pub.netns_path, u->p->ifnames[u->i], nic->tap, &err) < 0)
                log_debug("pod network: undo tap %s: %s", nic->tap, err->msg);
}

static void undo_del(void *arg)
{
        undo_arg *u = arg;
        _cleanup_error_ cc_error *err = NULL;
        if (run_del(u->n, u->p, u->p->sandbox_id, u->p->pub.netns_path, &err) < 0)
                log_debug("pod network: undo CNI ADD of %s: %s", u->p->sandbox_id, err->msg);
}

static void undo_netns(void *arg)
{
        undo_arg *u = arg;
        _cleanup_error_ cc_error *err = NULL;
        if (cni_netns_remove(u->p->pub.netns_path, &err) < 0)
                log_debug("pod network: undo netns %s: %s", u->p->pub.netns_path, err->msg);
}

static int push(cc_undo *undo, cc_undo_fn fn, rt_net *n, pn_priv *p, size_t i, cc_error **ret_err)
{
        undo_arg *u = malloc(sizeof *u);
        if (!u) {
                fn(&(undo_arg){ n, p, i });
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        *u = (undo_arg){ n, p, i };
        if (cc_undo_push(undo, fn, u, free) < 0)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        return 0;
}

/* ---- permanent neighbours ------------------------------------------------------- */

/* Takes over ns[0..n) as the pod's neighbours. */
static int neighs_adopt(pn_priv *p, pn_neigh_store *ns, size_t n)
{
        rt_agent_neigh *v = calloc(n ? n : 1, sizeof *v);
        if (!v) {
                free(ns);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++)
                v[i] = (rt_agent_neigh){ .ip = ns[i].ip, .lladdr = ns[i].lladdr, .device = ns[i].dev };
        free(p->pub.neighs);
        free(p->nstore);
        p->pub.neighs = v;
        p->pub.n_neighs = n;
        p->nstore = ns;
        return 0;
}

typedef struct neigh_scan {
        const pn_priv *p;
        int ifindex[PN_MAX_NICS];
        pn_neigh_store *out;
        size_t n;
        int err;
} neigh_scan;

static void neigh_cb(struct nl_object *obj, void *arg)
{
        neigh_scan *c = arg;
        struct rtnl_neigh *nb = (struct rtnl_neigh *)obj;
        int state = rtnl_neigh_get_state(nb);
        if (c->err || state < 0 || !(state & NUD_PERMANENT) || (rtnl_neigh_get_flags(nb) & NTF_PROXY))
                return;
        size_t k = 0, nn = c->p->pub.n_nics;
        while (k < nn && c->ifindex[k] != rtnl_neigh_get_ifindex(nb))
                k++;
        struct nl_addr *dst = rtnl_neigh_get_dst(nb), *ll = rtnl_neigh_get_lladdr(nb);
        int fam = dst ? nl_addr_get_family(dst) : AF_UNSPEC;
        if (k == nn || !ll || nl_addr_get_len(ll) != 6 ||
            !((fam == AF_INET && nl_addr_get_len(dst) == 4) || (fam == AF_INET6 && nl_addr_get_len(dst) == 16)))
                return; /* another interface, or no Ethernet address to replay */
        if (c->n >= PN_MAX_NEIGHS) {
                c->err = -E2BIG;
                return;
        }
        pn_neigh_store *t = &c->out[c->n++];
        inet_ntop(fam, nl_addr_get_binary_addr(dst), t->ip, sizeof t->ip);
        const unsigned char *m = nl_addr_get_binary_addr(ll);
        snprintf(t->lladdr, sizeof t->lladdr, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
        snprintf(t->dev, sizeof t->dev, "%s", c->p->ifnames[k]);
}

static inline void nl_sockp(struct nl_sock **s) { if (*s) nl_socket_free(*s); }
static inline void nl_cachep(struct nl_cache **c) { if (*c) nl_cache_free(*c); }

/* Runs inside the pod's netns. */
static int neigh_scan_fn(void *userdata, cc_error **ret_err)
{
        neigh_scan *c = userdata;
        _cleanup_(nl_sockp) struct nl_sock *sk = nl_socket_alloc();
        if (!sk)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        int e = nl_connect(sk, NETLINK_ROUTE);
        if (e < 0)
                return cc_error_set(ret_err, -EIO, "netlink: %s", nl_geterror(e));
        fcntl(nl_socket_get_fd(sk), F_SETFD, FD_CLOEXEC);
        _cleanup_(nl_cachep) struct nl_cache *links = NULL, *neighs = NULL;
        if ((e = rtnl_link_alloc_cache(sk, AF_UNSPEC, &links)) < 0)
                return cc_error_set(ret_err, -EIO, "list interfaces: %s", nl_geterror(e));
        for (size_t k = 0; k < c->p->pub.n_nics; k++)
                if (!(c->ifindex[k] = rtnl_link_name2i(links, c->p->ifnames[k])))
                        return cc_error_set(ret_err, -ENOENT, "interface '%s' is gone", c->p->ifnames[k]);
        if ((e = rtnl_neigh_alloc_cache(sk, &neighs)) < 0)
                return cc_error_set(ret_err, -EIO, "list neighbours: %s", nl_geterror(e));
        nl_cache_foreach(neighs, neigh_cb, c);
        if (c->err == -E2BIG)
                return cc_error_set(ret_err, -E2BIG, "more than %d permanent neighbours", PN_MAX_NEIGHS);
        return 0;
}

/* Records the permanent neighbours of the pod's interfaces, for the guest. */
static int read_neighs(pn_priv *p, cc_error **ret_err)
{
        neigh_scan c = { .p = p, .out = calloc(PN_MAX_NEIGHS, sizeof(pn_neigh_store)) };
        if (!c.out)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        cc_error *err = NULL;
        if (cni_netns_run(p->pub.netns_path, neigh_scan_fn, &c, &err) < 0) {
                free(c.out);
                cc_error_prefix(&err, "pod network: permanent neighbours");
                return cc_error_propagate(ret_err, err);
        }
        if (neighs_adopt(p, c.out, c.n) < 0)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        return 0;
}

/* ---- setup --------------------------------------------------------------------- */

static int check_req(const rt_pod_net_req *req, cc_error **ret_err)
{
        if (!req || !req->sandbox_id || !*req->sandbox_id)
                return cc_error_set(ret_err, -EINVAL, "pod network: no sandbox id");
        if (req->n_ports > 1024)
                return cc_error_set(ret_err, -EINVAL, "pod network: %zu port mappings, at most 1024", req->n_ports);
        for (size_t i = 0; i < req->n_ports; i++) {
                const rt_port_mapping *m = &req->ports[i];
                if (!proto_name(m->protocol))
                        return cc_error_set(ret_err, -EINVAL, "pod network: port mapping %zu: unknown protocol %d", i,
                                            m->protocol);
                /* host_port 0: published nowhere (skipped below). */
                if (m->host_port < 0 || m->host_port > 65535 ||
                    (m->host_port > 0 && (m->container_port < 1 || m->container_port > 65535)))
                        return cc_error_set(ret_err, -EINVAL, "pod network: port mapping %zu: port out of range "
                                            "(container %d, host %d)", i, m->container_port, m->host_port);
                unsigned char bin[16];
                if (m->host_ip && *m->host_ip && inet_pton(AF_INET, m->host_ip, bin) != 1 &&
                    inet_pton(AF_INET6, m->host_ip, bin) != 1)
                        return cc_error_set(ret_err, -EINVAL, "pod network: port mapping %zu: host IP '%.64s' is not "
                                            "an IP address", i, m->host_ip);
        }
        return 0;
}

int rt_pod_net_setup(rt_net *n, const rt_pod_net_req *req, rt_pod_net **ret, cc_error **ret_err)
{
        int r = check_req(req, ret_err);
        if (r < 0)
                return r;
        if (!n)
                return cc_error_set(ret_err, -EINVAL, "pod network: not initialised");
        _cleanup_netconf_ cni_netconf *net = NULL;
        if ((r = cni_conf_loader_get(n->loader, &net, ret_err)) < 0)
                return r;

        /* Mappings without a host port publish nothing (as containerd). */
        _cleanup_free_ cni_port_mapping *ports = calloc(req->n_ports + 1, sizeof *ports);
        if (!ports)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        size_t np = 0;
        for (size_t i = 0; i < req->n_ports; i++) {
                if (req->ports[i].host_port <= 0)
                        continue;
                ports[np++] = (cni_port_mapping){ .host_port = req->ports[i].host_port,
                                                  .container_port = req->ports[i].container_port,
                                                  .protocol = proto_name(req->ports[i].protocol),
                                                  .host_ip = req->ports[i].host_ip };
        }
        cni_runtime_conf rtc = { .port_mappings = ports, .n_port_mappings = np,
                                 .dns_servers = req->dns_servers, .dns_searches = req->dns_searches,
                                 .dns_options = req->dns_options,
                                 .cgroup_path = req->cgroup_parent && *req->cgroup_parent ? req->cgroup_parent : NULL };

        _cleanup_priv_ pn_priv *p = priv_new();
        if (!p || dup_opt(req->sandbox_id, &p->sandbox_id) < 0 || dup_opt(req->pod_name, &p->pod_name) < 0 ||
            dup_opt(req->pod_namespace, &p->pod_namespace) < 0 || dup_opt(req->pod_uid, &p->pod_uid) < 0)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        p->vm = req->vm;
        /* A copy of our own: json-c objects are not safe to share across
         * threads (serialisation writes into the object). */
        if (json_object_deep_copy(net->raw, &p->network, NULL) < 0 || !p->network)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");

        /* Declared after p: runs before p is freed. */
        _cleanup_undo_ cc_undo undo = CC_UNDO_INIT;
        cc_error *err = NULL;
        if (req->adopt) {
                if (asprintf(&p->pub.netns_path, "%s/%s", n->netns_dir, req->sandbox_id) < 0)
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
                if (access(p->pub.netns_path, F_OK) < 0)
                        return cc_error_errno(ret_err, "pod network: pooled VM's netns %s", p->pub.netns_path);
        } else if ((r = cni_netns_create(n->netns_dir, req->sandbox_id, &p->pub.netns_path, &err)) < 0) {
                cc_error_prefix(&err, "pod network");
                return cc_error_propagate(ret_err, err);
        }
        if ((r = push(&undo, undo_netns, n, p, 0, ret_err)) < 0)
                return r;

        cni_exec_ctx ctx = exec_ctx(n);
        cni_pod pod = { .container_id = req->sandbox_id, .netns = p->pub.netns_path, .pod_name = req->pod_name,
                        .pod_namespace = req->pod_namespace, .pod_uid = req->pod_uid };
        _cleanup_result_ cni_result *res = NULL;
        if ((r = cni_add(&ctx, net, &pod, &rtc, &res, &err)) < 0) {
                cc_error_prefix(&err, "pod network");
                return cc_error_propagate(ret_err, err);
        }
        if ((r = push(&undo, undo_del, n, p, 0, ret_err)) < 0)
                return r;
        if (fill_ips(p, res) < 0)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");

        /* The pod's interfaces: those CNI put into the namespace. */
        size_t n_nics = 0;
        for (size_t i = 0; i < res->n_interfaces; i++)
                if (*res->interfaces[i].sandbox)
                        n_nics++;
        if (n_nics > PN_MAX_NICS)
                return cc_error_set(ret_err, -E2BIG, "pod network: %zu interfaces, at most %d", n_nics, PN_MAX_NICS);
        if (req->adopt && n_nics != 1)
                return cc_error_set(ret_err, -EXDEV,
                                    "pod network: %zu interfaces, but a VM from the pool has exactly one", n_nics);
        if (alloc_nics(p, n_nics, PN_MAX_ROUTES) < 0)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < res->n_interfaces; i++) {
                const cni_interface *ci = &res->interfaces[i];
                if (!*ci->sandbox)
                        continue;
                size_t k = p->pub.n_nics;
                _cleanup_(cni_tap_info_freep) cni_tap_info *info = NULL;
                if (req->vm) {
                        char tap[IFNAMSIZ];
                        snprintf(tap, sizeof tap, "tap%zu_cocoon", k);
                        int fd = -1;
                        if (req->adopt)
                                r = cni_tap_adopt(p->pub.netns_path, ci->name, RT_POOL_TAP, &info, &err);
                        else
                                r = cni_tap_setup(p->pub.netns_path, ci->name, tap, &fd, &info, &err);
                        if (r < 0) {
                                cc_error_prefix(&err, "pod network: mirror %s to %s", ci->name, tap);
                                return cc_error_propagate(ret_err, err);
                        }
                        p->pub.n_nics++;
                        snprintf(p->pub.nics[k].tap, sizeof p->pub.nics[k].tap, "%s", tap);
                        snprintf(p->ifnames[k], IFNAMSIZ, "%s", ci->name);
                        p->pub.nics[k].tap_fd = fd;
                        if ((r = push(&undo, undo_tap, n, p, k, ret_err)) < 0)
                                return r;
                        r = nic_fill(p, k, info, tap, fd, PN_MAX_ROUTES, ret_err);
                } else {
                        if ((r = cni_tap_describe(p->pub.netns_path, ci->name, &info, &err)) < 0) {
                                cc_error_prefix(&err, "pod network: describe %s", ci->name);
                                return cc_error_propagate(ret_err, err);
                        }
                        p->pub.n_nics++;
                        r = nic_fill(p, k, info, NULL, -1, PN_MAX_ROUTES, ret_err);
                }
                if (r < 0)
                        return r;
        }
        if (req->vm && (r = read_neighs(p, ret_err)) < 0)
                return r;
        log_debug("pod network: %s netns=%s ip=%s nics=%zu routes=%zu neighbours=%zu", req->sandbox_id,
                  p->pub.netns_path, p->pub.ip, p->pub.n_nics, p->pub.n_routes, p->pub.n_neighs);
        cc_undo_disarm(&undo);
        *ret = &TAKE_PTR(p)->pub;
        return 0;
}

/* ---- guest, teardown ------------------------------------------------------------ */

int rt_pod_net_configure_guest(const rt_pod_net *pn, rt_agent *a, cc_error **ret_err)
{
        if (!pn || !a)
                return cc_error_set(ret_err, -EINVAL, "pod network: configure guest: no network or agent");
        cc_error *err = NULL;
        for (size_t i = 0; i < pn->n_nics; i++) {
                if (rt_agent_update_interface(a, &pn->nics[i].iface, 0, &err) < 0) {
                        cc_error_prefix(&err, "pod network: guest interface %s (%s)", pn->nics[i].iface.name,
                                        pn->nics[i].mac);
                        return cc_error_propagate(ret_err, err);
                }
        }
        if (pn->n_routes && rt_agent_update_routes(a, pn->routes, pn->n_routes, 0, &err) < 0) {
                cc_error_prefix(&err, "pod network: guest routes");
                return cc_error_propagate(ret_err, err);
        }
        if (pn->n_neighs && rt_agent_add_arp_neighbors(a, pn->neighs, pn->n_neighs, 0, &err) < 0) {
                cc_error_prefix(&err, "pod network: guest neighbours");
                return cc_error_propagate(ret_err, err);
        }
        return 0;
}

int rt_pod_net_teardown(rt_net *n, const char *sandbox_id, rt_pod_net *pn, cc_error **ret_err)
{
        if (!n || !sandbox_id || !*sandbox_id)
                return cc_error_set(ret_err, -EINVAL, "pod network teardown: no network or sandbox id");
        pn_priv *p = pn ? priv_of(pn) : NULL;
        if (p && p->torn_down)
                return 0;
        _cleanup_free_ char *own_path = NULL;
        const char *netns = pn ? pn->netns_path : NULL;
        if (!netns) {
                if (asprintf(&own_path, "%s/%s", n->netns_dir, sandbox_id) < 0)
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
                netns = own_path;
        }
        cc_error *first = NULL, *err = NULL;
        if (pn) {
                close_taps(pn);
                for (size_t i = 0; i < pn->n_nics; i++) {
                        if (!pn->nics[i].tap[0])
                                continue;
                        if (cni_tap_teardown(netns, p->ifnames[i], pn->nics[i].tap, &err) < 0) {
                                cc_error_prefix(&err, "pod network: tap %s", pn->nics[i].tap);
                                keep_first(&first, TAKE_PTR(err));
                        }
                }
        } else if (cni_tap_teardown(netns, "eth0", CNI_TAP_DEFAULT_NAME, &err) < 0) {
                /* No record: the usual (only) tap. */
                cc_error_prefix(&err, "pod network: tap %s", CNI_TAP_DEFAULT_NAME);
                keep_first(&first, TAKE_PTR(err));
        }
        if (run_del(n, p, sandbox_id, netns, &err) < 0)
                keep_first(&first, TAKE_PTR(err));
        if (cni_netns_remove(netns, &err) < 0) {
                cc_error_prefix(&err, "pod network");
                keep_first(&first, TAKE_PTR(err));
        }
        if (first)
                return cc_error_propagate(ret_err, first);
        if (p)
                p->torn_down = true;
        log_debug("pod network: %s torn down", sandbox_id);
        return 0;
}

/* ---- save / load ------------------------------------------------------------------ */

static json_object *jstr(const char *s) { return json_object_new_string(s ? s : ""); }

int rt_pod_net_save(const rt_pod_net *pn, json_object **ret, cc_error **ret_err)
{
        if (!pn)
                return cc_error_set(ret_err, -EINVAL, "pod network save: nothing to save");
        const pn_priv *p = (const pn_priv *)pn;
        _cleanup_json_ json_object *o = json_object_new_object();
        json_object_object_add(o, "version", json_object_new_int(1));
        json_object_object_add(o, "netns", jstr(pn->netns_path));
        json_object_object_add(o, "ip", jstr(pn->ip));
        json_object *a = json_object_new_array();
        for (char **s = pn->extra_ips; s && *s; s++)
                json_object_array_add(a, jstr(*s));
        json_object_object_add(o, "extra_ips", a);
        json_object_object_add(o, "sandbox_id", jstr(p->sandbox_id));
        if (p->pod_name)
                json_object_object_add(o, "pod_name", jstr(p->pod_name));
        if (p->pod_namespace)
                json_object_object_add(o, "pod_namespace", jstr(p->pod_namespace));
        if (p->pod_uid)
                json_object_object_add(o, "pod_uid", jstr(p->pod_uid));
        json_object_object_add(o, "vm", json_object_new_boolean(p->vm));
        if (p->network)
                json_object_object_add(o, "network", json_object_get(p->network));
        a = json_object_new_array();
        for (size_t i = 0; i < pn->n_nics; i++) {
                const rt_pod_nic *nic = &pn->nics[i];
                json_object *e = json_object_new_object();
                json_object_object_add(e, "name", jstr(p->ifnames[i]));
                json_object_object_add(e, "tap", jstr(nic->tap));
                json_object_object_add(e, "mac", jstr(nic->mac));
                json_object_object_add(e, "mtu", json_object_new_int64(nic->mtu));
                json_object *ips = json_object_new_array();
                for (size_t k = 0; k < nic->iface.n_ips; k++) {
                        char s[64];
                        snprintf(s, sizeof s, "%s/%d", nic->ips[k].addr, nic->ips[k].prefixlen);
                        json_object_array_add(ips, jstr(s));
                }
                json_object_object_add(e, "ips", ips);
                json_object_array_add(a, e);
        }
        json_object_object_add(o, "nics", a);
        a = json_object_new_array();
        for (size_t i = 0; i < pn->n_routes; i++) {
                json_object *e = json_object_new_object();
                json_object_object_add(e, "family", json_object_new_int(pn->routes[i].family == AF_INET6 ? 6 : 4));
                json_object_object_add(e, "dest", jstr(pn->routes[i].dest));
                json_object_object_add(e, "gateway", jstr(pn->routes[i].gateway));
                json_object_object_add(e, "device", jstr(pn->routes[i].device));
                json_object_array_add(a, e);
        }
        json_object_object_add(o, "routes", a);
        a = json_object_new_array();
        for (size_t i = 0; i < pn->n_neighs; i++) {
                json_object *e = json_object_new_object();
                json_object_object_add(e, "ip", jstr(pn->neighs[i].ip));
                json_object_object_add(e, "lladdr", jstr(pn->neighs[i].lladdr));
                json_object_object_add(e, "device", jstr(pn->neighs[i].device));
                json_object_array_add(a, e);
        }
        json_object_object_add(o, "neighbors", a);
        *ret = TAKE_PTR(o);
        return 0;
}

static bool valid_ifname(const char *s)
{
        size_t n = strlen(s);
        return n > 0 && n < IFNAMSIZ && !strchr(s, '/') && !strchr(s, ':') && strcmp(s, ".") && strcmp(s, "..");
}

static bool valid_mac(const char *s)
{
        unsigned char m[6];
        char end;
        return strlen(s) == 17 &&
               sscanf(s, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx%c", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5], &end) == 6;
}

/* "ADDR/LEN" → rt_agent_ip. */
static int parse_cidr(const char *s, rt_agent_ip *ret)
{
        char buf[64];
        if (strlen(s) >= sizeof buf)
                return -EINVAL;
        strcpy(buf, s);
        char *slash = strchr(buf, '/');
        if (!slash)
                return -EINVAL;
        *slash = 0;
        char *end;
        long len = strtol(slash + 1, &end, 10);
        unsigned char bin[16];
        int fam = inet_pton(AF_INET, buf, bin) == 1 ? AF_INET : inet_pton(AF_INET6, buf, bin) == 1 ? AF_INET6 : 0;
        if (!fam || *end || end == slash + 1 || len < 0 || len > (fam == AF_INET ? 32 : 128))
                return -EINVAL;
        ret->family = fam;
        snprintf(ret->addr, sizeof ret->addr, "%s", buf);
        ret->prefixlen = (int)len;
        return 0;
}

static bool valid_ip(const char *s)
{
        unsigned char bin[16];
        return inet_pton(AF_INET, s, bin) == 1 || inet_pton(AF_INET6, s, bin) == 1;
}

static int load_neighs(pn_priv *p, json_object *neighs, cc_error **ret_err);

static int bad(cc_error **ret_err, const char *what)
{
        return cc_error_set(ret_err, -EINVAL, "pod network record: bad %s", what);
}

static int load_opt_str(json_object *o, const char *key, char **ret, cc_error **ret_err)
{
        const char *s = NULL;
        int r = cc_json_get_string(o, key, true, &s, ret_err);
        if (r < 0)
                return r;
        return dup_opt(s, ret) < 0 ? cc_error_set(ret_err, -ENOMEM, "out of memory") : 0;
}

static int load_nics(pn_priv *p, json_object *nics, json_object *routes, cc_error **ret_err)
{
        size_t nn = nics ? json_object_array_length(nics) : 0;
        size_t nr = routes ? json_object_array_length(routes) : 0;
        if (nn > PN_MAX_NICS || nr > PN_MAX_ROUTES)
                return bad(ret_err, "nics/routes (too many)");
        if (alloc_nics(p, nn, nr) < 0)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < nn; i++) {
                json_object *e = json_object_array_get_idx(nics, i);
                const char *name = NULL, *tap = NULL, *mac = NULL;
                int64_t mtu = 0;
                if (!json_object_is_type(e, json_type_object) || cc_json_get_string(e, "name", false, &name, NULL) < 0 ||
                    cc_json_get_string(e, "tap", false, &tap, NULL) < 0 ||
                    cc_json_get_string(e, "mac", false, &mac, NULL) < 0 ||
                    cc_json_get_int64(e, "mtu", false, &mtu, NULL) < 0)
                        return bad(ret_err, "nic");
                if (!valid_ifname(name) || (*tap && !valid_ifname(tap)) || (*mac && !valid_mac(mac)) || mtu < 0 ||
                    mtu > 65535)
                        return bad(ret_err, "nic name, tap, MAC or MTU");
                rt_pod_nic *nic = &p->pub.nics[i];
                strcpy(p->ifnames[i], name);
                strcpy(nic->tap, tap);
                strcpy(nic->mac, mac);
                nic->mtu = (unsigned)mtu;
                json_object *ips = cc_json_get_typed(e, "ips", json_type_array);
                size_t ni = ips ? json_object_array_length(ips) : 0;
                if (ni > PN_IPS_PER_NIC)
                        return bad(ret_err, "nic addresses (too many)");
                for (size_t k = 0; k < ni; k++) {
                        json_object *s = json_object_array_get_idx(ips, k);
                        if (!json_object_is_type(s, json_type_string) ||
                            parse_cidr(json_object_get_string(s), &nic->ips[k]) < 0)
                                return bad(ret_err, "nic address");
                }
                nic_link(p, i, ni);
                p->pub.n_nics++;
        }
        for (size_t i = 0; i < nr; i++) {
                json_object *e = json_object_array_get_idx(routes, i);
                const char *dest = NULL, *gw = NULL, *dev = NULL;
                int64_t fam = 0;
                if (!json_object_is_type(e, json_type_object) ||
                    cc_json_get_string(e, "dest", false, &dest, NULL) < 0 ||
                    cc_json_get_string(e, "gateway", false, &gw, NULL) < 0 ||
                    cc_json_get_string(e, "device", false, &dev, NULL) < 0 ||
                    cc_json_get_int64(e, "family", false, &fam, NULL) < 0 || (fam != 4 && fam != 6))
                        return bad(ret_err, "route");
                rt_agent_ip tmp;
                if ((*dest && parse_cidr(dest, &tmp) < 0) || (*gw && !valid_ip(gw)) || !valid_ifname(dev) ||
                    add_route(p, nr, fam == 6 ? AF_INET6 : AF_INET, dest, gw, dev) < 0)
                        return bad(ret_err, "route");
        }
        return 0;
}

int rt_pod_net_load(json_object *saved, rt_pod_net **ret, cc_error **ret_err)
{
        if (!json_object_is_type(saved, json_type_object))
                return bad(ret_err, "record (not an object)");
        int64_t version = 0;
        const char *netns = NULL, *ip = NULL;
        bool vm = false;
        int r;
        if ((r = cc_json_get_int64(saved, "version", false, &version, ret_err)) < 0 ||
            (r = cc_json_get_string(saved, "netns", false, &netns, ret_err)) < 0 ||
            (r = cc_json_get_string(saved, "ip", false, &ip, ret_err)) < 0 ||
            (r = cc_json_get_bool(saved, "vm", true, &vm, ret_err)) < 0) {
                cc_error_prefix(ret_err, "pod network record");
                return r;
        }
        if (version != 1)
                return cc_error_set(ret_err, -EINVAL, "pod network record: version %lld not supported",
                                    (long long)version);
        if (netns[0] != '/' || strstr(netns, "/../") || strlen(netns) > 4096)
                return bad(ret_err, "netns path");
        if (*ip && !valid_ip(ip))
                return bad(ret_err, "ip");
        _cleanup_priv_ pn_priv *p = priv_new();
        if (!p || !(p->pub.netns_path = strdup(netns)))
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        free(p->pub.ip);
        if (!(p->pub.ip = strdup(ip)))
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        p->vm = vm;
        if (load_opt_str(saved, "sandbox_id", &p->sandbox_id, ret_err) < 0 ||
            load_opt_str(saved, "pod_name", &p->pod_name, ret_err) < 0 ||
            load_opt_str(saved, "pod_namespace", &p->pod_namespace, ret_err) < 0 ||
            load_opt_str(saved, "pod_uid", &p->pod_uid, ret_err) < 0)
                return -EINVAL;
        json_object *extra = cc_json_get_typed(saved, "extra_ips", json_type_array);
        size_t ne = extra ? json_object_array_length(extra) : 0;
        if (ne > PN_MAX_IPS)
                return bad(ret_err, "extra_ips (too many)");
        char **v = realloc(p->pub.extra_ips, (ne + 1) * sizeof(char *));
        if (!v)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        p->pub.extra_ips = v;
        v[0] = NULL;
        for (size_t i = 0; i < ne; i++) {
                json_object *s = json_object_array_get_idx(extra, i);
                if (!json_object_is_type(s, json_type_string) || !valid_ip(json_object_get_string(s)))
                        return bad(ret_err, "extra_ips entry");
                if (!(v[i] = strdup(json_object_get_string(s))))
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
                v[i + 1] = NULL;
        }
        json_object *network = cc_json_get_typed(saved, "network", json_type_object);
        if (network) {
                /* Checked now so that a teardown cannot trip over it later. */
                cc_error *err = NULL;
                cni_netconf *nc = cni_netconf_from_json(network, "saved pod network", &err);
                if (!nc) {
                        cc_error_prefix(&err, "pod network record");
                        return cc_error_propagate(ret_err, err);
                }
                cni_netconf_unref(nc);
                p->network = json_object_get(network);
        }
        if ((r = load_nics(p, cc_json_get_typed(saved, "nics", json_type_array),
                           cc_json_get_typed(saved, "routes", json_type_array), ret_err)) < 0 ||
            (r = load_neighs(p, cc_json_get_typed(saved, "neighbors", json_type_array), ret_err)) < 0)
                return r;
        /* The VMM needs the tap fds again; a tap that is gone stays at -1. */
        if (vm && cni_netns_is_pinned(p->pub.netns_path))
                for (size_t i = 0; i < p->pub.n_nics; i++) {
                        rt_pod_nic *nic = &p->pub.nics[i];
                        if (!nic->tap[0])
                                continue;
                        _cleanup_error_ cc_error *err = NULL;
                        if (cni_tap_open(p->pub.netns_path, nic->tap, &nic->tap_fd, &err) < 0) {
                                nic->tap_fd = -1;
                                log_debug("pod network: reopen %s in %s: %s", nic->tap, p->pub.netns_path, err->msg);
                        }
                }
        *ret = &TAKE_PTR(p)->pub;
        return 0;
}

/* Each neighbour must sit on one of the record's NICs (a record without
 * "neighbors", from before they were kept, has none). */
static int load_neighs(pn_priv *p, json_object *neighs, cc_error **ret_err)
{
        size_t n = neighs ? json_object_array_length(neighs) : 0;
        if (n > PN_MAX_NEIGHS)
                return bad(ret_err, "neighbors (too many)");
        pn_neigh_store *ns = calloc(n ? n : 1, sizeof *ns);
        if (!ns)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                json_object *e = json_object_array_get_idx(neighs, i);
                const char *ip = NULL, *ll = NULL, *dev = NULL;
                size_t k = 0;
                if (json_object_is_type(e, json_type_object) && cc_json_get_string(e, "ip", false, &ip, NULL) == 0 &&
                    cc_json_get_string(e, "lladdr", false, &ll, NULL) == 0 &&
                    cc_json_get_string(e, "device", false, &dev, NULL) == 0)
                        while (k < p->pub.n_nics && strcmp(p->ifnames[k], dev))
                                k++;
                if (!ip || !valid_ip(ip) || !valid_mac(ll) || k == p->pub.n_nics) {
                        free(ns);
                        return bad(ret_err, "neighbor");
                }
                snprintf(ns[i].ip, sizeof ns[i].ip, "%s", ip);
                snprintf(ns[i].lladdr, sizeof ns[i].lladdr, "%s", ll);
                snprintf(ns[i].dev, sizeof ns[i].dev, "%s", dev);
        }
        return neighs_adopt(p, ns, n) < 0 ? cc_error_set(ret_err, -ENOMEM, "out of memory") : 0;
}
