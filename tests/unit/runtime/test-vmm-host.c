/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for runtime/vmm-host.c with the real agent (agent/cocoon-agent
 * --host from the build tree) and the real client (tests/tools/agent-ctl):
 * start, Health.Check over the socket, save → free → load → stop, and that
 * a failed start or a stop leaves no process, socket, file or cgroup.
 * Needs root (cgroups); skipped without it. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/error.h"
#include "runtime/vmm.h"

#ifndef TEST_BUILDDIR
#define TEST_BUILDDIR "."
#endif
#define AGENT TEST_BUILDDIR "/agent/cocoon-agent"
#define AGENT_CTL TEST_BUILDDIR "/tests/tools/agent-ctl"

static char run_dir[64];
static char cg_parent[1100];
static char params[1200];

static int cgroup2_mount(char *out, size_t size)
{
        FILE *f = fopen("/proc/self/mountinfo", "r");
        char line[4096];
        int r = -1;
        while (f && fgets(line, sizeof(line), f)) {
                char point[1024];
                if (strstr(line, " - cgroup2 ") && sscanf(line, "%*d %*d %*s %*s %1023s", point) == 1) {
                        snprintf(out, size, "%s", point);
                        r = 0;
                        break;
                }
        }
        if (f)
                fclose(f);
        return r;
}

static int setup(void **state)
{
        char mnt[1024];
        if (cgroup2_mount(mnt, sizeof(mnt)) < 0)
                return -1;
        snprintf(run_dir, sizeof(run_dir), "/tmp/test-vmm-host-XXXXXX");
        if (!mkdtemp(run_dir))
                return -1;
        snprintf(cg_parent, sizeof(cg_parent), "%s/cocoon-test-%d", mnt, (int)getpid());
        snprintf(params, sizeof(params), "cgroup_parent=%s", cg_parent);
        return 0;
}

static bool dir_empty(const char *dir)
{
        DIR *d = opendir(dir);
        assert_non_null(d);
        struct dirent *de;
        int n = 0;
        while ((de = readdir(d)))
                if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
                        n++;
        closedir(d);
        return n == 0;
}

static int teardown(void **state)
{
        bool empty = dir_empty(run_dir);
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", run_dir);
        (void)system(cmd);
        /* the pod cgroups must be gone; the parent is ours to remove */
        int r = rmdir(cg_parent);
        bool cg_ok = r == 0 || errno == ENOENT;
        if (!empty || !cg_ok)
                fprintf(stderr, "left behind: %s%s\n", empty ? "" : "files in the run dir ", cg_ok ? "" : "cgroups");
        return empty && cg_ok ? 0 : -1;
}

static vmm_config config(const char *id, const char *binary)
{
        return (vmm_config){ .id = id, .run_dir = run_dir, .binary = binary, .kernel_params = params };
}

static int health(const char *sock)
{
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "'%s' -s '%s' -t 5000 health >/dev/null", AGENT_CTL, sock);
        int st = system(cmd);
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static bool in_cgroup(int pid, const char *suffix)
{
        char p[64], line[1024];
        snprintf(p, sizeof(p), "/proc/%d/cgroup", pid);
        FILE *f = fopen(p, "r");
        bool found = false;
        while (f && fgets(line, sizeof(line), f))
                if (strncmp(line, "0::", 3) == 0) {
                        line[strcspn(line, "\n")] = 0;
                        size_t l = strlen(line), s = strlen(suffix);
                        found = l >= s && strcmp(line + l - s, suffix) == 0;
                }
        if (f)
                fclose(f);
        return found;
}

static void test_lifecycle(void **state)
{
        if (access(AGENT, X_OK) < 0 || access(AGENT_CTL, X_OK) < 0)
                skip();
        cc_error *err = NULL;
        vmm_config c = config("pod1", AGENT);
        vmm *v = NULL;
        assert_int_equal(vmm_host_ops.probe(&c, &err), 0);
        assert_int_equal(vmm_create(&vmm_host_ops, &c, &v, &err), 0);
        vmm_device fs = { .kind = VMM_DEV_FS, .fs = { .tag = "share", .socket_path = "/x" } };
        vmm_device net = { .kind = VMM_DEV_NET, .net = { .tap_fd = 0 } };
        assert_int_equal(vmm_add_device(v, &fs, &err), 0);
        assert_int_equal(vmm_add_device(v, &net, &err), -EOPNOTSUPP);
        cc_error_free(err);
        err = NULL;
        assert_int_equal(vmm_pause(v, &err), -EOPNOTSUPP);
        cc_error_free(err);
        err = NULL;

        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_int_equal(vmm_start(v, &err), 0);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        assert_null(err);
        fprintf(stderr, "host agent start to listening socket: %.1f ms\n",
                (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
        vmm_endpoint ep;
        assert_int_equal(vmm_agent_endpoint(v, &ep, &err), 0);
        assert_int_equal(ep.kind, VMM_EP_UNIX);
        char sock[128];
        snprintf(sock, sizeof(sock), "%s/agent.sock", run_dir);
        assert_string_equal(ep.path, sock);
        int pid = vmm_host_ops.pid(v);
        assert_true(pid > 1);
        assert_true(vmm_host_ops.alive(v));
        assert_true(vmm_host_ops.exit_fd(v) >= 0);
        assert_true(in_cgroup(pid, "/pod1/agent"));
        assert_int_equal(getsid(pid), pid); /* own session: outlives us */
        assert_int_equal(health(sock), 0);

        /* cocoond restarts: save, forget, re-attach */
        json_object *saved = NULL;
        assert_int_equal(vmm_host_ops.save(v, &saved, &err), 0);
        vmm_free(v);
        v = NULL;
        assert_int_equal(kill(pid, 0), 0);
        assert_int_equal(vmm_host_ops.load(&c, saved, &v, &err), 0);
        json_object_put(saved);
        assert_true(vmm_host_ops.alive(v));
        assert_int_equal(vmm_host_ops.pid(v), pid);
        assert_int_equal(health(sock), 0);

        assert_int_equal(vmm_stop(v, 3000, &err), 0);
        assert_null(err);
        (void)waitpid(pid, NULL, 0); /* our child here (a restarted cocoond's would not be) */
        assert_int_equal(kill(pid, 0), -1);
        assert_false(vmm_host_ops.alive(v));
        assert_int_equal(access(sock, F_OK), -1);
        char cg[400];
        snprintf(cg, sizeof(cg), "%s/pod1", cg_parent);
        assert_int_equal(access(cg, F_OK), -1);
        assert_int_equal(vmm_stop(v, 3000, &err), 0); /* idempotent */
        vmm_free(v);
}

/* Containers the agent started (here: a process the test puts in the pod's
 * cgroup) do not outlive stop, even when the agent is killed hard. */
static void test_stop_kills_cgroup(void **state)
{
        if (access(AGENT, X_OK) < 0)
                skip();
        cc_error *err = NULL;
        vmm_config c = config("pod2", AGENT);
        vmm *v = NULL;
        assert_int_equal(vmm_create(&vmm_host_ops, &c, &v, &err), 0);
        assert_int_equal(vmm_start(v, &err), 0);
        pid_t child = fork();
        if (child == 0) {
                execl("/bin/sleep", "sleep", "1000", (char *)NULL);
                _exit(127);
        }
        char procs[400], buf[32];
        snprintf(procs, sizeof(procs), "%s/pod2/c1", cg_parent);
        assert_int_equal(mkdir(procs, 0755), 0);
        strcat(procs, "/cgroup.procs");
        FILE *f = fopen(procs, "w");
        assert_non_null(f);
        snprintf(buf, sizeof(buf), "%d", (int)child);
        fputs(buf, f);
        assert_int_equal(fclose(f), 0);
        int pid = vmm_host_ops.pid(v);
        kill(pid, SIGKILL); /* the agent dies without ending anything */
        assert_int_equal(vmm_stop(v, 1000, &err), 0);
        int st;
        assert_int_equal(waitpid(child, &st, 0), child);
        assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
        char cg[400];
        snprintf(cg, sizeof(cg), "%s/pod2", cg_parent);
        assert_int_equal(access(cg, F_OK), -1);
        vmm_free(v);
}

static void test_missing_binary(void **state)
{
        cc_error *err = NULL;
        vmm_config c = config("pod3", "/nonexistent/cocoon-agent");
        vmm *v = NULL;
        assert_int_equal(vmm_host_ops.probe(&c, &err), -ENOENT);
        assert_non_null(strstr(err->msg, "/nonexistent/cocoon-agent"));
        cc_error_free(err);
        err = NULL;
        assert_int_equal(vmm_create(&vmm_host_ops, &c, &v, &err), 0);
        assert_int_equal(vmm_start(v, &err), -ENOENT);
        assert_non_null(strstr(err->msg, "/nonexistent/cocoon-agent"));
        cc_error_free(err);
        err = NULL;
        assert_true(dir_empty(run_dir));
        assert_int_equal(vmm_host_ops.pid(v), 0);
        vmm_free(v);
}

/* A binary that exits at once: the start fails with its last words. */
static void test_agent_exits(void **state)
{
        char script[128];
        snprintf(script, sizeof(script), "%s.sh", run_dir);
        FILE *f = fopen(script, "w");
        assert_non_null(f);
        fputs("#!/bin/sh\necho 'cannot start: broken on purpose' >&2\nexit 1\n", f);
        fclose(f);
        chmod(script, 0755);
        cc_error *err = NULL;
        vmm_config c = config("pod4", script);
        vmm *v = NULL;
        assert_int_equal(vmm_create(&vmm_host_ops, &c, &v, &err), 0);
        int r = vmm_start(v, &err);
        unlink(script);
        assert_int_equal(r, -EIO);
        assert_non_null(strstr(err->msg, "broken on purpose"));
        cc_error_free(err);
        assert_true(dir_empty(run_dir));
        vmm_free(v);
}

static void test_bad_input(void **state)
{
        cc_error *err = NULL;
        vmm *v = NULL;
        vmm_config c = config("bad/id", AGENT);
        assert_int_equal(vmm_create(&vmm_host_ops, &c, &v, &err), -EINVAL);
        cc_error_free(err);
        err = NULL;
        c = config("pod5", AGENT);
        c.kernel_params = "console=ttyS0";
        assert_int_equal(vmm_create(&vmm_host_ops, &c, &v, &err), -EINVAL);
        assert_non_null(strstr(err->msg, "console"));
        cc_error_free(err);
        err = NULL;
        c = config("pod5", AGENT);
        assert_int_equal(vmm_create(&vmm_host_ops, &c, &v, &err), 0);
        json_object *o = NULL;
        assert_int_equal(vmm_host_ops.save(v, &o, &err), -ESRCH);
        cc_error_free(err);
        err = NULL;
        vmm_free(v);
        v = NULL;
        o = json_tokener_parse("{\"version\":1,\"backend\":\"qemu\"}");
        assert_true(vmm_host_ops.load(&c, o, &v, &err) < 0);
        assert_null(v);
        cc_error_free(err);
        err = NULL;
        json_object_put(o);
        /* a record of an agent that is gone: loads, not alive, stop cleans */
        char rec[600];
        snprintf(rec, sizeof(rec),
                 "{\"version\":1,\"backend\":\"host\",\"id\":\"pod5\",\"pid\":%d,\"start_time\":1,"
                 "\"run_dir\":\"%s\",\"binary\":\"%s\",\"cgroup\":\"%s/pod5\"}",
                 (int)getpid(), run_dir, AGENT, cg_parent);
        o = json_tokener_parse(rec);
        assert_non_null(o);
        assert_int_equal(vmm_host_ops.load(&c, o, &v, &err), 0);
        json_object_put(o);
        assert_false(vmm_host_ops.alive(v));
        assert_int_equal(vmm_stop(v, 100, &err), 0);
        assert_int_equal(kill(getpid(), 0), 0); /* not us, of course */
        vmm_free(v);
}

/* vmm_kernel_features: parameter names found as whole NUL-terminated
 * strings; the answer follows the file when it changes. */
static void test_kernel_features(void **state)
{
        (void)state;
        char path[] = "/tmp/test-kfeat-XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        static const char a[] = "junk\0virtio_mmio.device\0xlapic_timer_khz\0keep_initmem_not\0";
        assert_int_equal(write(fd, a, sizeof(a)), (ssize_t)sizeof(a));
        assert_int_equal(vmm_kernel_features(path), VMM_KERNEL_MMIO_CMDLINE);
        /* a different size (and mtime): scanned again */
        static const char b[] = "\0lapic_timer_khz\0keep_initmem\0";
        assert_int_equal(write(fd, b, sizeof(b)), (ssize_t)sizeof(b));
        close(fd);
        assert_int_equal(vmm_kernel_features(path),
                         VMM_KERNEL_MMIO_CMDLINE | VMM_KERNEL_LAPIC_KHZ | VMM_KERNEL_KEEP_INITMEM);
        unlink(path);
        assert_int_equal(vmm_kernel_features(path), 0);
        assert_int_equal(vmm_kernel_features("/nonexistent/vmlinux"), 0);
}

int main(void)
{
        if (geteuid() != 0) {
                fprintf(stderr, "test-vmm-host: needs root; skipped\n");
                return 77;
        }
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_lifecycle, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stop_kills_cgroup, setup, teardown),
                cmocka_unit_test_setup_teardown(test_missing_binary, setup, teardown),
                cmocka_unit_test_setup_teardown(test_agent_exits, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
                cmocka_unit_test(test_kernel_features),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
