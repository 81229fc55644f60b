/* SPDX-License-Identifier: Apache-2.0 */
#include "common/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"

extern char **environ;

static void fa_free(posix_spawn_file_actions_t *fa) { posix_spawn_file_actions_destroy(fa); }

/* fork + exec for what posix_spawn cannot do (a parent-death signal). The
 * child only makes async-signal-safe calls; an exec failure comes back
 * through a close-on-exec pipe. */
static int spawn_forked(const char *path, char *const argv[], const cc_spawn_opts *opts, pid_t *ret_pid)
{
        int pfd[2];
        if (pipe2(pfd, O_CLOEXEC) < 0)
                return errno;
        pid_t parent = getpid();
        pid_t pid = fork();
        if (pid < 0) {
                int e = errno;
                close(pfd[0]);
                close(pfd[1]);
                return e;
        }
        if (pid == 0) {
                int e = 0;
                sigset_t empty;
                sigemptyset(&empty);
                for (int sig = 1; sig < NSIG; sig++)
                        signal(sig, SIG_DFL);
                sigprocmask(SIG_SETMASK, &empty, NULL);
                if (opts->new_session && setsid() < 0)
                        e = errno;
                if (!e && prctl(PR_SET_PDEATHSIG, opts->pdeath_signal) < 0)
                        e = errno;
                if (!e && getppid() != parent)
                        _exit(127); /* the parent is already gone */
                int fds[3] = { opts->stdin_fd, opts->stdout_fd, opts->stderr_fd };
                for (int i = 0; !e && i < 3; i++) {
                        int fd = fds[i] >= 0 ? fds[i] : open("/dev/null", i == 0 ? O_RDONLY : O_WRONLY);
                        if (fd < 0 || (fd == i ? fcntl(fd, F_SETFD, 0) : dup2(fd, i)) < 0)
                                e = errno;
                }
                for (int i = 0; !e && i < opts->n_keep_fds; i++)
                        if (fcntl(opts->keep_fds[i], F_SETFD, 0) < 0)
                                e = errno;
                if (!e && opts->cwd && chdir(opts->cwd) < 0)
                        e = errno;
                if (!e) {
                        execve(path, argv, opts->envp ? opts->envp : environ);
                        e = errno;
                }
                ssize_t n = write(pfd[1], &e, sizeof(e));
                (void)n;
                _exit(127);
        }
        close(pfd[1]);
        int e = 0;
        ssize_t n;
        do
                n = read(pfd[0], &e, sizeof(e));
        while (n < 0 && errno == EINTR);
        close(pfd[0]);
        if (n == sizeof(e) && e != 0) {
                (void)waitpid(pid, NULL, 0);
                return e;
        }
        *ret_pid = pid;
        return 0;
}

/* posix_spawn with opts; 0 or an errno. */
static int spawn_posix(const char *path, char *const argv[], const cc_spawn_opts *opts, pid_t *ret_pid)
{
        posix_spawn_file_actions_t fa __attribute__((cleanup(fa_free)));
        posix_spawnattr_t attr;
        posix_spawn_file_actions_init(&fa);
        posix_spawnattr_init(&attr);

        int fds[3] = { opts->stdin_fd, opts->stdout_fd, opts->stderr_fd };
        for (int i = 0; i < 3; i++) {
                if (fds[i] >= 0)
                        posix_spawn_file_actions_adddup2(&fa, fds[i], i);
                else
                        posix_spawn_file_actions_addopen(&fa, i, "/dev/null", i == 0 ? O_RDONLY : O_WRONLY, 0);
        }
        /* dup2 onto itself does not clear O_CLOEXEC, so hand kept fds over
         * through a dup2 to a fresh number and back is not needed: glibc's
         * adddup2 with fd == newfd clears FD_CLOEXEC (since 2.29). */
        for (int i = 0; i < opts->n_keep_fds; i++)
                posix_spawn_file_actions_adddup2(&fa, opts->keep_fds[i], opts->keep_fds[i]);
        if (opts->cwd)
                posix_spawn_file_actions_addchdir_np(&fa, opts->cwd);

        short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
        sigset_t empty, all;
        sigemptyset(&empty);
        sigfillset(&all);
        posix_spawnattr_setsigmask(&attr, &empty);
        posix_spawnattr_setsigdefault(&attr, &all);
        if (opts->new_session)
                flags |= POSIX_SPAWN_SETSID;
        posix_spawnattr_setflags(&attr, flags);

        int r = posix_spawn(ret_pid, path, &fa, &attr, argv, opts->envp ? opts->envp : environ);
        posix_spawnattr_destroy(&attr);
        return r;
}

int cc_spawn(const char *path, char *const argv[], const cc_spawn_opts *opts, cc_proc *ret,
             cc_error **ret_err)
{
        cc_spawn_opts def = CC_SPAWN_OPTS_INIT;
        if (!opts)
                opts = &def;
        pid_t pid = -1;
        int e = opts->pdeath_signal ? spawn_forked(path, argv, opts, &pid) : spawn_posix(path, argv, opts, &pid);
        if (e != 0)
                return cc_error_set(ret_err, -e, "spawn '%s': %s", path, strerror(e));
        cc_proc p = { .pid = pid };
        (void)cc_proc_start_time(pid, &p.start_time);
        if (ret)
                *ret = p;
        return 0;
}

int cc_proc_start_time(pid_t pid, uint64_t *ret)
{
        char path[64], buf[1024];
        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? -ESRCH : -errno;
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
                return -ESRCH;
        buf[n] = 0;
        /* comm may contain spaces and ')': fields start after the last ')'. */
        char *p = strrchr(buf, ')');
        if (!p)
                return -EIO;
        p++;
        /* after ')': field 3 (state) ... field 22 (starttime) */
        char state = 0;
        unsigned long long st = 0;
        int field = 2;
        char *save = NULL;
        for (char *tok = strtok_r(p, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
                field++;
                if (field == 3)
                        state = tok[0];
                if (field == 22) {
                        st = strtoull(tok, NULL, 10);
                        break;
                }
        }
        if (field != 22)
                return -EIO;
        if (state == 'Z' || state == 'X')
                return -ESRCH;
        *ret = st;
        return 0;
}

bool cc_proc_alive(const cc_proc *p)
{
        uint64_t st;
        if (!p || p->pid <= 0 || cc_proc_start_time(p->pid, &st) < 0)
                return false;
        return st == p->start_time;
}

int cc_proc_pidfd(const cc_proc *p, cc_error **ret_err)
{
        int fd = (int)syscall(SYS_pidfd_open, p->pid, 0);
        if (fd < 0)
                return cc_error_errno(ret_err, "pidfd_open %d", (int)p->pid);
        uint64_t st;
        if (cc_proc_start_time(p->pid, &st) < 0 || st != p->start_time) {
                close(fd);
                return cc_error_set(ret_err, -ESRCH, "process %d is gone", (int)p->pid);
        }
        return fd;
}

static int64_t now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct outbuf {
        char *data;
        size_t len, cap;
} outbuf;

static int outbuf_read(int fd, outbuf *b, size_t max)
{
        char tmp[16384];
        ssize_t n = read(fd, tmp, sizeof(tmp));
        if (n <= 0)
                return n < 0 && (errno == EINTR || errno == EAGAIN) ? 1 : 0;
        size_t keep = b->len + (size_t)n > max ? max - b->len : (size_t)n;
        if (keep > 0) {
                if (b->len + keep + 1 > b->cap) {
                        size_t cap = CC_MAX(b->cap * 2, b->len + keep + 1);
                        char *nd = realloc(b->data, cap);
                        if (!nd)
                                return 0;
                        b->data = nd;
                        b->cap = cap;
                }
                memcpy(b->data + b->len, tmp, keep);
                b->len += keep;
                b->data[b->len] = 0;
        }
        return 1; /* keep draining past max so the child never blocks */
}

int cc_spawn_run(const char *path, char *const argv[], char *const envp[], const char *input,
                 size_t input_len, size_t max_output, int timeout_ms, char **ret_stdout,
                 char **ret_stderr, int *ret_status, cc_error **ret_err)
{
        int in[2] = { -1, -1 }, out[2] = { -1, -1 }, err[2] = { -1, -1 };
        int r;
        if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
                r = cc_error_errno(ret_err, "pipe");
                goto close_all;
        }
        cc_spawn_opts o = CC_SPAWN_OPTS_INIT;
        o.stdin_fd = in[0];
        o.stdout_fd = out[1];
        o.stderr_fd = err[1];
        o.envp = envp;
        o.new_session = true; /* own process group: a timeout kills all of it */
        cc_proc p;
        r = cc_spawn(path, argv, &o, &p, ret_err);
        if (r < 0)
                goto close_all;
        close(in[0]);
        close(out[1]);
        close(err[1]);
        in[0] = out[1] = err[1] = -1;
        /* A child that exits without reading its stdin must not kill us with
         * SIGPIPE: block it in this thread only, and eat a pending one below. */
        sigset_t pipe_set, old_mask;
        sigemptyset(&pipe_set);
        sigaddset(&pipe_set, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &pipe_set, &old_mask);
        fcntl(in[1], F_SETFL, O_NONBLOCK);

        outbuf bo = { 0 }, be = { 0 };
        size_t written = 0;
        if (!input || input_len == 0) {
                close(in[1]);
                in[1] = -1;
        }
        int64_t deadline = timeout_ms > 0 ? now_ms() + timeout_ms : -1;
        bool timed_out = false;
        while (out[0] >= 0 || err[0] >= 0) {
                struct pollfd pf[3] = { { out[0], POLLIN, 0 }, { err[0], POLLIN, 0 }, { in[1], POLLOUT, 0 } };
                int wait = -1;
                if (deadline >= 0) {
                        int64_t left = deadline - now_ms();
                        if (left <= 0) {
                                timed_out = true;
                                break;
                        }
                        wait = (int)left;
                }
                if (poll(pf, 3, wait) < 0 && errno != EINTR)
                        break;
                if (pf[0].revents && !outbuf_read(out[0], &bo, max_output)) {
                        close(out[0]);
                        out[0] = -1;
                }
                if (pf[1].revents && !outbuf_read(err[0], &be, max_output)) {
                        close(err[0]);
                        err[0] = -1;
                }
                if (in[1] >= 0 && pf[2].revents) {
                        ssize_t n = write(in[1], input + written, input_len - written);
                        if (n > 0)
                                written += (size_t)n;
                        if (n < 0 && errno != EAGAIN && errno != EINTR)
                                written = input_len;
                        if (written >= input_len) {
                                close(in[1]);
                                in[1] = -1;
                        }
                }
        }
        /* stdout/stderr closed does not mean exited: keep the deadline for
         * the exit too, watching a pidfd. */
        if (!timed_out && deadline >= 0) {
                int pfd = (int)syscall(SYS_pidfd_open, p.pid, 0);
                if (pfd >= 0) {
                        for (;;) {
                                int64_t left = deadline - now_ms();
                                if (left <= 0) {
                                        timed_out = true;
                                        break;
                                }
                                struct pollfd pp = { pfd, POLLIN, 0 };
                                int pr = poll(&pp, 1, (int)left);
                                if (pr > 0)
                                        break;
                                if (pr < 0 && errno != EINTR)
                                        break;
                        }
                        close(pfd);
                }
        }
        if (timed_out)
                kill(-p.pid, SIGKILL);
        if (!sigismember(&old_mask, SIGPIPE)) {
                struct timespec zero = { 0, 0 };
                while (sigtimedwait(&pipe_set, NULL, &zero) == SIGPIPE)
                        ;
                pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
        }
        int status = 0;
        while (waitpid(p.pid, &status, 0) < 0 && errno == EINTR)
                ;
        if (timed_out) {
                free(bo.data);
                free(be.data);
                r = cc_error_set(ret_err, -ETIMEDOUT, "'%s' did not finish within %d ms", path, timeout_ms);
                goto close_all;
        }
        if (ret_stdout)
                *ret_stdout = bo.data ? bo.data : strdup("");
        else
                free(bo.data);
        if (ret_stderr)
                *ret_stderr = be.data ? be.data : strdup("");
        else
                free(be.data);
        if (ret_status)
                *ret_status = status;
        r = 0;
close_all:
        for (int i = 0; i < 2; i++) {
                if (in[i] >= 0) close(in[i]);
                if (out[i] >= 0) close(out[i]);
                if (err[i] >= 0) close(err[i]);
        }
        return r;
}
