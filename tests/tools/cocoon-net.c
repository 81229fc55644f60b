/* SPDX-License-Identifier: Apache-2.0 */
/* cocoon-net: a test driver that exposes net-cni/ to the integration tests.
 * Every subcommand prints one JSON object on stdout; on failure
 * {"error": MSG, "code": ERRNO} and exit status 1.
 *
 *   netns-create --netns-dir DIR NAME      netns-delete PATH
 *   conf    --conf-dir DIR
 *   add|check|del --conf-dir DIR --bin-dir DIR... --cache-dir DIR --netns PATH --id ID
 *           [--ifname IF] [--pod-name N] [--pod-namespace NS] [--pod-uid U]
 *           [--timeout-ms MS] [--port HOST:CONTAINER[/PROTO]]...
 *   tap-setup|tap-teardown --netns PATH [--veth eth0] [--tap NAME]
 *   tap-probe --netns PATH [--veth eth0] [--tap NAME] --gateway IP
 *           (opens the tap again, sends an ARP request and an ICMP echo for
 *           the gateway with the veth's MAC and IP, reads the replies back)
 *   bench   (add's options) --netns-dir DIR [-n N]: N x (netns create + ADD +
 *           tap setup), each undone after it is timed; prints the times.
 * COCOON_NET_DEBUG=1 in the environment turns on debug logging (stderr). */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <net/ethernet.h>
#include <netinet/if_ether.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/json.h"
#include "common/log.h"
#include "net-cni/conf.h"
#include "net-cni/exec.h"
#include "net-cni/netns.h"
#include "net-cni/result.h"
#include "net-cni/tap.h"

#define MAX_LIST 16

static struct {
        const char *conf_dir, *cache_dir, *netns, *netns_dir, *id, *ifname, *pod_name, *pod_ns, *pod_uid;
        const char *veth, *tap, *gateway;
        char *bin_dirs[MAX_LIST + 1];
        int n_bin_dirs;
        cni_port_mapping ports[MAX_LIST];
        char port_protos[MAX_LIST][8];
        int n_ports;
        int timeout_ms;
        int n;
} opt = { .timeout_ms = 10000, .veth = "eth0", .n = 10 };

static int fail(cc_error *err)
{
        json_object *o = json_object_new_object();
        json_object_object_add(o, "error", json_object_new_string(err ? err->msg : "failed"));
        json_object_object_add(o, "code", json_object_new_int(err ? err->code : -EIO));
        printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        json_object_put(o);
        cc_error_free(err);
        return 1;
}

static int print_json(json_object *o)
{
        printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        json_object_put(o);
        return 0;
}

static json_object *strv(char **v)
{
        json_object *a = json_object_new_array();
        for (; v && *v; v++)
                json_object_array_add(a, json_object_new_string(*v));
        return a;
}

static json_object *result_json(const cni_result *r)
{
        json_object *o = json_object_new_object();
        json_object_object_add(o, "cniVersion", json_object_new_string(r->cni_version));
        json_object *a = json_object_new_array();
        for (size_t i = 0; i < r->n_interfaces; i++) {
                json_object *e = json_object_new_object();
                json_object_object_add(e, "name", json_object_new_string(r->interfaces[i].name));
                json_object_object_add(e, "mac", json_object_new_string(r->interfaces[i].mac));
                json_object_object_add(e, "sandbox", json_object_new_string(r->interfaces[i].sandbox));
                json_object_object_add(e, "mtu", json_object_new_int(r->interfaces[i].mtu));
                json_object_array_add(a, e);
        }
        json_object_object_add(o, "interfaces", a);
        a = json_object_new_array();
        for (size_t i = 0; i < r->n_ips; i++) {
                json_object *e = json_object_new_object();
                json_object_object_add(e, "family", json_object_new_int(r->ips[i].family == AF_INET ? 4 : 6));
                json_object_object_add(e, "address", json_object_new_string(r->ips[i].address));
                json_object_object_add(e, "gateway", json_object_new_string(r->ips[i].gateway));
                json_object_object_add(e, "interface", json_object_new_int(r->ips[i].interface));
                json_object_array_add(a, e);
        }
        json_object_object_add(o, "ips", a);
        a = json_object_new_array();
        for (size_t i = 0; i < r->n_routes; i++) {
                json_object *e = json_object_new_object();
                json_object_object_add(e, "dst", json_object_new_string(r->routes[i].dst));
                json_object_object_add(e, "gw", json_object_new_string(r->routes[i].gw));
                json_object_array_add(a, e);
        }
        json_object_object_add(o, "routes", a);
        json_object *d = json_object_new_object();
        json_object_object_add(d, "nameservers", strv(r->dns.nameservers));
        json_object_object_add(d, "domain", json_object_new_string(r->dns.domain));
        json_object_object_add(d, "search", strv(r->dns.search));
        json_object_object_add(d, "options", strv(r->dns.options));
        json_object_object_add(o, "dns", d);
        return o;
}

static json_object *tap_info_json(const cni_tap_info *t)
{
        json_object *o = json_object_new_object();
        json_object_object_add(o, "veth", json_object_new_string(t->veth));
        json_object_object_add(o, "tap", json_object_new_string(t->tap));
        json_object_object_add(o, "mtu", json_object_new_int((int)t->mtu));
        json_object_object_add(o, "mac", json_object_new_string(t->mac));
        json_object *a = json_object_new_array();
        for (size_t i = 0; i < t->n_addrs; i++) {
                char s[INET6_ADDRSTRLEN + 8];
                snprintf(s, sizeof s, "%s/%d", t->addrs[i].addr, t->addrs[i].prefixlen);
                json_object_array_add(a, json_object_new_string(s));
        }
        json_object_object_add(o, "addrs", a);
        a = json_object_new_array();
        for (size_t i = 0; i < t->n_routes; i++) {
                json_object *e = json_object_new_object();
                json_object_object_add(e, "dst", json_object_new_string(t->routes[i].dst));
                json_object_object_add(e, "gw", json_object_new_string(t->routes[i].gw));
                json_object_array_add(a, e);
        }
        json_object_object_add(o, "routes", a);
        return o;
}

static cni_exec_ctx make_ctx(void)
{
        if (opt.n_bin_dirs == 0)
                opt.bin_dirs[opt.n_bin_dirs++] = "/usr/lib/cni";
        cni_exec_ctx c = { .bin_dirs = opt.bin_dirs, .cache_dir = opt.cache_dir ? opt.cache_dir : "/tmp/cocoon-net-cache",
                           .timeout_ms = opt.timeout_ms };
        return c;
}

static cni_pod make_pod(void)
{
        cni_pod p = { .container_id = opt.id, .netns = opt.netns, .ifname = opt.ifname,
                      .pod_namespace = opt.pod_ns, .pod_name = opt.pod_name, .pod_uid = opt.pod_uid };
        return p;
}

static cni_runtime_conf make_rt(void)
{
        cni_runtime_conf rt = { .port_mappings = opt.ports, .n_port_mappings = (size_t)opt.n_ports };
        return rt;
}

static int cmd_cni(const char *cmd)
{
        cc_error *err = NULL;
        if (!opt.conf_dir || !opt.netns || !opt.id)
                return fail((cc_error_set(&err, -EINVAL, "--conf-dir, --netns and --id are required"), err));
        _cleanup_netconf_ cni_netconf *net = NULL;
        if (cni_conf_load_dir(opt.conf_dir, &net, &err) < 0)
                return fail(err);
        cni_exec_ctx ctx = make_ctx();
        cni_pod pod = make_pod();
        cni_runtime_conf rt = make_rt();
        if (!strcmp(cmd, "add")) {
                _cleanup_result_ cni_result *res = NULL;
                if (cni_add(&ctx, net, &pod, &rt, &res, &err) < 0)
                        return fail(err);
                return print_json(result_json(res));
        }
        int r = !strcmp(cmd, "del") ? cni_del(&ctx, net, &pod, opt.n_ports ? &rt : NULL, &err)
                                    : cni_check(&ctx, net, &pod, NULL, &err);
        if (r < 0)
                return fail(err);
        return print_json(json_object_new_object());
}

static int cmd_conf(void)
{
        cc_error *err = NULL;
        _cleanup_netconf_ cni_netconf *net = NULL;
        if (cni_conf_load_dir(opt.conf_dir ? opt.conf_dir : "/etc/cni/net.d", &net, &err) < 0)
                return fail(err);
        json_object *o = json_object_new_object();
        json_object_object_add(o, "path", json_object_new_string(net->path));
        json_object_object_add(o, "name", json_object_new_string(net->name));
        json_object_object_add(o, "cniVersion", json_object_new_string(net->cni_version));
        json_object *a = json_object_new_array();
        for (size_t i = 0; i < net->n_plugins; i++)
                json_object_array_add(a, json_object_new_string(net->plugins[i].type));
        json_object_object_add(o, "plugins", a);
        a = json_object_new_array();
        for (size_t i = 0; i < net->n_skipped; i++) {
                json_object *e = json_object_new_object();
                json_object_object_add(e, "file", json_object_new_string(net->skipped[i].file));
                json_object_object_add(e, "reason", json_object_new_string(net->skipped[i].reason));
                json_object_array_add(a, e);
        }
        json_object_object_add(o, "skipped", a);
        return print_json(o);
}

/* Frames through the tap carry a 10-byte virtio_net_hdr (IFF_VNET_HDR). */
#define VNET_HDR_LEN 10

static uint16_t csum(const void *data, size_t len)
{
        const uint8_t *p = data;
        uint32_t s = 0;
        for (size_t i = 0; i + 1 < len; i += 2)
                s += (uint32_t)(p[i] << 8 | p[i + 1]);
        if (len & 1)
                s += (uint32_t)(p[len - 1] << 8);
        while (s >> 16)
                s = (s & 0xffff) + (s >> 16);
        return htons((uint16_t)~s);
}

static int parse_mac(const char *s, uint8_t m[6])
{
        return sscanf(s, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) == 6 ? 0 : -1;
}

/* Reads frames until match(frame) or the deadline; returns frame length. */
static ssize_t read_frame(int fd, uint8_t *buf, size_t cap, int timeout_ms, bool (*match)(const uint8_t *, size_t, void *),
                          void *arg)
{
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (;;) {
                struct timespec now;
                clock_gettime(CLOCK_MONOTONIC, &now);
                long left = timeout_ms - ((now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000);
                if (left <= 0)
                        return -ETIMEDOUT;
                struct pollfd p = { fd, POLLIN, 0 };
                if (poll(&p, 1, (int)left) <= 0)
                        continue;
                ssize_t n = read(fd, buf, cap);
                if (n <= VNET_HDR_LEN)
                        continue;
                if (match(buf + VNET_HDR_LEN, (size_t)n - VNET_HDR_LEN, arg))
                        return n - VNET_HDR_LEN;
        }
}

typedef struct probe { uint8_t my_mac[6]; struct in_addr my_ip, gw; uint8_t gw_mac[6]; } probe;

static bool is_arp_reply(const uint8_t *f, size_t n, void *arg)
{
        probe *p = arg;
        if (n < sizeof(struct ether_header) + sizeof(struct ether_arp))
                return false;
        const struct ether_header *eh = (const void *)f;
        const struct ether_arp *a = (const void *)(f + sizeof *eh);
        if (ntohs(eh->ether_type) != ETHERTYPE_ARP || ntohs(a->ea_hdr.ar_op) != ARPOP_REPLY ||
            memcmp(a->arp_spa, &p->gw, 4) || memcmp(a->arp_tpa, &p->my_ip, 4))
                return false;
        memcpy(p->gw_mac, a->arp_sha, 6);
        return true;
}

static bool is_echo_reply(const uint8_t *f, size_t n, void *arg)
{
        probe *p = arg;
        if (n < sizeof(struct ether_header) + sizeof(struct iphdr) + 8)
                return false;
        const struct ether_header *eh = (const void *)f;
        const struct iphdr *ip = (const void *)(f + sizeof *eh);
        const struct icmphdr *ic = (const void *)(f + sizeof *eh + ip->ihl * 4u);
        return ntohs(eh->ether_type) == ETHERTYPE_IP && ip->protocol == IPPROTO_ICMP &&
               ip->saddr == p->gw.s_addr && ip->daddr == p->my_ip.s_addr && ic->type == ICMP_ECHOREPLY &&
               ntohs(ic->un.echo.id) == 0xc0c0;
}

static int cmd_tap_probe(void)
{
        cc_error *err = NULL;
        if (!opt.netns || !opt.gateway)
                return fail((cc_error_set(&err, -EINVAL, "--netns and --gateway are required"), err));
        _cleanup_(cni_tap_info_freep) cni_tap_info *info = NULL;
        if (cni_tap_describe(opt.netns, opt.veth, &info, &err) < 0)
                return fail(err);
        probe p = { 0 };
        bool have_ip = false;
        for (size_t i = 0; i < info->n_addrs; i++)
                if (info->addrs[i].family == AF_INET && inet_pton(AF_INET, info->addrs[i].addr, &p.my_ip) == 1) {
                        have_ip = true;
                        break;
                }
        if (!have_ip || parse_mac(info->mac, p.my_mac) < 0 || inet_pton(AF_INET, opt.gateway, &p.gw) != 1)
                return fail((cc_error_set(&err, -EINVAL, "veth has no IPv4 address/MAC or bad --gateway"), err));
        _cleanup_close_ int fd = -1;
        if (cni_tap_open(opt.netns, opt.tap ? opt.tap : CNI_TAP_DEFAULT_NAME, &fd, &err) < 0)
                return fail(err);

        uint8_t frame[VNET_HDR_LEN + 1600] = { 0 };
        struct ether_header *eh = (void *)(frame + VNET_HDR_LEN);
        struct ether_arp *a = (void *)(frame + VNET_HDR_LEN + sizeof *eh);
        memset(eh->ether_dhost, 0xff, 6);
        memcpy(eh->ether_shost, p.my_mac, 6);
        eh->ether_type = htons(ETHERTYPE_ARP);
        a->ea_hdr.ar_hrd = htons(ARPHRD_ETHER);
        a->ea_hdr.ar_pro = htons(ETHERTYPE_IP);
        a->ea_hdr.ar_hln = 6;
        a->ea_hdr.ar_pln = 4;
        a->ea_hdr.ar_op = htons(ARPOP_REQUEST);
        memcpy(a->arp_sha, p.my_mac, 6);
        memcpy(a->arp_spa, &p.my_ip, 4);
        memcpy(a->arp_tpa, &p.gw, 4);
        size_t len = VNET_HDR_LEN + sizeof *eh + sizeof *a;
        if (write(fd, frame, len) != (ssize_t)len)
                return fail((cc_error_errno(&err, "write ARP request to tap"), err));
        uint8_t buf[VNET_HDR_LEN + 65536];
        if (read_frame(fd, buf, sizeof buf, 3000, is_arp_reply, &p) < 0)
                return fail((cc_error_set(&err, -ETIMEDOUT, "no ARP reply from %s through the tap", opt.gateway), err));

        memset(frame, 0, sizeof frame);
        memcpy(eh->ether_dhost, p.gw_mac, 6);
        memcpy(eh->ether_shost, p.my_mac, 6);
        eh->ether_type = htons(ETHERTYPE_IP);
        struct iphdr *ip = (void *)(frame + VNET_HDR_LEN + sizeof *eh);
        struct icmphdr *ic = (void *)((uint8_t *)ip + sizeof *ip);
        const size_t payload = 32;
        ip->version = 4;
        ip->ihl = 5;
        ip->ttl = 64;
        ip->protocol = IPPROTO_ICMP;
        ip->tot_len = htons((uint16_t)(sizeof *ip + sizeof *ic + payload));
        ip->saddr = p.my_ip.s_addr;
        ip->daddr = p.gw.s_addr;
        ip->check = csum(ip, sizeof *ip);
        ic->type = ICMP_ECHO;
        ic->un.echo.id = htons(0xc0c0);
        ic->un.echo.sequence = htons(1);
        memset((uint8_t *)ic + sizeof *ic, 'c', payload);
        ic->checksum = csum(ic, sizeof *ic + payload);
        len = VNET_HDR_LEN + sizeof *eh + sizeof *ip + sizeof *ic + payload;
        if (write(fd, frame, len) != (ssize_t)len)
                return fail((cc_error_errno(&err, "write ICMP echo to tap"), err));
        if (read_frame(fd, buf, sizeof buf, 3000, is_echo_reply, &p) < 0)
                return fail((cc_error_set(&err, -ETIMEDOUT, "no ICMP echo reply from %s through the tap", opt.gateway), err));
        char mac[18];
        snprintf(mac, sizeof mac, "%02x:%02x:%02x:%02x:%02x:%02x", p.gw_mac[0], p.gw_mac[1], p.gw_mac[2], p.gw_mac[3],
                 p.gw_mac[4], p.gw_mac[5]);
        json_object *o = json_object_new_object();
        json_object_object_add(o, "arp_reply_mac", json_object_new_string(mac));
        json_object_object_add(o, "icmp_echo_reply", json_object_new_boolean(1));
        return print_json(o);
}

static double ms_since(const struct timespec *t0)
{
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

static int cmd_bench(void)
{
        cc_error *err = NULL;
        if (!opt.conf_dir || !opt.netns_dir || opt.n < 1 || opt.n > 1000)
                return fail((cc_error_set(&err, -EINVAL, "--conf-dir and --netns-dir are required, 1 <= -n <= 1000"), err));
        _cleanup_netconf_ cni_netconf *net = NULL;
        if (cni_conf_load_dir(opt.conf_dir, &net, &err) < 0)
                return fail(err);
        cni_exec_ctx ctx = make_ctx();
        cni_runtime_conf rt = make_rt();
        double *tot = calloc((size_t)opt.n, sizeof(double)), *tns = calloc((size_t)opt.n, sizeof(double)),
               *tadd = calloc((size_t)opt.n, sizeof(double)), *ttap = calloc((size_t)opt.n, sizeof(double));
        json_object *runs = json_object_new_array();
        int rc = 0;
        for (int i = 0; i < opt.n && rc == 0; i++) {
                char name[64], id[64];
                snprintf(name, sizeof name, "ccbench-%d-%d", (int)getpid(), i);
                snprintf(id, sizeof id, "bench%d-%d", (int)getpid(), i);
                _cleanup_free_ char *path = NULL;
                struct timespec t0, t1;
                clock_gettime(CLOCK_MONOTONIC, &t0);
                if (cni_netns_create(opt.netns_dir, name, &path, &err) < 0) {
                        rc = fail(err);
                        break;
                }
                tns[i] = ms_since(&t0);
                clock_gettime(CLOCK_MONOTONIC, &t1);
                cni_pod pod = { .container_id = id, .netns = path, .pod_namespace = "default", .pod_name = name,
                                .pod_uid = id };
                _cleanup_result_ cni_result *res = NULL;
                if (cni_add(&ctx, net, &pod, &rt, &res, &err) < 0) {
                        rc = fail(err);
                        cni_netns_remove(path, NULL);
                        break;
                }
                tadd[i] = ms_since(&t1);
                clock_gettime(CLOCK_MONOTONIC, &t1);
                int fd = -1;
                if (cni_tap_setup(path, "eth0", NULL, &fd, NULL, &err) < 0)
                        rc = fail(err);
                else
                        close(fd);
                ttap[i] = ms_since(&t1);
                tot[i] = ms_since(&t0);
                cni_tap_teardown(path, "eth0", NULL, NULL);
                cni_del(&ctx, net, &pod, NULL, NULL);
                cni_netns_remove(path, NULL);
                json_object *e = json_object_new_object();
                json_object_object_add(e, "netns_ms", json_object_new_double(tns[i]));
                json_object_object_add(e, "add_ms", json_object_new_double(tadd[i]));
                json_object_object_add(e, "tap_ms", json_object_new_double(ttap[i]));
                json_object_object_add(e, "total_ms", json_object_new_double(tot[i]));
                json_object_array_add(runs, e);
        }
        if (rc == 0) {
                json_object *o = json_object_new_object();
                json_object_object_add(o, "runs", runs);
                runs = NULL;
                double *arrs[] = { tns, tadd, ttap, tot };
                const char *names[] = { "median_netns_ms", "median_add_ms", "median_tap_ms", "median_total_ms" };
                for (int k = 0; k < 4; k++) {
                        qsort(arrs[k], (size_t)opt.n, sizeof(double), cmp_double);
                        double m = opt.n % 2 ? arrs[k][opt.n / 2] : (arrs[k][opt.n / 2 - 1] + arrs[k][opt.n / 2]) / 2;
                        json_object_object_add(o, names[k], json_object_new_double(m));
                }
                print_json(o);
        }
        if (runs)
                json_object_put(runs);
        free(tot);
        free(tns);
        free(tadd);
        free(ttap);
        return rc;
}

int main(int argc, char **argv)
{
        enum { O_CONF = 256, O_BIN, O_CACHE, O_NETNS, O_NETNS_DIR, O_ID, O_IFNAME, O_PNAME, O_PNS, O_PUID, O_TIMEOUT,
               O_PORT, O_VETH, O_TAP, O_GW };
        static const struct option lo[] = {
                { "conf-dir", 1, NULL, O_CONF }, { "bin-dir", 1, NULL, O_BIN }, { "cache-dir", 1, NULL, O_CACHE },
                { "netns", 1, NULL, O_NETNS }, { "netns-dir", 1, NULL, O_NETNS_DIR }, { "id", 1, NULL, O_ID },
                { "ifname", 1, NULL, O_IFNAME }, { "pod-name", 1, NULL, O_PNAME }, { "pod-namespace", 1, NULL, O_PNS },
                { "pod-uid", 1, NULL, O_PUID }, { "timeout-ms", 1, NULL, O_TIMEOUT }, { "port", 1, NULL, O_PORT },
                { "veth", 1, NULL, O_VETH }, { "tap", 1, NULL, O_TAP }, { "gateway", 1, NULL, O_GW },
                { NULL, 0, NULL, 0 },
        };
        if (argc < 2) {
                fprintf(stderr, "usage: cocoon-net COMMAND [OPTIONS] (see the source)\n");
                return 2;
        }
        const char *cmd = argv[1];
        if (getenv("COCOON_NET_DEBUG"))
                cc_log_set_level(CC_LOG_DEBUG);
        optind = 2;
        int c;
        while ((c = getopt_long(argc, argv, "n:", lo, NULL)) != -1) {
                switch (c) {
                case O_CONF: opt.conf_dir = optarg; break;
                case O_BIN:
                        if (opt.n_bin_dirs < MAX_LIST)
                                opt.bin_dirs[opt.n_bin_dirs++] = optarg;
                        break;
                case O_CACHE: opt.cache_dir = optarg; break;
                case O_NETNS: opt.netns = optarg; break;
                case O_NETNS_DIR: opt.netns_dir = optarg; break;
                case O_ID: opt.id = optarg; break;
                case O_IFNAME: opt.ifname = optarg; break;
                case O_PNAME: opt.pod_name = optarg; break;
                case O_PNS: opt.pod_ns = optarg; break;
                case O_PUID: opt.pod_uid = optarg; break;
                case O_TIMEOUT: opt.timeout_ms = atoi(optarg); break;
                case O_VETH: opt.veth = optarg; break;
                case O_TAP: opt.tap = optarg; break;
                case O_GW: opt.gateway = optarg; break;
                case 'n': opt.n = atoi(optarg); break;
                case O_PORT: {
                        if (opt.n_ports >= MAX_LIST)
                                break;
                        cni_port_mapping *m = &opt.ports[opt.n_ports];
                        char *proto = opt.port_protos[opt.n_ports];
                        strcpy(proto, "tcp");
                        if (sscanf(optarg, "%d:%d/%7s", &m->host_port, &m->container_port, proto) < 2) {
                                fprintf(stderr, "bad --port '%s'\n", optarg);
                                return 2;
                        }
                        m->protocol = proto;
                        opt.n_ports++;
                        break;
                }
                default: return 2;
                }
        }
        cc_error *err = NULL;
        if (!strcmp(cmd, "netns-create")) {
                if (optind >= argc)
                        return fail((cc_error_set(&err, -EINVAL, "netns-create NAME"), err));
                _cleanup_free_ char *path = NULL;
                if (cni_netns_create(opt.netns_dir ? opt.netns_dir : "/run/netns", argv[optind], &path, &err) < 0)
                        return fail(err);
                json_object *o = json_object_new_object();
                json_object_object_add(o, "path", json_object_new_string(path));
                return print_json(o);
        }
        if (!strcmp(cmd, "netns-delete")) {
                if (optind >= argc)
                        return fail((cc_error_set(&err, -EINVAL, "netns-delete PATH"), err));
                if (cni_netns_remove(argv[optind], &err) < 0)
                        return fail(err);
                return print_json(json_object_new_object());
        }
        if (!strcmp(cmd, "conf"))
                return cmd_conf();
        if (!strcmp(cmd, "add") || !strcmp(cmd, "del") || !strcmp(cmd, "check"))
                return cmd_cni(cmd);
        if (!strcmp(cmd, "tap-setup")) {
                _cleanup_(cni_tap_info_freep) cni_tap_info *info = NULL;
                if (!opt.netns)
                        return fail((cc_error_set(&err, -EINVAL, "--netns is required"), err));
                if (cni_tap_setup(opt.netns, opt.veth, opt.tap, NULL, &info, &err) < 0)
                        return fail(err);
                return print_json(tap_info_json(info));
        }
        if (!strcmp(cmd, "tap-teardown")) {
                if (!opt.netns)
                        return fail((cc_error_set(&err, -EINVAL, "--netns is required"), err));
                if (cni_tap_teardown(opt.netns, opt.veth, opt.tap, &err) < 0)
                        return fail(err);
                return print_json(json_object_new_object());
        }
        if (!strcmp(cmd, "tap-probe"))
                return cmd_tap_probe();
        if (!strcmp(cmd, "bench"))
                return cmd_bench();
        fprintf(stderr, "unknown command '%s'\n", cmd);
        return 2;
}
