/* SPDX-License-Identifier: Apache-2.0 */
/* Orchestration tests for runtime/pod.c, pod-vm.c and runtime.c with a mock
 * VMM driver and a real agent: the mock "VM" is the host-mode backend running
 * the build's cocoon-agent --host (the fake world at its edge: no QEMU), with
 * failures injected at each step of the boot. virtiofsd is the real one.
 *
 *  - a VM-mode pod: run, status (sizing, pids, endpoint), duplicates, stop,
 *    remove, and that nothing is left (process, mount, directory, record);
 *  - RunPodSandbox failing at create / add_device / start / endpoint / dial
 *    leaves nothing behind;
 *  - validation: metadata, unknown handler, host mode forbidden;
 *  - the VMM dying marks the pod NOTREADY (watcher);
 *  - a new runtime over the same state re-attaches (re-dial) to a living pod;
 *  - a host-mode pod (host network) runs under the host backend;
 *  - CreateContainer with a missing image fails naming it.
 * Needs root (mounts, cgroups); skipped without it. */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/cleanup.h"
#include "common/config.h"
#include "common/fs.h"
#include "image/images.h"
#include "image/store.h"
#include "runtime/internal.h"

#ifndef TEST_BUILDDIR
#define TEST_BUILDDIR "."
#endif
#define AGENT TEST_BUILDDIR "/agent/cocoon-agent"

/* ---- the mock VMM: the host backend underneath, failures on demand -------------- */

enum { F_NONE, F_CREATE, F_ADD_DEVICE, F_START, F_ENDPOINT, F_DIAL, F_N };
static const char *const fail_names[] = { "none", "create", "add_device", "start", "endpoint", "dial" };
static int fail_at;
static int n_devices;

typedef struct mock_vm {
        vmm_base base;
        vmm *inner;
        char run_dir[80];
} mock_vm;

extern const vmm_ops mock_ops;
#define HOST (&vmm_host_ops)
#define INNER(v) (((mock_vm *)(v))->inner)

static int wrap(vmm *inner, const char *run_dir, vmm **ret)
{
        mock_vm *m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->base.ops = &mock_ops;
        m->inner = inner;
        snprintf(m->run_dir, sizeof(m->run_dir), "%s", run_dir);
        *ret = (vmm *)m;
        return 0;
}

static int mock_create(const vmm_config *c, vmm **ret, cc_error **ret_err)
{
        if (fail_at == F_CREATE)
                return cc_error_set(ret_err, -EIO, "mock: create fails");
        vmm_config hc = *c;
        hc.binary = AGENT;
        hc.kernel_params = "";
        vmm *inner = NULL;
        int r = HOST->create(&hc, &inner, ret_err);
        if (r < 0)
                return r;
        if (wrap(inner, c->run_dir, ret) < 0) {
                HOST->free(inner);
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        return 0;
}

static int mock_add_device(vmm *v, const vmm_device *d, cc_error **ret_err)
{
        (void)v;
        if (fail_at == F_ADD_DEVICE)
                return cc_error_set(ret_err, -EINVAL, "mock: add_device fails");
        if (d->kind == VMM_DEV_FS)
                assert_string_equal(d->fs.tag, RT_SHARE_TAG);
        if (d->kind == VMM_DEV_SERIAL)
                assert_string_equal(d->serial.name, RT_AGENT_PORT);
        n_devices++;
        return 0;
}

static int mock_start(vmm *v, cc_error **ret_err)
{
        if (fail_at == F_START)
                return cc_error_set(ret_err, -EIO, "mock: start fails");
        return HOST->start(INNER(v), ret_err);
}

static int mock_stop(vmm *v, int timeout_ms, cc_error **ret_err) { return HOST->stop(INNER(v), timeout_ms, ret_err); }

static int mock_endpoint(vmm *v, vmm_endpoint *ret, cc_error **ret_err)
{
        if (fail_at == F_ENDPOINT)
                return cc_error_set(ret_err, -EIO, "mock: no endpoint");
        if (fail_at == F_DIAL) {
                memset(ret, 0, sizeof(*ret));
                ret->kind = VMM_EP_UNIX;
                snprintf(ret->path, sizeof(ret->path), "%s/nobody-listens.sock", ((mock_vm *)v)->run_dir);
                return 0;
        }
        return HOST->agent_endpoint(INNER(v), ret, ret_err);
}

static int mock_exit_fd(vmm *v) { return HOST->exit_fd(INNER(v)); }
static bool mock_alive(vmm *v) { return HOST->alive(INNER(v)); }
static int mock_pid(vmm *v) { return HOST->pid(INNER(v)); }
static int mock_save(vmm *v, json_object **ret, cc_error **ret_err) { return HOST->save(INNER(v), ret, ret_err); }

static int mock_load(const vmm_config *c, json_object *saved, vmm **ret, cc_error **ret_err)
{
        vmm_config hc = *c;
        hc.binary = AGENT;
        hc.kernel_params = "";
        vmm *inner = NULL;
        int r = HOST->load(&hc, saved, &inner, ret_err);
        if (r < 0)
                return r;
        if (wrap(inner, c->run_dir, ret) < 0) {
                HOST->free(inner);
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        return 0;
}

static void mock_free(vmm *v)
{
        HOST->free(INNER(v));
        free(v);
}

const vmm_ops mock_ops = {
        .name = "mock",
        .create = mock_create,
        .add_device = mock_add_device,
        .start = mock_start,
        .stop = mock_stop,
        .agent_endpoint = mock_endpoint,
        .exit_fd = mock_exit_fd,
        .alive = mock_alive,
        .pid = mock_pid,
        .save = mock_save,
        .load = mock_load,
        .free = mock_free,
};

/* ---- fixture ------------------------------------------------------------------- */

typedef struct fixture {
        char dir[64];
        char state[32]; /* short: socket paths below it must fit in 108 bytes */
        cc_config *cfg;
        image_store *store;
        image_db *images;
        rt_runtime *rt;
} fixture;

static const rt_runtime_opts opts = { .vm_ops = &mock_ops };

static int setup(void **state)
{
        if (geteuid() != 0 || access(AGENT, X_OK) != 0 || !virtiofsd_default_binary()) {
                fprintf(stderr, "skipped: needs root, %s and virtiofsd\n", AGENT);
                skip();
        }
        fixture *f = calloc(1, sizeof(*f));
        snprintf(f->dir, sizeof(f->dir), "/tmp/test-pod-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->state, sizeof(f->state), "/run/tp-XXXXXX");
        assert_non_null(mkdtemp(f->state));
        f->cfg = cc_config_new_default();
        free(f->cfg->paths.root);
        free(f->cfg->paths.state);
        free(f->cfg->runtime.host_agent);
        free(f->cfg->vm.virtiofsd);
        assert_true(asprintf(&f->cfg->paths.root, "%s/root", f->dir) > 0);
        f->cfg->paths.state = strdup(f->state);
        f->cfg->runtime.host_agent = strdup(AGENT);
        f->cfg->vm.virtiofsd = strdup(virtiofsd_default_binary());
        f->cfg->vm.agent_timeout = 1; /* the failed dial gives up quickly */
        cc_error *err = NULL;
        assert_int_equal(image_store_open(f->cfg->paths.root, &f->store, &err), 0);
        assert_int_equal(image_db_open(f->store, &f->images, &err), 0);
        assert_int_equal(rt_runtime_open_opts(f->cfg, f->images, NULL, &opts, &f->rt, &err), 0);
        fail_at = F_NONE;
        *state = f;
        return 0;
}

/* Processes whose command line mentions s (the agent's socket path and
 * virtiofsd's are under the test dir). Zombies have none. */
static int procs_mentioning(const char *s)
{
        _cleanup_closedir_ DIR *d = opendir("/proc");
        struct dirent *de;
        int n = 0;
        while ((de = readdir(d))) {
                if (de->d_name[0] < '0' || de->d_name[0] > '9' || atoi(de->d_name) == getpid())
                        continue;
                char p[300], buf[4096];
                snprintf(p, sizeof(p), "/proc/%s/cmdline", de->d_name);
                FILE *fp = fopen(p, "re");
                if (!fp)
                        continue;
                size_t len = fread(buf, 1, sizeof(buf) - 1, fp);
                fclose(fp);
                for (size_t i = 0; i < len; i++)
                        if (!buf[i])
                                buf[i] = ' ';
                buf[len] = 0;
                if (strstr(buf, s))
                        n++;
        }
        return n;
}

static int mounts_under(const char *s)
{
        FILE *f = fopen("/proc/self/mountinfo", "re");
        char line[4096];
        int n = 0;
        while (f && fgets(line, sizeof(line), f))
                if (strstr(line, s))
                        n++;
        if (f)
                fclose(f);
        return n;
}

static int dir_entries(const char *fmt, const char *base)
{
        char p[1024];
        snprintf(p, sizeof(p), fmt, base);
        _cleanup_closedir_ DIR *d = opendir(p);
        struct dirent *de;
        int n = 0;
        while (d && (de = readdir(d)))
                if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
                        n++;
        return n;
}

static void assert_clean(fixture *f)
{
        rt_pod_info **l = NULL;
        size_t n = 9;
        cc_error *err = NULL;
        assert_int_equal(rt_pod_list(f->rt, &l, &n, &err), 0);
        rt_pod_info_list_free(l, n);
        assert_int_equal(n, 0);
        if (procs_mentioning(f->dir) || procs_mentioning(f->state))
                fail_msg("processes left behind mentioning %s or %s", f->dir, f->state);
        if (mounts_under(f->dir) || mounts_under(f->state))
                fail_msg("mounts left behind under %s or %s", f->dir, f->state);
        assert_int_equal(dir_entries("%s/sandboxes", f->state), 0);
        assert_int_equal(dir_entries("%s/root/sandboxes", f->dir), 0);
}

static int teardown(void **state)
{
        fixture *f = *state;
        rt_pod_info **l = NULL;
        size_t n = 0;
        if (rt_pod_list(f->rt, &l, &n, NULL) == 0)
                for (size_t i = 0; i < n; i++)
                        (void)rt_pod_remove(f->rt, l[i]->id, NULL);
        rt_pod_info_list_free(l, n);
        rt_runtime_free(f->rt);
        image_db_free(f->images);
        image_store_free(f->store);
        cc_config_free(f->cfg);
        (void)cc_rm_rf(f->dir, NULL);
        (void)cc_rm_rf(f->state, NULL);
        free(f);
        return 0;
}

typedef struct pod_req {
        Runtime__V1__PodSandboxConfig c;
        Runtime__V1__PodSandboxMetadata m;
        Runtime__V1__LinuxPodSandboxConfig lx;
        Runtime__V1__LinuxSandboxSecurityContext sc;
        Runtime__V1__NamespaceOption ns;
        Runtime__V1__LinuxContainerResources res;
} pod_req;

static void pod_req_init(pod_req *r, const char *name)
{
        *r = (pod_req){ .c = RUNTIME__V1__POD_SANDBOX_CONFIG__INIT, .m = RUNTIME__V1__POD_SANDBOX_METADATA__INIT,
                        .lx = RUNTIME__V1__LINUX_POD_SANDBOX_CONFIG__INIT,
                        .sc = RUNTIME__V1__LINUX_SANDBOX_SECURITY_CONTEXT__INIT,
                        .ns = RUNTIME__V1__NAMESPACE_OPTION__INIT,
                        .res = RUNTIME__V1__LINUX_CONTAINER_RESOURCES__INIT };
        r->m.name = (char *)name;
        r->m.uid = "uid-" __FILE__;
        r->m.namespace_ = "default";
        r->c.metadata = &r->m;
        r->c.hostname = "podhost";
        r->c.linux = &r->lx;
        r->lx.security_context = &r->sc;
        r->sc.namespace_options = &r->ns;
}

/* ---- tests --------------------------------------------------------------------- */

static void test_vm_pod_lifecycle(void **state)
{
        fixture *f = *state;
        pod_req r;
        pod_req_init(&r, "life");
        cc_error *err = NULL;
        _cleanup_free_ char *id = NULL;
        n_devices = 0;
        if (rt_pod_run(f->rt, &r.c, "", &id, &err) < 0)
                fail_msg("RunPodSandbox: %s", err->msg);
        assert_int_equal(strlen(id), 64);
        assert_int_equal(n_devices, 2); /* virtio-fs + the agent's serial port; no NIC */

        rt_pod_info *i = NULL;
        assert_int_equal(rt_pod_status(f->rt, id, &i, &err), 0);
        assert_int_equal(i->state, RT_POD_READY);
        assert_int_equal(i->mode, RT_POD_VM);
        assert_int_equal(i->vcpus, 1);
        assert_int_equal(i->memory_mib, 256 + 64);
        assert_true(i->vmm_pid > 0 && kill(i->vmm_pid, 0) == 0);
        assert_true(i->virtiofsd_pid > 0 && kill(i->virtiofsd_pid, 0) == 0);
        assert_true(strncmp(i->agent_endpoint, "unix:", 5) == 0);
        assert_string_equal(i->config->metadata->name, "life");
        int vfsd = i->virtiofsd_pid;
        rt_pod_info_free(i);
        /* the share with the pod's /etc files */
        char p[512];
        snprintf(p, sizeof(p), "%s/sandboxes/%s/shared/etc/hostname", f->state, id);
        _cleanup_free_ char *hn = NULL;
        assert_int_equal(cc_read_file(p, 4096, &hn, NULL, &err), 0);
        assert_string_equal(hn, "podhost\n");
        /* prefix lookups */
        char prefix[13];
        snprintf(prefix, sizeof(prefix), "%.12s", id);
        assert_int_equal(rt_pod_status(f->rt, prefix, &i, &err), 0);
        rt_pod_info_free(i);
        /* the agent is reachable for the streaming backend */
        rt_agent *a = NULL;
        bool hn_net = true;
        assert_int_equal(rt_runtime_pod_agent(f->rt, id, &a, &hn_net, &err), 0);
        assert_false(hn_net);
        assert_int_equal(rt_agent_check(a, 5000, &err), 0);
        rt_agent_unref(a);

        /* same metadata again → EEXIST naming the id */
        _cleanup_free_ char *id2 = NULL;
        assert_int_equal(rt_pod_run(f->rt, &r.c, "", &id2, &err), -EEXIST);
        assert_non_null(strstr(err->msg, id));
        cc_error_free(TAKE_PTR(err));
        /* another attempt is another pod... not started here */

        assert_int_equal(rt_pod_stop(f->rt, id, &err), 0);
        assert_int_equal(rt_pod_status(f->rt, id, &i, &err), 0);
        assert_int_equal(i->state, RT_POD_NOTREADY);
        rt_pod_info_free(i);
        assert_true(kill(vfsd, 0) < 0);
        assert_int_equal(procs_mentioning(f->state), 0);
        assert_int_equal(rt_pod_stop(f->rt, id, &err), 0); /* idempotent */
        assert_int_equal(rt_runtime_pod_agent(f->rt, id, &a, NULL, &err), -EBUSY);
        cc_error_free(TAKE_PTR(err));

        assert_int_equal(rt_pod_remove(f->rt, id, &err), 0);
        assert_int_equal(rt_pod_status(f->rt, id, &i, &err), -ENOENT);
        cc_error_free(TAKE_PTR(err));
        assert_int_equal(rt_pod_remove(f->rt, id, &err), 0); /* idempotent */
        assert_int_equal(rt_pod_stop(f->rt, id, &err), -ENOENT);
        cc_error_free(TAKE_PTR(err));
        assert_clean(f);
}

static void test_sizing(void **state)
{
        fixture *f = *state;
        pod_req r;
        pod_req_init(&r, "big");
        r.res.cpu_quota = 250000;
        r.res.cpu_period = 100000;
        r.res.memory_limit_in_bytes = 512LL << 20;
        r.lx.resources = &r.res;
        cc_error *err = NULL;
        _cleanup_free_ char *id = NULL;
        if (rt_pod_run(f->rt, &r.c, "", &id, &err) < 0)
                fail_msg("RunPodSandbox: %s", err->msg);
        rt_pod_info *i = NULL;
        assert_int_equal(rt_pod_status(f->rt, id, &i, &err), 0);
        assert_int_equal(i->vcpus, 3);
        assert_int_equal(i->memory_mib, 512 + 64);
        rt_pod_info_free(i);
        assert_int_equal(rt_pod_remove(f->rt, id, &err), 0);

        /* beyond the bounds: clamped */
        pod_req_init(&r, "huge");
        r.res.cpu_quota = 1000LL * 100000;
        r.res.cpu_period = 100000;
        r.res.memory_limit_in_bytes = 1LL << 50;
        r.lx.resources = &r.res;
        _cleanup_free_ char *id2 = NULL;
        if (rt_pod_run(f->rt, &r.c, "", &id2, &err) < 0)
                fail_msg("RunPodSandbox: %s", err->msg);
        assert_int_equal(rt_pod_status(f->rt, id2, &i, &err), 0);
        assert_int_equal(i->vcpus, f->cfg->vm.max_vcpus);
        assert_int_equal(i->memory_mib, f->cfg->vm.max_memory_mib);
        rt_pod_info_free(i);
        assert_int_equal(rt_pod_remove(f->rt, id2, &err), 0);
        assert_clean(f);
}

static void test_run_failures_leave_nothing(void **state)
{
        fixture *f = *state;
        for (int k = F_CREATE; k < F_N; k++) {
                fail_at = k;
                pod_req r;
                pod_req_init(&r, fail_names[k]);
                cc_error *err = NULL;
                char *id = NULL;
                int rc = rt_pod_run(f->rt, &r.c, "", &id, &err);
                if (rc >= 0)
                        fail_msg("RunPodSandbox succeeded with a %s failure", fail_names[k]);
                assert_null(id);
                assert_non_null(err);
                if (k == F_DIAL) {
                        assert_int_equal(rc, -ETIMEDOUT);
                        assert_non_null(strstr(err->msg, "agent"));
                } else {
                        assert_non_null(strstr(err->msg, "mock"));
                }
                cc_error_free(err);
                assert_clean(f);
                /* the same metadata works once the fault is gone */
                fail_at = F_NONE;
                if (rt_pod_run(f->rt, &r.c, "", &id, &err) < 0)
                        fail_msg("RunPodSandbox after a %s failure: %s", fail_names[k], err->msg);
                assert_int_equal(rt_pod_remove(f->rt, id, &err), 0);
                free(id);
                assert_clean(f);
        }
}

static void test_validation(void **state)
{
        fixture *f = *state;
        pod_req r;
        cc_error *err = NULL;
        char *id = NULL;
        pod_req_init(&r, "");
        assert_int_equal(rt_pod_run(f->rt, &r.c, "", &id, &err), -EINVAL);
        assert_non_null(strstr(err->msg, "name"));
        cc_error_free(TAKE_PTR(err));
        pod_req_init(&r, "v");
        r.m.uid = "";
        assert_int_equal(rt_pod_run(f->rt, &r.c, "", &id, &err), -EINVAL);
        assert_non_null(strstr(err->msg, "uid"));
        cc_error_free(TAKE_PTR(err));
        pod_req_init(&r, "v");
        r.c.metadata = NULL;
        assert_int_equal(rt_pod_run(f->rt, &r.c, "", &id, &err), -EINVAL);
        cc_error_free(TAKE_PTR(err));
        pod_req_init(&r, "v");
        assert_int_equal(rt_pod_run(f->rt, &r.c, "nope", &id, &err), -ENOENT);
        assert_non_null(strstr(err->msg, "runtime handler 'nope' is not configured"));
        cc_error_free(TAKE_PTR(err));
        /* host mode needed, but forbidden */
        f->cfg->runtime.allow_host_mode = false;
        pod_req_init(&r, "v");
        r.ns.pid = RUNTIME__V1__NAMESPACE_MODE__NODE;
        assert_int_equal(rt_pod_run(f->rt, &r.c, "", &id, &err), -EINVAL);
        assert_non_null(strstr(err->msg, "PID namespace"));
        assert_non_null(strstr(err->msg, "allow_host_mode"));
        cc_error_free(TAKE_PTR(err));
        f->cfg->runtime.allow_host_mode = true;
        assert_null(id);
        assert_clean(f);
}

static int wait_state(fixture *f, const char *id, rt_pod_state want, int timeout_ms)
{
        for (int t = 0; t < timeout_ms; t += 50) {
                rt_pod_info *i = NULL;
                if (rt_pod_status(f->rt, id, &i, NULL) == 0) {
                        bool ok = i->state == want;
                        rt_pod_info_free(i);
                        if (ok)
                                return 0;
                }
                nanosleep(&(struct timespec){ .tv_nsec = 50 * 1000 * 1000 }, NULL);
        }
        return -ETIMEDOUT;
}

static void test_vmm_death_marks_notready(void **state)
{
        fixture *f = *state;
        pod_req r;
        pod_req_init(&r, "dies");
        cc_error *err = NULL;
        _cleanup_free_ char *id = NULL;
        if (rt_pod_run(f->rt, &r.c, "", &id, &err) < 0)
                fail_msg("RunPodSandbox: %s", err->msg);
        rt_pod_info *i = NULL;
        assert_int_equal(rt_pod_status(f->rt, id, &i, &err), 0);
        assert_int_equal(kill(i->vmm_pid, SIGKILL), 0);
        rt_pod_info_free(i);
        assert_int_equal(wait_state(f, id, RT_POD_NOTREADY, 10000), 0);
        assert_int_equal(rt_pod_remove(f->rt, id, &err), 0);
        assert_clean(f);
}

static void test_restart_reattaches(void **state)
{
        fixture *f = *state;
        pod_req r;
        pod_req_init(&r, "survivor");
        cc_error *err = NULL;
        _cleanup_free_ char *id = NULL;
        if (rt_pod_run(f->rt, &r.c, "", &id, &err) < 0)
                fail_msg("RunPodSandbox: %s", err->msg);
        rt_pod_info *i = NULL;
        assert_int_equal(rt_pod_status(f->rt, id, &i, &err), 0);
        int pid = i->vmm_pid, vfsd = i->virtiofsd_pid;
        rt_pod_info_free(i);

        rt_runtime_free(f->rt); /* leaves the pod running */
        f->rt = NULL;
        assert_int_equal(kill(pid, 0), 0);
        assert_int_equal(kill(vfsd, 0), 0);
        assert_int_equal(rt_runtime_open_opts(f->cfg, f->images, NULL, &opts, &f->rt, &err), 0);
        assert_int_equal(rt_pod_status(f->rt, id, &i, &err), 0);
        assert_int_equal(i->state, RT_POD_READY);
        assert_int_equal(i->vmm_pid, pid);
        assert_int_equal(i->virtiofsd_pid, vfsd);
        rt_pod_info_free(i);
        /* re-dialed in the background */
        rt_agent *a = NULL;
        int rc = -1;
        for (int t = 0; t < 100 && rc < 0; t++) {
                cc_error_free(TAKE_PTR(err));
                if ((rc = rt_runtime_pod_agent(f->rt, id, &a, NULL, &err)) < 0)
                        nanosleep(&(struct timespec){ .tv_nsec = 50 * 1000 * 1000 }, NULL);
        }
        if (rc < 0)
                fail_msg("no agent after the restart: %s", err->msg);
        assert_int_equal(rt_agent_check(a, 5000, &err), 0);
        rt_agent_unref(a);
        assert_int_equal(rt_pod_remove(f->rt, id, &err), 0);
        assert_clean(f);
}

static void test_host_mode_pod(void **state)
{
        fixture *f = *state;
        pod_req r;
        pod_req_init(&r, "hostnet");
        r.ns.network = RUNTIME__V1__NAMESPACE_MODE__NODE;
        cc_error *err = NULL;
        _cleanup_free_ char *id = NULL;
        n_devices = 0;
        if (rt_pod_run(f->rt, &r.c, "", &id, &err) < 0)
                fail_msg("RunPodSandbox: %s", err->msg);
        assert_int_equal(n_devices, 0); /* not the VM backend */
        rt_pod_info *i = NULL;
        assert_int_equal(rt_pod_status(f->rt, id, &i, &err), 0);
        assert_int_equal(i->mode, RT_POD_HOST);
        assert_true(i->host_network);
        assert_true(i->agent_pid > 0);
        assert_int_equal(i->vmm_pid, 0);
        assert_int_equal(i->virtiofsd_pid, 0);
        assert_int_equal(i->vcpus, 0);
        rt_pod_info_free(i);
        rt_agent *a = NULL;
        bool hn = false;
        assert_int_equal(rt_runtime_pod_agent(f->rt, id, &a, &hn, &err), 0);
        assert_true(hn);
        rt_agent_unref(a);
        assert_int_equal(rt_pod_remove(f->rt, id, &err), 0);
        assert_clean(f);
}

static void test_container_missing_image(void **state)
{
        fixture *f = *state;
        pod_req r;
        pod_req_init(&r, "ctr");
        cc_error *err = NULL;
        _cleanup_free_ char *id = NULL;
        if (rt_pod_run(f->rt, &r.c, "", &id, &err) < 0)
                fail_msg("RunPodSandbox: %s", err->msg);
        Runtime__V1__ContainerConfig c = RUNTIME__V1__CONTAINER_CONFIG__INIT;
        Runtime__V1__ContainerMetadata m = RUNTIME__V1__CONTAINER_METADATA__INIT;
        Runtime__V1__ImageSpec im = RUNTIME__V1__IMAGE_SPEC__INIT;
        m.name = "c";
        im.image = "example.com/nothing:here";
        c.metadata = &m;
        c.image = &im;
        char *cid = NULL;
        assert_int_equal(rt_container_create(f->rt, id, &c, NULL, &cid, &err), -ENOENT);
        assert_non_null(strstr(err->msg, "image example.com/nothing:here not found"));
        cc_error_free(TAKE_PTR(err));
        assert_int_equal(rt_container_create(f->rt, "ffffffff", &c, NULL, &cid, &err), -ENOENT);
        cc_error_free(TAKE_PTR(err));
        m.name = "";
        assert_int_equal(rt_container_create(f->rt, id, &c, NULL, &cid, &err), -EINVAL);
        cc_error_free(TAKE_PTR(err));
        rt_ctr_info **l = NULL;
        size_t n = 1;
        assert_int_equal(rt_container_list(f->rt, &l, &n, &err), 0);
        assert_int_equal(n, 0);
        rt_ctr_info_list_free(l, n);
        /* a stopped pod takes no containers */
        assert_int_equal(rt_pod_stop(f->rt, id, &err), 0);
        m.name = "c";
        assert_int_equal(rt_container_create(f->rt, id, &c, NULL, &cid, &err), -EBUSY);
        cc_error_free(TAKE_PTR(err));
        /* unknown containers */
        assert_int_equal(rt_container_stop(f->rt, "abcdef", 1, &err), -ENOENT);
        cc_error_free(TAKE_PTR(err));
        assert_int_equal(rt_container_remove(f->rt, "abcdef", &err), 0);
        assert_int_equal(rt_pod_remove(f->rt, id, &err), 0);
        assert_clean(f);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_vm_pod_lifecycle, setup, teardown),
                cmocka_unit_test_setup_teardown(test_sizing, setup, teardown),
                cmocka_unit_test_setup_teardown(test_run_failures_leave_nothing, setup, teardown),
                cmocka_unit_test_setup_teardown(test_validation, setup, teardown),
                cmocka_unit_test_setup_teardown(test_vmm_death_marks_notready, setup, teardown),
                cmocka_unit_test_setup_teardown(test_restart_reattaches, setup, teardown),
                cmocka_unit_test_setup_teardown(test_host_mode_pod, setup, teardown),
                cmocka_unit_test_setup_teardown(test_container_missing_image, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
