/* SPDX-License-Identifier: Apache-2.0 */
/* RunPodSandbox, StopPodSandbox, RemovePodSandbox, PodSandboxStatus and
 * ListPodSandbox (see runtime/pod.h). The machine itself (VMM, virtiofsd,
 * agent dial) is runtime/pod-vm.c. */
#include <errno.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/json.h"
#include "common/log.h"
#include "common/undo.h"
#include "net-cni/conf.h"
#include "net-cni/netns.h"
#include "runtime/internal.h"
#include "runtime/pod-etc.h"
#include "runtime/rootfs.h"

/* ---- validation and mode ----------------------------------------------------------- */

static const Runtime__V1__NamespaceOption *ns_options(const Runtime__V1__PodSandboxConfig *c)
{
        return c->linux && c->linux->security_context ? c->linux->security_context->namespace_options : NULL;
}

static int check_metadata(const Runtime__V1__PodSandboxConfig *c, cc_error **ret_err)
{
        const Runtime__V1__PodSandboxMetadata *m = c ? c->metadata : NULL;
        if (!m)
                return cc_error_set(ret_err, -EINVAL, "pod sandbox config without metadata");
        if (!m->name || !*m->name)
                return cc_error_set(ret_err, -EINVAL, "pod sandbox metadata: name is required");
        if (!m->uid || !*m->uid)
                return cc_error_set(ret_err, -EINVAL, "pod sandbox metadata: uid is required");
        if (!m->namespace_ || !*m->namespace_)
                return cc_error_set(ret_err, -EINVAL, "pod sandbox metadata: namespace is required");
        if (strlen(m->name) > 253 || strlen(m->uid) > 253 || strlen(m->namespace_) > 253)
                return cc_error_set(ret_err, -EINVAL, "pod sandbox metadata: a field is longer than 253 bytes");
        if (c->log_directory && *c->log_directory &&
            (c->log_directory[0] != '/' || strstr(c->log_directory, "/../") ||
             strlen(c->log_directory) > 4096))
                return cc_error_set(ret_err, -EINVAL, "log_directory '%.80s' must be an absolute path",
                                    c->log_directory);
        return 0;
}

static int pick_mode(rt_runtime *rt, rt_pod *p, const char *handler, cc_error **ret_err)
{
        const cc_config *cfg = rt->cfg;
        const char *h = handler && *handler ? handler : cfg->runtime.default_handler;
        rt_pod_mode mode = RT_POD_VM;
        const char *reason = NULL;
        if (h && *h) {
                const cc_config_handler *ch = cc_config_find_handler(cfg, h);
                if (!ch)
                        return cc_error_set(ret_err, -ENOENT, "runtime handler '%s' is not configured", h);
                if (ch->mode == CC_CONFIG_MODE_HOST) {
                        mode = RT_POD_HOST;
                        reason = "its runtime handler runs pods on the host";
                }
        }
        const Runtime__V1__NamespaceOption *ns = ns_options(p->config);
        if (ns) {
                p->host_network = ns->network == RUNTIME__V1__NAMESPACE_MODE__NODE;
                p->host_pid = ns->pid == RUNTIME__V1__NAMESPACE_MODE__NODE;
                p->host_ipc = ns->ipc == RUNTIME__V1__NAMESPACE_MODE__NODE;
        }
        if (mode == RT_POD_VM && (p->host_network || p->host_pid || p->host_ipc)) {
                mode = RT_POD_HOST;
                reason = p->host_network ? "it uses the host's network namespace"
                         : p->host_pid   ? "it uses the host's PID namespace"
                                         : "it uses the host's IPC namespace";
        }
        if (mode == RT_POD_HOST && !cfg->runtime.allow_host_mode)
                return cc_error_set(ret_err, -EINVAL,
                                    "pod needs host mode (%s), which is disabled (runtime.allow_host_mode = false)",
                                    reason);
        if (mode == RT_POD_HOST && !rt->host_ops)
                return cc_error_set(ret_err, -EOPNOTSUPP, "pod needs host mode (%s), which this build lacks", reason);
        p->mode = mode;
        return 0;
}

static bool same_metadata(const Runtime__V1__PodSandboxMetadata *a, const Runtime__V1__PodSandboxMetadata *b)
{
        return strcmp(a->name, b->name) == 0 && strcmp(a->namespace_, b->namespace_) == 0 &&
               strcmp(a->uid, b->uid) == 0 && a->attempt == b->attempt;
}

/* ---- undo steps ----------------------------------------------------------------------- */

typedef struct pod_undo {
        rt_runtime *rt;
        rt_pod *pod;
        rt_pod *pooled; /* a VM taken from the pool, until the pod adopts it */
} pod_undo;

static void undo_pooled(void *arg)
{
        pod_undo *u = arg;
        rt_pod *v = TAKE_PTR(u->pooled);
        if (!v)
                return;
        rt_pod_vm_shutdown(u->rt, v);
        if (v->lo_netns)
                (void)cni_netns_remove(v->lo_netns, NULL);
        rt_pod_free(v);
}

static void undo_table(void *arg)
{
        pod_undo *u = arg;
        pthread_mutex_lock(&u->rt->lock);
        rt_table_del_pod(u->rt, u->pod);
        pthread_mutex_unlock(&u->rt->lock);
}

static void undo_dirs(void *arg)
{
        pod_undo *u = arg;
        if (u->pod->share_dir)
                (void)rt_share_destroy(u->pod->share_dir, NULL);
        (void)cc_rm_rf(u->pod->run_dir, NULL);
        (void)cc_rm_rf(u->pod->rec_dir, NULL);
}

static void undo_net(void *arg)
{
        pod_undo *u = arg;
        if (u->pod->lo_netns) {
                (void)cni_netns_remove(u->pod->lo_netns, NULL);
                free(u->pod->lo_netns);
                u->pod->lo_netns = NULL;
                return;
        }
        if (!u->pod->net)
                return; /* a failed setup leaves nothing */
        _cleanup_error_ cc_error *err = NULL;
        if (rt_pod_net_teardown(u->rt->net, u->pod->id, u->pod->net, &err) < 0)
                log_debug("pod=%.12s undo network: %s", u->pod->id, err->msg);
        rt_pod_net_free(u->pod->net);
        u->pod->net = NULL;
        rt_json_clear(&u->pod->net_j);
}

/* ---- RunPodSandbox ----------------------------------------------------------------- */

/* Empties the run directory but for the share: what a pooled VM the pod
 * gave back left there (its sockets, console log). */
static int clear_run_dir(rt_pod *p, cc_error **ret_err)
{
        _cleanup_closedir_ DIR *d = opendir(p->run_dir);
        if (!d)
                return cc_error_errno(ret_err, "open %s", p->run_dir);
        struct dirent *de;
        while ((de = readdir(d))) {
                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") || !strcmp(de->d_name, "shared"))
                        continue;
                _cleanup_free_ char *path = NULL;
                if (asprintf(&path, "%s/%s", p->run_dir, de->d_name) < 0)
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
                int r = cc_rm_rf(path, ret_err);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Is there a CNI network to set up (else pods get loopback only)? A broken
 * configuration counts: setup_net reports it. */
static bool cni_configured(rt_runtime *rt)
{
        _cleanup_error_ cc_error *err = NULL;
        _cleanup_netconf_ cni_netconf *conf = NULL;
        return cni_conf_load_dir(rt->cfg->cni.conf_dir, &conf, &err) != -ENOENT;
}

/* pooled: the pod took a VM from the pool, whose netns (named by the pod's
 * id) and tap exist already. */
static int setup_net(rt_runtime *rt, rt_pod *p, rt_pod *pooled, cc_error **ret_err)
{
        const Runtime__V1__PodSandboxConfig *c = p->config;
        const Runtime__V1__DNSConfig *dns = c->dns_config;
        _cleanup_free_ rt_port_mapping *ports = calloc(c->n_port_mappings + 1, sizeof(*ports));
        if (!ports)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < c->n_port_mappings; i++) {
                const Runtime__V1__PortMapping *pm = c->port_mappings[i];
                ports[i].protocol = pm->protocol == RUNTIME__V1__PROTOCOL__UDP    ? IPPROTO_UDP
                                    : pm->protocol == RUNTIME__V1__PROTOCOL__SCTP ? IPPROTO_SCTP
                                                                                  : IPPROTO_TCP;
                ports[i].container_port = pm->container_port;
                ports[i].host_port = pm->host_port;
                ports[i].host_ip = pm->host_ip;
        }
        /* NULL-terminated copies of the DNS arrays */
        _cleanup_free_ const char **servers = calloc((dns ? dns->n_servers : 0) + 1, sizeof(char *));
        _cleanup_free_ const char **searches = calloc((dns ? dns->n_searches : 0) + 1, sizeof(char *));
        _cleanup_free_ const char **options = calloc((dns ? dns->n_options : 0) + 1, sizeof(char *));
        if (!servers || !searches || !options)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        for (size_t i = 0; dns && i < dns->n_servers; i++)
                servers[i] = dns->servers[i];
        for (size_t i = 0; dns && i < dns->n_searches; i++)
                searches[i] = dns->searches[i];
        for (size_t i = 0; dns && i < dns->n_options; i++)
                options[i] = dns->options[i];
        rt_pod_net_req req = {
                .sandbox_id = p->id,
                .pod_name = c->metadata->name,
                .pod_namespace = c->metadata->namespace_,
                .pod_uid = c->metadata->uid,
                .ports = ports,
                .n_ports = c->n_port_mappings,
                .dns_servers = servers,
                .dns_searches = searches,
                .dns_options = options,
                .cgroup_parent = c->linux ? c->linux->cgroup_parent : NULL,
                .vm = p->mode == RT_POD_VM,
                .adopt = pooled != NULL,
        };
        _cleanup_error_ cc_error *nerr = NULL;
        _cleanup_netconf_ cni_netconf *conf = NULL;
        if (cni_conf_load_dir(rt->cfg->cni.conf_dir, &conf, &nerr) == -ENOENT) {
                /* Until a CNI config exists (NetworkReady=false), pods get a
                 * network namespace with loopback only. (A config whose
                 * plugins are missing is an error: rt_pod_net_setup says so.) */
                log_info("pod=%.12s %s: the pod gets loopback only", p->id, nerr->msg);
                if (pooled) /* its NIC stays unconfigured */
                        p->lo_netns = TAKE_PTR(pooled->lo_netns);
                else if (cni_netns_create(rt->cfg->cni.netns_dir, p->id, &p->lo_netns, ret_err) < 0)
                        return cc_error_prefix(ret_err, "network namespace");
                return 0;
        }
        if (rt_pod_net_setup(rt->net, &req, &p->net, ret_err) < 0)
                return cc_error_prefix(ret_err, "network");
        if (pooled) { /* the netns is the pod's now */
                free(pooled->lo_netns);
                pooled->lo_netns = NULL;
        }
        /* A deep copy: pod-net's saved JSON shares objects with its live
         * state, and json-c objects are not safe to share across threads. */
        _cleanup_json_ json_object *saved = NULL;
        if (rt_pod_net_save(p->net, &saved, ret_err) < 0)
                return cc_error_prefix(ret_err, "network");
        if (json_object_deep_copy(saved, &p->net_j, NULL) < 0 || !p->net_j)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        return 0;
}

static int create_sandbox(rt_runtime *rt, rt_pod *p, cc_error **ret_err)
{
        char hostname[RT_POD_HOSTNAME_MAX + 1];
        if (rt_pod_etc_hostname(p->config, hostname, ret_err) < 0)
                return -EINVAL;
        const Runtime__V1__DNSConfig *dns = p->config->dns_config;
        size_t nd = dns ? dns->n_servers + 2 : 0;
        _cleanup_strv_free_ char **lines = calloc(nd + 1, sizeof(char *));
        if (!lines)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        size_t n = 0;
        for (size_t i = 0; dns && i < dns->n_servers; i++)
                if (asprintf(&lines[n++], "nameserver %s", dns->servers[i]) < 0)
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
        /* "search a b", "options x y" */
        for (int k = 0; dns && k < 2; k++) {
                size_t cnt = k ? dns->n_options : dns->n_searches;
                char **v = k ? dns->options : dns->searches;
                if (!cnt)
                        continue;
                size_t len = 16;
                for (size_t i = 0; i < cnt; i++)
                        len += strlen(v[i]) + 1;
                char *s = malloc(len);
                if (!s)
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
                strcpy(s, k ? "options" : "search");
                for (size_t i = 0; i < cnt; i++) {
                        strcat(s, " ");
                        strcat(s, v[i]);
                }
                lines[n++] = s;
        }
        rt_agent_storage share = {
                .driver = "virtio-fs",
                .source = RT_SHARE_TAG,
                .fstype = "virtiofs",
                .mount_point = RT_GUEST_SHARE,
        };
        const Runtime__V1__NamespaceOption *ns = ns_options(p->config);
        rt_agent_sandbox sb = {
                .sandbox_id = p->id,
                .hostname = hostname,
                .dns = (const char *const *)lines,
                .storages = p->mode == RT_POD_VM ? &share : NULL,
                .n_storages = p->mode == RT_POD_VM ? 1 : 0,
                .sandbox_pidns = ns && ns->pid == RUNTIME__V1__NAMESPACE_MODE__POD,
        };
        if (rt_agent_create_sandbox(p->agent, &sb, 0, ret_err) < 0)
                return cc_error_prefix(ret_err, "CreateSandbox");
        return 0;
}

/* The guest boots with lo down; the pod's containers share the VM's network
 * namespace and talk over localhost. (IPv6 adds ::1 by itself once lo is up.) */
static int guest_loopback_up(rt_pod *p, cc_error **ret_err)
{
        /* UpdateInterface sets exactly these: both, or the pod loses ::1 */
        rt_agent_ip ip[] = { { .family = AF_INET, .addr = "127.0.0.1", .prefixlen = 8 },
                             { .family = AF_INET6, .addr = "::1", .prefixlen = 128 } };
        rt_agent_iface lo = { .name = "lo", .mac = "", .mtu = 0 /* keep */, .ips = ip, .n_ips = 2 };
        if (rt_agent_update_interface(p->agent, &lo, 0, ret_err) < 0)
                return cc_error_prefix(ret_err, "guest loopback");
        return 0;
}

int rt_pod_run(rt_runtime *rt, const Runtime__V1__PodSandboxConfig *config, const char *runtime_handler,
               char **ret_id, cc_error **ret_err)
{
        if (check_metadata(config, ret_err) < 0)
                return -EINVAL;
        if (rt_pod_etc_check_dns(config->dns_config, ret_err) < 0)
                return -EINVAL;
        char hostname[RT_POD_HOSTNAME_MAX + 1];
        if (rt_pod_etc_hostname(config, hostname, ret_err) < 0)
                return -EINVAL;
        rt_pod *p = rt_pod_new();
        if (!p)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        _cleanup_undo_ cc_undo undo = CC_UNDO_INIT;
        pod_undo pu = { rt, p, NULL };
        int r;
        p->config = rt_proto_copy(&config->base);
        p->handler = rt_strdup0(runtime_handler);
        p->created_at_ns = rt_now_ns();
        p->creating = true;
        if (!p->config || !p->handler) {
                r = cc_error_set(ret_err, -ENOMEM, "out of memory");
                goto fail;
        }
        if ((r = pick_mode(rt, p, runtime_handler, ret_err)) < 0)
                goto fail;
        /* a VM booted ahead, if one of this pod's size waits: its id is the pod's */
        if (p->mode == RT_POD_VM && rt->pool_started) {
                rt_pod_vm_size(rt, p);
                if ((pu.pooled = rt_pool_take(rt, p->vcpus, p->memory_mib)))
                        cc_undo_push(&undo, undo_pooled, &pu, NULL);
        }
        /* Else, with pod networks, the VM starts now the same way (a netns
         * holding the tap its NIC is on) and the pod adopts it like a pooled
         * one: CNI runs while the guest boots, instead of before. */
        bool booting = false;
        if (p->mode == RT_POD_VM && !pu.pooled && rt->net && cni_configured(rt)) {
                if ((r = rt_pool_boot_now(rt, p->config, &pu.pooled, ret_err)) < 0)
                        goto fail;
                cc_undo_push(&undo, undo_pooled, &pu, NULL);
                booting = true;
        }
        if (pu.pooled)
                memcpy(p->id, pu.pooled->id, sizeof(p->id));
        else if ((r = cc_id_new(p->id, ret_err)) < 0)
                goto fail;
        if ((r = rt_pod_set_paths(rt, p)) < 0) {
                cc_error_set(ret_err, r, "out of memory");
                goto fail;
        }
        /* duplicate metadata (including pods being created right now) */
        pthread_mutex_lock(&rt->lock);
        for (size_t i = 0; i < rt->n_pods; i++)
                if (same_metadata(rt->pods[i]->config->metadata, config->metadata)) {
                        r = cc_error_set(ret_err, -EEXIST,
                                         "pod sandbox with name '%s' (namespace '%s', uid '%s', attempt %u) "
                                         "already exists: %s",
                                         config->metadata->name, config->metadata->namespace_,
                                         config->metadata->uid, config->metadata->attempt, rt->pods[i]->id);
                        break;
                }
        if (r == 0 && rt_table_add_pod(rt, p) < 0)
                r = cc_error_set(ret_err, -ENOMEM, "out of memory");
        pthread_mutex_unlock(&rt->lock);
        if (r < 0)
                goto fail;
        cc_undo_push(&undo, undo_table, &pu, NULL);
        log_debug("pod=%.12s mode=%s", p->id, p->mode == RT_POD_VM ? "vm" : "host");

        /* directories */
        if ((r = cc_mkdir_p(p->run_dir, 0711, ret_err)) < 0 || (r = cc_mkdir_p(p->rec_dir, 0700, ret_err)) < 0)
                goto fail;
        cc_undo_push(&undo, undo_dirs, &pu, NULL);
        if (p->share_dir && (r = rt_share_prepare(p->share_dir, ret_err)) < 0)
                goto fail;

        /* network */
        if (!p->host_network && rt->net) {
                cc_error *nerr = NULL;
                r = setup_net(rt, p, pu.pooled, &nerr);
                if (r == -EXDEV && pu.pooled) {
                        /* the network gives the pod more interfaces than the
                         * pooled VM has NICs (setup_net undid itself): the
                         * pod boots a VM of its own after all */
                        log_info("pod=%.12s %s; booting a VM for it", p->id, nerr->msg);
                        cc_error_free(TAKE_PTR(nerr));
                        undo_pooled(&pu);
                        booting = false;
                        if ((r = clear_run_dir(p, ret_err)) < 0)
                                goto fail;
                        r = setup_net(rt, p, NULL, &nerr);
                }
                if (r < 0)
                        cc_error_propagate(ret_err, TAKE_PTR(nerr));
                cc_undo_push(&undo, undo_net, &pu, NULL);
                if (r < 0)
                        goto fail;
        }

        /* /etc files */
        if ((r = cc_mkdir_p(p->etc_dir, 0755, ret_err)) < 0 ||
            (r = rt_pod_etc_write(p->etc_dir, p->config, p->net ? p->net->ip : NULL, p->host_network, ret_err)) <
                    0)
                goto fail;

        /* the machine and its agent */
        if (pu.pooled) {
                log_debug("pod=%.12s takes %s", p->id, booting ? "the VM started for it" : "a VM from the pool");
                rt_pod_vm_adopt(p, TAKE_PTR(pu.pooled), &undo);
                if (!p->agent && (r = rt_pod_vm_dial(rt, p, &undo, ret_err)) < 0)
                        goto fail;
        } else if ((r = rt_pod_vm_boot(rt, p, &undo, ret_err)) < 0) {
                goto fail;
        }
        if ((r = create_sandbox(rt, p, ret_err)) < 0)
                goto fail;
        if (p->mode == RT_POD_VM && (r = guest_loopback_up(p, ret_err)) < 0)
                goto fail;
        if (p->net && p->mode == RT_POD_VM && (r = rt_pod_net_configure_guest(p->net, p->agent, ret_err)) < 0) {
                cc_error_prefix(ret_err, "guest network");
                goto fail;
        }

        pthread_mutex_lock(&rt->lock);
        p->state = RT_POD_READY;
        pthread_mutex_unlock(&rt->lock);
        if ((r = rt_state_save_pod(rt, p, ret_err)) < 0)
                goto fail;
        {
                _cleanup_free_ char *boot = NULL;
                if (asprintf(&boot, "%s/" RT_BOOT_RECORD, p->rec_dir) >= 0)
                        (void)unlink(boot);
        }
        char *id = strdup(p->id);
        if (!id) {
                r = cc_error_set(ret_err, -ENOMEM, "out of memory");
                goto fail;
        }
        cc_undo_disarm(&undo);
        pthread_mutex_lock(&rt->lock);
        p->creating = false;
        pthread_mutex_unlock(&rt->lock);
        /* as containerd reports a sandbox: created, then started */
        rt_events_publish(rt, RT_EVENT_CREATED, p->id, p->id);
        rt_events_publish(rt, RT_EVENT_STARTED, p->id, p->id);
        rt_watch_pod(rt, p);
        rt_pod_start_oom_watch(rt, p);
        rt_pod_unref(rt, p);
        *ret_id = id;
        return 0;
fail:
        cc_undo_run(&undo);
        rt_pod_unref(rt, p);
        return r < 0 ? r : -EIO;
}

/* ---- StopPodSandbox ------------------------------------------------------------------ */

static int pod_stop_locked(rt_runtime *rt, rt_pod *p, cc_error **ret_err)
{
        rt_ctr **l = NULL;
        size_t n = 0;
        int r = 0;
        if (rt_pod_ctrs(rt, p, &l, &n) < 0)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                _cleanup_error_ cc_error *err = NULL;
                if (rt_ctr_stop(rt, l[i], 0, &err) < 0)
                        log_debug("pod=%.12s stopping container %.12s: %s", p->id, l[i]->id, err->msg);
        }
        /* the pumps read through the agent that goes now */
        for (size_t i = 0; i < n; i++) {
                pthread_mutex_lock(&l[i]->op_lock);
                rt_ctr_io *io = TAKE_PTR(l[i]->io);
                pthread_mutex_unlock(&l[i]->op_lock);
                rt_ctr_io_free(io);
        }
        rt_pod_vm_shutdown(rt, p);
        if (p->lo_netns) {
                _cleanup_error_ cc_error *err = NULL;
                if (cni_netns_remove(p->lo_netns, &err) < 0)
                        log_warn("pod=%.12s %s", p->id, err->msg);
        }
        if (p->net || p->net_j) {
                _cleanup_error_ cc_error *err = NULL;
                if (rt_pod_net_teardown(rt->net, p->id, p->net, &err) < 0) {
                        r = cc_error_prefix(&err, "network teardown");
                        cc_error_propagate(ret_err, TAKE_PTR(err));
                }
        }
        for (size_t i = 0; i < n; i++)
                rt_ctr_unmount(l[i]);
        pthread_mutex_lock(&rt->lock);
        p->state = RT_POD_NOTREADY;
        if (!p->dead) /* else rt_pod_mark_dead told already */
                rt_events_publish(rt, RT_EVENT_STOPPED, p->id, p->id);
        p->dead = true;
        pthread_mutex_unlock(&rt->lock);
        /* containers that had no exit recorded (the agent was unreachable) */
        rt_pod_mark_dead(rt, p, "pod stopped");
        rt_ctr_list_unref(rt, l, n);
        return r;
}

int rt_pod_stop(rt_runtime *rt, const char *id, cc_error **ret_err)
{
        rt_pod *p = NULL;
        if (rt_find_pod(rt, id, &p, ret_err) < 0)
                return -ENOENT;
        pthread_mutex_lock(&p->op_lock);
        int r = pod_stop_locked(rt, p, ret_err);
        pthread_mutex_unlock(&p->op_lock);
        rt_pod_unref(rt, p);
        return r;
}

/* ---- RemovePodSandbox --------------------------------------------------------------- */

int rt_pod_remove(rt_runtime *rt, const char *id, cc_error **ret_err)
{
        rt_pod *p = NULL;
        _cleanup_error_ cc_error *err = NULL;
        if (rt_find_pod(rt, id, &p, &err) < 0) {
                if (err->code == -ENOENT)
                        return 0; /* idempotent */
                return cc_error_propagate(ret_err, TAKE_PTR(err));
        }
        pthread_mutex_lock(&p->op_lock);
        int r = 0;
        if (p->vmm || p->vfsd || p->agent || p->state == RT_POD_READY)
                r = pod_stop_locked(rt, p, ret_err);
        else if (p->net || p->net_j)
                (void)rt_pod_net_teardown(rt->net, p->id, p->net, NULL);
        else if (p->lo_netns)
                (void)cni_netns_remove(p->lo_netns, NULL);
        if (r == 0) {
                rt_ctr **l = NULL;
                size_t n = 0;
                if (rt_pod_ctrs(rt, p, &l, &n) == 0) {
                        for (size_t i = 0; i < n && r == 0; i++)
                                r = rt_ctr_remove(rt, l[i], ret_err);
                        rt_ctr_list_unref(rt, l, n);
                }
        }
        if (r == 0 && p->share_dir && (r = rt_share_destroy(p->share_dir, ret_err)) < 0)
                cc_error_prefix(ret_err, "pod %.12s: its share", p->id);
        if (r == 0) {
                pthread_mutex_lock(&p->save_lock);
                pthread_mutex_lock(&rt->lock);
                rt_table_del_pod(rt, p);
                pthread_mutex_unlock(&rt->lock);
                pthread_mutex_unlock(&p->save_lock);
                rt_events_publish(rt, RT_EVENT_DELETED, p->id, p->id);
                if ((r = cc_rm_rf(p->run_dir, ret_err)) == 0)
                        r = cc_rm_rf(p->rec_dir, ret_err);
                if (r < 0)
                        cc_error_prefix(ret_err, "pod %.12s: removing its directories", p->id);
        }
        pthread_mutex_unlock(&p->op_lock);
        rt_pod_unref(rt, p);
        return r;
}

/* ---- status / list ------------------------------------------------------------------ */

void rt_pod_info_free(rt_pod_info *p)
{
        if (!p)
                return;
        if (p->config)
                protobuf_c_message_free_unpacked(&p->config->base, NULL);
        free(p->id);
        free(p->runtime_handler);
        free(p->ip);
        cc_strv_free(p->extra_ips);
        free(p->netns_path);
        free(p->agent_endpoint);
        free(p->accel);
        free(p->run_dir);
        free(p);
}

void rt_pod_info_list_free(rt_pod_info **list, size_t n)
{
        for (size_t i = 0; list && i < n; i++)
                rt_pod_info_free(list[i]);
        free(list);
}

static int vmm_pid_of(rt_pod *p)
{
        const vmm_ops *ops = p->vmm ? vmm_get_ops(p->vmm) : NULL;
        return ops && ops->pid ? ops->pid(p->vmm) : 0;
}

/* The node's address, reported as a host-network pod's IP (as the kubelet
 * expects): the source address of the default route, else the first
 * global IPv4 address of an interface that is up. */
static void node_ip(char buf[INET6_ADDRSTRLEN])
{
        buf[0] = 0;
        _cleanup_close_ int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons(9) };
        inet_pton(AF_INET, "192.0.2.1", &dst.sin_addr); /* TEST-NET-1: never sent to */
        struct sockaddr_in src;
        socklen_t sl = sizeof(src);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&dst, sizeof(dst)) == 0 &&
            getsockname(fd, (struct sockaddr *)&src, &sl) == 0 && src.sin_addr.s_addr != htonl(INADDR_ANY) &&
            inet_ntop(AF_INET, &src.sin_addr, buf, INET6_ADDRSTRLEN))
                return;
        struct ifaddrs *ifa = NULL;
        if (getifaddrs(&ifa) < 0)
                return;
        for (struct ifaddrs *i = ifa; i; i = i->ifa_next)
                if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET && (i->ifa_flags & IFF_UP) &&
                    !(i->ifa_flags & IFF_LOOPBACK) &&
                    inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, buf, INET6_ADDRSTRLEN))
                        break;
        freeifaddrs(ifa);
}

/* Under rt->lock. */
static rt_pod_info *pod_info(rt_runtime *rt, rt_pod *p)
{
        rt_pod_info *i = calloc(1, sizeof(*i));
        if (!i)
                return NULL;
        i->id = strdup(p->id);
        i->config = rt_proto_copy(&p->config->base);
        i->runtime_handler = rt_strdup0(p->handler);
        i->state = p->state;
        i->mode = p->mode;
        i->created_at_ns = p->created_at_ns;
        char nip[INET6_ADDRSTRLEN] = "";
        if (p->host_network && p->state == RT_POD_READY)
                node_ip(nip);
        i->ip = rt_strdup0(p->net ? p->net->ip : nip);
        size_t ne = 0;
        for (char **e = p->net ? p->net->extra_ips : NULL; e && *e; e++)
                ne++;
        i->extra_ips = calloc(ne + 1, sizeof(char *));
        bool ok = i->id && i->config && i->runtime_handler && i->ip && i->extra_ips;
        for (size_t k = 0; ok && k < ne; k++)
                ok = (i->extra_ips[k] = strdup(p->net->extra_ips[k])) != NULL;
        i->netns_path = rt_strdup0(p->net ? p->net->netns_path : p->lo_netns);
        i->host_network = p->host_network;
        i->host_pid = p->host_pid;
        i->host_ipc = p->host_ipc;
        i->from_template = p->from_template;
        i->vmm_pid = p->mode == RT_POD_VM ? vmm_pid_of(p) : 0;
        i->agent_pid = p->mode == RT_POD_HOST ? vmm_pid_of(p) : 0;
        i->virtiofsd_pid = p->vfsd ? virtiofsd_pid(p->vfsd) : 0;
        char ep[160] = "";
        if (p->ep.kind == VMM_EP_VSOCK)
                snprintf(ep, sizeof(ep), "vsock:%u:%u", p->ep.cid, p->ep.port);
        else if (p->ep.path[0])
                snprintf(ep, sizeof(ep), "unix:%s", p->ep.path);
        i->agent_endpoint = strdup(ep);
        i->vcpus = p->mode == RT_POD_VM ? p->vcpus : 0;
        i->memory_mib = p->mode == RT_POD_VM ? p->memory_mib : 0;
        const char *accel = "";
        if (p->mode == RT_POD_VM)
                accel = rt->cfg->vm.accel == CC_CONFIG_ACCEL_KVM   ? "kvm"
                        : rt->cfg->vm.accel == CC_CONFIG_ACCEL_TCG ? "tcg"
                        : vmm_kvm_usable()                         ? "kvm"
                                                                   : "tcg";
        i->accel = strdup(accel);
        i->run_dir = rt_strdup0(p->run_dir);
        if (!ok || !i->netns_path || !i->agent_endpoint || !i->accel || !i->run_dir) {
                rt_pod_info_free(i);
                return NULL;
        }
        return i;
}

int rt_pod_status(rt_runtime *rt, const char *id, rt_pod_info **ret, cc_error **ret_err)
{
        rt_pod *p = NULL;
        if (rt_find_pod(rt, id, &p, ret_err) < 0)
                return -ENOENT;
        pthread_mutex_lock(&rt->lock);
        rt_pod_info *i = pod_info(rt, p);
        pthread_mutex_unlock(&rt->lock);
        rt_pod_unref(rt, p);
        if (!i)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        *ret = i;
        return 0;
}

static int by_created(const void *a, const void *b)
{
        const rt_pod_info *x = *(rt_pod_info *const *)a, *y = *(rt_pod_info *const *)b;
        return x->created_at_ns < y->created_at_ns ? -1 : x->created_at_ns > y->created_at_ns;
}

int rt_pod_list(rt_runtime *rt, rt_pod_info ***ret, size_t *ret_n, cc_error **ret_err)
{
        pthread_mutex_lock(&rt->lock);
        rt_pod_info **l = calloc(rt->n_pods + 1, sizeof(*l));
        size_t n = 0;
        bool ok = l != NULL;
        for (size_t i = 0; ok && i < rt->n_pods; i++) {
                if (rt->pods[i]->creating)
                        continue;
                ok = (l[n] = pod_info(rt, rt->pods[i])) != NULL;
                if (ok)
                        n++;
        }
        pthread_mutex_unlock(&rt->lock);
        if (!ok) {
                rt_pod_info_list_free(l, n);
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        qsort(l, n, sizeof(*l), by_created);
        *ret = l;
        *ret_n = n;
        return 0;
}
