/* SPDX-License-Identifier: Apache-2.0 */
#include "cri-server/pod-convert.h"

#include <errno.h>
#include <json-c/json.h>
#include <string.h>

#include "common/id.h"
#include "common/json.h"

/* The layout every generated map<string,string> entry has. */
typedef struct kv_entry {
        ProtobufCMessage base;
        char *key;
        char *value;
} kv_entry;

/* Longest pod/container name, namespace or uid accepted (a DNS subdomain). */
#define NAME_MAX_LEN 253

int cri_runtime(cri_ctx *ctx, rt_runtime **ret, cc_error **ret_err)
{
        if (!ctx->daemon || !ctx->daemon->rt)
                return cc_error_set(ret_err, -EOPNOTSUPP, "this cocoond runs without a pod runtime");
        *ret = ctx->daemon->rt;
        return 0;
}

int cri_check_id(const char *what, const char *id, cc_error **ret_err)
{
        if (!id || !*id)
                return cc_error_set(ret_err, -EINVAL, "%s must not be empty", what);
        if (!cc_id_is_prefix(id))
                return cc_error_set(ret_err, -EINVAL, "%s '%.80s' is not a valid id (lowercase hex, at most %d characters)",
                                    what, id, CC_ID_LEN);
        return 0;
}

int cri_require_id(cri_ctx *ctx, const char *what, const char *id, rt_runtime **ret_rt, cc_error **ret_err)
{
        int r = cri_runtime(ctx, ret_rt, ret_err);
        if (r < 0)
                return r;
        return cri_check_id(what, id, ret_err);
}

int cri_check_pod_config(const Runtime__V1__PodSandboxConfig *c, cc_error **ret_err)
{
        if (!c)
                return cc_error_set(ret_err, -EINVAL, "config must be set");
        const Runtime__V1__PodSandboxMetadata *m = c->metadata;
        if (!m)
                return cc_error_set(ret_err, -EINVAL, "config.metadata must be set");
        int r = cc_name_validate("config.metadata.name", m->name, NAME_MAX_LEN, ret_err);
        if (r < 0)
                return r;
        r = cc_name_validate("config.metadata.namespace", m->namespace_, NAME_MAX_LEN, ret_err);
        if (r < 0)
                return r;
        return cc_name_validate("config.metadata.uid", m->uid, NAME_MAX_LEN, ret_err);
}

int cri_check_container_config(const Runtime__V1__ContainerConfig *c, cc_error **ret_err)
{
        if (!c)
                return cc_error_set(ret_err, -EINVAL, "config must be set");
        if (!c->metadata)
                return cc_error_set(ret_err, -EINVAL, "config.metadata must be set");
        int r = cc_name_validate("config.metadata.name", c->metadata->name, NAME_MAX_LEN, ret_err);
        if (r < 0)
                return r;
        if (!c->image || !c->image->image || !*c->image->image)
                return cc_error_set(ret_err, -EINVAL, "config.image.image must name an image");
        for (size_t i = 0; i < c->n_mounts; i++)
                if (!c->mounts[i] || !c->mounts[i]->container_path || c->mounts[i]->container_path[0] != '/')
                        return cc_error_set(ret_err, -EINVAL,
                                            "config.mounts[%zu].container_path must be an absolute path", i);
        return 0;
}

void **cri_kv_copy(cri_ctx *ctx, const ProtobufCMessageDescriptor *desc, void *const *entries,
                   size_t n, size_t *ret_n)
{
        void **out = cri_alloc(ctx, (n ? n : 1) * sizeof(void *));
        for (size_t i = 0; i < n; i++) {
                const kv_entry *src = entries[i];
                kv_entry *e = cri_msg_new(ctx, desc);
                e->key = cri_strdup(ctx, src->key);
                e->value = cri_strdup(ctx, src->value);
                out[i] = e;
        }
        *ret_n = n;
        return out;
}

bool cri_labels_match(void *const *selector, size_t n_selector, void *const *labels, size_t n_labels)
{
        for (size_t i = 0; i < n_selector; i++) {
                const kv_entry *s = selector[i];
                bool found = false;
                for (size_t j = 0; j < n_labels && !found; j++) {
                        const kv_entry *l = labels[j];
                        found = strcmp(s->key ? s->key : "", l->key ? l->key : "") == 0 &&
                                strcmp(s->value ? s->value : "", l->value ? l->value : "") == 0;
                }
                if (!found)
                        return false;
        }
        return true;
}

bool cri_id_has_prefix(const char *id, const char *prefix)
{
        return !prefix || strncmp(id ? id : "", prefix, strlen(prefix)) == 0;
}

#define KV(ctx, lower, from, n_from, to, n_to) \
        ((to) = (void *)cri_kv_copy((ctx), &lower##__descriptor, (void *const *)(from), (n_from), &(n_to)))

Runtime__V1__PodSandboxMetadata *cri_pod_metadata(cri_ctx *ctx, const Runtime__V1__PodSandboxConfig *c)
{
        Runtime__V1__PodSandboxMetadata *m = CRI_NEW(ctx, runtime__v1__pod_sandbox_metadata);
        const Runtime__V1__PodSandboxMetadata *src = c ? c->metadata : NULL;
        m->name = cri_strdup(ctx, src ? src->name : "");
        m->uid = cri_strdup(ctx, src ? src->uid : "");
        m->namespace_ = cri_strdup(ctx, src ? src->namespace_ : "");
        m->attempt = src ? src->attempt : 0;
        return m;
}

Runtime__V1__ContainerMetadata *cri_ctr_metadata(cri_ctx *ctx, const Runtime__V1__ContainerConfig *c)
{
        Runtime__V1__ContainerMetadata *m = CRI_NEW(ctx, runtime__v1__container_metadata);
        m->name = cri_strdup(ctx, c && c->metadata ? c->metadata->name : "");
        m->attempt = c && c->metadata ? c->metadata->attempt : 0;
        return m;
}

static Runtime__V1__PodSandboxState pod_state(rt_pod_state s)
{
        return s == RT_POD_READY ? RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_READY
                                 : RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_NOTREADY;
}

static Runtime__V1__ContainerState ctr_state(rt_ctr_state s)
{
        switch (s) {
        case RT_CTR_CREATED:
                return RUNTIME__V1__CONTAINER_STATE__CONTAINER_CREATED;
        case RT_CTR_RUNNING:
                return RUNTIME__V1__CONTAINER_STATE__CONTAINER_RUNNING;
        case RT_CTR_EXITED:
                return RUNTIME__V1__CONTAINER_STATE__CONTAINER_EXITED;
        default:
                return RUNTIME__V1__CONTAINER_STATE__CONTAINER_UNKNOWN;
        }
}

const char *cri_pod_state_name(rt_pod_state s)
{
        return s == RT_POD_READY ? "SANDBOX_READY" : "SANDBOX_NOTREADY";
}

const char *cri_ctr_state_name(rt_ctr_state s)
{
        static const char *const names[] = { "CONTAINER_CREATED", "CONTAINER_RUNNING", "CONTAINER_EXITED",
                                             "CONTAINER_UNKNOWN" };
        return (unsigned)s < 4 ? names[s] : "CONTAINER_UNKNOWN";
}

Runtime__V1__PodSandbox *cri_pod_from_info(cri_ctx *ctx, const rt_pod_info *p)
{
        Runtime__V1__PodSandbox *s = CRI_NEW(ctx, runtime__v1__pod_sandbox);
        const Runtime__V1__PodSandboxConfig *c = p->config;
        s->id = cri_strdup(ctx, p->id);
        s->metadata = cri_pod_metadata(ctx, c);
        s->state = pod_state(p->state);
        s->created_at = p->created_at_ns;
        if (c) {
                KV(ctx, runtime__v1__pod_sandbox__labels_entry, c->labels, c->n_labels, s->labels, s->n_labels);
                KV(ctx, runtime__v1__pod_sandbox__annotations_entry, c->annotations, c->n_annotations,
                   s->annotations, s->n_annotations);
        }
        s->runtime_handler = cri_strdup(ctx, p->runtime_handler);
        return s;
}

static Runtime__V1__NamespaceOption *ns_options(cri_ctx *ctx, const rt_pod_info *p)
{
        Runtime__V1__NamespaceOption *o = CRI_NEW(ctx, runtime__v1__namespace_option);
        const Runtime__V1__PodSandboxConfig *c = p->config;
        const Runtime__V1__NamespaceOption *src = c && c->linux && c->linux->security_context
                                                          ? c->linux->security_context->namespace_options
                                                          : NULL;
        if (src) {
                o->network = src->network;
                o->pid = src->pid;
                o->ipc = src->ipc;
                o->target_id = cri_strdup(ctx, src->target_id);
        }
        /* What the pod really got wins over the request. */
        if (p->host_network)
                o->network = RUNTIME__V1__NAMESPACE_MODE__NODE;
        if (p->host_pid)
                o->pid = RUNTIME__V1__NAMESPACE_MODE__NODE;
        if (p->host_ipc)
                o->ipc = RUNTIME__V1__NAMESPACE_MODE__NODE;
        return o;
}

Runtime__V1__PodSandboxStatus *cri_pod_status_from_info(cri_ctx *ctx, const rt_pod_info *p)
{
        Runtime__V1__PodSandboxStatus *s = CRI_NEW(ctx, runtime__v1__pod_sandbox_status);
        const Runtime__V1__PodSandboxConfig *c = p->config;
        s->id = cri_strdup(ctx, p->id);
        s->metadata = cri_pod_metadata(ctx, c);
        s->state = pod_state(p->state);
        s->created_at = p->created_at_ns;
        s->network = CRI_NEW(ctx, runtime__v1__pod_sandbox_network_status);
        s->network->ip = cri_strdup(ctx, p->ip);
        size_t n = 0;
        while (p->extra_ips && p->extra_ips[n])
                n++;
        s->network->additional_ips = cri_alloc(ctx, (n ? n : 1) * sizeof(void *));
        for (size_t i = 0; i < n; i++) {
                Runtime__V1__PodIP *ip = CRI_NEW(ctx, runtime__v1__pod_ip);
                ip->ip = cri_strdup(ctx, p->extra_ips[i]);
                s->network->additional_ips[i] = ip;
        }
        s->network->n_additional_ips = n;
        s->linux = CRI_NEW(ctx, runtime__v1__linux_pod_sandbox_status);
        s->linux->namespaces = CRI_NEW(ctx, runtime__v1__namespace);
        s->linux->namespaces->options = ns_options(ctx, p);
        if (c) {
                KV(ctx, runtime__v1__pod_sandbox_status__labels_entry, c->labels, c->n_labels, s->labels,
                   s->n_labels);
                KV(ctx, runtime__v1__pod_sandbox_status__annotations_entry, c->annotations, c->n_annotations,
                   s->annotations, s->n_annotations);
        }
        s->runtime_handler = cri_strdup(ctx, p->runtime_handler);
        return s;
}

static char *json_to_arena(cri_ctx *ctx, json_object *o)
{
        return cri_strdup(ctx, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
}

static json_object *jstr(const char *s)
{
        return json_object_new_string(s ? s : "");
}

char *cri_pod_verbose_info(cri_ctx *ctx, const rt_pod_info *p)
{
        _cleanup_json_ json_object *o = json_object_new_object();
        json_object_object_add(o, "id", jstr(p->id));
        json_object_object_add(o, "mode", jstr(p->mode == RT_POD_HOST ? "host" : "vm"));
        json_object_object_add(o, "state", jstr(cri_pod_state_name(p->state)));
        json_object_object_add(o, "runtimeHandler", jstr(p->runtime_handler));
        /* "pid": the pod's main host process, as containerd reports its pause
         * process: the VMM in VM mode, the host agent in host mode. */
        json_object_object_add(o, "pid", json_object_new_int(p->mode == RT_POD_HOST ? p->agent_pid : p->vmm_pid));
        json_object_object_add(o, "vmmPid", json_object_new_int(p->vmm_pid));
        json_object_object_add(o, "virtiofsdPid", json_object_new_int(p->virtiofsd_pid));
        json_object_object_add(o, "agentPid", json_object_new_int(p->agent_pid));
        json_object_object_add(o, "agentEndpoint", jstr(p->agent_endpoint));
        json_object_object_add(o, "vcpus", json_object_new_int(p->vcpus));
        json_object_object_add(o, "memoryMiB", json_object_new_int(p->memory_mib));
        json_object_object_add(o, "accel", jstr(p->accel));
        if (p->mode == RT_POD_VM)
                json_object_object_add(o, "startedFrom", jstr(p->from_template ? "template" : "boot"));
        json_object_object_add(o, "netns", jstr(p->netns_path));
        json_object_object_add(o, "hostNetwork", json_object_new_boolean(p->host_network));
        json_object_object_add(o, "hostPID", json_object_new_boolean(p->host_pid));
        json_object_object_add(o, "hostIPC", json_object_new_boolean(p->host_ipc));
        json_object_object_add(o, "runDir", jstr(p->run_dir));
        const Runtime__V1__PodSandboxConfig *c = p->config;
        if (c) {
                json_object *cfg = json_object_new_object();
                json_object_object_add(cfg, "hostname", jstr(c->hostname));
                json_object_object_add(cfg, "logDirectory", jstr(c->log_directory));
                json_object_object_add(o, "config", cfg);
        }
        return json_to_arena(ctx, o);
}

static Runtime__V1__ImageSpec *ctr_image(cri_ctx *ctx, const rt_ctr_info *c)
{
        Runtime__V1__ImageSpec *img = CRI_NEW(ctx, runtime__v1__image_spec);
        const Runtime__V1__ImageSpec *req = c->config ? c->config->image : NULL;
        img->image = cri_strdup(ctx, c->image_name && *c->image_name ? c->image_name : req ? req->image : "");
        if (req) {
                KV(ctx, runtime__v1__image_spec__annotations_entry, req->annotations, req->n_annotations,
                   img->annotations, img->n_annotations);
                img->user_specified_image = cri_strdup(ctx, req->user_specified_image);
                img->runtime_handler = cri_strdup(ctx, req->runtime_handler);
        }
        return img;
}

Runtime__V1__Container *cri_ctr_from_info(cri_ctx *ctx, const rt_ctr_info *c)
{
        Runtime__V1__Container *o = CRI_NEW(ctx, runtime__v1__container);
        const Runtime__V1__ContainerConfig *cfg = c->config;
        o->id = cri_strdup(ctx, c->id);
        o->pod_sandbox_id = cri_strdup(ctx, c->sandbox_id);
        o->metadata = cri_ctr_metadata(ctx, cfg);
        o->image = ctr_image(ctx, c);
        o->image_ref = cri_strdup(ctx, c->image_id);
        o->image_id = cri_strdup(ctx, c->image_id);
        o->state = ctr_state(c->state);
        o->created_at = c->created_at_ns;
        if (cfg) {
                KV(ctx, runtime__v1__container__labels_entry, cfg->labels, cfg->n_labels, o->labels, o->n_labels);
                KV(ctx, runtime__v1__container__annotations_entry, cfg->annotations, cfg->n_annotations,
                   o->annotations, o->n_annotations);
        }
        return o;
}

bool cri_ctr_match(const rt_ctr_info *c, const char *id, const char *pod_id, void *const *selector,
                   size_t n_selector)
{
        if (id && *id && !cri_id_has_prefix(c->id, id))
                return false;
        if (pod_id && *pod_id && !cri_id_has_prefix(c->sandbox_id, pod_id))
                return false;
        const Runtime__V1__ContainerConfig *cfg = c->config;
        return cri_labels_match(selector, n_selector, cfg ? (void *const *)cfg->labels : NULL, cfg ? cfg->n_labels : 0);
}

Runtime__V1__PodSandboxAttributes *cri_pod_attributes(cri_ctx *ctx, const rt_pod_info *p)
{
        Runtime__V1__PodSandboxAttributes *a = CRI_NEW(ctx, runtime__v1__pod_sandbox_attributes);
        const Runtime__V1__PodSandboxConfig *cfg = p->config;
        a->id = cri_strdup(ctx, p->id);
        a->metadata = cri_pod_metadata(ctx, cfg);
        if (cfg) {
                KV(ctx, runtime__v1__pod_sandbox_attributes__labels_entry, cfg->labels, cfg->n_labels, a->labels,
                   a->n_labels);
                KV(ctx, runtime__v1__pod_sandbox_attributes__annotations_entry, cfg->annotations,
                   cfg->n_annotations, a->annotations, a->n_annotations);
        }
        return a;
}

Runtime__V1__ContainerAttributes *cri_ctr_attributes(cri_ctx *ctx, const rt_ctr_info *c)
{
        Runtime__V1__ContainerAttributes *a = CRI_NEW(ctx, runtime__v1__container_attributes);
        const Runtime__V1__ContainerConfig *cfg = c->config;
        a->id = cri_strdup(ctx, c->id);
        a->metadata = cri_ctr_metadata(ctx, cfg);
        if (cfg) {
                KV(ctx, runtime__v1__container_attributes__labels_entry, cfg->labels, cfg->n_labels, a->labels,
                   a->n_labels);
                KV(ctx, runtime__v1__container_attributes__annotations_entry, cfg->annotations, cfg->n_annotations,
                   a->annotations, a->n_annotations);
        }
        return a;
}

Runtime__V1__ContainerStatus *cri_ctr_status_from_info(cri_ctx *ctx, const rt_ctr_info *c)
{
        Runtime__V1__ContainerStatus *s = CRI_NEW(ctx, runtime__v1__container_status);
        const Runtime__V1__ContainerConfig *cfg = c->config;
        s->id = cri_strdup(ctx, c->id);
        s->metadata = cri_ctr_metadata(ctx, cfg);
        s->state = ctr_state(c->state);
        s->created_at = c->created_at_ns;
        s->started_at = c->started_at_ns;
        s->finished_at = c->finished_at_ns;
        s->exit_code = c->exit_code;
        s->image = ctr_image(ctx, c);
        s->image_ref = cri_strdup(ctx, c->image_id);
        s->image_id = cri_strdup(ctx, c->image_id);
        s->reason = cri_strdup(ctx, c->reason);
        s->message = cri_strdup(ctx, c->message);
        s->log_path = cri_strdup(ctx, c->log_path);
        if (cfg) {
                KV(ctx, runtime__v1__container_status__labels_entry, cfg->labels, cfg->n_labels, s->labels,
                   s->n_labels);
                KV(ctx, runtime__v1__container_status__annotations_entry, cfg->annotations, cfg->n_annotations,
                   s->annotations, s->n_annotations);
                s->mounts = cri_alloc(ctx, (cfg->n_mounts ? cfg->n_mounts : 1) * sizeof(void *));
                for (size_t i = 0; i < cfg->n_mounts; i++) {
                        const Runtime__V1__Mount *src = cfg->mounts[i];
                        Runtime__V1__Mount *m = CRI_NEW(ctx, runtime__v1__mount);
                        m->container_path = cri_strdup(ctx, src->container_path);
                        m->host_path = cri_strdup(ctx, src->host_path);
                        m->readonly = src->readonly;
                        m->selinux_relabel = src->selinux_relabel;
                        m->propagation = src->propagation;
                        m->recursive_read_only = src->recursive_read_only;
                        s->mounts[i] = m;
                }
                s->n_mounts = cfg->n_mounts;
                const Runtime__V1__LinuxContainerResources *res = cfg->linux ? cfg->linux->resources : NULL;
                if (res) { /* as created, or as UpdateContainerResources last set them */
                        Runtime__V1__LinuxContainerResources *l = CRI_NEW(ctx, runtime__v1__linux_container_resources);
                        l->cpu_period = res->cpu_period;
                        l->cpu_quota = res->cpu_quota;
                        l->cpu_shares = res->cpu_shares;
                        l->memory_limit_in_bytes = res->memory_limit_in_bytes;
                        l->oom_score_adj = res->oom_score_adj;
                        l->cpuset_cpus = cri_strdup(ctx, res->cpuset_cpus);
                        l->cpuset_mems = cri_strdup(ctx, res->cpuset_mems);
                        l->memory_swap_limit_in_bytes = res->memory_swap_limit_in_bytes;
                        s->resources = CRI_NEW(ctx, runtime__v1__container_resources);
                        s->resources->linux = l;
                }
        }
        return s;
}

static json_object *strv_json(char *const *v, size_t n)
{
        json_object *a = json_object_new_array();
        for (size_t i = 0; i < n; i++)
                json_object_array_add(a, jstr(v[i]));
        return a;
}

char *cri_ctr_verbose_info(cri_ctx *ctx, const rt_ctr_info *c)
{
        _cleanup_json_ json_object *o = json_object_new_object();
        json_object_object_add(o, "id", jstr(c->id));
        json_object_object_add(o, "sandboxID", jstr(c->sandbox_id));
        json_object_object_add(o, "state", jstr(cri_ctr_state_name(c->state)));
        json_object_object_add(o, "imageName", jstr(c->image_name));
        json_object_object_add(o, "imageID", jstr(c->image_id));
        json_object_object_add(o, "logPath", jstr(c->log_path));
        /* "pid" as containerd's: the main process while it runs (0 if
         * unknown). In a VM pod it is the guest's pid (the host only has
         * the VMM's: the pod's vmmPid); in a host-mode pod, the host's. */
        json_object_object_add(o, "pid", json_object_new_int(c->pid));
        const Runtime__V1__ContainerConfig *cfg = c->config;
        if (cfg) {
                /* A summary of what the container runs. Env values may hold
                 * secrets: only their names. */
                json_object *spec = json_object_new_object();
                json_object_object_add(spec, "command", strv_json(cfg->command, cfg->n_command));
                json_object_object_add(spec, "args", strv_json(cfg->args, cfg->n_args));
                json_object_object_add(spec, "workingDir", jstr(cfg->working_dir));
                json_object *env = json_object_new_array();
                for (size_t i = 0; i < cfg->n_envs; i++)
                        json_object_array_add(env, jstr(cfg->envs[i]->key));
                json_object_object_add(spec, "envNames", env);
                json_object *mounts = json_object_new_array();
                for (size_t i = 0; i < cfg->n_mounts; i++) {
                        json_object *m = json_object_new_object();
                        json_object_object_add(m, "containerPath", jstr(cfg->mounts[i]->container_path));
                        json_object_object_add(m, "hostPath", jstr(cfg->mounts[i]->host_path));
                        json_object_object_add(m, "readonly", json_object_new_boolean(cfg->mounts[i]->readonly));
                        json_object_array_add(mounts, m);
                }
                json_object_object_add(spec, "mounts", mounts);
                json_object_object_add(spec, "tty", json_object_new_boolean(cfg->tty));
                json_object_object_add(spec, "stdin", json_object_new_boolean(cfg->stdin));
                const Runtime__V1__LinuxContainerConfig *lx = cfg->linux;
                const Runtime__V1__LinuxContainerSecurityContext *sc = lx ? lx->security_context : NULL;
                if (sc) {
                        json_object_object_add(spec, "privileged", json_object_new_boolean(sc->privileged));
                        json_object_object_add(spec, "readonlyRootfs", json_object_new_boolean(sc->readonly_rootfs));
                        if (sc->run_as_user)
                                json_object_object_add(spec, "runAsUser", json_object_new_int64(sc->run_as_user->value));
                }
                json_object_object_add(o, "runtimeSpec", spec);
        }
        return json_to_arena(ctx, o);
}
