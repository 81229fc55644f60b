/* SPDX-License-Identifier: Apache-2.0 */
/* Forking container processes.
 *
 *   agent --fork--> helper: joins the cgroup, setns() the namespaces given by
 *                   path (or those of the container, for an exec), unshare()s
 *                   the new ones --fork--> process (pid 1 of a new pid
 *                   namespace, or a member of the joined one); the helper
 *                   reports the process's pid and exits, and the process is
 *                   reparented to the agent (PID 1 or child subreaper).
 *
 * The process reports over a SOCK_SEQPACKET pair: SYNC_READY after setup
 * (an init then blocks until StartContainer writes a byte), SYNC_ERROR with
 * errno and the failed step; the socket is close-on-exec, so EOF after
 * READY means execve() succeeded.
 *
 * A terminal comes from the container's own devpts instance, as runc's
 * console socket: the process opens /dev/ptmx once it is in the container's
 * mount namespace (an init after its mounts and pivot_root, an exec after
 * setns), makes the slave its controlling terminal and stdio, and passes
 * the master to the agent (SYNC_PTY, SCM_RIGHTS) before READY. So
 * ttyname() inside finds /dev/pts/N, which a pty of the agent's /dev/pts
 * could not give. The caller holds agent_lock, so the
 * reactor cannot reap the new pid before it is registered.
 *
 * fork() in the threaded agent is safe here because glibc resets its
 * allocator and stdio locks in the child, and the child mostly makes system
 * calls on data the agent prepared (agent_exec_plan). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "agent/spawn.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "common/log.h"

#define SYNC_TIMEOUT_MS 30000

typedef struct sync_msg {
        int32_t kind;
        int32_t value;
        char what[248];
} sync_msg;

enum { SYNC_PID = 1, SYNC_READY, SYNC_ERROR, SYNC_PTY };

static void send_msg(int fd, int kind, int value, const char *what)
{
        sync_msg m = { .kind = kind, .value = value };
        if (what)
                snprintf(m.what, sizeof(m.what), "%s", what);
        while (send(fd, &m, sizeof(m), MSG_NOSIGNAL) < 0 && errno == EINTR)
                ;
}

/* The message with fd attached (SCM_RIGHTS). */
static int send_fd_msg(int sock, int kind, int fd)
{
        sync_msg m = { .kind = kind };
        ssize_t n = cc_send_fd(sock, &m, sizeof(m), fd);
        return n < 0 ? (int)n : 0;
}

static __attribute__((noreturn)) void child_fail(int fd, int err, const char *what)
{
        send_msg(fd, SYNC_ERROR, err < 0 ? err : -err, what);
        _exit(127);
}

static int write_str(const char *path, const char *val)
{
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        ssize_t n = write(fd, val, strlen(val));
        int e = n < 0 ? -errno : 0;
        close(fd);
        return e;
}

static int set_sysctls(const Grpc__Spec *spec, const char **ret_what)
{
        if (!spec->linux)
                return 0;
        for (size_t i = 0; i < spec->linux->n_sysctl; i++) {
                const Grpc__Linux__SysctlEntry *e = spec->linux->sysctl[i];
                char path[PATH_MAX];
                int n = snprintf(path, sizeof(path), "/proc/sys/%s", e->key);
                if (n >= (int)sizeof(path))
                        return *ret_what = "sysctl key", -ENAMETOOLONG;
                for (char *p = path + 10; *p; p++)
                        if (*p == '.')
                                *p = '/';
                int r = write_str(path, e->value ? e->value : "");
                if (r < 0)
                        return *ret_what = e->key, r;
        }
        return 0;
}

static void setup_stdio(const spawn_args *a)
{
        setsid();
        for (int i = 0; i < 3; i++) {
                int fd = a->stdio[i];
                if (fd < 0)
                        continue;
                if (fd == i) {
                        fcntl(fd, F_SETFD, 0);
                } else if (dup2(fd, i) < 0) {
                        child_fail(a->sync_child, -errno, "dup2 stdio");
                }
        }
}

/* In the container's mount namespace: a pty of its devpts instance becomes
 * the controlling terminal and stdio; the master goes to the agent. */
static void setup_terminal(const spawn_args *a)
{
        const agent_exec_plan *p = a->plan;
        int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (master < 0)
                child_fail(a->sync_child, -errno, "terminal: open /dev/ptmx in the container");
        int unlock = 0;
        if (ioctl(master, TIOCSPTLCK, &unlock) < 0)
                child_fail(a->sync_child, -errno, "terminal: unlock pty");
        /* TIOCGPTPEER opens the slave of this very master (no path to
         * race on); older kernels: by its number under /dev/pts. */
        int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (slave < 0) {
                unsigned n;
                char name[32];
                if (ioctl(master, TIOCGPTN, &n) < 0)
                        child_fail(a->sync_child, -errno, "terminal: pty number");
                snprintf(name, sizeof(name), "/dev/pts/%u", n);
                if ((slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0)
                        child_fail(a->sync_child, -errno, "terminal: open the pty slave");
        }
        if (p->rows && p->cols) {
                struct winsize ws = { .ws_row = p->rows, .ws_col = p->cols };
                ioctl(slave, TIOCSWINSZ, &ws);
        }
        /* as runc: the process's user owns its terminal */
        if (p->set_user && fchown(slave, p->uid, (gid_t)-1) < 0 && errno != EPERM && errno != EROFS)
                child_fail(a->sync_child, -errno, "terminal: chown the pty slave");
        int r = send_fd_msg(a->sync_child, SYNC_PTY, master);
        if (r < 0)
                child_fail(a->sync_child, r, "terminal: pass the pty master");
        close(master);
        if (setsid() < 0)
                child_fail(a->sync_child, -errno, "setsid");
        if (ioctl(slave, TIOCSCTTY, 0) < 0)
                child_fail(a->sync_child, -errno, "TIOCSCTTY");
        for (int i = 0; i < 3; i++)
                if (dup2(slave, i) < 0)
                        child_fail(a->sync_child, -errno, "dup2 pty");
        if (slave > 2)
                close(slave);
}

static __attribute__((noreturn)) void process_main(const spawn_args *a)
{
        const char *what = NULL;
        int r;
        if (!a->plan->terminal)
                setup_stdio(a);
        if (!a->exec_target) {
                if ((r = agent_mounts_setup(a->spec, a->rootfs, &what)) < 0)
                        child_fail(a->sync_child, r, what);
                if (a->hostname && sethostname(a->hostname, strlen(a->hostname)) < 0)
                        child_fail(a->sync_child, -errno, "sethostname");
                if ((r = set_sysctls(a->spec, &what)) < 0)
                        child_fail(a->sync_child, r, what);
        }
        if (a->plan->terminal)
                setup_terminal(a);
        if (chdir(a->plan->cwd) < 0)
                child_fail(a->sync_child, -errno, "chdir to the process cwd");
        send_msg(a->sync_child, SYNC_READY, 0, NULL);
        if (!a->exec_target) {
                char b;
                ssize_t n;
                while ((n = read(a->sync_child, &b, 1)) < 0 && errno == EINTR)
                        ;
                if (n != 1) /* the agent gave up on this container */
                        _exit(127);
        }
        if ((r = agent_plan_apply(a->plan, &what)) < 0)
                child_fail(a->sync_child, r, what);
        r = agent_plan_exec(a->plan);
        child_fail(a->sync_child, r, "execve");
}

static int join_ns(const char *path, int type)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        int r = setns(fd, type) < 0 ? -errno : 0;
        close(fd);
        return r;
}

static __attribute__((noreturn)) void helper_main(const spawn_args *a)
{
        sigset_t none;
        sigemptyset(&none);
        for (int s = 1; s < NSIG; s++)
                signal(s, SIG_DFL);
        sigprocmask(SIG_SETMASK, &none, NULL);
        int r;
        if (a->cgroup) {
                char p[PATH_MAX];
                snprintf(p, sizeof(p), "%s/cgroup.procs", a->cgroup);
                if ((r = write_str(p, "0")) < 0)
                        child_fail(a->sync_child, r, "join cgroup");
        }
        if (a->exec_target) {
                static const struct { const char *name; int type; } ns[] = {
                        { "cgroup", CLONE_NEWCGROUP }, { "ipc", CLONE_NEWIPC }, { "uts", CLONE_NEWUTS },
                        { "net", CLONE_NEWNET }, { "pid", CLONE_NEWPID }, { "mnt", CLONE_NEWNS },
                };
                int fds[CC_ARRAY_SIZE(ns)];
                /* Open all first: after setns(mnt) /proc is the container's. */
                for (size_t i = 0; i < CC_ARRAY_SIZE(ns); i++) {
                        char p[64];
                        snprintf(p, sizeof(p), "/proc/%d/ns/%s", (int)a->exec_target, ns[i].name);
                        fds[i] = open(p, O_RDONLY | O_CLOEXEC);
                        if (fds[i] < 0)
                                child_fail(a->sync_child, -errno, "open container namespace");
                }
                for (size_t i = 0; i < CC_ARRAY_SIZE(ns); i++) {
                        char self[64], their[64], p[64];
                        /* setns into the namespace we are already in fails
                         * for some types: skip those. */
                        snprintf(p, sizeof(p), "/proc/self/ns/%s", ns[i].name);
                        ssize_t n1 = readlink(p, self, sizeof(self) - 1);
                        snprintf(p, sizeof(p), "/proc/%d/ns/%s", (int)a->exec_target, ns[i].name);
                        ssize_t n2 = readlink(p, their, sizeof(their) - 1);
                        if (n1 > 0 && n1 == n2 && memcmp(self, their, n1) == 0 && ns[i].type != CLONE_NEWNS)
                                continue;
                        if (setns(fds[i], ns[i].type) < 0)
                                child_fail(a->sync_child, -errno, ns[i].name);
                }
        } else {
                for (size_t i = 0; i < a->n_join; i++)
                        if ((r = join_ns(a->join[i].path, a->join[i].type)) < 0)
                                child_fail(a->sync_child, r, a->join[i].path);
                if (unshare(a->unshare_flags) < 0)
                        child_fail(a->sync_child, -errno, "unshare");
        }
        pid_t pid = fork();
        if (pid < 0)
                child_fail(a->sync_child, -errno, "fork");
        if (pid == 0)
                process_main(a);
        send_msg(a->sync_child, SYNC_PID, pid, NULL);
        _exit(0);
}

/* One message; an fd passed with it goes to *ret_fd (closed if ret_fd is
 * NULL or one is already held). */
static int recv_msg(int fd, sync_msg *m, int timeout_ms, int *ret_fd)
{
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int r;
        while ((r = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR)
                ;
        if (r == 0)
                return -ETIMEDOUT;
        struct iovec iov = { .iov_base = m, .iov_len = sizeof(*m) };
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int) * 4)];
        } c;
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.buf, .msg_controllen = sizeof(c.buf) };
        ssize_t n;
        while ((n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
                ;
        if (n < 0)
                return -errno;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
                if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
                        continue;
                size_t nfds = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < nfds; i++) {
                        int got;
                        memcpy(&got, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
                        if (ret_fd && *ret_fd < 0 && m->kind == SYNC_PTY && n == sizeof(*m))
                                *ret_fd = got;
                        else
                                close(got);
                }
        }
        if (n == 0)
                return 0;
        if (n != sizeof(*m))
                return -EBADMSG;
        m->what[sizeof(m->what) - 1] = 0;
        return 1;
}

/* Reads until READY (or, with until_eof, EOF after READY). A terminal's
 * master arrives before READY. */
static int wait_child(int fd, pid_t *pid, int *pty, bool until_eof, cc_error **ret_err)
{
        bool ready = false;
        for (;;) {
                sync_msg m;
                int r = recv_msg(fd, &m, SYNC_TIMEOUT_MS, pty);
                if (r < 0)
                        return cc_error_set(ret_err, r, "container setup: %s", strerror(-r));
                if (r == 0) {
                        if (ready && *pid > 0)
                                return 0;
                        return cc_error_set(ret_err, -EIO, "container setup: process died");
                }
                if (m.kind == SYNC_PID && m.value > 0) {
                        *pid = m.value;
                } else if (m.kind == SYNC_READY) {
                        ready = true;
                } else if (m.kind == SYNC_ERROR) {
                        int e = m.value < 0 ? m.value : -EIO;
                        return cc_error_set(ret_err, e, "%s: %s", m.what, strerror(-e));
                }
                if (ready && *pid > 0 && !until_eof)
                        return 0;
        }
}

int agent_spawn(spawn_args *a, int *ret_sync, pid_t *ret_pid, int *ret_pty, cc_error **ret_err)
{
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                return cc_error_errno(ret_err, "socketpair");
        _cleanup_close_ int parent = sv[0];
        a->sync_child = sv[1];
        pid_t helper = fork();
        if (helper < 0) {
                close(sv[1]);
                return cc_error_errno(ret_err, "fork");
        }
        if (helper == 0)
                helper_main(a);
        close(sv[1]);
        a->sync_child = -1;
        pid_t pid = 0;
        _cleanup_close_ int pty = -1;
        int r = wait_child(parent, &pid, &pty, a->exec_target != 0, ret_err);
        if (r >= 0 && a->plan->terminal && pty < 0)
                r = cc_error_set(ret_err, -EIO, "container setup: no terminal from the process");
        if (r < 0) {
                if (pid > 0)
                        kill(pid, SIGKILL);
                return r;
        }
        *ret_pid = pid;
        if (ret_pty)
                *ret_pty = TAKE_FD(pty);
        if (ret_sync)
                *ret_sync = TAKE_FD(parent);
        return 0;
}

int agent_spawn_start(int sync_fd, cc_error **ret_err)
{
        char b = 1;
        if (send(sync_fd, &b, 1, MSG_NOSIGNAL) != 1)
                return cc_error_errno(ret_err, "start container");
        sync_msg m;
        int r = recv_msg(sync_fd, &m, SYNC_TIMEOUT_MS, NULL);
        if (r < 0)
                return cc_error_set(ret_err, r, "start container: %s", strerror(-r));
        if (r > 0 && m.kind == SYNC_ERROR) {
                int e = m.value < 0 ? m.value : -EIO;
                return cc_error_set(ret_err, e, "start container: %s: %s", m.what, strerror(-e));
        }
        return 0;
}
