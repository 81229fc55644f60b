/* SPDX-License-Identifier: Apache-2.0 */
#include "config.h"

#include "image/registry.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <json-c/json.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "image/manifest.h"
#include "image/util.h"

#define DEFAULT_MANIFEST_MAX (4u << 20)
#define ERROR_BODY_MAX (64u << 10) /* registry error documents, redirect bodies */
#define TOKEN_BODY_MAX (64u << 10)
#define TOKEN_MAX (16u << 10)
#define HEADER_VALUE_MAX 8192
#define MAX_REDIRECTS 5
#define MAX_AUTH_ROUNDS 2
#define TOKEN_DEFAULT_TTL_S 60
#define USER_AGENT "cocoon/" PACKAGE_VERSION

/* ---------------------------------------------------------------- time -- */

static uint64_t now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static bool is_cancelled(const atomic_bool *c) { return c && atomic_load(c); }

/* Backoff sleep in small slices so that a cancel is noticed. */
static int sleep_cancellable(long ms, const atomic_bool *cancelled)
{
        while (ms > 0) {
                if (is_cancelled(cancelled))
                        return -ECANCELED;
                long slice = ms < 50 ? ms : 50;
                struct timespec ts = { 0, slice * 1000000L };
                nanosleep(&ts, NULL);
                ms -= slice;
        }
        return is_cancelled(cancelled) ? -ECANCELED : 0;
}

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_OK;
static void global_init_once(void) { global_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

int image_registry_global_init(cc_error **ret_err)
{
        pthread_once(&global_once, global_init_once);
        if (global_rc != CURLE_OK)
                return cc_error_set(ret_err, -EIO, "curl_global_init: %s",
                                    curl_easy_strerror(global_rc));
        return 0;
}

/* --------------------------------------------------------- token cache -- */

typedef struct token_entry {
        char *key; /* host|scope|sha256(credentials) */
        char *token;
        uint64_t expires_ms;
        struct token_entry *next;
} token_entry;

struct image_token_cache {
        pthread_mutex_t lock;       /* the list */
        pthread_mutex_t fetch_lock; /* one realm request at a time: single-flight */
        token_entry *head;
        unsigned fetches;
};

int image_token_cache_new(image_token_cache **ret, cc_error **ret_err)
{
        image_token_cache *c = calloc(1, sizeof(*c));
        if (!c)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        pthread_mutex_init(&c->lock, NULL);
        pthread_mutex_init(&c->fetch_lock, NULL);
        *ret = c;
        return 0;
}

static void token_entry_free(token_entry *e)
{
        if (!e)
                return;
        free(e->key);
        if (e->token) {
                explicit_bzero(e->token, strlen(e->token));
                free(e->token);
        }
        free(e);
}

void image_token_cache_free(image_token_cache *c)
{
        if (!c)
                return;
        while (c->head) {
                token_entry *e = c->head;
                c->head = e->next;
                token_entry_free(e);
        }
        pthread_mutex_destroy(&c->lock);
        pthread_mutex_destroy(&c->fetch_lock);
        free(c);
}

unsigned image_token_cache_fetches(image_token_cache *c)
{
        pthread_mutex_lock(&c->lock);
        unsigned n = c->fetches;
        pthread_mutex_unlock(&c->lock);
        return n;
}

/* Returns a strdup of a live token for key, or NULL. */
static char *token_lookup(image_token_cache *c, const char *key)
{
        char *t = NULL;
        uint64_t now = now_ms();
        pthread_mutex_lock(&c->lock);
        for (token_entry **p = &c->head; *p;) {
                token_entry *e = *p;
                if (e->expires_ms <= now) { /* drop expired entries on the way */
                        *p = e->next;
                        token_entry_free(e);
                        continue;
                }
                if (strcmp(e->key, key) == 0)
                        t = strdup(e->token);
                p = &e->next;
        }
        pthread_mutex_unlock(&c->lock);
        return t;
}

static void token_forget(image_token_cache *c, const char *key, const char *token)
{
        pthread_mutex_lock(&c->lock);
        for (token_entry **p = &c->head; *p; p = &(*p)->next) {
                token_entry *e = *p;
                if (strcmp(e->key, key) == 0 && (!token || strcmp(e->token, token) == 0)) {
                        *p = e->next;
                        token_entry_free(e);
                        break;
                }
        }
        pthread_mutex_unlock(&c->lock);
}

static int token_store(image_token_cache *c, const char *key, const char *token, long ttl_s)
{
        token_entry *e = calloc(1, sizeof(*e));
        if (!e)
                return -ENOMEM;
        e->key = strdup(key);
        e->token = strdup(token);
        if (!e->key || !e->token) {
                token_entry_free(e);
                return -ENOMEM;
        }
        /* Renew a little early so that a token does not expire in flight. */
        uint64_t ttl_ms = (uint64_t)ttl_s * 1000;
        e->expires_ms = now_ms() + (ttl_ms > 10000 ? ttl_ms - 5000 : ttl_ms);
        token_forget(c, key, NULL);
        pthread_mutex_lock(&c->lock);
        e->next = c->head;
        c->head = e;
        pthread_mutex_unlock(&c->lock);
        return 0;
}

/* ------------------------------------------------------------- handle -- */

typedef struct endpoint {
        char *base;     /* "https://host:port[/prefix]", no trailing slash */
        char *hostport; /* token cache key part */
        bool origin;
        bool basic;     /* the endpoint asked for Basic: send it up front */
        bool bearer;    /* the endpoint asked for Bearer */
} endpoint;

struct image_registry {
        char *repo;  /* "library/busybox" */
        char *scope; /* "repository:library/busybox:pull" */
        endpoint *eps;
        size_t n_eps;
        size_t preferred; /* endpoint that served the last manifest */
        image_registry_opts opts;
        image_registry_auth auth; /* borrowed strings */
        bool have_auth;
        char cred_hash[IMAGE_DIGEST_BUFSIZE]; /* token cache key part */
        image_token_cache *tokens;
        bool own_tokens;
};

static void endpoint_clear(endpoint *e)
{
        free(e->base);
        free(e->hostport);
}

void image_registry_free(image_registry *r)
{
        if (!r)
                return;
        for (size_t i = 0; i < r->n_eps; i++)
                endpoint_clear(&r->eps[i]);
        free(r->eps);
        free(r->repo);
        free(r->scope);
        if (r->own_tokens)
                image_token_cache_free(r->tokens);
        free(r);
}

/* Validates a mirror URL and splits out its host[:port]. */
static int mirror_parse(const char *url, char **ret_base, char **ret_hostport, cc_error **ret_err)
{
        if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
                return cc_error_set(ret_err, -EINVAL, "mirror '%s': not an http(s) URL", url);
        CURLU *u = curl_url();
        if (!u)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        char *host = NULL, *port = NULL, *query = NULL, *user = NULL, *base = NULL, *hp = NULL;
        int r = 0;
        if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
                r = cc_error_set(ret_err, -EINVAL, "mirror '%s': invalid URL", url);
                goto out;
        }
        if (curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK ||
            curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK) {
                r = cc_error_set(ret_err, -EINVAL,
                                 "mirror '%s': query strings and user info are not allowed", url);
                goto out;
        }
        curl_url_get(u, CURLUPART_PORT, &port, 0);
        base = strdup(url);
        if (base) {
                size_t n = strlen(base);
                while (n > 0 && base[n - 1] == '/')
                        base[--n] = '\0';
                /* containerd-style mirror URLs may end in /v2: we add it. */
                if (n >= 3 && strcmp(base + n - 3, "/v2") == 0)
                        base[n - 3] = '\0';
                if (asprintf(&hp, "%s%s%s", host, port ? ":" : "", port ? port : "") < 0)
                        hp = NULL;
        }
        if (!base || !hp) {
                free(base);
                free(hp);
                r = cc_error_set(ret_err, -ENOMEM, "out of memory");
                goto out;
        }
        *ret_base = base;
        *ret_hostport = hp;
out:
        curl_free(host);
        curl_free(port);
        curl_free(query);
        curl_free(user);
        curl_url_cleanup(u);
        return r;
}

int image_registry_new(const image_ref *ref, const image_registry_opts *opts,
                       image_registry **ret, cc_error **ret_err)
{
        int r = image_registry_global_init(ret_err);
        if (r < 0)
                return r;
        static const image_registry_opts none = { 0 };
        if (!opts)
                opts = &none;
        _cleanup_(image_registry_freep) image_registry *reg = calloc(1, sizeof(*reg));
        if (!reg)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        reg->opts = *opts;
        if (!reg->opts.max_manifest_size)
                reg->opts.max_manifest_size = DEFAULT_MANIFEST_MAX;
        if (!reg->opts.connect_timeout_ms)
                reg->opts.connect_timeout_ms = 30000;
        if (!reg->opts.low_speed_time_s)
                reg->opts.low_speed_time_s = 30;
        if (!reg->opts.max_attempts)
                reg->opts.max_attempts = 4;
        if (!reg->opts.backoff_ms)
                reg->opts.backoff_ms = 250;
        if (opts->auth) {
                reg->auth = *opts->auth;
                const image_registry_auth *a = opts->auth;
                reg->have_auth = (a->registry_token && *a->registry_token) ||
                                 (a->identity_token && *a->identity_token) ||
                                 (a->username && *a->username);
                /* Tokens obtained with one set of credentials are not handed to
                 * a request made with another. */
                _cleanup_free_ char *blob = NULL;
                if (asprintf(&blob, "%s%c%s%c%s", a->username ? a->username : "", 0,
                             a->password ? a->password : "", 0,
                             a->identity_token ? a->identity_token : "") < 0)
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
                size_t blen = strlen(a->username ? a->username : "") +
                              strlen(a->password ? a->password : "") +
                              strlen(a->identity_token ? a->identity_token : "") + 2;
                image_sha256_buf(blob, blen, reg->cred_hash);
                explicit_bzero(blob, blen);
        } else {
                strcpy(reg->cred_hash, "anonymous");
        }
        reg->repo = strdup(ref->path);
        if (!reg->repo || asprintf(&reg->scope, "repository:%s:pull", ref->path) < 0) {
                reg->scope = NULL;
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        if (opts->tokens) {
                reg->tokens = opts->tokens;
        } else {
                r = image_token_cache_new(&reg->tokens, ret_err);
                if (r < 0)
                        return r;
                reg->own_tokens = true;
        }

        const image_registry_config *cfg = opts->config;
        size_t n_mirrors = 0;
        if (cfg && cfg->mirrors)
                while (cfg->mirrors[n_mirrors])
                        n_mirrors++;
        if (n_mirrors > 16)
                return cc_error_set(ret_err, -EINVAL, "too many mirrors (%zu > 16)", n_mirrors);
        reg->eps = calloc(n_mirrors + 1, sizeof(*reg->eps));
        if (!reg->eps)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < n_mirrors; i++) {
                r = mirror_parse(cfg->mirrors[i], &reg->eps[i].base, &reg->eps[i].hostport, ret_err);
                if (r < 0)
                        return r;
                reg->n_eps++;
        }
        const char *host = image_ref_registry_host(ref);
        endpoint *o = &reg->eps[reg->n_eps];
        if (asprintf(&o->base, "%s://%s", cfg && cfg->plain_http ? "http" : "https", host) < 0) {
                o->base = NULL;
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        o->hostport = strdup(host);
        if (!o->hostport)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        o->origin = true;
        reg->n_eps++;
        *ret = TAKE_PTR(reg);
        return 0;
}

/* ------------------------------------------------------------ requests -- */

typedef struct buf {
        char *data;
        size_t len, max;
        bool overflow;
        bool truncate; /* drop what exceeds max instead of failing */
} buf;

static int buf_append(buf *b, const void *p, size_t n)
{
        if (n > b->max - b->len) {
                b->overflow = true;
                if (!b->truncate)
                        return -EFBIG;
                n = b->max - b->len;
        }
        if (n == 0)
                return 0;
        char *d = realloc(b->data, b->len + n + 1);
        if (!d)
                return -ENOMEM;
        memcpy(d + b->len, p, n);
        b->len += n;
        d[b->len] = '\0';
        b->data = d;
        return 0;
}

static void buf_reset(buf *b, size_t max, bool truncate)
{
        free(b->data);
        *b = (buf){ .max = max, .truncate = truncate };
}

/* One request: a manifest GET (body in memory) or a blob GET (into an ingest
 * writer). The same struct is the public image_blob_xfer. */
struct image_blob_xfer {
        image_registry *reg;
        CURL *easy;
        struct curl_slist *hdrs;
        char *path;          /* "/v2/<repo>/manifests/<obj>" */
        const char *accept;  /* manifests only */
        char errbuf[CURL_ERROR_SIZE];

        size_t ep;
        unsigned attempt;    /* on this endpoint */
        unsigned auth_round; /* challenges answered on this endpoint */
        unsigned redirects;
        char *redirect_url;  /* following a redirect (never printed: may hold signatures) */
        bool redirect_offhost;
        char *sent_token;    /* the bearer token sent with this try */
        int last_err;        /* error that made us move on, for the final message */

        /* response */
        long status;
        char *www_auth, *content_type, *docker_digest, *content_range;
        buf body; /* manifest body, or an error document */
        int sink_err;
        cc_error *sink_error;

        /* blob */
        bool is_blob;
        image_ingest *w;
        char digest[IMAGE_DIGEST_BUFSIZE];
        int64_t size;
        int64_t start_offset;
        bool sink_started;
        int64_t received;
};
typedef struct image_blob_xfer req;

static void req_reset_response(req *q)
{
        q->status = 0;
        free(q->www_auth);
        free(q->content_type);
        free(q->docker_digest);
        free(q->content_range);
        q->www_auth = q->content_type = q->docker_digest = q->content_range = NULL;
        cc_error_free(q->sink_error);
        q->sink_error = NULL;
        q->sink_err = 0;
        q->sink_started = false;
        q->errbuf[0] = '\0';
}

static void req_free(req *q)
{
        if (!q)
                return;
        req_reset_response(q);
        buf_reset(&q->body, 0, false);
        if (q->easy)
                curl_easy_cleanup(q->easy);
        curl_slist_free_all(q->hdrs);
        free(q->path);
        free(q->redirect_url);
        if (q->sent_token) {
                explicit_bzero(q->sent_token, strlen(q->sent_token));
                free(q->sent_token);
        }
        if (q->w)
                image_ingest_abort(q->w, true);
        free(q);
}

static size_t header_cb(char *data, size_t size, size_t n, void *userdata)
{
        req *q = userdata;
        size_t len = size * n;
        if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) { /* a new response (after 1xx) */
                free(q->www_auth);
                free(q->content_type);
                free(q->docker_digest);
                free(q->content_range);
                q->www_auth = q->content_type = q->docker_digest = q->content_range = NULL;
                return len;
        }
        const char *colon = memchr(data, ':', len);
        if (!colon)
                return len;
        size_t nlen = (size_t)(colon - data);
        const char *v = colon + 1;
        const char *end = data + len;
        while (v < end && (*v == ' ' || *v == '\t'))
                v++;
        while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
                end--;
        size_t vlen = (size_t)(end - v);
        if (vlen > HEADER_VALUE_MAX)
                return len; /* ignore absurd values */
        char **slot = NULL;
#define IS(name) (nlen == sizeof(name) - 1 && strncasecmp(data, name, nlen) == 0)
        if (IS("WWW-Authenticate"))
                slot = &q->www_auth;
        else if (IS("Content-Type"))
                slot = &q->content_type;
        else if (IS("Docker-Content-Digest"))
                slot = &q->docker_digest;
        else if (IS("Content-Range"))
                slot = &q->content_range;
#undef IS
        if (!slot || *slot) /* keep the first one (a Bearer challenge comes first) */
                return len;
        *slot = strndup(v, vlen);
        return len;
}

static int parse_content_range_start(const char *s, int64_t *ret)
{
        /* "bytes START-END/TOTAL" */
        if (!s || strncasecmp(s, "bytes ", 6) != 0)
                return -EINVAL;
        char *e = NULL;
        errno = 0;
        long long v = strtoll(s + 6, &e, 10);
        if (errno || e == s + 6 || *e != '-' || v < 0)
                return -EINVAL;
        *ret = v;
        return 0;
}

/* The blob sink: on the first body bytes of a 2xx, line the writer up with
 * what the server sends (206 from our offset, or 200 from zero). */
static int blob_sink_start(req *q)
{
        q->sink_started = true;
        if (q->status == 206) {
                int64_t start;
                if (parse_content_range_start(q->content_range, &start) < 0 ||
                    start != q->start_offset)
                        return cc_error_set(&q->sink_error, -EINVAL,
                                            "blob %s: partial content does not start at %" PRId64,
                                            q->digest, q->start_offset);
                return 0;
        }
        if (image_ingest_offset(q->w) > 0) {
                log_debug("blob %s: server ignored Range, restarting from 0", q->digest);
                return image_ingest_reset(q->w, &q->sink_error);
        }
        return 0;
}

static size_t write_cb(char *data, size_t size, size_t n, void *userdata)
{
        req *q = userdata;
        size_t len = size * n;
        if (!q->status)
                curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &q->status);
        bool ok = q->status >= 200 && q->status < 300;
        if (!q->is_blob || !ok) {
                int r = buf_append(&q->body, data, len);
                if (r < 0) {
                        q->sink_err = r;
                        return 0;
                }
                return len;
        }
        int r;
        if (!q->sink_started && (r = blob_sink_start(q)) < 0) {
                q->sink_err = r;
                return 0;
        }
        r = image_ingest_write(q->w, data, len, &q->sink_error);
        if (r < 0) {
                q->sink_err = r;
                return 0;
        }
        q->received += (int64_t)len;
        return len;
}

static int progress_cb(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
        req *q = userdata;
        return is_cancelled(q->reg->opts.cancelled) ? 1 : 0;
}

static char *token_key(image_registry *reg, const endpoint *ep)
{
        char *k = NULL;
        if (asprintf(&k, "%s|%s|%s", ep->hostport, reg->scope, reg->cred_hash) < 0)
                return NULL;
        return k;
}

static bool same_origin(const char *a, const char *b)
{
        bool same = false;
        CURLU *ua = curl_url(), *ub = curl_url();
        char *sa = NULL, *sb = NULL, *ha = NULL, *hb = NULL, *pa = NULL, *pb = NULL;
        if (!ua || !ub || curl_url_set(ua, CURLUPART_URL, a, 0) != CURLUE_OK ||
            curl_url_set(ub, CURLUPART_URL, b, 0) != CURLUE_OK)
                goto out;
        if (curl_url_get(ua, CURLUPART_SCHEME, &sa, 0) || curl_url_get(ub, CURLUPART_SCHEME, &sb, 0) ||
            curl_url_get(ua, CURLUPART_HOST, &ha, 0) || curl_url_get(ub, CURLUPART_HOST, &hb, 0) ||
            curl_url_get(ua, CURLUPART_PORT, &pa, CURLU_DEFAULT_PORT) ||
            curl_url_get(ub, CURLUPART_PORT, &pb, CURLU_DEFAULT_PORT))
                goto out;
        same = strcasecmp(sa, sb) == 0 && strcasecmp(ha, hb) == 0 && strcmp(pa, pb) == 0;
out:
        curl_free(sa); curl_free(sb); curl_free(ha); curl_free(hb); curl_free(pa); curl_free(pb);
        curl_url_cleanup(ua);
        curl_url_cleanup(ub);
        return same;
}

static void set_common_opts(image_registry *reg, CURL *e, char *errbuf)
{
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#else
        curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, reg->opts.connect_timeout_ms);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, reg->opts.low_speed_time_s);
        curl_easy_setopt(e, CURLOPT_USERAGENT, USER_AGENT);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
        bool insecure = reg->opts.config && reg->opts.config->insecure_skip_verify;
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, insecure ? 0L : 1L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, insecure ? 0L : 2L);
        const char *ca = reg->opts.config ? reg->opts.config->ca_file : NULL;
        if (ca && *ca)
                curl_easy_setopt(e, CURLOPT_CAINFO, ca);
}

/* Sets the easy handle up for the next try of q. */
static int req_prepare(req *q, cc_error **ret_err)
{
        image_registry *reg = q->reg;
        endpoint *ep = &reg->eps[q->ep];
        req_reset_response(q);
        buf_reset(&q->body, q->is_blob ? ERROR_BODY_MAX : reg->opts.max_manifest_size,
                  q->is_blob);
        curl_slist_free_all(q->hdrs);
        q->hdrs = NULL;
        if (q->sent_token) {
                explicit_bzero(q->sent_token, strlen(q->sent_token));
                free(q->sent_token);
                q->sent_token = NULL;
        }
        if (!q->easy && !(q->easy = curl_easy_init()))
                return cc_error_set(ret_err, -ENOMEM, "curl_easy_init failed");
        CURL *e = q->easy;
        curl_easy_reset(e);
        set_common_opts(reg, e, q->errbuf);

        _cleanup_free_ char *url = NULL;
        if (q->redirect_url)
                url = strdup(q->redirect_url);
        else if (asprintf(&url, "%s%s", ep->base, q->path) < 0)
                url = NULL;
        if (!url)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        curl_easy_setopt(e, CURLOPT_URL, url);

        struct curl_slist *h = NULL;
        _cleanup_free_ char *hline = NULL;
#define ADD(s)                                                                           \
        do {                                                                             \
                struct curl_slist *n_ = curl_slist_append(h, (s));                       \
                if (!n_) {                                                               \
                        curl_slist_free_all(h);                                          \
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");          \
                }                                                                        \
                h = n_;                                                                  \
        } while (0)
        if (q->accept) {
                free(hline);
                if (asprintf(&hline, "Accept: %s", q->accept) < 0) {
                        hline = NULL;
                        curl_slist_free_all(h);
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
                }
                ADD(hline);
        }
        if (q->is_blob) {
                q->start_offset = image_ingest_offset(q->w);
                if (q->start_offset > 0) {
                        char rng[64];
                        snprintf(rng, sizeof(rng), "Range: bytes=%" PRId64 "-", q->start_offset);
                        ADD(rng);
                }
        }
        /* Credentials: never to a host a redirect pointed elsewhere; the user's
         * credentials only to the origin (a mirror gets anonymous tokens). */
        if (!q->redirect_offhost) {
                const image_registry_auth *a = &reg->auth;
                if (ep->origin && a->registry_token && *a->registry_token) {
                        q->sent_token = strdup(a->registry_token);
                } else if (ep->basic && ep->origin && a->username && *a->username) {
                        curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
                        curl_easy_setopt(e, CURLOPT_USERNAME, a->username);
                        curl_easy_setopt(e, CURLOPT_PASSWORD, a->password ? a->password : "");
                } else {
                        _cleanup_free_ char *key = token_key(reg, ep);
                        if (!key) {
                                curl_slist_free_all(h);
                                return cc_error_set(ret_err, -ENOMEM, "out of memory");
                        }
                        q->sent_token = token_lookup(reg->tokens, key);
                }
                if (q->sent_token) {
                        free(hline);
                        if (asprintf(&hline, "Authorization: Bearer %s", q->sent_token) < 0) {
                                hline = NULL;
                                curl_slist_free_all(h);
                                return cc_error_set(ret_err, -ENOMEM, "out of memory");
                        }
                        ADD(hline);
                        explicit_bzero(hline, strlen(hline));
                }
        }
#undef ADD
        q->hdrs = h;
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, q);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, q);
        curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, progress_cb);
        curl_easy_setopt(e, CURLOPT_XFERINFODATA, q);
        curl_easy_setopt(e, CURLOPT_PRIVATE, q);
        return 0;
}

/* "GET https://host/v2/repo/blobs/sha256:..." for messages (no redirect URLs:
 * those may carry signatures). */
static const char *req_what(req *q, char *out, size_t n)
{
        snprintf(out, n, "GET %s%s", q->reg->eps[q->ep].base, q->path);
        return out;
}

/* The registry's error document → "CODE: message" (bounded), or NULL. */
static char *registry_error_message(const buf *b)
{
        if (!b->data || b->len == 0)
                return NULL;
        _cleanup_image_json_ json_object *root = NULL;
        cc_error *err = NULL;
        if (image_json_parse(b->data, b->len, ERROR_BODY_MAX, &root, &err) < 0) {
                cc_error_free(err);
                return NULL;
        }
        json_object *errs = image_json_member(root, "errors");
        if (!errs || !json_object_is_type(errs, json_type_array) ||
            json_object_array_length(errs) == 0)
                return NULL;
        json_object *e0 = json_object_array_get_idx(errs, 0);
        if (!json_object_is_type(e0, json_type_object))
                return NULL;
        json_object *code = image_json_member(e0, "code");
        json_object *msg = image_json_member(e0, "message");
        const char *cs = code && json_object_is_type(code, json_type_string)
                                 ? json_object_get_string(code) : NULL;
        const char *ms = msg && json_object_is_type(msg, json_type_string)
                                 ? json_object_get_string(msg) : NULL;
        char *out = NULL;
        if (asprintf(&out, "%.64s%s%.512s", cs ? cs : "", cs && ms ? ": " : "", ms ? ms : "") < 0)
                return NULL;
        /* No control characters from the far side in our messages. */
        for (char *p = out; *p; p++)
                if ((unsigned char)*p < 0x20 || *p == 0x7f)
                        *p = '?';
        return out;
}

/* ---------------------------------------------------- auth challenges -- */

typedef struct challenge {
        char scheme[16];
        char *realm, *service, *scope;
} challenge;

static void challenge_clear(challenge *c)
{
        free(c->realm);
        free(c->service);
        free(c->scope);
        *c = (challenge){ 0 };
}

/* Parses `Scheme k="v", k2=v2` (RFC 7235 auth-param list). */
static int challenge_parse(const char *s, challenge *c)
{
        *c = (challenge){ 0 };
        if (!s)
                return -EINVAL;
        size_t n = strcspn(s, " \t");
        if (n == 0 || n >= sizeof(c->scheme))
                return -EINVAL;
        memcpy(c->scheme, s, n);
        c->scheme[n] = '\0';
        const char *p = s + n;
        while (*p) {
                while (*p == ' ' || *p == '\t' || *p == ',')
                        p++;
                if (!*p)
                        break;
                const char *k = p;
                while (*p && *p != '=' && *p != ',' && *p != ' ')
                        p++;
                size_t klen = (size_t)(p - k);
                if (*p != '=')
                        continue;
                p++;
                char val[4096];
                size_t vl = 0;
                if (*p == '"') {
                        p++;
                        while (*p && *p != '"') {
                                if (*p == '\\' && p[1])
                                        p++;
                                if (vl + 1 < sizeof(val))
                                        val[vl++] = *p;
                                p++;
                        }
                        if (*p == '"')
                                p++;
                } else {
                        while (*p && *p != ',' && *p != ' ') {
                                if (vl + 1 < sizeof(val))
                                        val[vl++] = *p;
                                p++;
                        }
                }
                val[vl] = '\0';
                char **slot = NULL;
                if (klen == 5 && strncasecmp(k, "realm", 5) == 0)
                        slot = &c->realm;
                else if (klen == 7 && strncasecmp(k, "service", 7) == 0)
                        slot = &c->service;
                else if (klen == 5 && strncasecmp(k, "scope", 5) == 0)
                        slot = &c->scope;
                if (slot && !*slot && !(*slot = strdup(val)))
                        return -ENOMEM;
        }
        return 0;
}

static CURLcode easy_perform_bounded(image_registry *reg, CURL *e, buf *b, long *ret_status);

static size_t token_write_cb(char *data, size_t size, size_t n, void *userdata)
{
        buf *b = userdata;
        return buf_append(b, data, size * n) < 0 ? 0 : size * n;
}

static int token_progress_cb(void *userdata, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
        image_registry *reg = userdata;
        return is_cancelled(reg->opts.cancelled) ? 1 : 0;
}

static CURLcode easy_perform_bounded(image_registry *reg, CURL *e, buf *b, long *ret_status)
{
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, token_write_cb);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, b);
        curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, token_progress_cb);
        curl_easy_setopt(e, CURLOPT_XFERINFODATA, reg);
        CURLcode rc = curl_easy_perform(e);
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, ret_status);
        return rc;
}

static int curl_errno(CURLcode rc, bool *ret_transient)
{
        bool t = false;
        int r;
        switch (rc) {
        case CURLE_COULDNT_CONNECT:
                r = -ECONNREFUSED, t = true;
                break;
        case CURLE_OPERATION_TIMEDOUT:
                r = -ETIMEDOUT, t = true;
                break;
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
                r = -ECONNRESET, t = true;
                break;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
                r = -EHOSTUNREACH;
                break;
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CIPHER:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_ISSUER_ERROR:
                r = -ECONNABORTED;
                break;
        case CURLE_ABORTED_BY_CALLBACK:
                r = -ECANCELED;
                break;
        case CURLE_OUT_OF_MEMORY:
                r = -ENOMEM;
                break;
        case CURLE_URL_MALFORMAT:
        case CURLE_UNSUPPORTED_PROTOCOL:
                r = -EINVAL;
                break;
        default:
                r = -EIO;
                break;
        }
        if (ret_transient)
                *ret_transient = t;
        return r;
}

/* What to do about a TLS failure, appended to its message. */
static const char *tls_hint(CURLcode rc)
{
        switch (rc) {
        case CURLE_PEER_FAILED_VERIFICATION:
                return " (TLS certificate not trusted: add its CA with ca_file, or set "
                       "insecure_skip_verify, in the registry's [image.registries] table)";
        case CURLE_SSL_CACERT_BADFILE:
                return " (cannot use the registry's ca_file)";
        default:
                return "";
        }
}

static int url_escape_append(CURL *e, char **s, const char *key, const char *val, bool *first)
{
        char *esc = curl_easy_escape(e, val, 0);
        if (!esc)
                return -ENOMEM;
        char *n = NULL;
        int r = asprintf(&n, "%s%s%s=%s", *s ? *s : "", *first ? "" : "&", key, esc);
        curl_free(esc);
        if (r < 0)
                return -ENOMEM;
        if (*s) {
                explicit_bzero(*s, strlen(*s));
                free(*s);
        }
        *s = n;
        *first = false;
        return 0;
}

/* The token server's answer → cache. */
static int token_parse(image_registry *reg, const endpoint *ep, const char *key, const char *scope,
                       const buf *b, cc_error **ret_err)
{
        _cleanup_image_json_ json_object *root = NULL;
        int r = image_json_parse(b->data, b->len, TOKEN_BODY_MAX, &root, ret_err);
        if (r < 0)
                return cc_error_prefix(ret_err, "registry %s: token response", ep->hostport);
        if (!json_object_is_type(root, json_type_object)) {
                r = cc_error_set(ret_err, -EINVAL, "registry %s: token response is not an object",
                                 ep->hostport);
                return r;
        }
        json_object *tok = image_json_member(root, "token");
        if (!tok || !json_object_is_type(tok, json_type_string) ||
            json_object_get_string_len(tok) == 0)
                tok = image_json_member(root, "access_token");
        if (!tok || !json_object_is_type(tok, json_type_string) ||
            json_object_get_string_len(tok) == 0 ||
            (size_t)json_object_get_string_len(tok) > TOKEN_MAX) {
                r = cc_error_set(ret_err, -EINVAL, "registry %s: token response without a token",
                                 ep->hostport);
                return r;
        }
        const char *ts = json_object_get_string(tok);
        for (const char *p = ts; *p; p++)
                if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
                        r = cc_error_set(ret_err, -EINVAL,
                                         "registry %s: token contains invalid characters",
                                         ep->hostport);
                        return r;
                }
        long ttl = TOKEN_DEFAULT_TTL_S;
        json_object *exp = image_json_member(root, "expires_in");
        if (exp && json_object_is_type(exp, json_type_int)) {
                int64_t v = json_object_get_int64(exp);
                if (v > ttl && v < 7 * 24 * 3600)
                        ttl = (long)v;
        }
        if (token_store(reg->tokens, key, ts, ttl) < 0)
                r = cc_error_set(ret_err, -ENOMEM, "out of memory");
        log_debug("registry %s: got a bearer token for %s (ttl %lds)", ep->hostport, scope, ttl);
        return r;
}

/* Fetches a bearer token for the challenge and caches it. Called with the
 * cache's fetch lock held. */
static int token_fetch(image_registry *reg, const endpoint *ep, const challenge *ch,
                       const char *key, cc_error **ret_err)
{
        if (!ch->realm || (strncmp(ch->realm, "https://", 8) != 0 &&
                           strncmp(ch->realm, "http://", 7) != 0))
                return cc_error_set(ret_err, -EINVAL,
                                    "registry %s: bearer challenge without an http(s) realm",
                                    ep->hostport);
        /* Credentials go to the realm only when the challenge came from the
         * origin registry. */
        const image_registry_auth *a = ep->origin ? &reg->auth : &(image_registry_auth){ 0 };
        bool refresh = a->identity_token && *a->identity_token;
        const char *scope = ch->scope && *ch->scope ? ch->scope : reg->scope;

        buf b = { .max = TOKEN_BODY_MAX };
        long status = 0;
        CURLcode rc = CURLE_OK;
        char *params = NULL, *url = NULL;
        bool first = true;
        int r = 0;
        CURL *e = curl_easy_init();
        if (!e)
                return cc_error_set(ret_err, -ENOMEM, "curl_easy_init failed");
        char errbuf[CURL_ERROR_SIZE] = "";
        set_common_opts(reg, e, errbuf);
        if ((ch->service && url_escape_append(e, &params, "service", ch->service, &first) < 0) ||
            url_escape_append(e, &params, "scope", scope, &first) < 0) {
                r = cc_error_set(ret_err, -ENOMEM, "out of memory");
                goto out;
        }
        if (refresh) {
                if (url_escape_append(e, &params, "grant_type", "refresh_token", &first) < 0 ||
                    url_escape_append(e, &params, "client_id", "cocoon", &first) < 0 ||
                    url_escape_append(e, &params, "refresh_token", a->identity_token, &first) < 0) {
                        r = cc_error_set(ret_err, -ENOMEM, "out of memory");
                        goto out;
                }
                curl_easy_setopt(e, CURLOPT_URL, ch->realm);
                curl_easy_setopt(e, CURLOPT_POSTFIELDS, params);
        } else {
                if (asprintf(&url, "%s%c%s", ch->realm, strchr(ch->realm, '?') ? '&' : '?',
                             params) < 0) {
                        url = NULL;
                        r = cc_error_set(ret_err, -ENOMEM, "out of memory");
                        goto out;
                }
                curl_easy_setopt(e, CURLOPT_URL, url);
                if (a->username && *a->username) {
                        curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
                        curl_easy_setopt(e, CURLOPT_USERNAME, a->username);
                        curl_easy_setopt(e, CURLOPT_PASSWORD, a->password ? a->password : "");
                }
        }
        for (unsigned attempt = 0;; attempt++) {
                buf_reset(&b, TOKEN_BODY_MAX, false);
                rc = easy_perform_bounded(reg, e, &b, &status);
                bool transient = false;
                if (rc != CURLE_OK)
                        curl_errno(rc, &transient);
                else
                        transient = status == 429 || status >= 500;
                if (!transient || attempt + 1 >= reg->opts.max_attempts)
                        break;
                r = sleep_cancellable((long)reg->opts.backoff_ms << attempt, reg->opts.cancelled);
                if (r < 0) {
                        r = cc_error_set(ret_err, r, "cancelled");
                        goto out_buf;
                }
        }
        pthread_mutex_lock(&reg->tokens->lock);
        reg->tokens->fetches++;
        pthread_mutex_unlock(&reg->tokens->lock);
        if (rc != CURLE_OK) {
                r = curl_errno(rc, NULL);
                if (b.overflow)
                        r = -EFBIG;
                r = cc_error_set(ret_err, r, "registry %s: token request: %s%s", ep->hostport,
                                 b.overflow ? "response too large"
                                            : (errbuf[0] ? errbuf : curl_easy_strerror(rc)),
                                 tls_hint(rc));
                goto out_buf;
        }
        if (status == 401 || status == 403) {
                r = cc_error_set(ret_err, -EACCES,
                                 "registry %s: unauthorized: the token server refused the "
                                 "credentials (HTTP %ld)", ep->hostport, status);
                goto out_buf;
        }
        if (status != 200) {
                r = cc_error_set(ret_err, status == 429 || status >= 500 ? -EAGAIN : -EIO,
                                 "registry %s: token request failed with HTTP %ld", ep->hostport,
                                 status);
                goto out_buf;
        }
        r = token_parse(reg, ep, key, scope, &b, ret_err);
out_buf:
        if (b.data)
                explicit_bzero(b.data, b.len);
        buf_reset(&b, 0, false);
out:
        if (params) {
                explicit_bzero(params, strlen(params));
                free(params);
        }
        free(url);
        curl_easy_cleanup(e);
        return r;
}

/* A 401 came back: work out what the endpoint wants. Returns 1 to retry,
 * < 0 when it cannot be satisfied. */
static int req_answer_challenge(req *q, cc_error **ret_err)
{
        image_registry *reg = q->reg;
        endpoint *ep = &reg->eps[q->ep];
        char what[512];
        req_what(q, what, sizeof(what));
        _cleanup_free_ char *msg = registry_error_message(&q->body);
        if (q->redirect_offhost || q->auth_round >= MAX_AUTH_ROUNDS ||
            (ep->origin && reg->auth.registry_token && *reg->auth.registry_token))
                return cc_error_set(ret_err, -EACCES, "%s: unauthorized%s%s", what,
                                    msg ? ": " : "", msg ? msg : "");
        q->auth_round++;
        challenge ch;
        int r = challenge_parse(q->www_auth, &ch);
        if (r < 0) {
                challenge_clear(&ch);
                return cc_error_set(ret_err, -EACCES, "%s: unauthorized%s%s (no usable challenge)",
                                    what, msg ? ": " : "", msg ? msg : "");
        }
        if (strcasecmp(ch.scheme, "Basic") == 0) {
                challenge_clear(&ch);
                if (!ep->origin || !reg->auth.username || !*reg->auth.username || ep->basic)
                        return cc_error_set(ret_err, -EACCES, "%s: unauthorized%s%s%s", what,
                                            msg ? ": " : "", msg ? msg : "",
                                            ep->basic ? " (credentials rejected)"
                                                      : " (credentials required)");
                ep->basic = true;
                return 1;
        }
        if (strcasecmp(ch.scheme, "Bearer") != 0) {
                r = cc_error_set(ret_err, -EACCES, "%s: unauthorized: unsupported auth scheme '%s'",
                                 what, ch.scheme);
                challenge_clear(&ch);
                return r;
        }
        ep->bearer = true;
        _cleanup_free_ char *key = token_key(reg, ep);
        if (!key) {
                challenge_clear(&ch);
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        pthread_mutex_lock(&reg->tokens->fetch_lock);
        /* The token we sent was refused: forget it. Another thread may have
         * fetched a fresh one meanwhile: use that without asking again. */
        if (q->sent_token)
                token_forget(reg->tokens, key, q->sent_token);
        char *fresh = token_lookup(reg->tokens, key);
        if (fresh) {
                explicit_bzero(fresh, strlen(fresh));
                free(fresh);
                r = 1;
        } else {
                r = token_fetch(reg, ep, &ch, key, ret_err);
                r = r < 0 ? cc_error_prefix(ret_err, "%s", what) : 1;
        }
        pthread_mutex_unlock(&reg->tokens->fetch_lock);
        challenge_clear(&ch);
        return r;
}

/* Moves on after a failure: retry here, or the next endpoint, or give up.
 * Takes ownership of *err. */
static int req_retry_or_next(req *q, bool transient, cc_error **err, long *ret_delay_ms,
                             cc_error **ret_err)
{
        image_registry *reg = q->reg;
        if (transient && q->attempt + 1 < reg->opts.max_attempts) {
                *ret_delay_ms = (long)reg->opts.backoff_ms << q->attempt;
                q->attempt++;
                log_debug("%s (retrying in %ld ms)", (*err)->msg, *ret_delay_ms);
                cc_error_free(*err);
                *err = NULL;
                free(q->redirect_url);
                q->redirect_url = NULL;
                q->redirect_offhost = false;
                q->redirects = 0;
                return 1;
        }
        if (transient && reg->opts.max_attempts > 1) {
                /* Say that the bounded retries are spent, not just the last failure. */
                cc_error *e = NULL;
                cc_error_set(&e, (*err)->code, "%s (gave up after %u attempts)", (*err)->msg,
                             q->attempt + 1);
                cc_error_free(*err);
                *err = e;
        }
        if (q->ep + 1 < reg->n_eps && (*err)->code != -ECANCELED) {
                log_debug("%s (trying the next endpoint)", (*err)->msg);
                cc_error_free(*err);
                *err = NULL;
                q->ep++;
                q->attempt = q->auth_round = q->redirects = 0;
                free(q->redirect_url);
                q->redirect_url = NULL;
                q->redirect_offhost = false;
                *ret_delay_ms = 0;
                return 1;
        }
        return cc_error_propagate(ret_err, TAKE_PTR(*err));
}

/* Interprets a finished try. 0: success (2xx, body/sink complete); 1: try
 * again after *ret_delay_ms; < 0: failed. */
static int req_finish(req *q, CURLcode rc, long *ret_delay_ms, cc_error **ret_err)
{
        image_registry *reg = q->reg;
        char what[512];
        req_what(q, what, sizeof(what));
        cc_error *err = NULL;
        *ret_delay_ms = 0;

        if (rc != CURLE_OK || q->sink_err) {
                if (q->sink_error) /* store or protocol trouble: not retried */
                        return cc_error_propagate(ret_err, TAKE_PTR(q->sink_error)) < 0
                                       ? cc_error_prefix(ret_err, "%s", what) : -EIO;
                if (q->sink_err == -EFBIG || q->body.overflow)
                        return cc_error_set(ret_err, -EFBIG, "%s: response larger than %zu bytes",
                                            what, q->body.max);
                if (q->sink_err)
                        return cc_error_set(ret_err, q->sink_err, "%s: %s", what,
                                            strerror(-q->sink_err));
                if (is_cancelled(reg->opts.cancelled) || rc == CURLE_ABORTED_BY_CALLBACK)
                        return cc_error_set(ret_err, -ECANCELED, "%s: cancelled", what);
                bool transient = false;
                int e = curl_errno(rc, &transient);
                cc_error_set(&err, e, "%s: %s%s", what, q->errbuf[0] ? q->errbuf
                                                                     : curl_easy_strerror(rc),
                             tls_hint(rc));
                return req_retry_or_next(q, transient, &err, ret_delay_ms, ret_err);
        }
        long status = 0;
        curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &status);
        q->status = status;
        if (status >= 200 && status < 300) {
                if (q->is_blob && !q->sink_started && (status == 200 || status == 206)) {
                        /* an empty body: still line the writer up */
                        if (blob_sink_start(q) < 0)
                                return cc_error_propagate(ret_err, TAKE_PTR(q->sink_error)) < 0
                                               ? cc_error_prefix(ret_err, "%s", what) : -EIO;
                }
                return 0;
        }
        if (status >= 300 && status < 400 && status != 304) {
                char *loc = NULL;
                curl_easy_getinfo(q->easy, CURLINFO_REDIRECT_URL, &loc);
                if (!loc)
                        return cc_error_set(ret_err, -EINVAL, "%s: HTTP %ld without a Location",
                                            what, status);
                if (++q->redirects > MAX_REDIRECTS)
                        return cc_error_set(ret_err, -ELOOP, "%s: too many redirects", what);
                if (strncmp(loc, "http://", 7) != 0 && strncmp(loc, "https://", 8) != 0)
                        return cc_error_set(ret_err, -EINVAL, "%s: redirect to a non-http URL",
                                            what);
                _cleanup_free_ char *cur = NULL;
                if (!q->redirect_url && asprintf(&cur, "%s%s", reg->eps[q->ep].base, q->path) < 0)
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
                bool same = same_origin(cur ? cur : q->redirect_url, loc);
                char *n = strdup(loc);
                if (!n)
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
                free(q->redirect_url);
                q->redirect_url = n;
                if (!same)
                        q->redirect_offhost = true;
                log_debug("%s: redirected (%s host)", what, q->redirect_offhost ? "other" : "same");
                return 1;
        }
        _cleanup_free_ char *msg = registry_error_message(&q->body);
        /* A mirror that refuses us (it gets no credentials of ours) is
         * skipped like one that lacks the image: the next endpoint, in the
         * end the origin, is asked. */
        if (status == 401) {
                int r = req_answer_challenge(q, &err);
                if (r >= 0)
                        return r;
                if (!err)
                        cc_error_set(&err, r, "%s: unauthorized", what);
                return req_retry_or_next(q, false, &err, ret_delay_ms, ret_err);
        }
        if (status == 403) {
                cc_error_set(&err, -EACCES, "%s: unauthorized: access denied%s%s", what,
                             msg ? ": " : "", msg ? msg : "");
                return req_retry_or_next(q, false, &err, ret_delay_ms, ret_err);
        }
        if (status == 404) {
                cc_error_set(&err, -ENOENT, "%s: not found%s%s", what, msg ? ": " : "",
                             msg ? msg : "");
                return req_retry_or_next(q, false, &err, ret_delay_ms, ret_err);
        }
        if (status == 416 && q->is_blob && q->start_offset > 0 && q->start_offset == q->size)
                return 0; /* the partial is complete already: commit verifies it */
        if (status == 416 && q->is_blob && q->start_offset > 0) {
                /* Our partial is longer than the blob? start over. */
                if (image_ingest_reset(q->w, ret_err) < 0)
                        return cc_error_prefix(ret_err, "%s", what);
                cc_error_set(&err, -EIO, "%s: range not satisfiable", what);
                return req_retry_or_next(q, true, &err, ret_delay_ms, ret_err);
        }
        bool transient = status == 408 || status == 429 || status >= 500;
        cc_error_set(&err, transient ? -EAGAIN : -EIO, "%s: HTTP %ld%s%s", what, status,
                     msg ? ": " : "", msg ? msg : "");
        return req_retry_or_next(q, transient, &err, ret_delay_ms, ret_err);
}

static int req_new(image_registry *reg, bool blob, const char *kind, const char *object,
                   req **ret, cc_error **ret_err)
{
        req *q = calloc(1, sizeof(*q));
        if (!q)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        q->reg = reg;
        q->is_blob = blob;
        q->ep = blob ? reg->preferred : 0;
        if (asprintf(&q->path, "/v2/%s/%s/%s", reg->repo, kind, object) < 0) {
                q->path = NULL;
                req_free(q);
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        *ret = q;
        return 0;
}

/* Blocking: runs q to completion. */
static int req_run(req *q, cc_error **ret_err)
{
        for (;;) {
                int r = req_prepare(q, ret_err);
                if (r < 0)
                        return r;
                CURLcode rc = curl_easy_perform(q->easy);
                long delay = 0;
                r = req_finish(q, rc, &delay, ret_err);
                if (r != 1)
                        return r;
                r = sleep_cancellable(delay, q->reg->opts.cancelled);
                if (r < 0)
                        return cc_error_set(ret_err, r, "cancelled");
        }
}

/* ----------------------------------------------------------- manifests -- */

int image_registry_get_manifest(image_registry *reg, const char *object, char **ret_buf,
                                size_t *ret_len, char **ret_content_type, char **ret_digest,
                                cc_error **ret_err)
{
        bool by_digest = strncmp(object, "sha256:", 7) == 0;
        if (by_digest) {
                int r = image_digest_check(object, "manifest digest", ret_err);
                if (r < 0)
                        return r;
        } else if (!*object || strchr(object, '/') || strchr(object, '?') || strchr(object, '#') ||
                   strlen(object) > 128) {
                return cc_error_set(ret_err, -EINVAL, "invalid manifest tag '%s'", object);
        }
        req *q = NULL;
        int r = req_new(reg, false, "manifests", object, &q, ret_err);
        if (r < 0)
                return r;
        q->accept = IMAGE_MANIFEST_ACCEPT;
        r = req_run(q, ret_err);
        if (r < 0)
                goto out;
        char what[512];
        req_what(q, what, sizeof(what));
        if (!q->body.data || q->body.len == 0) {
                r = cc_error_set(ret_err, -EINVAL, "%s: empty manifest", what);
                goto out;
        }
        char dg[IMAGE_DIGEST_BUFSIZE];
        if (image_sha256_buf(q->body.data, q->body.len, dg) < 0) {
                r = cc_error_set(ret_err, -EIO, "sha256 failed");
                goto out;
        }
        if (by_digest && strcmp(dg, object) != 0) {
                r = cc_error_set(ret_err, -EBADMSG, "%s: digest mismatch (got %s)", what, dg);
                goto out;
        }
        if (!by_digest && q->docker_digest && strncmp(q->docker_digest, "sha256:", 7) == 0 &&
            strcmp(q->docker_digest, dg) != 0) {
                r = cc_error_set(ret_err, -EBADMSG,
                                 "%s: body digest %s does not match Docker-Content-Digest", what,
                                 dg);
                goto out;
        }
        image_doc_kind kind;
        r = image_doc_detect(q->body.data, q->body.len, q->content_type, &kind, ret_err);
        if (r < 0) {
                cc_error_prefix(ret_err, "%s", what);
                goto out;
        }
        reg->preferred = q->ep;
        if (ret_content_type) {
                *ret_content_type = q->content_type ? strdup(q->content_type) : NULL;
        }
        if (ret_digest)
                *ret_digest = strdup(dg);
        if (ret_len)
                *ret_len = q->body.len;
        *ret_buf = TAKE_PTR(q->body.data);
        q->body.len = 0;
        r = 0;
out:
        req_free(q);
        return r;
}

/* --------------------------------------------------------------- blobs -- */

int image_blob_xfer_new(image_registry *reg, image_ingest *w, const char *digest, int64_t size,
                        image_blob_xfer **ret, cc_error **ret_err)
{
        int r = image_digest_check(digest, "blob digest", ret_err);
        if (r < 0)
                return r;
        req *q = NULL;
        r = req_new(reg, true, "blobs", digest, &q, ret_err);
        if (r < 0)
                return r;
        memcpy(q->digest, digest, IMAGE_DIGEST_BUFSIZE);
        q->size = size;
        q->w = w;
        r = req_prepare(q, ret_err);
        if (r < 0) {
                q->w = NULL; /* taken only on success */
                req_free(q);
                return r;
        }
        *ret = q;
        return 0;
}

CURL *image_blob_xfer_easy(image_blob_xfer *x) { return x->easy; }

int64_t image_blob_xfer_received(const image_blob_xfer *x) { return x->received; }

void image_blob_xfer_free(image_blob_xfer *x) { req_free(x); }

static void blob_abort(req *q, int err)
{
        if (!q->w)
                return;
        /* Keep downloaded bytes after network trouble (resume); drop them
         * after anything that says the bytes themselves are wrong. */
        bool keep = err == -ECONNREFUSED || err == -ECONNRESET || err == -ETIMEDOUT ||
                    err == -EHOSTUNREACH || err == -EAGAIN || err == -ECANCELED ||
                    err == -ECONNABORTED;
        image_ingest_abort(q->w, keep);
        q->w = NULL;
}

int image_blob_xfer_done(image_blob_xfer *q, CURLcode result, long *ret_delay_ms,
                         cc_error **ret_err)
{
        long delay = 0;
        cc_error *err = NULL;
        int r = req_finish(q, result, &delay, &err);
        if (r == 1) {
                r = req_prepare(q, &err);
                if (r >= 0) {
                        *ret_delay_ms = delay;
                        return 1;
                }
        }
        if (r < 0) {
                blob_abort(q, r);
                return cc_error_propagate(ret_err, err);
        }
        image_ingest *w = TAKE_PTR(q->w);
        r = image_ingest_commit(w, ret_err);
        if (r < 0)
                return cc_error_prefix(ret_err, "blob %s from %s", q->digest,
                                       q->reg->eps[q->ep].hostport);
        return 0;
}

int image_registry_fetch_blob(image_registry *reg, image_store *s, const char *digest,
                              int64_t size, cc_error **ret_err)
{
        image_ingest *w = NULL;
        int r = image_store_ingest_begin(s, digest, size, &w, ret_err);
        if (r != 0)
                return r;
        req *q = NULL;
        r = image_blob_xfer_new(reg, w, digest, size, &q, ret_err);
        if (r < 0) {
                image_ingest_abort(w, true);
                return r;
        }
        for (;;) {
                CURLcode rc = curl_easy_perform(q->easy);
                long delay = 0;
                r = image_blob_xfer_done(q, rc, &delay, ret_err);
                if (r != 1)
                        break;
                if (sleep_cancellable(delay, reg->opts.cancelled) < 0) {
                        blob_abort(q, -ECANCELED);
                        r = cc_error_set(ret_err, -ECANCELED, "blob %s: cancelled", digest);
                        break;
                }
        }
        req_free(q);
        return r < 0 ? r : 0;
}
