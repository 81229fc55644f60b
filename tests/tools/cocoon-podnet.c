/* SPDX-License-Identifier: Apache-2.0 */
/* cocoon-podnet: a test driver that exposes runtime/pod-net.h to the
 * integration tests (tests/integration/test_pod_net.py). Every subcommand
 * prints one JSON object on stdout; on failure {"error": MSG, "code": ERRNO}
 * and exit status 1.
 *
 *   ready    CNI...
 *   setup    CNI... --id ID [--vm [--adopt]] [--port HOST:CONTAINER[/PROTO]]... [--save FILE]
 *            --adopt: first make the netns and its tap as the VM pool does
 *            (runtime/pool.c), holding the tap's fd as QEMU would, then set up
 *            with rt_pod_net_req.adopt
 *   teardown CNI... --id ID [--load FILE]   (no --load: from the id alone)
 *   load     --load FILE                     (re-opens the taps, prints the record)
 *   guest    --load FILE --agent SOCKET      configures the "guest" through an
 *            agent listening on SOCKET (rt_pod_net_configure_guest)
 *   cycle    CNI... --id ID [--vm] [--save FILE] [--teardown-twice]
 *            setup, save, free, load, teardown (twice) in one process
 *   bench    CNI... [--vm] [--port ...] [-n N]  N x (setup + teardown), times setup
 *   concurrent CNI... [--vm] [--port ...] [-n N]  N threads, each setup + teardown
 *            (worker i publishes each --port's host port + i)
 * CNI: --conf-dir DIR --bin-dir DIR... --cache-dir DIR --netns-dir DIR
 *      [--timeout S]
 * COCOON_NET_DEBUG=1 turns on debug logging (stderr). */
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/config.h"
#include "common/json.h"
#include "common/log.h"
#include "net-cni/netns.h"
#include "net-cni/tap.h"
#include "runtime/pod-net.h"

#define MAX_LIST 16

static struct {
        const char *conf_dir, *cache_dir, *netns_dir, *id, *save, *load, *agent;
        char *bin_dirs[MAX_LIST + 1];
        int n_bin_dirs;
        rt_port_mapping ports[MAX_LIST];
        int n_ports;
        int timeout_s;
        int n;
        bool vm, twice, adopt;
} opt = { .timeout_s = 20, .n = 10 };

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
        printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
        return 0;
}

static void set_str(char **field, const char *v)
{
        if (!v)
                return;
        free(*field);
        *field = strdup(v);
}

static int make_net(rt_net **ret, cc_error **ret_err)
{
        _cleanup_config_ cc_config *cfg = cc_config_new_default();
        set_str(&cfg->cni.conf_dir, opt.conf_dir);
        set_str(&cfg->cni.cache_dir, opt.cache_dir);
        set_str(&cfg->cni.netns_dir, opt.netns_dir);
        cfg->cni.plugin_timeout = opt.timeout_s;
        if (opt.n_bin_dirs) {
                cc_strv_free(cfg->cni.bin_dirs);
                cfg->cni.bin_dirs = calloc((size_t)opt.n_bin_dirs + 1, sizeof(char *));
                for (int i = 0; i < opt.n_bin_dirs; i++)
                        cfg->cni.bin_dirs[i] = strdup(opt.bin_dirs[i]);
        }
        return rt_net_new(cfg, ret, ret_err);
}

static void net_freep(rt_net **n) { rt_net_free(*n); }
static void pn_freep(rt_pod_net **p) { rt_pod_net_free(*p); }

static rt_pod_net_req make_req(const char *id)
{
        static const char *const servers[] = { "10.96.0.10", NULL }, *const searches[] = { "svc.cluster.local", NULL },
                                 *const options[] = { "ndots:5", NULL };
        rt_pod_net_req req = { .sandbox_id = id, .pod_name = "pod-x", .pod_namespace = "default", .pod_uid = "uid-x",
                               .ports = opt.ports, .n_ports = (size_t)opt.n_ports, .dns_servers = servers,
                               .dns_searches = searches, .dns_options = options, .vm = opt.vm,
                               .adopt = opt.adopt };
        return req;
}

static json_object *describe(const rt_pod_net *pn)
{
        json_object *o = NULL;
        cc_error *err = NULL;
        if (rt_pod_net_save(pn, &o, &err) < 0) {
                o = json_object_new_object();
                json_object_object_add(o, "save_error", json_object_new_string(err->msg));
                cc_error_free(err);
        }
        json_object *fds = json_object_new_array();
        for (size_t i = 0; i < pn->n_nics; i++) {
                const rt_pod_nic *nic = &pn->nics[i];
                json_object *e = json_object_new_object();
                json_object_object_add(e, "tap_fd_open", json_object_new_boolean(nic->tap_fd >= 0));
                json_object_object_add(e, "iface_name", json_object_new_string(nic->iface.name));
                json_object_object_add(e, "iface_mac", json_object_new_string(nic->iface.mac));
                json_object_object_add(e, "iface_mtu", json_object_new_int64(nic->iface.mtu));
                json_object_object_add(e, "iface_n_ips", json_object_new_int64((int64_t)nic->iface.n_ips));
                json_object_array_add(fds, e);
        }
        json_object_object_add(o, "live", fds);
        return o;
}

static int write_saved(const rt_pod_net *pn, cc_error **ret_err)
{
        if (!opt.save)
                return 0;
        _cleanup_json_ json_object *o = NULL;
        int r = rt_pod_net_save(pn, &o, ret_err);
        if (r < 0)
                return r;
        return cc_json_write_file(opt.save, o, 0600, ret_err);
}

static int load_saved(rt_pod_net **ret, cc_error **ret_err)
{
        _cleanup_json_ json_object *o = cc_json_parse_file(opt.load, 4 << 20, ret_err);
        if (!o)
                return -EINVAL;
        return rt_pod_net_load(o, ret, ret_err);
}

static double now_ms(void)
{
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

typedef struct worker {
        rt_net *net;
        char id[64];
        int index;
        cc_error *err;
        double setup_ms;
} worker;

static void *work(void *arg)
{
        worker *w = arg;
        rt_pod_net_req req = make_req(w->id);
        /* Concurrent pods cannot share a host port: worker i adds i. */
        rt_port_mapping ports[MAX_LIST];
        for (int i = 0; i < opt.n_ports; i++) {
                ports[i] = opt.ports[i];
                ports[i].host_port += w->index;
        }
        req.ports = ports;
        rt_pod_net *pn = NULL;
        double t0 = now_ms();
        if (rt_pod_net_setup(w->net, &req, &pn, &w->err) < 0)
                return NULL;
        w->setup_ms = now_ms() - t0;
        if (opt.vm && (pn->n_nics == 0 || pn->nics[0].tap_fd < 0))
                cc_error_set(&w->err, -EIO, "%s: no tap", w->id);
        cc_error *e = NULL;
        if (rt_pod_net_teardown(w->net, w->id, pn, &e) < 0 && !w->err)
                w->err = e;
        else
                cc_error_free(e);
        rt_pod_net_free(pn);
        return NULL;
}

static int cmd_many(bool concurrent)
{
        cc_error *err = NULL;
        if (opt.n < 1 || opt.n > 200)
                return fail((cc_error_set(&err, -EINVAL, "1 <= -n <= 200"), err));
        _cleanup_(net_freep) rt_net *net = NULL;
        if (make_net(&net, &err) < 0)
                return fail(err);
        worker *w = calloc((size_t)opt.n, sizeof *w);
        pthread_t *th = calloc((size_t)opt.n, sizeof *th);
        for (int i = 0; i < opt.n; i++) {
                w[i].net = net;
                w[i].index = i;
                snprintf(w[i].id, sizeof w[i].id, "%s%d", opt.id ? opt.id : "podnet", i);
        }
        if (concurrent) {
                for (int i = 0; i < opt.n; i++)
                        pthread_create(&th[i], NULL, work, &w[i]);
                for (int i = 0; i < opt.n; i++)
                        pthread_join(th[i], NULL);
        } else
                for (int i = 0; i < opt.n; i++)
                        work(&w[i]);
        json_object *errs = json_object_new_array(), *times = json_object_new_array();
        double *t = calloc((size_t)opt.n, sizeof(double));
        int nt = 0;
        for (int i = 0; i < opt.n; i++) {
                if (w[i].err) {
                        json_object_array_add(errs, json_object_new_string(w[i].err->msg));
                        cc_error_free(w[i].err);
                } else {
                        t[nt++] = w[i].setup_ms;
                        json_object_array_add(times, json_object_new_double(w[i].setup_ms));
                }
        }
        qsort(t, (size_t)nt, sizeof(double), cmp_double);
        json_object *o = json_object_new_object();
        json_object_object_add(o, "errors", errs);
        json_object_object_add(o, "setup_ms", times);
        json_object_object_add(o, "median_setup_ms",
                               json_object_new_double(nt == 0 ? 0 : nt % 2 ? t[nt / 2] : (t[nt / 2 - 1] + t[nt / 2]) / 2));
        free(t);
        free(w);
        free(th);
        return print_json(o);
}

int main(int argc, char **argv)
{
        enum { O_CONF = 256, O_BIN, O_CACHE, O_NETNS_DIR, O_ID, O_TIMEOUT, O_PORT, O_VM, O_SAVE, O_LOAD, O_TWICE, O_AGENT, O_ADOPT };
        static const struct option lo[] = {
                { "conf-dir", 1, NULL, O_CONF }, { "bin-dir", 1, NULL, O_BIN }, { "cache-dir", 1, NULL, O_CACHE },
                { "netns-dir", 1, NULL, O_NETNS_DIR }, { "id", 1, NULL, O_ID }, { "timeout", 1, NULL, O_TIMEOUT },
                { "port", 1, NULL, O_PORT }, { "vm", 0, NULL, O_VM }, { "adopt", 0, NULL, O_ADOPT }, { "save", 1, NULL, O_SAVE },
                { "load", 1, NULL, O_LOAD }, { "teardown-twice", 0, NULL, O_TWICE }, { "agent", 1, NULL, O_AGENT },
                { NULL, 0, NULL, 0 },
        };
        if (argc < 2) {
                fprintf(stderr, "usage: cocoon-podnet COMMAND [OPTIONS] (see the source)\n");
                return 2;
        }
        const char *cmd = argv[1];
        if (getenv("COCOON_NET_DEBUG"))
                cc_log_set_level(CC_LOG_DEBUG);
        optind = 2;
        int c;
        static char protos[MAX_LIST][8];
        while ((c = getopt_long(argc, argv, "n:", lo, NULL)) != -1) {
                switch (c) {
                case O_CONF: opt.conf_dir = optarg; break;
                case O_BIN:
                        if (opt.n_bin_dirs < MAX_LIST)
                                opt.bin_dirs[opt.n_bin_dirs++] = optarg;
                        break;
                case O_CACHE: opt.cache_dir = optarg; break;
                case O_NETNS_DIR: opt.netns_dir = optarg; break;
                case O_ID: opt.id = optarg; break;
                case O_TIMEOUT: opt.timeout_s = atoi(optarg); break;
                case O_VM: opt.vm = true; break;
                case O_ADOPT: opt.adopt = true; break;
                case O_SAVE: opt.save = optarg; break;
                case O_LOAD: opt.load = optarg; break;
                case O_TWICE: opt.twice = true; break;
                case O_AGENT: opt.agent = optarg; break;
                case 'n': opt.n = atoi(optarg); break;
                case O_PORT: {
                        if (opt.n_ports >= MAX_LIST)
                                break;
                        rt_port_mapping *m = &opt.ports[opt.n_ports];
                        char *proto = protos[opt.n_ports];
                        strcpy(proto, "tcp");
                        if (sscanf(optarg, "%d:%d/%7s", &m->host_port, &m->container_port, proto) < 2) {
                                fprintf(stderr, "bad --port '%s'\n", optarg);
                                return 2;
                        }
                        m->protocol = !strcmp(proto, "udp") ? IPPROTO_UDP : !strcmp(proto, "sctp") ? IPPROTO_SCTP
                                    : !strcmp(proto, "tcp") ? IPPROTO_TCP : 999;
                        opt.n_ports++;
                        break;
                }
                default: return 2;
                }
        }
        cc_error *err = NULL;
        if (!strcmp(cmd, "load")) {
                _cleanup_(pn_freep) rt_pod_net *pn = NULL;
                if (!opt.load)
                        return fail((cc_error_set(&err, -EINVAL, "--load is required"), err));
                if (load_saved(&pn, &err) < 0)
                        return fail(err);
                return print_json(describe(pn));
        }
        if (!strcmp(cmd, "guest")) {
                _cleanup_(pn_freep) rt_pod_net *pn = NULL;
                if (!opt.load || !opt.agent || strlen(opt.agent) >= sizeof(((vmm_endpoint *)0)->path))
                        return fail((cc_error_set(&err, -EINVAL, "--load and --agent (a socket path) are required"), err));
                if (load_saved(&pn, &err) < 0)
                        return fail(err);
                vmm_endpoint ep = { .kind = VMM_EP_UNIX };
                strcpy(ep.path, opt.agent);
                _cleanup_rt_agent_ rt_agent *a = NULL;
                if (rt_agent_dial(&ep, 10000, -1, &a, &err) < 0)
                        return fail(err);
                if (rt_pod_net_configure_guest(pn, a, &err) < 0)
                        return fail(err);
                return print_json(json_object_new_object());
        }
        if (!strcmp(cmd, "bench") || !strcmp(cmd, "concurrent"))
                return cmd_many(!strcmp(cmd, "concurrent"));

        _cleanup_(net_freep) rt_net *net = NULL;
        if (make_net(&net, &err) < 0)
                return fail(err);
        if (!strcmp(cmd, "ready")) {
                if (rt_net_ready(net, &err) < 0)
                        return fail(err);
                return print_json(json_object_new_object());
        }
        if (!opt.id)
                return fail((cc_error_set(&err, -EINVAL, "--id is required"), err));
        if (!strcmp(cmd, "setup")) {
                rt_pod_net_req req = make_req(opt.id);
                _cleanup_(pn_freep) rt_pod_net *pn = NULL;
                _cleanup_free_ char *pool_ns = NULL;
                _cleanup_close_ int pool_tap = -1;
                if (opt.adopt && (cni_netns_create(opt.netns_dir, opt.id, &pool_ns, &err) < 0 ||
                                  cni_tap_create(pool_ns, RT_POOL_TAP, &pool_tap, &err) < 0))
                        return fail(err);
                double t0 = now_ms();
                if (rt_pod_net_setup(net, &req, &pn, &err) < 0)
                        return fail(err);
                double ms = now_ms() - t0;
                if (write_saved(pn, &err) < 0)
                        return fail(err);
                json_object *o = describe(pn);
                json_object_object_add(o, "setup_ms", json_object_new_double(ms));
                return print_json(o);
        }
        if (!strcmp(cmd, "teardown")) {
                _cleanup_(pn_freep) rt_pod_net *pn = NULL;
                if (opt.load && load_saved(&pn, &err) < 0)
                        return fail(err);
                json_object *o = json_object_new_object();
                if (pn)
                        json_object_object_add(o, "loaded", describe(pn));
                if (rt_pod_net_teardown(net, opt.id, pn, &err) < 0) {
                        json_object_put(o);
                        return fail(err);
                }
                return print_json(o);
        }
        if (!strcmp(cmd, "cycle")) {
                rt_pod_net_req req = make_req(opt.id);
                rt_pod_net *pn = NULL;
                if (rt_pod_net_setup(net, &req, &pn, &err) < 0)
                        return fail(err);
                _cleanup_json_ json_object *saved = NULL;
                int r = rt_pod_net_save(pn, &saved, &err);
                rt_pod_net_free(pn);
                pn = NULL;
                if (r < 0)
                        return fail(err);
                /* Through text, as the state store keeps it. */
                const char *txt = json_object_to_json_string_ext(saved, JSON_C_TO_STRING_PLAIN);
                _cleanup_json_ json_object *back = cc_json_parse(txt, strlen(txt), 4 << 20, 64, "record", &err);
                if (!back || rt_pod_net_load(back, &pn, &err) < 0)
                        return fail(err);
                json_object *o = json_object_new_object();
                json_object_object_add(o, "loaded", describe(pn));
                r = rt_pod_net_teardown(net, opt.id, pn, &err);
                if (r == 0 && opt.twice)
                        r = rt_pod_net_teardown(net, opt.id, pn, &err);
                rt_pod_net_free(pn);
                if (r < 0) {
                        json_object_put(o);
                        return fail(err);
                }
                return print_json(o);
        }
        fprintf(stderr, "unknown command '%s'\n", cmd);
        return 2;
}
