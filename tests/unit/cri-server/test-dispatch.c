/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for cri-server/dispatch.c: the method table against
 * proto/api.proto (parsed at test time), path lookup (v1, v1alpha2, admin,
 * garbage), the per-call arena, and cri_dispatch's handler-free replies
 * (unknown, unimplemented, streaming, malformed) plus Version end to end. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ctype.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/config.h"
#include "common/log.h"
#include "cri-server/dispatch.h"
#include "cri-server/status.h"

#ifndef TOP_SRCDIR
#error "TOP_SRCDIR must be defined"
#endif

/* ---- proto/api.proto, parsed just enough ------------------------------- */

typedef struct proto_rpc {
        char service[64], name[64], req[96], resp[96];
        bool streaming;
} proto_rpc;

static proto_rpc rpcs[128];
static size_t n_rpcs;

/* Next token: an identifier (dots allowed) or one punctuation character.
 * Comments are skipped. Returns false at the end. */
static bool next_token(const char **pp, char *tok, size_t cap)
{
        const char *p = *pp;
        for (;;) {
                while (*p && isspace((unsigned char)*p))
                        p++;
                if (p[0] == '/' && p[1] == '/') {
                        while (*p && *p != '\n')
                                p++;
                        continue;
                }
                if (p[0] == '/' && p[1] == '*') {
                        const char *e = strstr(p + 2, "*/");
                        p = e ? e + 2 : p + strlen(p);
                        continue;
                }
                break;
        }
        if (!*p)
                return false;
        size_t n = 0;
        if (isalnum((unsigned char)*p) || *p == '_' || *p == '.') {
                while ((isalnum((unsigned char)*p) || *p == '_' || *p == '.') && n + 1 < cap)
                        tok[n++] = *p++;
        } else if (*p == '"') {
                tok[n++] = *p++;
                while (*p && *p != '"' && n + 1 < cap)
                        tok[n++] = *p++;
                if (*p == '"')
                        p++;
        } else {
                tok[n++] = *p++;
        }
        tok[n] = 0;
        *pp = p;
        return true;
}

static void expect_token(const char **pp, char *tok, size_t cap, const char *want)
{
        assert_true(next_token(pp, tok, cap));
        if (want && strcmp(tok, want) != 0)
                fail_msg("api.proto: expected '%s', got '%s'", want, tok);
}

static int load_proto(void **state)
{
        FILE *f = fopen(TOP_SRCDIR "/proto/api.proto", "r");
        if (!f)
                return -1;
        char *text = NULL;
        size_t cap = 0;
        ssize_t n = getdelim(&text, &cap, 0, f);
        fclose(f);
        if (n <= 0) {
                free(text);
                return -1;
        }
        const char *p = text;
        char tok[128], service[64] = "";
        int depth = 0, service_depth = -1;
        n_rpcs = 0;
        while (next_token(&p, tok, sizeof(tok))) {
                if (strcmp(tok, "{") == 0) {
                        depth++;
                } else if (strcmp(tok, "}") == 0) {
                        depth--;
                        if (depth == service_depth) {
                                service_depth = -1;
                                service[0] = 0;
                        }
                } else if (depth == 0 && strcmp(tok, "service") == 0) {
                        next_token(&p, service, sizeof(service));
                        service_depth = depth;
                } else if (service_depth >= 0 && depth == service_depth + 1 && strcmp(tok, "rpc") == 0) {
                        if (n_rpcs == sizeof(rpcs) / sizeof(rpcs[0]))
                                break;
                        proto_rpc *r = &rpcs[n_rpcs++];
                        memset(r, 0, sizeof(*r));
                        snprintf(r->service, sizeof(r->service), "%s", service);
                        next_token(&p, r->name, sizeof(r->name));
                        expect_token(&p, tok, sizeof(tok), "(");
                        next_token(&p, r->req, sizeof(r->req));
                        expect_token(&p, tok, sizeof(tok), ")");
                        expect_token(&p, tok, sizeof(tok), "returns");
                        expect_token(&p, tok, sizeof(tok), "(");
                        next_token(&p, r->resp, sizeof(r->resp));
                        if (strcmp(r->resp, "stream") == 0) {
                                r->streaming = true;
                                next_token(&p, r->resp, sizeof(r->resp));
                        }
                        expect_token(&p, tok, sizeof(tok), ")");
                }
        }
        free(text);
        return n_rpcs > 0 ? 0 : -1;
}

static const cri_method *table_find(const char *service, const char *name)
{
        for (size_t i = 0; i < cri_n_methods; i++)
                if (strcmp(cri_methods[i].service, service) == 0 &&
                    strcmp(cri_methods[i].name, name) == 0)
                        return &cri_methods[i];
        return NULL;
}

static void test_table_matches_proto(void **state)
{
        assert_int_equal(n_rpcs, 41);
        assert_int_equal(cri_n_methods, n_rpcs);
        for (size_t i = 0; i < n_rpcs; i++) {
                const proto_rpc *r = &rpcs[i];
                const cri_method *m = table_find(r->service, r->name);
                if (!m)
                        fail_msg("%s/%s from api.proto is missing from the table", r->service, r->name);
                /* Descriptors are the proto's message types. */
                if (strcmp(m->req_desc->short_name, r->req) != 0 ||
                    strcmp(m->resp_desc->short_name, r->resp) != 0)
                        fail_msg("%s: table has %s -> %s, proto says %s -> %s", r->name,
                                 m->req_desc->short_name, m->resp_desc->short_name, r->req, r->resp);
                assert_string_equal(m->req_desc->package_name, "runtime.v1");
                if (m->streaming != r->streaming)
                        fail_msg("%s: streaming flag %d, proto says %d", r->name, m->streaming,
                                 r->streaming);
                /* The streaming methods with a handler send with
                 * cri_stream_send: events, and the Stream* twins of the
                 * List methods (not StreamPodSandboxMetrics yet). */
                if (m->streaming && m->handler && strcmp(m->name, "GetContainerEvents") != 0)
                        assert_true(strncmp(m->name, "Stream", 6) == 0 &&
                                    strcmp(m->name, "StreamPodSandboxMetrics") != 0);
        }
        /* No duplicates in the table. */
        for (size_t i = 0; i < cri_n_methods; i++)
                for (size_t j = i + 1; j < cri_n_methods; j++)
                        if (strcmp(cri_methods[i].service, cri_methods[j].service) == 0 &&
                            strcmp(cri_methods[i].name, cri_methods[j].name) == 0)
                                fail_msg("duplicate %s", cri_methods[i].name);
}

/* ---- lookup ------------------------------------------------------------- */

static void test_lookup_every_method(void **state)
{
        for (size_t i = 0; i < cri_n_methods; i++) {
                const cri_method *m = &cri_methods[i];
                char path[160];
                const char *ver = NULL;
                snprintf(path, sizeof(path), "/runtime.v1.%s/%s", m->service, m->name);
                assert_ptr_equal(cri_method_lookup(path, false, &ver), m);
                assert_string_equal(ver, "v1");
                snprintf(path, sizeof(path), "/runtime.v1alpha2.%s/%s", m->service, m->name);
                ver = NULL;
                assert_ptr_equal(cri_method_lookup(path, true, &ver), m);
                assert_string_equal(ver, "v1alpha2");
                /* Refused when v1alpha2 is disabled; output untouched. */
                ver = "untouched";
                assert_null(cri_method_lookup(path, false, &ver));
                assert_string_equal(ver, "untouched");
        }
        /* ret_api_version may be NULL. */
        assert_non_null(cri_method_lookup("/runtime.v1.RuntimeService/Version", false, NULL));
}

static void test_lookup_admin(void **state)
{
        const char *ver = NULL;
        const cri_method *m = cri_method_lookup("/cocoon.admin.v1.Admin/ImportImage", false, &ver);
        assert_non_null(m);
        assert_string_equal(m->name, "ImportImage");
        assert_string_equal(ver, "admin");
        assert_null(cri_method_lookup("/cocoon.admin.v1.Admin/Nope", true, &ver));
        assert_null(cri_method_lookup("/cocoon.admin.v1.Admin/ImportImageX", true, &ver));
        assert_null(cri_method_lookup("/cocoon.admin.v1.Admin/", true, &ver));
}

static void test_lookup_garbage(void **state)
{
        static const char *const bad[] = {
                "",
                "/",
                "runtime.v1.RuntimeService/Version",         /* no leading slash */
                "//runtime.v1.RuntimeService/Version",
                "/runtime.v1.RuntimeService/Versionx",       /* prefix must not match */
                "/runtime.v1.RuntimeService/Versio",
                "/runtime.v1.RuntimeService/Version/",
                "/runtime.v1.RuntimeService/version",         /* case matters */
                "/runtime.v1.RuntimeService/",
                "/runtime.v1.RuntimeService",
                "/runtime.v1.RuntimeServic/Version",
                "/runtime.v1.RuntimeServicex/Version",
                "/runtime.v1.ImageService/Version",           /* wrong service */
                "/runtime.v1.RuntimeService/ListImages",
                "/runtime.v1.FooService/Version",
                "/runtime.v2.RuntimeService/Version",
                "/runtime.v1alpha1.RuntimeService/Version",
                "/runtime.v1alpha2x.RuntimeService/Version",
                "/runtime.RuntimeService/Version",
                "/runtime.v1./Version",
                "/runtime.v1.RuntimeService/Version\n",
                "/grpc.health.v1.Health/Check",
                "/runtime.v1.RuntimeService/Version?x=1",
                " /runtime.v1.RuntimeService/Version",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                const char *ver = "untouched";
                if (cri_method_lookup(bad[i], true, &ver))
                        fail_msg("'%s' resolved", bad[i]);
                assert_string_equal(ver, "untouched");
        }
        assert_null(cri_method_lookup(NULL, true, NULL));
}

/* ---- arena -------------------------------------------------------------- */

/* The arena's layout is private to dispatch.c and it has no public free
 * function (cri_dispatch frees it). The test mirrors the layout to free the
 * blocks it made: a singly linked list whose link is the first member. */
struct cri_arena {
        void *head;
};

static void arena_release(struct cri_arena *a)
{
        while (a->head) {
                void *b = a->head;
                a->head = *(void **)b;
                free(b);
        }
}

static void test_arena(void **state)
{
        struct cri_arena arena = { NULL };
        cri_ctx ctx = { .arena = &arena };
        static const size_t sizes[] = { 1, 3, 7, 8, 15, 16, 17, 31, 33, 100, 1000, 5000, 16384,
                                        16385, 40000, 1, 2, 9 };
        enum { N = sizeof(sizes) / sizeof(sizes[0]) };
        unsigned char *ptrs[N * 20];
        size_t lens[N * 20];
        size_t k = 0;
        for (int round = 0; round < 20; round++) {
                for (size_t i = 0; i < N; i++, k++) {
                        unsigned char *p = cri_alloc(&ctx, sizes[i]);
                        assert_non_null(p);
                        assert_int_equal((uintptr_t)p % _Alignof(max_align_t), 0);
                        for (size_t j = 0; j < sizes[i]; j++)
                                if (p[j] != 0)
                                        fail_msg("allocation of %zu not zeroed at %zu", sizes[i], j);
                        memset(p, (int)(k & 0xff) | 1, sizes[i]);
                        ptrs[k] = p;
                        lens[k] = sizes[i];
                }
        }
        /* No allocation overlaps another: every pattern is intact. */
        for (size_t i = 0; i < k; i++)
                for (size_t j = 0; j < lens[i]; j++)
                        if (ptrs[i][j] != ((i & 0xff) | 1))
                                fail_msg("allocation %zu overwritten at %zu", i, j);
        /* Zero-size allocations are distinct-enough valid pointers. */
        assert_non_null(cri_alloc(&ctx, 0));

        char *s = cri_strdup(&ctx, "hello");
        assert_string_equal(s, "hello");
        assert_string_equal(cri_strdup(&ctx, NULL), "");
        assert_string_equal(cri_printf(&ctx, "%s-%d", "x", 42), "x-42");

        Runtime__V1__VersionResponse *v = CRI_NEW(&ctx, runtime__v1__version_response);
        assert_ptr_equal(v->base.descriptor, &runtime__v1__version_response__descriptor);
        assert_int_equal((uintptr_t)v % _Alignof(max_align_t), 0);
        assert_non_null(v->runtime_name);
        assert_string_equal(v->runtime_name, "");

        Runtime__V1__StatusResponse__InfoEntry *e = cri_map_entry(&ctx, "k", NULL);
        assert_ptr_equal(e->base.descriptor, &runtime__v1__status_response__info_entry__descriptor);
        assert_string_equal(e->key, "k");
        assert_string_equal(e->value, "");
        arena_release(&arena);
}

/* ---- cri_dispatch ------------------------------------------------------- */

static atomic_bool not_cancelled;

static cri_reply call(cocoon_daemon *d, const char *method, const uint8_t *req, size_t len)
{
        cri_call_info info = { .method = method, .deadline_ms = INT64_MAX, .cancelled = &not_cancelled };
        cri_reply reply = { 0 };
        cri_dispatch(d, &info, req, len, &reply);
        return reply;
}

static void reply_free(cri_reply *r)
{
        free(r->msg);
        free(r->resp);
}

static void expect_error_reply(cocoon_daemon *d, const char *method, const uint8_t *req, size_t len,
                               int code, const char *needle)
{
        cri_reply r = call(d, method, req, len);
        if (r.code != code)
                fail_msg("%s: got %s (%s), want %s", method, cri_status_name(r.code),
                         r.msg ? r.msg : "", cri_status_name(code));
        assert_non_null(r.msg);
        if (needle && !strstr(r.msg, needle))
                fail_msg("%s: message '%s' lacks '%s'", method, r.msg, needle);
        assert_null(r.resp);
        assert_int_equal(r.resp_len, 0);
        reply_free(&r);
}

static void test_dispatch_unknown(void **state)
{
        expect_error_reply(NULL, "/runtime.v1.RuntimeService/NoSuchMethod", NULL, 0, CRI_UNIMPLEMENTED,
                           "/runtime.v1.RuntimeService/NoSuchMethod");
        expect_error_reply(NULL, "/runtime.v1.RuntimeService/Versionx", NULL, 0, CRI_UNIMPLEMENTED,
                           "Versionx");
        expect_error_reply(NULL, "garbage", NULL, 0, CRI_UNIMPLEMENTED, NULL);
}

static void test_dispatch_unimplemented(void **state)
{
        /* Methods without a handler answer UNIMPLEMENTED naming the method,
         * whatever the payload. */
        static const uint8_t junk[] = { 0xff, 0xff, 0xff };
        expect_error_reply(NULL, "/runtime.v1.RuntimeService/CheckpointContainer", NULL, 0, CRI_UNIMPLEMENTED,
                           "CheckpointContainer");
        expect_error_reply(NULL, "/runtime.v1.RuntimeService/CheckpointContainer", junk, sizeof(junk),
                           CRI_UNIMPLEMENTED, "CheckpointContainer");
        expect_error_reply(NULL, "/runtime.v1.RuntimeService/StreamPodSandboxMetrics", NULL, 0,
                           CRI_UNIMPLEMENTED, "StreamPodSandboxMetrics");
        for (size_t i = 0; i < cri_n_methods; i++) {
                const cri_method *m = &cri_methods[i];
                if (m->handler)
                        continue;
                char path[160];
                snprintf(path, sizeof(path), "/runtime.v1.%s/%s", m->service, m->name);
                expect_error_reply(NULL, path, NULL, 0, CRI_UNIMPLEMENTED, m->name);
        }
}

static void test_dispatch_malformed(void **state)
{
        /* Field 1 (version, string) claims 5 bytes and has 1. */
        static const uint8_t truncated[] = { 0x0a, 0x05, 'a' };
        /* Field 1 with the wrong wire type (varint for a string). */
        static const uint8_t wrong_type[] = { 0x08, 0x01 };
        static const uint8_t bad_varint[] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
        expect_error_reply(NULL, "/runtime.v1.RuntimeService/Version", truncated, sizeof(truncated),
                           CRI_INVALID_ARGUMENT, "Version");
        expect_error_reply(NULL, "/runtime.v1.RuntimeService/Version", wrong_type, sizeof(wrong_type),
                           CRI_INVALID_ARGUMENT, "VersionRequest");
        expect_error_reply(NULL, "/runtime.v1.RuntimeService/Version", bad_varint, sizeof(bad_varint),
                           CRI_INVALID_ARGUMENT, NULL);
}

static Runtime__V1__VersionResponse *call_version(cocoon_daemon *d, const char *path)
{
        Runtime__V1__VersionRequest req = RUNTIME__V1__VERSION_REQUEST__INIT;
        req.version = "0.1.0";
        uint8_t buf[64];
        size_t n = runtime__v1__version_request__pack(&req, buf);
        cri_reply r = call(d, path, buf, n);
        if (r.code != CRI_OK)
                fail_msg("%s: %s %s", path, cri_status_name(r.code), r.msg ? r.msg : "");
        assert_null(r.msg);
        assert_non_null(r.resp);
        Runtime__V1__VersionResponse *resp = runtime__v1__version_response__unpack(NULL, r.resp_len, r.resp);
        reply_free(&r);
        assert_non_null(resp);
        return resp;
}

static void test_dispatch_version(void **state)
{
        Runtime__V1__VersionResponse *v = call_version(NULL, "/runtime.v1.RuntimeService/Version");
        assert_string_equal(v->runtime_name, "cocoon");
        assert_string_equal(v->version, "0.1.0");
        assert_string_equal(v->runtime_api_version, "v1");
        assert_true(strlen(v->runtime_version) > 0);
        runtime__v1__version_response__free_unpacked(v, NULL);

        /* An empty payload is a valid, all-default request. */
        cri_reply r = call(NULL, "/runtime.v1.RuntimeService/Version", NULL, 0);
        assert_int_equal(r.code, CRI_OK);
        reply_free(&r);
}

static void test_dispatch_v1alpha2_config(void **state)
{
        cocoon_daemon d;
        memset(&d, 0, sizeof(d));
        d.cfg = cc_config_new_default();
        assert_non_null(d.cfg);

        d.cfg->server.enable_v1alpha2 = true;
        Runtime__V1__VersionResponse *v = call_version(&d, "/runtime.v1alpha2.RuntimeService/Version");
        assert_string_equal(v->runtime_api_version, "v1alpha2");
        runtime__v1__version_response__free_unpacked(v, NULL);

        d.cfg->server.enable_v1alpha2 = false;
        expect_error_reply(&d, "/runtime.v1alpha2.RuntimeService/Version", NULL, 0, CRI_UNIMPLEMENTED,
                           "v1alpha2");
        v = call_version(&d, "/runtime.v1.RuntimeService/Version");
        assert_string_equal(v->runtime_api_version, "v1");
        runtime__v1__version_response__free_unpacked(v, NULL);
        cc_config_free(d.cfg);
}

static void test_dispatch_handler_error(void **state)
{
        /* A handler that fails before touching the daemon: its cc_error
         * becomes the status code and the message. */
        Runtime__V1__NetworkConfig net = RUNTIME__V1__NETWORK_CONFIG__INIT;
        net.pod_cidr = "not-an-ip/8";
        Runtime__V1__RuntimeConfig rc = RUNTIME__V1__RUNTIME_CONFIG__INIT;
        rc.network_config = &net;
        Runtime__V1__UpdateRuntimeConfigRequest req = RUNTIME__V1__UPDATE_RUNTIME_CONFIG_REQUEST__INIT;
        req.runtime_config = &rc;
        uint8_t buf[128];
        size_t n = runtime__v1__update_runtime_config_request__pack(&req, buf);
        expect_error_reply(NULL, "/runtime.v1.RuntimeService/UpdateRuntimeConfig", buf, n,
                           CRI_INVALID_ARGUMENT, "not-an-ip");
}

/* The Stream* lists' batches: in order, each within the byte budget but
 * never empty (an oversize item goes alone), every item exactly once. */
static void test_stream_batches(void **state)
{
        (void)state;
        enum { N = 40 };
        Runtime__V1__Image imgs[N];
        ProtobufCMessage *items[N];
        char ids[N][600];
        for (int i = 0; i < N; i++) {
                runtime__v1__image__init(&imgs[i]);
                /* ids of 10..~550 bytes; item 7 alone is over the budget */
                int len = i == 7 ? 590 : 10 + (i * 37) % 540;
                memset(ids[i], 'a' + i % 26, (size_t)len);
                ids[i][len] = 0;
                imgs[i].id = ids[i];
                items[i] = &imgs[i].base;
        }
        const size_t budget = 500;
        size_t seen = 0, batches = 0;
        for (size_t i = 0; i < N;) {
                size_t j = cri_batch_end(items, i, N, budget);
                assert_true(j > i && j <= N);
                size_t bytes = 0;
                for (size_t k = i; k < j; k++)
                        bytes += protobuf_c_message_get_packed_size(items[k]) + 8;
                if (j - i > 1)
                        assert_true(bytes <= budget);
                if (i == 7)
                        assert_int_equal(j, 8); /* oversize: alone */
                if (j < N) /* the next item would not have fit */
                        assert_true(bytes + protobuf_c_message_get_packed_size(items[j]) + 8 > budget);
                seen += j - i;
                batches++;
                i = j;
        }
        assert_int_equal(seen, N);
        assert_true(batches > 5);
        assert_int_equal(cri_batch_end(items, 3, 3, budget), 3); /* nothing left */
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_table_matches_proto),
                cmocka_unit_test(test_lookup_every_method),
                cmocka_unit_test(test_lookup_admin),
                cmocka_unit_test(test_lookup_garbage),
                cmocka_unit_test(test_arena),
                cmocka_unit_test(test_dispatch_unknown),
                cmocka_unit_test(test_stream_batches),
                cmocka_unit_test(test_dispatch_unimplemented),
                cmocka_unit_test(test_dispatch_malformed),
                cmocka_unit_test(test_dispatch_version),
                cmocka_unit_test(test_dispatch_v1alpha2_config),
                cmocka_unit_test(test_dispatch_handler_error),
        };
        cc_log_set_level(CC_LOG_ERROR); /* keep the test output quiet */
        return cmocka_run_group_tests(tests, load_proto, NULL);
}
