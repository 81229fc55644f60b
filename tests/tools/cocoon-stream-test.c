/* SPDX-License-Identifier: Apache-2.0 */
/* Test driver for the streaming server: runs it with a FAKE backend that
 * executes real local processes (pipes, or a pty for tty sessions), and
 * port-forwards to 127.0.0.1. Controlled over stdin, one command per line:
 *
 *   exec FLAGS ARG...        FLAGS ⊆ "iote" (stdin, stdout, tty, stderr), "-" for none
 *   attach FLAGS ARG...      same, kind attach (the fake attach runs ARG...)
 *   portforward PORT[,PORT]  prints the URL
 *   stats                    fds=N threads=N conns=N sessions=N tokens=N total=N
 *   quit
 *
 * Each command answers one line (the URL, or "ERR message"). At start it
 * prints "READY BASE_URL".
 * Options: --port N --token-ttl S --idle-timeout S --address A */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/spawn.h"
#include "cri-server/streaming/server.h"

typedef struct fake_req {
        char **argv;
} fake_req;

static void fake_req_free(void *p)
{
        fake_req *r = p;
        if (!r)
                return;
        cc_strv_free(r->argv);
        free(r);
}

typedef struct fake_proc {
        streaming_session *session;
        bool tty;
        pid_t pid;
        int in_fd;          /* stdin pipe write end, or pty master (dup) */
        int out_fd, err_fd; /* pipe read ends, or pty master */
        pthread_t out_t, err_t;
        bool out_started, err_started;
        pthread_mutex_t lock;
        bool reaped;
} fake_proc;

typedef struct pump_arg {
        fake_proc *p;
        int fd;
        streaming_channel ch;
} pump_arg;

static void *out_pump(void *arg)
{
        pump_arg *a = arg;
        char buf[65536];
        for (;;) {
                ssize_t n = read(a->fd, buf, sizeof(buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) /* EOF, or EIO from a pty whose slave closed */
                        break;
                if (streaming_session_write(a->p->session, a->ch, buf, (size_t)n) < 0)
                        break;
        }
        free(a);
        return NULL;
}

static int start_pump(fake_proc *p, int fd, streaming_channel ch, pthread_t *t)
{
        pump_arg *a = malloc(sizeof(*a));
        if (!a)
                return -ENOMEM;
        *a = (pump_arg){ p, fd, ch };
        int r = pthread_create(t, NULL, out_pump, a);
        if (r) {
                free(a);
                return -r;
        }
        return 0;
}

static int fake_start(void *backend, streaming_session *session, streaming_kind kind, void *payload,
                      const streaming_opts *opts, void **ret_handle, cc_error **ret_err)
{
        fake_req *req = payload;
        if (!req || !req->argv || !req->argv[0])
                return cc_error_set(ret_err, -EINVAL, "no command");
        if (strcmp(req->argv[0], "__fail__") == 0)
                return cc_error_set(ret_err, -ENOENT, "container \"fake\" not found");
        fake_proc *p = calloc(1, sizeof(*p));
        p->session = session;
        p->tty = opts->tty;
        p->in_fd = p->out_fd = p->err_fd = -1;
        pthread_mutex_init(&p->lock, NULL);
        cc_spawn_opts so = CC_SPAWN_OPTS_INIT;
        so.new_session = true;
        int child_fds[3] = { -1, -1, -1 };
        if (opts->tty) {
                int master, slave;
                uint16_t w, h;
                streaming_session_get_size(session, &w, &h);
                struct winsize ws = { .ws_row = h ? h : 24, .ws_col = w ? w : 80 };
                if (openpty(&master, &slave, NULL, NULL, &ws) < 0) {
                        free(p);
                        return cc_error_errno(ret_err, "openpty");
                }
                fcntl(master, F_SETFD, FD_CLOEXEC);
                fcntl(slave, F_SETFD, FD_CLOEXEC);
                child_fds[0] = child_fds[1] = child_fds[2] = slave;
                p->in_fd = master;
                p->out_fd = fcntl(master, F_DUPFD_CLOEXEC, 3);
        } else {
                int in[2] = { -1, -1 }, out[2] = { -1, -1 }, err[2] = { -1, -1 };
                if (opts->stdin_ && pipe2(in, O_CLOEXEC) == 0) {
                        child_fds[0] = in[0];
                        p->in_fd = in[1];
                }
                if (opts->stdout_ && pipe2(out, O_CLOEXEC) == 0) {
                        child_fds[1] = out[1];
                        p->out_fd = out[0];
                }
                if (opts->stderr_ && pipe2(err, O_CLOEXEC) == 0) {
                        child_fds[2] = err[1];
                        p->err_fd = err[0];
                }
        }
        so.stdin_fd = child_fds[0];
        so.stdout_fd = child_fds[1];
        so.stderr_fd = child_fds[2];
        cc_proc proc;
        int r = cc_spawn(req->argv[0], req->argv, &so, &proc, ret_err);
        for (int i = 0; i < 3; i++)
                if (child_fds[i] >= 0 && (i == 0 || child_fds[i] != child_fds[0]))
                        close(child_fds[i]);
        if (r < 0) {
                if (p->in_fd >= 0)
                        close(p->in_fd);
                if (p->out_fd >= 0)
                        close(p->out_fd);
                if (p->err_fd >= 0)
                        close(p->err_fd);
                free(p);
                return r;
        }
        p->pid = proc.pid;
        if (p->out_fd >= 0 && start_pump(p, p->out_fd, STREAMING_STDOUT, &p->out_t) == 0)
                p->out_started = true;
        if (p->err_fd >= 0 && start_pump(p, p->err_fd, STREAMING_STDERR, &p->err_t) == 0)
                p->err_started = true;
        *ret_handle = p;
        return 0;
}

static int fake_write_stdin(void *h, const void *buf, size_t len)
{
        fake_proc *p = h;
        const char *c = buf;
        while (len > 0) {
                pthread_mutex_lock(&p->lock);
                int fd = p->in_fd;
                pthread_mutex_unlock(&p->lock);
                if (fd < 0)
                        return -EPIPE;
                ssize_t n = write(fd, c, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return -errno;
                c += n;
                len -= (size_t)n;
        }
        return 0;
}

static int fake_close_stdin(void *h)
{
        fake_proc *p = h;
        pthread_mutex_lock(&p->lock);
        if (p->tty) {
                if (p->in_fd >= 0)
                        (void)!write(p->in_fd, "\x04", 1);
        } else if (p->in_fd >= 0) {
                close(p->in_fd);
                p->in_fd = -1;
        }
        pthread_mutex_unlock(&p->lock);
        return 0;
}

static int fake_resize(void *h, uint16_t w, uint16_t hh)
{
        fake_proc *p = h;
        struct winsize ws = { .ws_row = hh, .ws_col = w };
        pthread_mutex_lock(&p->lock);
        int r = p->tty && p->in_fd >= 0 ? ioctl(p->in_fd, TIOCSWINSZ, &ws) : 0;
        pthread_mutex_unlock(&p->lock);
        return r < 0 ? -errno : 0;
}

static int fake_wait(void *h, int *ret_code, cc_error **ret_err)
{
        fake_proc *p = h;
        int st = 0;
        while (waitpid(p->pid, &st, 0) < 0 && errno == EINTR)
                ;
        pthread_mutex_lock(&p->lock);
        p->reaped = true;
        pthread_mutex_unlock(&p->lock);
        if (p->out_started)
                pthread_join(p->out_t, NULL);
        if (p->err_started)
                pthread_join(p->err_t, NULL);
        p->out_started = p->err_started = false;
        *ret_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        return 0;
}

static void fake_cancel(void *h)
{
        fake_proc *p = h;
        pthread_mutex_lock(&p->lock);
        if (!p->reaped)
                kill(-p->pid, SIGKILL);
        if (p->in_fd >= 0 && !p->tty) {
                close(p->in_fd);
                p->in_fd = -1;
        }
        pthread_mutex_unlock(&p->lock);
}

static void fake_release(void *h)
{
        fake_proc *p = h;
        if (p->out_started)
                pthread_join(p->out_t, NULL);
        if (p->err_started)
                pthread_join(p->err_t, NULL);
        if (p->in_fd >= 0)
                close(p->in_fd);
        if (p->out_fd >= 0)
                close(p->out_fd);
        if (p->err_fd >= 0)
                close(p->err_fd);
        pthread_mutex_destroy(&p->lock);
        free(p);
}

static int fake_port_connect(void *backend, void *payload, uint16_t port, cc_error **ret_err)
{
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return cc_error_errno(ret_err, "socket");
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                int r = cc_error_errno(ret_err, "dial tcp4 127.0.0.1:%u", port);
                close(fd);
                return r;
        }
        return fd;
}

static const streaming_backend_ops fake_ops = {
        .start = fake_start,
        .write_stdin = fake_write_stdin,
        .close_stdin = fake_close_stdin,
        .resize = fake_resize,
        .wait = fake_wait,
        .cancel = fake_cancel,
        .release = fake_release,
        .port_connect = fake_port_connect,
};

static int count_fds(void)
{
        DIR *d = opendir("/proc/self/fd");
        int n = 0;
        if (!d)
                return -1;
        while (readdir(d))
                n++;
        closedir(d);
        return n - 3; /* ., .., the DIR's own fd */
}

static int count_threads(void)
{
        FILE *f = fopen("/proc/self/status", "re");
        char line[256];
        int n = -1;
        while (f && fgets(line, sizeof(line), f))
                if (sscanf(line, "Threads: %d", &n) == 1)
                        break;
        if (f)
                fclose(f);
        return n;
}

int main(int argc, char **argv)
{
        streaming_server_config cfg = {
                .address = "127.0.0.1",
                .token_ttl = 30,
                .idle_timeout = 0,
                .ops = &fake_ops,
        };
        static const struct option longopts[] = {
                { "port", required_argument, NULL, 'p' },
                { "token-ttl", required_argument, NULL, 't' },
                { "idle-timeout", required_argument, NULL, 'i' },
                { "address", required_argument, NULL, 'a' },
                {},
        };
        int c;
        while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
                switch (c) {
                case 'p': cfg.port = (uint16_t)atoi(optarg); break;
                case 't': cfg.token_ttl = atoi(optarg); break;
                case 'i': cfg.idle_timeout = atoi(optarg); break;
                case 'a': cfg.address = optarg; break;
                default: return 2;
                }
        }
        signal(SIGPIPE, SIG_IGN);
        setvbuf(stdout, NULL, _IOLBF, 0);
        streaming_server *s = NULL;
        cc_error *err = NULL;
        if (streaming_server_new(&cfg, &s, &err) < 0) {
                fprintf(stderr, "error: %s\n", err->msg);
                cc_error_free(err);
                return 1;
        }
        printf("READY %s\n", streaming_server_base_url(s));
        char line[8192];
        while (fgets(line, sizeof(line), stdin)) {
                line[strcspn(line, "\n")] = 0;
                char *save = NULL;
                char *cmd = strtok_r(line, " ", &save);
                if (!cmd)
                        continue;
                if (strcmp(cmd, "quit") == 0)
                        break;
                if (strcmp(cmd, "stats") == 0) {
                        streaming_stats st;
                        streaming_server_stats(s, &st);
                        printf("fds=%d threads=%d conns=%u sessions=%u tokens=%u total=%llu\n", count_fds(),
                               count_threads(), st.active_connections, st.active_sessions, st.outstanding_tokens,
                               st.sessions_total);
                        continue;
                }
                streaming_kind kind;
                streaming_opts o = { 0 };
                uint16_t ports[64];
                fake_req *req = calloc(1, sizeof(*req));
                if (strcmp(cmd, "exec") == 0 || strcmp(cmd, "attach") == 0) {
                        kind = cmd[0] == 'e' ? STREAMING_EXEC : STREAMING_ATTACH;
                        const char *flags = strtok_r(NULL, " ", &save);
                        if (!flags) {
                                printf("ERR missing flags\n");
                                fake_req_free(req);
                                continue;
                        }
                        o.stdin_ = strchr(flags, 'i');
                        o.stdout_ = strchr(flags, 'o');
                        o.stderr_ = strchr(flags, 'e');
                        o.tty = strchr(flags, 't');
                        char *args[256];
                        int n = 0;
                        /* the rest of the line is one sh -c script */
                        char *rest = save && *save ? save : NULL;
                        if (rest) {
                                args[n++] = "/bin/sh";
                                args[n++] = "-c";
                                args[n++] = rest;
                        }
                        args[n] = NULL;
                        req->argv = calloc((size_t)n + 1, sizeof(char *));
                        for (int i = 0; i < n; i++)
                                req->argv[i] = strdup(args[i]);
                        if (rest && strcmp(rest, "__fail__") == 0) {
                                cc_strv_free(req->argv);
                                req->argv = calloc(2, sizeof(char *));
                                req->argv[0] = strdup("__fail__");
                        }
                } else if (strcmp(cmd, "portforward") == 0) {
                        kind = STREAMING_PORTFORWARD;
                        char *list = strtok_r(NULL, " ", &save);
                        for (char *sv = NULL, *t = list ? strtok_r(list, ",", &sv) : NULL; t && o.n_ports < 64;
                             t = strtok_r(NULL, ",", &sv))
                                ports[o.n_ports++] = (uint16_t)atoi(t);
                        o.ports = ports;
                } else {
                        printf("ERR unknown command\n");
                        fake_req_free(req);
                        continue;
                }
                char *url = streaming_token_new(s, kind, &o, req, fake_req_free, &err);
                if (!url) {
                        printf("ERR %s\n", err->msg);
                        cc_error_free(err);
                        err = NULL;
                        continue;
                }
                printf("%s\n", url);
                free(url);
        }
        streaming_server_free(s);
        return 0;
}
