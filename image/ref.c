/* SPDX-License-Identifier: Apache-2.0 */
/* Grammar (docker/distribution "reference" package):
 *   reference   := name [ ":" tag ] [ "@" digest ]
 *   name        := [domain "/"] path-component ["/" path-component]*
 *   domain      := host [":" port]          host := domain-name | "[" ipv6 "]"
 *   domain-name := component ("." component)*  component := [a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?
 *   path-component := [a-z0-9]+ (separator [a-z0-9]+)*   separator := [._] | "__" | "-"+
 *   tag         := [\w][\w.-]{0,127}
 *   digest      := algorithm ":" hex   (only sha256 with 64 lowercase hex accepted)
 * Normalisation follows splitDockerDomain(): the first path element is a
 * domain iff it contains '.' or ':', is "localhost", or has uppercase. */
#include "config.h"

#include "image/ref.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "image/util.h"

#define DEFAULT_DOMAIN "docker.io"
#define LEGACY_DEFAULT_DOMAIN "index.docker.io"
#define DOCKER_REGISTRY_HOST "registry-1.docker.io"
#define OFFICIAL_PREFIX "library/"
#define DEFAULT_TAG "latest"

static bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
static bool is_alnum(char c)
{
        return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}
static bool is_hex(char c)
{
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
static bool is_word(char c) { return is_alnum(c) || c == '_'; }

static bool has_upper(const char *s, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (s[i] >= 'A' && s[i] <= 'Z')
                        return true;
        return false;
}

/* domain-name component list, s[0..n) */
static bool valid_domain_name(const char *s, size_t n)
{
        if (n == 0)
                return false;
        size_t start = 0;
        for (size_t i = 0; i <= n; i++) {
                if (i < n && s[i] != '.') {
                        if (!is_alnum(s[i]) && s[i] != '-')
                                return false;
                        continue;
                }
                size_t len = i - start;
                if (len == 0 || s[start] == '-' || s[i - 1] == '-')
                        return false;
                start = i + 1;
        }
        return true;
}

static bool valid_domain(const char *s)
{
        size_t n = strlen(s);
        size_t hostlen;
        if (n > 0 && s[0] == '[') {
                const char *close = strchr(s, ']');
                if (!close || close == s + 1)
                        return false;
                for (const char *p = s + 1; p < close; p++)
                        if (!is_hex(*p) && *p != ':')
                                return false;
                hostlen = (size_t)(close - s) + 1;
        } else {
                const char *colon = strchr(s, ':');
                hostlen = colon ? (size_t)(colon - s) : n;
                if (!valid_domain_name(s, hostlen))
                        return false;
        }
        /* a host name DNS can carry, a 16-bit port: bounded, so that a
         * reference with the longest tag and a digest still fits
         * IMAGE_REF_INPUT_MAX (the fuzzer found a 1000-byte host that parsed,
         * whose digest form then did not) */
        if (hostlen > IMAGE_REF_HOST_MAX)
                return false;
        if (hostlen == n)
                return true;
        if (s[hostlen] != ':' || hostlen + 1 == n || n - hostlen - 1 > 5)
                return false;
        for (size_t i = hostlen + 1; i < n; i++)
                if (s[i] < '0' || s[i] > '9')
                        return false;
        return true;
}

/* One path component, s[0..n). */
static bool valid_path_component(const char *s, size_t n)
{
        size_t i = 0;
        for (;;) {
                size_t run = 0;
                while (i < n && is_lower_alnum(s[i]))
                        i++, run++;
                if (run == 0)
                        return false;
                if (i == n)
                        return true;
                if (s[i] == '.')
                        i++;
                else if (s[i] == '_')
                        i += (i + 1 < n && s[i + 1] == '_') ? 2 : 1;
                else if (s[i] == '-')
                        while (i < n && s[i] == '-')
                                i++;
                else
                        return false;
        }
}

/* Returns NULL if fine, else the offending component (pointer into s). */
static const char *invalid_path(const char *s, size_t *ret_len)
{
        const char *p = s;
        for (;;) {
                const char *slash = strchr(p, '/');
                size_t n = slash ? (size_t)(slash - p) : strlen(p);
                if (!valid_path_component(p, n)) {
                        *ret_len = n;
                        return p;
                }
                if (!slash)
                        return NULL;
                p = slash + 1;
        }
}

static bool valid_tag(const char *s)
{
        size_t n = strlen(s);
        if (n == 0 || n > IMAGE_REF_TAG_MAX || !is_word(s[0]))
                return false;
        for (size_t i = 1; i < n; i++)
                if (!is_word(s[i]) && s[i] != '.' && s[i] != '-')
                        return false;
        return true;
}

static bool is_identifier(const char *s)
{
        size_t n = 0;
        for (; s[n]; n++)
                if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
                        return false;
        return n == 64;
}

void image_ref_free(image_ref *ref)
{
        if (!ref)
                return;
        free(ref->domain);
        free(ref->path);
        free(ref->tag);
        free(ref->digest);
        free(ref);
}

image_ref *image_ref_dup(const image_ref *ref)
{
        image_ref *r = calloc(1, sizeof(*r));
        if (!r)
                return NULL;
        r->domain = strdup(ref->domain);
        r->path = strdup(ref->path);
        r->tag = ref->tag ? strdup(ref->tag) : NULL;
        r->digest = ref->digest ? strdup(ref->digest) : NULL;
        if (!r->domain || !r->path || (ref->tag && !r->tag) || (ref->digest && !r->digest)) {
                image_ref_free(r);
                return NULL;
        }
        return r;
}

int image_ref_parse(const char *s, image_ref **ret, cc_error **ret_err)
{
        if (!s || !*s)
                return cc_error_set(ret_err, -EINVAL, "invalid reference: empty image name");
        size_t slen = strnlen(s, IMAGE_REF_INPUT_MAX + 1);
        if (slen > IMAGE_REF_INPUT_MAX)
                return cc_error_set(ret_err, -EINVAL, "invalid reference: longer than %d bytes",
                                    IMAGE_REF_INPUT_MAX);
        if (is_identifier(s))
                return cc_error_set(ret_err, -EINVAL,
                                    "invalid repository name (%s), cannot specify 64-byte "
                                    "hexadecimal strings",
                                    s);

        _cleanup_(image_ref_freep) image_ref *ref = calloc(1, sizeof(*ref));
        if (!ref)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");

        /* splitDockerDomain */
        _cleanup_free_ char *remainder = NULL;
        const char *slash = strchr(s, '/');
        if (!slash) {
                ref->domain = strdup(DEFAULT_DOMAIN);
                if (asprintf(&remainder, OFFICIAL_PREFIX "%s", s) < 0)
                        remainder = NULL;
        } else {
                size_t dlen = (size_t)(slash - s);
                bool is_domain = (dlen == 9 && !strncmp(s, "localhost", 9)) ||
                                 memchr(s, '.', dlen) || memchr(s, ':', dlen) ||
                                 has_upper(s, dlen);
                if (is_domain) {
                        if (dlen == strlen(LEGACY_DEFAULT_DOMAIN) &&
                            !strncmp(s, LEGACY_DEFAULT_DOMAIN, dlen))
                                ref->domain = strdup(DEFAULT_DOMAIN);
                        else
                                ref->domain = strndup(s, dlen);
                        remainder = strdup(slash + 1);
                } else {
                        ref->domain = strdup(DEFAULT_DOMAIN);
                        remainder = strdup(s);
                }
                if (remainder && ref->domain && !strcmp(ref->domain, DEFAULT_DOMAIN) &&
                    !strchr(remainder, '/')) {
                        char *t = NULL;
                        if (asprintf(&t, OFFICIAL_PREFIX "%s", remainder) < 0)
                                t = NULL;
                        free(remainder);
                        remainder = t;
                }
        }
        if (!ref->domain || !remainder)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");

        /* Split remainder = path[:tag][@digest]. Neither tag nor path hold '@'. */
        char *at = strchr(remainder, '@');
        if (at) {
                *at = '\0';
                const char *dg = at + 1;
                const char *colon = strchr(dg, ':');
                if (!colon || colon == dg)
                        return cc_error_set(ret_err, -EINVAL,
                                            "invalid reference '%s': invalid digest '%s'", s, dg);
                int r = image_digest_check(dg, "invalid reference", NULL);
                if (r < 0) {
                        /* Distinguish: well-formed but unsupported vs malformed. */
                        bool algo_ok = (size_t)(colon - dg) == 6 && !strncmp(dg, "sha256", 6);
                        return cc_error_set(ret_err, -EINVAL,
                                            algo_ok ? "invalid reference '%s': invalid checksum "
                                                      "digest format '%s' (want sha256:<64 "
                                                      "lowercase hex>)"
                                                    : "invalid reference '%s': unsupported "
                                                      "digest algorithm in '%s' (only sha256)",
                                            s, dg);
                }
                ref->digest = strdup(dg);
                if (!ref->digest)
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        char *colon = strrchr(remainder, ':');
        if (colon) {
                *colon = '\0';
                const char *tag = colon + 1;
                if (strlen(tag) > IMAGE_REF_TAG_MAX)
                        return cc_error_set(ret_err, -EINVAL,
                                            "invalid reference '%s': tag longer than %d characters",
                                            s, IMAGE_REF_TAG_MAX);
                if (!valid_tag(tag))
                        return cc_error_set(ret_err, -EINVAL,
                                            "invalid reference '%s': invalid tag '%s'", s, tag);
                ref->tag = strdup(tag);
                if (!ref->tag)
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        if (has_upper(remainder, strlen(remainder)))
                return cc_error_set(ret_err, -EINVAL,
                                    "invalid reference format: repository name (%s) must be "
                                    "lowercase",
                                    remainder);
        if (!*remainder)
                return cc_error_set(ret_err, -EINVAL, "invalid reference '%s': empty repository",
                                    s);
        size_t badlen = 0;
        const char *bad = invalid_path(remainder, &badlen);
        if (bad)
                return cc_error_set(ret_err, -EINVAL,
                                    "invalid reference '%s': invalid repository path component "
                                    "'%.*s'",
                                    s, (int)badlen, bad);
        if (strlen(remainder) > IMAGE_REF_PATH_MAX)
                return cc_error_set(ret_err, -EINVAL,
                                    "invalid reference '%s': repository name must not be more "
                                    "than %d characters",
                                    s, IMAGE_REF_PATH_MAX);
        if (!valid_domain(ref->domain))
                return cc_error_set(ret_err, -EINVAL,
                                    "invalid reference '%s': invalid registry domain '%s'", s,
                                    ref->domain);
        if (!ref->tag && !ref->digest) {
                ref->tag = strdup(DEFAULT_TAG);
                if (!ref->tag)
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        ref->path = TAKE_PTR(remainder);
        *ret = TAKE_PTR(ref);
        return 0;
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
        va_list ap;
        char *s = NULL;
        va_start(ap, f);
        if (vasprintf(&s, f, ap) < 0)
                s = NULL;
        va_end(ap);
        return s;
}

char *image_ref_string(const image_ref *ref)
{
        return fmt("%s/%s%s%s%s%s", ref->domain, ref->path, ref->tag ? ":" : "",
                   ref->tag ?: "", ref->digest ? "@" : "", ref->digest ?: "");
}

char *image_ref_name(const image_ref *ref) { return fmt("%s/%s", ref->domain, ref->path); }

char *image_ref_tagged(const image_ref *ref)
{
        if (!ref->tag)
                return NULL;
        return fmt("%s/%s:%s", ref->domain, ref->path, ref->tag);
}

char *image_ref_with_digest(const image_ref *ref, const char *digest)
{
        return fmt("%s/%s@%s", ref->domain, ref->path, digest);
}

char *image_ref_familiar(const image_ref *ref)
{
        const char *domain = ref->domain, *path = ref->path;
        bool hub = !strcmp(domain, DEFAULT_DOMAIN);
        /* "docker.io/r.io/x" stays as is: "r.io/x" would name registry r.io
         * (docker's familiar form has that ambiguity; found by fuzz-ref). */
        const char *slash = strchr(path, '/');
        if (hub && slash) {
                size_t n = (size_t)(slash - path);
                if ((n == 9 && !strncmp(path, "localhost", 9)) || memchr(path, '.', n) ||
                    memchr(path, ':', n))
                        hub = false;
        }
        if (hub && !strncmp(path, OFFICIAL_PREFIX, strlen(OFFICIAL_PREFIX)) &&
            !strchr(path + strlen(OFFICIAL_PREFIX), '/'))
                path += strlen(OFFICIAL_PREFIX);
        return fmt("%s%s%s%s%s%s%s", hub ? "" : domain, hub ? "" : "/", path,
                   ref->tag ? ":" : "", ref->tag ?: "", ref->digest ? "@" : "",
                   ref->digest ?: "");
}

const char *image_ref_registry_host(const image_ref *ref)
{
        return strcmp(ref->domain, DEFAULT_DOMAIN) ? ref->domain : DOCKER_REGISTRY_HOST;
}

const char *image_ref_object(const image_ref *ref) { return ref->digest ?: ref->tag; }
