/* SPDX-License-Identifier: Apache-2.0 */
#include "config.h"

#include "image/pull.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "image/util.h"

#define MAX_CONCURRENCY 32
#define POLL_MS 100

static uint64_t now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static bool cancelled(const image_pull_opts *o)
{
        return o->registry.cancelled && atomic_load(o->registry.cancelled);
}

void image_pull_result_clear(image_pull_result *r)
{
        if (!r)
                return;
        for (size_t i = 0; i < r->n_layers; i++) {
                free(r->layers[i].digest);
                free(r->layers[i].media_type);
                free(r->layers[i].diff_id);
                free(r->layers[i].chain_id);
        }
        free(r->layers);
        free(r->repo_digest);
        free(r->manifest_digest);
        free(r->manifest_media_type);
        free(r->config_digest);
        *r = (image_pull_result){ 0 };
}

/* ------------------------------------------------- parallel layer fetch -- */

typedef enum slot_state {
        SLOT_PENDING,
        SLOT_BEGINNING, /* a helper thread waits in image_store_ingest_begin */
        SLOT_RUNNING,   /* the transfer is in the multi handle */
        SLOT_WAITING,   /* retry backoff */
        SLOT_DONE,
} slot_state;

typedef struct slot {
        const image_descriptor *d;
        slot_state state;
        image_store *store;
        /* begin helper */
        pthread_t th;
        atomic_bool begun; /* the helper finished */
        int begin_r;
        image_ingest *w;
        cc_error *begin_err;
        CURLM *multi;
        /* transfer */
        image_blob_xfer *x;
        uint64_t not_before;
} slot;

/* image_store_ingest_begin() blocks while another thread ingests the same
 * digest. Calling it on the multi loop's thread could deadlock two pulls
 * that each hold one blob and wait for the other's, so it runs on a helper. */
static void *begin_thread(void *arg)
{
        slot *sl = arg;
        sl->begin_r = image_store_ingest_begin(sl->store, sl->d->digest, sl->d->size, &sl->w,
                                               &sl->begin_err);
        atomic_store(&sl->begun, true);
        curl_multi_wakeup(sl->multi);
        return NULL;
}

static void slot_teardown(slot *sl, CURLM *m)
{
        if (sl->state == SLOT_BEGINNING) {
                pthread_join(sl->th, NULL);
                if (sl->begin_r == 0 && sl->w)
                        image_ingest_abort(sl->w, true);
                sl->w = NULL;
                cc_error_free(sl->begin_err);
                sl->begin_err = NULL;
        }
        if (sl->x) {
                if (sl->state == SLOT_RUNNING)
                        curl_multi_remove_handle(m, image_blob_xfer_easy(sl->x));
                image_blob_xfer_free(sl->x); /* aborts the writer, keeping the partial */
                sl->x = NULL;
        }
        sl->state = SLOT_DONE;
}

static int fetch_layers(image_store *s, image_registry *reg, const image_descriptor *layers,
                        size_t n, const image_pull_opts *opts, int64_t *downloaded,
                        cc_error **ret_err)
{
        _cleanup_free_ slot *slots = calloc(n ? n : 1, sizeof(*slots));
        if (!slots)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        CURLM *m = curl_multi_init();
        if (!m)
                return cc_error_set(ret_err, -ENOMEM, "curl_multi_init failed");
        size_t n_slots = 0;
        for (size_t i = 0; i < n; i++) {
                bool dup = false;
                for (size_t j = 0; j < n_slots && !dup; j++)
                        dup = strcmp(slots[j].d->digest, layers[i].digest) == 0;
                if (dup)
                        continue;
                slots[n_slots].d = &layers[i];
                slots[n_slots].store = s;
                slots[n_slots].multi = m;
                atomic_init(&slots[n_slots].begun, false);
                n_slots++;
        }
        unsigned conc = opts->concurrency ? opts->concurrency : 3;
        if (conc > MAX_CONCURRENCY)
                conc = MAX_CONCURRENCY;

        int r = 0;
        cc_error *err = NULL;
        size_t done = 0;
        while (done < n_slots) {
                if (cancelled(opts)) {
                        r = cc_error_set(&err, -ECANCELED, "cancelled");
                        break;
                }
                uint64_t now = now_ms();
                unsigned active = 0;
                long wait_ms = POLL_MS;
                /* Move slots along. */
                for (size_t i = 0; i < n_slots && r >= 0; i++) {
                        slot *sl = &slots[i];
                        if (sl->state == SLOT_BEGINNING && atomic_load(&sl->begun)) {
                                pthread_join(sl->th, NULL);
                                if (sl->begin_r < 0) {
                                        r = cc_error_propagate(&err, TAKE_PTR(sl->begin_err));
                                        cc_error_prefix(&err, "layer %s", sl->d->digest);
                                        sl->state = SLOT_DONE;
                                        break;
                                }
                                if (sl->begin_r == 1) { /* already there */
                                        sl->state = SLOT_DONE;
                                        done++;
                                        continue;
                                }
                                image_ingest *w = TAKE_PTR(sl->w);
                                r = image_blob_xfer_new(reg, w, sl->d->digest, sl->d->size,
                                                        &sl->x, &err);
                                if (r < 0) {
                                        image_ingest_abort(w, true);
                                        sl->state = SLOT_DONE;
                                        break;
                                }
                                if (curl_multi_add_handle(m, image_blob_xfer_easy(sl->x)) != CURLM_OK) {
                                        r = cc_error_set(&err, -ENOMEM, "curl_multi_add_handle failed");
                                        sl->state = SLOT_WAITING; /* not in the multi */
                                        break;
                                }
                                sl->state = SLOT_RUNNING;
                        }
                        if (sl->state == SLOT_WAITING && sl->not_before <= now) {
                                if (curl_multi_add_handle(m, image_blob_xfer_easy(sl->x)) != CURLM_OK) {
                                        r = cc_error_set(&err, -ENOMEM, "curl_multi_add_handle failed");
                                        break;
                                }
                                sl->state = SLOT_RUNNING;
                        }
                        if (sl->state == SLOT_WAITING && (long)(sl->not_before - now) < wait_ms)
                                wait_ms = (long)(sl->not_before - now);
                        if (sl->state != SLOT_PENDING && sl->state != SLOT_DONE)
                                active++;
                }
                if (r < 0)
                        break;
                for (size_t i = 0; i < n_slots && active < conc; i++) {
                        slot *sl = &slots[i];
                        if (sl->state != SLOT_PENDING)
                                continue;
                        if (pthread_create(&sl->th, NULL, begin_thread, sl) != 0) {
                                r = cc_error_set(&err, -EAGAIN, "cannot start a thread");
                                break;
                        }
                        sl->state = SLOT_BEGINNING;
                        active++;
                }
                if (r < 0)
                        break;

                int running = 0;
                CURLMcode mc = curl_multi_perform(m, &running);
                if (mc != CURLM_OK) {
                        r = cc_error_set(&err, -EIO, "curl_multi_perform: %s", curl_multi_strerror(mc));
                        break;
                }
                CURLMsg *msg;
                int left;
                while (r >= 0 && (msg = curl_multi_info_read(m, &left))) {
                        if (msg->msg != CURLMSG_DONE)
                                continue;
                        CURL *e = msg->easy_handle;
                        CURLcode res = msg->data.result;
                        slot *sl = NULL;
                        for (size_t i = 0; i < n_slots && !sl; i++)
                                if (slots[i].x && image_blob_xfer_easy(slots[i].x) == e)
                                        sl = &slots[i];
                        curl_multi_remove_handle(m, e);
                        if (!sl)
                                continue;
                        sl->state = SLOT_WAITING;
                        long delay = 0;
                        int xr = image_blob_xfer_done(sl->x, res, &delay, &err);
                        if (xr == 1) {
                                sl->not_before = now_ms() + (uint64_t)delay;
                                continue;
                        }
                        *downloaded += image_blob_xfer_received(sl->x);
                        image_blob_xfer_free(sl->x);
                        sl->x = NULL;
                        sl->state = SLOT_DONE;
                        if (xr < 0) {
                                r = cc_error_prefix(&err, "layer %s", sl->d->digest);
                                break;
                        }
                        log_debug("layer %s: downloaded", sl->d->digest);
                        done++;
                }
                if (r < 0 || done >= n_slots)
                        break;
                mc = curl_multi_poll(m, NULL, 0, (int)(wait_ms > 0 ? wait_ms : 0), NULL);
                if (mc != CURLM_OK) {
                        r = cc_error_set(&err, -EIO, "curl_multi_poll: %s", curl_multi_strerror(mc));
                        break;
                }
        }
        for (size_t i = 0; i < n_slots; i++)
                slot_teardown(&slots[i], m);
        curl_multi_cleanup(m);
        if (r < 0)
                return cc_error_propagate(ret_err, err);
        cc_error_free(err);
        return 0;
}

/* ------------------------------------------------------------- manifest -- */

static int get_doc(image_store *s, image_registry *reg, const char *object, const char *what,
                   char **ret_buf, size_t *ret_len, char **ret_digest, cc_error **ret_err)
{
        /* A digest we already hold needs no network (the store re-verifies it). */
        if (image_digest_valid(object) && image_store_has(s, object) == 1) {
                cc_error *e = NULL;
                if (image_store_read_blob(s, object, IMAGE_MANIFEST_MAX_SIZE, ret_buf, ret_len,
                                          &e) == 0) {
                        *ret_digest = strdup(object);
                        if (!*ret_digest) {
                                free(TAKE_PTR(*ret_buf));
                                return cc_error_set(ret_err, -ENOMEM, "out of memory");
                        }
                        return 1;
                }
                log_debug("%s %s: stored copy unusable (%s), fetching", what, object, e->msg);
                cc_error_free(e);
        }
        int r = image_registry_get_manifest(reg, object, ret_buf, ret_len, NULL, ret_digest,
                                            ret_err);
        if (r < 0)
                return cc_error_prefix(ret_err, "%s", what);
        if (!*ret_digest) {
                free(TAKE_PTR(*ret_buf));
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        return 0;
}

static int do_pull(image_store *s, const image_ref *ref, const image_pull_opts *opts,
                   image_pull_result *res, cc_error **ret_err)
{
        _cleanup_(image_registry_freep) image_registry *reg = NULL;
        int r = image_registry_new(ref, &opts->registry, &reg, ret_err);
        if (r < 0)
                return r;

        _cleanup_free_ char *top = NULL, *top_digest = NULL, *mbuf = NULL, *mdigest = NULL;
        size_t top_len = 0, mlen = 0;
        r = get_doc(s, reg, image_ref_object(ref), "manifest", &top, &top_len, &top_digest, ret_err);
        if (r < 0)
                return r;
        bool top_stored = r == 1;
        image_doc_kind kind;
        r = image_doc_detect(top, top_len, NULL, &kind, ret_err);
        if (r < 0)
                return r;
        _cleanup_(image_manifest_freep) image_manifest *m = NULL;
        bool is_index = kind == IMAGE_DOC_INDEX;
        bool m_stored = top_stored;
        if (is_index) {
                _cleanup_(image_index_freep) image_index *idx = NULL;
                r = image_index_parse(top, top_len, &idx, ret_err);
                if (r < 0)
                        return cc_error_prefix(ret_err, "index %s", top_digest);
                const image_descriptor *sel = NULL;
                r = image_index_select(idx, opts->platform, &sel, ret_err);
                if (r < 0)
                        return cc_error_prefix(ret_err, "index %s", top_digest);
                if (sel->size > IMAGE_MANIFEST_MAX_SIZE)
                        return cc_error_set(ret_err, -EFBIG, "manifest %s: too large (%" PRId64 " bytes)",
                                            sel->digest, sel->size);
                r = get_doc(s, reg, sel->digest, "manifest", &mbuf, &mlen, &mdigest, ret_err);
                if (r < 0)
                        return r;
                m_stored = r == 1;
                if ((int64_t)mlen != sel->size)
                        return cc_error_set(ret_err, -EBADMSG,
                                            "manifest %s: size %zu, the index says %" PRId64,
                                            sel->digest, mlen, sel->size);
                image_doc_kind k2;
                r = image_doc_detect(mbuf, mlen, NULL, &k2, ret_err);
                if (r < 0)
                        return cc_error_prefix(ret_err, "manifest %s", mdigest);
                if (k2 != IMAGE_DOC_MANIFEST)
                        return cc_error_set(ret_err, -EINVAL,
                                            "manifest %s: an index inside an index is not supported",
                                            mdigest);
        } else {
                mbuf = TAKE_PTR(top);
                mlen = top_len;
                mdigest = TAKE_PTR(top_digest);
        }
        r = image_manifest_parse(mbuf, mlen, &m, ret_err);
        if (r < 0)
                return cc_error_prefix(ret_err, "manifest %s", mdigest);
        for (size_t i = 0; i < m->n_layers; i++) {
                image_compression comp;
                bool foreign;
                r = image_layer_media_type(m->layers[i].media_type, &comp, &foreign, ret_err);
                if (r < 0)
                        return cc_error_prefix(ret_err, "layer %zu (%s)", i, m->layers[i].digest);
        }

        /* Config. */
        if (m->config.size > IMAGE_CONFIG_MAX_SIZE)
                return cc_error_set(ret_err, -EFBIG, "config %s: too large (%" PRId64 " bytes)",
                                    m->config.digest, m->config.size);
        r = image_registry_fetch_blob(reg, s, m->config.digest, m->config.size, ret_err);
        if (r < 0)
                return cc_error_prefix(ret_err, "config %s", m->config.digest);
        if (r == 0)
                res->downloaded += m->config.size;
        _cleanup_free_ char *cbuf = NULL;
        size_t clen = 0;
        r = image_store_read_blob(s, m->config.digest, IMAGE_CONFIG_MAX_SIZE, &cbuf, &clen, ret_err);
        if (r < 0)
                return cc_error_prefix(ret_err, "config %s", m->config.digest);
        _cleanup_(image_config_freep) image_config *c = NULL;
        r = image_config_parse(cbuf, clen, &c, ret_err);
        if (r < 0)
                return cc_error_prefix(ret_err, "config %s", m->config.digest);
        r = image_manifest_check_config(m, c, ret_err);
        if (r < 0)
                return cc_error_prefix(ret_err, "manifest %s", mdigest);
        _cleanup_strv_free_ char **chains = NULL;
        r = image_chain_ids(c->diff_ids, c->n_diff_ids, &chains, ret_err);
        if (r < 0)
                return r;

        /* Layers. */
        if (cancelled(opts))
                return cc_error_set(ret_err, -ECANCELED, "cancelled");
        r = fetch_layers(s, reg, m->layers, m->n_layers, opts, &res->downloaded, ret_err);
        if (r < 0)
                return r;

        /* Everything is in: now the documents that name the blobs. */
        if (!m_stored && (r = image_store_write_blob(s, mdigest, mbuf, mlen, ret_err)) < 0)
                return cc_error_prefix(ret_err, "manifest %s", mdigest);
        if (is_index && !top_stored &&
            (r = image_store_write_blob(s, top_digest, top, top_len, ret_err)) < 0)
                return cc_error_prefix(ret_err, "index %s", top_digest);

        res->layers = calloc(m->n_layers ? m->n_layers : 1, sizeof(*res->layers));
        if (!res->layers)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        res->size = m->config.size;
        for (size_t i = 0; i < m->n_layers; i++) {
                image_pull_layer *l = &res->layers[i];
                res->n_layers++;
                l->digest = strdup(m->layers[i].digest);
                l->media_type = strdup(m->layers[i].media_type);
                l->size = m->layers[i].size;
                l->diff_id = strdup(c->diff_ids[i]);
                l->chain_id = strdup(chains[i]);
                if (!l->digest || !l->media_type || !l->diff_id || !l->chain_id)
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
                res->size += l->size;
        }
        res->repo_digest = strdup(is_index ? top_digest : mdigest);
        res->manifest_digest = strdup(mdigest);
        res->manifest_media_type = strdup(m->media_type);
        res->config_digest = strdup(m->config.digest);
        if (!res->repo_digest || !res->manifest_digest || !res->manifest_media_type ||
            !res->config_digest)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");

        if (opts->layer_done)
                for (size_t i = 0; i < res->n_layers; i++) {
                        if (cancelled(opts))
                                return cc_error_set(ret_err, -ECANCELED, "cancelled");
                        r = opts->layer_done(s, i, &res->layers[i], opts->userdata, ret_err);
                        if (r < 0)
                                return cc_error_prefix(ret_err, "layer %zu (%s)", i,
                                                       res->layers[i].digest);
                }
        return 0;
}

int image_pull(image_store *s, const image_ref *ref, const image_pull_opts *opts,
               image_pull_result *ret, cc_error **ret_err)
{
        static const image_pull_opts none = { 0 };
        if (!opts)
                opts = &none;
        image_pull_result res = { 0 };
        int r = do_pull(s, ref, opts, &res, ret_err);
        if (r < 0) {
                image_pull_result_clear(&res);
                _cleanup_free_ char *name = image_ref_string(ref);
                return cc_error_prefix(ret_err, "pull '%s'", name ? name : "?");
        }
        *ret = res;
        return 0;
}
