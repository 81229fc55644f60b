/* SPDX-License-Identifier: Apache-2.0 */
/* The agent client against the real cocoon-agent in host mode (busybox
 * rootfs in a temp dir, containers in a cgroup v2 subtree this test creates
 * and removes; needs root, skips otherwise), plus the dialer's timeout and
 * cancel paths and a fake agent that answers garbage. The output pump
 * (runtime/ctr-io.c) is driven here too, end to end: container output into
 * a CRI log file, and across an agent reconnect. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/ttrpc.h"
#include "runtime/agent.h"
#include "runtime/ctr-io.h"
#include "agent.pb-c.h"
#include "health.pb-c.h"
#include "oci.pb-c.h"

#ifndef AGENT_BUILDDIR
#define AGENT_BUILDDIR "."
#endif
#define T 20000

static char tmpdir[64], rootfs[100], sock_path[100], cg_root[640], agent_log[300];
static bool can_run, have_pids;
static pid_t agent_pid;
static rt_agent *ag;

static uint64_t mono_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int run_sh(const char *fmt, ...)
{
        char cmd[2048];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(cmd, sizeof(cmd), fmt, ap);
        va_end(ap);
        return system(cmd);
}

static bool find_cgroup2(char *out, size_t size)
{
        FILE *f = fopen("/proc/self/mounts", "re");
        char dev[256], mnt[512], type[64];
        bool found = false;
        while (f && fscanf(f, "%255s %511s %63s %*[^\n]", dev, mnt, type) == 3)
                if (strcmp(type, "cgroup2") == 0) {
                        snprintf(out, size, "%s", mnt);
                        found = true;
                        break;
                }
        if (f)
                fclose(f);
        return found;
}

static vmm_endpoint unix_ep(const char *path)
{
        vmm_endpoint ep = { .kind = VMM_EP_UNIX };
        snprintf(ep.path, sizeof(ep.path), "%s", path);
        return ep;
}

static void expect_ok(int r, cc_error *err)
{
        if (r < 0)
                fail_msg("%s", err ? err->msg : "failed");
}

#define OK(expr)                                                \
        do {                                                    \
                cc_error *_e = NULL;                            \
                cc_error **ret_err = &_e;                       \
                int _r = (int)(expr);                           \
                expect_ok(_r, _e);                              \
                cc_error_free(_e);                              \
        } while (0)

static int group_setup(void **state)
{
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/cocoon-agent-client-XXXXXX");
        if (!mkdtemp(tmpdir))
                return -1;
        if (geteuid() != 0) {
                fprintf(stderr, "SKIP: the real-agent tests need root\n");
                return 0;
        }
        if (access("/bin/busybox", X_OK) != 0) {
                fprintf(stderr, "SKIP: /bin/busybox (busybox-static) missing\n");
                return 0;
        }
        char cg2[512];
        if (!find_cgroup2(cg2, sizeof(cg2))) {
                fprintf(stderr, "SKIP: no cgroup2 mount on this host\n");
                return 0;
        }
        snprintf(rootfs, sizeof(rootfs), "%s/rootfs", tmpdir);
        snprintf(sock_path, sizeof(sock_path), "%s/agent.sock", tmpdir);
        snprintf(agent_log, sizeof(agent_log), "%s/agent.log", tmpdir);
        if (run_sh("set -e; mkdir -p %s; cd %s; mkdir -p bin etc proc sys dev tmp root; "
                   "cp /bin/busybox bin/busybox; chroot . /bin/busybox --install -s /bin; "
                   "printf 'root:x:0:0:root:/root:/bin/sh\\n' > etc/passwd; printf 'root:x:0:\\n' > etc/group",
                   rootfs, rootfs) != 0)
                return -1;
        snprintf(cg_root, sizeof(cg_root), "%s/cocoon-agent-client-test-%d", cg2, (int)getpid());
        if (mkdir(cg_root, 0755) < 0)
                return -1;
        run_sh("echo +memory +pids +cpu > %s/cgroup.subtree_control 2>/dev/null", cg2);
        char ctl[600];
        snprintf(ctl, sizeof(ctl), "%s/cgroup.controllers", cg2);
        FILE *cf = fopen(ctl, "re");
        char line[512] = "";
        if (cf) {
                if (!fgets(line, sizeof(line), cf))
                        line[0] = 0;
                fclose(cf);
        }
        have_pids = strstr(line, "pids") != NULL;
        if (!have_pids)
                fprintf(stderr, "NOTE: cgroup2 at %s has no pids controller (hybrid host?): pid count not checked\n",
                        cg2);

        agent_pid = fork();
        if (agent_pid == 0) {
                if (unshare(CLONE_NEWNET) < 0) /* keep the network RPCs off the host */
                        _exit(126);
                int fd = open(agent_log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
                dup2(fd, 2);
                char sd[300];
                snprintf(sd, sizeof(sd), "%s/state", tmpdir);
                execl(AGENT_BUILDDIR "/agent/cocoon-agent", "cocoon-agent", "--host", "--listen", sock_path,
                      "--state-dir", sd, "--cgroup-root", cg_root, "--log-level", "debug", (char *)NULL);
                _exit(127);
        }
        /* The dialer retries until the agent listens and answers. */
        vmm_endpoint ep = unix_ep(sock_path);
        cc_error *err = NULL;
        if (rt_agent_dial(&ep, 10000, -1, &ag, &err) < 0) {
                fprintf(stderr, "dial: %s\n", err->msg);
                cc_error_free(err);
                return -1;
        }
        can_run = true;
        return 0;
}

static int group_teardown(void **state)
{
        rt_agent_unref(ag);
        if (agent_pid > 0) {
                kill(agent_pid, SIGTERM);
                waitpid(agent_pid, NULL, 0);
        }
        if (getenv("AGENT_TEST_LOG") && agent_log[0])
                run_sh("cat %s >&2", agent_log);
        if (cg_root[0]) {
                run_sh("find %s -depth -type d -exec rmdir {} + 2>/dev/null", cg_root);
                rmdir(cg_root);
        }
        if (tmpdir[0])
                run_sh("rm -rf %s", tmpdir);
        return 0;
}

#define REQUIRE_AGENT()                 \
        do {                            \
                if (!can_run)           \
                        skip();         \
        } while (0)

/* ---- a spec for busybox sh -c SCRIPT --------------------------------------- */

typedef struct built {
        Grpc__Spec spec;
        Grpc__Process proc;
        Grpc__Root root;
        Grpc__User user;
        Grpc__Linux linux_;
        Grpc__Mount m[3], *mp[3];
        Grpc__LinuxNamespace ns[4], *nsp[4];
        char *env[1];
        char *args[3];
} built;

static void build_process(Grpc__Process *proc, Grpc__User *user, char **args, char **env, const char *script,
                          bool tty)
{
        grpc__process__init(proc);
        args[0] = (char *)"/bin/sh";
        args[1] = (char *)"-c";
        args[2] = (char *)script;
        proc->args = args;
        proc->n_args = 3;
        env[0] = (char *)"PATH=/bin:/sbin";
        proc->env = env;
        proc->n_env = 1;
        proc->cwd = (char *)"/";
        proc->terminal = tty;
        grpc__user__init(user);
        proc->user = user;
}

static void build_spec(built *b, const char *script, bool tty)
{
        memset(b, 0, sizeof(*b));
        grpc__spec__init(&b->spec);
        build_process(&b->proc, &b->user, b->args, b->env, script, tty);
        grpc__root__init(&b->root);
        b->root.path = rootfs;
        b->spec.root = &b->root;
        b->spec.process = &b->proc;
        b->spec.hostname = (char *)"ctr";
        static const char *const mnt[][3] = {
                { "/proc", "proc", "proc" }, { "/dev", "tmpfs", "tmpfs" }, { "/dev/pts", "devpts", "devpts" },
        };
        for (int i = 0; i < 3; i++) {
                grpc__mount__init(&b->m[i]);
                b->m[i].destination = (char *)mnt[i][0];
                b->m[i].source = (char *)mnt[i][1];
                b->m[i].type = (char *)mnt[i][2];
                b->mp[i] = &b->m[i];
        }
        b->spec.mounts = b->mp;
        b->spec.n_mounts = 3;
        grpc__linux__init(&b->linux_);
        static const char *const nst[] = { "pid", "mount", "ipc", "uts" };
        for (int i = 0; i < 4; i++) {
                grpc__linux_namespace__init(&b->ns[i]);
                b->ns[i].type = (char *)nst[i];
                b->nsp[i] = &b->ns[i];
        }
        b->linux_.namespaces = b->nsp;
        b->linux_.n_namespaces = 4;
        b->spec.linux = &b->linux_;
}

static void run_ctr(const char *id, const char *script, bool tty)
{
        built b;
        build_spec(&b, script, tty);
        OK(rt_agent_create_container(ag, id, &b.spec, NULL, 0, false, T, ret_err));
        OK(rt_agent_start_container(ag, id, T, ret_err));
}

static size_t read_all_stream(rt_agent *a, const char *id, const char *exec, rt_agent_stream s, char *buf,
                              size_t size)
{
        size_t got = 0;
        for (;;) {
                cc_error *err = NULL;
                ssize_t n = rt_agent_read(a, id, exec, s, buf + got, size - 1 - got, T, &err);
                expect_ok((int)n, err);
                if (n == 0)
                        break;
                got += (size_t)n;
                assert_true(got < size - 1);
        }
        buf[got] = 0;
        return got;
}

static char *slurp(const char *path)
{
        FILE *f = fopen(path, "re");
        if (!f)
                return strdup("");
        char *buf = calloc(1, 1 << 20);
        size_t n = fread(buf, 1, (1 << 20) - 1, f);
        buf[n] = 0;
        fclose(f);
        return buf;
}

/* Waits (bounded) until the file contains needle. */
static bool wait_file_contains(const char *path, const char *needle, int timeout_ms)
{
        uint64_t end = mono_ms() + (uint64_t)timeout_ms;
        for (;;) {
                char *s = slurp(path);
                bool found = strstr(s, needle) != NULL;
                free(s);
                if (found)
                        return true;
                if (mono_ms() >= end)
                        return false;
                poll(NULL, 0, 20);
        }
}

/* ---- health and sandbox ------------------------------------------------------ */

static void test_check_version_sandbox(void **state)
{
        REQUIRE_AGENT();
        OK(rt_agent_check(ag, 0, ret_err));
        char *v = NULL;
        OK(rt_agent_version(ag, 0, &v, ret_err));
        assert_string_equal(v, "0.1.0");
        free(v);

        static const char *const dns[] = { "nameserver 10.0.0.10", "search a.svc b.svc", NULL };
        static const char *const opts[] = { "nosuid", NULL };
        rt_agent_storage st = { .driver = "ephemeral", .fstype = "tmpfs", .options = opts,
                                .mount_point = "/run/cocoon/shm" };
        rt_agent_sandbox sb = { .sandbox_id = "pod1", .hostname = "podhost", .dns = dns, .storages = &st,
                                .n_storages = 1, .sandbox_pidns = false };
        OK(rt_agent_create_sandbox(ag, &sb, 0, ret_err));
        cc_error *err = NULL;
        assert_int_equal(rt_agent_create_sandbox(ag, &sb, 0, &err), -EEXIST);
        assert_non_null(strstr(err->msg, "already exists"));
        cc_error_free(err);
        err = NULL;
        /* bad input never reaches the agent */
        rt_agent_storage bad = { .driver = "ephemeral", .mount_point = "relative" };
        rt_agent_sandbox sb2 = { .sandbox_id = "pod1", .storages = &bad, .n_storages = 1 };
        assert_int_equal(rt_agent_create_sandbox(ag, &sb2, 0, &err), -EINVAL);
        cc_error_free(err);
}

/* ---- containers, processes, output via the pump --------------------------------- */

static void test_container_output_to_cri_log(void **state)
{
        REQUIRE_AGENT();
        char log_path[200];
        snprintf(log_path, sizeof(log_path), "%s/c1.log", tmpdir);
        built b;
        build_spec(&b, "echo hello; echo oops >&2; printf partial; exit 3", false);
        OK(rt_agent_create_container(ag, "c1", &b.spec, NULL, 0, false, T, ret_err));
        rt_ctr_io *io = NULL;
        OK(rt_ctr_io_start(ag, "c1", log_path, false, &io, ret_err));
        OK(rt_agent_start_container(ag, "c1", T, ret_err));
        int st = -1;
        OK(rt_agent_wait(ag, "c1", NULL, 0, &st, ret_err));
        assert_int_equal(st, 3);
        OK(rt_ctr_io_wait_drained(io, T, ret_err));
        assert_true(rt_ctr_io_drained(io));
        rt_ctr_io_free(io);

        /* CRI format: RFC 3339 nano timestamp, stream, P/F tag, content */
        char *s = slurp(log_path);
        char *lines[8] = { 0 };
        int n = 0;
        for (char *save = NULL, *l = strtok_r(s, "\n", &save); l && n < 8; l = strtok_r(NULL, "\n", &save))
                lines[n++] = l;
        assert_int_equal(n, 3);
        bool seen_out = false, seen_err = false, seen_partial = false;
        for (int i = 0; i < n; i++) {
                int y, mo, d, h, mi, se;
                char frac[16], rest[256];
                assert_int_equal(sscanf(lines[i], "%4d-%2d-%2dT%2d:%2d:%2d.%9[0-9]Z %255[^\n]", &y, &mo, &d, &h, &mi,
                                        &se, frac, rest),
                                 8);
                assert_int_equal(strlen(frac), 9);
                if (strcmp(rest, "stdout F hello") == 0)
                        seen_out = true;
                else if (strcmp(rest, "stderr F oops") == 0)
                        seen_err = true;
                else if (strcmp(rest, "stdout P partial") == 0)
                        seen_partial = true;
                else
                        fail_msg("unexpected log line '%s'", lines[i]);
        }
        assert_true(seen_out && seen_err && seen_partial);
        free(s);
        OK(rt_agent_remove_container(ag, "c1", 5, 0, ret_err));
        cc_error *err = NULL;
        assert_int_equal(rt_agent_start_container(ag, "c1", T, &err), -ENOENT);
        cc_error_free(err);
}

static void test_exec_signal_stdin_stats(void **state)
{
        REQUIRE_AGENT();
        run_ctr("c2", "exec sleep 1000", false);

        /* exec + exit code */
        Grpc__Process p;
        Grpc__User u;
        char *args[3], *env[1];
        build_process(&p, &u, args, env, "echo in-exec; exit 7", false);
        OK(rt_agent_exec(ag, "c2", "e1", &p, 0, ret_err));
        char buf[4096];
        read_all_stream(ag, "c2", "e1", RT_AGENT_STDOUT, buf, sizeof(buf));
        assert_string_equal(buf, "in-exec\n");
        int st = -1;
        OK(rt_agent_wait(ag, "c2", "e1", T, &st, ret_err));
        assert_int_equal(st, 7);
        cc_error *err = NULL;
        assert_int_equal(rt_agent_exec(ag, "c2", "", &p, 0, &err), -EINVAL); /* exec id required */
        cc_error_free(err);
        err = NULL;

        /* stdin: write, close, echo back */
        build_process(&p, &u, args, env, "read x; echo got-$x", false);
        OK(rt_agent_exec(ag, "c2", "e2", &p, 0, ret_err));
        OK(rt_agent_write_stdin(ag, "c2", "e2", "abc\n", 4, 0, ret_err));
        OK(rt_agent_close_stdin(ag, "c2", "e2", 0, ret_err));
        read_all_stream(ag, "c2", "e2", RT_AGENT_STDOUT, buf, sizeof(buf));
        assert_string_equal(buf, "got-abc\n");
        OK(rt_agent_wait(ag, "c2", "e2", T, &st, ret_err));
        assert_int_equal(st, 0);

        /* a pipe process has no terminal */
        build_process(&p, &u, args, env, "exec sleep 100", false);
        OK(rt_agent_exec(ag, "c2", "e3", &p, 0, ret_err));
        assert_int_equal(rt_agent_tty_resize(ag, "c2", "e3", 40, 120, 0, &err), -EBUSY);
        cc_error_free(err);
        err = NULL;
        /* signal one exec */
        OK(rt_agent_signal(ag, "c2", "e3", SIGTERM, false, 0, ret_err));
        OK(rt_agent_wait(ag, "c2", "e3", T, &st, ret_err));
        assert_int_equal(st, 128 + SIGTERM);

        /* stats */
        rt_agent_stats stats = { 0 };
        OK(rt_agent_stats_container(ag, "c2", 0, &stats, ret_err));
        if (have_pids)
                assert_true(stats.pids >= 1);
        assert_true(stats.memory_working_set <= stats.memory_usage);

        /* pause / resume */
        OK(rt_agent_pause_container(ag, "c2", 0, ret_err));
        OK(rt_agent_resume_container(ag, "c2", 0, ret_err));

        /* no OOM: the wait times out */
        char *oom = NULL;
        uint64_t t0 = mono_ms();
        assert_int_equal(rt_agent_get_oom_event(ag, 300, &oom, &err), -ETIMEDOUT);
        assert_true(mono_ms() - t0 >= 250);
        assert_null(oom);
        cc_error_free(err);
        err = NULL;

        /* SIGKILL to the whole container */
        OK(rt_agent_signal(ag, "c2", NULL, SIGKILL, true, 0, ret_err));
        OK(rt_agent_wait(ag, "c2", NULL, T, &st, ret_err));
        assert_int_equal(st, 128 + SIGKILL);
        assert_int_equal(rt_agent_signal(ag, "c2", NULL, 0, false, 0, &err), -EINVAL);
        cc_error_free(err);
        OK(rt_agent_remove_container(ag, "c2", 5, 0, ret_err));
}

/* The pump survives losing the agent connection: output the container
 * produces while nobody is connected stays with the agent and reaches the
 * log after rt_ctr_io_set_agent with a new connection, once. */
static void test_pump_survives_reconnect(void **state)
{
        REQUIRE_AGENT();
        char log_path[200];
        snprintf(log_path, sizeof(log_path), "%s/c3.log", tmpdir);
        built b;
        build_spec(&b, "echo line-A; read x; echo line-B; echo err-B >&2; read y; echo line-C", false);
        OK(rt_agent_create_container(ag, "c3", &b.spec, NULL, 0, false, T, ret_err));
        rt_ctr_io *io = NULL;
        OK(rt_ctr_io_start(ag, "c3", log_path, false, &io, ret_err));
        OK(rt_agent_start_container(ag, "c3", T, ret_err));
        assert_true(wait_file_contains(log_path, "stdout F line-A", T));

        /* Lose the connection (the pump's reads fail), reconnect (the
         * host-mode agent serves one connection at a time). */
        rt_agent_close(ag);
        assert_true(rt_agent_is_closed(ag));
        struct pollfd pf = { .fd = rt_agent_closed_fd(ag), .events = POLLIN };
        assert_int_equal(poll(&pf, 1, 1000), 1);
        rt_agent *old = ag;
        vmm_endpoint ep = unix_ep(sock_path);
        OK(rt_agent_dial(&ep, 10000, -1, &ag, ret_err));
        rt_agent_unref(old);
        /* Output produced while the pump has no connection. */
        OK(rt_agent_write_stdin(ag, "c3", NULL, "go\n", 3, 0, ret_err));
        poll(NULL, 0, 300);
        char *s = slurp(log_path);
        assert_null(strstr(s, "line-B"));
        free(s);
        rt_ctr_io_set_agent(io, ag);
        assert_true(wait_file_contains(log_path, "stdout F line-B", T));
        assert_true(wait_file_contains(log_path, "stderr F err-B", T));
        OK(rt_agent_write_stdin(ag, "c3", NULL, "go\n", 3, 0, ret_err));
        int st = -1;
        OK(rt_agent_wait(ag, "c3", NULL, 0, &st, ret_err));
        assert_int_equal(st, 0);
        OK(rt_ctr_io_wait_drained(io, T, ret_err));
        rt_ctr_io_free(io);
        s = slurp(log_path);
        const char *want[] = { "line-A", "line-B", "err-B", "line-C" };
        for (size_t i = 0; i < 4; i++) {
                char *first = strstr(s, want[i]);
                assert_non_null(first);
                assert_null(strstr(first + 1, want[i])); /* exactly once */
        }
        free(s);
        OK(rt_agent_remove_container(ag, "c3", 5, 0, ret_err));
}

/* A pump with a tty reads one stream; output reaches attached sinks. */
typedef struct sink_buf {
        pthread_mutex_t mu;
        char data[4096];
        size_t len;
        int calls;
} sink_buf;

static int sink_fn(void *ud, rt_agent_stream s, const void *buf, size_t len)
{
        sink_buf *b = ud;
        pthread_mutex_lock(&b->mu);
        if (s == RT_AGENT_STDOUT && b->len + len < sizeof(b->data)) {
                memcpy(b->data + b->len, buf, len);
                b->len += len;
        }
        b->calls++;
        pthread_mutex_unlock(&b->mu);
        return 0;
}

static void test_pump_tty_and_sink(void **state)
{
        REQUIRE_AGENT();
        built b;
        build_spec(&b, "read x; echo tty-$x; exit 0", true);
        OK(rt_agent_create_container(ag, "c4", &b.spec, NULL, 0, false, T, ret_err));
        rt_ctr_io *io = NULL;
        OK(rt_ctr_io_start(ag, "c4", NULL, true, &io, ret_err));
        sink_buf sb = { .mu = PTHREAD_MUTEX_INITIALIZER };
        cc_error *err = NULL;
        int h = rt_ctr_io_attach(io, sink_fn, &sb, &err);
        assert_true(h > 0);
        OK(rt_agent_start_container(ag, "c4", T, ret_err));
        OK(rt_agent_tty_resize(ag, "c4", NULL, 30, 100, 0, ret_err));
        OK(rt_agent_write_stdin(ag, "c4", NULL, "ok\n", 3, 0, ret_err));
        OK(rt_ctr_io_wait_drained(io, T, ret_err));
        rt_ctr_io_detach(io, h);
        rt_ctr_io_free(io);
        sb.data[sb.len] = 0;
        assert_non_null(strstr(sb.data, "tty-ok\r\n")); /* a terminal's line ending */
        int st = -1;
        OK(rt_agent_wait(ag, "c4", NULL, T, &st, ret_err));
        assert_int_equal(st, 0);
        OK(rt_agent_remove_container(ag, "c4", 5, 0, ret_err));
}

static void test_network_rpcs(void **state)
{
        REQUIRE_AGENT();
        /* The agent runs in its own network namespace: only lo exists. */
        rt_agent_ip ip = { .family = AF_INET, .addr = "10.1.2.3", .prefixlen = 24 };
        rt_agent_iface ifc = { .name = "lo", .mac = "", .mtu = 1500, .ips = &ip, .n_ips = 1 };
        OK(rt_agent_update_interface(ag, &ifc, 0, ret_err));
        rt_agent_route rt = { .family = AF_INET, .dest = "10.9.0.0/16", .gateway = "10.1.2.1", .device = "lo" };
        OK(rt_agent_update_routes(ag, &rt, 1, 0, ret_err));
        rt_agent_neigh nb = { .ip = "10.1.2.7", .lladdr = "02:00:00:00:00:07", .device = "lo" };
        cc_error *err = NULL;
        /* lo has no ARP; what matters is that the request was well-formed
         * enough to reach the kernel (not INVALID_ARGUMENT) */
        int r = rt_agent_add_arp_neighbors(ag, &nb, 1, 0, &err);
        assert_true(r != -EINVAL);
        cc_error_free(err);
        err = NULL;
        rt_agent_iface none = { .name = "eth9", .mac = "02:00:00:00:00:99" };
        assert_int_equal(rt_agent_update_interface(ag, &none, 0, &err), -ENOENT);
        cc_error_free(err);
        err = NULL;
        rt_agent_ip badip = { .family = AF_INET, .addr = "10.1.2.3", .prefixlen = 40 };
        rt_agent_iface bad = { .name = "lo", .ips = &badip, .n_ips = 1 };
        assert_int_equal(rt_agent_update_interface(ag, &bad, 0, &err), -EINVAL);
        cc_error_free(err);
}

/* ---- dialer -------------------------------------------------------------------- */

static void test_dial_timeout(void **state)
{
        /* A socket that is listened on but never served: connect succeeds
         * (backlog), the health probes go unanswered. */
        char path[100];
        snprintf(path, sizeof(path), "%s/mute.sock", tmpdir);
        int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(lfd, 8), 0);
        vmm_endpoint ep = unix_ep(path);
        rt_agent *a = NULL;
        cc_error *err = NULL;
        uint64_t t0 = mono_ms();
        assert_int_equal(rt_agent_dial(&ep, 800, -1, &a, &err), -ETIMEDOUT);
        uint64_t el = mono_ms() - t0;
        assert_true(el >= 750 && el < 2000);
        assert_null(a);
        assert_non_null(strstr(err->msg, "no answer within 800 ms"));
        cc_error_free(err);
        err = NULL;
        close(lfd);

        /* Nothing there at all: retried with backoff, then -ETIMEDOUT. */
        snprintf(path, sizeof(path), "%s/nobody.sock", tmpdir);
        ep = unix_ep(path);
        t0 = mono_ms();
        assert_int_equal(rt_agent_dial(&ep, 500, -1, &a, &err), -ETIMEDOUT);
        el = mono_ms() - t0;
        assert_true(el >= 450 && el < 1500);
        assert_non_null(strstr(err->msg, "nobody.sock"));
        cc_error_free(err);
}

static void *fire_later(void *arg)
{
        int fd = *(int *)arg;
        poll(NULL, 0, 300);
        uint64_t one = 1;
        assert_int_equal(write(fd, &one, sizeof(one)), sizeof(one));
        return NULL;
}

static void test_dial_cancel(void **state)
{
        char path[100];
        snprintf(path, sizeof(path), "%s/mute2.sock", tmpdir);
        int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(lfd, 8), 0);
        int efd = eventfd(0, EFD_CLOEXEC);
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, fire_later, &efd), 0);
        vmm_endpoint ep = unix_ep(path);
        rt_agent *a = NULL;
        cc_error *err = NULL;
        uint64_t t0 = mono_ms();
        /* cancelled in the middle of a 500 ms health probe */
        assert_int_equal(rt_agent_dial(&ep, 10000, efd, &a, &err), -ECANCELED);
        uint64_t el = mono_ms() - t0;
        assert_true(el >= 250 && el < 450);
        cc_error_free(err);
        err = NULL;
        pthread_join(t, NULL);
        /* already readable: at once */
        t0 = mono_ms();
        assert_int_equal(rt_agent_dial(&ep, 10000, efd, &a, &err), -ECANCELED);
        assert_true(mono_ms() - t0 < 100);
        cc_error_free(err);
        close(efd);
        close(lfd);
        /* bad endpoints */
        vmm_endpoint bad = { .kind = VMM_EP_UNIX };
        err = NULL;
        assert_true(rt_agent_dial(&bad, 100, -1, &a, &err) < 0);
        cc_error_free(err);
}


/* Like the host side of a virtio-serial port: the connection is accepted at
 * once but the guest agent opens its port only later; what was sent meanwhile
 * waits in the socket and is answered then (the late answers to the first
 * probes are discarded). The dialer keeps probing on the same connection. */
typedef struct late_server {
        int lfd;
        int accepted;
        ttrpc_server *s;
        pthread_t t;
} late_server;

static void late_check(ttrpc_call *call, const uint8_t *p, size_t n, void *ud)
{
        Grpc__HealthCheckResponse rs = GRPC__HEALTH_CHECK_RESPONSE__INIT;
        rs.status = GRPC__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
        ttrpc_call_reply_pb(call, &rs.base);
}

static void *late_main(void *arg)
{
        late_server *l = arg;
        int fd = accept4(l->lfd, NULL, NULL, SOCK_CLOEXEC);
        l->accepted++;
        poll(NULL, 0, 1200); /* the "guest" opens its port: > 2 probes later */
        cc_error *err = NULL;
        ttrpc_server_serve_fd(l->s, fd, &err);
        cc_error_free(err);
        return NULL;
}

static void test_dial_late_serving_connection(void **state)
{
        char path[100];
        snprintf(path, sizeof(path), "%s/late.sock", tmpdir);
        late_server l = { .s = ttrpc_server_new(NULL) };
        assert_int_equal(ttrpc_server_register(l.s, "grpc.Health", "Check", late_check, NULL, NULL), 0);
        l.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        assert_int_equal(bind(l.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(l.lfd, 8), 0);
        assert_int_equal(pthread_create(&l.t, NULL, late_main, &l), 0);
        vmm_endpoint ep = unix_ep(path);
        rt_agent *a = NULL;
        uint64_t t0 = mono_ms();
        OK(rt_agent_dial(&ep, 5000, -1, &a, ret_err));
        uint64_t el = mono_ms() - t0;
        assert_true(el >= 1100 && el < 2500);
        assert_int_equal(l.accepted, 1); /* one connection, several probes */
        OK(rt_agent_check(a, 0, ret_err));
        rt_agent_unref(a);
        pthread_join(l.t, NULL);
        close(l.lfd);
        ttrpc_server_free(l.s);
}

/* Throughput of the pump into a CRI log (printed; the content is checked). */
static void test_pump_throughput(void **state)
{
        REQUIRE_AGENT();
        char log_path[200];
        snprintf(log_path, sizeof(log_path), "%s/big.log", tmpdir);
        built b;
        /* 16000 lines of 999 'a' */
        build_spec(&b, "head -c 15984000 /dev/zero | tr '\\0' a | fold -w 999; echo", false);
        OK(rt_agent_create_container(ag, "big", &b.spec, NULL, 0, false, T, ret_err));
        rt_ctr_io *io = NULL;
        OK(rt_ctr_io_start(ag, "big", log_path, false, &io, ret_err));
        uint64_t t0 = mono_ms();
        OK(rt_agent_start_container(ag, "big", T, ret_err));
        OK(rt_ctr_io_wait_drained(io, 60000, ret_err));
        uint64_t el = mono_ms() - t0;
        rt_ctr_io_free(io);
        fprintf(stderr, "pump: 16 MB of output into the CRI log in %llu ms (%.1f MB/s)\n", (unsigned long long)el,
                16.0 / ((double)(el ? el : 1) / 1000.0));
        FILE *f = fopen(log_path, "re");
        assert_non_null(f);
        char *line = NULL;
        size_t cap = 0, lines = 0;
        ssize_t n;
        while ((n = getline(&line, &cap, f)) > 0) {
                char *p = strstr(line, " stdout F ");
                if (!p)
                        fail_msg("line %zu: '%.80s'", lines, line);
                p += 10;
                assert_int_equal(strspn(p, "a"), 999);
                assert_string_equal(p + 999, "\n");
                lines++;
        }
        free(line);
        fclose(f);
        assert_int_equal(lines, 16000);
        int st = -1;
        OK(rt_agent_wait(ag, "big", NULL, T, &st, ret_err));
        assert_int_equal(st, 0);
        OK(rt_agent_remove_container(ag, "big", 5, 0, ret_err));
}

/* ---- a hostile agent ---------------------------------------------------------- */

static int fake_mode;

static void fake_check(ttrpc_call *call, const uint8_t *p, size_t n, void *ud)
{
        Grpc__HealthCheckResponse rs = GRPC__HEALTH_CHECK_RESPONSE__INIT;
        rs.status = GRPC__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
        ttrpc_call_reply_pb(call, &rs.base);
}

static void fake_version(ttrpc_call *call, const uint8_t *p, size_t n, void *ud)
{
        Grpc__VersionCheckResponse rs = GRPC__VERSION_CHECK_RESPONSE__INIT;
        char big[600];
        memset(big, 'v', sizeof(big) - 1);
        big[sizeof(big) - 1] = 0;
        rs.agent_version = fake_mode == 0 ? (char *)"1.0\x1b[31m" : big;
        ttrpc_call_reply_pb(call, &rs.base);
}

static void fake_read(ttrpc_call *call, const uint8_t *p, size_t n, void *ud)
{
        Grpc__ReadStreamRequest *rq = grpc__read_stream_request__unpack(NULL, n, p);
        Grpc__ReadStreamResponse rs = GRPC__READ_STREAM_RESPONSE__INIT;
        size_t len = rq ? rq->len + 1u : 1; /* one byte more than asked */
        uint8_t *data = calloc(1, len);
        rs.data.data = data;
        rs.data.len = len;
        ttrpc_call_reply_pb(call, &rs.base);
        free(data);
        if (rq)
                grpc__read_stream_request__free_unpacked(rq, NULL);
}

static void fake_wait(ttrpc_call *call, const uint8_t *p, size_t n, void *ud)
{
        if (fake_mode == 0) {
                Grpc__WaitProcessResponse rs = GRPC__WAIT_PROCESS_RESPONSE__INIT;
                rs.status = 300;
                ttrpc_call_reply_pb(call, &rs.base);
        } else {
                ttrpc_call_reply(call, "\x0a\xff\xff", 3); /* not a WaitProcessResponse */
        }
}

static void fake_oom(ttrpc_call *call, const uint8_t *p, size_t n, void *ud)
{
        Grpc__OOMEvent ev = GRPC__OOMEVENT__INIT;
        ev.container_id = (char *)"../../etc";
        ttrpc_call_reply_pb(call, &ev.base);
}

static void fake_write(ttrpc_call *call, const uint8_t *p, size_t n, void *ud)
{
        Grpc__WriteStreamResponse rs = GRPC__WRITE_STREAM_RESPONSE__INIT;
        rs.len = 1u << 30; /* more than was sent */
        ttrpc_call_reply_pb(call, &rs.base);
}

typedef struct fake_server {
        ttrpc_server *s;
        int lfd;
        pthread_t t;
} fake_server;

static void *fake_serve(void *arg)
{
        fake_server *f = arg;
        cc_error *err = NULL;
        ttrpc_server_serve_listener(f->s, f->lfd, &err);
        cc_error_free(err);
        return NULL;
}

static void fake_start(fake_server *f, const char *path)
{
        f->s = ttrpc_server_new(NULL);
        assert_non_null(f->s);
        assert_int_equal(ttrpc_server_register(f->s, "grpc.Health", "Check", fake_check, NULL, NULL), 0);
        assert_int_equal(ttrpc_server_register(f->s, "grpc.Health", "Version", fake_version, NULL, NULL), 0);
        assert_int_equal(ttrpc_server_register(f->s, "grpc.AgentService", "ReadStdout", fake_read, NULL, NULL), 0);
        assert_int_equal(ttrpc_server_register(f->s, "grpc.AgentService", "WaitProcess", fake_wait, NULL, NULL), 0);
        assert_int_equal(ttrpc_server_register(f->s, "grpc.AgentService", "GetOOMEvent", fake_oom, NULL, NULL), 0);
        assert_int_equal(ttrpc_server_register(f->s, "grpc.AgentService", "WriteStdin", fake_write, NULL, NULL), 0);
        f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        unlink(path);
        assert_int_equal(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(f->lfd, 8), 0);
        assert_int_equal(pthread_create(&f->t, NULL, fake_serve, f), 0);
}

static void fake_stop(fake_server *f)
{
        ttrpc_server_shutdown(f->s);
        pthread_join(f->t, NULL);
        close(f->lfd);
        ttrpc_server_free(f->s);
}

static void test_hostile_agent(void **state)
{
        char path[100];
        snprintf(path, sizeof(path), "%s/fake.sock", tmpdir);
        fake_server f;
        fake_start(&f, path);
        vmm_endpoint ep = unix_ep(path);
        rt_agent *a = NULL;
        OK(rt_agent_dial(&ep, 5000, -1, &a, ret_err));
        cc_error *err = NULL;
        char *v = NULL;

        fake_mode = 0;
        assert_int_equal(rt_agent_version(a, 0, &v, &err), -EBADMSG); /* control characters */
        cc_error_free(err);
        err = NULL;
        fake_mode = 1;
        assert_int_equal(rt_agent_version(a, 0, &v, &err), -EBADMSG); /* too long */
        assert_null(v);
        cc_error_free(err);
        err = NULL;

        uint8_t buf[16];
        assert_int_equal(rt_agent_read(a, "c", NULL, RT_AGENT_STDOUT, buf, sizeof(buf), 0, &err), -EBADMSG);
        assert_non_null(strstr(err->msg, "17 bytes returned for 16 requested"));
        cc_error_free(err);
        err = NULL;

        int st = 12345;
        fake_mode = 0;
        assert_int_equal(rt_agent_wait(a, "c", NULL, 0, &st, &err), -EBADMSG);
        assert_int_equal(st, 12345);
        cc_error_free(err);
        err = NULL;
        fake_mode = 1;
        assert_int_equal(rt_agent_wait(a, "c", NULL, 0, &st, &err), -EBADMSG);
        cc_error_free(err);
        err = NULL;

        char *id = NULL;
        assert_int_equal(rt_agent_get_oom_event(a, 0, &id, &err), -EBADMSG);
        assert_null(id);
        cc_error_free(err);
        err = NULL;

        assert_int_equal(rt_agent_write_stdin(a, "c", NULL, "x", 1, 0, &err), -EBADMSG);
        cc_error_free(err);
        err = NULL;

        /* an RPC the fake does not implement */
        assert_int_equal(rt_agent_start_container(a, "c", 0, &err), -EOPNOTSUPP);
        cc_error_free(err);
        err = NULL;

        /* the connection is still usable after all of that */
        OK(rt_agent_check(a, 0, ret_err));

        /* the pump: replies that fail the checks are retried, not written */
        rt_ctr_io *io = NULL;
        char log_path[200];
        snprintf(log_path, sizeof(log_path), "%s/fake.log", tmpdir);
        OK(rt_ctr_io_start(a, "c", log_path, true, &io, ret_err));
        poll(NULL, 0, 200);
        assert_false(rt_ctr_io_drained(io));
        rt_ctr_io_free(io);
        char *s = slurp(log_path);
        assert_string_equal(s, "");
        free(s);

        /* ref counting: a second reference keeps it usable */
        rt_agent *b = rt_agent_ref(a);
        rt_agent_unref(a);
        OK(rt_agent_check(b, 0, ret_err));
        rt_agent_close(b);
        assert_int_equal(rt_agent_check(b, 0, &err), -ECONNABORTED);
        cc_error_free(err);
        rt_agent_unref(b);
        fake_stop(&f);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_check_version_sandbox),
                cmocka_unit_test(test_container_output_to_cri_log),
                cmocka_unit_test(test_exec_signal_stdin_stats),
                cmocka_unit_test(test_pump_survives_reconnect),
                cmocka_unit_test(test_pump_tty_and_sink),
                cmocka_unit_test(test_network_rpcs),
                cmocka_unit_test(test_dial_timeout),
                cmocka_unit_test(test_dial_cancel),
                cmocka_unit_test(test_dial_late_serving_connection),
                cmocka_unit_test(test_pump_throughput),
                cmocka_unit_test(test_hostile_agent),
        };
        signal(SIGPIPE, SIG_IGN);
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
