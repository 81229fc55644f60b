/* SPDX-License-Identifier: Apache-2.0 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "image/ref.h"

#define HEX64 "7cc4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa"

static void check_ok(const char *in, const char *domain, const char *path, const char *tag,
                     const char *digest, const char *full)
{
        image_ref *r = NULL;
        cc_error *e = NULL;
        int k = image_ref_parse(in, &r, &e);
        if (k < 0)
                fail_msg("'%s': %s", in, e->msg);
        assert_null(e);
        assert_string_equal(r->domain, domain);
        assert_string_equal(r->path, path);
        if (tag)
                assert_string_equal(r->tag, tag);
        else
                assert_null(r->tag);
        if (digest)
                assert_string_equal(r->digest, digest);
        else
                assert_null(r->digest);
        char *s = image_ref_string(r);
        assert_string_equal(s, full);
        free(s);
        image_ref_free(r);
}

static void check_bad(const char *in, const char *needle)
{
        image_ref *r = NULL;
        cc_error *e = NULL;
        int k = image_ref_parse(in, &r, &e);
        if (k >= 0)
                fail_msg("'%s' unexpectedly parsed", in);
        assert_int_equal(k, -EINVAL);
        assert_null(r);
        assert_non_null(e);
        if (!strstr(e->msg, needle))
                fail_msg("'%s': message '%s' lacks '%s'", in, e->msg, needle);
        cc_error_free(e);
}

static void test_normalise(void **state)
{
        check_ok("busybox", "docker.io", "library/busybox", "latest", NULL,
                 "docker.io/library/busybox:latest");
        check_ok("busybox:1.36", "docker.io", "library/busybox", "1.36", NULL,
                 "docker.io/library/busybox:1.36");
        check_ok("user/app", "docker.io", "user/app", "latest", NULL,
                 "docker.io/user/app:latest");
        check_ok("docker.io/busybox", "docker.io", "library/busybox", "latest", NULL,
                 "docker.io/library/busybox:latest");
        check_ok("index.docker.io/user/app:v1", "docker.io", "user/app", "v1", NULL,
                 "docker.io/user/app:v1");
        check_ok("index.docker.io/busybox", "docker.io", "library/busybox", "latest", NULL,
                 "docker.io/library/busybox:latest");
        check_ok("localhost/foo", "localhost", "foo", "latest", NULL, "localhost/foo:latest");
        check_ok("localhost:5000/a/b:tag", "localhost:5000", "a/b", "tag", NULL,
                 "localhost:5000/a/b:tag");
        check_ok("[::1]:5000/x", "[::1]:5000", "x", "latest", NULL, "[::1]:5000/x:latest");
        check_ok("[2001:db8::1]/x/y", "[2001:db8::1]", "x/y", "latest", NULL,
                 "[2001:db8::1]/x/y:latest");
        check_ok("127.0.0.1:5000/x", "127.0.0.1:5000", "x", "latest", NULL,
                 "127.0.0.1:5000/x:latest");
        check_ok("registry.k8s.io/pause:3.9", "registry.k8s.io", "pause", "3.9", NULL,
                 "registry.k8s.io/pause:3.9");
        check_ok("quay.io/a-b/c__d.e---f:Tag_1.x-y", "quay.io", "a-b/c__d.e---f", "Tag_1.x-y",
                 NULL, "quay.io/a-b/c__d.e---f:Tag_1.x-y");
        /* a bare "localhost:5000" is the official image "localhost" with tag 5000 */
        check_ok("localhost:5000", "docker.io", "library/localhost", "5000", NULL,
                 "docker.io/library/localhost:5000");
        /* uppercase first element is taken as a domain, like upstream */
        check_ok("Example/app", "Example", "app", "latest", NULL, "Example/app:latest");
}

static void test_digest(void **state)
{
        check_ok("busybox@sha256:" HEX64, "docker.io", "library/busybox", NULL,
                 "sha256:" HEX64, "docker.io/library/busybox@sha256:" HEX64);
        check_ok("busybox:1.36@sha256:" HEX64, "docker.io", "library/busybox", "1.36",
                 "sha256:" HEX64, "docker.io/library/busybox:1.36@sha256:" HEX64);
        check_ok("localhost:5000/x@sha256:" HEX64, "localhost:5000", "x", NULL,
                 "sha256:" HEX64, "localhost:5000/x@sha256:" HEX64);
        check_bad("busybox@sha256:abc", "invalid checksum digest format");
        check_bad("busybox@sha256:" "7CC4B5AEFD1D0CADF8D97D4350462BA51C694EBCA145B08D7D41B41ACC8DB5AA",
                  "invalid checksum digest format");
        check_bad("busybox@sha256:" HEX64 "00", "invalid checksum digest format");
        check_bad("busybox@md5:" HEX64, "unsupported digest algorithm");
        check_bad("busybox@" HEX64, "invalid digest");
        check_bad("busybox@", "invalid digest");
}

static void test_bad(void **state)
{
        check_bad("", "empty");
        check_bad("Busybox", "must be lowercase");
        check_bad("docker.io/Library/busybox", "must be lowercase");
        check_bad("user/App:1", "must be lowercase");
        check_bad(HEX64, "64-byte hexadecimal");
        check_bad("busybox:", "invalid tag");
        check_bad("busybox:-x", "invalid tag");
        check_bad("busybox:a/b", "invalid");
        check_bad("a//b", "invalid repository path component");
        check_bad("a/b/", "invalid repository path component");
        check_bad("-a/b", "invalid repository path component");
        check_bad("a/b..c", "invalid repository path component");
        check_bad("a/b___c", "invalid repository path component");
        check_bad("a/b-", "invalid repository path component");
        check_bad("exa_mple.com/x", "invalid registry domain");
        check_bad("-bad.com/x", "invalid registry domain");
        check_bad("host:port/x", "invalid registry domain");
        check_bad("host:/x", "invalid registry domain");
        check_bad("[]/x", "invalid repository path component");
        check_bad("[]:5/x", "invalid registry domain");
        check_bad("[::g]/x", "invalid registry domain");
        check_bad("a b", "invalid");
        check_bad("a:b:c", "invalid");
}

static void test_limits(void **state)
{
        char name[300], in[600];
        memset(name, 'a', 255);
        name[255] = '\0';
        snprintf(in, sizeof(in), "example.com/%s", name);
        image_ref *r = NULL;
        assert_int_equal(image_ref_parse(in, &r, NULL), 0);
        image_ref_free(r);
        memset(name, 'a', 256);
        name[256] = '\0';
        snprintf(in, sizeof(in), "example.com/%s", name);
        check_bad(in, "more than 255");

        char tag[200];
        memset(tag, 'x', 128);
        tag[128] = '\0';
        snprintf(in, sizeof(in), "busybox:%s", tag);
        r = NULL;
        assert_int_equal(image_ref_parse(in, &r, NULL), 0);
        image_ref_free(r);
        memset(tag, 'x', 129);
        tag[129] = '\0';
        snprintf(in, sizeof(in), "busybox:%s", tag);
        check_bad(in, "tag longer than 128");

        /* a registry host: at most 253 bytes, a port at most 5 digits (the
         * fuzzer found a 1000-byte host whose digest form no longer parsed) */
        char host[300];
        memset(host, 'h', 249);
        memcpy(host + 249, ".com", 5); /* 253 */
        snprintf(in, sizeof(in), "%s:65535/x", host);
        r = NULL;
        assert_int_equal(image_ref_parse(in, &r, NULL), 0);
        image_ref_free(r);
        snprintf(in, sizeof(in), "h%s/x", host); /* 254 */
        check_bad(in, "invalid registry domain");
        check_bad("localhost:123456/x", "invalid registry domain");
        /* the longest of everything, with a digest, still parses back */
        memset(name, 'a', 255);
        name[255] = '\0';
        memset(tag, 'x', 128);
        tag[128] = '\0';
        char *full = NULL;
        assert_true(asprintf(&full, "%s:65535/%s:%s@sha256:%064d", host, name, tag, 0) > 0);
        r = NULL;
        assert_int_equal(image_ref_parse(full, &r, NULL), 0);
        image_ref_free(r);
        free(full);

        char *big = malloc(5000);
        memset(big, 'a', 4999);
        big[4999] = '\0';
        check_bad(big, "longer than");
        free(big);
}

static void test_helpers(void **state)
{
        image_ref *r = NULL;
        assert_int_equal(image_ref_parse("busybox", &r, NULL), 0);
        assert_string_equal(image_ref_registry_host(r), "registry-1.docker.io");
        assert_string_equal(image_ref_object(r), "latest");
        char *s = image_ref_familiar(r);
        assert_string_equal(s, "busybox:latest");
        free(s);
        s = image_ref_name(r);
        assert_string_equal(s, "docker.io/library/busybox");
        free(s);
        s = image_ref_with_digest(r, "sha256:" HEX64);
        assert_string_equal(s, "docker.io/library/busybox@sha256:" HEX64);
        free(s);
        image_ref *d = image_ref_dup(r);
        image_ref_free(r);
        s = image_ref_tagged(d);
        assert_string_equal(s, "docker.io/library/busybox:latest");
        free(s);
        image_ref_free(d);

        assert_int_equal(image_ref_parse("localhost:5000/a/b@sha256:" HEX64, &r, NULL), 0);
        assert_string_equal(image_ref_registry_host(r), "localhost:5000");
        assert_string_equal(image_ref_object(r), "sha256:" HEX64);
        assert_null(image_ref_tagged(r));
        s = image_ref_familiar(r);
        assert_string_equal(s, "localhost:5000/a/b@sha256:" HEX64);
        free(s);
        image_ref_free(r);

        assert_int_equal(image_ref_parse("user/app:v2", &r, NULL), 0);
        s = image_ref_familiar(r);
        assert_string_equal(s, "user/app:v2");
        free(s);
        image_ref_free(r);
        /* library/ with nested path stays */
        assert_int_equal(image_ref_parse("library/a/b", &r, NULL), 0);
        s = image_ref_familiar(r);
        assert_string_equal(s, "library/a/b:latest");
        free(s);
        image_ref_free(r);
        /* A Docker Hub repository whose first component looks like a host
         * keeps docker.io/ (else it would name another registry). */
        const char *const hosty[] = { "docker.io/r.io/x:latest", "docker.io/localhost/x:latest", NULL };
        for (size_t i = 0; hosty[i]; i++) {
                assert_int_equal(image_ref_parse(hosty[i], &r, NULL), 0);
                s = image_ref_familiar(r);
                assert_string_equal(s, hosty[i]);
                image_ref *back = NULL;
                assert_int_equal(image_ref_parse(s, &back, NULL), 0);
                assert_string_equal(back->domain, "docker.io");
                image_ref_free(back);
                free(s);
                image_ref_free(r);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_normalise), cmocka_unit_test(test_digest),
                cmocka_unit_test(test_bad),       cmocka_unit_test(test_limits),
                cmocka_unit_test(test_helpers),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
