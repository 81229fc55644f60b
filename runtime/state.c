/* SPDX-License-Identifier: Apache-2.0 */
/* The state store: one versioned JSON record per pod and per container,
 * written atomically (tmp + fsync + rename), reloaded at start.
 *
 *   <root>/sandboxes/<pod>/pod.json
 *   <root>/sandboxes/<pod>/containers/<ctr>.json
 *   <root>/sandboxes/<pod>/containers/<ctr>.spec.pb   (the OCI spec, protobuf)
 *
 * The CRI configs are kept verbatim (protobuf, base64). Processes (VMM,
 * virtiofsd, host agent) are recorded by their owners' save() as pid + start
 * time. Paths are never read back from a record: they are derived from the
 * ids, so a damaged record cannot point cocoond at another directory. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/json.h"
#include "common/log.h"
#include "runtime/internal.h"
#include "runtime/spec.h"

#define RECORD_MAX (4u << 20)
#define SPEC_MAX (16u << 20)

static const char *const pod_states[] = { [RT_POD_READY] = "ready", [RT_POD_NOTREADY] = "notready" };
static const char *const ctr_states[] = {
        [RT_CTR_CREATED] = "created", [RT_CTR_RUNNING] = "running",
        [RT_CTR_EXITED] = "exited", [RT_CTR_UNKNOWN] = "unknown",
};
static const char *const pod_modes[] = { [RT_POD_VM] = "vm", [RT_POD_HOST] = "host" };

const char *rt_pod_state_to_string(rt_pod_state s)
{
        return (unsigned)s < CC_ARRAY_SIZE(pod_states) ? pod_states[s] : "?";
}

const char *rt_ctr_state_to_string(rt_ctr_state s)
{
        return (unsigned)s < CC_ARRAY_SIZE(ctr_states) ? ctr_states[s] : "?";
}

static int from_table(const char *const *t, size_t n, const char *s)
{
        for (size_t i = 0; i < n; i++)
                if (t[i] && strcmp(t[i], s) == 0)
                        return (int)i;
        return -1;
}

/* ---- base64 ------------------------------------------------------------------ */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *rt_b64_encode(const uint8_t *buf, size_t len)
{
        char *out = malloc((len + 2) / 3 * 4 + 1), *o = out;
        if (!out)
                return NULL;
        for (size_t i = 0; i < len; i += 3) {
                uint32_t v = (uint32_t)buf[i] << 16;
                if (i + 1 < len)
                        v |= (uint32_t)buf[i + 1] << 8;
                if (i + 2 < len)
                        v |= buf[i + 2];
                *o++ = b64[(v >> 18) & 63];
                *o++ = b64[(v >> 12) & 63];
                *o++ = i + 1 < len ? b64[(v >> 6) & 63] : '=';
                *o++ = i + 2 < len ? b64[v & 63] : '=';
        }
        *o = 0;
        return out;
}

static int b64_val(char c)
{
        const char *p = c ? strchr(b64, c) : NULL;
        return p ? (int)(p - b64) : -1;
}

int rt_b64_decode(const char *s, uint8_t **ret, size_t *ret_len)
{
        size_t n = strlen(s);
        if (n % 4)
                return -EINVAL;
        _cleanup_free_ uint8_t *out = malloc(n / 4 * 3 + 1);
        if (!out)
                return -ENOMEM;
        size_t o = 0;
        for (size_t i = 0; i < n; i += 4) {
                int a = b64_val(s[i]), b = b64_val(s[i + 1]);
                int c = s[i + 2] == '=' ? -2 : b64_val(s[i + 2]);
                int d = s[i + 3] == '=' ? -2 : b64_val(s[i + 3]);
                bool last = i + 4 == n;
                if (a < 0 || b < 0 || c == -1 || d == -1 || (!last && (c < 0 || d < 0)) || (c == -2 && d != -2))
                        return -EINVAL;
                uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (c >= 0 ? (uint32_t)c << 6 : 0) |
                             (d >= 0 ? (uint32_t)d : 0);
                out[o++] = (uint8_t)(v >> 16);
                if (c >= 0)
                        out[o++] = (uint8_t)(v >> 8);
                if (d >= 0)
                        out[o++] = (uint8_t)v;
        }
        *ret = TAKE_PTR(out);
        *ret_len = o;
        return 0;
}

static json_object *proto_to_b64(const ProtobufCMessage *m)
{
        size_t len = protobuf_c_message_get_packed_size(m);
        _cleanup_free_ uint8_t *buf = malloc(len ? len : 1);
        if (!buf)
                return NULL;
        protobuf_c_message_pack(m, buf);
        _cleanup_free_ char *s = rt_b64_encode(buf, len);
        return s ? json_object_new_string(s) : NULL;
}

static void *proto_from_b64(const ProtobufCMessageDescriptor *d, const char *s)
{
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len = 0;
        if (rt_b64_decode(s, &buf, &len) < 0)
                return NULL;
        return protobuf_c_message_unpack(d, NULL, len, buf);
}

/* ---- paths ------------------------------------------------------------------- */

int rt_pod_set_paths(rt_runtime *rt, rt_pod *p)
{
        free(p->run_dir);
        free(p->rec_dir);
        free(p->share_dir);
        free(p->etc_dir);
        p->run_dir = p->rec_dir = p->share_dir = p->etc_dir = NULL;
        if (asprintf(&p->run_dir, "%s/%s", rt->sb_run_root, p->id) < 0 ||
            asprintf(&p->rec_dir, "%s/%s", rt->sb_rec_root, p->id) < 0) {
                p->run_dir = p->rec_dir = NULL;
                return -ENOMEM;
        }
        if (p->mode == RT_POD_VM) {
                if (asprintf(&p->share_dir, "%s/shared", p->run_dir) < 0 ||
                    asprintf(&p->etc_dir, "%s/etc", p->share_dir) < 0) {
                        p->share_dir = p->etc_dir = NULL;
                        return -ENOMEM;
                }
        } else if (asprintf(&p->etc_dir, "%s/etc", p->run_dir) < 0) {
                p->etc_dir = NULL;
                return -ENOMEM;
        }
        return 0;
}

int rt_ctr_set_paths(rt_ctr *c)
{
        rt_pod *p = c->pod;
        free(c->dir);
        free(c->rootfs);
        free(c->upper);
        c->dir = c->rootfs = c->upper = NULL;
        int r = p->mode == RT_POD_VM ? asprintf(&c->dir, "%s/%s", p->share_dir, c->id)
                                     : asprintf(&c->dir, "%s/host/%s", p->run_dir, c->id);
        if (r < 0) {
                c->dir = NULL;
                return -ENOMEM;
        }
        if (asprintf(&c->rootfs, "%s/rootfs", c->dir) < 0 ||
            asprintf(&c->upper, "%s/ctr/%s", p->run_dir, c->id) < 0) {
                c->rootfs = c->upper = NULL;
                return -ENOMEM;
        }
        return 0;
}

/* ---- objects ----------------------------------------------------------------- */

rt_pod *rt_pod_new(void)
{
        rt_pod *p = calloc(1, sizeof(*p));
        if (!p)
                return NULL;
        p->refs = 1;
        pthread_mutex_init(&p->op_lock, NULL);
        pthread_mutex_init(&p->save_lock, NULL);
        p->state = RT_POD_NOTREADY;
        return p;
}

void rt_pod_free(rt_pod *p)
{
        if (!p)
                return;
        rt_agent_unref(p->agent);
        if (p->vmm)
                vmm_free(p->vmm);
        if (p->vfsd)
                virtiofsd_free(p->vfsd);
        rt_pod_net_free(p->net);
        if (p->config)
                protobuf_c_message_free_unpacked(&p->config->base, NULL);
        cc_json_putp(&p->vmm_j);
        cc_json_putp(&p->vfsd_j);
        cc_json_putp(&p->net_j);
        free(p->handler);
        free(p->lo_netns);
        free(p->run_dir);
        free(p->rec_dir);
        free(p->share_dir);
        free(p->etc_dir);
        pthread_mutex_destroy(&p->op_lock);
        pthread_mutex_destroy(&p->save_lock);
        free(p);
}

rt_ctr *rt_ctr_new(void)
{
        rt_ctr *c = calloc(1, sizeof(*c));
        if (!c)
                return NULL;
        c->refs = 1;
        pthread_mutex_init(&c->op_lock, NULL);
        pthread_mutex_init(&c->save_lock, NULL);
        return c;
}

/* ---- pods ---------------------------------------------------------------------- */

static void add_str(json_object *o, const char *k, const char *v)
{
        json_object_object_add(o, k, json_object_new_string(v ? v : ""));
}

static void add_i64(json_object *o, const char *k, int64_t v)
{
        json_object_object_add(o, k, json_object_new_int64(v));
}

static void add_bool(json_object *o, const char *k, bool v)
{
        json_object_object_add(o, k, json_object_new_boolean(v));
}

static void add_ref(json_object *o, const char *k, json_object *v)
{
        if (v)
                json_object_object_add(o, k, json_object_get(v));
}

int rt_state_save_pod(rt_runtime *rt, rt_pod *p, cc_error **ret_err)
{
        _cleanup_json_ json_object *o = json_object_new_object();
        _cleanup_free_ char *path = NULL;
        if (!o || asprintf(&path, "%s/pod.json", p->rec_dir) < 0)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        pthread_mutex_lock(&p->save_lock);
        pthread_mutex_lock(&rt->lock);
        bool removed = p->removed;
        add_i64(o, "version", RT_STATE_VERSION);
        add_str(o, "id", p->id);
        json_object *cfg = p->config ? proto_to_b64(&p->config->base) : NULL;
        if (cfg)
                json_object_object_add(o, "config", cfg);
        add_str(o, "runtime_handler", p->handler);
        add_str(o, "state", rt_pod_state_to_string(p->state));
        add_str(o, "mode", pod_modes[p->mode]);
        add_i64(o, "created_at_ns", p->created_at_ns);
        add_bool(o, "host_network", p->host_network);
        add_bool(o, "host_pid", p->host_pid);
        add_bool(o, "host_ipc", p->host_ipc);
        if (p->from_template)
                add_bool(o, "from_template", true);
        add_i64(o, "vcpus", p->vcpus);
        add_i64(o, "memory_mib", p->memory_mib);
        if (p->ops)
                add_str(o, "backend", p->ops->name);
        add_ref(o, "vmm", p->vmm_j);
        add_ref(o, "virtiofsd", p->vfsd_j);
        add_ref(o, "net", p->net_j);
        if (p->lo_netns)
                add_str(o, "loopback_netns", p->lo_netns);
        pthread_mutex_unlock(&rt->lock);
        int r = 0;
        if (!cfg)
                r = cc_error_set(ret_err, -ENOMEM, "out of memory");
        else if (!removed)
                r = cc_json_write_file(path, o, 0600, ret_err);
        pthread_mutex_unlock(&p->save_lock);
        if (r < 0)
                return cc_error_prefix(ret_err, "pod %.12s: saving its record", p->id);
        return 0;
}

static int bad(cc_error **ret_err, const char *path, const char *what)
{
        return cc_error_set(ret_err, -EBADMSG, "%s: %s", path, what);
}

/* Parses a pod or container record: a JSON object of version
 * RT_STATE_VERSION (else -EPROTONOSUPPORT). */
static int load_record(const char *path, json_object **ret, cc_error **ret_err)
{
        _cleanup_json_ json_object *o = cc_json_parse_file(path, RECORD_MAX, ret_err);
        if (!o)
                return (*ret_err)->code;
        if (!json_object_is_type(o, json_type_object))
                return bad(ret_err, path, "not a JSON object");
        int64_t version = 0;
        if (cc_json_get_int64(o, "version", false, &version, ret_err) < 0)
                return cc_error_prefix(ret_err, "%s", path);
        if (version != RT_STATE_VERSION)
                return cc_error_set(ret_err, -EPROTONOSUPPORT, "%s: record version %lld is not supported (%d is)",
                                    path, (long long)version, RT_STATE_VERSION);
        *ret = TAKE_PTR(o);
        return 0;
}

int rt_state_load_pod(rt_runtime *rt, const char *path, rt_pod **ret, json_object **ret_vmm,
                      json_object **ret_vfsd, json_object **ret_net, cc_error **ret_err)
{
        _cleanup_json_ json_object *o = NULL;
        int r = load_record(path, &o, ret_err);
        if (r < 0)
                return r;
        const char *id = NULL, *cfg = NULL, *handler = "", *state = NULL, *mode = NULL, *backend = NULL;
        const char *lo_netns = NULL;
        int64_t created = 0, vcpus = 0, mem = 0;
        bool hn = false, hp = false, hi = false, ft = false;
        if (cc_json_get_string(o, "id", false, &id, ret_err) < 0 ||
            cc_json_get_string(o, "config", false, &cfg, ret_err) < 0 ||
            cc_json_get_string(o, "runtime_handler", true, &handler, ret_err) < 0 ||
            cc_json_get_string(o, "state", false, &state, ret_err) < 0 ||
            cc_json_get_string(o, "mode", false, &mode, ret_err) < 0 ||
            cc_json_get_string(o, "backend", true, &backend, ret_err) < 0 ||
            cc_json_get_string(o, "loopback_netns", true, &lo_netns, ret_err) < 0 ||
            cc_json_get_int64(o, "created_at_ns", false, &created, ret_err) < 0 ||
            cc_json_get_int64(o, "vcpus", true, &vcpus, ret_err) < 0 ||
            cc_json_get_int64(o, "memory_mib", true, &mem, ret_err) < 0 ||
            cc_json_get_bool(o, "host_network", true, &hn, ret_err) < 0 ||
            cc_json_get_bool(o, "host_pid", true, &hp, ret_err) < 0 ||
            cc_json_get_bool(o, "host_ipc", true, &hi, ret_err) < 0 ||
            cc_json_get_bool(o, "from_template", true, &ft, ret_err) < 0)
                return cc_error_prefix(ret_err, "%s", path);
        if (!cc_id_is_valid(id))
                return bad(ret_err, path, "invalid id");
        int st = from_table(pod_states, CC_ARRAY_SIZE(pod_states), state);
        int md = from_table(pod_modes, CC_ARRAY_SIZE(pod_modes), mode);
        if (st < 0 || md < 0)
                return bad(ret_err, path, "unknown state or mode");
        if (vcpus < 0 || vcpus > 1024 || mem < 0 || mem > (1 << 24))
                return bad(ret_err, path, "VM size out of range");
        if (lo_netns && (lo_netns[0] != '/' || strstr(lo_netns, "/../") || !strstr(lo_netns, id)))
                return bad(ret_err, path, "bad netns path");
        rt_pod *p = rt_pod_new();
        if (!p)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        snprintf(p->id, sizeof(p->id), "%s", id);
        p->config = proto_from_b64(&runtime__v1__pod_sandbox_config__descriptor, cfg);
        p->handler = strdup(handler);
        p->state = (rt_pod_state)st;
        p->mode = (rt_pod_mode)md;
        p->created_at_ns = created;
        p->host_network = hn;
        p->host_pid = hp;
        p->host_ipc = hi;
        p->from_template = ft;
        p->vcpus = (int)vcpus;
        p->memory_mib = (int)mem;
        p->ops = backend ? rt_ops_by_name(rt, backend) : NULL;
        p->lo_netns = lo_netns ? strdup(lo_netns) : NULL;
        if (!p->config || !p->config->metadata) {
                rt_pod_free(p);
                return bad(ret_err, path, "damaged config");
        }
        if (!p->handler || rt_pod_set_paths(rt, p) < 0) {
                rt_pod_free(p);
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        if (backend && !p->ops)
                log_debug("%s: unknown VMM backend '%s'", path, backend);
        json_object *v;
        *ret_vmm = (v = cc_json_get_typed(o, "vmm", json_type_object)) ? json_object_get(v) : NULL;
        *ret_vfsd = (v = cc_json_get_typed(o, "virtiofsd", json_type_object)) ? json_object_get(v) : NULL;
        *ret_net = (v = cc_json_get_typed(o, "net", json_type_object)) ? json_object_get(v) : NULL;
        *ret = p;
        return 0;
}

/* ---- containers ------------------------------------------------------------ */

static char *ctr_path(rt_ctr *c, const char *suffix)
{
        char *s = NULL;
        if (asprintf(&s, "%s/containers/%s%s", c->pod->rec_dir, c->id, suffix) < 0)
                return NULL;
        return s;
}

int rt_state_save_ctr(rt_runtime *rt, rt_ctr *c, cc_error **ret_err)
{
        _cleanup_json_ json_object *o = json_object_new_object();
        _cleanup_free_ char *path = ctr_path(c, ".json"), *spec_path = ctr_path(c, ".spec.pb");
        _cleanup_free_ char *dir = NULL;
        if (!o || !path || !spec_path || asprintf(&dir, "%s/containers", c->pod->rec_dir) < 0)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        pthread_mutex_lock(&c->save_lock);
        pthread_mutex_lock(&rt->lock);
        bool removed = c->removed;
        add_i64(o, "version", RT_STATE_VERSION);
        add_str(o, "id", c->id);
        add_str(o, "sandbox_id", c->pod->id);
        json_object *cfg = c->config ? proto_to_b64(&c->config->base) : NULL;
        if (cfg)
                json_object_object_add(o, "config", cfg);
        add_str(o, "image_id", c->image_id);
        add_str(o, "image_name", c->image_name);
        json_object *chains = json_object_new_array();
        for (char **i = c->chain_ids; i && *i; i++)
                json_object_array_add(chains, json_object_new_string(*i));
        json_object_object_add(o, "chain_ids", chains);
        add_str(o, "state", rt_ctr_state_to_string(c->state));
        add_i64(o, "created_at_ns", c->created_at_ns);
        add_i64(o, "started_at_ns", c->started_at_ns);
        add_i64(o, "finished_at_ns", c->finished_at_ns);
        add_i64(o, "exit_code", c->exit_code);
        add_str(o, "reason", c->reason);
        add_str(o, "message", c->message);
        add_str(o, "log_path", c->log_path);
        add_i64(o, "stop_signal", c->stop_signal);
        add_bool(o, "tty", c->tty);
        add_bool(o, "stdin", c->stdin_);
        add_bool(o, "oom_killed", c->oom_killed);
        add_i64(o, "n_volumes", (int64_t)c->n_volumes);
        pthread_mutex_unlock(&rt->lock);
        int r = 0;
        if (!cfg) {
                r = cc_error_set(ret_err, -ENOMEM, "out of memory");
        } else if (!removed) {
                struct stat st;
                r = cc_mkdir_p(dir, 0700, ret_err);
                /* The spec never changes: written once, before the first record. */
                if (r == 0 && c->spec && stat(spec_path, &st) < 0) {
                        _cleanup_free_ uint8_t *buf = NULL;
                        size_t len = 0;
                        r = rt_spec_pack(c->spec, &buf, &len, ret_err);
                        if (r == 0)
                                r = cc_write_file_atomic(spec_path, buf, len, 0600, ret_err);
                }
                if (r == 0)
                        r = cc_json_write_file(path, o, 0600, ret_err);
        }
        pthread_mutex_unlock(&c->save_lock);
        if (r < 0)
                return cc_error_prefix(ret_err, "container %.12s: saving its record", c->id);
        return 0;
}

int rt_state_delete_ctr(rt_runtime *rt, rt_ctr *c)
{
        _cleanup_free_ char *path = ctr_path(c, ".json"), *spec_path = ctr_path(c, ".spec.pb");
        pthread_mutex_lock(&c->save_lock);
        pthread_mutex_lock(&rt->lock);
        c->removed = true;
        pthread_mutex_unlock(&rt->lock);
        int r = 0;
        if (path && unlink(path) < 0 && errno != ENOENT)
                r = -errno;
        if (spec_path && unlink(spec_path) < 0 && errno != ENOENT && r == 0)
                r = -errno;
        pthread_mutex_unlock(&c->save_lock);
        return r;
}

int rt_state_load_ctr(rt_runtime *rt, rt_pod *p, const char *path, rt_ctr **ret, cc_error **ret_err)
{
        (void)rt;
        _cleanup_json_ json_object *o = NULL;
        int r = load_record(path, &o, ret_err);
        if (r < 0)
                return r;
        const char *id = NULL, *sb = NULL, *cfg = NULL, *image_id = "", *image_name = "", *state = NULL;
        const char *reason = "", *message = "", *log_path = "";
        int64_t created = 0, started = 0, finished = 0, exit_code = 0, stop_signal = 0, n_vol = 0;
        bool tty = false, in = false, oom = false;
        if (cc_json_get_string(o, "id", false, &id, ret_err) < 0 ||
            cc_json_get_string(o, "sandbox_id", false, &sb, ret_err) < 0 ||
            cc_json_get_string(o, "config", false, &cfg, ret_err) < 0 ||
            cc_json_get_string(o, "image_id", true, &image_id, ret_err) < 0 ||
            cc_json_get_string(o, "image_name", true, &image_name, ret_err) < 0 ||
            cc_json_get_string(o, "state", false, &state, ret_err) < 0 ||
            cc_json_get_string(o, "reason", true, &reason, ret_err) < 0 ||
            cc_json_get_string(o, "message", true, &message, ret_err) < 0 ||
            cc_json_get_string(o, "log_path", true, &log_path, ret_err) < 0 ||
            cc_json_get_int64(o, "created_at_ns", false, &created, ret_err) < 0 ||
            cc_json_get_int64(o, "started_at_ns", true, &started, ret_err) < 0 ||
            cc_json_get_int64(o, "finished_at_ns", true, &finished, ret_err) < 0 ||
            cc_json_get_int64(o, "exit_code", true, &exit_code, ret_err) < 0 ||
            cc_json_get_int64(o, "stop_signal", true, &stop_signal, ret_err) < 0 ||
            cc_json_get_int64(o, "n_volumes", true, &n_vol, ret_err) < 0 ||
            cc_json_get_bool(o, "tty", true, &tty, ret_err) < 0 ||
            cc_json_get_bool(o, "stdin", true, &in, ret_err) < 0 ||
            cc_json_get_bool(o, "oom_killed", true, &oom, ret_err) < 0)
                return cc_error_prefix(ret_err, "%s", path);
        if (!cc_id_is_valid(id) || strcmp(sb, p->id) != 0)
                return bad(ret_err, path, "invalid id or sandbox id");
        int st = from_table(ctr_states, CC_ARRAY_SIZE(ctr_states), state);
        if (st < 0)
                return bad(ret_err, path, "unknown state");
        if (exit_code < -1 || exit_code > 255 || stop_signal < 0 || stop_signal >= 65 || n_vol < 0 ||
            n_vol > 4096)
                return bad(ret_err, path, "value out of range");
        if (*log_path && log_path[0] != '/')
                return bad(ret_err, path, "relative log path");
        rt_ctr *c = rt_ctr_new();
        if (!c)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        snprintf(c->id, sizeof(c->id), "%s", id);
        c->pod = p; /* the caller references it */
        c->config = proto_from_b64(&runtime__v1__container_config__descriptor, cfg);
        c->image_id = strdup(image_id);
        c->image_name = strdup(image_name);
        c->reason = strdup(reason);
        c->message = strdup(message);
        c->log_path = strdup(log_path);
        c->state = (rt_ctr_state)st;
        c->created_at_ns = created;
        c->started_at_ns = started;
        c->finished_at_ns = finished;
        c->exit_code = (int32_t)exit_code;
        c->stop_signal = (int)stop_signal;
        c->tty = tty;
        c->stdin_ = in;
        c->oom_killed = oom;
        c->n_volumes = (size_t)n_vol;
        json_object *chains = cc_json_get_typed(o, "chain_ids", json_type_array);
        size_t nc = chains ? json_object_array_length(chains) : 0;
        c->chain_ids = calloc(nc + 1, sizeof(char *));
        bool ok = c->config && c->config->metadata && c->image_id && c->image_name && c->reason &&
                  c->message && c->log_path && c->chain_ids;
        for (size_t i = 0; ok && i < nc; i++) {
                json_object *e = json_object_array_get_idx(chains, i);
                ok = json_object_is_type(e, json_type_string) &&
                     (c->chain_ids[i] = strdup(json_object_get_string(e)));
        }
        if (ok && rt_ctr_set_paths(c) < 0)
                ok = false;
        _cleanup_free_ char *spec_path = ok ? ctr_path(c, ".spec.pb") : NULL;
        if (ok && spec_path) {
                _cleanup_free_ char *buf = NULL;
                size_t len = 0;
                _cleanup_error_ cc_error *e = NULL;
                if (cc_read_file(spec_path, SPEC_MAX, &buf, &len, &e) == 0)
                        (void)rt_spec_unpack((const uint8_t *)buf, len, &c->spec, &e);
                if (e)
                        log_debug("container %.12s: spec: %s", c->id, e->msg);
        }
        if (!ok) {
                c->pod = NULL;
                rt_ctr_free(c);
                return bad(ret_err, path, "damaged record");
        }
        *ret = c;
        return 0;
}
