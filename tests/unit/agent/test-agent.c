/* SPDX-License-Identifier: Apache-2.0 */
/* cocoon-agent in host mode, driven over its unix socket with the ttRPC
 * client: a busybox rootfs in a temp dir, containers in a cgroup v2 subtree
 * this test creates and removes. Needs root; skips (with a message) what
 * the host cannot do (no cgroup2, missing controllers, no busybox). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/ttrpc.h"
#include "agent.pb-c.h"
#include "cocoon-agent.pb-c.h"
#include "health.pb-c.h"
#include "oci.pb-c.h"

#ifndef AGENT_BUILDDIR
#define AGENT_BUILDDIR "."
#endif
#define SVC "grpc.AgentService"
#define TIMEOUT_MS 20000

static char tmpdir[64], rootfs[100], sock_path[100], cg_root[640], log_path[300];
static bool have_memory, have_pids, can_run;
static pid_t agent_pid;
static ttrpc_client *cli;

/* ---- harness ------------------------------------------------------------- */

static int run_sh(const char *fmt, ...)
{
        char cmd[2048];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(cmd, sizeof(cmd), fmt, ap);
        va_end(ap);
        return system(cmd);
}

static bool file_contains(const char *path, const char *needle)
{
        char buf[8192];
        FILE *f = fopen(path, "re");
        if (!f)
                return false;
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = 0;
        return strstr(buf, needle) != NULL;
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

static int start_agent(void);

static int connect_agent(void)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
        for (int i = 0; i < 500; i++) {
                int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
                        return fd;
                close(fd);
                usleep(10000);
        }
        return -1;
}

static int setup(void **state)
{
        if (geteuid() != 0) {
                fprintf(stderr, "SKIP: agent tests need root\n");
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
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/cocoon-agent-test-XXXXXX");
        if (!mkdtemp(tmpdir))
                return -1;
        snprintf(rootfs, sizeof(rootfs), "%s/rootfs", tmpdir);
        snprintf(sock_path, sizeof(sock_path), "%s/agent.sock", tmpdir);
        snprintf(log_path, sizeof(log_path), "%s/agent.log", tmpdir);
        if (run_sh("set -e; mkdir -p %s; cd %s; mkdir -p bin etc proc sys dev tmp root home/app; "
                   "cp /bin/busybox bin/busybox; chroot . /bin/busybox --install -s /bin; "
                   "printf 'root:x:0:0:root:/root:/bin/sh\\napp:x:1000:1000:app:/home/app:/bin/sh\\n' > etc/passwd; "
                   "printf 'root:x:0:\\napp:x:1000:\\nextra:x:2000:app\\n' > etc/group",
                   rootfs, rootfs) != 0)
                return -1;
        snprintf(cg_root, sizeof(cg_root), "%s/cocoon-agent-test-%d", cg2, (int)getpid());
        if (mkdir(cg_root, 0755) < 0)
                return -1;
        char p[600];
        snprintf(p, sizeof(p), "%s/cgroup.controllers", cg2);
        have_memory = file_contains(p, "memory");
        have_pids = file_contains(p, "pids");
        if (!have_memory)
                fprintf(stderr, "NOTE: cgroup2 at %s has no memory controller (hybrid host?): "
                                "memory limit, OOM and memory stats tests skip\n", cg2);
        snprintf(p, sizeof(p), "%s/cgroup.subtree_control", cg2);
        run_sh("echo +memory +pids +cpu > %s 2>/dev/null", p);

        return start_agent();
}

/* (Re)starts the agent under test and connects to it. */
static int start_agent(void)
{
        agent_pid = fork();
        if (agent_pid == 0) {
                /* its own network namespace: the network RPCs must not
                 * touch the host's */
                if (unshare(CLONE_NEWNET) < 0)
                        _exit(126);
                int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
                dup2(fd, 2);
                char sd[300];
                snprintf(sd, sizeof(sd), "%s/state", tmpdir);
                execl(AGENT_BUILDDIR "/agent/cocoon-agent", "cocoon-agent", "--host", "--listen", sock_path,
                      "--state-dir", sd, "--cgroup-root", cg_root, "--log-level", "debug", (char *)NULL);
                _exit(127);
        }
        int fd = connect_agent();
        if (fd < 0)
                return -1;
        cli = ttrpc_client_new(fd, NULL);
        can_run = cli != NULL;
        return can_run ? 0 : -1;
}

static int teardown(void **state)
{
        ttrpc_client_free(cli);
        if (agent_pid > 0) {
                kill(agent_pid, SIGTERM);
                waitpid(agent_pid, NULL, 0);
        }
        if (getenv("AGENT_TEST_LOG"))
                run_sh("cat %s >&2", log_path);
        if (cg_root[0]) {
                run_sh("find %s -depth -type d -exec rmdir {} + 2>/dev/null", cg_root);
                rmdir(cg_root);
        }
        if (tmpdir[0])
                run_sh("rm -rf %s", tmpdir);
        return 0;
}

#define REQUIRE_AGENT()                                         \
        do {                                                    \
                if (!can_run)                                   \
                        skip();                                 \
        } while (0)

/* Returns 0 or the gRPC status code of the failure. */
static int call(const char *method, const ProtobufCMessage *req, const ProtobufCMessageDescriptor *rd,
                ProtobufCMessage **resp)
{
        cc_error *err = NULL;
        ProtobufCMessage *r = NULL;
        int rc = ttrpc_client_call_pb(cli, SVC, method, req, rd ? rd : &google__protobuf__empty__descriptor,
                                      TIMEOUT_MS, &r, &err);
        if (rc < 0) {
                int code = err->grpc ? err->grpc : -1;
                if (getenv("AGENT_TEST_VERBOSE"))
                        fprintf(stderr, "%s: %s\n", method, err->msg);
                cc_error_free(err);
                return code;
        }
        if (resp)
                *resp = r;
        else if (r)
                protobuf_c_message_free_unpacked(r, NULL);
        return 0;
}

#include "google/protobuf/empty.pb-c.h"

/* ---- spec builder -------------------------------------------------------- */

typedef struct spec_opts {
        const char *hostname;
        bool terminal;
        const char *user;  /* username, or NULL for root */
        const Grpc__LinuxSeccomp *seccomp;
        int64_t mem_limit;
        const char *root;  /* override root path */
} spec_opts;

typedef struct built {
        Grpc__Spec spec;
        Grpc__Process proc;
        Grpc__Root root;
        Grpc__User user;
        Grpc__Linux linux_;
        Grpc__LinuxResources res;
        Grpc__LinuxMemory mem;
        Grpc__Mount m[4], *mp[4];
        Grpc__LinuxNamespace ns[4], *nsp[4];
        char *env[2];
} built;

static void build_process(Grpc__Process *proc, Grpc__User *user, char **args, size_t nargs, char **env,
                          bool terminal, const char *username)
{
        grpc__process__init(proc);
        proc->args = args;
        proc->n_args = nargs;
        proc->env = env;
        proc->n_env = 1;
        proc->cwd = (char *)"/";
        proc->terminal = terminal;
        grpc__user__init(user);
        if (username)
                user->username = (char *)username;
        proc->user = user;
}

static void build_spec(built *b, char **args, size_t nargs, const spec_opts *o)
{
        memset(b, 0, sizeof(*b));
        b->env[0] = (char *)"PATH=/bin:/sbin";
        grpc__spec__init(&b->spec);
        build_process(&b->proc, &b->user, args, nargs, b->env, o->terminal, o->user);
        grpc__root__init(&b->root);
        b->root.path = (char *)(o->root ? o->root : rootfs);
        b->spec.root = &b->root;
        b->spec.process = &b->proc;
        b->spec.hostname = (char *)(o->hostname ? o->hostname : "ctr");
        static const char *const mnt[][3] = {
                { "/proc", "proc", "proc" }, { "/dev", "tmpfs", "tmpfs" },
                { "/dev/pts", "devpts", "devpts" }, { "/tmp", "tmpfs", "tmpfs" },
        };
        for (int i = 0; i < 4; i++) {
                grpc__mount__init(&b->m[i]);
                b->m[i].destination = (char *)mnt[i][0];
                b->m[i].source = (char *)mnt[i][1];
                b->m[i].type = (char *)mnt[i][2];
                b->mp[i] = &b->m[i];
        }
        b->spec.mounts = b->mp;
        b->spec.n_mounts = 4;
        grpc__linux__init(&b->linux_);
        static const char *const nst[] = { "pid", "mount", "ipc", "uts" };
        for (int i = 0; i < 4; i++) {
                grpc__linux_namespace__init(&b->ns[i]);
                b->ns[i].type = (char *)nst[i];
                b->nsp[i] = &b->ns[i];
        }
        b->linux_.namespaces = b->nsp;
        b->linux_.n_namespaces = 4;
        b->linux_.seccomp = (Grpc__LinuxSeccomp *)o->seccomp;
        if (o->mem_limit) {
                grpc__linux_resources__init(&b->res);
                grpc__linux_memory__init(&b->mem);
                b->mem.limit = o->mem_limit;
                b->mem.swap = o->mem_limit; /* memory+swap == memory: no swap */
                b->res.memory = &b->mem;
                b->linux_.resources = &b->res;
        }
        b->spec.linux = &b->linux_;
}

static int create(const char *id, char **args, size_t nargs, const spec_opts *o)
{
        built b;
        build_spec(&b, args, nargs, o);
        Grpc__CreateContainerRequest req = GRPC__CREATE_CONTAINER_REQUEST__INIT;
        req.container_id = (char *)id;
        req.exec_id = (char *)id;
        req.oci = &b.spec;
        return call("CreateContainer", &req.base, NULL, NULL);
}

static int simple(const char *method, const char *id)
{
        /* Start/Pause/Resume/Stats requests all are {string container_id = 1} */
        Grpc__StartContainerRequest req = GRPC__START_CONTAINER_REQUEST__INIT;
        req.container_id = (char *)id;
        return call(method, &req.base, NULL, NULL);
}

static int create_start(const char *id, const char *script, const spec_opts *o)
{
        char *args[] = { (char *)"/bin/sh", (char *)"-c", (char *)script };
        int r = create(id, args, 3, o);
        return r ? r : simple("StartContainer", id);
}

static int remove_ctr(const char *id)
{
        Grpc__RemoveContainerRequest req = GRPC__REMOVE_CONTAINER_REQUEST__INIT;
        req.container_id = (char *)id;
        req.timeout = 10;
        return call("RemoveContainer", &req.base, NULL, NULL);
}

/* Reads a stream to EOF into buf. */
static size_t read_stream(const char *id, const char *exec, bool err, char *buf, size_t size)
{
        size_t got = 0;
        for (;;) {
                Grpc__ReadStreamRequest req = GRPC__READ_STREAM_REQUEST__INIT;
                req.container_id = (char *)id;
                req.exec_id = (char *)(exec ? exec : "");
                req.len = 1 << 20;
                Grpc__ReadStreamResponse *resp = NULL;
                int r = call(err ? "ReadStderr" : "ReadStdout", &req.base, &grpc__read_stream_response__descriptor,
                             (ProtobufCMessage **)&resp);
                assert_int_equal(r, 0);
                size_t n = resp->data.len;
                assert_true(got + n < size);
                if (n) {
                        memcpy(buf + got, resp->data.data, n);
                        got += n;
                }
                protobuf_c_message_free_unpacked(&resp->base, NULL);
                if (n == 0)
                        break;
        }
        buf[got] = 0;
        return got;
}

static int wait_proc(const char *id, const char *exec)
{
        Grpc__WaitProcessRequest req = GRPC__WAIT_PROCESS_REQUEST__INIT;
        req.container_id = (char *)id;
        req.exec_id = (char *)(exec ? exec : "");
        Grpc__WaitProcessResponse *resp = NULL;
        int r = call("WaitProcess", &req.base, &grpc__wait_process_response__descriptor, (ProtobufCMessage **)&resp);
        assert_int_equal(r, 0);
        int st = resp->status;
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        return st;
}

static int exec_proc(const char *id, const char *exec, const char *script, bool terminal, const char *user)
{
        char *args[] = { (char *)"/bin/sh", (char *)"-c", (char *)script };
        char *env[] = { (char *)"PATH=/bin:/sbin" };
        Grpc__Process proc;
        Grpc__User u;
        build_process(&proc, &u, args, 3, env, terminal, user);
        Grpc__ExecProcessRequest req = GRPC__EXEC_PROCESS_REQUEST__INIT;
        req.container_id = (char *)id;
        req.exec_id = (char *)exec;
        req.process = &proc;
        return call("ExecProcess", &req.base, NULL, NULL);
}

static int signal_proc(const char *id, const char *exec, uint32_t sig)
{
        Grpc__SignalProcessRequest req = GRPC__SIGNAL_PROCESS_REQUEST__INIT;
        req.container_id = (char *)id;
        req.exec_id = (char *)(exec ? exec : "");
        req.signal = sig;
        return call("SignalProcess", &req.base, NULL, NULL);
}

static int write_stdin(const char *id, const char *exec, const char *data)
{
        Grpc__WriteStreamRequest req = GRPC__WRITE_STREAM_REQUEST__INIT;
        req.container_id = (char *)id;
        req.exec_id = (char *)exec;
        req.data.data = (uint8_t *)data;
        req.data.len = strlen(data);
        return call("WriteStdin", &req.base, &grpc__write_stream_response__descriptor, NULL);
}

/* ---- tests --------------------------------------------------------------- */

static void test_health(void **state)
{
        REQUIRE_AGENT();
        Grpc__CheckRequest req = GRPC__CHECK_REQUEST__INIT;
        cc_error *err = NULL;
        ProtobufCMessage *resp = NULL;
        assert_int_equal(ttrpc_client_call_pb(cli, "grpc.Health", "Check", &req.base,
                                              &grpc__health_check_response__descriptor, TIMEOUT_MS, &resp, &err), 0);
        assert_int_equal(((Grpc__HealthCheckResponse *)resp)->status,
                         GRPC__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
        protobuf_c_message_free_unpacked(resp, NULL);
        assert_int_equal(ttrpc_client_call_pb(cli, "grpc.Health", "Version", &req.base,
                                              &grpc__version_check_response__descriptor, TIMEOUT_MS, &resp, &err), 0);
        assert_true(strlen(((Grpc__VersionCheckResponse *)resp)->agent_version) > 0);
        protobuf_c_message_free_unpacked(resp, NULL);

        Grpc__CreateSandboxRequest sb = GRPC__CREATE_SANDBOX_REQUEST__INIT;
        sb.hostname = (char *)"podhost";
        sb.sandbox_id = (char *)"pod1";
        assert_int_equal(call("CreateSandbox", &sb.base, NULL, NULL), 0);
        assert_int_equal(call("CreateSandbox", &sb.base, NULL, NULL), TTRPC_CODE_ALREADY_EXISTS);
        /* unregistered methods */
        assert_int_equal(call("SetIPTables", &req.base, NULL, NULL), TTRPC_CODE_UNIMPLEMENTED);
}

static void test_run_output_status(void **state)
{
        REQUIRE_AGENT();
        spec_opts o = { 0 };
        assert_int_equal(create_start("c1", "echo hello; echo err >&2; exit 3", &o), 0);
        char buf[4096];
        read_stream("c1", NULL, false, buf, sizeof(buf));
        assert_string_equal(buf, "hello\n");
        read_stream("c1", NULL, true, buf, sizeof(buf));
        assert_string_equal(buf, "err\n");
        assert_int_equal(wait_proc("c1", NULL), 3);
        /* starting twice fails */
        assert_int_equal(simple("StartContainer", "c1"), TTRPC_CODE_FAILED_PRECONDITION);
        assert_int_equal(remove_ctr("c1"), 0);
        assert_int_equal(simple("StartContainer", "c1"), TTRPC_CODE_NOT_FOUND);
}

/* cocoon.agent.Containers/Pid: the init's pid (-1: a failure, its code in
 * *code). */
static int ctr_pid(const char *id, int *code)
{
        Cocoon__Agent__ContainerPidRequest req = COCOON__AGENT__CONTAINER_PID_REQUEST__INIT;
        req.container_id = (char *)id;
        cc_error *err = NULL;
        ProtobufCMessage *resp = NULL;
        if (ttrpc_client_call_pb(cli, "cocoon.agent.Containers", "Pid", &req.base,
                                 &cocoon__agent__container_pid_response__descriptor, TIMEOUT_MS, &resp, &err) < 0) {
                *code = err->grpc;
                cc_error_free(err);
                return -1;
        }
        int pid = ((Cocoon__Agent__ContainerPidResponse *)resp)->pid;
        protobuf_c_message_free_unpacked(resp, NULL);
        return pid;
}

static void test_exec_user_pidns_hostname(void **state)
{
        REQUIRE_AGENT();
        spec_opts o = { .hostname = "ctrhost" };
        assert_int_equal(create_start("c2", "exec sleep 1000", &o), 0);
        char buf[8192];

        /* the init's pid, in the agent's (here the host's) pid namespace */
        int code = 0;
        int pid = ctr_pid("c2", &code);
        assert_true(pid > 1);
        char p[64];
        for (int i = 0; i < 200; i++) { /* until sh has exec'd sleep */
                snprintf(p, sizeof(p), "/proc/%d/cmdline", pid);
                if (file_contains(p, "sleep"))
                        break;
                usleep(10000);
        }
        assert_true(file_contains(p, "sleep"));
        assert_int_equal(ctr_pid("no-such", &code), -1);
        assert_int_equal(code, TTRPC_CODE_NOT_FOUND);

        assert_int_equal(exec_proc("c2", "e1", "id", false, "app"), 0);
        read_stream("c2", "e1", false, buf, sizeof(buf));
        assert_non_null(strstr(buf, "uid=1000(app) gid=1000(app)"));
        assert_non_null(strstr(buf, "2000(extra)"));
        assert_int_equal(wait_proc("c2", "e1"), 0);

        assert_int_equal(exec_proc("c2", "e2", "ps -o pid,args; hostname", false, NULL), 0);
        read_stream("c2", "e2", false, buf, sizeof(buf));
        /* pid 1 is the container's init (sh until it has exec'd sleep) */
        if (getenv("AGENT_TEST_VERBOSE"))
                fprintf(stderr, "ps: %s", buf);
        char *one = strstr(buf, "\n    1 ");
        assert_non_null(one);
        assert_true(strncmp(one + 7, "sleep 1000", 10) == 0 || strncmp(one + 7, "/bin/sh -c exec sleep", 21) == 0);
        assert_non_null(strstr(buf, "ctrhost\n"));
        assert_int_equal(wait_proc("c2", "e2"), 0);

        /* SIGTERM to an exec */
        assert_int_equal(exec_proc("c2", "e3", "exec sleep 100", false, NULL), 0);
        assert_int_equal(signal_proc("c2", "e3", SIGTERM), 0);
        assert_int_equal(wait_proc("c2", "e3"), 128 + SIGTERM);

        /* the same exec id twice */
        assert_int_equal(exec_proc("c2", "e4", "sleep 100", false, NULL), 0);
        assert_int_equal(exec_proc("c2", "e4", "true", false, NULL), TTRPC_CODE_ALREADY_EXISTS);

        /* stdin */
        assert_int_equal(exec_proc("c2", "e5", "read x; echo got-$x", false, NULL), 0);
        assert_int_equal(write_stdin("c2", "e5", "abc\n"), 0);
        Grpc__CloseStdinRequest cs = GRPC__CLOSE_STDIN_REQUEST__INIT;
        cs.container_id = (char *)"c2";
        cs.exec_id = (char *)"e5";
        assert_int_equal(call("CloseStdin", &cs.base, NULL, NULL), 0);
        read_stream("c2", "e5", false, buf, sizeof(buf));
        assert_string_equal(buf, "got-abc\n");
        assert_int_equal(wait_proc("c2", "e5"), 0);

        /* SIGKILL without exec id: every process of the container */
        assert_int_equal(signal_proc("c2", "", SIGKILL), 0);
        assert_int_equal(wait_proc("c2", NULL), 128 + SIGKILL);
        assert_int_equal(remove_ctr("c2"), 0);
}

static void test_tty(void **state)
{
        REQUIRE_AGENT();
        spec_opts o = { 0 };
        assert_int_equal(create_start("c3", "exec sleep 1000", &o), 0);
        /* tty: the terminal is one of the container's own devpts (its
         * first pty), so ttyname() works inside */
        assert_int_equal(exec_proc("c3", "t1", "read x; tty; stty size", true, NULL), 0);
        Grpc__TtyWinResizeRequest rz = GRPC__TTY_WIN_RESIZE_REQUEST__INIT;
        rz.container_id = (char *)"c3";
        rz.exec_id = (char *)"t1";
        rz.row = 40;
        rz.column = 123;
        assert_int_equal(call("TtyWinResize", &rz.base, NULL, NULL), 0);
        assert_int_equal(write_stdin("c3", "t1", "go\n"), 0);
        char buf[4096];
        read_stream("c3", "t1", false, buf, sizeof(buf));
        assert_non_null(strstr(buf, "40 123"));
        assert_non_null(strstr(buf, "/dev/pts/0\r\n"));
        assert_null(strstr(buf, "not a tty"));
        assert_int_equal(wait_proc("c3", "t1"), 0);
        /* a user's terminal: owned by the user, in the container's devpts */
        assert_int_equal(exec_proc("c3", "t3", "stat -c '%u %n' $(tty)", true, "app"), 0);
        read_stream("c3", "t3", false, buf, sizeof(buf));
        assert_true(strncmp(buf, "1000 /dev/pts/", 14) == 0);
        assert_int_equal(wait_proc("c3", "t3"), 0);
        /* a pipe process has no terminal */
        assert_int_equal(exec_proc("c3", "t2", "sleep 100", false, NULL), 0);
        rz.exec_id = (char *)"t2";
        assert_int_equal(call("TtyWinResize", &rz.base, NULL, NULL), TTRPC_CODE_FAILED_PRECONDITION);
        assert_int_equal(remove_ctr("c3"), 0);
}

/* More output than the per-stream buffer: the writer blocks, nothing is lost. */
static void test_large_output(void **state)
{
        REQUIRE_AGENT();
        spec_opts o = { 0 };
        assert_int_equal(create_start("big", "head -c 3000000 /dev/zero | tr '\\0' a; echo", &o), 0);
        size_t size = 3200000;
        char *buf = malloc(size);
        assert_non_null(buf);
        size_t n = read_stream("big", NULL, false, buf, size);
        assert_int_equal(n, 3000001);
        size_t as = strspn(buf, "a");
        assert_int_equal(as, 3000000);
        free(buf);
        assert_int_equal(wait_proc("big", NULL), 0);
        assert_int_equal(remove_ctr("big"), 0);
}

static void test_seccomp(void **state)
{
        REQUIRE_AGENT();
        Grpc__LinuxSeccomp sc = GRPC__LINUX_SECCOMP__INIT;
        Grpc__LinuxSyscall rule = GRPC__LINUX_SYSCALL__INIT, *rules[] = { &rule };
        char *names[] = { (char *)"mkdir", (char *)"mkdirat" };
        sc.defaultaction = (char *)"SCMP_ACT_ALLOW";
        sc.syscalls = rules;
        sc.n_syscalls = 1;
        rule.names = names;
        rule.n_names = 2;
        rule.action = (char *)"SCMP_ACT_ERRNO";
        rule.errno_ret_case = GRPC__LINUX_SYSCALL__ERRNO_RET_ERRNORET;
        rule.errnoret = EPERM;
        spec_opts o = { .seccomp = &sc };
        assert_int_equal(create_start("c4", "mkdir /tmp/x; echo rc=$?", &o), 0);
        char buf[4096];
        read_stream("c4", NULL, false, buf, sizeof(buf));
        assert_string_equal(buf, "rc=1\n");
        read_stream("c4", NULL, true, buf, sizeof(buf));
        assert_non_null(strstr(buf, "Operation not permitted"));
        assert_int_equal(wait_proc("c4", NULL), 0);
        assert_int_equal(remove_ctr("c4"), 0);

        /* a bad action is refused up front */
        rule.action = (char *)"SCMP_ACT_BOGUS";
        assert_int_equal(create_start("c4b", "true", &o), TTRPC_CODE_INVALID_ARGUMENT);
}

static void test_memory_oom_stats(void **state)
{
        REQUIRE_AGENT();
        spec_opts o = { .mem_limit = 16 << 20 };
        if (!have_memory) {
                /* a limit the host cannot enforce is refused, not ignored */
                assert_int_equal(create_start("c5", "true", &o), TTRPC_CODE_FAILED_PRECONDITION);
                fprintf(stderr, "SKIP: no cgroup v2 memory controller on this host\n");
                skip();
        }
        assert_int_equal(create_start("c5", "exec sleep 1000", &o), 0);
        Grpc__StatsContainerRequest sr = GRPC__STATS_CONTAINER_REQUEST__INIT;
        sr.container_id = (char *)"c5";
        Grpc__StatsContainerResponse *st = NULL;
        assert_int_equal(call("StatsContainer", &sr.base, &grpc__stats_container_response__descriptor,
                              (ProtobufCMessage **)&st), 0);
        assert_true(st->cgroup_stats->memory_stats->usage->usage > 0);
        assert_int_equal(st->cgroup_stats->memory_stats->usage->limit, 16 << 20);
        protobuf_c_message_free_unpacked(&st->base, NULL);

        assert_int_equal(exec_proc("c5", "hog", "head -c 64m /dev/zero | tail > /dev/null", false, NULL), 0);
        int status = wait_proc("c5", "hog");
        assert_int_not_equal(status, 0);
        Grpc__GetOOMEventRequest oreq = GRPC__GET_OOMEVENT_REQUEST__INIT;
        Grpc__OOMEvent *ev = NULL;
        assert_int_equal(call("GetOOMEvent", &oreq.base, &grpc__oomevent__descriptor, (ProtobufCMessage **)&ev), 0);
        assert_string_equal(ev->container_id, "c5");
        protobuf_c_message_free_unpacked(&ev->base, NULL);
        assert_int_equal(remove_ctr("c5"), 0);
}

static void test_pause_resume_remove(void **state)
{
        REQUIRE_AGENT();
        spec_opts o = { 0 };
        assert_int_equal(create_start("c6", "exec sleep 1000", &o), 0);
        char ev[700];
        snprintf(ev, sizeof(ev), "%s/cocoon/c6/cgroup.events", cg_root);
        assert_int_equal(simple("PauseContainer", "c6"), 0);
        assert_true(file_contains(ev, "frozen 1"));
        assert_int_equal(simple("ResumeContainer", "c6"), 0);
        assert_true(file_contains(ev, "frozen 0"));

        Grpc__StatsContainerRequest sr = GRPC__STATS_CONTAINER_REQUEST__INIT;
        sr.container_id = (char *)"c6";
        assert_int_equal(call("StatsContainer", &sr.base, &grpc__stats_container_response__descriptor, NULL), 0);

        /* remove while paused and running: no cgroup, no process left */
        assert_int_equal(simple("PauseContainer", "c6"), 0);
        assert_int_equal(remove_ctr("c6"), 0);
        char dir[700];
        snprintf(dir, sizeof(dir), "%s/cocoon/c6", cg_root);
        assert_int_not_equal(access(dir, F_OK), 0);
        DIR *d = opendir("/proc");
        struct dirent *de;
        while ((de = readdir(d))) {
                char p[300], target[PATH_MAX];
                snprintf(p, sizeof(p), "/proc/%s/root", de->d_name);
                ssize_t n = readlink(p, target, sizeof(target) - 1);
                if (n > 0) {
                        target[n] = 0;
                        assert_string_not_equal(target, rootfs);
                }
        }
        closedir(d);
        assert_false(file_contains("/proc/self/mountinfo", rootfs));
}

static void test_invalid(void **state)
{
        REQUIRE_AGENT();
        spec_opts o = { 0 };
        char *args[] = { (char *)"/bin/true" };
        assert_int_equal(create("../x", args, 1, &o), TTRPC_CODE_INVALID_ARGUMENT);
        assert_int_equal(create("", args, 1, &o), TTRPC_CODE_INVALID_ARGUMENT);
        char escape[400];
        snprintf(escape, sizeof(escape), "%s/../../etc", rootfs);
        o.root = escape;
        assert_int_equal(create("c7", args, 1, &o), TTRPC_CODE_INVALID_ARGUMENT);
        o.root = "relative/path";
        assert_int_equal(create("c7", args, 1, &o), TTRPC_CODE_INVALID_ARGUMENT);
        o.root = NULL;
        assert_int_equal(create("c7", args, 0, &o), TTRPC_CODE_INVALID_ARGUMENT);
        assert_int_equal(create("c7", args, 1, &o), 0);
        assert_int_equal(create("c7", args, 1, &o), TTRPC_CODE_ALREADY_EXISTS);
        assert_int_equal(signal_proc("c7", "", 999), TTRPC_CODE_INVALID_ARGUMENT);
        assert_int_equal(signal_proc("c7", "", 0), TTRPC_CODE_INVALID_ARGUMENT);
        assert_int_equal(signal_proc("c7", "no/such", SIGTERM), TTRPC_CODE_INVALID_ARGUMENT);
        assert_int_equal(signal_proc("c7", "nosuch", SIGTERM), TTRPC_CODE_NOT_FOUND);
        assert_int_equal(signal_proc("zz", "", SIGTERM), TTRPC_CODE_NOT_FOUND);
        /* garbage payload */
        cc_error *err = NULL;
        uint8_t junk[] = { 0xff, 0xff, 0xff, 0xff, 0x0f };
        uint8_t *resp = NULL;
        size_t rlen = 0;
        assert_true(ttrpc_client_call(cli, SVC, "CreateContainer", junk, sizeof(junk), TIMEOUT_MS, &resp, &rlen,
                                      &err) < 0);
        assert_int_equal(err->grpc, TTRPC_CODE_INVALID_ARGUMENT);
        cc_error_free(err);
        assert_int_equal(remove_ctr("c7"), 0);
        /* ReseedRandomDev: 1..4096 bytes; on the host (not a guest) it
         * accepts them and leaves the host's RNG alone */
        static uint8_t seed[5000];
        Grpc__ReseedRandomDevRequest rs = GRPC__RESEED_RANDOM_DEV_REQUEST__INIT;
        assert_int_equal(call("ReseedRandomDev", &rs.base, NULL, NULL), TTRPC_CODE_INVALID_ARGUMENT);
        rs.data.data = seed;
        rs.data.len = sizeof(seed);
        assert_int_equal(call("ReseedRandomDev", &rs.base, NULL, NULL), TTRPC_CODE_INVALID_ARGUMENT);
        rs.data.len = 64;
        assert_int_equal(call("ReseedRandomDev", &rs.base, NULL, NULL), 0);
}

static void test_malformed_frame(void **state)
{
        REQUIRE_AGENT();
        /* one connection at a time: leave the main client's slot free */
        ttrpc_client_free(cli);
        cli = NULL;
        int fd = connect_agent();
        assert_true(fd >= 0);
        uint8_t bad[10] = { 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 1, 1, 0 }; /* 2 GiB frame */
        assert_int_equal(write(fd, bad, sizeof(bad)), sizeof(bad));
        struct pollfd p = { .fd = fd, .events = POLLIN };
        assert_int_equal(poll(&p, 1, 5000), 1);
        char c;
        assert_true(read(fd, &c, 1) <= 0); /* dropped */
        close(fd);
        fd = connect_agent();
        assert_true(fd >= 0);
        cli = ttrpc_client_new(fd, NULL);
        assert_non_null(cli);
        Grpc__CheckRequest req = GRPC__CHECK_REQUEST__INIT;
        cc_error *err = NULL;
        ProtobufCMessage *resp = NULL;
        assert_int_equal(ttrpc_client_call_pb(cli, "grpc.Health", "Check", &req.base,
                                              &grpc__health_check_response__descriptor, TIMEOUT_MS, &resp, &err), 0);
        protobuf_c_message_free_unpacked(resp, NULL);
}

static void test_network(void **state)
{
        REQUIRE_AGENT();
        Grpc__ListInterfacesRequest lr = GRPC__LIST_INTERFACES_REQUEST__INIT;
        Grpc__Interfaces *ifs = NULL;
        assert_int_equal(call("ListInterfaces", &lr.base, &grpc__interfaces__descriptor, (ProtobufCMessage **)&ifs), 0);
        bool lo = false;
        for (size_t i = 0; i < ifs->n_interfaces; i++)
                lo |= strcmp(ifs->interfaces[i]->name, "lo") == 0;
        assert_true(lo);
        protobuf_c_message_free_unpacked(&ifs->base, NULL);

        Types__IPAddress a = TYPES__IPADDRESS__INIT, *ap[] = { &a };
        a.address = (char *)"10.9.8.7";
        a.mask = (char *)"24";
        Types__Interface ifc = TYPES__INTERFACE__INIT;
        ifc.name = (char *)"lo";
        ifc.ipaddresses = ap;
        ifc.n_ipaddresses = 1;
        ifc.mtu = 9000;
        Grpc__UpdateInterfaceRequest ur = GRPC__UPDATE_INTERFACE_REQUEST__INIT;
        ur.interface = &ifc;
        Types__Interface *got = NULL;
        assert_int_equal(call("UpdateInterface", &ur.base, &types__interface__descriptor, (ProtobufCMessage **)&got), 0);
        assert_int_equal(got->mtu, 9000);
        assert_true(got->raw_flags & 1); /* IFF_UP */
        bool found = false;
        for (size_t i = 0; i < got->n_ipaddresses; i++)
                found |= strcmp(got->ipaddresses[i]->address, "10.9.8.7") == 0 &&
                         strcmp(got->ipaddresses[i]->mask, "24") == 0;
        assert_true(found);
        protobuf_c_message_free_unpacked(&got->base, NULL);
        a.address = (char *)"10.9.8.777";
        assert_int_equal(call("UpdateInterface", &ur.base, &types__interface__descriptor, NULL),
                         TTRPC_CODE_INVALID_ARGUMENT);
        a.address = (char *)"10.9.8.7";
        ifc.name = (char *)"nosuch0";
        assert_int_equal(call("UpdateInterface", &ur.base, &types__interface__descriptor, NULL), TTRPC_CODE_NOT_FOUND);

        Types__Route rt = TYPES__ROUTE__INIT, *rp[] = { &rt };
        rt.dest = (char *)"10.20.0.0/16";
        rt.gateway = (char *)"10.9.8.1";
        rt.device = (char *)"lo";
        Grpc__Routes routes = GRPC__ROUTES__INIT;
        routes.routes = rp;
        routes.n_routes = 1;
        Grpc__UpdateRoutesRequest urr = GRPC__UPDATE_ROUTES_REQUEST__INIT;
        urr.routes = &routes;
        assert_int_equal(call("UpdateRoutes", &urr.base, &grpc__routes__descriptor, NULL), 0);
        Grpc__ListRoutesRequest lrr = GRPC__LIST_ROUTES_REQUEST__INIT;
        Grpc__Routes *rs = NULL;
        assert_int_equal(call("ListRoutes", &lrr.base, &grpc__routes__descriptor, (ProtobufCMessage **)&rs), 0);
        found = false;
        for (size_t i = 0; i < rs->n_routes; i++)
                found |= strcmp(rs->routes[i]->dest, "10.20.0.0/16") == 0 &&
                         strcmp(rs->routes[i]->gateway, "10.9.8.1") == 0 && strcmp(rs->routes[i]->device, "lo") == 0;
        assert_true(found);
        protobuf_c_message_free_unpacked(&rs->base, NULL);
        rt.dest = (char *)"10.20.0.0/33";
        assert_int_equal(call("UpdateRoutes", &urr.base, &grpc__routes__descriptor, NULL), TTRPC_CODE_INVALID_ARGUMENT);

        Types__ARPNeighbor nb = TYPES__ARPNEIGHBOR__INIT, *np[] = { &nb };
        Types__IPAddress na = TYPES__IPADDRESS__INIT;
        na.address = (char *)"10.9.8.2";
        nb.toipaddress = &na;
        nb.device = (char *)"lo";
        nb.lladdr = (char *)"zz:00";
        Grpc__ARPNeighbors nbs = GRPC__ARPNEIGHBORS__INIT;
        nbs.arpneighbors = np;
        nbs.n_arpneighbors = 1;
        Grpc__AddARPNeighborsRequest ar = GRPC__ADD_ARPNEIGHBORS_REQUEST__INIT;
        ar.neighbors = &nbs;
        assert_int_equal(call("AddARPNeighbors", &ar.base, NULL, NULL), TTRPC_CODE_INVALID_ARGUMENT);
}

/* Host mode: SIGTERM stops the containers before the agent exits: each
 * init gets SIGTERM (and may handle it), one that ignores it is killed after
 * the grace, the cgroups are gone and the agent exits 0. */
static void test_sigterm_stops_containers(void **state)
{
        REQUIRE_AGENT();
        spec_opts o = { 0 };
        char marker[200];
        snprintf(marker, sizeof(marker), "%s/term-seen", rootfs);
        unlink(marker);
        assert_int_equal(create_start("t-polite", "trap 'echo $$ > /term-seen; exit 7' TERM; echo up; "
                                      "while :; do sleep 0.1; done", &o), 0);
        assert_int_equal(create_start("t-stubborn", "trap '' TERM; exec sleep 1000", &o), 0);
        char buf[64];
        Grpc__ReadStreamRequest rq = GRPC__READ_STREAM_REQUEST__INIT;
        rq.container_id = (char *)"t-polite";
        rq.exec_id = (char *)"";
        rq.len = sizeof(buf);
        Grpc__ReadStreamResponse *resp = NULL;
        assert_int_equal(call("ReadStdout", &rq.base, &grpc__read_stream_response__descriptor,
                              (ProtobufCMessage **)&resp), 0); /* the trap is set */
        protobuf_c_message_free_unpacked(&resp->base, NULL);

        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_int_equal(kill(agent_pid, SIGTERM), 0);
        int st = 0;
        pid_t r = 0;
        for (int i = 0; i < 2000 && r == 0; i++) { /* 20 s */
                r = waitpid(agent_pid, &st, WNOHANG);
                if (r == 0)
                        usleep(10000);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        assert_int_equal(r, agent_pid);
        agent_pid = 0;
        if (!WIFEXITED(st))
                fail_msg("agent did not exit by itself on SIGTERM (status 0x%x)", st);
        assert_int_equal(WEXITSTATUS(st), 0);
        /* the polite one ran its handler (pid 1 of its namespace) */
        assert_true(file_contains(marker, "1\n"));
        /* the stubborn one cost the grace (5 s), not more */
        double el = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
        assert_true(el >= 4.5 && el < 12);
        char dir[700];
        snprintf(dir, sizeof(dir), "%s/cocoon/t-polite", cg_root);
        assert_int_not_equal(access(dir, F_OK), 0);
        snprintf(dir, sizeof(dir), "%s/cocoon/t-stubborn", cg_root);
        assert_int_not_equal(access(dir, F_OK), 0);
        unlink(marker);

        /* the next tests get a fresh agent */
        ttrpc_client_free(cli);
        cli = NULL;
        can_run = start_agent() == 0;
        assert_true(can_run);
}

static void test_destroy(void **state)
{
        REQUIRE_AGENT();
        spec_opts o = { 0 };
        assert_int_equal(create_start("c8", "exec sleep 1000", &o), 0);
        Grpc__DestroySandboxRequest req = GRPC__DESTROY_SANDBOX_REQUEST__INIT;
        assert_int_equal(call("DestroySandbox", &req.base, NULL, NULL), 0);
        int st;
        pid_t r = 0;
        for (int i = 0; i < 500 && r == 0; i++) {
                r = waitpid(agent_pid, &st, WNOHANG);
                if (r == 0)
                        usleep(10000);
        }
        assert_int_equal(r, agent_pid);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        agent_pid = 0;
        char dir[700];
        snprintf(dir, sizeof(dir), "%s/cocoon/c8", cg_root);
        assert_int_not_equal(access(dir, F_OK), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_health),
                cmocka_unit_test(test_run_output_status),
                cmocka_unit_test(test_exec_user_pidns_hostname),
                cmocka_unit_test(test_tty),
                cmocka_unit_test(test_large_output),
                cmocka_unit_test(test_seccomp),
                cmocka_unit_test(test_memory_oom_stats),
                cmocka_unit_test(test_pause_resume_remove),
                cmocka_unit_test(test_invalid),
                cmocka_unit_test(test_network),
                cmocka_unit_test(test_malformed_frame),
                cmocka_unit_test(test_sigterm_stops_containers),
                cmocka_unit_test(test_destroy),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
