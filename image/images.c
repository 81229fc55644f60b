/* SPDX-License-Identifier: Apache-2.0 */
#include "image/images.h"

#include <dirent.h>
#include <errno.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/json.h"
#include "common/log.h"
#include "image/ref.h"
#include "image/unpack.h"

#define RECORD_VERSION 1
#define RECORD_MAX (1 << 20)
#define CONFIG_MAX (8 << 20)

typedef struct rec {
        image_info info; /* config is never set here */
        bool damaged;
} rec;

struct image_db {
        image_store *store;
        char *dir;
        pthread_mutex_t lock;
        rec **recs;
        size_t n, cap;
        size_t n_damaged;
        image_layer_in_use_fn in_use;
        void *in_use_ud;
};

/* ---- helpers ------------------------------------------------------------- */

static bool digest_ok(const char *d)
{
        if (!d || strncmp(d, "sha256:", 7) != 0 || strlen(d) != 71)
                return false;
        for (const char *p = d + 7; *p; p++)
                if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
                        return false;
        return true;
}

static size_t strv_len(char *const *v)
{
        size_t n = 0;
        while (v && v[n])
                n++;
        return n;
}

static bool strv_has(char *const *v, const char *s)
{
        for (size_t i = 0; v && v[i]; i++)
                if (strcmp(v[i], s) == 0)
                        return true;
        return false;
}

static char **strv_copy(char *const *v)
{
        size_t n = strv_len(v);
        char **c = calloc(n + 1, sizeof(char *));
        if (!c)
                abort();
        for (size_t i = 0; i < n; i++)
                if (!(c[i] = strdup(v[i])))
                        abort();
        return c;
}

static void strv_add(char ***v, const char *s)
{
        if (strv_has(*v, s))
                return;
        size_t n = strv_len(*v);
        char **nv = realloc(*v, (n + 2) * sizeof(char *));
        if (!nv || !(nv[n] = strdup(s)))
                abort();
        nv[n + 1] = NULL;
        *v = nv;
}

static bool strv_remove(char **v, const char *s)
{
        bool removed = false;
        size_t j = 0;
        for (size_t i = 0; v && v[i]; i++) {
                if (strcmp(v[i], s) == 0) {
                        free(v[i]);
                        removed = true;
                } else {
                        v[j++] = v[i];
                }
        }
        if (v)
                v[j] = NULL;
        return removed;
}

static char *xstrdup(const char *s)
{
        char *d = strdup(s ? s : "");
        if (!d)
                abort();
        return d;
}

static void layers_free(image_layer_rec *l, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                free(l[i].digest);
                free(l[i].media_type);
                free(l[i].diff_id);
                free(l[i].chain_id);
        }
        free(l);
}

static void info_clear(image_info *i)
{
        free(i->id);
        cc_strv_free(i->repo_tags);
        cc_strv_free(i->repo_digests);
        free(i->manifest_digest);
        layers_free(i->layers, i->n_layers);
        image_config_free(i->config);
        memset(i, 0, sizeof(*i));
}

void image_info_free(image_info *i)
{
        if (!i)
                return;
        info_clear(i);
        free(i);
}

void image_info_list_free(image_info **list, size_t n)
{
        for (size_t i = 0; i < n; i++)
                image_info_free(list[i]);
        free(list);
}

static void info_copy(image_info *dst, const image_info *src)
{
        dst->id = xstrdup(src->id);
        dst->repo_tags = strv_copy(src->repo_tags);
        dst->repo_digests = strv_copy(src->repo_digests);
        dst->manifest_digest = xstrdup(src->manifest_digest);
        dst->size = src->size;
        dst->pulled_at_ns = src->pulled_at_ns;
        dst->n_layers = src->n_layers;
        dst->layers = calloc(src->n_layers ? src->n_layers : 1, sizeof(image_layer_rec));
        if (!dst->layers)
                abort();
        for (size_t i = 0; i < src->n_layers; i++) {
                dst->layers[i].digest = xstrdup(src->layers[i].digest);
                dst->layers[i].media_type = xstrdup(src->layers[i].media_type);
                dst->layers[i].size = src->layers[i].size;
                dst->layers[i].diff_id = xstrdup(src->layers[i].diff_id);
                dst->layers[i].chain_id = xstrdup(src->layers[i].chain_id);
        }
        dst->config = NULL;
}

static void rec_free(rec *r)
{
        if (!r)
                return;
        info_clear(&r->info);
        free(r);
}

/* ---- persistence ----------------------------------------------------------- */

static char *rec_path(const image_db *db, const char *id)
{
        char *p = NULL;
        if (asprintf(&p, "%s/%s.json", db->dir, id + 7) < 0)
                abort();
        return p;
}

static json_object *strv_to_json(char *const *v)
{
        json_object *a = json_object_new_array();
        for (size_t i = 0; v && v[i]; i++)
                json_object_array_add(a, json_object_new_string(v[i]));
        return a;
}

static int rec_save(image_db *db, const rec *r, cc_error **ret_err)
{
        _cleanup_json_ json_object *o = json_object_new_object();
        json_object_object_add(o, "version", json_object_new_int(RECORD_VERSION));
        json_object_object_add(o, "id", json_object_new_string(r->info.id));
        json_object_object_add(o, "repo_tags", strv_to_json(r->info.repo_tags));
        json_object_object_add(o, "repo_digests", strv_to_json(r->info.repo_digests));
        json_object_object_add(o, "manifest_digest", json_object_new_string(r->info.manifest_digest));
        json_object_object_add(o, "size", json_object_new_int64(r->info.size));
        json_object_object_add(o, "pulled_at_ns", json_object_new_int64(r->info.pulled_at_ns));
        json_object *layers = json_object_new_array();
        for (size_t i = 0; i < r->info.n_layers; i++) {
                const image_layer_rec *l = &r->info.layers[i];
                json_object *lo = json_object_new_object();
                json_object_object_add(lo, "digest", json_object_new_string(l->digest));
                json_object_object_add(lo, "media_type", json_object_new_string(l->media_type));
                json_object_object_add(lo, "size", json_object_new_int64(l->size));
                json_object_object_add(lo, "diff_id", json_object_new_string(l->diff_id));
                json_object_object_add(lo, "chain_id", json_object_new_string(l->chain_id));
                json_object_array_add(layers, lo);
        }
        json_object_object_add(o, "layers", layers);
        _cleanup_free_ char *path = rec_path(db, r->info.id);
        return cc_json_write_file(path, o, 0600, ret_err);
}

static int strv_from_json(json_object *o, const char *key, char ***ret, cc_error **ret_err)
{
        json_object *a = cc_json_get_typed(o, key, json_type_array);
        if (!a)
                return cc_error_set(ret_err, -EINVAL, "field '%s' must be an array", key);
        size_t n = json_object_array_length(a);
        if (n > 4096)
                return cc_error_set(ret_err, -EINVAL, "field '%s' has too many entries", key);
        char **v = calloc(n + 1, sizeof(char *));
        if (!v)
                abort();
        for (size_t i = 0; i < n; i++) {
                json_object *e = json_object_array_get_idx(a, i);
                if (!json_object_is_type(e, json_type_string)) {
                        cc_strv_free(v);
                        return cc_error_set(ret_err, -EINVAL, "field '%s' must hold strings", key);
                }
                v[i] = xstrdup(json_object_get_string(e));
        }
        *ret = v;
        return 0;
}

static int rec_load(const char *path, rec **ret, cc_error **ret_err)
{
        _cleanup_json_ json_object *o = cc_json_parse_file(path, RECORD_MAX, ret_err);
        if (!o)
                return -EINVAL;
        rec *r = calloc(1, sizeof(*r));
        if (!r)
                abort();
        int64_t version = 0;
        const char *id = NULL, *md = NULL;
        int rc = -EINVAL;
        if (cc_json_get_int64(o, "version", false, &version, ret_err) < 0)
                goto fail;
        if (version != RECORD_VERSION) {
                cc_error_set(ret_err, -EINVAL, "unsupported record version %lld", (long long)version);
                goto fail;
        }
        if (cc_json_get_string(o, "id", false, &id, ret_err) < 0 ||
            cc_json_get_string(o, "manifest_digest", false, &md, ret_err) < 0 ||
            cc_json_get_int64(o, "size", false, &r->info.size, ret_err) < 0 ||
            cc_json_get_int64(o, "pulled_at_ns", true, &r->info.pulled_at_ns, ret_err) < 0 ||
            strv_from_json(o, "repo_tags", &r->info.repo_tags, ret_err) < 0 ||
            strv_from_json(o, "repo_digests", &r->info.repo_digests, ret_err) < 0)
                goto fail;
        if (!digest_ok(id) || !digest_ok(md)) {
                cc_error_set(ret_err, -EINVAL, "invalid id or manifest digest");
                goto fail;
        }
        r->info.id = xstrdup(id);
        r->info.manifest_digest = xstrdup(md);
        json_object *layers = cc_json_get_typed(o, "layers", json_type_array);
        size_t n = layers ? json_object_array_length(layers) : 0;
        if (!layers || n > 1024) {
                cc_error_set(ret_err, -EINVAL, "field 'layers' must be an array of at most 1024");
                goto fail;
        }
        r->info.layers = calloc(n ? n : 1, sizeof(image_layer_rec));
        if (!r->info.layers)
                abort();
        for (size_t i = 0; i < n; i++) {
                json_object *lo = json_object_array_get_idx(layers, i);
                const char *d = NULL, *mt = NULL, *diff = NULL, *chain = NULL;
                int64_t size = 0;
                if (cc_json_get_string(lo, "digest", false, &d, ret_err) < 0 ||
                    cc_json_get_string(lo, "media_type", false, &mt, ret_err) < 0 ||
                    cc_json_get_string(lo, "diff_id", false, &diff, ret_err) < 0 ||
                    cc_json_get_string(lo, "chain_id", false, &chain, ret_err) < 0 ||
                    cc_json_get_int64(lo, "size", false, &size, ret_err) < 0)
                        goto fail;
                if (!digest_ok(d) || !digest_ok(diff) || !digest_ok(chain)) {
                        cc_error_set(ret_err, -EINVAL, "layer %zu: invalid digest", i);
                        goto fail;
                }
                image_layer_rec *l = &r->info.layers[r->info.n_layers++];
                l->digest = xstrdup(d);
                l->media_type = xstrdup(mt);
                l->diff_id = xstrdup(diff);
                l->chain_id = xstrdup(chain);
                l->size = size;
        }
        *ret = r;
        return 0;
fail:
        rec_free(r);
        return rc;
}

/* A record is healthy when its config blob and every unpacked layer exist. */
static const char *rec_damage(image_db *db, const rec *r)
{
        if (image_store_has(db->store, r->info.id) != 1)
                return "config blob missing";
        for (size_t i = 0; i < r->info.n_layers; i++)
                if (image_layer_has(db->store, r->info.layers[i].chain_id) != 1)
                        return "unpacked layer missing";
        return NULL;
}

/* ---- open / free ------------------------------------------------------------ */

static void db_append(image_db *db, rec *r)
{
        if (db->n == db->cap) {
                size_t cap = db->cap ? db->cap * 2 : 16;
                rec **nr = realloc(db->recs, cap * sizeof(rec *));
                if (!nr)
                        abort();
                db->recs = nr;
                db->cap = cap;
        }
        db->recs[db->n++] = r;
}

int image_db_open(image_store *store, image_db **ret, cc_error **ret_err)
{
        image_db *db = calloc(1, sizeof(*db));
        if (!db)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        db->store = store;
        pthread_mutex_init(&db->lock, NULL);
        if (asprintf(&db->dir, "%s/images", image_store_root(store)) < 0)
                abort();
        int r = cc_mkdir_p(db->dir, 0700, ret_err);
        if (r < 0) {
                image_db_free(db);
                return r;
        }
        _cleanup_closedir_ DIR *d = opendir(db->dir);
        if (!d) {
                r = cc_error_errno(ret_err, "open '%s'", db->dir);
                image_db_free(db);
                return r;
        }
        struct dirent *de;
        while ((de = readdir(d))) {
                size_t len = strlen(de->d_name);
                if (len != 64 + 5 || strcmp(de->d_name + 64, ".json") != 0)
                        continue;
                _cleanup_free_ char *path = NULL;
                if (asprintf(&path, "%s/%s", db->dir, de->d_name) < 0)
                        abort();
                _cleanup_error_ cc_error *err = NULL;
                rec *rc = NULL;
                if (rec_load(path, &rc, &err) < 0) {
                        log_warn("image record %s is unreadable (%s); ignoring it", path, err->msg);
                        db->n_damaged++;
                        continue;
                }
                if (strncmp(rc->info.id + 7, de->d_name, 64) != 0) {
                        log_warn("image record %s names another image; ignoring it", path);
                        rec_free(rc);
                        db->n_damaged++;
                        continue;
                }
                const char *why = rec_damage(db, rc);
                if (why) {
                        log_warn("image %s is damaged (%s); pull it again to repair it", rc->info.id, why);
                        rc->damaged = true;
                        db->n_damaged++;
                }
                db_append(db, rc);
        }
        *ret = db;
        return 0;
}

void image_db_free(image_db *db)
{
        if (!db)
                return;
        for (size_t i = 0; i < db->n; i++)
                rec_free(db->recs[i]);
        free(db->recs);
        free(db->dir);
        pthread_mutex_destroy(&db->lock);
        free(db);
}

void image_db_set_in_use_hook(image_db *db, image_layer_in_use_fn fn, void *userdata)
{
        pthread_mutex_lock(&db->lock);
        db->in_use = fn;
        db->in_use_ud = userdata;
        pthread_mutex_unlock(&db->lock);
}

size_t image_db_n_damaged(image_db *db)
{
        pthread_mutex_lock(&db->lock);
        size_t n = db->n_damaged;
        pthread_mutex_unlock(&db->lock);
        return n;
}

/* ---- lookup ------------------------------------------------------------------- */

static rec *find_id(image_db *db, const char *id)
{
        for (size_t i = 0; i < db->n; i++)
                if (strcmp(db->recs[i]->info.id, id) == 0)
                        return db->recs[i];
        return NULL;
}

static bool all_hex(const char *s, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        return true;
}

/* Lock held. Sets *ret (may be NULL = not found). */
static int resolve(image_db *db, const char *spec, rec **ret, cc_error **ret_err)
{
        *ret = NULL;
        if (!spec || !*spec)
                return cc_error_set(ret_err, -EINVAL, "image name must not be empty");
        size_t n = strlen(spec);
        if (n > 4096)
                return cc_error_set(ret_err, -EINVAL, "image name is too long");
        /* Full id, with or without "sha256:". */
        if (n == 71 && digest_ok(spec)) {
                *ret = find_id(db, spec);
                if (*ret)
                        return 0;
        }
        if (n == 64 && all_hex(spec, 64)) {
                char id[72];
                snprintf(id, sizeof(id), "sha256:%s", spec);
                *ret = find_id(db, id);
                return 0;
        }
        /* A reference: tag or digest. */
        image_ref *ref = NULL;
        _cleanup_error_ cc_error *perr = NULL;
        if (image_ref_parse(spec, &ref, &perr) == 0) {
                _cleanup_free_ char *name = image_ref_name(ref);
                _cleanup_free_ char *tagged = ref->tag ? image_ref_tagged(ref) : NULL;
                _cleanup_free_ char *digested = ref->digest ? image_ref_with_digest(ref, ref->digest) : NULL;
                image_ref_free(ref);
                for (size_t i = 0; i < db->n; i++) {
                        rec *r = db->recs[i];
                        if (digested ? strv_has(r->info.repo_digests, digested)
                                     : (tagged && strv_has(r->info.repo_tags, tagged))) {
                                *ret = r;
                                return 0;
                        }
                }
        }
        /* A unique id prefix (at least 4 hex characters, like crictl's). */
        const char *hex = strncmp(spec, "sha256:", 7) == 0 ? spec + 7 : spec;
        size_t hn = strlen(hex);
        if (hn >= 4 && hn < 64 && all_hex(hex, hn)) {
                rec *found = NULL;
                for (size_t i = 0; i < db->n; i++) {
                        if (strncmp(db->recs[i]->info.id + 7, hex, hn) == 0) {
                                if (found)
                                        return cc_error_set(ret_err, -EINVAL,
                                                            "image id prefix '%s' is ambiguous", spec);
                                found = db->recs[i];
                        }
                }
                *ret = found;
                return 0;
        }
        if (perr)
                return cc_error_propagate(ret_err, TAKE_PTR(perr));
        return 0;
}

static int info_with_config(image_db *db, const rec *r, image_info **ret, cc_error **ret_err)
{
        image_info *out = calloc(1, sizeof(*out));
        if (!out)
                abort();
        info_copy(out, &r->info);
        _cleanup_free_ char *buf = NULL;
        int rc = image_store_read_blob(db->store, r->info.id, CONFIG_MAX, &buf, NULL, ret_err);
        if (rc >= 0)
                rc = image_config_parse(buf, strlen(buf), &out->config, ret_err);
        if (rc < 0) {
                image_info_free(out);
                return cc_error_prefix(ret_err, "image %s: config", r->info.id);
        }
        *ret = out;
        return 0;
}

int image_db_get(image_db *db, const char *spec, image_info **ret, cc_error **ret_err)
{
        pthread_mutex_lock(&db->lock);
        rec *r = NULL;
        int rc = resolve(db, spec, &r, ret_err);
        if (rc == 0 && (!r || r->damaged))
                rc = cc_error_set(ret_err, -ENOENT, "image '%s' not found", spec);
        if (rc == 0)
                rc = info_with_config(db, r, ret, ret_err);
        pthread_mutex_unlock(&db->lock);
        return rc;
}

static int cmp_info(const void *a, const void *b)
{
        return strcmp((*(image_info *const *)a)->id, (*(image_info *const *)b)->id);
}

int image_db_list(image_db *db, image_info ***ret, size_t *ret_n, cc_error **ret_err)
{
        pthread_mutex_lock(&db->lock);
        image_info **list = calloc(db->n ? db->n : 1, sizeof(image_info *));
        if (!list)
                abort();
        size_t n = 0;
        for (size_t i = 0; i < db->n; i++) {
                if (db->recs[i]->damaged)
                        continue;
                _cleanup_error_ cc_error *err = NULL;
                image_info *info = NULL;
                if (info_with_config(db, db->recs[i], &info, &err) < 0) {
                        log_debug("list images: skipping %s: %s", db->recs[i]->info.id, err->msg);
                        continue;
                }
                list[n++] = info;
        }
        pthread_mutex_unlock(&db->lock);
        qsort(list, n, sizeof(*list), cmp_info);
        *ret = list;
        *ret_n = n;
        return 0;
}

/* ---- put / remove -------------------------------------------------------------- */

int image_db_put(image_db *db, const image_info *in, cc_error **ret_err)
{
        if (!digest_ok(in->id) || !digest_ok(in->manifest_digest))
                return cc_error_set(ret_err, -EINVAL, "image record: invalid id or manifest digest");
        pthread_mutex_lock(&db->lock);
        int rc = 0;
        /* Tags move: take them off every other image first. */
        for (size_t i = 0; i < db->n; i++) {
                rec *o = db->recs[i];
                if (strcmp(o->info.id, in->id) == 0)
                        continue;
                bool changed = false;
                for (size_t t = 0; in->repo_tags && in->repo_tags[t]; t++)
                        changed |= strv_remove(o->info.repo_tags, in->repo_tags[t]);
                if (changed) {
                        _cleanup_error_ cc_error *err = NULL;
                        if (rec_save(db, o, &err) < 0)
                                log_warn("image %s: cannot persist tag move: %s", o->info.id, err->msg);
                }
        }
        rec *r = find_id(db, in->id);
        bool is_new = !r;
        if (is_new) {
                r = calloc(1, sizeof(*r));
                if (!r)
                        abort();
                info_copy(&r->info, in);
        } else {
                /* Layers, size, manifest: from the newest pull; names accumulate. */
                image_info fresh = { 0 };
                info_copy(&fresh, in);
                for (size_t t = 0; r->info.repo_tags && r->info.repo_tags[t]; t++)
                        strv_add(&fresh.repo_tags, r->info.repo_tags[t]);
                for (size_t t = 0; r->info.repo_digests && r->info.repo_digests[t]; t++)
                        strv_add(&fresh.repo_digests, r->info.repo_digests[t]);
                info_clear(&r->info);
                r->info = fresh;
        }
        if (r->damaged)
                db->n_damaged--;
        r->damaged = false;
        rc = rec_save(db, r, ret_err);
        if (is_new) {
                if (rc == 0)
                        db_append(db, r);
                else
                        rec_free(r);
        }
        pthread_mutex_unlock(&db->lock);
        return rc;
}

static bool blob_referenced(image_db *db, const char *digest)
{
        for (size_t i = 0; i < db->n; i++) {
                const image_info *o = &db->recs[i]->info;
                if (strcmp(o->id, digest) == 0 || strcmp(o->manifest_digest, digest) == 0)
                        return true;
                for (size_t l = 0; l < o->n_layers; l++)
                        if (strcmp(o->layers[l].digest, digest) == 0)
                                return true;
                for (size_t t = 0; o->repo_digests && o->repo_digests[t]; t++) {
                        const char *at = strrchr(o->repo_digests[t], '@');
                        if (at && strcmp(at + 1, digest) == 0)
                                return true;
                }
        }
        return false;
}

bool image_db_blob_referenced(image_db *db, const char *digest)
{
        pthread_mutex_lock(&db->lock);
        bool r = blob_referenced(db, digest);
        pthread_mutex_unlock(&db->lock);
        return r;
}

static bool chain_referenced(image_db *db, const char *chain_id)
{
        for (size_t i = 0; i < db->n; i++)
                for (size_t l = 0; l < db->recs[i]->info.n_layers; l++)
                        if (strcmp(db->recs[i]->info.layers[l].chain_id, chain_id) == 0)
                                return true;
        return false;
}

int image_db_remove(image_db *db, const char *spec, bool *ret_removed, cc_error **ret_err)
{
        pthread_mutex_lock(&db->lock);
        rec *r = NULL;
        int rc = resolve(db, spec, &r, ret_err);
        if (rc < 0 || !r) {
                pthread_mutex_unlock(&db->lock);
                if (ret_removed)
                        *ret_removed = false;
                return rc;
        }
        /* Layers a container still uses stay, and so does the image: the
         * kubelet must not pull the rug from under a running container. */
        for (size_t l = 0; db->in_use && l < r->info.n_layers; l++) {
                if (db->in_use(db->in_use_ud, r->info.layers[l].chain_id)) {
                        pthread_mutex_unlock(&db->lock);
                        return cc_error_set(ret_err, -EBUSY, "image %s is in use by a container",
                                            r->info.id);
                }
        }
        _cleanup_free_ char *path = rec_path(db, r->info.id);
        if (unlink(path) < 0 && errno != ENOENT) {
                rc = cc_error_errno(ret_err, "remove image record '%s'", path);
                pthread_mutex_unlock(&db->lock);
                return rc;
        }
        for (size_t i = 0; i < db->n; i++) {
                if (db->recs[i] == r) {
                        db->recs[i] = db->recs[--db->n];
                        break;
                }
        }
        if (r->damaged)
                db->n_damaged--;
        /* Garbage: blobs and layers of r that nothing else references. */
        _cleanup_error_ cc_error *gc_err = NULL;
        for (size_t l = r->info.n_layers; l-- > 0;) {
                const image_layer_rec *lr = &r->info.layers[l];
                if (!chain_referenced(db, lr->chain_id) &&
                    !(db->in_use && db->in_use(db->in_use_ud, lr->chain_id)) &&
                    image_layer_delete(db->store, lr->chain_id, &gc_err) < 0) {
                        log_warn("remove image %s: layer %s: %s", r->info.id, lr->chain_id, gc_err->msg);
                        cc_error_free(TAKE_PTR(gc_err));
                }
                if (!blob_referenced(db, lr->digest))
                        image_store_delete(db->store, lr->digest, NULL);
        }
        if (!blob_referenced(db, r->info.manifest_digest))
                image_store_delete(db->store, r->info.manifest_digest, NULL);
        for (size_t t = 0; r->info.repo_digests && r->info.repo_digests[t]; t++) {
                const char *at = strrchr(r->info.repo_digests[t], '@');
                if (at && digest_ok(at + 1) && !blob_referenced(db, at + 1))
                        image_store_delete(db->store, at + 1, NULL);
        }
        if (!blob_referenced(db, r->info.id))
                image_store_delete(db->store, r->info.id, NULL);
        pthread_mutex_unlock(&db->lock);
        rec_free(r);
        if (ret_removed)
                *ret_removed = true;
        return 0;
}
