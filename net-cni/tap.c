/* SPDX-License-Identifier: Apache-2.0 */
#include "net-cni/tap.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/if_tun.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <linux/tc_act/tc_mirred.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <netlink/netlink.h>
#include <netlink/route/act/mirred.h>
#include <netlink/route/addr.h>
#include <netlink/route/classifier.h>
#include <netlink/route/cls/u32.h>
#include <netlink/route/link.h>
#include <netlink/route/qdisc.h>
#include <netlink/route/route.h>
#include <netlink/route/tc.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "net-cni/netns.h"

#define TAP_FILTER_PRIO 49152
#define TAP_MAX_ADDRS 256
#define TAP_MAX_ROUTES 1024

static inline void nl_sockp(struct nl_sock **s) { if (*s) nl_socket_free(*s); }
static inline void link_putp(struct rtnl_link **l) { if (*l) rtnl_link_put(*l); }
static inline void cache_freep(struct nl_cache **c) { if (*c) nl_cache_free(*c); }
static inline void qdisc_putp(struct rtnl_qdisc **q) { if (*q) rtnl_qdisc_put(*q); }
static inline void cls_putp(struct rtnl_cls **c) { if (*c) rtnl_cls_put(*c); }
#define _cleanup_nl_sock_ _cleanup_(nl_sockp)
#define _cleanup_link_ _cleanup_(link_putp)
#define _cleanup_cache_ _cleanup_(cache_freep)
#define _cleanup_qdisc_ _cleanup_(qdisc_putp)
#define _cleanup_cls_ _cleanup_(cls_putp)

static int nlerr(int e)
{
        switch (-e) {
        case NLE_EXIST: return -EEXIST;
        case NLE_OBJ_NOTFOUND:
        case NLE_NODEV: return -ENOENT;
        case NLE_NOMEM: return -ENOMEM;
        case NLE_PERM: return -EPERM;
        case NLE_BUSY: return -EBUSY;
        case NLE_INVAL: return -EINVAL;
        case NLE_OPNOTSUPP: return -EOPNOTSUPP;
        default: return -EIO;
        }
}

static int nl_set(cc_error **ret_err, int e, const char *what, const char *dev)
{
        return cc_error_set(ret_err, nlerr(e), "%s '%s': %s", what, dev, nl_geterror(e));
}

void cni_tap_info_free(cni_tap_info *i)
{
        if (!i)
                return;
        free(i->addrs);
        free(i->routes);
        free(i);
}

static int check_ifname(const char *n, cc_error **ret_err)
{
        size_t len = n ? strlen(n) : 0;
        if (len == 0 || len >= IFNAMSIZ || strchr(n, '/') || strchr(n, ':') || !strcmp(n, ".") || !strcmp(n, ".."))
                return cc_error_set(ret_err, -EINVAL, "invalid interface name '%s'", n ? n : "");
        for (size_t i = 0; i < len; i++)
                if ((unsigned char)n[i] <= ' ' || (unsigned char)n[i] >= 0x7f)
                        return cc_error_set(ret_err, -EINVAL, "invalid interface name '%s'", n);
        return 0;
}

/* A route socket of the calling thread's namespace. */
static struct nl_sock *route_socket(cc_error **ret_err)
{
        struct nl_sock *sk = nl_socket_alloc();
        if (!sk) {
                cc_error_set(ret_err, -ENOMEM, "out of memory");
                return NULL;
        }
        int e = nl_connect(sk, NETLINK_ROUTE);
        if (e < 0) {
                cc_error_set(ret_err, nlerr(e), "netlink: %s", nl_geterror(e));
                nl_socket_free(sk);
                return NULL;
        }
        /* nl_connect does not set close-on-exec on every libnl version. */
        fcntl(nl_socket_get_fd(sk), F_SETFD, FD_CLOEXEC);
        return sk;
}

/* Opens /dev/net/tun attached to tap `name` (created if create). Must run in
 * the target namespace. */
static int tun_attach(const char *name, bool create, cc_error **ret_err)
{
        _cleanup_close_ int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
        if (fd < 0)
                return cc_error_errno(ret_err, "open /dev/net/tun");
        struct ifreq ifr = { 0 };
        ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
        strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
        if (ioctl(fd, TUNSETIFF, &ifr) < 0)
                return cc_error_errno(ret_err, "attach to tap '%s'", name);
        if (create) {
                if (ioctl(fd, TUNSETOWNER, 0UL) < 0)
                        return cc_error_errno(ret_err, "set owner of tap '%s'", name);
                if (ioctl(fd, TUNSETPERSIST, 1UL) < 0)
                        return cc_error_errno(ret_err, "make tap '%s' persistent", name);
        }
        return TAKE_FD(fd);
}

static int add_ingress_qdisc(struct nl_sock *sk, int ifindex, const char *dev, cc_error **ret_err)
{
        _cleanup_qdisc_ struct rtnl_qdisc *q = rtnl_qdisc_alloc();
        if (!q)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        rtnl_tc_set_ifindex(TC_CAST(q), ifindex);
        rtnl_tc_set_parent(TC_CAST(q), TC_H_INGRESS);
        rtnl_tc_set_handle(TC_CAST(q), TC_HANDLE(0xffff, 0));
        int e = rtnl_tc_set_kind(TC_CAST(q), "ingress");
        if (e >= 0)
                e = rtnl_qdisc_add(sk, q, NLM_F_CREATE | NLM_F_EXCL);
        return e < 0 ? nl_set(ret_err, e, "add ingress qdisc to", dev) : 0;
}

static int del_ingress_qdisc(struct nl_sock *sk, int ifindex)
{
        _cleanup_qdisc_ struct rtnl_qdisc *q = rtnl_qdisc_alloc();
        if (!q)
                return -ENOMEM;
        rtnl_tc_set_ifindex(TC_CAST(q), ifindex);
        rtnl_tc_set_parent(TC_CAST(q), TC_H_INGRESS);
        rtnl_tc_set_handle(TC_CAST(q), TC_HANDLE(0xffff, 0));
        rtnl_tc_set_kind(TC_CAST(q), "ingress");
        return rtnl_qdisc_delete(sk, q);
}

/* u32 match-all on from's ingress: mirred egress redirect to `to`. */
static int add_redirect(struct nl_sock *sk, int from, const char *from_name, int to, cc_error **ret_err)
{
        _cleanup_cls_ struct rtnl_cls *cls = rtnl_cls_alloc();
        struct rtnl_act *act = rtnl_act_alloc();
        if (!cls || !act) {
                if (act)
                        rtnl_act_put(act);
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        rtnl_tc_set_ifindex(TC_CAST(cls), from);
        rtnl_tc_set_parent(TC_CAST(cls), TC_HANDLE(0xffff, 0));
        int e = rtnl_tc_set_kind(TC_CAST(cls), "u32");
        if (e >= 0) {
                rtnl_cls_set_prio(cls, TAP_FILTER_PRIO);
                rtnl_cls_set_protocol(cls, ETH_P_ALL);
                e = rtnl_u32_add_key_uint32(cls, 0, 0, 0, 0);
        }
        if (e >= 0)
                e = rtnl_u32_set_cls_terminal(cls);
        if (e >= 0)
                e = rtnl_tc_set_kind(TC_CAST(act), "mirred");
        if (e >= 0) {
                rtnl_mirred_set_action(act, TCA_EGRESS_REDIR);
                rtnl_mirred_set_policy(act, TC_ACT_STOLEN);
                rtnl_mirred_set_ifindex(act, (uint32_t)to);
                e = rtnl_u32_add_action(cls, act);
        }
        rtnl_act_put(act); /* the classifier holds its own reference */
        if (e >= 0)
                e = rtnl_cls_add(sk, cls, NLM_F_CREATE | NLM_F_EXCL);
        return e < 0 ? nl_set(ret_err, e, "add redirect filter on", from_name) : 0;
}

typedef struct describe_ctx {
        cni_tap_info *info;
        int err;
} describe_ctx;

static void addr_cb(struct nl_object *obj, void *arg)
{
        describe_ctx *c = arg;
        struct rtnl_addr *a = (struct rtnl_addr *)obj;
        if (rtnl_addr_get_ifindex(a) != c->info->veth_ifindex || c->info->n_addrs >= TAP_MAX_ADDRS)
                return;
        if (rtnl_addr_get_scope(a) != RT_SCOPE_UNIVERSE)
                return; /* link-local addresses are the guest's own business */
        struct nl_addr *local = rtnl_addr_get_local(a);
        if (!local)
                return;
        cni_tap_addr *v = realloc(c->info->addrs, (c->info->n_addrs + 1) * sizeof *v);
        if (!v) {
                c->err = -ENOMEM;
                return;
        }
        c->info->addrs = v;
        cni_tap_addr *t = &v[c->info->n_addrs++];
        memset(t, 0, sizeof *t);
        t->family = nl_addr_get_family(local);
        t->prefixlen = (int)nl_addr_get_prefixlen(local);
        inet_ntop(t->family, nl_addr_get_binary_addr(local), t->addr, sizeof t->addr);
}

static void route_cb(struct nl_object *obj, void *arg)
{
        describe_ctx *c = arg;
        struct rtnl_route *r = (struct rtnl_route *)obj;
        if (rtnl_route_get_table(r) != RT_TABLE_MAIN || rtnl_route_get_type(r) != RTN_UNICAST ||
            c->info->n_routes >= TAP_MAX_ROUTES)
                return;
        if (rtnl_route_get_nnexthops(r) < 1)
                return;
        struct rtnl_nexthop *nh = rtnl_route_nexthop_n(r, 0);
        if (rtnl_route_nh_get_ifindex(nh) != c->info->veth_ifindex)
                return;
        struct nl_addr *dst = rtnl_route_get_dst(r);
        int fam = rtnl_route_get_family(r);
        if (fam == AF_INET6 && dst && nl_addr_get_prefixlen(dst) == 64 && nl_addr_get_len(dst) == 16 &&
            ((const uint8_t *)nl_addr_get_binary_addr(dst))[0] == 0xfe)
                return; /* fe80::/64 */
        cni_tap_route *v = realloc(c->info->routes, (c->info->n_routes + 1) * sizeof *v);
        if (!v) {
                c->err = -ENOMEM;
                return;
        }
        c->info->routes = v;
        cni_tap_route *t = &v[c->info->n_routes++];
        memset(t, 0, sizeof *t);
        t->family = fam;
        char ip[INET6_ADDRSTRLEN] = "";
        unsigned plen = 0;
        if (dst && nl_addr_get_len(dst) > 0) {
                inet_ntop(fam, nl_addr_get_binary_addr(dst), ip, sizeof ip);
                plen = nl_addr_get_prefixlen(dst);
        } else
                strcpy(ip, fam == AF_INET6 ? "::" : "0.0.0.0");
        snprintf(t->dst, sizeof t->dst, "%s/%u", ip, plen);
        struct nl_addr *gw = rtnl_route_nh_get_gateway(nh);
        if (gw && nl_addr_get_len(gw) > 0)
                inet_ntop(fam, nl_addr_get_binary_addr(gw), t->gw, sizeof t->gw);
}

static int describe_here(struct nl_sock *sk, const char *veth, cni_tap_info **ret, cc_error **ret_err)
{
        _cleanup_link_ struct rtnl_link *l = NULL;
        int e = rtnl_link_get_kernel(sk, 0, veth, &l);
        if (e < 0)
                return nl_set(ret_err, e, "look up interface", veth);
        _cleanup_(cni_tap_info_freep) cni_tap_info *info = calloc(1, sizeof *info);
        if (!info)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        snprintf(info->veth, sizeof info->veth, "%s", veth);
        info->veth_ifindex = rtnl_link_get_ifindex(l);
        info->mtu = rtnl_link_get_mtu(l);
        struct nl_addr *mac = rtnl_link_get_addr(l);
        if (mac && nl_addr_get_len(mac) == 6) {
                const uint8_t *m = nl_addr_get_binary_addr(mac);
                snprintf(info->mac, sizeof info->mac, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3],
                         m[4], m[5]);
        }
        describe_ctx c = { .info = info };
        _cleanup_cache_ struct nl_cache *addrs = NULL, *routes = NULL;
        if ((e = rtnl_addr_alloc_cache(sk, &addrs)) < 0)
                return nl_set(ret_err, e, "list addresses of", veth);
        nl_cache_foreach(addrs, addr_cb, &c);
        if ((e = rtnl_route_alloc_cache(sk, AF_UNSPEC, 0, &routes)) < 0)
                return nl_set(ret_err, e, "list routes of", veth);
        nl_cache_foreach(routes, route_cb, &c);
        if (c.err < 0)
                return cc_error_set(ret_err, c.err, "describe '%s': out of memory", veth);
        *ret = TAKE_PTR(info);
        return 0;
}

typedef struct tap_args {
        const char *veth, *tap;
        bool want_info;
        bool adopt;             /* the tap exists (a pooled VM's): mirror only */
        int fd;
        cni_tap_info *info;
} tap_args;

static void teardown_here(struct nl_sock *sk, const char *veth, const char *tap)
{
        _cleanup_link_ struct rtnl_link *v = NULL, *t = NULL;
        if (rtnl_link_get_kernel(sk, 0, veth, &v) >= 0) {
                /* Deleting the ingress qdisc deletes its filters. */
                int e = del_ingress_qdisc(sk, rtnl_link_get_ifindex(v));
                if (e < 0 && e != -NLE_OBJ_NOTFOUND && e != -NLE_NOATTR && e != -NLE_INVAL)
                        log_debug("tap: delete ingress qdisc of %s: %s", veth, nl_geterror(e));
        }
        if (rtnl_link_get_kernel(sk, 0, tap, &t) >= 0) {
                int e = rtnl_link_delete(sk, t);
                if (e < 0)
                        log_debug("tap: delete %s: %s", tap, nl_geterror(e));
        }
}

static int setup_fn(void *userdata, cc_error **ret_err)
{
        tap_args *a = userdata;
        _cleanup_nl_sock_ struct nl_sock *sk = route_socket(ret_err);
        if (!sk)
                return -EIO;
        _cleanup_link_ struct rtnl_link *v = NULL, *t = NULL;
        int e = rtnl_link_get_kernel(sk, 0, a->veth, &v);
        if (e < 0)
                return nl_set(ret_err, e, "look up interface", a->veth);
        bool exists = rtnl_link_get_kernel(sk, 0, a->tap, &t) >= 0;
        if (t)
                rtnl_link_put(TAKE_PTR(t));
        if (exists != a->adopt)
                return a->adopt ? cc_error_set(ret_err, -ENOENT, "no tap '%s' to adopt", a->tap)
                                : cc_error_set(ret_err, -EEXIST, "interface '%s' already exists", a->tap);
        int r;
        _cleanup_close_ int fd = a->adopt ? -1 : tun_attach(a->tap, true, ret_err);
        if (fd < 0 && !a->adopt)
                return fd;
        /* From here on, failure tears down what was made. */
        if ((e = rtnl_link_get_kernel(sk, 0, a->tap, &t)) < 0) {
                r = nl_set(ret_err, e, "look up tap", a->tap);
                goto fail;
        }
        int vidx = rtnl_link_get_ifindex(v), tidx = rtnl_link_get_ifindex(t);
        {
                _cleanup_link_ struct rtnl_link *change = rtnl_link_alloc();
                if (!change) {
                        r = cc_error_set(ret_err, -ENOMEM, "out of memory");
                        goto fail;
                }
                rtnl_link_set_mtu(change, rtnl_link_get_mtu(v));
                rtnl_link_set_flags(change, IFF_UP);
                if ((e = rtnl_link_change(sk, t, change, 0)) < 0) {
                        r = nl_set(ret_err, e, "bring up tap", a->tap);
                        goto fail;
                }
        }
        if ((r = add_ingress_qdisc(sk, vidx, a->veth, ret_err)) < 0 ||
            (r = add_ingress_qdisc(sk, tidx, a->tap, ret_err)) < 0 ||
            (r = add_redirect(sk, vidx, a->veth, tidx, ret_err)) < 0 ||
            (r = add_redirect(sk, tidx, a->tap, vidx, ret_err)) < 0)
                goto fail;
        if (a->want_info && (r = describe_here(sk, a->veth, &a->info, ret_err)) < 0)
                goto fail;
        a->fd = TAKE_FD(fd);
        return 0;
fail:
        if (fd >= 0)
                close(TAKE_FD(fd));
        teardown_here(sk, a->veth, a->tap);
        return r;
}

int cni_tap_adopt(const char *netns_path, const char *veth, const char *tap, cni_tap_info **ret_info,
                  cc_error **ret_err)
{
        int r;
        if ((r = check_ifname(veth, ret_err)) < 0 || (r = check_ifname(tap, ret_err)) < 0)
                return r;
        tap_args a = { .veth = veth, .tap = tap, .want_info = ret_info != NULL, .adopt = true, .fd = -1 };
        r = cni_netns_run(netns_path, setup_fn, &a, ret_err);
        if (r < 0)
                return cc_error_prefix(ret_err, "tap adopt %s<->%s in '%s'", veth, tap, netns_path);
        if (ret_info) {
                snprintf(a.info->tap, sizeof a.info->tap, "%s", tap);
                *ret_info = a.info;
        }
        return 0;
}

static int create_fn(void *userdata, cc_error **ret_err)
{
        tap_args *a = userdata;
        if (if_nametoindex(a->tap) != 0)
                return cc_error_set(ret_err, -EEXIST, "interface '%s' already exists", a->tap);
        int fd = tun_attach(a->tap, true, ret_err);
        if (fd < 0)
                return fd;
        a->fd = fd;
        return 0;
}

int cni_tap_create(const char *netns_path, const char *tap, int *ret_fd, cc_error **ret_err)
{
        int r = check_ifname(tap, ret_err);
        if (r < 0)
                return r;
        tap_args a = { .tap = tap, .fd = -1 };
        if ((r = cni_netns_run(netns_path, create_fn, &a, ret_err)) < 0)
                return r;
        *ret_fd = a.fd;
        return 0;
}

int cni_tap_setup(const char *netns_path, const char *veth, const char *tap, int *ret_fd,
                  cni_tap_info **ret_info, cc_error **ret_err)
{
        int r;
        if (!tap)
                tap = CNI_TAP_DEFAULT_NAME;
        if ((r = check_ifname(veth, ret_err)) < 0 || (r = check_ifname(tap, ret_err)) < 0)
                return r;
        tap_args a = { .veth = veth, .tap = tap, .want_info = ret_info != NULL, .fd = -1 };
        r = cni_netns_run(netns_path, setup_fn, &a, ret_err);
        if (r < 0)
                return cc_error_prefix(ret_err, "tap setup %s<->%s in '%s'", veth, tap, netns_path);
        if (ret_info) {
                snprintf(a.info->tap, sizeof a.info->tap, "%s", tap);
                *ret_info = a.info;
        }
        if (ret_fd)
                *ret_fd = a.fd;
        else
                close(a.fd);
        return 0;
}

static int open_fn(void *userdata, cc_error **ret_err)
{
        tap_args *a = userdata;
        if (if_nametoindex(a->tap) == 0)
                return cc_error_set(ret_err, -ENOENT, "no tap '%s'", a->tap);
        int fd = tun_attach(a->tap, false, ret_err);
        if (fd < 0)
                return fd;
        a->fd = fd;
        return 0;
}

int cni_tap_open(const char *netns_path, const char *tap, int *ret_fd, cc_error **ret_err)
{
        int r = check_ifname(tap, ret_err);
        if (r < 0)
                return r;
        tap_args a = { .tap = tap, .fd = -1 };
        r = cni_netns_run(netns_path, open_fn, &a, ret_err);
        if (r < 0)
                return r;
        *ret_fd = a.fd;
        return 0;
}

static int describe_fn(void *userdata, cc_error **ret_err)
{
        tap_args *a = userdata;
        _cleanup_nl_sock_ struct nl_sock *sk = route_socket(ret_err);
        if (!sk)
                return -EIO;
        return describe_here(sk, a->veth, &a->info, ret_err);
}

int cni_tap_describe(const char *netns_path, const char *veth, cni_tap_info **ret_info, cc_error **ret_err)
{
        int r = check_ifname(veth, ret_err);
        if (r < 0)
                return r;
        tap_args a = { .veth = veth, .fd = -1 };
        r = cni_netns_run(netns_path, describe_fn, &a, ret_err);
        if (r < 0)
                return r;
        *ret_info = a.info;
        return 0;
}

static int teardown_fn(void *userdata, cc_error **ret_err)
{
        tap_args *a = userdata;
        _cleanup_nl_sock_ struct nl_sock *sk = route_socket(ret_err);
        if (!sk)
                return -EIO;
        teardown_here(sk, a->veth, a->tap);
        _cleanup_link_ struct rtnl_link *t = NULL;
        if (rtnl_link_get_kernel(sk, 0, a->tap, &t) >= 0)
                return cc_error_set(ret_err, -EBUSY, "tap '%s' could not be deleted", a->tap);
        return 0;
}

int cni_tap_teardown(const char *netns_path, const char *veth, const char *tap, cc_error **ret_err)
{
        int r;
        if (!tap)
                tap = CNI_TAP_DEFAULT_NAME;
        if ((r = check_ifname(veth, ret_err)) < 0 || (r = check_ifname(tap, ret_err)) < 0)
                return r;
        if (access(netns_path, F_OK) < 0 && errno == ENOENT)
                return 0;
        tap_args a = { .veth = veth, .tap = tap, .fd = -1 };
        r = cni_netns_run(netns_path, teardown_fn, &a, ret_err);
        if (r < 0)
                return cc_error_prefix(ret_err, "tap teardown %s<->%s in '%s'", veth, tap, netns_path);
        return 0;
}
