/* SPDX-License-Identifier: Apache-2.0 */
/* CRI CreateContainer → the OCI spec the agent runs (see runtime/spec.h for
 * the rules, after containerd 1.6's CRI plugin). The spec is built from
 * individually malloc'd parts (strings, arrays, messages; empty strings are
 * protobuf_c_empty_string), exactly the shape protobuf-c's unpacker makes,
 * so protobuf_c_message_free_unpacked() frees a built, a half-built and an
 * unpacked spec alike. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/caps.h"
#include "common/cleanup.h"
#include "runtime/spec-internal.h"
#include "runtime/spec.h"

#define OCI_VERSION "1.0.2-dev"
#define DEFAULT_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define NAME_MAX_LEN 256

#define NEW(type, init) ({ type *_m = malloc(sizeof(type)); if (_m) init(_m); _m; })
#define OOM(e) cc_error_set(e, -ENOMEM, "out of memory")

/* The capabilities the agent knows: common/caps.h, in bit order. */
#define N_CAPS CC_N_CAPS

/* containerd's default set. */
static const char *const default_caps[] = {
        "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID",
        "SETUID", "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
};

static const char *const default_masked[] = {
        "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
        "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
        "/sys/devices/virtual/powercap",
};
static const char *const default_readonly[] = {
        "/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
};

/* ---- small builders ----------------------------------------------------- */

static char *dup_str(const char *s)
{
        return s && *s ? strdup(s) : (char *)protobuf_c_empty_string;
}

int rt_spec_strv_push(char ***v, size_t *n, const char *s)
{
        char *d = strdup(s);
        char **nv = d ? realloc(*v, (*n + 1) * sizeof(char *)) : NULL;
        if (!nv) {
                free(d);
                return -ENOMEM;
        }
        nv[(*n)++] = d;
        *v = nv;
        return 0;
}

static int ptrv_push(void ***v, size_t *n, void *p)
{
        void **nv = realloc(*v, (*n + 1) * sizeof(void *));
        if (!nv)
                return -ENOMEM;
        nv[(*n)++] = p;
        *v = nv;
        return 0;
}

/* Absolute, no "." or ".." component; *ret is the cleaned copy. */
static int clean_abs_path(const char *what, const char *p, char **ret, cc_error **ret_err)
{
        if (!p || p[0] != '/')
                return cc_error_set(ret_err, -EINVAL, "%s '%.200s' is not an absolute path", what, p ? p : "");
        if (strlen(p) >= PATH_MAX)
                return cc_error_set(ret_err, -EINVAL, "%s is too long", what);
        char *out = malloc(strlen(p) + 2), *o = out;
        if (!out)
                return OOM(ret_err);
        for (const char *s = p; *s;) {
                while (*s == '/')
                        s++;
                size_t n = strcspn(s, "/");
                if (!n)
                        break;
                if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.')) {
                        free(out);
                        return cc_error_set(ret_err, -EINVAL, "%s '%.200s' contains '%.*s'", what, p, (int)n, s);
                }
                *o++ = '/';
                memcpy(o, s, n);
                o += n;
                s += n;
        }
        if (o == out)
                *o++ = '/';
        *o = 0;
        *ret = out;
        return 0;
}

/* Components of a cleaned absolute path ("/" has none). */
static int path_depth(const char *p)
{
        int d = 0;
        for (const char *s = p; *s; s++)
                d += *s == '/';
        return strcmp(p, "/") == 0 ? 0 : d;
}

/* ---- process ------------------------------------------------------------ */

static const Runtime__V1__LinuxContainerSecurityContext *sec_ctx(const rt_spec_input *in)
{
        return in->ctr->linux ? in->ctr->linux->security_context : NULL;
}

static bool privileged(const rt_spec_input *in)
{
        const Runtime__V1__LinuxContainerSecurityContext *sc = sec_ctx(in);
        return sc && sc->privileged;
}

static int build_args(const rt_spec_input *in, Grpc__Process *p, cc_error **ret_err)
{
        const Runtime__V1__ContainerConfig *c = in->ctr;
        char *const *cmd = c->command, *const *args = c->args;
        size_t n_cmd = c->n_command, n_args = c->n_args;
        size_t n_img_cmd = 0, n_ep = 0;
        if (n_cmd == 0) {
                if (n_args == 0 && in->image && in->image->cmd) {
                        for (args = in->image->cmd; args[n_img_cmd]; n_img_cmd++)
                                ;
                        n_args = n_img_cmd;
                }
                char **ep = in->image ? in->image->entrypoint : NULL;
                for (; ep && ep[n_ep]; n_ep++)
                        ;
                /* ENTRYPOINT [""] means none (Docker, containerd) */
                if (n_ep == 1 && !ep[0][0])
                        n_ep = 0;
                cmd = ep;
                n_cmd = n_ep;
        }
        if (n_cmd + n_args == 0)
                return cc_error_set(ret_err, -EINVAL, "no command specified");
        for (size_t i = 0; i < n_cmd + n_args; i++)
                if (rt_spec_strv_push(&p->args, &p->n_args, i < n_cmd ? cmd[i] : args[i - n_cmd]) < 0)
                        return OOM(ret_err);
        if (!p->args[0][0])
                return cc_error_set(ret_err, -EINVAL, "command: the program name (argument 0) is empty");
        return 0;
}

/* Sets KEY=VALUE, replacing an entry with the same key in place. */
static int env_set(Grpc__Process *p, const char *kv)
{
        size_t k = strcspn(kv, "=");
        for (size_t i = 0; i < p->n_env; i++)
                if (strncmp(p->env[i], kv, k) == 0 && (p->env[i][k] == '=' || !p->env[i][k])) {
                        char *d = strdup(kv);
                        if (!d)
                                return -ENOMEM;
                        free(p->env[i]);
                        p->env[i] = d;
                        return 0;
                }
        return rt_spec_strv_push(&p->env, &p->n_env, kv);
}

static int build_env(const rt_spec_input *in, const char *hostname, Grpc__Process *p, cc_error **ret_err)
{
        _cleanup_free_ char *h = NULL;
        if (asprintf(&h, "HOSTNAME=%s", hostname) < 0)
                return OOM(ret_err);
        /* containerd's order: the default PATH, HOSTNAME, the image's env,
         * the request's env; a later same key replaces in place. */
        if (env_set(p, DEFAULT_PATH) < 0 || env_set(p, h) < 0)
                return OOM(ret_err);
        for (char **e = in->image ? in->image->env : NULL; e && *e; e++)
                if (strchr(*e, '=') && **e != '=' && env_set(p, *e) < 0)
                        return OOM(ret_err);
        for (size_t i = 0; i < in->ctr->n_envs; i++) {
                const Runtime__V1__KeyValue *kv = in->ctr->envs[i];
                if (!kv->key || !*kv->key || strchr(kv->key, '='))
                        return cc_error_set(ret_err, -EINVAL, "envs[%zu]: bad variable name '%.64s'", i,
                                            kv->key ? kv->key : "");
                _cleanup_free_ char *s = NULL;
                if (asprintf(&s, "%s=%s", kv->key, kv->value ? kv->value : "") < 0 || env_set(p, s) < 0)
                        return OOM(ret_err);
        }
        return 0;
}

static bool parse_id(const char *s, uint32_t *ret)
{
        if (!*s || strspn(s, "0123456789") != strlen(s) || strlen(s) > 10)
                return false;
        unsigned long long v = strtoull(s, NULL, 10);
        if (v > 0xfffffffeULL)
                return false;
        *ret = (uint32_t)v;
        return true;
}

static bool valid_name(const char *s)
{
        size_t n = strlen(s);
        if (n == 0 || n > NAME_MAX_LEN)
                return false;
        for (; *s; s++)
                if ((unsigned char)*s < 0x20 || *s == ':' || *s == '/' || *s == 0x7f)
                        return false;
        return true;
}

/* "user[:group]" from the request or the image. Numeric user and group:
 * UID/GID only. Otherwise User.Username carries what the agent resolves in
 * the container's /etc/passwd (and /etc/group): a numeric uid alone is
 * passed as Username too, so that its primary gid and groups come from
 * /etc/passwd and /etc/group as with containerd. */
static int set_user(Grpc__User *u, const char *what, const char *user, const char *group, cc_error **ret_err)
{
        uint32_t uid = 0, gid = 0;
        bool uid_num = parse_id(user, &uid);
        if (!uid_num && !valid_name(user))
                return cc_error_set(ret_err, -EINVAL, "%s: bad user '%.64s'", what, user);
        if (group && !parse_id(group, &gid) && !valid_name(group))
                return cc_error_set(ret_err, -EINVAL, "%s: bad group '%.64s'", what, group);
        u->uid = uid;
        if (group && uid_num && parse_id(group, &gid)) {
                u->gid = gid;
                return 0;
        }
        if (group && parse_id(group, &gid))
                u->gid = gid;
        _cleanup_free_ char *s = NULL;
        if ((group ? asprintf(&s, "%s:%s", user, group) : asprintf(&s, "%s", user)) < 0 ||
            !(u->username = strdup(s)))
                return OOM(ret_err);
        return 0;
}

static int build_user(const rt_spec_input *in, Grpc__Process *p, cc_error **ret_err)
{
        const Runtime__V1__LinuxContainerSecurityContext *sc = sec_ctx(in);
        Grpc__User *u = p->user = NEW(Grpc__User, grpc__user__init);
        if (!u)
                return OOM(ret_err);
        const char *uname = sc && sc->run_as_username && *sc->run_as_username ? sc->run_as_username : NULL;
        const Runtime__V1__Int64Value *ruid = sc ? sc->run_as_user : NULL, *rgid = sc ? sc->run_as_group : NULL;
        char ubuf[24], gbuf[24];
        if (uname && ruid)
                return cc_error_set(ret_err, -EINVAL, "run_as_user and run_as_username are both set");
        if (rgid && !uname && !ruid)
                return cc_error_set(ret_err, -EINVAL, "run_as_group is set without run_as_user or run_as_username");
        if (ruid && (ruid->value < 0 || ruid->value > 0xfffffffeLL))
                return cc_error_set(ret_err, -EINVAL, "run_as_user %lld out of range", (long long)ruid->value);
        if (rgid && (rgid->value < 0 || rgid->value > 0xfffffffeLL))
                return cc_error_set(ret_err, -EINVAL, "run_as_group %lld out of range", (long long)rgid->value);
        int r;
        if (uname || ruid) {
                if (ruid)
                        snprintf(ubuf, sizeof(ubuf), "%lld", (long long)ruid->value);
                if (rgid)
                        snprintf(gbuf, sizeof(gbuf), "%lld", (long long)rgid->value);
                r = set_user(u, uname ? "run_as_username" : "run_as_user", uname ? uname : ubuf,
                             rgid ? gbuf : NULL, ret_err);
        } else if (in->image && in->image->user && *in->image->user) {
                _cleanup_free_ char *s = strdup(in->image->user);
                if (!s)
                        return OOM(ret_err);
                char *colon = strchr(s, ':');
                if (colon)
                        *colon++ = 0;
                r = set_user(u, "image user", s, colon, ret_err);
        } else {
                r = set_user(u, "user", "0", NULL, ret_err);
        }
        if (r < 0)
                return r;
        for (size_t i = 0; sc && i < sc->n_supplemental_groups; i++) {
                int64_t g = sc->supplemental_groups[i];
                if (g < 0 || g > 0xfffffffeLL)
                        return cc_error_set(ret_err, -EINVAL, "supplemental_groups[%zu] %lld out of range", i,
                                            (long long)g);
                uint32_t *nv = realloc(u->additionalgids, (u->n_additionalgids + 1) * sizeof(uint32_t));
                if (!nv)
                        return OOM(ret_err);
                nv[u->n_additionalgids++] = (uint32_t)g;
                u->additionalgids = nv;
        }
        return 0;
}

static int cap_lookup(const char *what, size_t i, const char *name, cc_error **ret_err)
{
        int j = cc_cap_lookup(name);
        if (j >= 0)
                return j;
        return cc_error_set(ret_err, -EINVAL, "capabilities.%s[%zu]: unknown capability '%.64s'", what, i, name);
}

/* containerd's order: add "ALL", drop "ALL", add each, drop each (a
 * capability both added and dropped ends up dropped). */
static int compute_caps(const rt_spec_input *in, bool set[N_CAPS], bool ambient[N_CAPS], cc_error **ret_err)
{
        memset(set, 0, N_CAPS * sizeof(bool));
        memset(ambient, 0, N_CAPS * sizeof(bool));
        if (privileged(in)) {
                for (size_t j = 0; j < N_CAPS; j++)
                        set[j] = true;
                return 0;
        }
        for (size_t i = 0; i < CC_ARRAY_SIZE(default_caps); i++)
                set[cap_lookup("default", i, default_caps[i], NULL)] = true;
        const Runtime__V1__LinuxContainerSecurityContext *sc = sec_ctx(in);
        const Runtime__V1__Capability *c = sc ? sc->capabilities : NULL;
        if (!c)
                return 0;
        for (size_t i = 0; i < c->n_add_capabilities; i++)
                if (strcasecmp(c->add_capabilities[i], "ALL") == 0)
                        memset(set, 1, N_CAPS * sizeof(bool));
        for (size_t i = 0; i < c->n_drop_capabilities; i++)
                if (strcasecmp(c->drop_capabilities[i], "ALL") == 0)
                        memset(set, 0, N_CAPS * sizeof(bool));
        for (size_t i = 0; i < c->n_add_capabilities; i++) {
                if (strcasecmp(c->add_capabilities[i], "ALL") == 0)
                        continue;
                int j = cap_lookup("add_capabilities", i, c->add_capabilities[i], ret_err);
                if (j < 0)
                        return j;
                set[j] = true;
        }
        for (size_t i = 0; i < c->n_drop_capabilities; i++) {
                if (strcasecmp(c->drop_capabilities[i], "ALL") == 0)
                        continue;
                int j = cap_lookup("drop_capabilities", i, c->drop_capabilities[i], ret_err);
                if (j < 0)
                        return j;
                set[j] = false;
        }
        /* Ambient capabilities must be permitted and inheritable too. */
        for (size_t i = 0; i < c->n_add_ambient_capabilities; i++) {
                int j = cap_lookup("add_ambient_capabilities", i, c->add_ambient_capabilities[i], ret_err);
                if (j < 0)
                        return j;
                set[j] = ambient[j] = true;
        }
        return 0;
}

static int build_caps(const rt_spec_input *in, Grpc__Process *p, cc_error **ret_err)
{
        bool set[N_CAPS], amb[N_CAPS];
        int r = compute_caps(in, set, amb, ret_err);
        if (r < 0)
                return r;
        Grpc__LinuxCapabilities *c = p->capabilities = NEW(Grpc__LinuxCapabilities, grpc__linux_capabilities__init);
        if (!c)
                return OOM(ret_err);
        for (size_t j = 0; j < N_CAPS; j++) {
                char name[32];
                snprintf(name, sizeof(name), "CAP_%s", cc_cap_names[j]);
                if (set[j] && (rt_spec_strv_push(&c->bounding, &c->n_bounding, name) < 0 ||
                               rt_spec_strv_push(&c->effective, &c->n_effective, name) < 0 ||
                               rt_spec_strv_push(&c->permitted, &c->n_permitted, name) < 0))
                        return OOM(ret_err);
                if (amb[j] && (rt_spec_strv_push(&c->inheritable, &c->n_inheritable, name) < 0 ||
                               rt_spec_strv_push(&c->ambient, &c->n_ambient, name) < 0))
                        return OOM(ret_err);
        }
        return 0;
}

static int build_process(const rt_spec_input *in, const char *hostname, Grpc__Spec *s, cc_error **ret_err)
{
        Grpc__Process *p = s->process = NEW(Grpc__Process, grpc__process__init);
        if (!p)
                return OOM(ret_err);
        int r;
        if ((r = build_args(in, p, ret_err)) < 0 || (r = build_env(in, hostname, p, ret_err)) < 0 ||
            (r = build_user(in, p, ret_err)) < 0 || (r = build_caps(in, p, ret_err)) < 0)
                return r;
        const char *cwd = in->ctr->working_dir && *in->ctr->working_dir ? in->ctr->working_dir
                          : in->image && in->image->working_dir && *in->image->working_dir ? in->image->working_dir
                          : "/";
        _cleanup_free_ char *clean = NULL;
        if ((r = clean_abs_path(cwd == in->ctr->working_dir ? "working_dir" : "image working directory", cwd,
                                &clean, ret_err)) < 0)
                return r;
        p->cwd = TAKE_PTR(clean);
        p->terminal = in->ctr->tty;
        const Runtime__V1__LinuxContainerSecurityContext *sc = sec_ctx(in);
        p->nonewprivileges = sc && sc->no_new_privs;
        const Runtime__V1__LinuxContainerResources *res = in->ctr->linux ? in->ctr->linux->resources : NULL;
        if (res && (res->oom_score_adj < -1000 || res->oom_score_adj > 1000))
                return cc_error_set(ret_err, -EINVAL, "resources.oom_score_adj %lld out of range",
                                    (long long)res->oom_score_adj);
        p->oomscoreadj = res ? res->oom_score_adj : 0;
        return 0;
}

/* ---- mounts ------------------------------------------------------------- */

static int add_mount(Grpc__Spec *s, const char *dest, const char *src, const char *type,
                     const char *const *opts, cc_error **ret_err)
{
        Grpc__Mount *m = NEW(Grpc__Mount, grpc__mount__init);
        if (!m || ptrv_push((void ***)&s->mounts, &s->n_mounts, m) < 0) {
                free(m);
                return OOM(ret_err);
        }
        if (!(m->destination = dup_str(dest)) || !(m->source = dup_str(src)) || !(m->type = dup_str(type)))
                return OOM(ret_err);
        for (; opts && *opts; opts++)
                if (rt_spec_strv_push(&m->options, &m->n_options, *opts) < 0)
                        return OOM(ret_err);
        return 0;
}

/* A mount from the request (or one the runtime adds like it: /etc files,
 * /dev/shm, devices in host mode), before sorting. */
typedef struct cri_mount {
        char *dest;
        const char *src, *type;
        const char *opts[8];
} cri_mount;

static bool requested(const cri_mount *ms, size_t n, const char *dest)
{
        for (size_t i = 0; i < n; i++)
                if (strcmp(ms[i].dest, dest) == 0)
                        return true;
        return false;
}

static const char *propagation(Runtime__V1__MountPropagation p)
{
        switch (p) {
        case RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_PRIVATE: return "rprivate";
        case RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_HOST_TO_CONTAINER: return "rslave";
        case RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_BIDIRECTIONAL: return "rshared";
        default: return NULL;
        }
}

static void cri_mounts_free(cri_mount *ms, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(ms[i].dest);
        free(ms);
}

static int collect_request_mounts(const rt_spec_input *in, cri_mount *ms, size_t *n, Grpc__Spec *s,
                                  cc_error **ret_err)
{
        bool rshared = false, rslave = false;
        for (size_t i = 0; i < in->n_mounts; i++) {
                const rt_spec_mount *rm = &in->mounts[i];
                const Runtime__V1__Mount *m = in->ctr->mounts[i];
                char what[48];
                snprintf(what, sizeof(what), "mounts[%zu].container_path", i);
                cri_mount *cm = &ms[*n];
                int r = clean_abs_path(what, m->container_path, &cm->dest, ret_err);
                if (r < 0)
                        return r;
                (*n)++;
                if (requested(ms, *n - 1, cm->dest))
                        return cc_error_set(ret_err, -EINVAL, "mounts[%zu]: duplicate mount point '%.200s'", i,
                                            cm->dest);
                if (!rm->source || rm->source[0] != '/' || strstr(rm->source, "/../") ||
                    (strlen(rm->source) >= 3 && strcmp(rm->source + strlen(rm->source) - 3, "/..") == 0))
                        return cc_error_set(ret_err, -EINVAL, "mounts[%zu]: source '%.200s' is not a clean absolute path",
                                            i, rm->source ? rm->source : "");
                if (m->n_uidmappings || m->n_gidmappings)
                        return cc_error_set(ret_err, -EOPNOTSUPP, "mounts[%zu]: id-mapped mounts are not supported", i);
                if (m->recursive_read_only)
                        return cc_error_set(ret_err, -EOPNOTSUPP,
                                            "mounts[%zu]: recursive read-only mounts are not supported", i);
                const char *prop = propagation(m->propagation);
                if (!prop)
                        return cc_error_set(ret_err, -EINVAL, "mounts[%zu]: unknown propagation %d", i,
                                            (int)m->propagation);
                rshared |= m->propagation == RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_BIDIRECTIONAL;
                rslave |= m->propagation == RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_HOST_TO_CONTAINER;
                cm->src = rm->source;
                cm->type = "bind";
                cm->opts[0] = "rbind";
                cm->opts[1] = prop;
                cm->opts[2] = m->readonly ? "ro" : "rw";
        }
        if (rshared || rslave) {
                Grpc__Linux *lx = s->linux;
                if (!(lx->rootfspropagation = strdup(rshared ? "rshared" : "rslave")))
                        return OOM(ret_err);
        }
        /* Devices: a VM cannot reach the host's device nodes; on the host
         * they are bound like files (no nodev). */
        for (size_t i = 0; i < in->ctr->n_devices; i++) {
                const Runtime__V1__Device *d = in->ctr->devices[i];
                char what[48];
                if (!in->host_mode)
                        return cc_error_set(ret_err, -EOPNOTSUPP,
                                            "devices[%zu]: host devices cannot be passed into a pod VM", i);
                snprintf(what, sizeof(what), "devices[%zu].container_path", i);
                cri_mount *cm = &ms[*n];
                int r = clean_abs_path(what, d->container_path, &cm->dest, ret_err);
                if (r < 0)
                        return r;
                (*n)++;
                const char *perm = d->permissions ? d->permissions : "";
                if (!d->host_path || strncmp(d->host_path, "/dev/", 5) != 0 || strstr(d->host_path, ".."))
                        return cc_error_set(ret_err, -EINVAL, "devices[%zu].host_path '%.200s' is not below /dev", i,
                                            d->host_path ? d->host_path : "");
                if (perm[strspn(perm, "rwm")])
                        return cc_error_set(ret_err, -EINVAL, "devices[%zu].permissions '%.16s' is not some of \"rwm\"",
                                            i, perm);
                if (requested(ms, *n - 1, cm->dest))
                        return cc_error_set(ret_err, -EINVAL, "devices[%zu]: duplicate path '%.200s'", i, cm->dest);
                cm->src = d->host_path;
                cm->type = "bind";
                cm->opts[0] = "bind";
                cm->opts[1] = "nosuid";
                cm->opts[2] = "noexec";
                cm->opts[3] = strchr(perm, 'w') ? "rw" : "ro";
        }
        return 0;
}

static int build_mounts(const rt_spec_input *in, bool host_ipc, Grpc__Spec *s, cc_error **ret_err)
{
        size_t cap = in->n_mounts + in->ctr->n_devices + 4, n = 0;
        cri_mount *ms = calloc(cap, sizeof(*ms));
        if (!ms)
                return OOM(ret_err);
        int r = collect_request_mounts(in, ms, &n, s, ret_err);
        size_t n_req = n;
        /* /etc files and /dev/shm, unless the request mounts them itself */
        const char *ro = privileged(in) || !(sec_ctx(in) && sec_ctx(in)->readonly_rootfs) ? "rw" : "ro";
        const struct { const char *dest, *src; } etc[] = {
                { "/etc/hostname", in->hostname_path },
                { "/etc/hosts", in->hosts_path },
                { "/etc/resolv.conf", in->resolv_path },
        };
        for (size_t i = 0; r >= 0 && i < CC_ARRAY_SIZE(etc); i++) {
                if (!etc[i].src || !*etc[i].src || requested(ms, n_req, etc[i].dest))
                        continue;
                if (etc[i].src[0] != '/') {
                        r = cc_error_set(ret_err, -EINVAL, "%s source '%.200s' is not absolute", etc[i].dest,
                                         etc[i].src);
                        break;
                }
                if (!(ms[n].dest = strdup(etc[i].dest))) {
                        r = OOM(ret_err);
                        break;
                }
                ms[n].src = etc[i].src;
                ms[n].type = "bind";
                ms[n].opts[0] = "rbind";
                ms[n].opts[1] = "rprivate";
                ms[n].opts[2] = ro;
                n++;
        }
        bool dev_requested = r >= 0 && requested(ms, n_req, "/dev");
        if (r >= 0 && !requested(ms, n_req, "/dev/shm") && !dev_requested) {
                const char *shm = in->shm_path && *in->shm_path ? in->shm_path : host_ipc ? "/dev/shm" : NULL;
                if (shm && shm[0] != '/') {
                        r = cc_error_set(ret_err, -EINVAL, "shm_path '%.200s' is not absolute", shm);
                } else if (!(ms[n].dest = strdup("/dev/shm"))) {
                        r = OOM(ret_err);
                } else if (shm) {
                        ms[n].src = shm;
                        ms[n].type = "bind";
                        const char *o[] = { "rbind", "rprivate", "nosuid", "nodev", "noexec", "rw" };
                        memcpy(ms[n++].opts, o, sizeof(o));
                } else {
                        ms[n].src = "shm";
                        ms[n].type = "tmpfs";
                        const char *o[] = { "nosuid", "noexec", "nodev", "mode=1777", "size=65536k" };
                        memcpy(ms[n++].opts, o, sizeof(o));
                }
        }
        if (r < 0) {
                cri_mounts_free(ms, n);
                return r;
        }

        /* Defaults first (less one the request replaces, and all of /dev's
         * when it mounts /dev), then the rest parents before children. */
        bool priv = privileged(in);
        static const char *const o_proc[] = { "nosuid", "noexec", "nodev", NULL };
        static const char *const o_dev[] = { "nosuid", "strictatime", "mode=755", "size=65536k", NULL };
        static const char *const o_pts[] = { "nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5", NULL };
        static const char *const o_mq[] = { "nosuid", "noexec", "nodev", NULL };
        const char *o_sys[] = { "nosuid", "noexec", "nodev", priv ? "rw" : "ro", NULL };
        const char *o_cg[] = { "nosuid", "noexec", "nodev", "relatime", priv ? "rw" : "ro", NULL };
        const struct { const char *dest, *src, *type; const char *const *opts; } defs[] = {
                { "/proc", "proc", "proc", o_proc },
                { "/dev", "tmpfs", "tmpfs", o_dev },
                { "/dev/pts", "devpts", "devpts", o_pts },
                { "/dev/mqueue", "mqueue", "mqueue", o_mq },
                { "/sys", "sysfs", "sysfs", o_sys },
                { "/sys/fs/cgroup", "cgroup", "cgroup", o_cg },
        };
        for (size_t i = 0; r >= 0 && i < CC_ARRAY_SIZE(defs); i++) {
                if (requested(ms, n_req, defs[i].dest) || (dev_requested && strncmp(defs[i].dest, "/dev/", 5) == 0))
                        continue;
                r = add_mount(s, defs[i].dest, defs[i].src, defs[i].type, defs[i].opts, ret_err);
        }
        /* stable insertion sort by depth */
        for (size_t i = 1; i < n; i++)
                for (size_t j = i; j > 0 && path_depth(ms[j - 1].dest) > path_depth(ms[j].dest); j--) {
                        cri_mount t = ms[j];
                        ms[j] = ms[j - 1];
                        ms[j - 1] = t;
                }
        for (size_t i = 0; r >= 0 && i < n; i++)
                r = add_mount(s, ms[i].dest, ms[i].src, ms[i].type, ms[i].opts, ret_err);
        cri_mounts_free(ms, n);
        return r;
}

/* ---- linux -------------------------------------------------------------- */

static int add_ns(Grpc__Linux *lx, const char *type, const char *path, cc_error **ret_err)
{
        Grpc__LinuxNamespace *ns = NEW(Grpc__LinuxNamespace, grpc__linux_namespace__init);
        if (!ns || ptrv_push((void ***)&lx->namespaces, &lx->n_namespaces, ns) < 0) {
                free(ns);
                return OOM(ret_err);
        }
        if (!(ns->type = strdup(type)) || !(ns->path = dup_str(path)))
                return OOM(ret_err);
        return 0;
}

typedef struct ns_modes {
        Runtime__V1__NamespaceMode pid, ipc, net;
} ns_modes;

static int get_ns_modes(const rt_spec_input *in, ns_modes *m, cc_error **ret_err)
{
        const Runtime__V1__LinuxContainerSecurityContext *sc = sec_ctx(in);
        const Runtime__V1__NamespaceOption *o = sc ? sc->namespace_options : NULL;
        if (!o && in->pod->linux && in->pod->linux->security_context)
                o = in->pod->linux->security_context->namespace_options;
        *m = (ns_modes){ RUNTIME__V1__NAMESPACE_MODE__POD, RUNTIME__V1__NAMESPACE_MODE__POD,
                         RUNTIME__V1__NAMESPACE_MODE__POD };
        if (!o)
                return 0;
        if (o->userns_options && o->userns_options->mode != RUNTIME__V1__NAMESPACE_MODE__NODE)
                return cc_error_set(ret_err, -EOPNOTSUPP, "namespace_options.userns_options: user namespaces are not supported");
        const struct { const char *name; Runtime__V1__NamespaceMode v; } f[] = {
                { "pid", o->pid }, { "ipc", o->ipc }, { "network", o->network } };
        for (size_t i = 0; i < CC_ARRAY_SIZE(f); i++) {
                if (f[i].v == RUNTIME__V1__NAMESPACE_MODE__TARGET)
                        return cc_error_set(ret_err, -EOPNOTSUPP,
                                            "namespace_options.%s: mode TARGET is not supported", f[i].name);
                if (f[i].v != RUNTIME__V1__NAMESPACE_MODE__POD && f[i].v != RUNTIME__V1__NAMESPACE_MODE__CONTAINER &&
                    f[i].v != RUNTIME__V1__NAMESPACE_MODE__NODE)
                        return cc_error_set(ret_err, -EINVAL, "namespace_options.%s: unknown mode %d", f[i].name,
                                            (int)f[i].v);
        }
        m->pid = o->pid;
        m->ipc = o->ipc;
        m->net = o->network;
        return 0;
}

/* In a VM the network namespace is the VM's own and "host" means the VM;
 * on the host, NODE means the host's namespace (no entry). */
static int build_namespaces(const rt_spec_input *in, const ns_modes *m, Grpc__Linux *lx, cc_error **ret_err)
{
        bool host = in->host_mode;
        int r = add_ns(lx, "mount", NULL, ret_err);
        if (r >= 0 && !(host && m->pid == RUNTIME__V1__NAMESPACE_MODE__NODE))
                r = add_ns(lx, "pid", NULL, ret_err);
        /* IPC and UTS: a pod's containers share them. In a VM the pod's are
         * the VM's own (one VM per pod; the agent sets the pod's hostname),
         * so only ipc=CONTAINER gets a namespace of its own there. On the
         * host there is no pod-level IPC namespace to join yet: each
         * container gets its own unless the pod uses the host's. */
        bool own_ipc = host ? m->ipc != RUNTIME__V1__NAMESPACE_MODE__NODE
                            : m->ipc == RUNTIME__V1__NAMESPACE_MODE__CONTAINER;
        if (r >= 0 && own_ipc)
                r = add_ns(lx, "ipc", NULL, ret_err);
        if (r >= 0 && host && m->net != RUNTIME__V1__NAMESPACE_MODE__NODE)
                r = add_ns(lx, "uts", NULL, ret_err);
        if (r >= 0 && host && m->net != RUNTIME__V1__NAMESPACE_MODE__NODE) {
                if (!in->pod_netns || in->pod_netns[0] != '/' || strstr(in->pod_netns, ".."))
                        return cc_error_set(ret_err, -EINVAL, "pod network namespace path '%.200s' is not a clean absolute path",
                                            in->pod_netns ? in->pod_netns : "");
                r = add_ns(lx, "network", in->pod_netns, ret_err);
        }
        if (r >= 0 && !privileged(in))
                r = add_ns(lx, "cgroup", NULL, ret_err);
        return r;
}

int rt_spec_resources(const Runtime__V1__LinuxContainerResources *res, Grpc__LinuxResources **ret,
                      cc_error **ret_err)
{
        *ret = NULL;
        if (!res)
                return 0;
        const struct { const char *name; int64_t v, min; } nums[] = {
                { "cpu_period", res->cpu_period, 0 }, { "cpu_quota", res->cpu_quota, -1 },
                { "cpu_shares", res->cpu_shares, 0 }, { "memory_limit_in_bytes", res->memory_limit_in_bytes, 0 },
                { "memory_swap_limit_in_bytes", res->memory_swap_limit_in_bytes, -1 },
        };
        for (size_t i = 0; i < CC_ARRAY_SIZE(nums); i++)
                if (nums[i].v < nums[i].min)
                        return cc_error_set(ret_err, -EINVAL, "resources.%s %lld is negative", nums[i].name,
                                            (long long)nums[i].v);
        const char *sets[] = { res->cpuset_cpus, res->cpuset_mems };
        for (size_t i = 0; i < 2; i++)
                if (sets[i] && (strlen(sets[i]) > 1024 || sets[i][strspn(sets[i], "0123456789,-")]))
                        return cc_error_set(ret_err, -EINVAL, "resources.cpuset_%s '%.64s' is not a list of ranges",
                                            i ? "mems" : "cpus", sets[i]);
        Grpc__LinuxResources *r = NEW(Grpc__LinuxResources, grpc__linux_resources__init);
        if (!r)
                return OOM(ret_err);
        if (!(r->cpu = NEW(Grpc__LinuxCPU, grpc__linux_cpu__init))) {
                protobuf_c_message_free_unpacked(&r->base, NULL);
                return OOM(ret_err);
        }
        r->cpu->period = (uint64_t)res->cpu_period;
        r->cpu->quota = res->cpu_quota;
        r->cpu->shares = (uint64_t)res->cpu_shares;
        if (!(r->cpu->cpus = dup_str(res->cpuset_cpus)) || !(r->cpu->mems = dup_str(res->cpuset_mems)) ||
            (res->memory_limit_in_bytes > 0 && !(r->memory = NEW(Grpc__LinuxMemory, grpc__linux_memory__init)))) {
                protobuf_c_message_free_unpacked(&r->base, NULL);
                return OOM(ret_err);
        }
        if (r->memory) {
                r->memory->limit = res->memory_limit_in_bytes;
                /* memory+swap; equal to the limit = no swap (kubelet's default) */
                r->memory->swap = res->memory_swap_limit_in_bytes ? res->memory_swap_limit_in_bytes
                                                                  : res->memory_limit_in_bytes;
        }
        *ret = r;
        return 0;
}

static int build_resources(const rt_spec_input *in, Grpc__Linux *lx, cc_error **ret_err)
{
        return rt_spec_resources(in->ctr->linux ? in->ctr->linux->resources : NULL, &lx->resources, ret_err);
}

static int set_paths(char ***v, size_t *n, const char *what, char *const *req, size_t n_req,
                     const char *const *defs, size_t n_defs, cc_error **ret_err)
{
        for (size_t i = 0; i < (n_req ? n_req : n_defs); i++) {
                _cleanup_free_ char *p = NULL;
                char w[48];
                snprintf(w, sizeof(w), "%s[%zu]", what, i);
                int r = clean_abs_path(w, n_req ? req[i] : defs[i], &p, ret_err);
                if (r < 0)
                        return r;
                if (rt_spec_strv_push(v, n, p) < 0)
                        return OOM(ret_err);
        }
        return 0;
}

static bool has_prefix(const char *s, const char *p)
{
        return strncmp(s, p, strlen(p)) == 0;
}

static int build_sysctls(const rt_spec_input *in, const ns_modes *m, Grpc__Linux *lx, cc_error **ret_err)
{
        const Runtime__V1__LinuxPodSandboxConfig *pl = in->pod->linux;
        for (size_t i = 0; pl && i < pl->n_sysctls; i++) {
                const char *k = pl->sysctls[i]->key, *v = pl->sysctls[i]->value ? pl->sysctls[i]->value : "";
                if (!k || !*k || strlen(k) > 128 || strstr(k, "..") || k[0] == '/' || k[0] == '.' ||
                    k[strspn(k, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/")])
                        return cc_error_set(ret_err, -EINVAL, "sysctls: bad name '%.64s'", k ? k : "");
                if (strlen(v) > 4096 || strchr(v, '\n'))
                        return cc_error_set(ret_err, -EINVAL, "sysctls: bad value for '%.64s'", k);
                /* On the host, a namespaced sysctl of a namespace shared with
                 * the host would change the host. */
                bool net = has_prefix(k, "net.") || has_prefix(k, "net/");
                bool ipc = has_prefix(k, "kernel.shm") || has_prefix(k, "kernel.msg") || strcmp(k, "kernel.sem") == 0 ||
                           has_prefix(k, "fs.mqueue.") || has_prefix(k, "kernel/shm") || has_prefix(k, "kernel/msg") ||
                           strcmp(k, "kernel/sem") == 0 || has_prefix(k, "fs/mqueue/");
                if (in->host_mode && ((net && m->net == RUNTIME__V1__NAMESPACE_MODE__NODE) ||
                                      (ipc && m->ipc == RUNTIME__V1__NAMESPACE_MODE__NODE)))
                        return cc_error_set(ret_err, -EINVAL, "sysctls: '%.64s' would change the host's %s namespace",
                                            k, net ? "network" : "IPC");
                Grpc__Linux__SysctlEntry *e = NEW(Grpc__Linux__SysctlEntry, grpc__linux__sysctl_entry__init);
                if (!e || ptrv_push((void ***)&lx->sysctl, &lx->n_sysctl, e) < 0) {
                        free(e);
                        return OOM(ret_err);
                }
                if (!(e->key = strdup(k)) || !(e->value = dup_str(v)))
                        return OOM(ret_err);
        }
        return 0;
}

/* containerd: the container's SecurityProfile, else the deprecated path
 * string; neither = unconfined. Privileged: none. */
static int build_seccomp(const rt_spec_input *in, Grpc__Spec *s, cc_error **ret_err)
{
        const Runtime__V1__LinuxContainerSecurityContext *sc = sec_ctx(in);
        if (!sc || sc->privileged)
                return 0;
        const char *file = NULL;
        _cleanup_free_ char *def = NULL;
        const char *dir = in->seccomp_dir && *in->seccomp_dir ? in->seccomp_dir : COCOON_SHAREDIR "/seccomp";
        if (asprintf(&def, "%s/default.json", dir) < 0)
                return OOM(ret_err);
        if (sc->seccomp) {
                switch (sc->seccomp->profile_type) {
                case RUNTIME__V1__SECURITY_PROFILE__PROFILE_TYPE__RuntimeDefault:
                        file = def;
                        break;
                case RUNTIME__V1__SECURITY_PROFILE__PROFILE_TYPE__Unconfined:
                        return 0;
                case RUNTIME__V1__SECURITY_PROFILE__PROFILE_TYPE__Localhost:
                        file = sc->seccomp->localhost_ref;
                        if (!file || !*file)
                                return cc_error_set(ret_err, -EINVAL, "seccomp: Localhost profile without localhost_ref");
                        if (file[0] != '/' || strstr(file, ".."))
                                return cc_error_set(ret_err, -EINVAL,
                                                    "seccomp: localhost_ref '%.200s' is not a clean absolute path", file);
                        break;
                default:
                        return cc_error_set(ret_err, -EINVAL, "seccomp: unknown profile type %d",
                                            (int)sc->seccomp->profile_type);
                }
        } else {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
                const char *p = sc->seccomp_profile_path ? sc->seccomp_profile_path : "";
#pragma GCC diagnostic pop
                if (!*p || strcmp(p, "unconfined") == 0)
                        return 0;
                if (strcmp(p, "runtime/default") == 0 || strcmp(p, "docker/default") == 0)
                        file = def;
                else if (has_prefix(p, "localhost/")) {
                        file = p + strlen("localhost/");
                        if (file[0] != '/' || strstr(file, ".."))
                                return cc_error_set(ret_err, -EINVAL,
                                                    "seccomp_profile_path: '%.200s' is not a clean absolute path", file);
                } else
                        return cc_error_set(ret_err, -EINVAL, "seccomp_profile_path: unknown profile '%.200s'", p);
        }
        const Grpc__LinuxCapabilities *c = s->process->capabilities;
        return rt_spec_seccomp_convert(file, c->bounding, c->n_bounding, &s->linux->seccomp, ret_err);
}

static int build_linux(const rt_spec_input *in, const ns_modes *m, Grpc__Spec *s, cc_error **ret_err)
{
        Grpc__Linux *lx = s->linux;
        const Runtime__V1__LinuxContainerSecurityContext *sc = sec_ctx(in);
        int r;
        if ((r = build_namespaces(in, m, lx, ret_err)) < 0 || (r = build_resources(in, lx, ret_err)) < 0 ||
            (r = build_sysctls(in, m, lx, ret_err)) < 0 || (r = build_seccomp(in, s, ret_err)) < 0)
                return r;
        if (privileged(in))
                return 0;
        if ((r = set_paths(&lx->maskedpaths, &lx->n_maskedpaths, "masked_paths", sc ? sc->masked_paths : NULL,
                           sc ? sc->n_masked_paths : 0, default_masked, CC_ARRAY_SIZE(default_masked), ret_err)) < 0)
                return r;
        return set_paths(&lx->readonlypaths, &lx->n_readonlypaths, "readonly_paths", sc ? sc->readonly_paths : NULL,
                         sc ? sc->n_readonly_paths : 0, default_readonly, CC_ARRAY_SIZE(default_readonly), ret_err);
}

static int annotate(Grpc__Spec *s, const char *key, const char *value, cc_error **ret_err)
{
        Grpc__Spec__AnnotationsEntry *e = NEW(Grpc__Spec__AnnotationsEntry, grpc__spec__annotations_entry__init);
        if (!e || ptrv_push((void ***)&s->annotations, &s->n_annotations, e) < 0) {
                free(e);
                return OOM(ret_err);
        }
        if (!(e->key = strdup(key)) || !(e->value = dup_str(value)))
                return OOM(ret_err);
        return 0;
}

static int build_annotations(const rt_spec_input *in, Grpc__Spec *s, cc_error **ret_err)
{
        const Runtime__V1__PodSandboxMetadata *pm = in->pod->metadata;
        const Runtime__V1__ContainerMetadata *cm = in->ctr->metadata;
        const struct { const char *k, *v; } a[] = {
                { "io.kubernetes.cri.container-type", "container" },
                { "io.kubernetes.cri.sandbox-id", in->sandbox_id },
                { "io.kubernetes.cri.container-name", cm ? cm->name : NULL },
                { "io.kubernetes.cri.image-name", in->ctr->image ? in->ctr->image->image : NULL },
                { "io.kubernetes.cri.sandbox-name", pm ? pm->name : NULL },
                { "io.kubernetes.cri.sandbox-namespace", pm ? pm->namespace_ : NULL },
                { "io.kubernetes.cri.sandbox-uid", pm ? pm->uid : NULL },
        };
        for (size_t i = 0; i < CC_ARRAY_SIZE(a); i++) {
                int r = annotate(s, a[i].k, a[i].v, ret_err);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- entry points ------------------------------------------------------- */

static int check_input(const rt_spec_input *in, cc_error **ret_err)
{
        if (!in || !in->ctr || !in->pod)
                return cc_error_set(ret_err, -EINVAL, "no container or pod config");
        if (!in->sandbox_id || !*in->sandbox_id || !in->container_id || !*in->container_id)
                return cc_error_set(ret_err, -EINVAL, "no sandbox or container id");
        if (!in->root_path || !*in->root_path || strstr(in->root_path, ".."))
                return cc_error_set(ret_err, -EINVAL, "bad root path '%.200s'", in->root_path ? in->root_path : "");
        if (in->n_mounts != in->ctr->n_mounts || (in->n_mounts && !in->mounts))
                return cc_error_set(ret_err, -EINVAL, "%zu mount sources for %zu mounts", in->n_mounts,
                                    in->ctr->n_mounts);
        for (size_t i = 0; i < in->n_mounts; i++)
                if (in->mounts[i].cri && in->mounts[i].cri != in->ctr->mounts[i])
                        return cc_error_set(ret_err, -EINVAL, "mount source %zu is not for mounts[%zu]", i, i);
        if (in->ctr->n_mounts > 256 || in->ctr->n_devices > 256)
                return cc_error_set(ret_err, -EINVAL, "too many mounts or devices");
        const Runtime__V1__LinuxContainerSecurityContext *sc = sec_ctx(in);
        const Runtime__V1__LinuxPodSandboxConfig *pl = in->pod->linux;
        if (sc && sc->privileged && !(pl && pl->security_context && pl->security_context->privileged))
                return cc_error_set(ret_err, -EINVAL, "privileged: the pod sandbox is not privileged");
        if (in->pod->hostname && strlen(in->pod->hostname) > 64)
                return cc_error_set(ret_err, -EINVAL, "hostname longer than 64 bytes");
        return 0;
}

int rt_spec_build(const rt_spec_input *in, Grpc__Spec **ret, cc_error **ret_err)
{
        int r = check_input(in, ret_err);
        if (r < 0)
                return r;
        ns_modes m;
        if ((r = get_ns_modes(in, &m, ret_err)) < 0)
                return r;
        _cleanup_rt_spec_ Grpc__Spec *s = NEW(Grpc__Spec, grpc__spec__init);
        if (!s || !(s->version = strdup(OCI_VERSION)) || !(s->root = NEW(Grpc__Root, grpc__root__init)) ||
            !(s->linux = NEW(Grpc__Linux, grpc__linux__init)) || !(s->root->path = strdup(in->root_path)))
                return OOM(ret_err);
        const Runtime__V1__LinuxContainerSecurityContext *sc = sec_ctx(in);
        s->root->readonly = sc && sc->readonly_rootfs;

        bool host_net = in->host_mode && m.net == RUNTIME__V1__NAMESPACE_MODE__NODE;
        char hostbuf[HOST_NAME_MAX + 1] = "";
        const char *hostname = in->pod->hostname ? in->pod->hostname : "";
        if (!*hostname && host_net && gethostname(hostbuf, sizeof(hostbuf) - 1) == 0)
                hostname = hostbuf;
        if (!host_net && !(s->hostname = dup_str(hostname)))
                return OOM(ret_err);

        if ((r = build_process(in, hostname, s, ret_err)) < 0 ||
            (r = build_mounts(in, in->host_mode && m.ipc == RUNTIME__V1__NAMESPACE_MODE__NODE, s, ret_err)) < 0 ||
            (r = build_linux(in, &m, s, ret_err)) < 0 || (r = build_annotations(in, s, ret_err)) < 0)
                return r;
        *ret = TAKE_PTR(s);
        return 0;
}

void rt_spec_free(Grpc__Spec *s)
{
        if (s)
                protobuf_c_message_free_unpacked(&s->base, NULL);
}

int rt_spec_exec_process(const Grpc__Spec *spec, char *const *argv, size_t argc, bool tty,
                         Grpc__Process **ret, cc_error **ret_err)
{
        if (!spec || !spec->process)
                return cc_error_set(ret_err, -EINVAL, "the container's spec has no process");
        if (argc == 0 || !argv || !argv[0] || !argv[0][0])
                return cc_error_set(ret_err, -EINVAL, "exec: no command");
        if (argc > 65536)
                return cc_error_set(ret_err, -EINVAL, "exec: too many arguments");
        /* A deep copy through the wire format: everything of the
         * container's process (env, cwd, user, capabilities, rlimits,
         * no_new_privs, oom_score_adj) but its args and terminal. */
        size_t len = protobuf_c_message_get_packed_size(&spec->process->base);
        _cleanup_free_ uint8_t *buf = malloc(len ? len : 1);
        if (!buf)
                return OOM(ret_err);
        protobuf_c_message_pack(&spec->process->base, buf);
        Grpc__Process *p = grpc__process__unpack(NULL, len, buf);
        if (!p)
                return OOM(ret_err);
        for (size_t i = 0; i < p->n_args; i++)
                free(p->args[i]);
        free(p->args);
        p->args = NULL;
        p->n_args = 0;
        for (size_t i = 0; i < argc; i++)
                if (!argv[i] || rt_spec_strv_push(&p->args, &p->n_args, argv[i]) < 0) {
                        rt_spec_process_free(p);
                        return argv[i] ? OOM(ret_err) : cc_error_set(ret_err, -EINVAL, "exec: argv[%zu] is NULL", i);
                }
        p->terminal = tty;
        if (p->consolesize) {
                protobuf_c_message_free_unpacked(&p->consolesize->base, NULL);
                p->consolesize = NULL;
        }
        *ret = p;
        return 0;
}

void rt_spec_process_free(Grpc__Process *p)
{
        if (p)
                protobuf_c_message_free_unpacked(&p->base, NULL);
}

int rt_spec_pack(const Grpc__Spec *s, uint8_t **ret, size_t *ret_len, cc_error **ret_err)
{
        if (!s)
                return cc_error_set(ret_err, -EINVAL, "no spec");
        size_t len = protobuf_c_message_get_packed_size(&s->base);
        uint8_t *buf = malloc(len ? len : 1);
        if (!buf)
                return OOM(ret_err);
        if (protobuf_c_message_pack(&s->base, buf) != len) {
                free(buf);
                return cc_error_set(ret_err, -EIO, "pack spec: size changed");
        }
        *ret = buf;
        *ret_len = len;
        return 0;
}

int rt_spec_unpack(const uint8_t *buf, size_t len, Grpc__Spec **ret, cc_error **ret_err)
{
        if (!buf && len)
                return cc_error_set(ret_err, -EINVAL, "no spec bytes");
        Grpc__Spec *s = grpc__spec__unpack(NULL, len, buf);
        if (!s)
                return cc_error_set(ret_err, -EINVAL, "stored spec (%zu bytes) does not decode", len);
        if (!s->process || !s->root) {
                rt_spec_free(s);
                return cc_error_set(ret_err, -EINVAL, "stored spec has no process or root");
        }
        *ret = s;
        return 0;
}
