/* SPDX-License-Identifier: Apache-2.0 */
#include "config.h"

#include "image/manifest.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include "common/cleanup.h"
#include "image/util.h"

#define MT_MAX 255
#define STR_MAX 4096        /* user, working dir, platform fields, urls */
#define ARG_MAX_LEN 131072  /* one entrypoint/cmd/env string */
#define LIST_MAX 4096       /* env, cmd, ports, volumes, labels */
#define LABEL_VALUE_MAX 65536

#define OCI_LAYER "application/vnd.oci.image.layer.v1.tar"
#define OCI_LAYER_ND "application/vnd.oci.image.layer.nondistributable.v1.tar"
#define DOCKER_LAYER "application/vnd.docker.image.rootfs.diff.tar"
#define DOCKER_LAYER_FOREIGN "application/vnd.docker.image.rootfs.foreign.diff.tar"

static const struct {
        const char *mt;
        image_compression c;
        bool foreign;
} layer_types[] = {
        { OCI_LAYER, IMAGE_COMPRESSION_NONE, false },
        { OCI_LAYER "+gzip", IMAGE_COMPRESSION_GZIP, false },
        { OCI_LAYER "+zstd", IMAGE_COMPRESSION_ZSTD, false },
        { OCI_LAYER_ND, IMAGE_COMPRESSION_NONE, true },
        { OCI_LAYER_ND "+gzip", IMAGE_COMPRESSION_GZIP, true },
        { OCI_LAYER_ND "+zstd", IMAGE_COMPRESSION_ZSTD, true },
        { DOCKER_LAYER, IMAGE_COMPRESSION_NONE, false },
        { DOCKER_LAYER ".gzip", IMAGE_COMPRESSION_GZIP, false },
        { DOCKER_LAYER ".zstd", IMAGE_COMPRESSION_ZSTD, false },
        { DOCKER_LAYER_FOREIGN ".gzip", IMAGE_COMPRESSION_GZIP, true },
        { DOCKER_LAYER_FOREIGN, IMAGE_COMPRESSION_NONE, true },
};

const char *image_compression_to_string(image_compression c)
{
        switch (c) {
        case IMAGE_COMPRESSION_NONE: return "none";
        case IMAGE_COMPRESSION_GZIP: return "gzip";
        case IMAGE_COMPRESSION_ZSTD: return "zstd";
        }
        return "unknown";
}

int image_layer_media_type(const char *media_type, image_compression *ret_compression,
                           bool *ret_foreign, cc_error **ret_err)
{
        for (size_t i = 0; media_type && i < CC_ARRAY_SIZE(layer_types); i++) {
                if (strcmp(media_type, layer_types[i].mt) != 0)
                        continue;
                if (ret_compression)
                        *ret_compression = layer_types[i].c;
                if (ret_foreign)
                        *ret_foreign = layer_types[i].foreign;
                return 0;
        }
        return cc_error_set(ret_err, -EMEDIUMTYPE, "unsupported layer media type '%.255s'",
                            media_type ?: "(none)");
}

/* ---------- platforms ---------- */

void image_platform_free(image_platform *p)
{
        if (!p)
                return;
        free(p->architecture);
        free(p->os);
        free(p->variant);
        free(p->os_version);
        free(p);
}

static int set_str(char **field, const char *v)
{
        char *n = NULL;
        if (v && *v && !(n = strdup(v)))
                return -ENOMEM;
        free(*field);
        *field = n;
        return 0;
}

int image_platform_normalize(image_platform *p)
{
        int r = 0;
        if (p->os) {
                for (char *c = p->os; *c; c++)
                        if (*c >= 'A' && *c <= 'Z')
                                *c = (char)(*c - 'A' + 'a');
                if (!strcmp(p->os, "macos"))
                        r = set_str(&p->os, "darwin");
        }
        const char *a = p->architecture ?: "";
        const char *v = p->variant ?: "";
        if (!strcmp(a, "i386")) {
                r = r ?: set_str(&p->architecture, "386");
                r = r ?: set_str(&p->variant, NULL);
        } else if (!strcmp(a, "x86_64") || !strcmp(a, "x86-64") || !strcmp(a, "amd64")) {
                r = r ?: set_str(&p->architecture, "amd64");
                if (!strcmp(v, "v1"))
                        r = r ?: set_str(&p->variant, NULL);
        } else if (!strcmp(a, "aarch64") || !strcmp(a, "arm64")) {
                r = r ?: set_str(&p->architecture, "arm64");
                if (!strcmp(v, "8") || !strcmp(v, "v8"))
                        r = r ?: set_str(&p->variant, NULL);
        } else if (!strcmp(a, "armhf")) {
                r = r ?: set_str(&p->architecture, "arm");
                r = r ?: set_str(&p->variant, "v7");
        } else if (!strcmp(a, "armel")) {
                r = r ?: set_str(&p->architecture, "arm");
                r = r ?: set_str(&p->variant, "v6");
        } else if (!strcmp(a, "arm")) {
                if (!*v || !strcmp(v, "7"))
                        r = r ?: set_str(&p->variant, "v7");
                else if (!strcmp(v, "5") || !strcmp(v, "6") || !strcmp(v, "8")) {
                        char nv[3] = { 'v', v[0], 0 };
                        r = r ?: set_str(&p->variant, nv);
                }
        }
        return r;
}

int image_platform_parse(const char *s, image_platform **ret, cc_error **ret_err)
{
        if (!s || strlen(s) > 255)
                return cc_error_set(ret_err, -EINVAL, "invalid platform");
        _cleanup_free_ char *copy = strdup(s);
        _cleanup_(image_platform_freep) image_platform *p = calloc(1, sizeof(*p));
        if (!copy || !p)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        char *parts[4] = { 0 };
        size_t n = 0;
        for (char *save = NULL, *t = strtok_r(copy, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
                if (n == 3)
                        return cc_error_set(ret_err, -EINVAL, "invalid platform '%s'", s);
                parts[n++] = t;
        }
        if (n < 2)
                return cc_error_set(ret_err, -EINVAL,
                                    "invalid platform '%s': want os/arch[/variant]", s);
        if (set_str(&p->os, parts[0]) < 0 || set_str(&p->architecture, parts[1]) < 0 ||
            set_str(&p->variant, parts[2]) < 0 || image_platform_normalize(p) < 0)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        *ret = TAKE_PTR(p);
        return 0;
}

int image_platform_host(image_platform **ret, cc_error **ret_err)
{
        struct utsname u;
        if (uname(&u) < 0)
                return cc_error_errno(ret_err, "uname");
        _cleanup_(image_platform_freep) image_platform *p = calloc(1, sizeof(*p));
        if (!p || set_str(&p->os, "linux") < 0 || set_str(&p->architecture, u.machine) < 0)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        if (!strcmp(u.machine, "armv7l"))
                (void)(set_str(&p->architecture, "arm") ?: set_str(&p->variant, "v7"));
        else if (!strcmp(u.machine, "armv6l"))
                (void)(set_str(&p->architecture, "arm") ?: set_str(&p->variant, "v6"));
        else if (!strcmp(u.machine, "i686"))
                (void)set_str(&p->architecture, "386");
        if (!p->architecture || image_platform_normalize(p) < 0)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        *ret = TAKE_PTR(p);
        return 0;
}

static int arm_version(const char *variant)
{
        if (!variant || variant[0] != 'v' || variant[1] < '5' || variant[1] > '8' || variant[2])
                return -1;
        return variant[1] - '0';
}

static bool streq0(const char *a, const char *b) { return !strcmp(a ?: "", b ?: ""); }

int image_platform_match(const image_platform *want, const image_platform *have)
{
        if (!have)
                return 0; /* platform-less entries match, at lowest priority */
        image_platform h = { 0 };
        if (set_str(&h.os, have->os) < 0 || set_str(&h.architecture, have->architecture) < 0 ||
            set_str(&h.variant, have->variant) < 0 || image_platform_normalize(&h) < 0) {
                free(h.os), free(h.architecture), free(h.variant);
                return -1;
        }
        int score = -1;
        if (!streq0(want->os, h.os))
                goto out;
        if (streq0(want->architecture, h.architecture)) {
                if (streq0(want->variant, h.variant))
                        score = 100;
                else if (!strcmp(want->architecture ?: "", "arm")) {
                        int wv = arm_version(want->variant), hv = arm_version(h.variant);
                        if (wv > 0 && hv > 0 && hv <= wv)
                                score = 100 - 10 * (wv - hv);
                } else if (!h.variant && !strcmp(want->architecture ?: "", "amd64"))
                        score = 90;
        } else if (!strcmp(want->architecture ?: "", "arm64") &&
                   !strcmp(h.architecture ?: "", "arm")) {
                int hv = arm_version(h.variant);
                if (hv > 0)
                        score = 50 - 10 * (8 - hv);
        }
out:
        free(h.os), free(h.architecture), free(h.variant);
        return score;
}

static char *platform_string(const image_platform *p)
{
        char *s = NULL;
        if (!p)
                return strdup("(none)");
        if (asprintf(&s, "%s/%s%s%s", p->os ?: "?", p->architecture ?: "?", p->variant ? "/" : "",
                     p->variant ?: "") < 0)
                return NULL;
        return s;
}

int image_index_select(const image_index *idx, const image_platform *want,
                       const image_descriptor **ret, cc_error **ret_err)
{
        _cleanup_(image_platform_freep) image_platform *host = NULL;
        if (!want) {
                int r = image_platform_host(&host, ret_err);
                if (r < 0)
                        return r;
                want = host;
        }
        const image_descriptor *best = NULL;
        int best_score = -1;
        for (size_t i = 0; i < idx->n_manifests; i++) {
                const image_descriptor *d = &idx->manifests[i];
                if (strcmp(d->media_type, IMAGE_MT_OCI_MANIFEST) != 0 &&
                    strcmp(d->media_type, IMAGE_MT_DOCKER_MANIFEST) != 0)
                        continue;
                int s = image_platform_match(want, d->platform);
                if (s > best_score) {
                        best_score = s;
                        best = d;
                }
        }
        if (best) {
                *ret = best;
                return 0;
        }
        /* Name what there was, bounded. */
        char offered[512] = "";
        size_t used = 0;
        for (size_t i = 0; i < idx->n_manifests && used < sizeof(offered) - 64; i++) {
                _cleanup_free_ char *ps = platform_string(idx->manifests[i].platform);
                int n = snprintf(offered + used, sizeof(offered) - used, "%s%s", used ? ", " : "",
                                 ps ?: "?");
                if (n < 0)
                        break;
                used += (size_t)n;
                if (used >= sizeof(offered))
                        used = sizeof(offered) - 1;
        }
        _cleanup_free_ char *ws = platform_string(want);
        return cc_error_set(ret_err, -ENOENT, "no manifest for platform %s (index offers: %s)",
                            ws ?: "?", used ? offered : "nothing");
}

/* ---------- descriptors ---------- */

static void descriptor_clear(image_descriptor *d)
{
        free(d->media_type);
        free(d->digest);
        image_platform_free(d->platform);
        cc_strv_free(d->urls);
        memset(d, 0, sizeof(*d));
}

static int parse_platform(json_object *o, const char *ctx, image_platform **ret,
                          cc_error **ret_err)
{
        if (!json_object_is_type(o, json_type_object))
                return cc_error_set(ret_err, -EINVAL, "%s: expected an object", ctx);
        _cleanup_(image_platform_freep) image_platform *p = calloc(1, sizeof(*p));
        if (!p)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        int r = image_json_get_string(o, "architecture", true, STR_MAX, ctx, &p->architecture,
                                      ret_err);
        if (r >= 0)
                r = image_json_get_string(o, "os", true, STR_MAX, ctx, &p->os, ret_err);
        if (r >= 0)
                r = image_json_get_string(o, "variant", false, STR_MAX, ctx, &p->variant,
                                          ret_err);
        if (r >= 0)
                r = image_json_get_string(o, "os.version", false, STR_MAX, ctx, &p->os_version,
                                          ret_err);
        if (r < 0)
                return r;
        if (p->variant && !*p->variant) {
                free(p->variant);
                p->variant = NULL;
        }
        if (image_platform_normalize(p) < 0)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        *ret = TAKE_PTR(p);
        return 0;
}

static int parse_descriptor(json_object *o, const char *ctx, image_descriptor *d,
                            cc_error **ret_err)
{
        if (!json_object_is_type(o, json_type_object))
                return cc_error_set(ret_err, -EINVAL, "%s: expected an object", ctx);
        int r = image_json_get_string(o, "mediaType", true, MT_MAX, ctx, &d->media_type, ret_err);
        if (r < 0)
                return r;
        r = image_json_get_string(o, "digest", true, IMAGE_DIGEST_STRLEN + 64, ctx, &d->digest,
                                  ret_err);
        if (r < 0)
                return r;
        _cleanup_free_ char *dctx = NULL;
        if (asprintf(&dctx, "%s.digest", ctx) < 0)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        r = image_digest_check(d->digest, dctx, ret_err);
        if (r < 0)
                return r;
        d->size = -1;
        r = image_json_get_int64(o, "size", true, ctx, &d->size, ret_err);
        if (r < 0)
                return r;
        if (d->size < 0 || d->size > IMAGE_BLOB_SIZE_MAX)
                return cc_error_set(ret_err, -EINVAL, "%s.size: %" PRId64 " out of range", ctx,
                                    d->size);
        json_object *p = image_json_member(o, "platform");
        if (p) {
                _cleanup_free_ char *pctx = NULL;
                if (asprintf(&pctx, "%s.platform", ctx) < 0)
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
                r = parse_platform(p, pctx, &d->platform, ret_err);
                if (r < 0)
                        return r;
        }
        return image_json_get_strv(o, "urls", 16, STR_MAX, ctx, &d->urls, ret_err);
}

/* ---------- documents ---------- */

static const char *strip_content_type(const char *ct, char *buf, size_t bufsz)
{
        if (!ct)
                return NULL;
        while (*ct == ' ' || *ct == '\t')
                ct++;
        size_t n = strcspn(ct, "; \t");
        if (n == 0 || n >= bufsz)
                return NULL;
        memcpy(buf, ct, n);
        buf[n] = '\0';
        return buf;
}

static int classify(const char *mt, image_doc_kind *ret_kind, cc_error **ret_err)
{
        if (!strcmp(mt, IMAGE_MT_OCI_INDEX) || !strcmp(mt, IMAGE_MT_DOCKER_LIST)) {
                *ret_kind = IMAGE_DOC_INDEX;
                return 0;
        }
        if (!strcmp(mt, IMAGE_MT_OCI_MANIFEST) || !strcmp(mt, IMAGE_MT_DOCKER_MANIFEST)) {
                *ret_kind = IMAGE_DOC_MANIFEST;
                return 0;
        }
        if (!strcmp(mt, IMAGE_MT_DOCKER_SCHEMA1) || !strcmp(mt, IMAGE_MT_DOCKER_SCHEMA1_SIGNED))
                return cc_error_set(ret_err, -EPROTONOSUPPORT,
                                    "Docker schema 1 manifests are not supported (%s); the image "
                                    "must be re-pushed with a current client",
                                    mt);
        return cc_error_set(ret_err, -EMEDIUMTYPE, "unsupported manifest media type '%.255s'", mt);
}

static int detect_json(json_object *root, const char *content_type, image_doc_kind *ret_kind,
                       cc_error **ret_err)
{
        if (!json_object_is_type(root, json_type_object))
                return cc_error_set(ret_err, -EINVAL, "manifest: expected a JSON object");
        _cleanup_free_ char *mt = NULL;
        int r = image_json_get_string(root, "mediaType", false, MT_MAX, "manifest", &mt, ret_err);
        if (r < 0)
                return r;
        if (mt)
                return classify(mt, ret_kind, ret_err);
        int64_t sv = 0;
        r = image_json_get_int64(root, "schemaVersion", false, "manifest", &sv, ret_err);
        if (r < 0)
                return r;
        if (sv == 1 || image_json_member(root, "fsLayers"))
                return classify(IMAGE_MT_DOCKER_SCHEMA1, ret_kind, ret_err);
        char ctbuf[256];
        const char *ct = strip_content_type(content_type, ctbuf, sizeof(ctbuf));
        if (ct && strcmp(ct, "application/json") != 0 && strcmp(ct, "text/plain") != 0 &&
            strcmp(ct, "application/octet-stream") != 0)
                return classify(ct, ret_kind, ret_err);
        if (image_json_member(root, "manifests")) {
                *ret_kind = IMAGE_DOC_INDEX;
                return 0;
        }
        if (image_json_member(root, "config") && image_json_member(root, "layers")) {
                *ret_kind = IMAGE_DOC_MANIFEST;
                return 0;
        }
        return cc_error_set(ret_err, -EMEDIUMTYPE,
                            "manifest: cannot tell what kind of document this is");
}

int image_doc_detect(const char *buf, size_t len, const char *content_type,
                     image_doc_kind *ret_kind, cc_error **ret_err)
{
        _cleanup_image_json_ json_object *root = NULL;
        int r = image_json_parse(buf, len, IMAGE_MANIFEST_MAX_SIZE, &root, ret_err);
        if (r < 0)
                return cc_error_prefix(ret_err, "manifest");
        image_doc_kind k;
        r = detect_json(root, content_type, &k, ret_err);
        if (r < 0)
                return r;
        *ret_kind = k;
        return 0;
}

static int check_schema2(json_object *root, const char *what, cc_error **ret_err)
{
        int64_t sv = -1;
        int r = image_json_get_int64(root, "schemaVersion", true, what, &sv, ret_err);
        if (r < 0)
                return r;
        if (sv == 1)
                return classify(IMAGE_MT_DOCKER_SCHEMA1, &(image_doc_kind){ 0 }, ret_err);
        if (sv != 2)
                return cc_error_set(ret_err, -EINVAL, "%s: unsupported schemaVersion %" PRId64,
                                    what, sv);
        return 0;
}

void image_index_free(image_index *idx)
{
        if (!idx)
                return;
        for (size_t i = 0; i < idx->n_manifests; i++)
                descriptor_clear(&idx->manifests[i]);
        free(idx->manifests);
        free(idx->media_type);
        free(idx);
}

int image_index_parse(const char *buf, size_t len, image_index **ret, cc_error **ret_err)
{
        _cleanup_image_json_ json_object *root = NULL;
        int r = image_json_parse(buf, len, IMAGE_MANIFEST_MAX_SIZE, &root, ret_err);
        if (r < 0)
                return cc_error_prefix(ret_err, "index");
        image_doc_kind k;
        r = detect_json(root, NULL, &k, ret_err);
        if (r < 0)
                return r;
        if (k != IMAGE_DOC_INDEX)
                return cc_error_set(ret_err, -EMEDIUMTYPE, "index: document is a manifest");
        r = check_schema2(root, "index", ret_err);
        if (r < 0)
                return r;
        _cleanup_(image_index_freep) image_index *idx = calloc(1, sizeof(*idx));
        if (!idx)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        r = image_json_get_string(root, "mediaType", false, MT_MAX, "index", &idx->media_type,
                                  ret_err);
        if (r < 0)
                return r;
        if (!idx->media_type && !(idx->media_type = strdup(IMAGE_MT_OCI_INDEX)))
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        json_object *arr = image_json_member(root, "manifests");
        if (!arr || !json_object_is_type(arr, json_type_array))
                return cc_error_set(ret_err, -EINVAL, "index.manifests: expected an array");
        size_t n = json_object_array_length(arr);
        if (n > IMAGE_MAX_MANIFESTS)
                return cc_error_set(ret_err, -E2BIG, "index: too many manifests (%zu)", n);
        idx->manifests = calloc(n ?: 1, sizeof(image_descriptor));
        if (!idx->manifests)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                char ctx[64];
                snprintf(ctx, sizeof(ctx), "index.manifests[%zu]", i);
                idx->n_manifests = i + 1;
                r = parse_descriptor(json_object_array_get_idx(arr, i), ctx, &idx->manifests[i],
                                     ret_err);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(idx);
        return 0;
}

void image_manifest_free(image_manifest *m)
{
        if (!m)
                return;
        descriptor_clear(&m->config);
        for (size_t i = 0; i < m->n_layers; i++)
                descriptor_clear(&m->layers[i]);
        free(m->layers);
        free(m->media_type);
        free(m);
}

int image_manifest_parse(const char *buf, size_t len, image_manifest **ret, cc_error **ret_err)
{
        _cleanup_image_json_ json_object *root = NULL;
        int r = image_json_parse(buf, len, IMAGE_MANIFEST_MAX_SIZE, &root, ret_err);
        if (r < 0)
                return cc_error_prefix(ret_err, "manifest");
        image_doc_kind k;
        r = detect_json(root, NULL, &k, ret_err);
        if (r < 0)
                return r;
        if (k != IMAGE_DOC_MANIFEST)
                return cc_error_set(ret_err, -EMEDIUMTYPE,
                                    "manifest: document is an index, not a manifest");
        r = check_schema2(root, "manifest", ret_err);
        if (r < 0)
                return r;
        _cleanup_(image_manifest_freep) image_manifest *m = calloc(1, sizeof(*m));
        if (!m)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        r = image_json_get_string(root, "mediaType", false, MT_MAX, "manifest", &m->media_type,
                                  ret_err);
        if (r < 0)
                return r;
        if (!m->media_type && !(m->media_type = strdup(IMAGE_MT_OCI_MANIFEST)))
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        json_object *cfg = image_json_member(root, "config");
        if (!cfg)
                return cc_error_set(ret_err, -EINVAL, "manifest: missing field 'config'");
        r = parse_descriptor(cfg, "manifest.config", &m->config, ret_err);
        if (r < 0)
                return r;
        if (strcmp(m->config.media_type, IMAGE_MT_OCI_CONFIG) != 0 &&
            strcmp(m->config.media_type, IMAGE_MT_DOCKER_CONFIG) != 0)
                return cc_error_set(ret_err, -EMEDIUMTYPE,
                                    "manifest: config media type '%s' is not a container image "
                                    "config",
                                    m->config.media_type);
        if (m->config.size > (int64_t)IMAGE_CONFIG_MAX_SIZE)
                return cc_error_set(ret_err, -E2BIG, "manifest: config too large (%" PRId64
                                    " bytes)", m->config.size);
        json_object *arr = image_json_member(root, "layers");
        if (!arr || !json_object_is_type(arr, json_type_array))
                return cc_error_set(ret_err, -EINVAL, "manifest.layers: expected an array");
        size_t n = json_object_array_length(arr);
        if (n > IMAGE_MAX_LAYERS)
                return cc_error_set(ret_err, -E2BIG, "manifest: too many layers (%zu)", n);
        m->layers = calloc(n ?: 1, sizeof(image_descriptor));
        if (!m->layers)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                char ctx[64];
                snprintf(ctx, sizeof(ctx), "manifest.layers[%zu]", i);
                m->n_layers = i + 1;
                r = parse_descriptor(json_object_array_get_idx(arr, i), ctx, &m->layers[i],
                                     ret_err);
                if (r < 0)
                        return r;
                r = image_layer_media_type(m->layers[i].media_type, NULL, NULL, ret_err);
                if (r < 0)
                        return cc_error_prefix(ret_err, "%s", ctx);
        }
        *ret = TAKE_PTR(m);
        return 0;
}

/* ---------- config ---------- */

void image_config_free(image_config *c)
{
        if (!c)
                return;
        free(c->platform.architecture);
        free(c->platform.os);
        free(c->platform.variant);
        free(c->platform.os_version);
        free(c->user);
        cc_strv_free(c->entrypoint);
        cc_strv_free(c->cmd);
        cc_strv_free(c->env);
        free(c->working_dir);
        cc_strv_free(c->exposed_ports);
        cc_strv_free(c->volumes);
        for (size_t i = 0; i < c->n_labels; i++) {
                free(c->labels[i].key);
                free(c->labels[i].value);
        }
        free(c->labels);
        free(c->stop_signal);
        cc_strv_free(c->diff_ids);
        free(c);
}

static int parse_labels(json_object *cfg, image_config *c, cc_error **ret_err)
{
        json_object *l = image_json_member(cfg, "Labels");
        if (!l)
                return 0;
        if (!json_object_is_type(l, json_type_object))
                return cc_error_set(ret_err, -EINVAL, "config.config.Labels: expected an object");
        size_t n = (size_t)json_object_object_length(l);
        if (n > LIST_MAX)
                return cc_error_set(ret_err, -E2BIG, "config.config.Labels: too many labels");
        c->labels = calloc(n ?: 1, sizeof(image_kv));
        if (!c->labels)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        json_object_object_foreach(l, k, v) {
                if (c->n_labels >= n)
                        break;
                char ctx[80];
                snprintf(ctx, sizeof(ctx), "config.config.Labels[%.40s]", k);
                if (strlen(k) > STR_MAX)
                        return cc_error_set(ret_err, -EINVAL, "config.config.Labels: key too long");
                image_kv *kv = &c->labels[c->n_labels];
                if (!(kv->key = strdup(k)))
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
                c->n_labels++;
                int r = image_json_string_dup(v, LABEL_VALUE_MAX, ctx, &kv->value, ret_err);
                if (r < 0)
                        return r;
        }
        return 0;
}

int image_config_parse(const char *buf, size_t len, image_config **ret, cc_error **ret_err)
{
        _cleanup_image_json_ json_object *root = NULL;
        int r = image_json_parse(buf, len, IMAGE_CONFIG_MAX_SIZE, &root, ret_err);
        if (r < 0)
                return cc_error_prefix(ret_err, "image config");
        if (!json_object_is_type(root, json_type_object))
                return cc_error_set(ret_err, -EINVAL, "config: expected a JSON object");
        _cleanup_(image_config_freep) image_config *c = calloc(1, sizeof(*c));
        if (!c)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        r = image_json_get_string(root, "architecture", true, STR_MAX, "config",
                                  &c->platform.architecture, ret_err);
        if (r >= 0)
                r = image_json_get_string(root, "os", true, STR_MAX, "config", &c->platform.os,
                                          ret_err);
        if (r >= 0)
                r = image_json_get_string(root, "variant", false, STR_MAX, "config",
                                          &c->platform.variant, ret_err);
        if (r >= 0)
                r = image_json_get_string(root, "os.version", false, STR_MAX, "config",
                                          &c->platform.os_version, ret_err);
        if (r < 0)
                return r;
        if (image_platform_normalize(&c->platform) < 0)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");

        json_object *cfg = image_json_member(root, "config");
        if (cfg) {
                const char *ctx = "config.config";
                if (!json_object_is_type(cfg, json_type_object))
                        return cc_error_set(ret_err, -EINVAL, "%s: expected an object", ctx);
                if ((r = image_json_get_string(cfg, "User", false, STR_MAX, ctx, &c->user,
                                               ret_err)) < 0 ||
                    (r = image_json_get_strv(cfg, "Entrypoint", LIST_MAX, ARG_MAX_LEN, ctx,
                                             &c->entrypoint, ret_err)) < 0 ||
                    (r = image_json_get_strv(cfg, "Cmd", LIST_MAX, ARG_MAX_LEN, ctx, &c->cmd,
                                             ret_err)) < 0 ||
                    (r = image_json_get_strv(cfg, "Env", LIST_MAX, ARG_MAX_LEN, ctx, &c->env,
                                             ret_err)) < 0 ||
                    (r = image_json_get_string(cfg, "WorkingDir", false, STR_MAX, ctx,
                                               &c->working_dir, ret_err)) < 0 ||
                    (r = image_json_get_keys(cfg, "ExposedPorts", LIST_MAX, 64, ctx,
                                             &c->exposed_ports, ret_err)) < 0 ||
                    (r = image_json_get_keys(cfg, "Volumes", LIST_MAX, STR_MAX, ctx,
                                             &c->volumes, ret_err)) < 0 ||
                    (r = image_json_get_string(cfg, "StopSignal", false, 64, ctx,
                                               &c->stop_signal, ret_err)) < 0 ||
                    (r = parse_labels(cfg, c, ret_err)) < 0)
                        return r;
        }

        json_object *rootfs = image_json_member(root, "rootfs");
        if (!rootfs || !json_object_is_type(rootfs, json_type_object))
                return cc_error_set(ret_err, -EINVAL, "config.rootfs: missing or not an object");
        _cleanup_free_ char *type = NULL;
        r = image_json_get_string(rootfs, "type", true, 64, "config.rootfs", &type, ret_err);
        if (r < 0)
                return r;
        if (strcmp(type, "layers") != 0)
                return cc_error_set(ret_err, -EINVAL, "config.rootfs.type: '%s' is not 'layers'",
                                    type);
        if (!image_json_member(rootfs, "diff_ids"))
                return cc_error_set(ret_err, -EINVAL, "config.rootfs: missing field 'diff_ids'");
        r = image_json_get_strv(rootfs, "diff_ids", IMAGE_MAX_LAYERS, 128, "config.rootfs",
                                &c->diff_ids, ret_err);
        if (r < 0)
                return r;
        for (char **d = c->diff_ids; *d; d++) {
                char ctx[64];
                snprintf(ctx, sizeof(ctx), "config.rootfs.diff_ids[%zu]", c->n_diff_ids);
                r = image_digest_check(*d, ctx, ret_err);
                if (r < 0)
                        return r;
                c->n_diff_ids++;
        }
        *ret = TAKE_PTR(c);
        return 0;
}

int image_manifest_check_config(const image_manifest *m, const image_config *c,
                                cc_error **ret_err)
{
        if (m->n_layers != c->n_diff_ids)
                return cc_error_set(ret_err, -EINVAL,
                                    "manifest has %zu layers but config lists %zu diff_ids",
                                    m->n_layers, c->n_diff_ids);
        if (c->platform.os && strcmp(c->platform.os, "linux") != 0)
                return cc_error_set(ret_err, -EINVAL, "image is for os '%s', not linux",
                                    c->platform.os);
        return 0;
}

int image_chain_ids(char *const *diff_ids, size_t n, char ***ret, cc_error **ret_err)
{
        _cleanup_strv_free_ char **out = calloc(n + 1, sizeof(char *));
        if (!out)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                int r = image_digest_check(diff_ids[i], "diff_id", ret_err);
                if (r < 0)
                        return r;
                if (i == 0) {
                        out[0] = strdup(diff_ids[0]);
                } else {
                        char buf[2 * IMAGE_DIGEST_BUFSIZE];
                        int len = snprintf(buf, sizeof(buf), "%s %s", out[i - 1], diff_ids[i]);
                        out[i] = malloc(IMAGE_DIGEST_BUFSIZE);
                        if (out[i] && image_sha256_buf(buf, (size_t)len, out[i]) < 0)
                                return cc_error_set(ret_err, -EIO, "sha256 failed");
                }
                if (!out[i])
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        *ret = TAKE_PTR(out);
        return 0;
}
