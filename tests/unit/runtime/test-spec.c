/* SPDX-License-Identifier: Apache-2.0 */
/* runtime/spec.c and runtime/spec-seccomp.c: CRI → OCI conversion rules,
 * the shipped RuntimeDefault profile, Localhost profiles and the errors. */
#include <errno.h>
#include <seccomp.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <json-c/json.h>

#include "common/cleanup.h"
#include "runtime/spec.h"

/* The deprecated seccomp_profile_path is tested on purpose. */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

static char tmpdir[] = "/tmp/test-spec-XXXXXX";
static char profile_src[512];

typedef struct fx {
        Runtime__V1__ContainerConfig ctr;
        Runtime__V1__ContainerMetadata cm;
        Runtime__V1__ImageSpec img;
        Runtime__V1__LinuxContainerConfig lcc;
        Runtime__V1__LinuxContainerSecurityContext sc;
        Runtime__V1__LinuxContainerResources res;
        Runtime__V1__Capability caps;
        Runtime__V1__NamespaceOption nso;
        Runtime__V1__SecurityProfile prof;
        Runtime__V1__Int64Value uid, gid;
        Runtime__V1__PodSandboxConfig pod;
        Runtime__V1__PodSandboxMetadata pm;
        Runtime__V1__LinuxPodSandboxConfig pl;
        Runtime__V1__LinuxSandboxSecurityContext psc;
        image_config image;
        rt_spec_input in;
        Grpc__Spec *spec;
        cc_error *err;
} fx;

static char *ep_sh[] = { "/bin/sh", "-c", NULL };
static char *cmd_img[] = { "echo", "image", NULL };
static char *env_img[] = { "PATH=/img/bin", "A=1", "B=2", NULL };

static int setup(void **state)
{
        fx *f = calloc(1, sizeof(*f));
        runtime__v1__container_config__init(&f->ctr);
        runtime__v1__container_metadata__init(&f->cm);
        runtime__v1__image_spec__init(&f->img);
        runtime__v1__linux_container_config__init(&f->lcc);
        runtime__v1__linux_container_security_context__init(&f->sc);
        runtime__v1__linux_container_resources__init(&f->res);
        runtime__v1__capability__init(&f->caps);
        runtime__v1__namespace_option__init(&f->nso);
        runtime__v1__security_profile__init(&f->prof);
        runtime__v1__int64_value__init(&f->uid);
        runtime__v1__int64_value__init(&f->gid);
        runtime__v1__pod_sandbox_config__init(&f->pod);
        runtime__v1__pod_sandbox_metadata__init(&f->pm);
        runtime__v1__linux_pod_sandbox_config__init(&f->pl);
        runtime__v1__linux_sandbox_security_context__init(&f->psc);
        f->cm.name = "web";
        f->img.image = "docker.io/library/busybox:latest";
        f->ctr.metadata = &f->cm;
        f->ctr.image = &f->img;
        f->ctr.linux = &f->lcc;
        f->lcc.security_context = &f->sc;
        f->pm.name = "pod";
        f->pm.namespace_ = "default";
        f->pm.uid = "uid-1";
        f->pod.metadata = &f->pm;
        f->pod.hostname = "podhost";
        f->pod.linux = &f->pl;
        f->pl.security_context = &f->psc;
        f->image.entrypoint = ep_sh;
        f->image.cmd = cmd_img;
        f->image.env = env_img;
        f->in.ctr = &f->ctr;
        f->in.pod = &f->pod;
        f->in.image = &f->image;
        f->in.sandbox_id = "sb1";
        f->in.container_id = "c1";
        f->in.root_path = "c1/rootfs";
        f->in.seccomp_dir = tmpdir;
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        fx *f = *state;
        rt_spec_free(f->spec);
        cc_error_free(f->err);
        free(f);
        return 0;
}

static int build(fx *f)
{
        rt_spec_free(f->spec);
        f->spec = NULL;
        cc_error_free(f->err);
        f->err = NULL;
        int r = rt_spec_build(&f->in, &f->spec, &f->err);
        assert_true((r < 0) == (f->err != NULL));
        assert_true((r < 0) == (f->spec == NULL));
        return r;
}

static void expect_ok(fx *f)
{
        int r = build(f);
        if (r < 0)
                fail_msg("build: %s", f->err->msg);
}

static void expect_err(fx *f, int code, const char *needle)
{
        int r = build(f);
        assert_int_equal(r, code);
        if (!strstr(f->err->msg, needle))
                fail_msg("error '%s' lacks '%s'", f->err->msg, needle);
}

static bool has(char **v, size_t n, const char *s)
{
        for (size_t i = 0; i < n; i++)
                if (strcmp(v[i], s) == 0)
                        return true;
        return false;
}

static const char *env_get(const Grpc__Spec *s, const char *key)
{
        size_t k = strlen(key);
        for (size_t i = 0; i < s->process->n_env; i++)
                if (strncmp(s->process->env[i], key, k) == 0 && s->process->env[i][k] == '=')
                        return s->process->env[i] + k + 1;
        return NULL;
}

static const Grpc__Mount *mount_at(const Grpc__Spec *s, const char *dest)
{
        const Grpc__Mount *found = NULL;
        for (size_t i = 0; i < s->n_mounts; i++)
                if (strcmp(s->mounts[i]->destination, dest) == 0) {
                        assert_null(found); /* at most one per destination */
                        found = s->mounts[i];
                }
        return found;
}

static size_t mount_index(const Grpc__Spec *s, const char *dest)
{
        for (size_t i = 0; i < s->n_mounts; i++)
                if (strcmp(s->mounts[i]->destination, dest) == 0)
                        return i;
        fail_msg("no mount at %s", dest);
        return 0;
}

static const Grpc__LinuxNamespace *ns_of(const Grpc__Spec *s, const char *type)
{
        for (size_t i = 0; i < s->linux->n_namespaces; i++)
                if (strcmp(s->linux->namespaces[i]->type, type) == 0)
                        return s->linux->namespaces[i];
        return NULL;
}

static void assert_args(const Grpc__Spec *s, const char *const *want)
{
        size_t n = 0;
        for (; want[n]; n++)
                ;
        assert_int_equal(s->process->n_args, n);
        for (size_t i = 0; i < n; i++)
                assert_string_equal(s->process->args[i], want[i]);
}

static void write_file(const char *path, const char *text)
{
        FILE *fp = fopen(path, "w");
        assert_non_null(fp);
        fputs(text, fp);
        fclose(fp);
}

/* ---- args --------------------------------------------------------------- */

static void test_args_matrix(void **state)
{
        fx *f = *state;
        char *cmd[] = { "/app", "--flag" }, *args[] = { "x", "y" };
        /* command + args: image entrypoint and cmd ignored */
        f->ctr.command = cmd, f->ctr.n_command = 2, f->ctr.args = args, f->ctr.n_args = 2;
        expect_ok(f);
        assert_args(f->spec, (const char *const[]){ "/app", "--flag", "x", "y", NULL });
        /* command only */
        f->ctr.n_args = 0;
        expect_ok(f);
        assert_args(f->spec, (const char *const[]){ "/app", "--flag", NULL });
        /* args only: image entrypoint + args */
        f->ctr.n_command = 0, f->ctr.n_args = 2;
        expect_ok(f);
        assert_args(f->spec, (const char *const[]){ "/bin/sh", "-c", "x", "y", NULL });
        /* neither: entrypoint + image cmd */
        f->ctr.n_args = 0;
        expect_ok(f);
        assert_args(f->spec, (const char *const[]){ "/bin/sh", "-c", "echo", "image", NULL });
        /* no entrypoint: image cmd */
        f->image.entrypoint = NULL;
        expect_ok(f);
        assert_args(f->spec, (const char *const[]){ "echo", "image", NULL });
        /* ENTRYPOINT [""] counts as none */
        char *empty_ep[] = { "", NULL };
        f->image.entrypoint = empty_ep;
        expect_ok(f);
        assert_args(f->spec, (const char *const[]){ "echo", "image", NULL });
        /* no image config at all */
        f->in.image = NULL;
        f->ctr.n_args = 2;
        expect_ok(f);
        assert_args(f->spec, (const char *const[]){ "x", "y", NULL });
        f->ctr.n_args = 0;
        expect_err(f, -EINVAL, "no command specified");
        f->in.image = &f->image;
        f->image.entrypoint = NULL;
        f->image.cmd = NULL;
        expect_err(f, -EINVAL, "no command specified");
        char *emptycmd[] = { "" };
        f->ctr.command = emptycmd, f->ctr.n_command = 1;
        expect_err(f, -EINVAL, "argument 0");
}

/* ---- env ---------------------------------------------------------------- */

static void test_env(void **state)
{
        fx *f = *state;
        Runtime__V1__KeyValue kv[3], *kvp[3];
        const char *kvs[][2] = { { "A", "override" }, { "C", "3" }, { "EMPTY", "" } };
        for (int i = 0; i < 3; i++) {
                runtime__v1__key_value__init(&kv[i]);
                kv[i].key = (char *)kvs[i][0];
                kv[i].value = (char *)kvs[i][1];
                kvp[i] = &kv[i];
        }
        f->ctr.envs = kvp, f->ctr.n_envs = 3;
        expect_ok(f);
        Grpc__Process *p = f->spec->process;
        /* default PATH replaced in place by the image's; HOSTNAME second;
         * A replaced in place; C and EMPTY appended */
        assert_int_equal(p->n_env, 6);
        assert_string_equal(p->env[0], "PATH=/img/bin");
        assert_string_equal(p->env[1], "HOSTNAME=podhost");
        assert_string_equal(p->env[2], "A=override");
        assert_string_equal(p->env[3], "B=2");
        assert_string_equal(p->env[4], "C=3");
        assert_string_equal(p->env[5], "EMPTY=");
        /* no PATH in the image: the default */
        f->in.image = NULL;
        char *c[] = { "true" };
        f->ctr.command = c, f->ctr.n_command = 1;
        expect_ok(f);
        assert_string_equal(env_get(f->spec, "PATH"), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        /* the request may set HOSTNAME and PATH itself */
        kv[1].key = "PATH", kv[1].value = "/mine";
        kv[2].key = "HOSTNAME", kv[2].value = "custom";
        expect_ok(f);
        assert_string_equal(env_get(f->spec, "PATH"), "/mine");
        assert_string_equal(env_get(f->spec, "HOSTNAME"), "custom");
        kv[0].key = "BAD=KEY";
        expect_err(f, -EINVAL, "envs[0]");
        kv[0].key = "";
        expect_err(f, -EINVAL, "envs[0]");
}

static void test_cwd_tty(void **state)
{
        fx *f = *state;
        expect_ok(f);
        assert_string_equal(f->spec->process->cwd, "/");
        assert_false(f->spec->process->terminal);
        f->image.working_dir = "/srv/app/";
        f->ctr.tty = true;
        expect_ok(f);
        assert_string_equal(f->spec->process->cwd, "/srv/app");
        assert_true(f->spec->process->terminal);
        f->ctr.working_dir = "/work";
        expect_ok(f);
        assert_string_equal(f->spec->process->cwd, "/work");
        f->ctr.working_dir = "relative";
        expect_err(f, -EINVAL, "working_dir");
        f->ctr.working_dir = "/a/../b";
        expect_err(f, -EINVAL, "working_dir");
}

/* ---- user --------------------------------------------------------------- */

static void test_user(void **state)
{
        fx *f = *state;
        expect_ok(f); /* nothing: root, groups from the image's files */
        Grpc__User *u = f->spec->process->user;
        assert_int_equal(u->uid, 0);
        assert_string_equal(u->username, "0");

        f->uid.value = 1000;
        f->sc.run_as_user = &f->uid;
        expect_ok(f);
        u = f->spec->process->user;
        assert_int_equal(u->uid, 1000);
        assert_string_equal(u->username, "1000");

        f->gid.value = 3000;
        f->sc.run_as_group = &f->gid;
        int64_t sup[] = { 10, 20 };
        f->sc.supplemental_groups = sup, f->sc.n_supplemental_groups = 2;
        expect_ok(f);
        u = f->spec->process->user;
        assert_int_equal(u->uid, 1000);
        assert_int_equal(u->gid, 3000);
        assert_string_equal(u->username, ""); /* nothing to look up */
        assert_int_equal(u->n_additionalgids, 2);
        assert_int_equal(u->additionalgids[0], 10);
        assert_int_equal(u->additionalgids[1], 20);

        f->sc.run_as_username = "nginx";
        expect_err(f, -EINVAL, "run_as_user and run_as_username");
        f->sc.run_as_user = NULL;
        expect_ok(f);
        assert_string_equal(f->spec->process->user->username, "nginx:3000");
        assert_int_equal(f->spec->process->user->gid, 3000);
        f->sc.run_as_group = NULL;
        expect_ok(f);
        assert_string_equal(f->spec->process->user->username, "nginx");
        f->sc.run_as_username = "bad/name";
        expect_err(f, -EINVAL, "bad user");
        f->sc.run_as_username = "";
        f->sc.run_as_group = &f->gid;
        expect_err(f, -EINVAL, "run_as_group is set without");
        f->sc.run_as_group = NULL;
        f->uid.value = -1;
        f->sc.run_as_user = &f->uid;
        expect_err(f, -EINVAL, "run_as_user -1 out of range");
        f->sc.run_as_user = NULL;
        sup[1] = -5;
        expect_err(f, -EINVAL, "supplemental_groups[1]");
        f->sc.n_supplemental_groups = 0;

        /* the image's USER forms */
        const struct { const char *user, *name; uint32_t uid, gid; } cases[] = {
                { "1000", "1000", 1000, 0 },     { "1000:1001", "", 1000, 1001 },
                { "www", "www", 0, 0 },         { "www:www", "www:www", 0, 0 },
                { "www:50", "www:50", 0, 50 },  { "7:staff", "7:staff", 7, 0 },
        };
        for (size_t i = 0; i < CC_ARRAY_SIZE(cases); i++) {
                f->image.user = (char *)cases[i].user;
                expect_ok(f);
                u = f->spec->process->user;
                assert_string_equal(u->username, cases[i].name);
                assert_int_equal(u->uid, cases[i].uid);
                assert_int_equal(u->gid, cases[i].gid);
        }
        f->image.user = "a:b:c";
        expect_err(f, -EINVAL, "image user");
        f->image.user = ":5";
        expect_err(f, -EINVAL, "image user");
}

/* ---- capabilities ------------------------------------------------------- */

static void test_caps(void **state)
{
        fx *f = *state;
        expect_ok(f);
        Grpc__LinuxCapabilities *c = f->spec->process->capabilities;
        assert_int_equal(c->n_bounding, 14);
        assert_int_equal(c->n_effective, 14);
        assert_int_equal(c->n_permitted, 14);
        assert_int_equal(c->n_inheritable, 0);
        assert_int_equal(c->n_ambient, 0);
        assert_true(has(c->bounding, c->n_bounding, "CAP_NET_BIND_SERVICE"));
        assert_true(has(c->bounding, c->n_bounding, "CAP_AUDIT_WRITE"));
        assert_false(has(c->bounding, c->n_bounding, "CAP_SYS_ADMIN"));

        f->sc.capabilities = &f->caps;
        char *add[] = { "NET_ADMIN", "cap_sys_time" }, *drop[] = { "CAP_CHOWN", "kill" };
        f->caps.add_capabilities = add, f->caps.n_add_capabilities = 2;
        f->caps.drop_capabilities = drop, f->caps.n_drop_capabilities = 2;
        expect_ok(f);
        c = f->spec->process->capabilities;
        assert_int_equal(c->n_bounding, 14);
        assert_true(has(c->effective, c->n_effective, "CAP_NET_ADMIN"));
        assert_true(has(c->permitted, c->n_permitted, "CAP_SYS_TIME"));
        assert_false(has(c->bounding, c->n_bounding, "CAP_CHOWN"));
        assert_false(has(c->bounding, c->n_bounding, "CAP_KILL"));

        /* ALL, then individual drops; add+drop of the same: dropped */
        char *all[] = { "ALL" }, *drop1[] = { "CHOWN" };
        f->caps.add_capabilities = all, f->caps.n_add_capabilities = 1;
        f->caps.drop_capabilities = drop1, f->caps.n_drop_capabilities = 1;
        expect_ok(f);
        c = f->spec->process->capabilities;
        assert_int_equal(c->n_bounding, 40);
        assert_true(has(c->bounding, c->n_bounding, "CAP_SYS_ADMIN"));
        assert_false(has(c->bounding, c->n_bounding, "CAP_CHOWN"));
        char *kill[] = { "KILL", "CHOWN" };
        f->caps.add_capabilities = kill, f->caps.n_add_capabilities = 2;
        f->caps.drop_capabilities = all;
        expect_ok(f);
        c = f->spec->process->capabilities;
        assert_int_equal(c->n_bounding, 2);
        assert_string_equal(c->bounding[0], "CAP_CHOWN");
        assert_string_equal(c->bounding[1], "CAP_KILL");

        char *amb[] = { "NET_BIND_SERVICE" };
        f->caps.add_ambient_capabilities = amb, f->caps.n_add_ambient_capabilities = 1;
        expect_ok(f);
        c = f->spec->process->capabilities;
        assert_int_equal(c->n_ambient, 1);
        assert_string_equal(c->ambient[0], "CAP_NET_BIND_SERVICE");
        assert_string_equal(c->inheritable[0], "CAP_NET_BIND_SERVICE");
        assert_true(has(c->permitted, c->n_permitted, "CAP_NET_BIND_SERVICE"));

        char *bad[] = { "CAP_FLY" };
        f->caps.add_capabilities = bad;
        f->caps.n_add_capabilities = 1;
        expect_err(f, -EINVAL, "add_capabilities[0]: unknown capability 'CAP_FLY'");
        f->caps.n_add_capabilities = 0;
        f->caps.drop_capabilities = bad;
        expect_err(f, -EINVAL, "drop_capabilities[0]");
}

static void test_privileged(void **state)
{
        fx *f = *state;
        f->sc.privileged = true;
        f->sc.seccomp = &f->prof; /* RuntimeDefault: ignored when privileged */
        expect_err(f, -EINVAL, "not privileged");
        f->psc.privileged = true;
        expect_ok(f);
        Grpc__Spec *s = f->spec;
        assert_int_equal(s->process->capabilities->n_bounding, 41);
        assert_null(s->linux->seccomp);
        assert_int_equal(s->linux->n_maskedpaths, 0);
        assert_int_equal(s->linux->n_readonlypaths, 0);
        assert_true(has(mount_at(s, "/sys")->options, mount_at(s, "/sys")->n_options, "rw"));
        assert_true(has(mount_at(s, "/sys/fs/cgroup")->options, mount_at(s, "/sys/fs/cgroup")->n_options, "rw"));
        assert_null(ns_of(s, "cgroup"));
}

static void test_readonly_rootfs_nnp(void **state)
{
        fx *f = *state;
        f->in.hosts_path = "/run/pod/hosts";
        expect_ok(f);
        assert_false(f->spec->root->readonly);
        assert_false(f->spec->process->nonewprivileges);
        assert_string_equal(f->spec->root->path, "c1/rootfs");
        assert_true(has(mount_at(f->spec, "/etc/hosts")->options, 3, "rw"));
        f->sc.readonly_rootfs = true;
        f->sc.no_new_privs = true;
        expect_ok(f);
        assert_true(f->spec->root->readonly);
        assert_true(f->spec->process->nonewprivileges);
        assert_true(has(mount_at(f->spec, "/etc/hosts")->options, 3, "ro"));
}

/* ---- seccomp ------------------------------------------------------------ */

/* Whether the profile lets name through without argument conditions. */
static const Grpc__LinuxSyscall *rule_for(const Grpc__LinuxSeccomp *sc, const char *name, const char *action)
{
        for (size_t i = 0; i < sc->n_syscalls; i++)
                if (strcmp(sc->syscalls[i]->action, action) == 0 &&
                    has(sc->syscalls[i]->names, sc->syscalls[i]->n_names, name))
                        return sc->syscalls[i];
        return NULL;
}

static void test_seccomp_runtime_default(void **state)
{
        fx *f = *state;
        expect_ok(f);
        assert_null(f->spec->linux->seccomp); /* nothing asked: unconfined (containerd 1.6) */
        f->sc.seccomp = &f->prof;
        expect_ok(f);
        const Grpc__LinuxSeccomp *sc = f->spec->linux->seccomp;
        assert_non_null(sc);
        assert_string_equal(sc->defaultaction, "SCMP_ACT_ERRNO");
        assert_true(has(sc->architectures, sc->n_architectures, "SCMP_ARCH_X86_64"));
        assert_non_null(rule_for(sc, "read", "SCMP_ACT_ALLOW"));
        assert_non_null(rule_for(sc, "ptrace", "SCMP_ACT_ALLOW"));
        const char *denied[] = { "mount", "umount2", "unshare", "setns", "kexec_load", "init_module",
                                 "finit_module", "keyctl", "add_key", "bpf", "perf_event_open",
                                 "userfaultfd", "io_uring_setup", "reboot", "swapon", "settimeofday",
                                 "open_by_handle_at", "acct", "iopl" };
        for (size_t i = 0; i < CC_ARRAY_SIZE(denied); i++)
                if (rule_for(sc, denied[i], "SCMP_ACT_ALLOW"))
                        fail_msg("%s allowed by default", denied[i]);
        /* clone only without namespace flags; clone3 → ENOSYS */
        const Grpc__LinuxSyscall *cl = rule_for(sc, "clone", "SCMP_ACT_ALLOW");
        assert_non_null(cl);
        assert_int_equal(cl->n_args, 1);
        assert_string_equal(cl->args[0]->op, "SCMP_CMP_MASKED_EQ");
        assert_int_equal(cl->args[0]->value, 0x7E020000);
        const Grpc__LinuxSyscall *cl3 = rule_for(sc, "clone3", "SCMP_ACT_ERRNO");
        assert_non_null(cl3);
        assert_int_equal(cl3->errno_ret_case, GRPC__LINUX_SYSCALL__ERRNO_RET_ERRNORET);
        assert_int_equal(cl3->errnoret, ENOSYS);
        assert_non_null(rule_for(sc, "arch_prctl", "SCMP_ACT_ALLOW"));
        assert_null(rule_for(sc, "set_tls", "SCMP_ACT_ALLOW")); /* arm only */

        /* CAP_SYS_ADMIN opens mount & co, and clone without conditions */
        f->sc.capabilities = &f->caps;
        char *add[] = { "SYS_ADMIN", "SYS_CHROOT" };
        f->caps.add_capabilities = add, f->caps.n_add_capabilities = 1;
        expect_ok(f);
        sc = f->spec->linux->seccomp;
        assert_non_null(rule_for(sc, "mount", "SCMP_ACT_ALLOW"));
        assert_non_null(rule_for(sc, "unshare", "SCMP_ACT_ALLOW"));
        assert_null(rule_for(sc, "clone3", "SCMP_ACT_ERRNO"));
        assert_non_null(rule_for(sc, "chroot", "SCMP_ACT_ALLOW")); /* SYS_CHROOT is a default cap */

        /* the deprecated path names */
        f->sc.seccomp = NULL;
        const char *names[] = { "runtime/default", "docker/default" };
        for (int i = 0; i < 2; i++) {
                f->sc.seccomp_profile_path = (char *)names[i];
                expect_ok(f);
                assert_non_null(f->spec->linux->seccomp);
        }
        f->sc.seccomp_profile_path = "unconfined";
        expect_ok(f);
        assert_null(f->spec->linux->seccomp);
        f->sc.seccomp_profile_path = "apparmor/x";
        expect_err(f, -EINVAL, "seccomp_profile_path: unknown profile 'apparmor/x'");
        f->sc.seccomp_profile_path = "";

        /* Unconfined; an unknown type; the default profile missing */
        f->sc.seccomp = &f->prof;
        f->prof.profile_type = RUNTIME__V1__SECURITY_PROFILE__PROFILE_TYPE__Unconfined;
        expect_ok(f);
        assert_null(f->spec->linux->seccomp);
        f->prof.profile_type = 7;
        expect_err(f, -EINVAL, "unknown profile type 7");
        f->prof.profile_type = RUNTIME__V1__SECURITY_PROFILE__PROFILE_TYPE__RuntimeDefault;
        f->in.seccomp_dir = "/nonexistent";
        expect_err(f, -EINVAL, "/nonexistent/default.json");
}

static void test_seccomp_localhost(void **state)
{
        fx *f = *state;
        char path[600];
        snprintf(path, sizeof(path), "%s/local.json", tmpdir);
        write_file(path, "{\"defaultAction\":\"SCMP_ACT_ALLOW\",\"architectures\":[\"SCMP_ARCH_X86_64\",\"SCMP_ARCH_MIPS\"],"
                         "\"flags\":[\"SECCOMP_FILTER_FLAG_LOG\"],"
                         "\"syscalls\":[{\"names\":[\"mkdir\",\"rmdir\"],\"action\":\"SCMP_ACT_ERRNO\",\"errnoRet\":13},"
                         "{\"name\":\"kill\",\"action\":\"SCMP_ACT_LOG\",\"args\":[{\"index\":1,\"value\":9,"
                         "\"valueTwo\":0,\"op\":\"SCMP_CMP_EQ\"}]},"
                         "{\"names\":[\"mount\"],\"action\":\"SCMP_ACT_KILL\",\"excludes\":{\"caps\":[\"CAP_SYS_ADMIN\"]}}]}");
        f->sc.seccomp = &f->prof;
        f->prof.profile_type = RUNTIME__V1__SECURITY_PROFILE__PROFILE_TYPE__Localhost;
        f->prof.localhost_ref = path;
        expect_ok(f);
        const Grpc__LinuxSeccomp *sc = f->spec->linux->seccomp;
        assert_string_equal(sc->defaultaction, "SCMP_ACT_ALLOW");
        assert_int_equal(sc->n_architectures, 1); /* MIPS left out: the agent cannot compile it */
        assert_string_equal(sc->flags[0], "SECCOMP_FILTER_FLAG_LOG");
        assert_int_equal(sc->n_syscalls, 3);
        assert_int_equal(sc->syscalls[0]->errnoret, 13);
        assert_string_equal(sc->syscalls[1]->names[0], "kill");
        assert_int_equal(sc->syscalls[1]->args[0]->index, 1);
        assert_int_equal(sc->syscalls[1]->args[0]->value, 9);
        assert_int_equal(sc->syscalls[1]->errno_ret_case, GRPC__LINUX_SYSCALL__ERRNO_RET__NOT_SET);

        /* deprecated localhost/<path> */
        f->sc.seccomp = NULL;
        char dep[640];
        snprintf(dep, sizeof(dep), "localhost/%s", path);
        f->sc.seccomp_profile_path = dep;
        expect_ok(f);
        assert_int_equal(f->spec->linux->seccomp->n_syscalls, 3);
        f->sc.seccomp_profile_path = "localhost/relative.json";
        expect_err(f, -EINVAL, "not a clean absolute path");
        f->sc.seccomp_profile_path = "";
        f->sc.seccomp = &f->prof;

        const struct { const char *json, *err; } bad[] = {
                { "{\"defaultAction\":\"SCMP_ACT_ALLOW\",\"syscalls\":[{\"names\":[\"x\"],\"action\":\"SCMP_ACT_FOO\"}]}",
                  "syscalls[0]: unknown action 'SCMP_ACT_FOO'" },
                { "{\"defaultAction\":\"SCMP_ACT_BAR\"}", "defaultAction: unknown action 'SCMP_ACT_BAR'" },
                { "{\"syscalls\":[]}", "defaultAction" },
                { "{\"defaultAction\":\"SCMP_ACT_ALLOW\"", "local.json" },
                { "[]", "not a JSON object" },
                { "{\"defaultAction\":\"SCMP_ACT_ERRNO\",\"defaultErrnoRet\":38}", "defaultErrnoRet 38" },
                { "{\"defaultAction\":\"SCMP_ACT_ALLOW\",\"architectures\":[\"SCMP_ARCH_VAX\"]}", "SCMP_ARCH_VAX" },
                { "{\"defaultAction\":\"SCMP_ACT_ALLOW\",\"flags\":[\"NOPE\"]}", "unknown flag 'NOPE'" },
                { "{\"defaultAction\":\"SCMP_ACT_ALLOW\",\"syscalls\":[{\"names\":[\"read\"],\"action\":\"SCMP_ACT_NOTIFY\"}]}",
                  "SCMP_ACT_NOTIFY is not supported" },
                { "{\"defaultAction\":\"SCMP_ACT_ALLOW\",\"syscalls\":[{\"names\":[],\"action\":\"SCMP_ACT_LOG\"}]}",
                  "no syscall names" },
                { "{\"defaultAction\":\"SCMP_ACT_ALLOW\",\"syscalls\":[{\"names\":[\"Re ad\"],\"action\":\"SCMP_ACT_LOG\"}]}",
                  "bad syscall name" },
                { "{\"defaultAction\":\"SCMP_ACT_ALLOW\",\"syscalls\":[{\"names\":[\"read\"],\"action\":\"SCMP_ACT_LOG\","
                  "\"args\":[{\"index\":6,\"value\":1,\"op\":\"SCMP_CMP_EQ\"}]}]}", "syscalls[0].args[0]: 'index' 6 out of range" },
                { "{\"defaultAction\":\"SCMP_ACT_ALLOW\",\"syscalls\":[{\"names\":[\"read\"],\"action\":\"SCMP_ACT_LOG\","
                  "\"args\":[{\"index\":0,\"value\":-1,\"op\":\"SCMP_CMP_EQ\"}]}]}", "negative" },
                { "{\"defaultAction\":\"SCMP_ACT_ALLOW\",\"syscalls\":[{\"names\":[\"read\"],\"action\":\"SCMP_ACT_LOG\","
                  "\"args\":[{\"index\":0,\"value\":1,\"op\":\"SCMP_CMP_ABOUT\"}]}]}", "unknown operator 'SCMP_CMP_ABOUT'" },
                { "{\"defaultAction\":\"SCMP_ACT_ALLOW\",\"syscalls\":[{\"names\":[\"read\"],\"action\":\"SCMP_ACT_ERRNO\","
                  "\"errnoRet\":5000}]}", "errnoRet' 5000 out of range" },
                { "{\"defaultAction\":\"SCMP_ACT_ALLOW\",\"listenerPath\":\"/run/x.sock\"}", "listenerPath" },
        };
        for (size_t i = 0; i < CC_ARRAY_SIZE(bad); i++) {
                write_file(path, bad[i].json);
                expect_err(f, -EINVAL, bad[i].err);
                assert_non_null(strstr(f->err->msg, path));
        }
        unlink(path);
        expect_err(f, -EINVAL, "local.json");
        f->prof.localhost_ref = "";
        expect_err(f, -EINVAL, "Localhost profile without localhost_ref");
        f->prof.localhost_ref = "rel/p.json";
        expect_err(f, -EINVAL, "localhost_ref 'rel/p.json'");
        f->prof.localhost_ref = "/a/../etc/p.json";
        expect_err(f, -EINVAL, "localhost_ref");
}

static void test_seccomp_archmap(void **state)
{
        char path[600];
        snprintf(path, sizeof(path), "%s/docker.json", tmpdir);
        write_file(path, "{\"defaultAction\":\"SCMP_ACT_ERRNO\",\"defaultErrnoRet\":1,\"archMap\":["
                         "{\"architecture\":\"SCMP_ARCH_X86_64\",\"subArchitectures\":[\"SCMP_ARCH_X86\",\"SCMP_ARCH_X32\"]},"
                         "{\"architecture\":\"SCMP_ARCH_AARCH64\",\"subArchitectures\":[\"SCMP_ARCH_ARM\"]}],"
                         "\"syscalls\":[{\"names\":[\"read\"],\"action\":\"SCMP_ACT_ALLOW\"},"
                         "{\"names\":[\"mount\"],\"action\":\"SCMP_ACT_ALLOW\",\"includes\":{\"caps\":[\"CAP_SYS_ADMIN\"]}},"
                         "{\"names\":[\"arch_prctl\"],\"action\":\"SCMP_ACT_ALLOW\",\"includes\":{\"arches\":[\"amd64\"]}},"
                         "{\"names\":[\"set_tls\"],\"action\":\"SCMP_ACT_ALLOW\",\"includes\":{\"arches\":[\"arm64\"]}},"
                         "{\"names\":[\"umount\"],\"action\":\"SCMP_ACT_ALLOW\",\"excludes\":{\"arches\":[\"amd64\"]}}]}");
        Grpc__LinuxSeccomp *sc = NULL;
        _cleanup_error_ cc_error *err = NULL;
        assert_int_equal(rt_spec_seccomp_load(path, &sc, &err), 0);
#if defined(__x86_64__)
        assert_int_equal(sc->n_architectures, 3);
        assert_string_equal(sc->architectures[0], "SCMP_ARCH_X86_64");
        assert_int_equal(sc->n_syscalls, 2); /* read, arch_prctl */
        assert_string_equal(sc->syscalls[1]->names[0], "arch_prctl");
#endif
        protobuf_c_message_free_unpacked(&sc->base, NULL);
        unlink(path);
}

/* Every name in the shipped profile is a system call libseccomp knows
 * (natively, or on an architecture a rule is limited to). */
static void test_seccomp_names_known(void **state)
{
        json_object *root = json_object_from_file(profile_src);
        assert_non_null(root);
        json_object *rules = json_object_object_get(root, "syscalls");
        size_t total = 0;
        for (size_t i = 0; i < json_object_array_length(rules); i++) {
                json_object *r = json_object_array_get_idx(rules, i), *inc, *arches = NULL;
                if (json_object_object_get_ex(r, "includes", &inc))
                        arches = json_object_object_get(inc, "arches");
                json_object *names = json_object_object_get(r, "names");
                for (size_t j = 0; j < json_object_array_length(names); j++, total++) {
                        const char *n = json_object_get_string(json_object_array_get_idx(names, j));
                        bool known = seccomp_syscall_resolve_name(n) != __NR_SCMP_ERROR;
                        for (size_t k = 0; !known && arches && k < json_object_array_length(arches); k++) {
                                const char *a = json_object_get_string(json_object_array_get_idx(arches, k));
                                uint32_t arch = strcmp(a, "arm") == 0 ? SCMP_ARCH_ARM
                                                : strcmp(a, "arm64") == 0 ? SCMP_ARCH_AARCH64
                                                : strcmp(a, "x86") == 0 ? SCMP_ARCH_X86
                                                : strcmp(a, "x32") == 0 ? SCMP_ARCH_X32 : SCMP_ARCH_X86_64;
                                known = seccomp_syscall_resolve_name_arch(arch, n) != __NR_SCMP_ERROR;
                        }
                        if (!known)
                                fail_msg("syscall '%s' (rule %zu) is unknown to libseccomp", n, i);
                }
        }
        assert_true(total > 300);
        json_object_put(root);
}

/* ---- masked/readonly, resources, sysctls ------------------------------- */

static void test_masked_readonly(void **state)
{
        fx *f = *state;
        expect_ok(f);
        Grpc__Linux *lx = f->spec->linux;
        assert_int_equal(lx->n_maskedpaths, 10);
        assert_true(has(lx->maskedpaths, lx->n_maskedpaths, "/proc/kcore"));
        assert_true(has(lx->maskedpaths, lx->n_maskedpaths, "/sys/devices/virtual/powercap"));
        assert_int_equal(lx->n_readonlypaths, 6);
        assert_true(has(lx->readonlypaths, lx->n_readonlypaths, "/proc/sysrq-trigger"));
        char *m[] = { "/proc/x", "/proc/y/" }, *ro[] = { "/proc/z" };
        f->sc.masked_paths = m, f->sc.n_masked_paths = 2;
        f->sc.readonly_paths = ro, f->sc.n_readonly_paths = 1;
        expect_ok(f);
        lx = f->spec->linux;
        assert_int_equal(lx->n_maskedpaths, 2);
        assert_string_equal(lx->maskedpaths[1], "/proc/y");
        assert_int_equal(lx->n_readonlypaths, 1);
        assert_string_equal(lx->readonlypaths[0], "/proc/z");
        m[0] = "proc/x";
        expect_err(f, -EINVAL, "masked_paths[0]");
        m[0] = "/proc/../etc";
        expect_err(f, -EINVAL, "masked_paths[0]");
        m[0] = "/ok";
        ro[0] = "";
        expect_err(f, -EINVAL, "readonly_paths[0]");
}

static void test_resources(void **state)
{
        fx *f = *state;
        expect_ok(f);
        assert_null(f->spec->linux->resources);
        f->lcc.resources = &f->res;
        f->res.cpu_period = 100000;
        f->res.cpu_quota = 50000;
        f->res.cpu_shares = 512;
        f->res.cpuset_cpus = "0-1";
        f->res.cpuset_mems = "0";
        f->res.memory_limit_in_bytes = 64 << 20;
        f->res.oom_score_adj = 999;
        expect_ok(f);
        Grpc__LinuxResources *r = f->spec->linux->resources;
        assert_int_equal(r->cpu->period, 100000);
        assert_int_equal(r->cpu->quota, 50000);
        assert_int_equal(r->cpu->shares, 512);
        assert_string_equal(r->cpu->cpus, "0-1");
        assert_string_equal(r->cpu->mems, "0");
        assert_int_equal(r->memory->limit, 64 << 20);
        assert_int_equal(r->memory->swap, 64 << 20);
        assert_int_equal(f->spec->process->oomscoreadj, 999);
        f->res.memory_limit_in_bytes = 0;
        expect_ok(f);
        assert_null(f->spec->linux->resources->memory);
        f->res.oom_score_adj = 1001;
        expect_err(f, -EINVAL, "oom_score_adj");
        f->res.oom_score_adj = 0;
        f->res.cpu_shares = -2;
        expect_err(f, -EINVAL, "resources.cpu_shares");
        f->res.cpu_shares = 2;
        f->res.cpuset_cpus = "0;rm";
        expect_err(f, -EINVAL, "cpuset_cpus");
}

static void test_sysctls(void **state)
{
        fx *f = *state;
        Runtime__V1__LinuxPodSandboxConfig__SysctlsEntry e[2], *ep[2];
        for (int i = 0; i < 2; i++) {
                runtime__v1__linux_pod_sandbox_config__sysctls_entry__init(&e[i]);
                ep[i] = &e[i];
        }
        e[0].key = "net.ipv4.ip_forward", e[0].value = "1";
        e[1].key = "kernel.shmmax", e[1].value = "100000";
        f->pl.sysctls = ep, f->pl.n_sysctls = 2;
        expect_ok(f);
        assert_int_equal(f->spec->linux->n_sysctl, 2);
        assert_string_equal(f->spec->linux->sysctl[0]->key, "net.ipv4.ip_forward");
        assert_string_equal(f->spec->linux->sysctl[0]->value, "1");
        /* host mode: namespaced sysctls of a host namespace refused */
        f->in.host_mode = true;
        f->in.pod_netns = "/run/netns/p";
        f->sc.namespace_options = &f->nso;
        f->nso.network = RUNTIME__V1__NAMESPACE_MODE__NODE;
        expect_err(f, -EINVAL, "'net.ipv4.ip_forward' would change the host's network");
        f->nso.network = RUNTIME__V1__NAMESPACE_MODE__POD;
        f->nso.ipc = RUNTIME__V1__NAMESPACE_MODE__NODE;
        expect_err(f, -EINVAL, "'kernel.shmmax' would change the host's IPC");
        f->nso.ipc = RUNTIME__V1__NAMESPACE_MODE__POD;
        expect_ok(f);
        e[0].key = "../../etc";
        expect_err(f, -EINVAL, "sysctls: bad name");
}

/* ---- mounts ------------------------------------------------------------- */

static void test_default_mounts(void **state)
{
        fx *f = *state;
        expect_ok(f);
        Grpc__Spec *s = f->spec;
        const char *dests[] = { "/proc", "/dev", "/dev/pts", "/dev/mqueue", "/sys", "/sys/fs/cgroup", "/dev/shm" };
        assert_int_equal(s->n_mounts, CC_ARRAY_SIZE(dests));
        for (size_t i = 0; i < CC_ARRAY_SIZE(dests); i++)
                assert_non_null(mount_at(s, dests[i]));
        const Grpc__Mount *shm = mount_at(s, "/dev/shm");
        assert_string_equal(shm->type, "tmpfs");
        assert_true(has(shm->options, shm->n_options, "size=65536k"));
        assert_true(has(mount_at(s, "/sys")->options, mount_at(s, "/sys")->n_options, "ro"));
        assert_string_equal(mount_at(s, "/dev/pts")->type, "devpts");
        assert_null(mount_at(s, "/etc/hosts"));
        /* pod files and shm */
        f->in.hosts_path = "/run/pod/hosts";
        f->in.resolv_path = "/run/pod/resolv.conf";
        f->in.hostname_path = "/run/pod/hostname";
        f->in.shm_path = "/run/pod/shm";
        expect_ok(f);
        s = f->spec;
        assert_string_equal(mount_at(s, "/etc/hosts")->source, "/run/pod/hosts");
        assert_string_equal(mount_at(s, "/etc/resolv.conf")->type, "bind");
        assert_string_equal(mount_at(s, "/etc/hostname")->source, "/run/pod/hostname");
        shm = mount_at(s, "/dev/shm");
        assert_string_equal(shm->source, "/run/pod/shm");
        assert_string_equal(shm->type, "bind");
        assert_true(has(shm->options, shm->n_options, "rbind"));
        assert_true(mount_index(s, "/dev") < mount_index(s, "/dev/shm"));
        f->in.shm_path = "relative";
        expect_err(f, -EINVAL, "shm_path");
}

static void test_request_mounts(void **state)
{
        fx *f = *state;
        Runtime__V1__Mount m[5], *mp[5];
        rt_spec_mount sm[5];
        const char *dests[] = { "/data/sub", "/data", "/etc/hosts", "/dev/termination-log", "/cfg" };
        const char *srcs[] = { "/vm/a", "/vm/b", "/vm/hosts", "/vm/term", "/vm/cfg" };
        for (int i = 0; i < 5; i++) {
                runtime__v1__mount__init(&m[i]);
                m[i].container_path = (char *)dests[i];
                m[i].host_path = "/host/whatever";
                mp[i] = &m[i];
                sm[i].cri = &m[i];
                sm[i].source = srcs[i];
        }
        m[0].propagation = RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_HOST_TO_CONTAINER;
        m[1].readonly = true;
        m[4].propagation = RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_PRIVATE;
        f->ctr.mounts = mp, f->ctr.n_mounts = 5;
        f->in.mounts = sm, f->in.n_mounts = 5;
        f->in.hosts_path = "/run/pod/hosts"; /* the request's /etc/hosts wins */
        expect_ok(f);
        Grpc__Spec *s = f->spec;
        const Grpc__Mount *a = mount_at(s, "/data/sub"), *b = mount_at(s, "/data");
        assert_string_equal(a->source, "/vm/a");
        assert_string_equal(a->type, "bind");
        assert_int_equal(a->n_options, 3);
        assert_string_equal(a->options[0], "rbind");
        assert_string_equal(a->options[1], "rslave");
        assert_string_equal(a->options[2], "rw");
        assert_string_equal(b->options[1], "rprivate");
        assert_string_equal(b->options[2], "ro");
        assert_true(mount_index(s, "/data") < mount_index(s, "/data/sub")); /* parents first */
        assert_true(mount_index(s, "/sys/fs/cgroup") < mount_index(s, "/data"));
        assert_string_equal(mount_at(s, "/etc/hosts")->source, "/vm/hosts");
        assert_string_equal(mount_at(s, "/dev/termination-log")->source, "/vm/term");
        assert_string_equal(s->linux->rootfspropagation, "rslave");
        m[4].propagation = RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_BIDIRECTIONAL;
        expect_ok(f);
        assert_string_equal(f->spec->linux->rootfspropagation, "rshared");
        assert_string_equal(mount_at(f->spec, "/cfg")->options[1], "rshared");
        m[4].propagation = 9;
        expect_err(f, -EINVAL, "mounts[4]: unknown propagation");
        m[4].propagation = 0;

        m[2].container_path = "etc/hosts";
        expect_err(f, -EINVAL, "mounts[2].container_path 'etc/hosts' is not an absolute path");
        m[2].container_path = "/data/../etc";
        expect_err(f, -EINVAL, "mounts[2].container_path");
        m[2].container_path = "/data/";
        expect_err(f, -EINVAL, "duplicate mount point '/data'");
        m[2].container_path = "/etc/hosts";
        sm[3].source = "relative";
        expect_err(f, -EINVAL, "mounts[3]: source");
        sm[3].source = "/vm/term";
        m[1].recursive_read_only = true;
        expect_err(f, -EOPNOTSUPP, "mounts[1]: recursive read-only");
        m[1].recursive_read_only = false;
        f->in.n_mounts = 4;
        expect_err(f, -EINVAL, "4 mount sources for 5 mounts");
        f->in.n_mounts = 5;
        sm[0].cri = &m[1];
        expect_err(f, -EINVAL, "mount source 0");
        sm[0].cri = NULL; /* NULL: the request's mount in the same place */
        expect_ok(f);

        /* a /dev of its own replaces the defaults below /dev */
        m[3].container_path = "/dev";
        expect_ok(f);
        assert_null(mount_at(f->spec, "/dev/pts"));
        assert_null(mount_at(f->spec, "/dev/shm"));
        assert_string_equal(mount_at(f->spec, "/dev")->source, "/vm/term");
}

static void test_devices(void **state)
{
        fx *f = *state;
        Runtime__V1__Device d, *dp = &d;
        runtime__v1__device__init(&d);
        d.container_path = "/dev/fuse";
        d.host_path = "/dev/fuse";
        d.permissions = "rwm";
        f->ctr.devices = &dp, f->ctr.n_devices = 1;
        expect_err(f, -EOPNOTSUPP, "devices[0]");
        f->in.host_mode = true;
        f->in.pod_netns = "/run/netns/p";
        expect_ok(f);
        const Grpc__Mount *m = mount_at(f->spec, "/dev/fuse");
        assert_string_equal(m->source, "/dev/fuse");
        assert_true(has(m->options, m->n_options, "rw"));
        assert_false(has(m->options, m->n_options, "nodev"));
        d.permissions = "r";
        expect_ok(f);
        assert_true(has(mount_at(f->spec, "/dev/fuse")->options, 4, "ro"));
        d.permissions = "rx";
        expect_err(f, -EINVAL, "permissions");
        d.permissions = "r";
        d.host_path = "/etc/shadow";
        expect_err(f, -EINVAL, "not below /dev");
}

/* ---- namespaces, hostname, annotations ---------------------------------- */

static void test_namespaces_vm(void **state)
{
        fx *f = *state;
        expect_ok(f);
        Grpc__Spec *s = f->spec;
        assert_non_null(ns_of(s, "mount"));
        assert_non_null(ns_of(s, "pid"));
        assert_null(ns_of(s, "ipc"));     /* ipc=POD: the VM's own, shared by the pod */
        assert_null(ns_of(s, "uts"));     /* the VM's hostname is the pod's */
        assert_non_null(ns_of(s, "cgroup"));
        assert_null(ns_of(s, "network")); /* the VM's own */
        assert_string_equal(s->hostname, "podhost");
        /* ipc=CONTAINER: a namespace of its own */
        f->sc.namespace_options = &f->nso;
        f->nso.ipc = RUNTIME__V1__NAMESPACE_MODE__CONTAINER;
        expect_ok(f);
        assert_non_null(ns_of(f->spec, "ipc"));
        f->nso.ipc = RUNTIME__V1__NAMESPACE_MODE__POD;
        /* NODE in a VM means the VM: nothing changes for the spec */
        f->nso.pid = RUNTIME__V1__NAMESPACE_MODE__NODE;
        f->nso.network = RUNTIME__V1__NAMESPACE_MODE__NODE;
        expect_ok(f);
        assert_non_null(ns_of(f->spec, "pid"));
        assert_null(ns_of(f->spec, "network"));
        f->nso.pid = RUNTIME__V1__NAMESPACE_MODE__TARGET;
        expect_err(f, -EOPNOTSUPP, "namespace_options.pid: mode TARGET");
        f->nso.pid = 0;
        Runtime__V1__UserNamespace un;
        runtime__v1__user_namespace__init(&un);
        f->nso.userns_options = &un;
        expect_err(f, -EOPNOTSUPP, "user namespaces");
        un.mode = RUNTIME__V1__NAMESPACE_MODE__NODE;
        expect_ok(f);
}

static void test_namespaces_host_mode(void **state)
{
        fx *f = *state;
        f->in.host_mode = true;
        expect_err(f, -EINVAL, "pod network namespace path");
        f->in.pod_netns = "/run/netns/cni-1";
        expect_ok(f);
        const Grpc__LinuxNamespace *n = ns_of(f->spec, "network");
        assert_non_null(n);
        assert_string_equal(n->path, "/run/netns/cni-1");
        assert_string_equal(ns_of(f->spec, "pid")->path, "");
        assert_non_null(ns_of(f->spec, "uts"));
        assert_string_equal(f->spec->hostname, "podhost");

        /* the pod's options apply when the container gives none */
        Runtime__V1__NamespaceOption pno;
        runtime__v1__namespace_option__init(&pno);
        pno.pid = RUNTIME__V1__NAMESPACE_MODE__NODE;
        pno.ipc = RUNTIME__V1__NAMESPACE_MODE__NODE;
        pno.network = RUNTIME__V1__NAMESPACE_MODE__NODE;
        f->psc.namespace_options = &pno;
        f->pod.hostname = "";
        f->in.pod_netns = NULL;
        expect_ok(f);
        Grpc__Spec *s = f->spec;
        assert_null(ns_of(s, "pid"));
        assert_null(ns_of(s, "ipc"));
        assert_null(ns_of(s, "uts"));
        assert_null(ns_of(s, "network"));
        assert_non_null(ns_of(s, "mount"));
        assert_string_equal(s->hostname, "");
        char host[256] = "";
        gethostname(host, sizeof(host) - 1);
        assert_string_equal(env_get(s, "HOSTNAME"), host);
        /* host IPC: the host's /dev/shm */
        assert_string_equal(mount_at(s, "/dev/shm")->source, "/dev/shm");
        assert_string_equal(mount_at(s, "/dev/shm")->type, "bind");
}

static void test_annotations_and_input(void **state)
{
        fx *f = *state;
        expect_ok(f);
        Grpc__Spec *s = f->spec;
        const char *want[][2] = {
                { "io.kubernetes.cri.container-type", "container" }, { "io.kubernetes.cri.sandbox-id", "sb1" },
                { "io.kubernetes.cri.container-name", "web" },
                { "io.kubernetes.cri.image-name", "docker.io/library/busybox:latest" },
                { "io.kubernetes.cri.sandbox-name", "pod" }, { "io.kubernetes.cri.sandbox-namespace", "default" },
                { "io.kubernetes.cri.sandbox-uid", "uid-1" },
        };
        assert_int_equal(s->n_annotations, CC_ARRAY_SIZE(want));
        for (size_t i = 0; i < CC_ARRAY_SIZE(want); i++) {
                assert_string_equal(s->annotations[i]->key, want[i][0]);
                assert_string_equal(s->annotations[i]->value, want[i][1]);
        }
        assert_string_equal(s->version, "1.0.2-dev");
        f->in.root_path = "";
        expect_err(f, -EINVAL, "root path");
        f->in.root_path = "../x";
        expect_err(f, -EINVAL, "root path");
        f->in.root_path = "c1/rootfs";
        f->in.sandbox_id = NULL;
        expect_err(f, -EINVAL, "sandbox");
}

/* ---- pack/unpack, exec -------------------------------------------------- */

static void test_pack_unpack(void **state)
{
        fx *f = *state;
        f->sc.seccomp = &f->prof;
        f->lcc.resources = &f->res;
        f->res.memory_limit_in_bytes = 1 << 20;
        expect_ok(f);
        _cleanup_free_ uint8_t *buf = NULL, *buf2 = NULL;
        size_t len, len2;
        _cleanup_error_ cc_error *err = NULL;
        assert_int_equal(rt_spec_pack(f->spec, &buf, &len, &err), 0);
        assert_true(len > 1000);
        _cleanup_rt_spec_ Grpc__Spec *u = NULL;
        assert_int_equal(rt_spec_unpack(buf, len, &u, &err), 0);
        assert_int_equal(rt_spec_pack(u, &buf2, &len2, &err), 0);
        assert_int_equal(len, len2);
        assert_memory_equal(buf, buf2, len);
        assert_string_equal(u->process->args[0], "/bin/sh");
        assert_int_equal(u->linux->resources->memory->limit, 1 << 20);
        assert_int_equal(u->linux->seccomp->n_syscalls, f->spec->linux->seccomp->n_syscalls);

        Grpc__Spec *bad = NULL;
        uint8_t junk[] = { 0x12, 0xff, 0xff, 0xff, 0x0f, 0x01 };
        assert_int_equal(rt_spec_unpack(junk, sizeof(junk), &bad, &err), -EINVAL);
        assert_null(bad);
        cc_error_free(TAKE_PTR(err));
        assert_int_equal(rt_spec_unpack((const uint8_t *)"", 0, &bad, &err), -EINVAL); /* empty: no process */
        assert_non_null(strstr(err->msg, "no process"));
}

static void test_exec_process(void **state)
{
        fx *f = *state;
        f->uid.value = 1000;
        f->sc.run_as_user = &f->uid;
        f->sc.no_new_privs = true;
        f->image.working_dir = "/srv";
        f->lcc.resources = &f->res;
        f->res.oom_score_adj = 5;
        expect_ok(f);
        char *argv[] = { "ls", "-l", NULL };
        Grpc__Process *p = NULL;
        _cleanup_error_ cc_error *err = NULL;
        assert_int_equal(rt_spec_exec_process(f->spec, argv, 2, true, &p, &err), 0);
        assert_int_equal(p->n_args, 2);
        assert_string_equal(p->args[0], "ls");
        assert_string_equal(p->args[1], "-l");
        assert_true(p->terminal);
        assert_string_equal(p->cwd, "/srv");
        assert_int_equal(p->user->uid, 1000);
        assert_true(p->nonewprivileges);
        assert_int_equal(p->oomscoreadj, 5);
        assert_int_equal(p->n_env, f->spec->process->n_env);
        assert_int_equal(p->capabilities->n_bounding, 14);
        rt_spec_process_free(p);
        /* the spec is untouched */
        assert_string_equal(f->spec->process->args[0], "/bin/sh");
        assert_false(f->spec->process->terminal);
        p = NULL;
        assert_int_equal(rt_spec_exec_process(f->spec, argv, 0, false, &p, &err), -EINVAL);
        assert_null(p);
        cc_error_free(TAKE_PTR(err));
        char *empty[] = { "" };
        assert_int_equal(rt_spec_exec_process(f->spec, empty, 1, false, &p, &err), -EINVAL);
}

static int group_setup(void **state)
{
        if (!mkdtemp(tmpdir))
                return -1;
        snprintf(profile_src, sizeof(profile_src), "%s/conf/seccomp.json", SPEC_TEST_SRCDIR);
        char link[600];
        snprintf(link, sizeof(link), "%s/default.json", tmpdir);
        return symlink(profile_src, link);
}

static int group_teardown(void **state)
{
        const char *files[] = { "default.json", "local.json", "docker.json" };
        for (size_t i = 0; i < CC_ARRAY_SIZE(files); i++) {
                char p[600];
                snprintf(p, sizeof(p), "%s/%s", tmpdir, files[i]);
                unlink(p);
        }
        return rmdir(tmpdir);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
                T(test_args_matrix),         T(test_env),
                T(test_cwd_tty),             T(test_user),
                T(test_caps),                T(test_privileged),
                T(test_readonly_rootfs_nnp), T(test_seccomp_runtime_default),
                T(test_seccomp_localhost),   T(test_seccomp_archmap),
                T(test_seccomp_names_known), T(test_masked_readonly),
                T(test_resources),           T(test_sysctls),
                T(test_default_mounts),      T(test_request_mounts),
                T(test_devices),             T(test_namespaces_vm),
                T(test_namespaces_host_mode), T(test_annotations_and_input),
                T(test_pack_unpack),         T(test_exec_process),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
