/* SPDX-License-Identifier: Apache-2.0 */
/* OCI distribution (registry v2 API) client on libcurl.
 *
 * One image_registry handle talks to one repository ("library/busybox") of
 * one registry, through its endpoints: the configured mirrors in order, then
 * the origin. Requests:
 *
 *   GET /v2/<name>/manifests/<tag|digest>   bounded body, Accept: OCI index +
 *                                           manifest, Docker list + schema2
 *   GET /v2/<name>/blobs/<digest>           streamed into the store's ingest
 *                                           writer, resumed with Range
 *
 * Auth: anonymous, then what a 401 challenge asks for: Bearer (token fetched
 * from the realm, with basic credentials or a refresh token if given, cached
 * per (registry, scope) until it expires) or Basic. Credentials and tokens are
 * only ever sent to the origin registry (and its token realm), never to a
 * mirror nor to the host a redirect points at, and never logged. Mirrors are
 * asked anonymously (anonymous bearer tokens if they challenge); a mirror that
 * answers 401/403, like one that answers 404, is passed over for the next
 * endpoint (containerd's behaviour: CRI credentials are for the origin).
 *
 * Transient failures (connection refused/reset, timeouts, 429, 5xx) are
 * retried with exponential backoff a bounded number of times per endpoint,
 * then the next endpoint is tried. Errors are negative errno:
 *   -ENOENT       manifest/blob unknown (message carries the registry's)
 *   -EACCES       unauthorized after authenticating
 *   -ECONNREFUSED, -ECONNRESET, -ETIMEDOUT, -EHOSTUNREACH, -ECONNABORTED (TLS),
 *   -EAGAIN       (429/5xx after retries)   connection-level trouble
 *   -EBADMSG      digest mismatch
 *   -EFBIG        a response over its size limit
 *   -EINVAL       malformed response, -EPROTONOSUPPORT schema1 manifest
 *   -ECANCELED    the cancel flag was raised */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

#include "common/error.h"
#include "image/ref.h"
#include "image/store.h"

/* Same shape as cc_config_registry (common/config.h): the lead passes one
 * through field by field. */
typedef struct image_registry_config {
        const char *host;          /* "HOST[:PORT]" this applies to (informational) */
        char *const *mirrors;      /* NULL or NULL-terminated; "http(s)://host[:port][/prefix]" */
        bool insecure_skip_verify; /* do not verify TLS certificates (origin and mirrors) */
        bool plain_http;           /* speak HTTP to the origin instead of HTTPS */
        const char *ca_file;       /* NULL or "": system CAs; else a PEM bundle trusted in
                                    * addition to them (CURLOPT_CAINFO; the system CA
                                    * directory stays) for the origin, the mirrors and
                                    * the token realm of this registry */
} image_registry_config;

/* From the CRI AuthConfig. All optional; at most one kind is used:
 * registry_token > identity_token > username/password. */
typedef struct image_registry_auth {
        const char *username;
        const char *password;
        const char *identity_token; /* OAuth2 refresh token for the token realm */
        const char *registry_token; /* bearer token sent as is */
} image_registry_auth;

/* Thread-safe cache of bearer tokens keyed by (registry, scope, credentials).
 * Share one between pulls (the daemon keeps one); NULL in the options means a
 * private cache per handle. */
typedef struct image_token_cache image_token_cache;
int image_token_cache_new(image_token_cache **ret, cc_error **ret_err);
void image_token_cache_free(image_token_cache *c);
static inline void image_token_cache_freep(image_token_cache **c) { image_token_cache_free(*c); }
/* How many tokens the cache fetched from a realm so far (for tests). */
unsigned image_token_cache_fetches(image_token_cache *c);

typedef struct image_registry_opts {
        const image_registry_config *config; /* NULL: HTTPS, verified, no mirrors */
        const image_registry_auth *auth;     /* NULL: anonymous */
        image_token_cache *tokens;           /* NULL: private cache */
        const atomic_bool *cancelled;        /* polled during transfers; may be NULL */
        size_t max_manifest_size;            /* 0 = 4 MiB */
        long connect_timeout_ms;             /* 0 = 30 s */
        long low_speed_time_s;               /* abort below 1 byte/s for this long; 0 = 30 s */
        unsigned max_attempts;               /* per endpoint; 0 = 4 */
        unsigned backoff_ms;                 /* first retry delay, doubled each time; 0 = 250 ms */
} image_registry_opts;

typedef struct image_registry image_registry;

/* A handle for ref's repository. Does no I/O. opts is copied, but what it
 * points to (config, auth strings, token cache, cancel flag) is borrowed and
 * must outlive the handle. A handle is used by one thread at a time (one
 * pull); the token cache is what pulls share. */
int image_registry_new(const image_ref *ref, const image_registry_opts *opts,
                       image_registry **ret, cc_error **ret_err);
void image_registry_free(image_registry *r);
static inline void image_registry_freep(image_registry **r) { image_registry_free(*r); }
#define _cleanup_image_registry_ __attribute__((cleanup(image_registry_freep)))

/* Fetches a manifest or index by tag or digest ("sha256:..."). When object is
 * a digest, the body must hash to it. ret_digest receives the body's sha256
 * (which, for a tag, must agree with Docker-Content-Digest when the registry
 * sends one); ret_content_type the HTTP Content-Type (may be NULL). The body
 * must be an index or a schema2/OCI manifest (schema1: -EPROTONOSUPPORT).
 * Body is NUL-terminated. All ret_* but ret_buf optional. Later blob requests
 * of this handle start at the endpoint (mirror) that served the manifest. */
int image_registry_get_manifest(image_registry *r, const char *object, char **ret_buf,
                                size_t *ret_len, char **ret_content_type, char **ret_digest,
                                cc_error **ret_err);

/* Downloads blob `digest` of `size` bytes into the store (blocking). Returns 1
 * if the store already had it, 0 if downloaded now. */
int image_registry_fetch_blob(image_registry *r, image_store *s, const char *digest,
                              int64_t size, cc_error **ret_err);

/* ---- Non-blocking blob transfers, for a caller that drives a curl multi ----
 *
 *   x = image_blob_xfer_new(r, w, digest, size)  w from image_store_ingest_begin()
 *   curl_multi_add_handle(m, image_blob_xfer_easy(x))
 *   ... when curl reports the easy handle done:
 *   curl_multi_remove_handle(m, easy)
 *   r = image_blob_xfer_done(x, curl_result, &delay_ms, &err)
 *     r == 0: finished, the writer was committed (blob verified and in place)
 *     r == 1: re-add image_blob_xfer_easy(x) after delay_ms (retry, auth
 *             challenge answered, redirect, next endpoint)
 *     r <  0: failed; the writer was aborted (partial kept for resume when the
 *             failure was a network one)
 *   image_blob_xfer_free(x)                      aborts the writer if still held
 *
 * image_blob_xfer_done() may block briefly to fetch a token. */
typedef struct image_blob_xfer image_blob_xfer;
int image_blob_xfer_new(image_registry *r, image_ingest *w, const char *digest, int64_t size,
                        image_blob_xfer **ret, cc_error **ret_err);
CURL *image_blob_xfer_easy(image_blob_xfer *x);
int image_blob_xfer_done(image_blob_xfer *x, CURLcode result, long *ret_delay_ms,
                         cc_error **ret_err);
/* Bytes received so far by this transfer (not counting a resumed prefix). */
int64_t image_blob_xfer_received(const image_blob_xfer *x);
void image_blob_xfer_free(image_blob_xfer *x);

/* Once per process before any thread uses the client (curl_global_init);
 * idempotent and thread-safe via pthread_once. */
int image_registry_global_init(cc_error **ret_err);
