/* SPDX-License-Identifier: Apache-2.0 */
/* Table-driven configuration: one descriptor row per key; see config.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf, open_memstream */
#endif
#include "common/config.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/toml.h"

#define MAX_DROPINS 256

static void *xrealloc(void *p, size_t n)
{
        p = realloc(p, n ? n : 1);
        if (!p)
                abort();
        return p;
}

static char *xstrdup(const char *s)
{
        char *r = strdup(s);
        if (!r)
                abort();
        return r;
}

static char **strv_dup(const char *const *v)
{
        size_t n = 0;
        while (v && v[n])
                n++;
        char **r = xrealloc(NULL, (n + 1) * sizeof(char *));
        for (size_t i = 0; i < n; i++)
                r[i] = xstrdup(v[i]);
        r[n] = NULL;
        return r;
}

/* ---- value validators: NULL if fine, else the reason ----------------------- */

typedef const char *(*check_fn)(const char *s);

static const char *check_abs_path(const char *s)
{
        if (s[0] != '/')
                return "must be an absolute path";
        if (strlen(s) >= 4096)
                return "path too long";
        for (const char *p = s; (p = strstr(p, "/..")); p += 3)
                if (p[3] == '/' || p[3] == 0)
                        return "must not contain '..' components";
        return NULL;
}

static const char *check_abs_path_or_empty(const char *s)
{
        return s[0] ? check_abs_path(s) : NULL;
}

static const char *check_listen(const char *s)
{
        if (strncmp(s, "unix://", 7) != 0)
                return "must be unix:///ABSOLUTE/PATH";
        const char *r = check_abs_path(s + 7);
        if (r)
                return "must be unix:///ABSOLUTE/PATH";
        if (strlen(s + 7) >= 108) /* sizeof(sun_path) */
                return "socket path too long (max 107 bytes)";
        return NULL;
}

/* Every pod's sockets live under [paths] state: the longest is
 * <state>/sandboxes/<64-char pod id>/virtiofsd.sock (agent.sock, qmp.sock
 * are shorter), and a unix socket path must fit in sun_path (108 bytes with
 * its NUL). Checked here so cocoond refuses to start, rather than every
 * RunPodSandbox failing late with "socket path too long". */
#define SUN_PATH_SIZE 108
#define POD_SOCKET_SUFFIX_LEN (sizeof("/sandboxes/") - 1 + 64 + sizeof("/virtiofsd.sock") - 1)
#define STATE_PATH_MAX (SUN_PATH_SIZE - 1 - POD_SOCKET_SUFFIX_LEN)
_Static_assert(STATE_PATH_MAX == 17, "update the message of check_state_path");

static const char *check_state_path(const char *s)
{
        const char *r = check_abs_path(s);
        if (r)
                return r;
        if (strlen(s) > STATE_PATH_MAX)
                return "too long: pod sockets (STATE/sandboxes/<64-char id>/virtiofsd.sock) must fit in "
                       "the 107 bytes of a unix socket path, so at most 17 bytes";
        return NULL;
}

static const char *check_socket_mode(const char *s)
{
        size_t n = strlen(s);
        if (n < 3 || n > 4 || strspn(s, "01234567") != n || strtoul(s, NULL, 8) > 0777)
                return "must be an octal mode between 000 and 0777, e.g. \"0660\"";
        return NULL;
}

static const char *check_group(const char *s)
{
        size_t n = strlen(s);
        if (n == 0)
                return NULL;
        if (n > 32 || s[0] == '-' ||
            strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") != n)
                return "must be a group name or numeric gid";
        return NULL;
}

static bool valid_hostname(const char *s, size_t n)
{
        if (n == 0 || n > 253)
                return false;
        size_t label = 0;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (c == '.') {
                        if (label == 0 || s[i - 1] == '-')
                                return false;
                        label = 0;
                        continue;
                }
                bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
                if (!alnum && !(c == '-' && label > 0))
                        return false;
                if (++label > 63)
                        return false;
        }
        return label > 0 && s[n - 1] != '-';
}

static bool valid_port(const char *s, size_t n)
{
        if (n == 0 || n > 5 || strspn(s, "0123456789") < n)
                return false;
        unsigned long p = 0;
        for (size_t i = 0; i < n; i++)
                p = p * 10 + (unsigned long)(s[i] - '0');
        return p >= 1 && p <= 65535;
}

/* HOST[:PORT] with HOST a DNS name, an IPv4 address or [IPv6]. */
static bool valid_host_port(const char *s, size_t n)
{
        const char *hend;
        if (n > 0 && s[0] == '[') {
                const char *close = memchr(s, ']', n);
                if (!close || (size_t)(close - s) - 1 >= INET6_ADDRSTRLEN)
                        return false;
                char addr[INET6_ADDRSTRLEN];
                struct in6_addr a6;
                memcpy(addr, s + 1, (size_t)(close - s) - 1);
                addr[close - s - 1] = 0;
                if (inet_pton(AF_INET6, addr, &a6) != 1)
                        return false;
                hend = close + 1;
        } else {
                hend = memchr(s, ':', n);
                if (!hend)
                        hend = s + n;
                if (!valid_hostname(s, (size_t)(hend - s)))
                        return false;
        }
        size_t rest = n - (size_t)(hend - s);
        if (rest == 0)
                return true;
        return hend[0] == ':' && valid_port(hend + 1, rest - 1);
}

static const char *check_registry_host(const char *s)
{
        if (!valid_host_port(s, strlen(s)))
                return "must be HOST or HOST:PORT (no scheme, no path)";
        return NULL;
}

static const char *check_url(const char *s)
{
        const char *p;
        if (strncmp(s, "https://", 8) == 0)
                p = s + 8;
        else if (strncmp(s, "http://", 7) == 0)
                p = s + 7;
        else
                return "must be an http:// or https:// URL";
        if (strlen(s) > 2048)
                return "URL too long";
        const char *slash = strchr(p, '/');
        size_t hn = slash ? (size_t)(slash - p) : strlen(p);
        if (!valid_host_port(p, hn))
                return "URL must have a valid HOST[:PORT]";
        for (const char *q = p + hn; *q; q++)
                if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f)
                        return "URL must not contain spaces or control characters";
        return NULL;
}

static const char *check_handler_name(const char *s)
{
        size_t n = strlen(s);
        if (n == 0 || n > 63 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') ||
                                  (s[0] >= '0' && s[0] <= '9')) ||
            strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") != n)
                return "handler names are 1-63 characters [A-Za-z0-9._-] starting with a letter or digit";
        return NULL;
}

static const char *check_handler_or_empty(const char *s)
{
        return s[0] ? check_handler_name(s) : NULL;
}

static const char *check_ip(const char *s)
{
        unsigned char a[sizeof(struct in6_addr)];
        if (inet_pton(AF_INET, s, a) != 1 && inet_pton(AF_INET6, s, a) != 1)
                return "must be an IPv4 or IPv6 address";
        return NULL;
}

static const char *check_machine(const char *s)
{
        size_t n = strlen(s);
        if (n == 0 || n > 256 ||
            strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.,=-") != n)
                return "must be a QEMU machine type (characters [A-Za-z0-9_.,=-])";
        return NULL;
}

static const char *check_kernel_params(const char *s)
{
        if (strlen(s) > 2048)
                return "too long (max 2048 bytes)";
        for (; *s; s++)
                if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
                        return "must be printable ASCII";
        return NULL;
}

/* ---- the schema ------------------------------------------------------------- */

typedef enum key_type {
        T_STRING,
        T_INT,
        T_BOOL,
        T_ENUM, /* a string in the file, an int-sized C enum in the struct */
        T_STRV,
} key_type;

typedef struct enum_choice {
        const char *name;
        int value;
} enum_choice;

typedef struct key_desc {
        const char *key; /* dotted; relative to the dynamic table for dyn keys */
        key_type type;
        size_t offset;
        const char *def_s;
        int64_t def_i; /* T_INT, T_BOOL, T_ENUM */
        const char *const *def_v;
        int64_t min, max; /* T_INT: value range; T_STRV: number of items */
        const enum_choice *choices; /* NULL-name terminated */
        check_fn check;             /* T_STRING and each T_STRV item */
        const char *doc;
        const char *schema; /* dyn keys: full name with '*', for cc_config_schema_key() */
} key_desc;

#define F(field) offsetof(cc_config, field)
/* Extra designated initializers may follow the doc string. */
#define STR(k, field, def, chk, d, ...) \
        { .key = k, .type = T_STRING, .offset = F(field), .def_s = def, .check = chk, .doc = d, __VA_ARGS__ }
#define INT(k, field, def, lo, hi, d, ...)                                                               \
        { .key = k, .type = T_INT, .offset = F(field), .def_i = def, .min = lo, .max = hi, .doc = d, \
          __VA_ARGS__ }
#define BOOL(k, field, def, d, ...) \
        { .key = k, .type = T_BOOL, .offset = F(field), .def_i = def, .doc = d, __VA_ARGS__ }
#define ENUM(k, field, def, ch, d, ...) \
        { .key = k, .type = T_ENUM, .offset = F(field), .def_i = def, .choices = ch, .doc = d, __VA_ARGS__ }
#define STRV(k, field, def, lo, hi, chk, d, ...)                                                          \
        { .key = k, .type = T_STRV, .offset = F(field), .def_v = def, .min = lo, .max = hi, .check = chk, \
          .doc = d, __VA_ARGS__ }

static const enum_choice log_levels[] = {
        {"error", CC_LOG_ERROR}, {"warn", CC_LOG_WARN}, {"info", CC_LOG_INFO}, {"debug", CC_LOG_DEBUG}, {NULL, 0},
};
static const enum_choice accels[] = {
        {"auto", CC_CONFIG_ACCEL_AUTO}, {"kvm", CC_CONFIG_ACCEL_KVM}, {"tcg", CC_CONFIG_ACCEL_TCG}, {NULL, 0},
};
static const enum_choice modes[] = {
        {"vm", CC_CONFIG_MODE_VM}, {"host", CC_CONFIG_MODE_HOST}, {NULL, 0},
};
static const char *const default_bin_dirs[] = {"/opt/cni/bin", "/usr/lib/cni", NULL};
static const char *const empty_strv[] = {NULL};

#define MIB (INT64_C(1) << 20)
#define GIB (INT64_C(1) << 30)

static const key_desc keys[] = {
        STR("server.listen", server.listen, "unix:///run/cocoon/cocoon.sock", check_listen,
            "CRI gRPC endpoint, unix:///ABSOLUTE/PATH"),
        STR("server.socket_mode", server.socket_mode, "0660", check_socket_mode,
            "permissions of the CRI socket (octal string)"),
        STR("server.socket_group", server.socket_group, "", check_group,
            "group owning the CRI socket; empty keeps root's group"),
        INT("server.workers", server.workers, 16, 1, 1024, "threads serving CRI requests"),
        INT("server.max_recv_message_size", server.max_recv_message_size, 16 * MIB, 4096, GIB,
            "largest CRI request accepted, in bytes"),
        INT("server.max_send_message_size", server.max_send_message_size, 16 * MIB, 4096, GIB,
            "largest CRI reply sent, in bytes"),
        INT("server.shutdown_timeout", server.shutdown_timeout, 10, 0, 3600,
            "seconds to let in-flight requests finish on shutdown"),
        BOOL("server.enable_v1alpha2", server.enable_v1alpha2, true,
             "also serve the deprecated runtime.v1alpha2 CRI API"),

        ENUM("log.level", log.level, CC_LOG_INFO, log_levels, "error, warn, info or debug"),

        STR("paths.root", paths.root, "/var/lib/cocoon", check_abs_path, "persistent data (images, pod state)"),
        STR("paths.state", paths.state, "/run/cocoon", check_state_path,
            "runtime state, lost on reboot (at most 17 bytes: pod sockets live under it)"),

        INT("image.max_concurrent_downloads", image.max_concurrent_downloads, 3, 1, 64,
            "layers downloaded in parallel per pull"),
        INT("image.pull_timeout", image.pull_timeout, 0, 0, 86400, "seconds before a pull is abandoned; 0 = none"),
        INT("image.max_manifest_size", image.max_manifest_size, 4 * MIB, 4096, 64 * MIB,
            "largest manifest, index or config blob accepted, in bytes"),
        STR("image.default_registry", image.default_registry, "docker.io", check_registry_host,
            "registry for image names without one, HOST[:PORT]"),

        STR("runtime.default_handler", runtime.default_handler, "", check_handler_or_empty,
            "handler used when the CRI request names none; empty = VM mode"),
        BOOL("runtime.allow_host_mode", runtime.allow_host_mode, true,
             "allow handlers with mode = \"host\" (containers without a VM)"),
        STR("runtime.host_agent", runtime.host_agent, COCOON_LIBEXECDIR "/cocoon-agent", check_abs_path,
            "cocoon-agent binary started on the host for each host-mode pod"),
        STR("runtime.seccomp_dir", runtime.seccomp_dir, COCOON_SHAREDIR "/seccomp", check_abs_path,
            "directory holding default.json, the RuntimeDefault seccomp profile"),

        STR("vm.qemu", vm.qemu, "/usr/bin/qemu-system-x86_64", check_abs_path, "QEMU binary"),
        STR("vm.virtiofsd", vm.virtiofsd, "/usr/lib/qemu/virtiofsd", check_abs_path, "virtiofsd binary"),
        STR("vm.kernel", vm.kernel, COCOON_SHAREDIR "/vmlinux", check_abs_path, "guest kernel"),
        STR("vm.initrd", vm.initrd, COCOON_SHAREDIR "/initrd.img", check_abs_path,
            "guest initrd holding cocoon-agent"),
        ENUM("vm.accel", vm.accel, CC_CONFIG_ACCEL_AUTO, accels, "auto (KVM if usable, else TCG), kvm or tcg"),
        STR("vm.machine", vm.machine, "microvm", check_machine, "QEMU machine type"),
        INT("vm.default_vcpus", vm.default_vcpus, 1, 1, 255, "vCPUs of a pod without CPU limits"),
        INT("vm.default_memory_mib", vm.default_memory_mib, 256, 64, 1048576,
            "memory of a pod without memory limits, MiB"),
        INT("vm.max_vcpus", vm.max_vcpus, 8, 1, 255, "upper bound on vCPUs per pod"),
        INT("vm.max_memory_mib", vm.max_memory_mib, 16384, 64, 1048576, "upper bound on memory per pod, MiB"),
        INT("vm.memory_overhead_mib", vm.memory_overhead_mib, 64, 0, 65536,
            "memory added to the pod's limits for the guest kernel and agent, MiB"),
        INT("vm.tcg_tb_size_mib", vm.tcg_tb_size_mib, 64, 0, 4096,
            "TCG translation cache size, MiB; 0 = QEMU's default"),
        STR("vm.kernel_params", vm.kernel_params, "", check_kernel_params,
            "extra guest kernel command line parameters"),
        INT("vm.agent_timeout", vm.agent_timeout, 30, 1, 3600, "seconds to wait for the guest agent after boot"),
        BOOL("vm.console_log", vm.console_log, true, "keep the guest console in a log file per pod"),
        INT("vm.pool_size", vm.pool_size, 0, 0, 64,
            "VMs booted ahead of RunPodSandbox (default size, one NIC); 0 = none"),
        BOOL("vm.template", vm.template_start, true,
             "start pods of the default size (one NIC, no vsock) from a booted template VM instead of booting"),

        STR("cni.conf_dir", cni.conf_dir, "/etc/cni/net.d", check_abs_path, "CNI network configurations"),
        STRV("cni.bin_dirs", cni.bin_dirs, default_bin_dirs, 1, 64, check_abs_path,
             "directories searched for CNI plugins, in order"),
        STR("cni.netns_dir", cni.netns_dir, "/run/netns", check_abs_path, "where pod network namespaces are bound"),
        INT("cni.plugin_timeout", cni.plugin_timeout, 60, 1, 3600, "seconds before a CNI plugin is killed"),
        STR("cni.cache_dir", cni.cache_dir, "/var/lib/cocoon/cni", check_abs_path, "CNI result cache"),

        STR("streaming.address", streaming.address, "127.0.0.1", check_ip,
            "address of the exec/attach/port-forward server"),
        INT("streaming.port", streaming.port, 0, 0, 65535, "its port; 0 = pick a free one"),
        INT("streaming.token_ttl", streaming.token_ttl, 30, 1, 86400,
            "seconds a streaming URL stays valid before first use"),
        INT("streaming.idle_timeout", streaming.idle_timeout, 14400, 0, 604800,
            "seconds before an idle stream is closed; 0 = none"),
};

#undef F
#define F(field) offsetof(cc_config_registry, field)
static const key_desc registry_keys[] = {
        STRV("mirrors", mirrors, empty_strv, 0, 16, check_url, "mirror URLs tried in order before the registry",
             .schema = "image.registries.*.mirrors"),
        BOOL("insecure_skip_verify", insecure_skip_verify, false, "do not verify the registry's TLS certificate",
             .schema = "image.registries.*.insecure_skip_verify"),
        BOOL("plain_http", plain_http, false, "use HTTP instead of HTTPS",
             .schema = "image.registries.*.plain_http"),
        STR("ca_file", ca_file, "", check_abs_path_or_empty,
            "PEM CA certificates trusted for this registry, its mirrors and token realm",
            .schema = "image.registries.*.ca_file"),
};
#undef F
#define F(field) offsetof(cc_config_handler, field)
static const key_desc handler_keys[] = {
        ENUM("mode", mode, CC_CONFIG_MODE_VM, modes, "vm (one VM per pod) or host (no VM)",
             .schema = "runtime.handlers.*.mode"),
};
#undef F

/* A table of tables keyed by a free name, stored as a growing C array. */
typedef struct dyn_desc {
        const char *prefix;
        size_t items_offset; /* T *items */
        size_t n_offset;     /* size_t n */
        size_t elem_size;
        size_t name_offset; /* char *name inside T */
        check_fn check_name;
        const key_desc *keys;
        size_t n_keys;
        size_t max_items;
} dyn_desc;

static const dyn_desc dyns[] = {
        {
                .prefix = "image.registries",
                .items_offset = offsetof(cc_config, image.registries),
                .n_offset = offsetof(cc_config, image.n_registries),
                .elem_size = sizeof(cc_config_registry),
                .name_offset = offsetof(cc_config_registry, host),
                .check_name = check_registry_host,
                .keys = registry_keys,
                .n_keys = CC_ARRAY_SIZE(registry_keys),
                .max_items = 256,
        },
        {
                .prefix = "runtime.handlers",
                .items_offset = offsetof(cc_config, runtime.handlers),
                .n_offset = offsetof(cc_config, runtime.n_handlers),
                .elem_size = sizeof(cc_config_handler),
                .name_offset = offsetof(cc_config_handler, name),
                .check_name = check_handler_name,
                .keys = handler_keys,
                .n_keys = CC_ARRAY_SIZE(handler_keys),
                .max_items = 256,
        },
};

/* ---- field access ------------------------------------------------------------ */

static void *field(void *base, size_t off) { return (char *)base + off; }
static const void *cfield(const void *base, size_t off) { return (const char *)base + off; }

static char *get_str(const void *base, size_t off) { return *(char *const *)cfield(base, off); }
static void set_str(void *base, size_t off, const char *s)
{
        char **p = field(base, off);
        free(*p);
        *p = xstrdup(s);
}

static void *dyn_items(const cc_config *cfg, const dyn_desc *d)
{
        void *items;
        memcpy(&items, cfield(cfg, d->items_offset), sizeof(items));
        return items;
}

static size_t *dyn_count(cc_config *cfg, const dyn_desc *d) { return field(cfg, d->n_offset); }
static size_t dyn_n(const cc_config *cfg, const dyn_desc *d) { return *(const size_t *)cfield(cfg, d->n_offset); }
static void *dyn_elem(const cc_config *cfg, const dyn_desc *d, size_t i)
{
        return (char *)dyn_items(cfg, d) + i * d->elem_size;
}

static void key_set_default(void *base, const key_desc *k)
{
        switch (k->type) {
        case T_STRING:
                set_str(base, k->offset, k->def_s);
                break;
        case T_INT:
                *(int64_t *)field(base, k->offset) = k->def_i;
                break;
        case T_BOOL:
                *(bool *)field(base, k->offset) = k->def_i != 0;
                break;
        case T_ENUM:
                *(int *)field(base, k->offset) = (int)k->def_i;
                break;
        case T_STRV: {
                char ***p = field(base, k->offset);
                cc_strv_free(*p);
                *p = strv_dup(k->def_v);
                break;
        }
        }
}

static void key_free(void *base, const key_desc *k)
{
        if (k->type == T_STRING) {
                char **p = field(base, k->offset);
                free(*p);
                *p = NULL;
        } else if (k->type == T_STRV) {
                char ***p = field(base, k->offset);
                cc_strv_free(*p);
                *p = NULL;
        }
}

static void *dyn_find(const cc_config *cfg, const dyn_desc *d, const char *name)
{
        for (size_t i = 0; i < dyn_n(cfg, d); i++) {
                void *e = dyn_elem(cfg, d, i);
                if (strcmp(get_str(e, d->name_offset), name) == 0)
                        return e;
        }
        return NULL;
}

static void *dyn_add(cc_config *cfg, const dyn_desc *d, const char *name)
{
        size_t n = dyn_n(cfg, d);
        void *items = xrealloc(dyn_items(cfg, d), (n + 1) * d->elem_size);
        memcpy(field(cfg, d->items_offset), &items, sizeof(items));
        void *e = (char *)items + n * d->elem_size;
        memset(e, 0, d->elem_size);
        set_str(e, d->name_offset, name);
        for (size_t i = 0; i < d->n_keys; i++)
                key_set_default(e, &d->keys[i]);
        *dyn_count(cfg, d) = n + 1;
        return e;
}

static const char *enum_name(const enum_choice *c, int value)
{
        for (; c->name; c++)
                if (c->value == value)
                        return c->name;
        return "?";
}

const char *cc_config_accel_to_string(cc_config_accel a) { return enum_name(accels, (int)a); }
const char *cc_config_mode_to_string(cc_config_mode m) { return enum_name(modes, (int)m); }

const cc_config_registry *cc_config_find_registry(const cc_config *cfg, const char *host)
{
        return dyn_find(cfg, &dyns[0], host);
}

const cc_config_handler *cc_config_find_handler(const cc_config *cfg, const char *name)
{
        return dyn_find(cfg, &dyns[1], name);
}

static void derive(cc_config *cfg)
{
        cfg->server.socket_mode_bits = (mode_t)strtoul(cfg->server.socket_mode, NULL, 8);
}

cc_config *cc_config_new_default(void)
{
        cc_config *cfg = calloc(1, sizeof(*cfg));
        if (!cfg)
                abort();
        for (size_t i = 0; i < CC_ARRAY_SIZE(keys); i++)
                key_set_default(cfg, &keys[i]);
        derive(cfg);
        return cfg;
}

void cc_config_free(cc_config *cfg)
{
        if (!cfg)
                return;
        for (size_t i = 0; i < CC_ARRAY_SIZE(keys); i++)
                key_free(cfg, &keys[i]);
        for (size_t d = 0; d < CC_ARRAY_SIZE(dyns); d++) {
                for (size_t i = 0; i < dyn_n(cfg, &dyns[d]); i++) {
                        void *e = dyn_elem(cfg, &dyns[d], i);
                        char **name = field(e, dyns[d].name_offset);
                        free(*name);
                        for (size_t k = 0; k < dyns[d].n_keys; k++)
                                key_free(e, &dyns[d].keys[k]);
                }
                free(dyn_items(cfg, &dyns[d]));
        }
        free(cfg);
}

bool cc_config_schema_key(size_t i, const char **ret_key, const char **ret_doc)
{
        if (i < CC_ARRAY_SIZE(keys)) {
                *ret_key = keys[i].key;
                *ret_doc = keys[i].doc;
                return true;
        }
        i -= CC_ARRAY_SIZE(keys);
        for (size_t d = 0; d < CC_ARRAY_SIZE(dyns); d++) {
                if (i < dyns[d].n_keys) {
                        *ret_key = dyns[d].keys[i].schema;
                        *ret_doc = dyns[d].keys[i].doc;
                        return true;
                }
                i -= dyns[d].n_keys;
        }
        return false;
}

/* ---- loading ----------------------------------------------------------------- */

typedef struct load_ctx {
        const cc_config *view; /* the configuration being overlaid */
        cc_config *cfg;        /* NULL: validate only; else == view, written */
        const char *path;
        cc_error **ret_err;
} load_ctx;

static char *join_key(const char *prefix, const char *key)
{
        char *s = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&s, &len);
        if (!f)
                abort();
        if (prefix && *prefix)
                fprintf(f, "%s.", prefix);
        cc_toml_write_key(f, key);
        if (fclose(f) != 0 || !s)
                abort();
        return s;
}

static int __attribute__((format(printf, 4, 5)))
lerr(load_ctx *c, unsigned line, unsigned col, const char *fmt, ...)
{
        _cleanup_free_ char *reason = NULL;
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(&reason, fmt, ap) < 0)
                reason = NULL;
        va_end(ap);
        return cc_error_set(c->ret_err, -EINVAL, "%s:%u:%u: %s", c->path, line, col, reason ? reason : "error");
}

static const char *an(cc_toml_type t)
{
        return t == CC_TOML_INTEGER || t == CC_TOML_ARRAY ? "an" : "a";
}

static int type_error(load_ctx *c, const char *full, const cc_toml_value *v, const char *want)
{
        return lerr(c, v->line, v->column, "%s: expected %s, got %s %s", full, want, an(v->type),
                    cc_toml_type_name(v->type));
}

/* Checks one value against its descriptor; stores it into base if base. */
static int set_value(load_ctx *c, const key_desc *k, void *base, const char *full, const cc_toml_value *v)
{
        switch (k->type) {
        case T_STRING: {
                if (v->type != CC_TOML_STRING)
                        return type_error(c, full, v, "a string");
                const char *why = k->check ? k->check(v->string) : NULL;
                if (why)
                        return lerr(c, v->line, v->column, "%s: invalid value \"%s\": %s", full, v->string, why);
                if (base)
                        set_str(base, k->offset, v->string);
                return 0;
        }
        case T_INT:
                if (v->type != CC_TOML_INTEGER)
                        return type_error(c, full, v, "an integer");
                if (v->integer < k->min || v->integer > k->max)
                        return lerr(c, v->line, v->column, "%s: %" PRId64 " is out of range %" PRId64 "..%" PRId64,
                                    full, v->integer, k->min, k->max);
                if (base)
                        *(int64_t *)field(base, k->offset) = v->integer;
                return 0;
        case T_BOOL:
                if (v->type != CC_TOML_BOOLEAN)
                        return type_error(c, full, v, "a boolean");
                if (base)
                        *(bool *)field(base, k->offset) = v->boolean;
                return 0;
        case T_ENUM: {
                if (v->type != CC_TOML_STRING)
                        return type_error(c, full, v, "a string");
                for (const enum_choice *ch = k->choices; ch->name; ch++)
                        if (strcmp(ch->name, v->string) == 0) {
                                if (base)
                                        *(int *)field(base, k->offset) = ch->value;
                                return 0;
                        }
                _cleanup_free_ char *list = NULL;
                size_t len = 0;
                FILE *f = open_memstream(&list, &len);
                if (!f)
                        abort();
                for (const enum_choice *ch = k->choices; ch->name; ch++)
                        fprintf(f, "%s\"%s\"", ch == k->choices ? "" : ch[1].name ? ", " : " or ", ch->name);
                if (fclose(f) != 0)
                        abort();
                return lerr(c, v->line, v->column, "%s: invalid value \"%s\": must be %s", full, v->string, list);
        }
        case T_STRV: {
                if (v->type != CC_TOML_ARRAY)
                        return type_error(c, full, v, "an array of strings");
                if ((int64_t)v->array.n < k->min || (int64_t)v->array.n > k->max)
                        return lerr(c, v->line, v->column, "%s: needs %" PRId64 " to %" PRId64 " items, got %zu",
                                    full, k->min, k->max, v->array.n);
                for (size_t i = 0; i < v->array.n; i++) {
                        const cc_toml_value *it = v->array.items[i];
                        if (it->type != CC_TOML_STRING)
                                return lerr(c, it->line, it->column, "%s: expected an array of strings, got %s %s item",
                                            full, an(it->type), cc_toml_type_name(it->type));
                        const char *why = k->check ? k->check(it->string) : NULL;
                        if (why)
                                return lerr(c, it->line, it->column, "%s: invalid item \"%s\": %s", full, it->string,
                                            why);
                }
                if (base) {
                        char ***p = field(base, k->offset);
                        cc_strv_free(*p);
                        *p = xrealloc(NULL, (v->array.n + 1) * sizeof(char *));
                        for (size_t i = 0; i < v->array.n; i++)
                                (*p)[i] = xstrdup(v->array.items[i]->string);
                        (*p)[v->array.n] = NULL;
                }
                return 0;
        }
        }
        return -EINVAL;
}

static const key_desc *find_key(const key_desc *ks, size_t n, const char *full)
{
        for (size_t i = 0; i < n; i++)
                if (strcmp(ks[i].key, full) == 0)
                        return &ks[i];
        return NULL;
}

/* Is full a proper prefix (ending at a '.') of a static key or dyn prefix? */
static bool is_table_prefix(const char *full)
{
        size_t n = strlen(full);
        for (size_t i = 0; i < CC_ARRAY_SIZE(keys); i++)
                if (strncmp(keys[i].key, full, n) == 0 && keys[i].key[n] == '.')
                        return true;
        for (size_t i = 0; i < CC_ARRAY_SIZE(dyns); i++)
                if (strncmp(dyns[i].prefix, full, n) == 0 && dyns[i].prefix[n] == '.')
                        return true;
        return false;
}

static int load_dyn(load_ctx *c, const dyn_desc *d, const char *full, const cc_toml_value *t)
{
        if (t->type != CC_TOML_TABLE)
                return type_error(c, full, t, "a table");
        size_t n_new = 0;
        for (size_t i = 0; i < t->table.n; i++) {
                const cc_toml_entry *e = &t->table.entries[i];
                _cleanup_free_ char *efull = join_key(full, e->key);
                if (e->value->type != CC_TOML_TABLE)
                        return type_error(c, efull, e->value, "a table");
                const char *why = d->check_name(e->key);
                if (why)
                        return lerr(c, e->line, e->column, "%s: invalid name \"%s\": %s", efull, e->key, why);
                void *elem = dyn_find(c->view, d, e->key);
                if (!elem && ++n_new + dyn_n(c->view, d) > d->max_items)
                        return lerr(c, e->line, e->column, "%s: too many entries (limit %zu)", full, d->max_items);
                if (c->cfg && !elem)
                        elem = dyn_add(c->cfg, d, e->key);
                if (!c->cfg)
                        elem = NULL;
                const cc_toml_value *et = e->value;
                for (size_t j = 0; j < et->table.n; j++) {
                        const cc_toml_entry *ke = &et->table.entries[j];
                        _cleanup_free_ char *kname = join_key(NULL, ke->key);
                        _cleanup_free_ char *kfull = join_key(efull, ke->key);
                        const key_desc *k = find_key(d->keys, d->n_keys, kname);
                        if (!k)
                                return lerr(c, ke->line, ke->column, "unknown key '%s'", kfull);
                        int r = set_value(c, k, elem, kfull, ke->value);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

static int load_table(load_ctx *c, const char *prefix, const cc_toml_value *t)
{
        for (size_t i = 0; i < t->table.n; i++) {
                const cc_toml_entry *e = &t->table.entries[i];
                _cleanup_free_ char *full = join_key(prefix, e->key);
                const key_desc *k = find_key(keys, CC_ARRAY_SIZE(keys), full);
                int r;
                if (k) {
                        r = set_value(c, k, c->cfg, full, e->value);
                } else {
                        const dyn_desc *d = NULL;
                        for (size_t j = 0; j < CC_ARRAY_SIZE(dyns); j++)
                                if (strcmp(dyns[j].prefix, full) == 0)
                                        d = &dyns[j];
                        if (d)
                                r = load_dyn(c, d, full, e->value);
                        else if (!is_table_prefix(full))
                                r = lerr(c, e->line, e->column, "unknown key '%s'", full);
                        else if (e->value->type != CC_TOML_TABLE)
                                r = type_error(c, full, e->value, "a table");
                        else
                                r = load_table(c, full, e->value);
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

int cc_config_load_file(cc_config *cfg, const char *path, cc_error **ret_err)
{
        _cleanup_toml_ cc_toml_value *root = cc_toml_parse_file(path, ret_err);
        if (!root)
                return ret_err && *ret_err ? (*ret_err)->code : -EINVAL;
        /* Validate everything first so that a bad file leaves cfg untouched. */
        load_ctx c = {.view = cfg, .cfg = NULL, .path = path, .ret_err = ret_err};
        int r = load_table(&c, "", root);
        if (r < 0)
                return r;
        c.cfg = cfg;
        r = load_table(&c, "", root);
        if (r < 0) /* cannot happen: the first pass ran the same checks */
                return r;
        derive(cfg);
        return 0;
}

int cc_config_validate(const cc_config *cfg, cc_error **ret_err)
{
        if (cfg->vm.default_vcpus > cfg->vm.max_vcpus)
                return cc_error_set(ret_err, -EINVAL, "vm.default_vcpus (%" PRId64 ") exceeds vm.max_vcpus (%" PRId64 ")",
                                    cfg->vm.default_vcpus, cfg->vm.max_vcpus);
        if (cfg->vm.default_memory_mib > cfg->vm.max_memory_mib)
                return cc_error_set(ret_err, -EINVAL,
                                    "vm.default_memory_mib (%" PRId64 ") exceeds vm.max_memory_mib (%" PRId64 ")",
                                    cfg->vm.default_memory_mib, cfg->vm.max_memory_mib);
        if (cfg->server.max_recv_message_size < 4096 || cfg->server.max_send_message_size < 4096)
                return cc_error_set(ret_err, -EINVAL, "server message size limits below 4096 bytes");
        if (cfg->runtime.default_handler[0] && !cc_config_find_handler(cfg, cfg->runtime.default_handler))
                return cc_error_set(ret_err, -EINVAL,
                                    "runtime.default_handler \"%s\" is not defined in [runtime.handlers]",
                                    cfg->runtime.default_handler);
        return 0;
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_dropin_name(const char *n)
{
        size_t len = strlen(n);
        return n[0] != '.' && len > 5 && strcmp(n + len - 5, ".toml") == 0;
}

int cc_config_load(cc_config **ret, const char *main_path, const char *dropin_dir, bool must_exist,
                   cc_error **ret_err)
{
        _cleanup_config_ cc_config *cfg = cc_config_new_default();
        int r;
        if (main_path) {
                cc_error *err = NULL;
                r = cc_config_load_file(cfg, main_path, &err);
                if (r == -ENOENT && !must_exist)
                        cc_error_free(err);
                else if (r < 0)
                        return cc_error_propagate(ret_err, err);
        }
        if (dropin_dir) {
                _cleanup_closedir_ DIR *dir = opendir(dropin_dir); /* glibc opens it O_CLOEXEC */
                if (!dir && errno != ENOENT)
                        return cc_error_errno(ret_err, "%s: opendir", dropin_dir);
                _cleanup_strv_free_ char **names = xrealloc(NULL, sizeof(char *));
                size_t n = 0;
                names[0] = NULL;
                for (struct dirent *de; dir && (errno = 0, de = readdir(dir));) {
                        if (!is_dropin_name(de->d_name))
                                continue;
                        if (n >= MAX_DROPINS)
                                return cc_error_set(ret_err, -E2BIG, "%s: more than %d drop-in files", dropin_dir,
                                                    MAX_DROPINS);
                        names = xrealloc(names, (n + 2) * sizeof(char *));
                        names[n++] = xstrdup(de->d_name);
                        names[n] = NULL;
                }
                if (dir && errno != 0)
                        return cc_error_errno(ret_err, "%s: readdir", dropin_dir);
                qsort(names, n, sizeof(char *), cmp_str);
                for (size_t i = 0; i < n; i++) {
                        _cleanup_free_ char *p = NULL;
                        if (asprintf(&p, "%s/%s", dropin_dir, names[i]) < 0)
                                abort();
                        r = cc_config_load_file(cfg, p, ret_err);
                        if (r < 0)
                                return r;
                }
        }
        r = cc_config_validate(cfg, ret_err);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(cfg);
        return 0;
}

/* ---- dumping ------------------------------------------------------------------ */

static void dump_value(FILE *f, const void *base, const key_desc *k)
{
        switch (k->type) {
        case T_STRING:
                cc_toml_write_string(f, get_str(base, k->offset));
                break;
        case T_INT:
                fprintf(f, "%" PRId64, *(const int64_t *)cfield(base, k->offset));
                break;
        case T_BOOL:
                fputs(*(const bool *)cfield(base, k->offset) ? "true" : "false", f);
                break;
        case T_ENUM:
                cc_toml_write_string(f, enum_name(k->choices, *(const int *)cfield(base, k->offset)));
                break;
        case T_STRV: {
                char *const *v = *(char **const *)cfield(base, k->offset);
                fputc('[', f);
                for (size_t i = 0; v && v[i]; i++) {
                        if (i)
                                fputs(", ", f);
                        cc_toml_write_string(f, v[i]);
                }
                fputc(']', f);
                break;
        }
        }
}

char *cc_config_dump(const cc_config *cfg)
{
        char *s = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&s, &len);
        if (!f)
                abort();
        fputs("# cocoon effective configuration\n", f);
        for (size_t i = 0; i < CC_ARRAY_SIZE(keys); i++) {
                const char *dot = strchr(keys[i].key, '.');
                size_t slen = (size_t)(dot - keys[i].key);
                bool first = i == 0 || strncmp(keys[i - 1].key, keys[i].key, slen + 1) != 0;
                bool last = i + 1 == CC_ARRAY_SIZE(keys) || strncmp(keys[i + 1].key, keys[i].key, slen + 1) != 0;
                if (first)
                        fprintf(f, "\n[%.*s]\n", (int)slen, keys[i].key);
                fprintf(f, "%s = ", dot + 1);
                dump_value(f, cfg, &keys[i]);
                fputc('\n', f);
                if (!last)
                        continue;
                /* The section's dynamic tables follow its plain keys. */
                for (size_t d = 0; d < CC_ARRAY_SIZE(dyns); d++) {
                        if (strncmp(dyns[d].prefix, keys[i].key, slen + 1) != 0)
                                continue;
                        for (size_t j = 0; j < dyn_n(cfg, &dyns[d]); j++) {
                                const void *e = dyn_elem(cfg, &dyns[d], j);
                                fprintf(f, "\n[%s.", dyns[d].prefix);
                                cc_toml_write_key(f, get_str(e, dyns[d].name_offset));
                                fputs("]\n", f);
                                for (size_t k = 0; k < dyns[d].n_keys; k++) {
                                        fprintf(f, "%s = ", dyns[d].keys[k].key);
                                        dump_value(f, e, &dyns[d].keys[k]);
                                        fputc('\n', f);
                                }
                        }
                }
        }
        if (fclose(f) != 0 || !s)
                abort();
        return s;
}
