/* SPDX-License-Identifier: Apache-2.0 */
/* Minimal rtnetlink (no libnl, which has no static build in Debian): dump
 * links, addresses and routes, set a link's mtu/state/addresses, add and
 * delete routes and neighbours. Replies from the kernel are parsed with
 * bounds checks (RTA_OK/NLMSG_OK). */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if.h>
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/netlink.h"
#include "common/cleanup.h"

typedef struct nl_req {
        struct nlmsghdr h;
        union {
                struct ifinfomsg ifi;
                struct ifaddrmsg ifa;
                struct rtmsg rt;
                struct ndmsg nd;
        };
        char attrs[512];
} nl_req;

static uint32_t nl_seq;

static int nl_open(void)
{
        agent_modules_wait(); /* virtio_net: interfaces appear with it */
        int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
        if (fd < 0)
                return -errno;
        struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                int e = -errno;
                close(fd);
                return e;
        }
        return fd;
}

static int add_attr(nl_req *r, unsigned type, const void *data, size_t len)
{
        size_t off = NLMSG_ALIGN(r->h.nlmsg_len);
        size_t need = RTA_LENGTH(len);
        if (off + RTA_ALIGN(need) > sizeof(*r))
                return -E2BIG;
        struct rtattr *a = (struct rtattr *)((char *)r + off);
        a->rta_type = (unsigned short)type;
        a->rta_len = (unsigned short)need;
        memcpy(RTA_DATA(a), data, len);
        r->h.nlmsg_len = (uint32_t)(off + RTA_ALIGN(need));
        return 0;
}

/* Sends r and reads replies: for a dump, cb gets every message; otherwise
 * the ack's error is returned. */
static int nl_talk(nl_req *r, int (*cb)(struct nlmsghdr *, void *), void *ud)
{
        _cleanup_close_ int fd = nl_open();
        if (fd < 0)
                return fd;
        r->h.nlmsg_seq = __atomic_add_fetch(&nl_seq, 1, __ATOMIC_RELAXED); /* the prepare thread too */
        if (!cb)
                r->h.nlmsg_flags |= NLM_F_ACK;
        if (send(fd, r, r->h.nlmsg_len, 0) < 0)
                return -errno;
        char buf[32768] __attribute__((aligned(NLMSG_ALIGNTO)));
        for (;;) {
                ssize_t n = recv(fd, buf, sizeof(buf), 0);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        return -EIO;
                int len = (int)n;
                for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
                        if (h->nlmsg_seq != r->h.nlmsg_seq)
                                continue;
                        if (h->nlmsg_type == NLMSG_DONE)
                                return 0;
                        if (h->nlmsg_type == NLMSG_ERROR) {
                                if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct nlmsgerr)))
                                        return -EBADMSG;
                                struct nlmsgerr *e = NLMSG_DATA(h);
                                return e->error;
                        }
                        if (cb) {
                                int rc = cb(h, ud);
                                if (rc < 0)
                                        return rc;
                        }
                }
        }
}

static void attrs(struct rtattr *a, int len, struct rtattr **tb, int max)
{
        memset(tb, 0, sizeof(*tb) * (max + 1));
        for (; RTA_OK(a, len); a = RTA_NEXT(a, len))
                if (a->rta_type <= max)
                        tb[a->rta_type] = a;
}

/* ---- dumps --------------------------------------------------------------- */

static int link_cb(struct nlmsghdr *h, void *ud)
{
        agent_nl_links *out = ud;
        if (h->nlmsg_type != RTM_NEWLINK || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct ifinfomsg)))
                return 0;
        struct ifinfomsg *ifi = NLMSG_DATA(h);
        struct rtattr *tb[IFLA_MAX + 1];
        attrs(IFLA_RTA(ifi), (int)IFLA_PAYLOAD(h), tb, IFLA_MAX);
        if (out->n >= AGENT_NL_MAX)
                return 0;
        agent_nl_link *l = &out->v[out->n++];
        memset(l, 0, sizeof(*l));
        l->index = ifi->ifi_index;
        l->flags = ifi->ifi_flags;
        if (tb[IFLA_IFNAME])
                snprintf(l->name, sizeof(l->name), "%.*s", (int)RTA_PAYLOAD(tb[IFLA_IFNAME]),
                         (char *)RTA_DATA(tb[IFLA_IFNAME]));
        if (tb[IFLA_MTU] && RTA_PAYLOAD(tb[IFLA_MTU]) >= 4)
                memcpy(&l->mtu, RTA_DATA(tb[IFLA_MTU]), 4);
        if (tb[IFLA_ADDRESS]) {
                const unsigned char *m = RTA_DATA(tb[IFLA_ADDRESS]);
                size_t n = RTA_PAYLOAD(tb[IFLA_ADDRESS]);
                for (size_t i = 0; i < n && i < 8; i++)
                        snprintf(l->hwaddr + (i ? 3 * i - 1 : 0), 4, i ? ":%02x" : "%02x", m[i]);
        }
        return 0;
}

static int addr_cb(struct nlmsghdr *h, void *ud)
{
        agent_nl_links *out = ud;
        if (h->nlmsg_type != RTM_NEWADDR || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct ifaddrmsg)))
                return 0;
        struct ifaddrmsg *ifa = NLMSG_DATA(h);
        struct rtattr *tb[IFA_MAX + 1];
        attrs(IFA_RTA(ifa), (int)IFA_PAYLOAD(h), tb, IFA_MAX);
        struct rtattr *a = tb[IFA_LOCAL] ? tb[IFA_LOCAL] : tb[IFA_ADDRESS];
        if (!a || (ifa->ifa_family != AF_INET && ifa->ifa_family != AF_INET6))
                return 0;
        if (RTA_PAYLOAD(a) < (ifa->ifa_family == AF_INET ? 4u : 16u))
                return 0;
        for (size_t i = 0; i < out->n; i++) {
                agent_nl_link *l = &out->v[i];
                if (l->index != (int)ifa->ifa_index || l->n_addrs >= AGENT_NL_ADDRS)
                        continue;
                agent_nl_addr *ad = &l->addrs[l->n_addrs++];
                ad->family = ifa->ifa_family;
                ad->prefix = ifa->ifa_prefixlen;
                inet_ntop(ifa->ifa_family, RTA_DATA(a), ad->addr, sizeof(ad->addr));
        }
        return 0;
}

int agent_nl_list_links(agent_nl_links *out)
{
        out->n = 0;
        nl_req r = { .h = { .nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg)), .nlmsg_type = RTM_GETLINK,
                            .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP } };
        int rc = nl_talk(&r, link_cb, out);
        if (rc < 0)
                return rc;
        nl_req a = { .h = { .nlmsg_len = NLMSG_LENGTH(sizeof(struct ifaddrmsg)), .nlmsg_type = RTM_GETADDR,
                            .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP } };
        return nl_talk(&a, addr_cb, out);
}

static int route_cb(struct nlmsghdr *h, void *ud)
{
        agent_nl_routes *out = ud;
        if (h->nlmsg_type != RTM_NEWROUTE || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct rtmsg)))
                return 0;
        struct rtmsg *rt = NLMSG_DATA(h);
        if (rt->rtm_table != RT_TABLE_MAIN || rt->rtm_type != RTN_UNICAST || out->n >= AGENT_NL_MAX)
                return 0;
        struct rtattr *tb[RTA_MAX + 1];
        attrs(RTM_RTA(rt), (int)RTM_PAYLOAD(h), tb, RTA_MAX);
        size_t alen = rt->rtm_family == AF_INET ? 4 : 16;
        agent_nl_route *o = &out->v[out->n++];
        memset(o, 0, sizeof(*o));
        o->family = rt->rtm_family;
        o->scope = rt->rtm_scope;
        o->dst_len = rt->rtm_dst_len;
        if (tb[RTA_DST] && RTA_PAYLOAD(tb[RTA_DST]) >= alen)
                inet_ntop(rt->rtm_family, RTA_DATA(tb[RTA_DST]), o->dst, sizeof(o->dst));
        if (tb[RTA_GATEWAY] && RTA_PAYLOAD(tb[RTA_GATEWAY]) >= alen)
                inet_ntop(rt->rtm_family, RTA_DATA(tb[RTA_GATEWAY]), o->gw, sizeof(o->gw));
        if (tb[RTA_PREFSRC] && RTA_PAYLOAD(tb[RTA_PREFSRC]) >= alen)
                inet_ntop(rt->rtm_family, RTA_DATA(tb[RTA_PREFSRC]), o->src, sizeof(o->src));
        if (tb[RTA_OIF] && RTA_PAYLOAD(tb[RTA_OIF]) >= 4)
                memcpy(&o->oif, RTA_DATA(tb[RTA_OIF]), 4);
        return 0;
}

int agent_nl_list_routes(agent_nl_routes *out)
{
        out->n = 0;
        nl_req r = { .h = { .nlmsg_len = NLMSG_LENGTH(sizeof(struct rtmsg)), .nlmsg_type = RTM_GETROUTE,
                            .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP } };
        return nl_talk(&r, route_cb, out);
}

/* ---- changes ------------------------------------------------------------- */

int agent_nl_link_set(int index, const char *name, uint32_t mtu, bool up)
{
        nl_req r = { .h = { .nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg)), .nlmsg_type = RTM_NEWLINK,
                            .nlmsg_flags = NLM_F_REQUEST } };
        r.ifi.ifi_family = AF_UNSPEC;
        r.ifi.ifi_index = index;
        r.ifi.ifi_change = IFF_UP;
        r.ifi.ifi_flags = up ? IFF_UP : 0;
        if (mtu && add_attr(&r, IFLA_MTU, &mtu, 4) < 0)
                return -E2BIG;
        if (name && *name && add_attr(&r, IFLA_IFNAME, name, strlen(name) + 1) < 0)
                return -E2BIG;
        return nl_talk(&r, NULL, NULL);
}

int agent_nl_link_set_mac(int index, const unsigned char *mac, size_t len)
{
        nl_req r = { .h = { .nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg)), .nlmsg_type = RTM_NEWLINK,
                            .nlmsg_flags = NLM_F_REQUEST } };
        r.ifi.ifi_family = AF_UNSPEC;
        r.ifi.ifi_index = index;
        if (len == 0 || len > 32 || add_attr(&r, IFLA_ADDRESS, mac, len) < 0)
                return -EINVAL;
        return nl_talk(&r, NULL, NULL);
}

int agent_nl_addr_change(bool add, int index, int family, const void *addr, int prefix)
{
        nl_req r = { .h = { .nlmsg_len = NLMSG_LENGTH(sizeof(struct ifaddrmsg)),
                            .nlmsg_type = add ? RTM_NEWADDR : RTM_DELADDR,
                            .nlmsg_flags = NLM_F_REQUEST | (add ? NLM_F_CREATE | NLM_F_REPLACE : 0) } };
        r.ifa.ifa_family = (unsigned char)family;
        r.ifa.ifa_prefixlen = (unsigned char)prefix;
        r.ifa.ifa_index = (unsigned)index;
        /* The pod's IPv6 address is the one IPAM gave the CNI veth, already
         * checked there; duplicate address detection in the guest would only
         * keep it "tentative" (unusable) for a second or two after boot. */
        if (family == AF_INET6)
                r.ifa.ifa_flags = IFA_F_NODAD;
        size_t alen = family == AF_INET ? 4 : 16;
        /* 127.0.0.0/8 and ::1 at host scope, as the kernel sets them on lo */
        const unsigned char *b = addr;
        static const unsigned char v6_lo[16] = { [15] = 1 };
        if ((family == AF_INET && b[0] == 127) || (family == AF_INET6 && memcmp(b, v6_lo, 16) == 0))
                r.ifa.ifa_scope = RT_SCOPE_HOST;
        if (add_attr(&r, IFA_LOCAL, addr, alen) < 0 || add_attr(&r, IFA_ADDRESS, addr, alen) < 0)
                return -E2BIG;
        return nl_talk(&r, NULL, NULL);
}

int agent_nl_route_change(bool add, const agent_nl_route_spec *s)
{
        nl_req r = { .h = { .nlmsg_len = NLMSG_LENGTH(sizeof(struct rtmsg)),
                            .nlmsg_type = add ? RTM_NEWROUTE : RTM_DELROUTE,
                            .nlmsg_flags = NLM_F_REQUEST | (add ? NLM_F_CREATE | NLM_F_REPLACE : 0) } };
        size_t alen = s->family == AF_INET ? 4 : 16;
        r.rt.rtm_family = (unsigned char)s->family;
        r.rt.rtm_table = RT_TABLE_MAIN;
        r.rt.rtm_protocol = RTPROT_BOOT;
        r.rt.rtm_type = RTN_UNICAST;
        r.rt.rtm_scope = (unsigned char)s->scope;
        r.rt.rtm_dst_len = (unsigned char)s->dst_len;
        if ((s->dst_len && add_attr(&r, RTA_DST, s->dst, alen) < 0) ||
            (s->has_gw && add_attr(&r, RTA_GATEWAY, s->gw, alen) < 0) ||
            (s->has_src && add_attr(&r, RTA_PREFSRC, s->src, alen) < 0) ||
            (s->oif && add_attr(&r, RTA_OIF, &s->oif, 4) < 0))
                return -E2BIG;
        return nl_talk(&r, NULL, NULL);
}

int agent_nl_neigh_add(int index, int family, const void *addr, const unsigned char *lladdr, size_t lllen,
                       uint16_t state, uint8_t flags)
{
        nl_req r = { .h = { .nlmsg_len = NLMSG_LENGTH(sizeof(struct ndmsg)), .nlmsg_type = RTM_NEWNEIGH,
                            .nlmsg_flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE } };
        r.nd.ndm_family = (unsigned char)family;
        r.nd.ndm_ifindex = index;
        r.nd.ndm_state = state ? state : NUD_PERMANENT;
        r.nd.ndm_flags = flags;
        if (add_attr(&r, NDA_DST, addr, family == AF_INET ? 4 : 16) < 0 ||
            (lllen && add_attr(&r, NDA_LLADDR, lladdr, lllen) < 0))
                return -E2BIG;
        return nl_talk(&r, NULL, NULL);
}
