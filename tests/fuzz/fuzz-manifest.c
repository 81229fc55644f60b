/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for what a registry (or an image layout) sends as JSON:
 * the document sniffer, the index, manifest and image config parsers, and
 * what runs on their results (platform selection, manifest/config agreement,
 * layer media types, chain ids). A hostile document must give an error,
 * never a crash, a leak or an unbounded allocation.
 *
 * Input: the first byte picks a Content-Type for the sniffer; the rest is
 * split at the first NUL into a manifest/index document and a config.
 * Build and run: tests/fuzz/run.sh BUILDDIR [SECONDS] */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image/manifest.h"
#include "image/util.h"

static const char *const content_types[] = {
        NULL,
        IMAGE_MT_OCI_INDEX,
        IMAGE_MT_OCI_MANIFEST,
        IMAGE_MT_DOCKER_LIST,
        IMAGE_MT_DOCKER_MANIFEST,
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/json",
        "text/plain",
};

static void check_descriptor(const image_descriptor *d)
{
        /* Whatever a parser accepts is safe to use as a store key. */
        if (!image_digest_valid(d->digest) || d->size < 0 || d->size > IMAGE_BLOB_SIZE_MAX)
                abort();
}

static void expect_error(int r, cc_error *err)
{
        if ((r < 0) != (err != NULL))
                abort(); /* set if and only if it fails */
        if (err && (!err->msg || err->code >= 0))
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size < 1)
                return 0;
        const char *ct = content_types[data[0] % (sizeof(content_types) / sizeof(content_types[0]))];
        const char *doc = (const char *)data + 1;
        size_t rest = size - 1;
        const char *nul = memchr(doc, 0, rest);
        size_t doc_len = nul ? (size_t)(nul - doc) : rest;
        const char *cfg = nul ? nul + 1 : NULL;
        size_t cfg_len = nul ? rest - doc_len - 1 : 0;

        cc_error *err = NULL;
        image_doc_kind kind;
        int r = image_doc_detect(doc, doc_len, ct, &kind, &err);
        expect_error(r, err);
        cc_error_free(err);
        err = NULL;

        image_index *idx = NULL;
        r = image_index_parse(doc, doc_len, &idx, &err);
        expect_error(r, err);
        cc_error_free(err);
        err = NULL;
        if (idx) {
                for (size_t i = 0; i < idx->n_manifests; i++)
                        check_descriptor(&idx->manifests[i]);
                const image_descriptor *pick = NULL;
                r = image_index_select(idx, NULL, &pick, &err);
                expect_error(r, err);
                if (r >= 0 && !pick)
                        abort();
                cc_error_free(err);
                err = NULL;
                image_platform *want = NULL;
                if (image_platform_parse("linux/arm/v7", &want, NULL) == 0) {
                        r = image_index_select(idx, want, &pick, &err);
                        expect_error(r, err);
                        cc_error_free(err);
                        err = NULL;
                        image_platform_free(want);
                }
                image_index_free(idx);
        }

        image_manifest *m = NULL;
        r = image_manifest_parse(doc, doc_len, &m, &err);
        expect_error(r, err);
        cc_error_free(err);
        err = NULL;
        if (m) {
                check_descriptor(&m->config);
                for (size_t i = 0; i < m->n_layers; i++) {
                        check_descriptor(&m->layers[i]);
                        image_compression comp;
                        bool foreign;
                        r = image_layer_media_type(m->layers[i].media_type, &comp, &foreign, &err);
                        expect_error(r, err);
                        if (r >= 0 && !image_compression_to_string(comp))
                                abort();
                        cc_error_free(err);
                        err = NULL;
                }
        }

        image_config *c = NULL;
        if (cfg) {
                r = image_config_parse(cfg, cfg_len, &c, &err);
        } else {
                r = image_config_parse(doc, doc_len, &c, &err);
        }
        expect_error(r, err);
        cc_error_free(err);
        err = NULL;
        if (c) {
                size_t n = 0;
                while (c->diff_ids && c->diff_ids[n])
                        n++;
                if (n != c->n_diff_ids)
                        abort();
                for (size_t i = 0; i < n; i++)
                        if (!image_digest_valid(c->diff_ids[i]))
                                abort();
                char **chains = NULL;
                r = image_chain_ids(c->diff_ids, c->n_diff_ids, &chains, &err);
                expect_error(r, err);
                cc_error_free(err);
                err = NULL;
                for (size_t i = 0; chains && chains[i]; i++) {
                        if (!image_digest_valid(chains[i]))
                                abort();
                        free(chains[i]);
                }
                free(chains);
                if (m) {
                        r = image_manifest_check_config(m, c, &err);
                        expect_error(r, err);
                        if (r >= 0 && m->n_layers != c->n_diff_ids)
                                abort();
                        cc_error_free(err);
                        err = NULL;
                }
                image_config_free(c);
        }
        image_manifest_free(m);
        return 0;
}
