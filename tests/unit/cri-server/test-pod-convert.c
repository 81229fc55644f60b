/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for cri-server/pod-convert.c: request validation, list filter
 * helpers, rt_pod_info / rt_ctr_info → CRI messages (what crictl and the
 * kubelet read: times, states, namespaces, IPs, image vs image_ref, mounts)
 * and the verbose JSON. The messages are packed and unpacked again, so a
 * map entry of the wrong type or a missing field shows. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "cri-server/pod-convert.h"

/* dispatch.c's arena, as it lays it out (opaque in dispatch.h). */
struct cri_arena {
        void *head;
};

static cri_ctx *new_ctx(void)
{
        static struct cri_arena arena;
        static cri_ctx ctx;
        ctx.arena = &arena;
        return &ctx;
}

typedef struct kv {
        ProtobufCMessage base;
        char *key, *value;
} kv;

static void *roundtrip(const ProtobufCMessage *m)
{
        size_t n = protobuf_c_message_get_packed_size(m);
        uint8_t *buf = malloc(n ? n : 1);
        assert_non_null(buf);
        assert_int_equal(protobuf_c_message_pack(m, buf), n);
        void *out = protobuf_c_message_unpack(m->descriptor, NULL, n, buf);
        free(buf);
        assert_non_null(out);
        return out;
}

static Runtime__V1__PodSandboxConfig *pod_config(void)
{
        static Runtime__V1__PodSandboxMetadata md = RUNTIME__V1__POD_SANDBOX_METADATA__INIT;
        static Runtime__V1__PodSandboxConfig c = RUNTIME__V1__POD_SANDBOX_CONFIG__INIT;
        static Runtime__V1__PodSandboxConfig__LabelsEntry l1 = RUNTIME__V1__POD_SANDBOX_CONFIG__LABELS_ENTRY__INIT,
                                                           l2 = RUNTIME__V1__POD_SANDBOX_CONFIG__LABELS_ENTRY__INIT;
        static Runtime__V1__PodSandboxConfig__LabelsEntry *labels[2] = { &l1, &l2 };
        static Runtime__V1__PodSandboxConfig__AnnotationsEntry a1 =
                RUNTIME__V1__POD_SANDBOX_CONFIG__ANNOTATIONS_ENTRY__INIT;
        static Runtime__V1__PodSandboxConfig__AnnotationsEntry *anns[1] = { &a1 };
        static Runtime__V1__LinuxPodSandboxConfig lx = RUNTIME__V1__LINUX_POD_SANDBOX_CONFIG__INIT;
        static Runtime__V1__LinuxSandboxSecurityContext sc = RUNTIME__V1__LINUX_SANDBOX_SECURITY_CONTEXT__INIT;
        static Runtime__V1__NamespaceOption ns = RUNTIME__V1__NAMESPACE_OPTION__INIT;
        md.name = "web";
        md.namespace_ = "default";
        md.uid = "0b4e3c1e-1111-2222-3333-444455556666";
        md.attempt = 2;
        l1.key = "app", l1.value = "web";
        l2.key = "tier", l2.value = "front";
        a1.key = "note", a1.value = "a b";
        ns.network = RUNTIME__V1__NAMESPACE_MODE__POD;
        ns.pid = RUNTIME__V1__NAMESPACE_MODE__CONTAINER;
        ns.ipc = RUNTIME__V1__NAMESPACE_MODE__POD;
        sc.namespace_options = &ns;
        lx.security_context = &sc;
        c.metadata = &md;
        c.hostname = "web";
        c.log_directory = "/var/log/pods/x";
        c.n_labels = 2, c.labels = labels;
        c.n_annotations = 1, c.annotations = anns;
        c.linux = &lx;
        return &c;
}

static rt_pod_info pod_info(void)
{
        static char *extra[] = { "fd00::2", NULL };
        rt_pod_info p = {
                .id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                .config = pod_config(),
                .runtime_handler = "",
                .state = RT_POD_READY,
                .mode = RT_POD_VM,
                .created_at_ns = 1700000000123456789LL,
                .ip = "10.0.0.2",
                .extra_ips = extra,
                .netns_path = "/run/netns/cni-x",
                .vmm_pid = 100, .virtiofsd_pid = 101,
                .agent_endpoint = "unix:/run/cocoon/x/agent.sock",
                .vcpus = 1, .memory_mib = 320, .accel = "tcg",
                .run_dir = "/run/cocoon/sandboxes/x",
        };
        return p;
}

static void test_check_id(void **state)
{
        cc_error *err = NULL;
        assert_int_equal(cri_check_id("pod_sandbox_id", "0123abc", &err), 0);
        assert_null(err);
        assert_int_equal(cri_check_id("pod_sandbox_id", "", &err), -EINVAL);
        assert_non_null(strstr(err->msg, "pod_sandbox_id must not be empty"));
        cc_error_free(err), err = NULL;
        assert_int_equal(cri_check_id("container_id", NULL, &err), -EINVAL);
        cc_error_free(err), err = NULL;
        assert_int_equal(cri_check_id("container_id", "../etc", &err), -EINVAL);
        assert_non_null(strstr(err->msg, "container_id '../etc'"));
        cc_error_free(err), err = NULL;
        assert_int_equal(cri_check_id("container_id", "ABCDEF", &err), -EINVAL);
        cc_error_free(err), err = NULL;
}

static void test_check_pod_config(void **state)
{
        cc_error *err = NULL;
        assert_int_equal(cri_check_pod_config(NULL, &err), -EINVAL);
        assert_string_equal(err->msg, "config must be set");
        cc_error_free(err), err = NULL;
        Runtime__V1__PodSandboxConfig c = RUNTIME__V1__POD_SANDBOX_CONFIG__INIT;
        assert_int_equal(cri_check_pod_config(&c, &err), -EINVAL);
        assert_string_equal(err->msg, "config.metadata must be set");
        cc_error_free(err), err = NULL;
        Runtime__V1__PodSandboxConfig *ok = pod_config();
        assert_int_equal(cri_check_pod_config(ok, &err), 0);
        Runtime__V1__PodSandboxMetadata md = *ok->metadata;
        c = *ok;
        c.metadata = &md;
        md.namespace_ = "";
        assert_int_equal(cri_check_pod_config(&c, &err), -EINVAL);
        assert_non_null(strstr(err->msg, "config.metadata.namespace"));
        cc_error_free(err), err = NULL;
        md.namespace_ = "default";
        md.name = "a/b";
        assert_int_equal(cri_check_pod_config(&c, &err), -EINVAL);
        assert_non_null(strstr(err->msg, "config.metadata.name"));
        cc_error_free(err), err = NULL;
}

static void test_check_container_config(void **state)
{
        cc_error *err = NULL;
        Runtime__V1__ContainerConfig c = RUNTIME__V1__CONTAINER_CONFIG__INIT;
        assert_int_equal(cri_check_container_config(&c, &err), -EINVAL);
        assert_string_equal(err->msg, "config.metadata must be set");
        cc_error_free(err), err = NULL;
        Runtime__V1__ContainerMetadata md = RUNTIME__V1__CONTAINER_METADATA__INIT;
        md.name = "app";
        c.metadata = &md;
        assert_int_equal(cri_check_container_config(&c, &err), -EINVAL);
        assert_non_null(strstr(err->msg, "config.image.image"));
        cc_error_free(err), err = NULL;
        Runtime__V1__ImageSpec img = RUNTIME__V1__IMAGE_SPEC__INIT;
        img.image = "busybox";
        c.image = &img;
        assert_int_equal(cri_check_container_config(&c, &err), 0);
        Runtime__V1__Mount m = RUNTIME__V1__MOUNT__INIT;
        m.container_path = "relative";
        m.host_path = "/tmp";
        Runtime__V1__Mount *mounts[] = { &m };
        c.n_mounts = 1, c.mounts = mounts;
        assert_int_equal(cri_check_container_config(&c, &err), -EINVAL);
        assert_non_null(strstr(err->msg, "config.mounts[0].container_path"));
        cc_error_free(err), err = NULL;
}

static void test_labels_and_prefix(void **state)
{
        Runtime__V1__PodSandboxConfig *c = pod_config();
        kv s1 = { .key = "app", .value = "web" }, s2 = { .key = "tier", .value = "back" },
           s3 = { .key = "missing", .value = "" };
        void *one[] = { &s1 }, *mismatch[] = { &s1, &s2 }, *absent[] = { &s3 };
        assert_true(cri_labels_match(NULL, 0, (void *const *)c->labels, c->n_labels));
        assert_true(cri_labels_match(one, 1, (void *const *)c->labels, c->n_labels));
        assert_false(cri_labels_match(mismatch, 2, (void *const *)c->labels, c->n_labels));
        assert_false(cri_labels_match(absent, 1, (void *const *)c->labels, c->n_labels));
        assert_false(cri_labels_match(one, 1, NULL, 0));
        assert_true(cri_id_has_prefix("abcdef", "abc"));
        assert_true(cri_id_has_prefix("abcdef", ""));
        assert_false(cri_id_has_prefix("abcdef", "abd"));
        assert_false(cri_id_has_prefix("ab", "abc"));
}

static void test_pod_status(void **state)
{
        cri_ctx *ctx = new_ctx();
        rt_pod_info p = pod_info();
        Runtime__V1__PodSandboxStatus *out = roundtrip(&cri_pod_status_from_info(ctx, &p)->base);
        assert_string_equal(out->id, p.id);
        assert_string_equal(out->metadata->name, "web");
        assert_string_equal(out->metadata->namespace_, "default");
        assert_int_equal(out->metadata->attempt, 2);
        assert_int_equal(out->state, RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_READY);
        assert_int_equal(out->created_at, 1700000000123456789LL);
        assert_string_equal(out->network->ip, "10.0.0.2");
        assert_int_equal(out->network->n_additional_ips, 1);
        assert_string_equal(out->network->additional_ips[0]->ip, "fd00::2");
        assert_int_equal(out->linux->namespaces->options->pid, RUNTIME__V1__NAMESPACE_MODE__CONTAINER);
        assert_int_equal(out->linux->namespaces->options->network, RUNTIME__V1__NAMESPACE_MODE__POD);
        assert_int_equal(out->n_labels, 2);
        assert_string_equal(out->labels[1]->key, "tier");
        assert_string_equal(out->labels[1]->value, "front");
        assert_int_equal(out->n_annotations, 1);
        assert_string_equal(out->annotations[0]->value, "a b");
        protobuf_c_message_free_unpacked(&out->base, NULL);

        /* A host-network pod reports NODE whatever the request said. */
        p.state = RT_POD_NOTREADY;
        p.host_network = true;
        p.ip = "";
        out = roundtrip(&cri_pod_status_from_info(ctx, &p)->base);
        assert_int_equal(out->state, RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_NOTREADY);
        assert_int_equal(out->linux->namespaces->options->network, RUNTIME__V1__NAMESPACE_MODE__NODE);
        assert_string_equal(out->network->ip, "");
        protobuf_c_message_free_unpacked(&out->base, NULL);

        Runtime__V1__PodSandbox *item = roundtrip(&cri_pod_from_info(ctx, &p)->base);
        assert_string_equal(item->id, p.id);
        assert_int_equal(item->created_at, p.created_at_ns);
        assert_int_equal(item->n_labels, 2);
        assert_string_equal(item->runtime_handler, "");
        protobuf_c_message_free_unpacked(&item->base, NULL);
}

static void test_pod_verbose(void **state)
{
        cri_ctx *ctx = new_ctx();
        rt_pod_info p = pod_info();
        json_object *o = json_tokener_parse(cri_pod_verbose_info(ctx, &p));
        assert_non_null(o);
        json_object *v;
        assert_true(json_object_object_get_ex(o, "mode", &v));
        assert_string_equal(json_object_get_string(v), "vm");
        assert_true(json_object_object_get_ex(o, "vmmPid", &v));
        assert_int_equal(json_object_get_int(v), 100);
        assert_true(json_object_object_get_ex(o, "pid", &v));
        assert_int_equal(json_object_get_int(v), 100);
        assert_true(json_object_object_get_ex(o, "virtiofsdPid", &v));
        assert_int_equal(json_object_get_int(v), 101);
        assert_true(json_object_object_get_ex(o, "memoryMiB", &v));
        assert_int_equal(json_object_get_int(v), 320);
        assert_true(json_object_object_get_ex(o, "accel", &v));
        assert_string_equal(json_object_get_string(v), "tcg");
        assert_true(json_object_object_get_ex(o, "netns", &v));
        assert_string_equal(json_object_get_string(v), "/run/netns/cni-x");
        assert_true(json_object_object_get_ex(o, "runDir", &v));
        assert_true(json_object_object_get_ex(o, "agentEndpoint", &v));
        json_object_put(o);
        p.mode = RT_POD_HOST;
        p.vmm_pid = p.virtiofsd_pid = 0;
        p.agent_pid = 77;
        o = json_tokener_parse(cri_pod_verbose_info(ctx, &p));
        assert_true(json_object_object_get_ex(o, "mode", &v));
        assert_string_equal(json_object_get_string(v), "host");
        assert_true(json_object_object_get_ex(o, "pid", &v));
        assert_int_equal(json_object_get_int(v), 77);
        json_object_put(o);
}

static void test_container_status(void **state)
{
        cri_ctx *ctx = new_ctx();
        Runtime__V1__ContainerMetadata md = RUNTIME__V1__CONTAINER_METADATA__INIT;
        md.name = "app", md.attempt = 1;
        Runtime__V1__ImageSpec img = RUNTIME__V1__IMAGE_SPEC__INIT;
        img.image = "busybox";
        Runtime__V1__Mount m = RUNTIME__V1__MOUNT__INIT;
        m.container_path = "/data", m.host_path = "/srv/data", m.readonly = true;
        m.propagation = RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_HOST_TO_CONTAINER;
        Runtime__V1__Mount *mounts[] = { &m };
        Runtime__V1__KeyValue env = RUNTIME__V1__KEY_VALUE__INIT;
        env.key = "PASSWORD", env.value = "hunter2";
        Runtime__V1__KeyValue *envs[] = { &env };
        Runtime__V1__ContainerConfig c = RUNTIME__V1__CONTAINER_CONFIG__INIT;
        c.metadata = &md, c.image = &img, c.n_mounts = 1, c.mounts = mounts, c.n_envs = 1, c.envs = envs;
        rt_ctr_info info = {
                .id = "fedcba", .sandbox_id = "012345", .config = &c,
                .image_id = "sha256:aaaa", .image_name = "docker.io/library/busybox:latest",
                .state = RT_CTR_EXITED, .created_at_ns = 1, .started_at_ns = 2, .finished_at_ns = 3,
                .exit_code = 3, .reason = "Error", .message = "", .log_path = "/var/log/pods/x/app/1.log",
                .pid = 4242,
        };
        Runtime__V1__ContainerStatus *s = roundtrip(&cri_ctr_status_from_info(ctx, &info)->base);
        assert_string_equal(s->id, "fedcba");
        assert_string_equal(s->metadata->name, "app");
        assert_int_equal(s->metadata->attempt, 1);
        assert_int_equal(s->state, RUNTIME__V1__CONTAINER_STATE__CONTAINER_EXITED);
        assert_int_equal(s->created_at, 1);
        assert_int_equal(s->started_at, 2);
        assert_int_equal(s->finished_at, 3);
        assert_int_equal(s->exit_code, 3);
        assert_string_equal(s->reason, "Error");
        assert_string_equal(s->image->image, "docker.io/library/busybox:latest");
        assert_string_equal(s->image_ref, "sha256:aaaa");
        assert_string_equal(s->image_id, "sha256:aaaa");
        assert_string_equal(s->log_path, "/var/log/pods/x/app/1.log");
        assert_int_equal(s->n_mounts, 1);
        assert_string_equal(s->mounts[0]->container_path, "/data");
        assert_string_equal(s->mounts[0]->host_path, "/srv/data");
        assert_true(s->mounts[0]->readonly);
        assert_int_equal(s->mounts[0]->propagation, RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_HOST_TO_CONTAINER);
        protobuf_c_message_free_unpacked(&s->base, NULL);

        Runtime__V1__Container *item = roundtrip(&cri_ctr_from_info(ctx, &info)->base);
        assert_string_equal(item->pod_sandbox_id, "012345");
        assert_string_equal(item->image->image, "docker.io/library/busybox:latest");
        assert_string_equal(item->image_ref, "sha256:aaaa");
        assert_int_equal(item->state, RUNTIME__V1__CONTAINER_STATE__CONTAINER_EXITED);
        protobuf_c_message_free_unpacked(&item->base, NULL);

        /* Verbose: env names only, never their values. */
        const char *js = cri_ctr_verbose_info(ctx, &info);
        assert_non_null(strstr(js, "\"PASSWORD\""));
        assert_null(strstr(js, "hunter2"));
        json_object *o = json_tokener_parse(js), *v;
        assert_true(json_object_object_get_ex(o, "sandboxID", &v));
        assert_string_equal(json_object_get_string(v), "012345");
        assert_true(json_object_object_get_ex(o, "pid", &v));
        assert_int_equal(json_object_get_int(v), 4242);
        json_object_put(o);

        /* No normalised name recorded: the request's. */
        info.image_name = "";
        s = roundtrip(&cri_ctr_status_from_info(ctx, &info)->base);
        assert_string_equal(s->image->image, "busybox");
        protobuf_c_message_free_unpacked(&s->base, NULL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_check_id),
                cmocka_unit_test(test_check_pod_config),
                cmocka_unit_test(test_check_container_config),
                cmocka_unit_test(test_labels_and_prefix),
                cmocka_unit_test(test_pod_status),
                cmocka_unit_test(test_pod_verbose),
                cmocka_unit_test(test_container_status),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
