/* SPDX-License-Identifier: Apache-2.0 */
#include "image/commit.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cleanup.h"
#include "image/manifest.h"

#define MANIFEST_MAX (4 << 20)
#define CONFIG_MAX (8 << 20)

int image_commit(image_store *s, image_db *db, const char *manifest_digest,
                 const image_commit_opts *opts, char **ret_id, cc_error **ret_err)
{
        _cleanup_free_ char *mbuf = NULL, *cbuf = NULL;
        size_t mlen = 0, clen = 0;
        if (image_store_read_blob(s, manifest_digest, MANIFEST_MAX, &mbuf, &mlen, ret_err) < 0)
                return cc_error_prefix(ret_err, "manifest %s", manifest_digest);
        _cleanup_(image_manifest_freep) image_manifest *m = NULL;
        if (image_manifest_parse(mbuf, mlen, &m, ret_err) < 0)
                return cc_error_prefix(ret_err, "manifest %s", manifest_digest);
        if (image_store_read_blob(s, m->config.digest, CONFIG_MAX, &cbuf, &clen, ret_err) < 0)
                return cc_error_prefix(ret_err, "config %s", m->config.digest);
        _cleanup_(image_config_freep) image_config *c = NULL;
        if (image_config_parse(cbuf, clen, &c, ret_err) < 0)
                return cc_error_prefix(ret_err, "config %s", m->config.digest);
        if (image_manifest_check_config(m, c, ret_err) < 0)
                return cc_error_prefix(ret_err, "image %s", m->config.digest);
        _cleanup_strv_free_ char **chains = NULL;
        if (image_chain_ids(c->diff_ids, c->n_diff_ids, &chains, ret_err) < 0)
                return -EINVAL;

        image_info info = { 0 };
        info.id = m->config.digest;
        info.manifest_digest = (char *)manifest_digest;
        char *tags[2] = { (char *)opts->repo_tag, NULL };
        char *digests[2] = { (char *)opts->repo_digest, NULL };
        char *none[1] = { NULL };
        info.repo_tags = opts->repo_tag ? tags : none;
        info.repo_digests = opts->repo_digest ? digests : none;
        info.size = m->config.size;
        info.n_layers = m->n_layers;
        _cleanup_free_ image_layer_rec *layers = calloc(m->n_layers ? m->n_layers : 1, sizeof(*layers));
        if (!layers)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        info.layers = layers;
        for (size_t i = 0; i < m->n_layers; i++) {
                if (opts->cancelled && atomic_load(opts->cancelled))
                        return cc_error_set(ret_err, -ECANCELED, "cancelled");
                const image_descriptor *d = &m->layers[i];
                int r = image_layer_unpack(s, d->digest, d->media_type, c->diff_ids[i], chains[i],
                                           opts->unpack, ret_err);
                if (r < 0)
                        return cc_error_prefix(ret_err, "layer %zu (%s)", i, d->digest);
                layers[i] = (image_layer_rec){ d->digest, d->media_type, d->size, c->diff_ids[i], chains[i] };
                info.size += d->size;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        info.pulled_at_ns = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
        int r = image_db_put(db, &info, ret_err);
        if (r < 0)
                return r;
        *ret_id = strdup(m->config.digest);
        if (!*ret_id)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        return 0;
}
