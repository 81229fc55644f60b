/* SPDX-License-Identifier: Apache-2.0 */
#include "net-cni/exec.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/json.h"
#include "common/log.h"
#include "common/spawn.h"

#define CNI_DEFAULT_IFNAME "eth0"
#define CNI_ID_MAX 128
#define CNI_ARG_VALUE_MAX 256
#define CACHE_MAX_SIZE (4 * 1024 * 1024)
#define CACHE_KIND "cocoon-cni-cache/v1"

typedef enum cni_cmd { CNI_CMD_ADD, CNI_CMD_CHECK, CNI_CMD_DEL } cni_cmd;
static const char *const cmd_names[] = { "ADD", "CHECK", "DEL" };

static bool valid_container_id(const char *s)
{
        size_t n = s ? strlen(s) : 0;
        if (n == 0 || n > CNI_ID_MAX)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
                if (!alnum && (i == 0 || (c != '_' && c != '.' && c != '-')))
                        return false;
        }
        return true;
}

/* Linux interface names: 1..15 bytes, no '/', ':', whitespace; not . or .. */
static bool valid_ifname(const char *s)
{
        size_t n = s ? strlen(s) : 0;
        if (n == 0 || n > 15 || !strcmp(s, ".") || !strcmp(s, ".."))
                return false;
        for (size_t i = 0; i < n; i++)
                if (s[i] == '/' || s[i] == ':' || (unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f)
                        return false;
        return true;
}

static const char *pod_ifname(const cni_pod *pod)
{
        return pod->ifname ? pod->ifname : CNI_DEFAULT_IFNAME;
}

static int validate_pod(const cni_pod *pod, cc_error **ret_err)
{
        if (!valid_container_id(pod->container_id))
                return cc_error_set(ret_err, -EINVAL, "invalid container id '%s'",
                                    pod->container_id ? pod->container_id : "");
        if (!valid_ifname(pod_ifname(pod)))
                return cc_error_set(ret_err, -EINVAL, "invalid interface name '%s'", pod_ifname(pod));
        if (!pod->netns || pod->netns[0] != '/')
                return cc_error_set(ret_err, -EINVAL, "netns path '%s' is not absolute",
                                    pod->netns ? pod->netns : "");
        return 0;
}

int cni_args_build(const cni_pod *pod, char **ret, cc_error **ret_err)
{
        const struct { const char *k, *v; } kv[] = {
                { "K8S_POD_NAMESPACE", pod->pod_namespace },
                { "K8S_POD_NAME", pod->pod_name },
                { "K8S_POD_INFRA_CONTAINER_ID", pod->container_id },
                { "K8S_POD_UID", pod->pod_uid },
        };
        size_t cap = sizeof "IgnoreUnknown=1";
        for (size_t i = 0; i < CC_ARRAY_SIZE(kv); i++) {
                if (!kv[i].v)
                        continue;
                size_t n = strlen(kv[i].v);
                if (n > CNI_ARG_VALUE_MAX)
                        return cc_error_set(ret_err, -EINVAL, "CNI_ARGS: %s too long", kv[i].k);
                for (size_t j = 0; j < n; j++) {
                        unsigned char c = (unsigned char)kv[i].v[j];
                        if (c == ';' || c == '=' || c < 0x20 || c == 0x7f)
                                return cc_error_set(ret_err, -EINVAL, "CNI_ARGS: invalid character in %s", kv[i].k);
                }
                cap += strlen(kv[i].k) + n + 2;
        }
        char *s = malloc(cap);
        if (!s)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        size_t off = (size_t)snprintf(s, cap, "IgnoreUnknown=1");
        for (size_t i = 0; i < CC_ARRAY_SIZE(kv); i++)
                if (kv[i].v)
                        off += (size_t)snprintf(s + off, cap - off, ";%s=%s", kv[i].k, kv[i].v);
        *ret = s;
        return 0;
}

static void oom(void)
{
        abort();
}

static json_object *jnew(json_object *o)
{
        if (!o)
                oom();
        return o;
}

static json_object *strv_json(const char *const *v)
{
        json_object *a = jnew(json_object_new_array());
        for (; v && *v; v++)
                json_object_array_add(a, jnew(json_object_new_string(*v)));
        return a;
}

json_object *cni_runtime_conf_to_json(const cni_runtime_conf *rt, const cni_plugin_conf *p)
{
        json_object *o = jnew(json_object_new_object());
        if (!rt)
                return o;
#define WANT(cap) (!p || cni_plugin_has_capability(p, cap))
        if (rt->n_port_mappings && WANT("portMappings")) {
                json_object *a = jnew(json_object_new_array());
                for (size_t i = 0; i < rt->n_port_mappings; i++) {
                        const cni_port_mapping *m = &rt->port_mappings[i];
                        json_object *e = jnew(json_object_new_object());
                        json_object_object_add(e, "hostPort", jnew(json_object_new_int(m->host_port)));
                        json_object_object_add(e, "containerPort", jnew(json_object_new_int(m->container_port)));
                        json_object_object_add(e, "protocol",
                                               jnew(json_object_new_string(m->protocol ? m->protocol : "tcp")));
                        if (m->host_ip && m->host_ip[0])
                                json_object_object_add(e, "hostIP", jnew(json_object_new_string(m->host_ip)));
                        json_object_array_add(a, e);
                }
                json_object_object_add(o, "portMappings", a);
        }
        if (rt->has_bandwidth && WANT("bandwidth")) {
                json_object *b = jnew(json_object_new_object());
                json_object_object_add(b, "ingressRate", jnew(json_object_new_uint64(rt->ingress_rate)));
                json_object_object_add(b, "ingressBurst", jnew(json_object_new_uint64(rt->ingress_burst)));
                json_object_object_add(b, "egressRate", jnew(json_object_new_uint64(rt->egress_rate)));
                json_object_object_add(b, "egressBurst", jnew(json_object_new_uint64(rt->egress_burst)));
                json_object_object_add(o, "bandwidth", b);
        }
        if ((rt->dns_servers || rt->dns_searches || rt->dns_options) && WANT("dns")) {
                json_object *d = jnew(json_object_new_object());
                json_object_object_add(d, "servers", strv_json(rt->dns_servers));
                json_object_object_add(d, "searches", strv_json(rt->dns_searches));
                json_object_object_add(d, "options", strv_json(rt->dns_options));
                json_object_object_add(o, "dns", d);
        }
        if (rt->ips && rt->ips[0] && WANT("ips"))
                json_object_object_add(o, "ips", strv_json(rt->ips));
        if (rt->mac && rt->mac[0] && WANT("mac"))
                json_object_object_add(o, "mac", jnew(json_object_new_string(rt->mac)));
        if (rt->cgroup_path && rt->cgroup_path[0] && WANT("cgroupPath"))
                json_object_object_add(o, "cgroupPath", jnew(json_object_new_string(rt->cgroup_path)));
#undef WANT
        return o;
}

json_object *cni_runtime_json_filter(json_object *full, const cni_plugin_conf *p)
{
        json_object *o = jnew(json_object_new_object());
        if (!full || !json_object_is_type(full, json_type_object))
                return o;
        json_object_object_foreach(full, key, val) {
                if (cni_plugin_has_capability(p, key))
                        json_object_object_add(o, key, json_object_get(val));
        }
        return o;
}

int cni_find_plugin(char *const *bin_dirs, const char *type, char **ret_path, cc_error **ret_err)
{
        size_t dirs_len = 1;
        for (char *const *d = bin_dirs; d && *d; d++) {
                _cleanup_free_ char *p = NULL;
                if (asprintf(&p, "%s/%s", *d, type) < 0)
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
                struct stat st;
                if (stat(p, &st) == 0 && S_ISREG(st.st_mode) && access(p, X_OK) == 0) {
                        *ret_path = TAKE_PTR(p);
                        return 0;
                }
                dirs_len += strlen(*d) + 1;
        }
        _cleanup_free_ char *dirs = calloc(1, dirs_len);
        if (!dirs)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        for (char *const *d = bin_dirs; d && *d; d++) {
                if (d != bin_dirs)
                        strcat(dirs, ":");
                strcat(dirs, *d);
        }
        return cc_error_set(ret_err, -ENOENT, "plugin '%s' not found in %s", type, dirs[0] ? dirs : "(no bin_dirs)");
}

json_object *cni_plugin_stdin(const cni_netconf *net, size_t i, json_object *prev_result, json_object *runtime)
{
        json_object *o = NULL;
        if (json_object_deep_copy(net->plugins[i].conf, &o, NULL) < 0 || !o)
                oom();
        json_object_object_add(o, "name", jnew(json_object_new_string(net->name)));
        json_object_object_add(o, "cniVersion", jnew(json_object_new_string(net->cni_version)));
        json_object_object_del(o, "runtimeConfig");
        json_object_object_del(o, "prevResult");
        if (runtime && json_object_object_length(runtime) > 0)
                json_object_object_add(o, "runtimeConfig", json_object_get(runtime));
        if (prev_result)
                json_object_object_add(o, "prevResult", json_object_get(prev_result));
        return o;
}

int cni_cache_path(const char *cache_dir, const char *network, const char *container_id,
                   const char *ifname, char **ret, cc_error **ret_err)
{
        if (!valid_container_id(container_id) || !valid_ifname(ifname) || !network || !network[0] ||
            strchr(network, '/'))
                return cc_error_set(ret_err, -EINVAL, "invalid cache key");
        if (asprintf(ret, "%s/results/%s-%s-%s", cache_dir, network, container_id, ifname) < 0)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        return 0;
}

static char *tail_printable(const char *s, size_t max)
{
        size_t n = strlen(s);
        while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
                n--;
        size_t start = n > max ? n - max : 0;
        char *o = strndup(s + start, n - start);
        if (!o)
                oom();
        for (char *c = o; *c; c++)
                if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
                        *c = ' ';
        return o;
}

/* Runs one plugin. On success *ret_out (if not NULL) gets its stdout. */
static int run_plugin(const cni_exec_ctx *ctx, const cni_netconf *net, size_t idx, cni_cmd cmd,
                      const cni_pod *pod, const char *cni_args, json_object *prev, json_object *runtime,
                      char **ret_out, cc_error **ret_err)
{
        const char *type = net->plugins[idx].type;
        _cleanup_free_ char *path = NULL;
        int r = cni_find_plugin(ctx->bin_dirs, type, &path, ret_err);
        if (r < 0)
                return r;

        _cleanup_free_ char *cni_path = NULL;
        size_t plen = 1;
        for (char *const *d = ctx->bin_dirs; d && *d; d++)
                plen += strlen(*d) + 1;
        if (!(cni_path = calloc(1, plen)))
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        for (char *const *d = ctx->bin_dirs; d && *d; d++) {
                if (d != ctx->bin_dirs)
                        strcat(cni_path, ":");
                strcat(cni_path, *d);
        }
        const char *sys_path = getenv("PATH");
        char *envp[8] = { NULL };
        int ne = 0;
        bool env_ok = asprintf(&envp[ne++], "CNI_COMMAND=%s", cmd_names[cmd]) >= 0 &&
                      asprintf(&envp[ne++], "CNI_CONTAINERID=%s", pod->container_id) >= 0 &&
                      asprintf(&envp[ne++], "CNI_NETNS=%s", pod->netns) >= 0 &&
                      asprintf(&envp[ne++], "CNI_IFNAME=%s", pod_ifname(pod)) >= 0 &&
                      asprintf(&envp[ne++], "CNI_ARGS=%s", cni_args) >= 0 &&
                      asprintf(&envp[ne++], "CNI_PATH=%s", cni_path) >= 0 &&
                      asprintf(&envp[ne++], "PATH=%s",
                               sys_path && sys_path[0] ? sys_path : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin") >= 0;
        if (!env_ok) {
                for (int i = 0; i < ne; i++)
                        free(envp[i]);
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        envp[ne] = NULL;

        _cleanup_json_ json_object *in = cni_plugin_stdin(net, idx, prev, runtime);
        size_t in_len;
        const char *in_str = json_object_to_json_string_length(in, JSON_C_TO_STRING_PLAIN, &in_len);
        char *argv[] = { path, NULL };
        _cleanup_free_ char *out = NULL, *errout = NULL;
        int status = 0;
        cc_error *err = NULL;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        r = cc_spawn_run(path, argv, envp, in_str, in_len, CNI_RESULT_MAX_SIZE, ctx->timeout_ms, &out, &errout,
                         &status, &err);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        log_debug("cni: %s plugin=%s container=%s ms=%ld rc=%d", cmd_names[cmd], type, pod->container_id,
                  (long)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000), r);
        for (int i = 0; i < ne; i++)
                free(envp[i]);
        if (r == -ETIMEDOUT) {
                cc_error_free(err);
                return cc_error_set(ret_err, -ETIMEDOUT, "plugin %s (%s) killed: no reply within %d ms", type,
                                    cmd_names[cmd], ctx->timeout_ms);
        }
        if (r < 0) {
                cc_error_prefix(&err, "plugin %s (%s)", type, cmd_names[cmd]);
                return cc_error_propagate(ret_err, err);
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                unsigned code = 0;
                _cleanup_free_ char *msg = NULL;
                if (out && cni_error_reply_parse(out, strlen(out), &code, &msg) == 0)
                        return cc_error_set(ret_err, code == 11 ? -EAGAIN : -EIO, "plugin %s failed: %s", type, msg);
                _cleanup_free_ char *tail = tail_printable(errout && errout[0] ? errout : (out ? out : ""), 512);
                if (WIFSIGNALED(status))
                        return cc_error_set(ret_err, -EIO, "plugin %s failed: killed by signal %d%s%s", type,
                                            WTERMSIG(status), tail[0] ? ": " : "", tail);
                return cc_error_set(ret_err, -EIO, "plugin %s failed: exit status %d%s%s", type,
                                    WEXITSTATUS(status), tail[0] ? ": " : "", tail);
        }
        if (ret_out)
                *ret_out = TAKE_PTR(out);
        return 0;
}

static int read_cache(const char *path, json_object **ret, cc_error **ret_err)
{
        cc_error *err = NULL;
        json_object *o = cc_json_parse_file(path, CACHE_MAX_SIZE, &err);
        if (!o) {
                if (err && err->code == -ENOENT) {
                        cc_error_free(err);
                        return 0;
                }
                return cc_error_propagate(ret_err, err);
        }
        json_object *kind = cc_json_get_typed(o, "kind", json_type_string);
        if (!kind || strcmp(json_object_get_string(kind), CACHE_KIND) ||
            !cc_json_get_typed(o, "config", json_type_object)) {
                json_object_put(o);
                return cc_error_set(ret_err, -EINVAL, "'%s': not a cocoon CNI cache file", path);
        }
        *ret = o;
        return 1;
}

static int write_cache(const cni_exec_ctx *ctx, const char *path, const cni_netconf *net, const cni_pod *pod,
                       const char *cni_args, json_object *result, json_object *runtime, cc_error **ret_err)
{
        _cleanup_free_ char *dir = NULL;
        if (asprintf(&dir, "%s/results", ctx->cache_dir) < 0)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        int r = cc_mkdir_p(dir, 0700, ret_err);
        if (r < 0)
                return r;
        _cleanup_json_ json_object *o = jnew(json_object_new_object());
        json_object_object_add(o, "kind", jnew(json_object_new_string(CACHE_KIND)));
        json_object_object_add(o, "containerId", jnew(json_object_new_string(pod->container_id)));
        json_object_object_add(o, "ifName", jnew(json_object_new_string(pod_ifname(pod))));
        json_object_object_add(o, "networkName", jnew(json_object_new_string(net->name)));
        json_object_object_add(o, "netns", jnew(json_object_new_string(pod->netns)));
        json_object_object_add(o, "cniArgs", jnew(json_object_new_string(cni_args)));
        json_object_object_add(o, "config", json_object_get(net->raw));
        json_object_object_add(o, "result", json_object_get(result));
        json_object_object_add(o, "runtimeConfig", json_object_get(runtime));
        return cc_json_write_file(path, o, 0600, ret_err);
}

/* DEL over every plugin in reverse; first error kept, all plugins run. */
static int del_chain(const cni_exec_ctx *ctx, const cni_netconf *net, const cni_pod *pod, const char *cni_args,
                     json_object *prev, json_object *runtime, cc_error **ret_err)
{
        int first = 0;
        /* DEL carries prevResult from 0.4.0 on. */
        json_object *pr = cni_version_compare(net->cni_version, "0.4.0") >= 0 ? prev : NULL;
        for (size_t i = net->n_plugins; i-- > 0;) {
                _cleanup_json_ json_object *rt = cni_runtime_json_filter(runtime, &net->plugins[i]);
                cc_error *err = NULL;
                int r = run_plugin(ctx, net, i, CNI_CMD_DEL, pod, cni_args, pr, rt, NULL, &err);
                if (r < 0) {
                        log_debug("cni: DEL plugin=%s failed: %s", net->plugins[i].type, err->msg);
                        if (first == 0)
                                first = cc_error_propagate(ret_err, err);
                        else
                                cc_error_free(err);
                }
        }
        return first;
}

int cni_add(const cni_exec_ctx *ctx, const cni_netconf *net, const cni_pod *pod, const cni_runtime_conf *rt,
            cni_result **ret, cc_error **ret_err)
{
        int r = validate_pod(pod, ret_err);
        if (r < 0)
                return r;
        if (!net || !net->n_plugins)
                return cc_error_set(ret_err, -EINVAL, "CNI ADD: no network given");
        _cleanup_free_ char *cni_args = NULL, *cache = NULL;
        if ((r = cni_args_build(pod, &cni_args, ret_err)) < 0 ||
            (r = cni_cache_path(ctx->cache_dir, net->name, pod->container_id, pod_ifname(pod), &cache, ret_err)) < 0)
                return r;
        _cleanup_json_ json_object *runtime = cni_runtime_conf_to_json(rt, NULL);
        _cleanup_json_ json_object *prev = NULL;
        cni_result *result = NULL;
        cc_error *err = NULL;
        for (size_t i = 0; i < net->n_plugins; i++) {
                _cleanup_json_ json_object *prt = cni_runtime_json_filter(runtime, &net->plugins[i]);
                _cleanup_free_ char *out = NULL;
                r = run_plugin(ctx, net, i, CNI_CMD_ADD, pod, cni_args, prev, prt, &out, &err);
                if (r < 0)
                        goto fail;
                cni_result *res = cni_result_parse(out, strlen(out), &err);
                if (!res) {
                        r = cc_error_prefix(&err, "plugin %s", net->plugins[i].type);
                        goto fail;
                }
                if (prev)
                        json_object_put(prev);
                prev = json_object_get(res->raw);
                cni_result_free(result);
                result = res;
        }
        r = write_cache(ctx, cache, net, pod, cni_args, prev, runtime, &err);
        if (r < 0)
                goto fail;
        *ret = result;
        return 0;
fail:
        cni_result_free(result);
        /* Leave nothing behind: DEL the whole list, best effort. */
        cc_error *derr = NULL;
        if (del_chain(ctx, net, pod, cni_args, prev, runtime, &derr) < 0) {
                log_debug("cni: cleanup after failed ADD container=%s: %s", pod->container_id, derr->msg);
                cc_error_free(derr);
        }
        unlink(cache);
        cc_error_prefix(&err, "CNI ADD network '%s'", net->name);
        return cc_error_propagate(ret_err, err);
}

/* Loads the cache entry for pod; the returned network is the cached
 * configuration. 0: no cache. */
static int load_cached(const cni_exec_ctx *ctx, const char *network, const cni_pod *pod, char **ret_path,
                       json_object **ret_cache, cni_netconf **ret_net, cc_error **ret_err)
{
        _cleanup_free_ char *path = NULL;
        int r = cni_cache_path(ctx->cache_dir, network, pod->container_id, pod_ifname(pod), &path, ret_err);
        if (r < 0)
                return r;
        json_object *cache = NULL;
        r = read_cache(path, &cache, ret_err);
        if (r <= 0) {
                *ret_path = TAKE_PTR(path);
                return r;
        }
        cni_netconf *n = cni_netconf_from_json(cc_json_get_typed(cache, "config", json_type_object), path, ret_err);
        if (!n) {
                json_object_put(cache);
                return -EINVAL;
        }
        *ret_path = TAKE_PTR(path);
        *ret_cache = cache;
        *ret_net = n;
        return 1;
}

int cni_del(const cni_exec_ctx *ctx, const cni_netconf *net, const cni_pod *pod, const cni_runtime_conf *rt,
            cc_error **ret_err)
{
        int r = validate_pod(pod, ret_err);
        if (r < 0)
                return r;
        if (!net)
                return cc_error_set(ret_err, -EINVAL, "CNI DEL: no network given");
        _cleanup_free_ char *cni_args = NULL, *cache_path = NULL;
        _cleanup_json_ json_object *cache = NULL;
        _cleanup_netconf_ cni_netconf *cached_net = NULL;
        cc_error *err = NULL;
        if ((r = cni_args_build(pod, &cni_args, ret_err)) < 0)
                return r;
        r = load_cached(ctx, net->name, pod, &cache_path, &cache, &cached_net, &err);
        if (r < 0) {
                /* A corrupt cache must not block teardown: DEL with net. */
                log_debug("cni: ignoring cache container=%s: %s", pod->container_id, err->msg);
                cc_error_free(err);
                err = NULL;
        }
        const cni_netconf *use = cached_net ? cached_net : net;
        json_object *prev = cache ? cc_json_get_typed(cache, "result", json_type_object) : NULL;
        _cleanup_json_ json_object *runtime = NULL;
        if (rt)
                runtime = cni_runtime_conf_to_json(rt, NULL);
        else if (cache && cc_json_get_typed(cache, "runtimeConfig", json_type_object))
                runtime = json_object_get(cc_json_get_typed(cache, "runtimeConfig", json_type_object));
        r = del_chain(ctx, use, pod, cni_args, prev, runtime, &err);
        if (r < 0) {
                cc_error_prefix(&err, "CNI DEL network '%s'", use->name);
                return cc_error_propagate(ret_err, err);
        }
        if (cache_path && unlink(cache_path) < 0 && errno != ENOENT)
                return cc_error_errno(ret_err, "remove '%s'", cache_path);
        return 0;
}

int cni_check(const cni_exec_ctx *ctx, const cni_netconf *net, const cni_pod *pod, const cni_runtime_conf *rt,
              cc_error **ret_err)
{
        int r = validate_pod(pod, ret_err);
        if (r < 0)
                return r;
        if (!net)
                return cc_error_set(ret_err, -EINVAL, "CNI CHECK: no network given");
        _cleanup_free_ char *cni_args = NULL, *cache_path = NULL;
        _cleanup_json_ json_object *cache = NULL;
        _cleanup_netconf_ cni_netconf *cached_net = NULL;
        if ((r = cni_args_build(pod, &cni_args, ret_err)) < 0)
                return r;
        r = load_cached(ctx, net->name, pod, &cache_path, &cache, &cached_net, ret_err);
        if (r < 0)
                return r;
        if (r == 0)
                return cc_error_set(ret_err, -ENOENT, "CNI CHECK network '%s': no cached result for %s",
                                    net->name, pod->container_id);
        if (net->disable_check || cni_version_compare(net->cni_version, "0.4.0") < 0)
                return 0;
        json_object *prev = cc_json_get_typed(cache, "result", json_type_object);
        _cleanup_json_ json_object *runtime = NULL;
        if (rt)
                runtime = cni_runtime_conf_to_json(rt, NULL);
        else if (cc_json_get_typed(cache, "runtimeConfig", json_type_object))
                runtime = json_object_get(cc_json_get_typed(cache, "runtimeConfig", json_type_object));
        for (size_t i = 0; i < net->n_plugins; i++) {
                _cleanup_json_ json_object *prt = cni_runtime_json_filter(runtime, &net->plugins[i]);
                cc_error *err = NULL;
                r = run_plugin(ctx, net, i, CNI_CMD_CHECK, pod, cni_args, prev, prt, NULL, &err);
                if (r < 0) {
                        cc_error_prefix(&err, "CNI CHECK network '%s'", net->name);
                        return cc_error_propagate(ret_err, err);
                }
        }
        return 0;
}
