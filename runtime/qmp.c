/* SPDX-License-Identifier: Apache-2.0 */
#include "runtime/qmp.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/json.h"
#include "common/log.h"

#define QMP_MAX_DEPTH 32
#define QMP_MAX_DESC 200
#define QMP_MAX_CMD 64
/* QEMU creates the socket file (our inotify wake-up) a few microseconds
 * before it listens: retry soon, a 10 ms step was seen costing 10 ms of
 * every start */
#define QMP_CONNECT_RETRY_MS 1

struct qmp {
        int fd;
        char *buf;
        size_t len, cap;
        int64_t next_id;
        bool broken;
        json_object *events[QMP_MAX_EVENTS];
        size_t ev_head, ev_n;
};

static int64_t now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int left_ms(int64_t deadline)
{
        int64_t l = deadline - now_ms();
        if (l <= 0)
                return 0;
        return l > INT32_MAX ? INT32_MAX : (int)l;
}

/* Copies at most QMP_MAX_DESC bytes of s, printable ASCII only. */
static void sanitize(const char *s, char out[QMP_MAX_DESC + 4])
{
        size_t i = 0;
        for (; s && s[i] && i < QMP_MAX_DESC; i++)
                out[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
        if (s && s[i]) {
                memcpy(out + i, "...", 3);
                i += 3;
        }
        out[i] = 0;
}

static void event_push(qmp *q, json_object *ev)
{
        if (q->ev_n == QMP_MAX_EVENTS) {
                json_object_put(q->events[q->ev_head]);
                q->ev_head = (q->ev_head + 1) % QMP_MAX_EVENTS;
                q->ev_n--;
        }
        q->events[(q->ev_head + q->ev_n) % QMP_MAX_EVENTS] = ev;
        q->ev_n++;
}

int qmp_next_event(qmp *q, json_object **ret)
{
        if (!q || q->ev_n == 0)
                return -ENOENT;
        *ret = q->events[q->ev_head];
        q->events[q->ev_head] = NULL;
        q->ev_head = (q->ev_head + 1) % QMP_MAX_EVENTS;
        q->ev_n--;
        return 0;
}

static int broken(qmp *q, cc_error **ret_err, int code, const char *fmt, const char *arg)
{
        q->broken = true;
        return cc_error_set(ret_err, code, fmt, arg);
}

/* Reads more bytes into q->buf, waiting until deadline (< 0: do not wait).
 * Returns 1 when bytes arrived, 0 when nothing is readable in time. */
static int fill(qmp *q, int64_t deadline, cc_error **ret_err)
{
        if (q->len == q->cap) {
                if (q->cap >= QMP_MAX_LINE) {
                        q->broken = true;
                        return cc_error_set(ret_err, -EMSGSIZE, "qmp: line longer than %d bytes",
                                            QMP_MAX_LINE);
                }
                size_t cap = q->cap ? q->cap * 2 : 4096;
                if (cap > QMP_MAX_LINE)
                        cap = QMP_MAX_LINE;
                char *nb = realloc(q->buf, cap);
                if (!nb)
                        return cc_error_set(ret_err, -ENOMEM, "qmp: out of memory");
                q->buf = nb;
                q->cap = cap;
        }
        for (;;) {
                ssize_t n = recv(q->fd, q->buf + q->len, q->cap - q->len, MSG_DONTWAIT);
                if (n > 0) {
                        q->len += (size_t)n;
                        return 1;
                }
                if (n == 0)
                        return broken(q, ret_err, -ECONNRESET, "qmp: %s", "QEMU closed the connection");
                if (errno == EINTR)
                        continue;
                if (errno != EAGAIN && errno != EWOULDBLOCK) {
                        int e = errno;
                        q->broken = true;
                        return cc_error_set(ret_err, -e, "qmp: read: %s", strerror(e));
                }
                if (deadline < 0)
                        return 0;
                int wait = left_ms(deadline);
                if (wait == 0)
                        return 0;
                struct pollfd pfd = { q->fd, POLLIN, 0 };
                int r = poll(&pfd, 1, wait);
                if (r < 0 && errno != EINTR)
                        return cc_error_errno(ret_err, "qmp: poll");
        }
}

/* Returns 1 and the next JSON object in *ret, 0 when none arrived before the
 * deadline (deadline < 0: only what is already readable). */
static int read_object(qmp *q, int64_t deadline, json_object **ret, cc_error **ret_err)
{
        for (;;) {
                char *nl = q->len ? memchr(q->buf, '\n', q->len) : NULL;
                if (nl) {
                        size_t line_len = (size_t)(nl - q->buf);
                        size_t consumed = line_len + 1;
                        if (line_len > 0 && q->buf[line_len - 1] == '\r')
                                line_len--;
                        json_object *o = NULL;
                        int r = 0;
                        if (line_len > 0) {
                                cc_error *perr = NULL;
                                o = cc_json_parse(q->buf, line_len, QMP_MAX_LINE, QMP_MAX_DEPTH,
                                                  "qmp line", &perr);
                                if (!o) {
                                        q->broken = true;
                                        r = cc_error_propagate(ret_err, perr);
                                } else if (!json_object_is_type(o, json_type_object)) {
                                        json_object_put(o);
                                        o = NULL;
                                        r = broken(q, ret_err, -EBADMSG, "qmp: %s",
                                                   "a line is not a JSON object");
                                }
                        }
                        memmove(q->buf, q->buf + consumed, q->len - consumed);
                        q->len -= consumed;
                        if (r < 0)
                                return r;
                        if (!o)
                                continue; /* empty line */
                        *ret = o;
                        return 1;
                }
                int r = fill(q, deadline, ret_err);
                if (r <= 0)
                        return r;
        }
}

static int send_all(qmp *q, const char *data, size_t len, int64_t deadline, cc_error **ret_err)
{
        while (len > 0) {
                ssize_t n = send(q->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n > 0) {
                        data += n;
                        len -= (size_t)n;
                        continue;
                }
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
                        int e = errno;
                        q->broken = true;
                        return cc_error_set(ret_err, -e, "qmp: write: %s", strerror(e));
                }
                int wait = left_ms(deadline);
                if (wait == 0)
                        return cc_error_set(ret_err, -ETIMEDOUT, "qmp: write timed out");
                struct pollfd pfd = { q->fd, POLLOUT, 0 };
                if (poll(&pfd, 1, wait) < 0 && errno != EINTR)
                        return cc_error_errno(ret_err, "qmp: poll");
        }
        return 0;
}

static bool cmd_is_valid(const char *cmd)
{
        size_t n = cmd ? strlen(cmd) : 0;
        if (n == 0 || n > QMP_MAX_CMD)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = cmd[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '_'))
                        return false;
        }
        return true;
}

static int error_code(const char *cls)
{
        if (cls && strcmp(cls, "CommandNotFound") == 0)
                return -EOPNOTSUPP;
        if (cls && strcmp(cls, "DeviceNotFound") == 0)
                return -ENODEV;
        return -EIO;
}

/* Sends the first byte of data with fd attached (SCM_RIGHTS): QEMU takes
 * the fd with the command it reads next (getfd). */
static int send_with_fd(qmp *q, const char *data, int fd, cc_error **ret_err)
{
        ssize_t n = cc_send_fd(q->fd, data, 1, fd);
        if (n != 1) {
                int e = n < 0 ? (int)-n : EIO;
                q->broken = true;
                return cc_error_set(ret_err, -e, "qmp: send fd: %s", strerror(e));
        }
        return 0;
}

static int execute(qmp *q, const char *cmd, json_object *args, int send_fd, int timeout_ms,
                   json_object **ret_return, cc_error **ret_err);

int qmp_execute(qmp *q, const char *cmd, json_object *args, int timeout_ms,
                json_object **ret_return, cc_error **ret_err)
{
        return execute(q, cmd, args, -1, timeout_ms, ret_return, ret_err);
}

int qmp_getfd(qmp *q, const char *name, int fd, int timeout_ms, cc_error **ret_err)
{
        if (fd < 0)
                return cc_error_set(ret_err, -EBADF, "qmp 'getfd': no fd");
        _cleanup_json_ json_object *args = json_object_new_object();
        if (!args || json_object_object_add(args, "fdname", json_object_new_string(name)) < 0)
                return cc_error_set(ret_err, -ENOMEM, "qmp: out of memory");
        return execute(q, "getfd", args, fd, timeout_ms, NULL, ret_err);
}

static int execute(qmp *q, const char *cmd, json_object *args, int send_fd, int timeout_ms,
                   json_object **ret_return, cc_error **ret_err)
{
        if (!q || q->broken)
                return cc_error_set(ret_err, -ENOTCONN, "qmp '%s': not connected", cmd ? cmd : "?");
        if (!cmd_is_valid(cmd))
                return cc_error_set(ret_err, -EINVAL, "qmp: invalid command name");
        if (args && !json_object_is_type(args, json_type_object))
                return cc_error_set(ret_err, -EINVAL, "qmp '%s': arguments must be an object", cmd);
        int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
        int64_t id = q->next_id++;

        _cleanup_json_ json_object *req = json_object_new_object();
        if (!req)
                return cc_error_set(ret_err, -ENOMEM, "qmp: out of memory");
        json_object_object_add(req, "execute", json_object_new_string(cmd));
        if (args)
                json_object_object_add(req, "arguments", json_object_get(args));
        json_object_object_add(req, "id", json_object_new_int64(id));
        const char *s = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
        _cleanup_free_ char *line = NULL;
        if (!s || asprintf(&line, "%s\n", s) < 0)
                return cc_error_set(ret_err, -ENOMEM, "qmp: out of memory");
        cc_error *err = NULL;
        size_t off = 0;
        if (send_fd >= 0) {
                if (send_with_fd(q, line, send_fd, &err) < 0)
                        goto fail;
                off = 1;
        }
        if (send_all(q, line + off, strlen(line) - off, deadline, &err) < 0)
                goto fail;

        for (;;) {
                json_object *o = NULL;
                int r = read_object(q, deadline, &o, &err);
                if (r < 0)
                        goto fail;
                if (r == 0) {
                        cc_error_set(&err, -ETIMEDOUT, "no reply within %d ms", timeout_ms);
                        goto fail;
                }
                _cleanup_json_ json_object *msg = o;
                if (json_object_object_get_ex(msg, "event", NULL)) {
                        event_push(q, TAKE_PTR(msg));
                        continue;
                }
                json_object *idv = cc_json_get_typed(msg, "id", json_type_int);
                if (!idv || json_object_get_int64(idv) != id) {
                        log_debug("qmp: dropping a message that answers no pending command");
                        continue;
                }
                json_object *e = cc_json_get_typed(msg, "error", json_type_object);
                if (e) {
                        char cls[QMP_MAX_DESC + 4], desc[QMP_MAX_DESC + 4];
                        json_object *c = cc_json_get_typed(e, "class", json_type_string);
                        json_object *d = cc_json_get_typed(e, "desc", json_type_string);
                        sanitize(c ? json_object_get_string(c) : "Error", cls);
                        sanitize(d ? json_object_get_string(d) : "(no description)", desc);
                        return cc_error_set(ret_err, error_code(cls), "qmp '%s': %s: %s", cmd, cls, desc);
                }
                json_object *rv = NULL;
                if (!json_object_object_get_ex(msg, "return", &rv)) {
                        cc_error_set(&err, -EBADMSG, "reply has neither 'return' nor 'error'");
                        goto fail;
                }
                if (ret_return)
                        *ret_return = json_object_get(rv);
                return 0;
        }
fail:
        cc_error_prefix(&err, "qmp '%s'", cmd);
        return cc_error_propagate(ret_err, err);
}

int qmp_poll_events(qmp *q, cc_error **ret_err)
{
        if (!q || q->broken)
                return cc_error_set(ret_err, -ENOTCONN, "qmp: not connected");
        for (;;) {
                json_object *o = NULL;
                int r = read_object(q, -1, &o, ret_err);
                if (r <= 0)
                        return r;
                if (json_object_object_get_ex(o, "event", NULL))
                        event_push(q, o);
                else
                        json_object_put(o);
        }
}

int qmp_open_fd(int fd, int timeout_ms, qmp **ret, cc_error **ret_err)
{
        qmp *q = calloc(1, sizeof(*q));
        if (!q) {
                close(fd);
                return cc_error_set(ret_err, -ENOMEM, "qmp: out of memory");
        }
        q->fd = fd;
        q->next_id = 1;
        int flags = fcntl(fd, F_GETFL);
        if (flags >= 0)
                (void)fcntl(fd, F_SETFL, flags | O_NONBLOCK);

        int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
        cc_error *err = NULL;
        json_object *greeting = NULL;
        int r = read_object(q, deadline, &greeting, &err);
        if (r == 0)
                r = cc_error_set(&err, -ETIMEDOUT,
                                 "qmp: no greeting within %d ms (is another client connected?)",
                                 timeout_ms);
        if (r < 0)
                goto fail;
        bool ok = json_object_object_get_ex(greeting, "QMP", NULL);
        json_object_put(greeting);
        if (!ok) {
                r = cc_error_set(&err, -EBADMSG, "qmp: the first message is not a QMP greeting");
                goto fail;
        }
        r = qmp_execute(q, "qmp_capabilities", NULL, left_ms(deadline), NULL, &err);
        if (r < 0)
                goto fail;
        *ret = q;
        return 0;
fail:
        qmp_free(q);
        return cc_error_propagate(ret_err, err);
}

int qmp_connect(const char *path, int timeout_ms, qmp **ret, cc_error **ret_err)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (!path || strlen(path) >= sizeof(sa.sun_path))
                return cc_error_set(ret_err, -ENAMETOOLONG, "qmp: socket path too long");
        strcpy(sa.sun_path, path);
        int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
        for (;;) {
                _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
                if (fd < 0)
                        return cc_error_errno(ret_err, "qmp: socket");
                if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
                        int r = qmp_open_fd(TAKE_FD(fd), left_ms(deadline), ret, ret_err);
                        if (r < 0)
                                cc_error_prefix(ret_err, "%s", path);
                        return r;
                }
                int e = errno;
                /* bind() creates the file before listen(); a full backlog says EAGAIN */
                bool retry = e == ECONNREFUSED || e == ENOENT || e == EAGAIN;
                if (!retry || left_ms(deadline) == 0)
                        return cc_error_set(ret_err, -e, "qmp: connect %s: %s", path, strerror(e));
                struct timespec ts = { 0, QMP_CONNECT_RETRY_MS * 1000000L };
                nanosleep(&ts, NULL);
        }
}

int qmp_fd(qmp *q) { return q ? q->fd : -1; }

void qmp_free(qmp *q)
{
        if (!q)
                return;
        if (q->fd >= 0)
                close(q->fd);
        json_object *ev;
        while (qmp_next_event(q, &ev) == 0)
                json_object_put(ev);
        free(q->buf);
        free(q);
}
