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
#include "image/manifest.h"

#define DA "sha256:ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"
#define DB "sha256:3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d"
#define DC "sha256:2e7d2c03a9507ae265ecf5b5356885a53393a2029d241394997265a1a25aefc6"
#define C2 "sha256:51c0c8ace48498d6f5fee6b0592cc06f2da0f3cbe09c5a34a97dce85c3889676"
#define C3 "sha256:2fce7f8ce91bcf0a1428b36e1024639fdbd9469eea762dba98aa749631885106"

#define P(os, arch, extra) "\"platform\":{\"os\":\"" os "\",\"architecture\":\"" arch "\"" extra "}"
#define DESC(mt, d, plat) "{\"mediaType\":\"" mt "\",\"digest\":\"" d "\",\"size\":100," plat "}"

static const char *index_doc =
        "{\"schemaVersion\":2,\"mediaType\":\"" IMAGE_MT_OCI_INDEX "\",\"manifests\":["
        DESC(IMAGE_MT_OCI_MANIFEST, DA, P("linux", "arm", ",\"variant\":\"v6\"")) ","
        DESC(IMAGE_MT_OCI_MANIFEST, DB, P("linux", "arm", ",\"variant\":\"v7\"")) ","
        DESC(IMAGE_MT_OCI_MANIFEST, DC, P("linux", "amd64", "")) ","
        DESC(IMAGE_MT_OCI_MANIFEST, DC, P("unknown", "unknown", "")) ","
        DESC(IMAGE_MT_OCI_MANIFEST, DB, P("linux", "arm64", ",\"variant\":\"v8\"")) "]}";

static const char *manifest_doc =
        "{\"schemaVersion\":2,\"mediaType\":\"" IMAGE_MT_DOCKER_MANIFEST "\","
        "\"config\":{\"mediaType\":\"" IMAGE_MT_DOCKER_CONFIG "\",\"digest\":\"" DA "\",\"size\":7023},"
        "\"layers\":["
        "{\"mediaType\":\"application/vnd.docker.image.rootfs.diff.tar.gzip\",\"digest\":\"" DB "\",\"size\":32654},"
        "{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+zstd\",\"digest\":\"" DC "\",\"size\":16724},"
        "{\"mediaType\":\"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip\",\"digest\":\"" DA "\",\"size\":73109,"
        "\"urls\":[\"https://example.com/layer\"]}]}";

static const char *config_doc =
        "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"User\":\"1000:1000\","
        "\"Env\":[\"PATH=/usr/bin\",\"A=b\"],\"Entrypoint\":[\"/bin/sh\",\"-c\"],\"Cmd\":null,"
        "\"WorkingDir\":\"/srv\",\"ExposedPorts\":{\"80/tcp\":{},\"53/udp\":{}},"
        "\"Volumes\":{\"/data\":{}},\"Labels\":{\"a\":\"1\",\"b\":\"2\"},\"StopSignal\":\"SIGQUIT\"},"
        "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" DA "\",\"" DB "\",\"" DC "\"]},"
        "\"history\":[{\"created_by\":\"x\"}]}";

static int err_is(int r, cc_error **ep, int code, const char *needle)
{
        cc_error *e = *ep;
        *ep = NULL;
        if (r != code)
                fail_msg("got %d (%s), want %d", r, e ? e->msg : "-", code);
        if (!e || !strstr(e->msg, needle))
                fail_msg("message '%s' lacks '%s'", e ? e->msg : "(none)", needle);
        cc_error_free(e);
        return 1;
}

static void test_detect(void **state)
{
        image_doc_kind k;
        cc_error *e = NULL;
        assert_int_equal(image_doc_detect(index_doc, strlen(index_doc), NULL, &k, &e), 0);
        assert_int_equal(k, IMAGE_DOC_INDEX);
        assert_int_equal(image_doc_detect(manifest_doc, strlen(manifest_doc), NULL, &k, &e), 0);
        assert_int_equal(k, IMAGE_DOC_MANIFEST);
        const char *noms = "{\"schemaVersion\":2,\"manifests\":[]}";
        assert_int_equal(image_doc_detect(noms, strlen(noms), NULL, &k, &e), 0);
        assert_int_equal(k, IMAGE_DOC_INDEX);
        const char *bare = "{\"schemaVersion\":2,\"config\":{},\"layers\":[]}";
        assert_int_equal(image_doc_detect(bare, strlen(bare),
                                          IMAGE_MT_DOCKER_MANIFEST "; charset=utf-8", &k, &e), 0);
        assert_int_equal(k, IMAGE_DOC_MANIFEST);
        const char *s1 = "{\"schemaVersion\":1,\"name\":\"x\",\"fsLayers\":[]}";
        err_is(image_doc_detect(s1, strlen(s1), NULL, &k, &e), &e, -EPROTONOSUPPORT, "schema 1");
        const char *s1b = "{\"schemaVersion\":1,\"mediaType\":\"" IMAGE_MT_DOCKER_SCHEMA1_SIGNED "\"}";
        err_is(image_doc_detect(s1b, strlen(s1b), NULL, &k, &e), &e, -EPROTONOSUPPORT, "schema 1");
        const char *art = "{\"schemaVersion\":2,\"mediaType\":\"application/x-foo\"}";
        err_is(image_doc_detect(art, strlen(art), NULL, &k, &e), &e, -EMEDIUMTYPE, "x-foo");
        err_is(image_doc_detect("[1]", 3, NULL, &k, &e), &e, -EINVAL, "JSON object");
        err_is(image_doc_detect("{", 1, NULL, &k, &e), &e, -EINVAL, "invalid JSON");
        char *big = malloc(IMAGE_MANIFEST_MAX_SIZE + 2);
        memset(big, ' ', IMAGE_MANIFEST_MAX_SIZE + 1);
        big[0] = '{';
        big[IMAGE_MANIFEST_MAX_SIZE] = '}';
        err_is(image_doc_detect(big, IMAGE_MANIFEST_MAX_SIZE + 1, NULL, &k, &e), &e, -E2BIG,
               "too large");
        free(big);
}

static void test_index_select(void **state)
{
        image_index *idx = NULL;
        cc_error *e = NULL;
        int r = image_index_parse(index_doc, strlen(index_doc), &idx, &e);
        if (r < 0)
                fail_msg("%s", e->msg);
        assert_int_equal(idx->n_manifests, 5);
        assert_string_equal(idx->media_type, IMAGE_MT_OCI_INDEX);
        assert_string_equal(idx->manifests[4].platform->architecture, "arm64");
        assert_null(idx->manifests[4].platform->variant); /* v8 normalised away */
        assert_int_equal(idx->manifests[0].size, 100);

        const image_descriptor *d = NULL;
        image_platform *want = NULL;
        assert_int_equal(image_platform_parse("linux/amd64", &want, NULL), 0);
        assert_int_equal(image_index_select(idx, want, &d, &e), 0);
        assert_string_equal(d->digest, DC);
        assert_string_equal(d->platform->architecture, "amd64");
        image_platform_free(want);

        assert_int_equal(image_platform_parse("linux/arm64", &want, NULL), 0);
        assert_int_equal(image_index_select(idx, want, &d, &e), 0);
        assert_ptr_equal(d, &idx->manifests[4]);
        image_platform_free(want);

        /* arm v7 host takes v7 over v6; armv6 host takes v6; armv8 (32-bit) takes v7 */
        assert_int_equal(image_platform_parse("linux/armhf", &want, NULL), 0);
        assert_int_equal(image_index_select(idx, want, &d, &e), 0);
        assert_ptr_equal(d, &idx->manifests[1]);
        image_platform_free(want);
        assert_int_equal(image_platform_parse("linux/arm/v6", &want, NULL), 0);
        assert_int_equal(image_index_select(idx, want, &d, &e), 0);
        assert_ptr_equal(d, &idx->manifests[0]);
        image_platform_free(want);
        assert_int_equal(image_platform_parse("linux/arm/8", &want, NULL), 0);
        assert_int_equal(image_index_select(idx, want, &d, &e), 0);
        assert_ptr_equal(d, &idx->manifests[1]);
        image_platform_free(want);
        assert_int_equal(image_platform_parse("linux/arm/v5", &want, NULL), 0);
        r = image_index_select(idx, want, &d, &e);
        err_is(r, &e, -ENOENT, "linux/arm/v6, linux/arm/v7, linux/amd64");
        image_platform_free(want);
        assert_int_equal(image_platform_parse("linux/s390x", &want, NULL), 0);
        err_is(image_index_select(idx, want, &d, &e), &e, -ENOENT, "no manifest for platform");
        image_platform_free(want);

        /* host selection works (we build on amd64/arm64) */
        image_platform *host = NULL;
        assert_int_equal(image_platform_host(&host, NULL), 0);
        assert_string_equal(host->os, "linux");
        if (!strcmp(host->architecture, "amd64") || !strcmp(host->architecture, "arm64")) {
                assert_int_equal(image_index_select(idx, NULL, &d, &e), 0);
                assert_string_equal(d->platform->architecture, host->architecture);
        }
        image_platform_free(host);
        image_index_free(idx);
}

static void test_index_bad(void **state)
{
        image_index *idx = NULL;
        cc_error *e = NULL;
        const char *bad[][2] = {
                { "{\"schemaVersion\":2,\"manifests\":{}}", "expected an array" },
                { "{\"schemaVersion\":3,\"manifests\":[]}", "schemaVersion" },
                { "{\"manifests\":[]}", "schemaVersion" },
                { "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"x\",\"digest\":\"sha256:00\",\"size\":1}]}",
                  "64 lowercase hex" },
                { "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"x\",\"digest\":\"sha512:00\",\"size\":1}]}",
                  "unsupported digest algorithm" },
                { "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"x\",\"digest\":\"" DA "\",\"size\":-1}]}",
                  "out of range" },
                { "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"x\",\"digest\":\"" DA "\",\"size\":\"1\"}]}",
                  "expected an integer" },
                { "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"x\",\"digest\":\"" DA "\",\"size\":1.5}]}",
                  "expected an integer" },
                { "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"x\",\"digest\":\"" DA "\",\"size\":99999999999999999999}]}",
                  "range" },
                { "{\"schemaVersion\":2,\"manifests\":[{\"digest\":\"" DA "\",\"size\":1}]}",
                  "missing field 'mediaType'" },
                { "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"x\",\"digest\":\"" DA "\",\"size\":1,\"platform\":{\"os\":1}}]}",
                  "platform" },
                { "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":7,\"digest\":\"" DA "\",\"size\":1}]}",
                  "mediaType: expected a string" },
                { "{\"schemaVersion\":2,\"mediaType\":\"" IMAGE_MT_OCI_MANIFEST "\",\"config\":{},\"layers\":[]}",
                  "is a manifest" },
        };
        for (size_t i = 0; i < CC_ARRAY_SIZE(bad); i++) {
                int r = image_index_parse(bad[i][0], strlen(bad[i][0]), &idx, &e);
                if (r >= 0)
                        fail_msg("case %zu parsed", i);
                if (!strstr(e->msg, bad[i][1]))
                        fail_msg("case %zu: '%s' lacks '%s'", i, e->msg, bad[i][1]);
                cc_error_free(e);
                e = NULL;
                }
        assert_null(idx);
}

static void test_manifest(void **state)
{
        image_manifest *m = NULL;
        cc_error *e = NULL;
        int r = image_manifest_parse(manifest_doc, strlen(manifest_doc), &m, &e);
        if (r < 0)
                fail_msg("%s", e->msg);
        assert_string_equal(m->media_type, IMAGE_MT_DOCKER_MANIFEST);
        assert_string_equal(m->config.digest, DA);
        assert_int_equal(m->config.size, 7023);
        assert_int_equal(m->n_layers, 3);
        image_compression c;
        bool foreign;
        assert_int_equal(image_layer_media_type(m->layers[0].media_type, &c, &foreign, NULL), 0);
        assert_int_equal(c, IMAGE_COMPRESSION_GZIP);
        assert_false(foreign);
        assert_int_equal(image_layer_media_type(m->layers[1].media_type, &c, &foreign, NULL), 0);
        assert_int_equal(c, IMAGE_COMPRESSION_ZSTD);
        assert_int_equal(image_layer_media_type(m->layers[2].media_type, &c, &foreign, NULL), 0);
        assert_true(foreign);
        assert_string_equal(m->layers[2].urls[0], "https://example.com/layer");
        assert_int_equal(image_layer_media_type("application/vnd.oci.image.layer.v1.tar", &c,
                                                &foreign, NULL), 0);
        assert_int_equal(c, IMAGE_COMPRESSION_NONE);
        assert_int_equal(image_layer_media_type(
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", &c, &foreign,
                NULL), 0);
        assert_true(foreign);
        err_is(image_layer_media_type("application/x-helm", &c, &foreign, &e), &e, -EMEDIUMTYPE,
               "unsupported layer media type");

        image_config *cfg = NULL;
        r = image_config_parse(config_doc, strlen(config_doc), &cfg, &e);
        if (r < 0)
                fail_msg("%s", e->msg);
        assert_int_equal(image_manifest_check_config(m, cfg, NULL), 0);
        assert_string_equal(cfg->platform.architecture, "amd64");
        assert_string_equal(cfg->platform.os, "linux");
        assert_string_equal(cfg->user, "1000:1000");
        assert_string_equal(cfg->env[1], "A=b");
        assert_null(cfg->env[2]);
        assert_string_equal(cfg->entrypoint[0], "/bin/sh");
        assert_null(cfg->cmd);
        assert_string_equal(cfg->working_dir, "/srv");
        assert_string_equal(cfg->exposed_ports[0], "80/tcp");
        assert_string_equal(cfg->exposed_ports[1], "53/udp");
        assert_string_equal(cfg->volumes[0], "/data");
        assert_int_equal(cfg->n_labels, 2);
        assert_string_equal(cfg->labels[1].key, "b");
        assert_string_equal(cfg->labels[1].value, "2");
        assert_string_equal(cfg->stop_signal, "SIGQUIT");
        assert_int_equal(cfg->n_diff_ids, 3);

        char **chain = NULL;
        assert_int_equal(image_chain_ids(cfg->diff_ids, cfg->n_diff_ids, &chain, &e), 0);
        assert_string_equal(chain[0], DA);
        assert_string_equal(chain[1], C2);
        assert_string_equal(chain[2], C3);
        assert_null(chain[3]);
        cc_strv_free(chain);

        m->n_layers = 2;
        err_is(image_manifest_check_config(m, cfg, &e), &e, -EINVAL, "2 layers but config lists 3");
        m->n_layers = 3;
        image_config_free(cfg);
        image_manifest_free(m);
}

static void test_manifest_bad(void **state)
{
        image_manifest *m = NULL;
        cc_error *e = NULL;
        const char *bad[][2] = {
                { "{\"schemaVersion\":1,\"fsLayers\":[]}", "schema 1" },
                { "{\"schemaVersion\":2,\"mediaType\":\"" IMAGE_MT_OCI_INDEX "\",\"manifests\":[]}", "is an index" },
                { "{\"schemaVersion\":2,\"mediaType\":\"" IMAGE_MT_OCI_MANIFEST "\",\"layers\":[]}", "missing field 'config'" },
                { "{\"schemaVersion\":2,\"mediaType\":\"" IMAGE_MT_OCI_MANIFEST "\",\"config\":"
                  "{\"mediaType\":\"application/x-art\",\"digest\":\"" DA "\",\"size\":1},\"layers\":[]}",
                  "not a container image config" },
                { "{\"schemaVersion\":2,\"mediaType\":\"" IMAGE_MT_OCI_MANIFEST "\",\"config\":"
                  "{\"mediaType\":\"" IMAGE_MT_OCI_CONFIG "\",\"digest\":\"" DA "\",\"size\":1},\"layers\":"
                  "[{\"mediaType\":\"application/x-tar\",\"digest\":\"" DA "\",\"size\":1}]}",
                  "manifest.layers[0]: unsupported layer media type" },
                { "{\"schemaVersion\":2,\"mediaType\":\"" IMAGE_MT_OCI_MANIFEST "\",\"config\":"
                  "{\"mediaType\":\"" IMAGE_MT_OCI_CONFIG "\",\"digest\":\"" DA "\",\"size\":1},\"layers\":{}}",
                  "expected an array" },
                { "{\"schemaVersion\":2,\"mediaType\":\"" IMAGE_MT_OCI_MANIFEST "\",\"config\":"
                  "{\"mediaType\":\"" IMAGE_MT_OCI_CONFIG "\",\"digest\":\"" DA "\",\"size\":999999999},\"layers\":[]}",
                  "config too large" },
        };
        for (size_t i = 0; i < CC_ARRAY_SIZE(bad); i++) {
                int r = image_manifest_parse(bad[i][0], strlen(bad[i][0]), &m, &e);
                if (r >= 0)
                        fail_msg("case %zu parsed", i);
                if (!strstr(e->msg, bad[i][1]))
                        fail_msg("case %zu: '%s' lacks '%s'", i, e->msg, bad[i][1]);
                cc_error_free(e);
                e = NULL;
                }
        assert_null(m);
}

static void test_config_bad(void **state)
{
        image_config *c = NULL;
        cc_error *e = NULL;
        const char *bad[][2] = {
                { "{\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}", "architecture" },
                { "{\"architecture\":\"amd64\",\"os\":\"linux\"}", "rootfs" },
                { "{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"x\",\"diff_ids\":[]}}", "not 'layers'" },
                { "{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\"}}", "diff_ids" },
                { "{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:AB\"]}}", "diff_ids[0]" },
                { "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Env\":\"A=b\"},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}", "Env: expected an array" },
                { "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Env\":[1]},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}", "Env[0]" },
                { "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Labels\":{\"a\":1}},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}", "Labels[a]" },
                { "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"ExposedPorts\":[\"80\"]},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}", "ExposedPorts" },
                { "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"User\":\"a\\u0000b\"},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}", "NUL" },
                { "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":[],\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}", "expected an object" },
        };
        for (size_t i = 0; i < CC_ARRAY_SIZE(bad); i++) {
                int r = image_config_parse(bad[i][0], strlen(bad[i][0]), &c, &e);
                if (r >= 0)
                        fail_msg("case %zu parsed", i);
                if (!strstr(e->msg, bad[i][1]))
                        fail_msg("case %zu: '%s' lacks '%s'", i, e->msg, bad[i][1]);
                cc_error_free(e);
                e = NULL;
                }
        assert_null(c);
        /* minimal config */
        const char *min = "{\"architecture\":\"arm64\",\"variant\":\"v8\",\"os\":\"linux\","
                          "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}";
        assert_int_equal(image_config_parse(min, strlen(min), &c, &e), 0);
        assert_null(c->platform.variant);
        assert_null(c->env);
        assert_int_equal(c->n_diff_ids, 0);
        image_config_free(c);

        char **chain = NULL;
        char *bad_ids[] = { "sha256:zz", NULL };
        assert_int_equal(image_chain_ids(bad_ids, 1, &chain, &e), -EINVAL);
        cc_error_free(e);
        assert_int_equal(image_chain_ids(NULL, 0, &chain, NULL), 0);
        assert_null(chain[0]);
        cc_strv_free(chain);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_detect),       cmocka_unit_test(test_index_select),
                cmocka_unit_test(test_index_bad),    cmocka_unit_test(test_manifest),
                cmocka_unit_test(test_manifest_bad), cmocka_unit_test(test_config_bad),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
