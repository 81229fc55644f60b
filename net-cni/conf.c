/* SPDX-License-Identifier: Apache-2.0 */
#include "net-cni/conf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/json.h"
#include "common/log.h"

#define CONF_MAX_SIZE (1024 * 1024)
#define CONF_MAX_DEPTH 32
#define CONF_MAX_FILES 4096
#define CONF_MAX_PLUGINS 64
#define CONF_NAME_MAX 128

static const char *const supported_versions[] = { "0.3.0", "0.3.1", "0.4.0", "1.0.0" };

bool cni_version_supported(const char *v)
{
        for (size_t i = 0; v && i < CC_ARRAY_SIZE(supported_versions); i++)
                if (!strcmp(v, supported_versions[i]))
                        return true;
        return false;
}

static bool parse_version(const char *s, int out[3])
{
        int n = 0;
        if (!s || sscanf(s, "%d.%d.%d%n", &out[0], &out[1], &out[2], &n) != 3 || s[n] != '\0')
                return false;
        return true;
}

int cni_version_compare(const char *a, const char *b)
{
        int va[3], vb[3];
        bool pa = parse_version(a, va), pb = parse_version(b, vb);
        if (!pa || !pb)
                return (int)pa - (int)pb;
        for (int i = 0; i < 3; i++)
                if (va[i] != vb[i])
                        return va[i] < vb[i] ? -1 : 1;
        return 0;
}

/* Network names per the spec: ^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$ */
static bool valid_network_name(const char *s)
{
        size_t n = strlen(s);
        if (n == 0 || n > CONF_NAME_MAX)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
                if (!alnum && (i == 0 || (c != '_' && c != '.' && c != '-')))
                        return false;
        }
        return true;
}

/* A plugin type names a binary inside a bin dir: a plain file name. */
static bool valid_plugin_type(const char *s)
{
        size_t n = strlen(s);
        if (n == 0 || n > CONF_NAME_MAX || !strcmp(s, ".") || !strcmp(s, ".."))
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '-'))
                        return false;
        }
        return true;
}

static void netconf_free(cni_netconf *n)
{
        if (!n)
                return;
        free(n->path);
        free(n->name);
        free(n->cni_version);
        for (size_t i = 0; n->plugins && i < n->n_plugins; i++) {
                free(n->plugins[i].type);
                cc_strv_free(n->plugins[i].capabilities);
        }
        free(n->plugins);
        for (size_t i = 0; i < n->n_skipped; i++) {
                free(n->skipped[i].file);
                free(n->skipped[i].reason);
        }
        free(n->skipped);
        if (n->raw)
                json_object_put(n->raw);
        free(n);
}

cni_netconf *cni_netconf_ref(cni_netconf *n)
{
        if (n)
                __atomic_add_fetch(&n->refs, 1, __ATOMIC_RELAXED);
        return n;
}

void cni_netconf_unref(cni_netconf *n)
{
        if (n && __atomic_sub_fetch(&n->refs, 1, __ATOMIC_ACQ_REL) == 0)
                netconf_free(n);
}

bool cni_plugin_has_capability(const cni_plugin_conf *p, const char *cap)
{
        for (char **c = p->capabilities; c && *c; c++)
                if (!strcmp(*c, cap))
                        return true;
        return false;
}

static int parse_plugin(json_object *o, size_t idx, cni_plugin_conf *ret, const char *what, cc_error **ret_err)
{
        if (!json_object_is_type(o, json_type_object))
                return cc_error_set(ret_err, -EINVAL, "%s: plugins[%zu] is not an object", what, idx);
        json_object *t = cc_json_get_typed(o, "type", json_type_string);
        if (!t)
                return cc_error_set(ret_err, -EINVAL, "%s: plugins[%zu] has no \"type\" string", what, idx);
        const char *type = json_object_get_string(t);
        if (!valid_plugin_type(type))
                return cc_error_set(ret_err, -EINVAL, "%s: plugins[%zu]: invalid plugin type '%s'", what, idx, type);
        json_object *caps = NULL;
        if (json_object_object_get_ex(o, "capabilities", &caps) && !json_object_is_type(caps, json_type_object))
                return cc_error_set(ret_err, -EINVAL, "%s: plugins[%zu] (%s): \"capabilities\" is not an object",
                                    what, idx, type);
        size_t n = caps ? (size_t)json_object_object_length(caps) : 0;
        char **v = calloc(n + 1, sizeof(char *));
        if (!v)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        size_t k = 0;
        if (caps) {
                json_object_object_foreach(caps, key, val) {
                        if (json_object_is_type(val, json_type_boolean) && json_object_get_boolean(val))
                                if (!(v[k++] = strdup(key))) {
                                        cc_strv_free(v);
                                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
                                }
                }
        }
        ret->type = strdup(type);
        if (!ret->type) {
                cc_strv_free(v);
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        ret->capabilities = v;
        ret->conf = o;
        return 0;
}

cni_netconf *cni_netconf_from_json(json_object *list, const char *what, cc_error **ret_err)
{
        if (!json_object_is_type(list, json_type_object)) {
                cc_error_set(ret_err, -EINVAL, "%s: not a JSON object", what);
                return NULL;
        }
        json_object *name = cc_json_get_typed(list, "name", json_type_string);
        json_object *ver = cc_json_get_typed(list, "cniVersion", json_type_string);
        json_object *plugins = cc_json_get_typed(list, "plugins", json_type_array);
        if (!name) {
                cc_error_set(ret_err, -EINVAL, "%s: no \"name\" string", what);
                return NULL;
        }
        if (!valid_network_name(json_object_get_string(name))) {
                cc_error_set(ret_err, -EINVAL, "%s: invalid network name '%s'", what, json_object_get_string(name));
                return NULL;
        }
        if (!ver) {
                cc_error_set(ret_err, -EINVAL, "%s: no \"cniVersion\" string", what);
                return NULL;
        }
        if (!cni_version_supported(json_object_get_string(ver))) {
                cc_error_set(ret_err, -EINVAL, "%s: unsupported cniVersion '%s' (supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0)",
                             what, json_object_get_string(ver));
                return NULL;
        }
        size_t np = plugins ? json_object_array_length(plugins) : 0;
        if (np == 0) {
                cc_error_set(ret_err, -EINVAL, "%s: no plugins", what);
                return NULL;
        }
        if (np > CONF_MAX_PLUGINS) {
                cc_error_set(ret_err, -EINVAL, "%s: more than %d plugins", what, CONF_MAX_PLUGINS);
                return NULL;
        }
        json_object *dc = NULL;
        if (json_object_object_get_ex(list, "disableCheck", &dc) && !json_object_is_type(dc, json_type_boolean)) {
                cc_error_set(ret_err, -EINVAL, "%s: \"disableCheck\" is not a boolean", what);
                return NULL;
        }
        cni_netconf *n = calloc(1, sizeof *n);
        if (!n)
                goto oom;
        n->refs = 1;
        n->raw = json_object_get(list);
        n->disable_check = dc && json_object_get_boolean(dc);
        n->name = strdup(json_object_get_string(name));
        n->cni_version = strdup(json_object_get_string(ver));
        n->plugins = calloc(np, sizeof *n->plugins);
        if (!n->name || !n->cni_version || !n->plugins)
                goto oom;
        for (size_t i = 0; i < np; i++) {
                if (parse_plugin(json_object_array_get_idx(plugins, i), i, &n->plugins[i], what, ret_err) < 0) {
                        n->n_plugins = i;
                        netconf_free(n);
                        return NULL;
                }
                n->n_plugins = i + 1;
        }
        return n;
oom:
        netconf_free(n);
        cc_error_set(ret_err, -ENOMEM, "out of memory");
        return NULL;
}

cni_netconf *cni_netconf_parse(const char *buf, size_t len, bool conflist, const char *what,
                               cc_error **ret_err)
{
        _cleanup_json_ json_object *o = cc_json_parse(buf, len, CONF_MAX_SIZE, CONF_MAX_DEPTH, what, ret_err);
        if (!o)
                return NULL;
        if (!json_object_is_type(o, json_type_object)) {
                cc_error_set(ret_err, -EINVAL, "%s: not a JSON object", what);
                return NULL;
        }
        if (conflist || cc_json_get_typed(o, "plugins", json_type_array))
                return cni_netconf_from_json(o, what, ret_err);
        /* A single plugin configuration: the whole object is the plugin's
         * configuration, its name and cniVersion are the list's. */
        if (!cc_json_get_typed(o, "type", json_type_string)) {
                cc_error_set(ret_err, -EINVAL, "%s: no \"type\" string", what);
                return NULL;
        }
        _cleanup_json_ json_object *list = json_object_new_object();
        json_object *arr = json_object_new_array();
        if (!list || !arr) {
                if (arr)
                        json_object_put(arr);
                cc_error_set(ret_err, -ENOMEM, "out of memory");
                return NULL;
        }
        static const char *const copy[] = { "name", "cniVersion", "disableCheck" };
        for (size_t i = 0; i < CC_ARRAY_SIZE(copy); i++) {
                json_object *v;
                if (json_object_object_get_ex(o, copy[i], &v))
                        json_object_object_add(list, copy[i], json_object_get(v));
        }
        json_object_array_add(arr, json_object_get(o));
        json_object_object_add(list, "plugins", arr);
        return cni_netconf_from_json(list, what, ret_err);
}

static int conf_kind(const char *name)
{
        size_t n = strlen(name);
        if (name[0] == '.')
                return -1;
        if (n > 9 && !strcmp(name + n - 9, ".conflist"))
                return 1;
        if ((n > 5 && !strcmp(name + n - 5, ".conf")) || (n > 5 && !strcmp(name + n - 5, ".json")))
                return 0;
        return -1;
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Candidate file names of dir in lexical order (NULL-terminated). */
static int list_candidates(const char *dir, char ***ret, cc_error **ret_err)
{
        _cleanup_closedir_ DIR *d = opendir(dir);
        if (!d)
                return cc_error_errno(ret_err, "open CNI config directory '%s'", dir);
        _cleanup_strv_free_ char **v = calloc(1, sizeof(char *));
        size_t n = 0;
        if (!v)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        struct dirent *de;
        while ((de = readdir(d))) {
                if (conf_kind(de->d_name) < 0)
                        continue;
                if (n >= CONF_MAX_FILES)
                        return cc_error_set(ret_err, -E2BIG, "'%s': more than %d config files", dir, CONF_MAX_FILES);
                char **nv = realloc(v, (n + 2) * sizeof(char *));
                if (!nv)
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
                v = nv;
                if (!(v[n] = strdup(de->d_name)))
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
                v[++n] = NULL;
        }
        qsort(v, n, sizeof(char *), cmp_str);
        *ret = TAKE_PTR(v);
        return 0;
}

static int add_skipped(cni_skipped **s, size_t *n, const char *file, const char *reason)
{
        cni_skipped *ns = realloc(*s, (*n + 1) * sizeof **s);
        if (!ns)
                return -ENOMEM;
        *s = ns;
        ns[*n].file = strdup(file);
        ns[*n].reason = strdup(reason);
        if (!ns[*n].file || !ns[*n].reason) {
                free(ns[*n].file);
                free(ns[*n].reason);
                return -ENOMEM;
        }
        (*n)++;
        return 0;
}

int cni_conf_load_dir(const char *dir, cni_netconf **ret, cc_error **ret_err)
{
        _cleanup_strv_free_ char **files = NULL;
        int r = list_candidates(dir, &files, ret_err);
        if (r < 0)
                return r;
        cni_skipped *skipped = NULL;
        size_t n_skipped = 0;
        cni_netconf *found = NULL;
        for (char **f = files; *f && !found; f++) {
                _cleanup_free_ char *path = NULL, *buf = NULL;
                if (asprintf(&path, "%s/%s", dir, *f) < 0) {
                        r = cc_error_set(ret_err, -ENOMEM, "out of memory");
                        goto fail;
                }
                cc_error *err = NULL;
                size_t len;
                struct stat st;
                if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
                        cc_error_set(&err, -EINVAL, "%s: not a regular file", path);
                else if (cc_read_file(path, CONF_MAX_SIZE, &buf, &len, &err) >= 0)
                        found = cni_netconf_parse(buf, len, conf_kind(*f) == 1, path, &err);
                if (!found) {
                        log_debug("cni: skipping config file=%s reason=%s", path, err ? err->msg : "?");
                        r = add_skipped(&skipped, &n_skipped, *f, err ? err->msg : "invalid");
                        cc_error_free(err);
                        if (r < 0) {
                                r = cc_error_set(ret_err, -ENOMEM, "out of memory");
                                goto fail;
                        }
                        continue;
                }
                if (!(found->path = strdup(path))) {
                        r = cc_error_set(ret_err, -ENOMEM, "out of memory");
                        goto fail;
                }
        }
        if (!found) {
                /* The message lists why each file was passed over. */
                size_t cap = 256;
                for (size_t i = 0; i < n_skipped; i++)
                        cap += strlen(skipped[i].reason) + 8;
                _cleanup_free_ char *msg = malloc(cap);
                if (!msg) {
                        r = cc_error_set(ret_err, -ENOMEM, "out of memory");
                        goto fail;
                }
                int off = snprintf(msg, cap, "no network config found in %s", dir);
                for (size_t i = 0; i < n_skipped; i++)
                        off += snprintf(msg + off, cap - (size_t)off, "%s%s", i ? "; " : " (skipped: ",
                                        skipped[i].reason);
                if (n_skipped)
                        snprintf(msg + off, cap - (size_t)off, ")");
                r = cc_error_set(ret_err, -ENOENT, "%s", msg);
                goto fail;
        }
        found->skipped = skipped;
        found->n_skipped = n_skipped;
        *ret = found;
        return 0;
fail:
        for (size_t i = 0; i < n_skipped; i++) {
                free(skipped[i].file);
                free(skipped[i].reason);
        }
        free(skipped);
        netconf_free(found);
        return r;
}

/* Loader with a cheap change check. */
struct cni_conf_loader {
        pthread_mutex_t lock;
        char *dir;
        bool loaded;
        uint64_t fingerprint;
        cni_netconf *net;
        int err_code;
        char *err_msg;
};

cni_conf_loader *cni_conf_loader_new(const char *dir)
{
        cni_conf_loader *l = calloc(1, sizeof *l);
        if (!l || !(l->dir = strdup(dir))) {
                free(l);
                return NULL;
        }
        pthread_mutex_init(&l->lock, NULL);
        return l;
}

void cni_conf_loader_free(cni_conf_loader *l)
{
        if (!l)
                return;
        cni_netconf_unref(l->net);
        free(l->err_msg);
        free(l->dir);
        pthread_mutex_destroy(&l->lock);
        free(l);
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
        const unsigned char *b = p;
        for (size_t i = 0; i < n; i++) {
                h ^= b[i];
                h *= 0x100000001b3ULL;
        }
        return h;
}

static uint64_t stat_fp(uint64_t h, const struct stat *st)
{
        h = fnv(h, &st->st_ino, sizeof st->st_ino);
        h = fnv(h, &st->st_size, sizeof st->st_size);
        h = fnv(h, &st->st_mtim, sizeof st->st_mtim);
        return fnv(h, &st->st_ctim, sizeof st->st_ctim);
}

/* Fingerprint of the directory and its candidate files; 0 if unreadable. */
static uint64_t dir_fingerprint(const char *dir)
{
        uint64_t h = 0xcbf29ce484222325ULL;
        _cleanup_closedir_ DIR *d = opendir(dir);
        struct stat st;
        if (!d || fstat(dirfd(d), &st) < 0)
                return 0;
        h = stat_fp(h, &st);
        struct dirent *de;
        while ((de = readdir(d))) {
                if (conf_kind(de->d_name) < 0)
                        continue;
                h = fnv(h, de->d_name, strlen(de->d_name) + 1);
                if (fstatat(dirfd(d), de->d_name, &st, 0) == 0)
                        h = stat_fp(h, &st);
        }
        return h ? h : 1;
}

int cni_conf_loader_get(cni_conf_loader *l, cni_netconf **ret, cc_error **ret_err)
{
        pthread_mutex_lock(&l->lock);
        uint64_t fp = dir_fingerprint(l->dir);
        if (!l->loaded || fp == 0 || fp != l->fingerprint) {
                cni_netconf *n = NULL;
                cc_error *err = NULL;
                cni_conf_load_dir(l->dir, &n, &err);
                cni_netconf_unref(l->net);
                free(l->err_msg);
                l->net = n;
                l->err_code = err ? err->code : 0;
                l->err_msg = err ? strdup(err->msg) : NULL;
                cc_error_free(err);
                l->fingerprint = fp;
                l->loaded = fp != 0;
        }
        int r = 0;
        if (l->net)
                *ret = cni_netconf_ref(l->net);
        else
                r = cc_error_set(ret_err, l->err_code ? l->err_code : -ENOMEM, "%s",
                                 l->err_msg ? l->err_msg : "out of memory");
        pthread_mutex_unlock(&l->lock);
        return r;
}
