/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for runtime/state.c: pod and container records round trip
 * (every field, the CRI configs verbatim, the spec), version checks, damaged
 * records, and what rt_runtime_open makes of a records directory (stopped
 * pods and exited containers reloaded, damaged records skipped, leftovers of
 * an interrupted RunPodSandbox removed). No VM, no agent. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/cleanup.h"
#include "common/config.h"
#include "common/fs.h"
#include "common/json.h"
#include "runtime/internal.h"
#include "runtime/spec.h"

#define POD_ID "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define POD2_ID "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
#define CTR_ID "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

typedef struct fixture {
        char dir[64];
        cc_config *cfg;
        rt_runtime *rt;
} fixture;

static int setup(void **state)
{
        fixture *f = calloc(1, sizeof(*f));
        snprintf(f->dir, sizeof(f->dir), "/tmp/test-state-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        f->cfg = cc_config_new_default();
        free(f->cfg->paths.root);
        free(f->cfg->paths.state);
        assert_true(asprintf(&f->cfg->paths.root, "%s/root", f->dir) > 0);
        assert_true(asprintf(&f->cfg->paths.state, "%s/state", f->dir) > 0);
        cc_error *err = NULL;
        assert_int_equal(rt_runtime_open(f->cfg, NULL, NULL, &f->rt, &err), 0);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        fixture *f = *state;
        rt_runtime_free(f->rt);
        cc_config_free(f->cfg);
        assert_int_equal(cc_rm_rf(f->dir, NULL), 0);
        free(f);
        return 0;
}

/* ---- helpers ---------------------------------------------------------------- */

static Runtime__V1__PodSandboxConfig *pod_config(const char *name)
{
        Runtime__V1__PodSandboxConfig c = RUNTIME__V1__POD_SANDBOX_CONFIG__INIT;
        Runtime__V1__PodSandboxMetadata m = RUNTIME__V1__POD_SANDBOX_METADATA__INIT;
        Runtime__V1__PodSandboxConfig__LabelsEntry l = RUNTIME__V1__POD_SANDBOX_CONFIG__LABELS_ENTRY__INIT;
        Runtime__V1__PodSandboxConfig__LabelsEntry *lp = &l;
        m.name = (char *)name;
        m.uid = "uid-1";
        m.namespace_ = "ns";
        m.attempt = 2;
        l.key = "app";
        l.value = "web";
        c.metadata = &m;
        c.hostname = "host1";
        c.log_directory = "/var/log/pods/x";
        c.labels = &lp;
        c.n_labels = 1;
        return rt_proto_copy(&c.base);
}

static Runtime__V1__ContainerConfig *ctr_config(void)
{
        Runtime__V1__ContainerConfig c = RUNTIME__V1__CONTAINER_CONFIG__INIT;
        Runtime__V1__ContainerMetadata m = RUNTIME__V1__CONTAINER_METADATA__INIT;
        Runtime__V1__ImageSpec i = RUNTIME__V1__IMAGE_SPEC__INIT;
        char *cmd[] = { "sh", "-c", "echo hi" };
        m.name = "main";
        m.attempt = 1;
        i.image = "busybox";
        c.metadata = &m;
        c.image = &i;
        c.command = cmd;
        c.n_command = 3;
        c.log_path = "main/1.log";
        c.tty = true;
        return rt_proto_copy(&c.base);
}

static rt_pod *make_pod(fixture *f, const char *id, rt_pod_state st)
{
        rt_pod *p = rt_pod_new();
        assert_non_null(p);
        snprintf(p->id, sizeof(p->id), "%s", id);
        p->config = pod_config("web");
        p->handler = strdup("fast");
        p->state = st;
        p->mode = RT_POD_HOST;
        p->created_at_ns = 1234567890123LL;
        p->host_network = true;
        p->host_ipc = true;
        p->vcpus = 0;
        p->memory_mib = 0;
        assert_int_equal(rt_pod_set_paths(f->rt, p), 0);
        assert_int_equal(cc_mkdir_p(p->rec_dir, 0700, NULL), 0);
        return p;
}

static rt_ctr *make_ctr(rt_pod *p)
{
        rt_ctr *c = rt_ctr_new();
        assert_non_null(c);
        snprintf(c->id, sizeof(c->id), "%s", CTR_ID);
        c->pod = p;
        c->config = ctr_config();
        c->image_id = strdup("sha256:1111");
        c->image_name = strdup("busybox");
        c->chain_ids = calloc(3, sizeof(char *));
        c->chain_ids[0] = strdup("sha256:aaaa");
        c->chain_ids[1] = strdup("sha256:bbbb");
        c->state = RT_CTR_EXITED;
        c->created_at_ns = 10;
        c->started_at_ns = 20;
        c->finished_at_ns = 30;
        c->exit_code = 7;
        c->reason = strdup("Error");
        c->message = strdup("it \"failed\"\n");
        c->log_path = strdup("/var/log/pods/x/main/1.log");
        c->stop_signal = 3;
        c->tty = true;
        c->n_volumes = 2;
        Grpc__Spec s = GRPC__SPEC__INIT;
        Grpc__Process proc = GRPC__PROCESS__INIT;
        Grpc__Root root = GRPC__ROOT__INIT;
        char *args[] = { "sh" };
        proc.args = args;
        proc.n_args = 1;
        root.path = CTR_ID "/rootfs";
        s.hostname = "spec-host";
        s.version = "1.0.2";
        s.process = &proc;
        s.root = &root;
        c->spec = rt_proto_copy(&s.base);
        assert_int_equal(rt_ctr_set_paths(c), 0);
        return c;
}

static char *rec_path(fixture *f, const char *id, const char *name)
{
        char *p = NULL;
        assert_true(asprintf(&p, "%s/root/sandboxes/%s/%s", f->dir, id, name) > 0);
        return p;
}

static void write_text(const char *path, const char *text)
{
        assert_int_equal(cc_write_file_atomic(path, text, strlen(text), 0600, NULL), 0);
}

/* ---- tests --------------------------------------------------------------------- */

static void test_b64(void **state)
{
        (void)state;
        uint8_t buf[32];
        for (size_t i = 0; i < sizeof(buf); i++)
                buf[i] = (uint8_t)(i * 37 + 1);
        for (size_t n = 0; n <= sizeof(buf); n++) {
                _cleanup_free_ char *s = rt_b64_encode(buf, n);
                assert_non_null(s);
                assert_int_equal(strlen(s), (n + 2) / 3 * 4);
                _cleanup_free_ uint8_t *out = NULL;
                size_t len = 99;
                assert_int_equal(rt_b64_decode(s, &out, &len), 0);
                assert_int_equal(len, n);
                assert_memory_equal(out, buf, n);
        }
        _cleanup_free_ char *s = rt_b64_encode((const uint8_t *)"hello", 5);
        assert_string_equal(s, "aGVsbG8=");
        uint8_t *out = NULL;
        size_t len = 0;
        const char *bad[] = { "a", "aGVsbG8", "aGV=bG8=", "aG!sbG8=", "=GVs", "aGVsbG=8" };
        for (size_t i = 0; i < CC_ARRAY_SIZE(bad); i++)
                assert_int_equal(rt_b64_decode(bad[i], &out, &len), -EINVAL);
}

static void test_pod_roundtrip(void **state)
{
        fixture *f = *state;
        rt_pod *p = make_pod(f, POD_ID, RT_POD_NOTREADY);
        p->lo_netns = strdup("/run/netns/" POD_ID);
        p->net_j = json_object_new_object();
        json_object_object_add(p->net_j, "netns", json_object_new_string("/x"));
        cc_error *err = NULL;
        assert_int_equal(rt_state_save_pod(f->rt, p, &err), 0);

        _cleanup_free_ char *path = rec_path(f, POD_ID, "pod.json");
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        rt_pod *q = NULL;
        _cleanup_json_ json_object *vmm_j = NULL, *vfsd_j = NULL, *net_j = NULL;
        assert_int_equal(rt_state_load_pod(f->rt, path, &q, &vmm_j, &vfsd_j, &net_j, &err), 0);
        assert_string_equal(q->id, POD_ID);
        assert_string_equal(q->handler, "fast");
        assert_int_equal(q->state, RT_POD_NOTREADY);
        assert_int_equal(q->mode, RT_POD_HOST);
        assert_int_equal(q->created_at_ns, 1234567890123LL);
        assert_true(q->host_network && q->host_ipc && !q->host_pid);
        assert_string_equal(q->lo_netns, "/run/netns/" POD_ID);
        assert_string_equal(q->config->metadata->name, "web");
        assert_string_equal(q->config->metadata->uid, "uid-1");
        assert_string_equal(q->config->metadata->namespace_, "ns");
        assert_int_equal(q->config->metadata->attempt, 2);
        assert_int_equal(q->config->n_labels, 1);
        assert_string_equal(q->config->labels[0]->value, "web");
        assert_string_equal(q->config->hostname, "host1");
        /* paths derived, never read */
        assert_string_equal(q->run_dir, p->run_dir);
        assert_string_equal(q->rec_dir, p->rec_dir);
        assert_null(q->share_dir);
        assert_null(vmm_j);
        assert_null(vfsd_j);
        assert_non_null(net_j);
        assert_string_equal(json_object_get_string(json_object_object_get(net_j, "netns")), "/x");
        rt_pod_free(q);

        /* a removed pod is never written again */
        assert_int_equal(unlink(path), 0);
        p->removed = true;
        assert_int_equal(rt_state_save_pod(f->rt, p, &err), 0);
        assert_int_equal(access(path, F_OK), -1);
        rt_pod_free(p);
}

static void test_ctr_roundtrip(void **state)
{
        fixture *f = *state;
        rt_pod *p = make_pod(f, POD_ID, RT_POD_READY);
        rt_ctr *c = make_ctr(p);
        cc_error *err = NULL;
        assert_int_equal(rt_state_save_ctr(f->rt, c, &err), 0);
        _cleanup_free_ char *path = rec_path(f, POD_ID, "containers/" CTR_ID ".json");
        _cleanup_free_ char *spec = rec_path(f, POD_ID, "containers/" CTR_ID ".spec.pb");
        assert_int_equal(access(spec, F_OK), 0);

        rt_ctr *d = NULL;
        assert_int_equal(rt_state_load_ctr(f->rt, p, path, &d, &err), 0);
        assert_string_equal(d->id, CTR_ID);
        assert_ptr_equal(d->pod, p);
        assert_string_equal(d->config->metadata->name, "main");
        assert_int_equal(d->config->metadata->attempt, 1);
        assert_int_equal(d->config->n_command, 3);
        assert_string_equal(d->config->command[2], "echo hi");
        assert_string_equal(d->image_id, "sha256:1111");
        assert_string_equal(d->image_name, "busybox");
        assert_string_equal(d->chain_ids[0], "sha256:aaaa");
        assert_string_equal(d->chain_ids[1], "sha256:bbbb");
        assert_null(d->chain_ids[2]);
        assert_int_equal(d->state, RT_CTR_EXITED);
        assert_int_equal(d->created_at_ns, 10);
        assert_int_equal(d->started_at_ns, 20);
        assert_int_equal(d->finished_at_ns, 30);
        assert_int_equal(d->exit_code, 7);
        assert_string_equal(d->reason, "Error");
        assert_string_equal(d->message, "it \"failed\"\n");
        assert_string_equal(d->log_path, "/var/log/pods/x/main/1.log");
        assert_int_equal(d->stop_signal, 3);
        assert_true(d->tty && !d->stdin_);
        assert_int_equal(d->n_volumes, 2);
        assert_non_null(d->spec);
        assert_string_equal(d->spec->hostname, "spec-host");
        assert_string_equal(d->spec->root->path, CTR_ID "/rootfs");
        assert_string_equal(d->spec->process->args[0], "sh");
        assert_string_equal(d->rootfs, c->rootfs);
        assert_string_equal(d->upper, c->upper);
        d->pod = NULL;
        rt_ctr_free(d);

        /* delete: both files gone, later saves are no-ops */
        assert_int_equal(rt_state_delete_ctr(f->rt, c), 0);
        assert_int_equal(access(path, F_OK), -1);
        assert_int_equal(access(spec, F_OK), -1);
        assert_int_equal(rt_state_save_ctr(f->rt, c, &err), 0);
        assert_int_equal(access(path, F_OK), -1);
        c->pod = NULL;
        rt_ctr_free(c);
        rt_pod_free(p);
}

static void expect_load_fails(fixture *f, const char *text, int code, const char *needle)
{
        _cleanup_free_ char *path = rec_path(f, POD_ID, "pod.json");
        write_text(path, text);
        rt_pod *q = NULL;
        json_object *a = NULL, *b = NULL, *c = NULL;
        cc_error *err = NULL;
        int r = rt_state_load_pod(f->rt, path, &q, &a, &b, &c, &err);
        if (r >= 0)
                fail_msg("loaded: %s", text);
        assert_non_null(err);
        if (code)
                assert_int_equal(r, code);
        if (needle && !strstr(err->msg, needle))
                fail_msg("'%s' lacks '%s'", err->msg, needle);
        assert_null(q);
        cc_error_free(err);
}

static void test_versions_and_damage(void **state)
{
        fixture *f = *state;
        rt_pod *p = make_pod(f, POD_ID, RT_POD_NOTREADY);
        cc_error *err = NULL;
        assert_int_equal(rt_state_save_pod(f->rt, p, &err), 0);
        _cleanup_free_ char *path = rec_path(f, POD_ID, "pod.json");
        _cleanup_json_ json_object *good = cc_json_parse_file(path, 1 << 20, &err);
        assert_non_null(good);
        const char *cfg = json_object_get_string(json_object_object_get(good, "config"));
        char text[8192];

        snprintf(text, sizeof(text), "{\"version\":2,\"id\":\"%s\",\"config\":\"%s\",\"state\":\"ready\","
                 "\"mode\":\"vm\",\"created_at_ns\":1}", POD_ID, cfg);
        expect_load_fails(f, text, -EPROTONOSUPPORT, "version 2");
        expect_load_fails(f, "{\"id\":\"x\"}", 0, "version");
        expect_load_fails(f, "not json at all", 0, NULL);
        expect_load_fails(f, "[1,2,3]", 0, NULL);
        expect_load_fails(f, "", 0, NULL);
        snprintf(text, sizeof(text), "{\"version\":1,\"id\":\"../../etc\",\"config\":\"%s\",\"state\":\"ready\","
                 "\"mode\":\"vm\",\"created_at_ns\":1}", cfg);
        expect_load_fails(f, text, -EBADMSG, "invalid id");
        snprintf(text, sizeof(text), "{\"version\":1,\"id\":\"%s\",\"config\":\"%s\",\"state\":\"dancing\","
                 "\"mode\":\"vm\",\"created_at_ns\":1}", POD_ID, cfg);
        expect_load_fails(f, text, -EBADMSG, "state");
        snprintf(text, sizeof(text), "{\"version\":1,\"id\":\"%s\",\"config\":\"!!!!\",\"state\":\"ready\","
                 "\"mode\":\"vm\",\"created_at_ns\":1}", POD_ID);
        expect_load_fails(f, text, -EBADMSG, "config");
        snprintf(text, sizeof(text), "{\"version\":1,\"id\":\"%s\",\"config\":\"%s\",\"state\":\"ready\","
                 "\"mode\":\"vm\"}", POD_ID, cfg);
        expect_load_fails(f, text, 0, "created_at_ns");
        snprintf(text, sizeof(text), "{\"version\":1,\"id\":\"%s\",\"config\":\"%s\",\"state\":\"ready\","
                 "\"mode\":\"vm\",\"created_at_ns\":\"soon\"}", POD_ID, cfg);
        expect_load_fails(f, text, -EINVAL, "created_at_ns");
        snprintf(text, sizeof(text), "{\"version\":1,\"id\":\"%s\",\"config\":\"%s\",\"state\":\"ready\","
                 "\"mode\":\"vm\",\"created_at_ns\":1,\"loopback_netns\":\"/run/netns/other\"}", POD_ID, cfg);
        expect_load_fails(f, text, -EBADMSG, "netns");

        /* a container record with a bad version or state */
        rt_ctr *c = make_ctr(p);
        assert_int_equal(rt_state_save_ctr(f->rt, c, &err), 0);
        _cleanup_free_ char *cpath = rec_path(f, POD_ID, "containers/" CTR_ID ".json");
        _cleanup_json_ json_object *cj = cc_json_parse_file(cpath, 1 << 20, &err);
        json_object_object_add(cj, "version", json_object_new_int(9));
        assert_int_equal(cc_json_write_file(cpath, cj, 0600, NULL), 0);
        rt_ctr *d = NULL;
        assert_int_equal(rt_state_load_ctr(f->rt, p, cpath, &d, &err), -EPROTONOSUPPORT);
        cc_error_free(TAKE_PTR(err));
        json_object_object_add(cj, "version", json_object_new_int(1));
        json_object_object_add(cj, "exit_code", json_object_new_int(4096));
        assert_int_equal(cc_json_write_file(cpath, cj, 0600, NULL), 0);
        assert_int_equal(rt_state_load_ctr(f->rt, p, cpath, &d, &err), -EBADMSG);
        cc_error_free(TAKE_PTR(err));
        json_object_object_add(cj, "exit_code", json_object_new_int(0));
        json_object_object_add(cj, "sandbox_id", json_object_new_string(POD2_ID));
        assert_int_equal(cc_json_write_file(cpath, cj, 0600, NULL), 0);
        assert_int_equal(rt_state_load_ctr(f->rt, p, cpath, &d, &err), -EBADMSG);
        cc_error_free(TAKE_PTR(err));
        c->pod = NULL;
        rt_ctr_free(c);
        rt_pod_free(p);
}

/* rt_runtime_open over a records directory: a stopped pod and its exited
 * container come back; a damaged record is skipped; an interrupted
 * RunPodSandbox (run dir and record dir without pod.json) is cleaned. */
static void test_reload(void **state)
{
        fixture *f = *state;
        rt_pod *p = make_pod(f, POD_ID, RT_POD_NOTREADY);
        rt_ctr *c = make_ctr(p);
        cc_error *err = NULL;
        assert_int_equal(rt_state_save_pod(f->rt, p, &err), 0);
        assert_int_equal(rt_state_save_ctr(f->rt, c, &err), 0);
        c->pod = NULL;
        rt_ctr_free(c);
        rt_pod_free(p);
        /* damaged: version 99 */
        _cleanup_free_ char *bad_dir = NULL, *bad = NULL, *half_rec = NULL, *half_run = NULL;
        assert_true(asprintf(&bad_dir, "%s/root/sandboxes/%s", f->dir, POD2_ID) > 0);
        assert_true(asprintf(&bad, "%s/pod.json", bad_dir) > 0);
        assert_int_equal(cc_mkdir_p(bad_dir, 0700, NULL), 0);
        write_text(bad, "{\"version\":99}");
        /* interrupted: dirs without a record */
        assert_true(asprintf(&half_rec, "%s/root/sandboxes/dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd",
                             f->dir) > 0);
        assert_true(asprintf(&half_run, "%s/state/sandboxes/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee/shared",
                             f->dir) > 0);
        assert_int_equal(cc_mkdir_p(half_rec, 0700, NULL), 0);
        assert_int_equal(cc_mkdir_p(half_run, 0700, NULL), 0);

        rt_runtime_free(f->rt);
        f->rt = NULL;
        assert_int_equal(rt_runtime_open(f->cfg, NULL, NULL, &f->rt, &err), 0);

        rt_pod_info **pods = NULL;
        size_t n = 0;
        assert_int_equal(rt_pod_list(f->rt, &pods, &n, &err), 0);
        assert_int_equal(n, 1);
        assert_string_equal(pods[0]->id, POD_ID);
        assert_int_equal(pods[0]->state, RT_POD_NOTREADY);
        assert_int_equal(pods[0]->mode, RT_POD_HOST);
        assert_string_equal(pods[0]->config->metadata->name, "web");
        rt_pod_info_list_free(pods, n);

        rt_ctr_info **ctrs = NULL;
        assert_int_equal(rt_container_list(f->rt, &ctrs, &n, &err), 0);
        assert_int_equal(n, 1);
        assert_string_equal(ctrs[0]->id, CTR_ID);
        assert_string_equal(ctrs[0]->sandbox_id, POD_ID);
        assert_int_equal(ctrs[0]->state, RT_CTR_EXITED);
        assert_int_equal(ctrs[0]->exit_code, 7);
        assert_string_equal(ctrs[0]->reason, "Error");
        rt_ctr_info_list_free(ctrs, n);

        /* prefix lookups */
        rt_ctr_info *ci = NULL;
        assert_int_equal(rt_container_status(f->rt, "bbbb", &ci, &err), 0);
        assert_string_equal(ci->id, CTR_ID);
        rt_ctr_info_free(ci);
        assert_int_equal(rt_container_status(f->rt, "ffff", &ci, &err), -ENOENT);
        cc_error_free(TAKE_PTR(err));

        assert_int_equal(access(bad, F_OK), 0); /* kept for a human to look at */
        assert_int_equal(access(half_rec, F_OK), -1);
        assert_int_equal(access(half_run, F_OK), -1);

        /* the stopped pod can be removed: records and dirs gone */
        assert_int_equal(rt_pod_remove(f->rt, POD_ID, &err), 0);
        _cleanup_free_ char *rec = rec_path(f, POD_ID, "");
        assert_int_equal(access(rec, F_OK), -1);
        assert_int_equal(rt_container_list(f->rt, &ctrs, &n, &err), 0);
        assert_int_equal(n, 0);
        rt_ctr_info_list_free(ctrs, n);
        assert_int_equal(rt_pod_remove(f->rt, POD_ID, &err), 0); /* idempotent */
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_b64),
                cmocka_unit_test_setup_teardown(test_pod_roundtrip, setup, teardown),
                cmocka_unit_test_setup_teardown(test_ctr_roundtrip, setup, teardown),
                cmocka_unit_test_setup_teardown(test_versions_and_damage, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reload, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
