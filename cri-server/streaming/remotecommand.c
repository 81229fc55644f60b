/* SPDX-License-Identifier: Apache-2.0 */
/* Exec/attach sessions: stdin queue and pump, resize events, the final
 * status on the error channel. Transports (spdy.c, websocket.c) feed input
 * and provide a send() that blocks under flow control. */
#include "cri-server/streaming/remotecommand.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "cri-server/streaming/internal.h"

#define RESIZE_BUF 4096

struct streaming_session {
        st_ticket *tk;
        st_transport *t;
        void *handle;

        pthread_mutex_t lock;
        pthread_cond_t cond;
        unsigned char *q; /* stdin ring buffer, ST_STDIN_QUEUE bytes */
        size_t q_head, q_len;
        bool stdin_eof;
        bool gone, cancelled, finished;
        uint16_t width, height;

        char resize_buf[RESIZE_BUF];
        size_t resize_len;

        pthread_t waiter, pump;
        bool waiter_started, pump_started;
};

int rc_protocol_version(const char *name)
{
        if (!name)
                return 0;
        if (strcmp(name, RC_PROTO_V5) == 0)
                return 5;
        if (strcmp(name, RC_PROTO_V4) == 0)
                return 4;
        if (strcmp(name, RC_PROTO_V3) == 0)
                return 3;
        if (strcmp(name, RC_PROTO_V2) == 0)
                return 2;
        if (strcmp(name, RC_PROTO_V1) == 0)
                return 1;
        return 0;
}

/* ---------------- status ---------------- */

static char *json_escape(const char *s)
{
        size_t n = strlen(s);
        char *o = malloc(n * 6 + 1);
        if (!o)
                return NULL;
        char *p = o;
        for (; *s; s++) {
                unsigned char ch = (unsigned char)*s;
                if (ch == '"' || ch == '\\') {
                        *p++ = '\\';
                        *p++ = (char)ch;
                } else if (ch == '\n') {
                        *p++ = '\\';
                        *p++ = 'n';
                } else if (ch < 0x20) {
                        p += sprintf(p, "\\u%04x", ch);
                } else if (ch == '<' || ch == '>' || ch == '&') {
                        p += sprintf(p, "\\u%04x", ch); /* as Go's encoding/json does */
                } else {
                        *p++ = (char)ch;
                }
        }
        *p = 0;
        return o;
}

char *rc_status_message(int version, int exit_code, const char *internal_error)
{
        char *out = NULL;
        int r;
        if (internal_error) {
                if (version < 4)
                        return asprintf(&out, "Internal error occurred: %s", internal_error) < 0 ? NULL : out;
                _cleanup_free_ char *e = json_escape(internal_error);
                if (!e)
                        return NULL;
                r = asprintf(&out,
                             "{\"metadata\":{},\"status\":\"Failure\",\"message\":\"Internal error occurred: %s\","
                             "\"reason\":\"InternalError\",\"details\":{\"causes\":[{\"message\":\"%s\"}]},\"code\":500}",
                             e, e);
        } else if (exit_code == 0) {
                if (version < 4)
                        return strdup("");
                r = asprintf(&out, "{\"metadata\":{},\"status\":\"Success\"}");
        } else {
                if (version < 4)
                        return asprintf(&out, "command terminated with non-zero exit code: exit status %d", exit_code) < 0 ? NULL : out;
                r = asprintf(&out,
                             "{\"metadata\":{},\"status\":\"Failure\",\"message\":\"command terminated with non-zero "
                             "exit code: exit status %d\",\"reason\":\"NonZeroExitCode\",\"details\":{\"causes\":"
                             "[{\"reason\":\"ExitCode\",\"message\":\"%d\"}]}}",
                             exit_code, exit_code);
        }
        return r < 0 ? NULL : out;
}

static void send_status(rc_session *s, int exit_code, const char *internal_error)
{
        _cleanup_free_ char *msg = rc_status_message(s->t->version, exit_code, internal_error);
        if (msg && *msg)
                (void)s->t->ops->send(s->t, ST_CH_ERROR, msg, strlen(msg));
        (void)s->t->ops->close_channel(s->t, ST_CH_ERROR);
}

/* ---------------- backend-facing ---------------- */

int streaming_session_write(streaming_session *s, streaming_channel ch, const void *buf, size_t len)
{
        if (ch != STREAMING_STDOUT && ch != STREAMING_STDERR)
                return -EINVAL;
        pthread_mutex_lock(&s->lock);
        bool gone = s->gone;
        pthread_mutex_unlock(&s->lock);
        if (gone)
                return -EPIPE;
        const streaming_opts *o = &s->tk->opts;
        if ((ch == STREAMING_STDOUT && !o->stdout_) || (ch == STREAMING_STDERR && (!o->stderr_ || o->tty)))
                return 0; /* not requested: discard */
        if (len == 0)
                return 0;
        int r = s->t->ops->send(s->t, (int)ch, buf, len);
        return r < 0 ? -EPIPE : 0;
}

void streaming_session_get_size(streaming_session *s, uint16_t *w, uint16_t *h)
{
        pthread_mutex_lock(&s->lock);
        *w = s->width;
        *h = s->height;
        pthread_mutex_unlock(&s->lock);
}

/* ---------------- threads ---------------- */

static void *waiter_thread(void *arg)
{
        rc_session *s = arg;
        int code = 0;
        _cleanup_error_ cc_error *err = NULL;
        int r = s->tk->ops->wait(s->handle, &code, &err);
        pthread_mutex_lock(&s->lock);
        bool gone = s->gone;
        pthread_mutex_unlock(&s->lock);
        if (!gone) {
                if (s->tk->opts.stdout_)
                        (void)s->t->ops->close_channel(s->t, ST_CH_STDOUT);
                if (s->tk->opts.stderr_ && !s->tk->opts.tty)
                        (void)s->t->ops->close_channel(s->t, ST_CH_STDERR);
                if (r < 0)
                        send_status(s, 0, err ? err->msg : strerror(-r));
                else
                        send_status(s, s->tk->kind == STREAMING_ATTACH ? 0 : code, NULL);
                s->t->ops->finish(s->t);
        }
        pthread_mutex_lock(&s->lock);
        s->finished = true;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
        return NULL;
}

static void *pump_thread(void *arg)
{
        rc_session *s = arg;
        pthread_mutex_lock(&s->lock);
        for (;;) {
                while (!s->gone && s->q_len == 0 && !s->stdin_eof)
                        pthread_cond_wait(&s->cond, &s->lock);
                if (s->gone)
                        break;
                if (s->q_len == 0 && s->stdin_eof) {
                        pthread_mutex_unlock(&s->lock);
                        if (s->tk->ops->close_stdin)
                                s->tk->ops->close_stdin(s->handle);
                        return NULL;
                }
                size_t n = CC_MIN(s->q_len, (size_t)ST_STDIN_QUEUE - s->q_head);
                const unsigned char *p = s->q + s->q_head;
                pthread_mutex_unlock(&s->lock);
                int r = s->tk->ops->write_stdin(s->handle, p, n);
                pthread_mutex_lock(&s->lock);
                s->q_head = (s->q_head + n) % ST_STDIN_QUEUE;
                s->q_len -= n;
                pthread_cond_broadcast(&s->cond);
                if (r < 0) {
                        /* process closed its stdin: discard the rest quietly */
                        s->q_len = 0;
                        s->q_head = 0;
                }
                pthread_mutex_unlock(&s->lock);
                s->t->ops->credit(s->t, ST_CH_STDIN, n);
                pthread_mutex_lock(&s->lock);
        }
        pthread_mutex_unlock(&s->lock);
        return NULL;
}

int rc_session_start(st_ticket *tk, st_transport *t, rc_session **ret)
{
        rc_session *s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->tk = tk;
        s->t = t;
        pthread_mutex_init(&s->lock, NULL);
        pthread_cond_init(&s->cond, NULL);
        if (tk->opts.stdin_) {
                s->q = malloc(ST_STDIN_QUEUE);
                if (!s->q) {
                        rc_session_join_free(s);
                        return -ENOMEM;
                }
        }
        _cleanup_error_ cc_error *err = NULL;
        int r = tk->ops->start(tk->backend_data, s, tk->kind, tk->payload, &tk->opts, &s->handle, &err);
        if (r < 0) {
                send_status(s, 0, err ? err->msg : strerror(-r));
                t->ops->finish(t);
                rc_session_join_free(s);
                return r;
        }
        st_server_session_count(tk->server, +1);
        r = st_thread_create(&s->waiter, waiter_thread, s);
        if (r < 0) {
                tk->ops->cancel(s->handle);
                int code;
                tk->ops->wait(s->handle, &code, NULL);
                send_status(s, 0, "out of threads");
                t->ops->finish(t);
                rc_session_join_free(s);
                return r;
        }
        s->waiter_started = true;
        if (tk->opts.stdin_) {
                r = st_thread_create(&s->pump, pump_thread, s);
                if (r < 0) {
                        rc_session_client_gone(s);
                        rc_session_join_free(s);
                        return r;
                }
                s->pump_started = true;
        }
        *ret = s;
        return 0;
}

/* Extracts complete JSON objects from the resize buffer. */
static void parse_resizes(rc_session *s)
{
        size_t start = 0;
        for (;;) {
                size_t i = start;
                while (i < s->resize_len && s->resize_buf[i] != '{')
                        i++;
                if (i >= s->resize_len) {
                        s->resize_len = 0;
                        return;
                }
                size_t obj = i;
                int depth = 0;
                bool in_str = false, esc = false;
                size_t end = 0;
                for (; i < s->resize_len; i++) {
                        char ch = s->resize_buf[i];
                        if (in_str) {
                                if (esc)
                                        esc = false;
                                else if (ch == '\\')
                                        esc = true;
                                else if (ch == '"')
                                        in_str = false;
                        } else if (ch == '"') {
                                in_str = true;
                        } else if (ch == '{') {
                                depth++;
                        } else if (ch == '}' && --depth == 0) {
                                end = i + 1;
                                break;
                        }
                }
                if (!end) {
                        memmove(s->resize_buf, s->resize_buf + obj, s->resize_len - obj);
                        s->resize_len -= obj;
                        return;
                }
                /* scan "key": number pairs at depth 1 */
                long w = -1, h = -1;
                const char *p = s->resize_buf + obj + 1, *e = s->resize_buf + end - 1;
                while (p < e) {
                        const char *q = memchr(p, '"', (size_t)(e - p));
                        if (!q)
                                break;
                        const char *qe = memchr(q + 1, '"', (size_t)(e - q - 1));
                        if (!qe)
                                break;
                        size_t kl = (size_t)(qe - q - 1);
                        const char *v = qe + 1;
                        while (v < e && (*v == ' ' || *v == ':' || *v == '\t' || *v == '\n' || *v == '\r'))
                                v++;
                        long num = -1;
                        if (v < e && *v >= '0' && *v <= '9') {
                                num = 0;
                                while (v < e && *v >= '0' && *v <= '9' && num <= 65535)
                                        num = num * 10 + (*v++ - '0');
                        }
                        if (kl == 5 && strncasecmp(q + 1, "width", 5) == 0)
                                w = num;
                        else if (kl == 6 && strncasecmp(q + 1, "height", 6) == 0)
                                h = num;
                        p = v > qe ? v : qe + 1;
                }
                if (w >= 0 && w <= 65535 && h >= 0 && h <= 65535) {
                        pthread_mutex_lock(&s->lock);
                        s->width = (uint16_t)w;
                        s->height = (uint16_t)h;
                        pthread_mutex_unlock(&s->lock);
                        if (s->tk->opts.tty && s->tk->ops->resize)
                                s->tk->ops->resize(s->handle, (uint16_t)w, (uint16_t)h);
                }
                start = end;
        }
}

int rc_session_input(rc_session *s, int ch, const void *buf, size_t len, bool strict)
{
        if (ch == ST_CH_RESIZE) {
                const char *p = buf;
                while (len > 0) {
                        size_t n = CC_MIN(len, RESIZE_BUF - s->resize_len);
                        memcpy(s->resize_buf + s->resize_len, p, n);
                        s->resize_len += n;
                        p += n;
                        len -= n;
                        parse_resizes(s);
                        if (s->resize_len == RESIZE_BUF)
                                s->resize_len = 0; /* garbage: drop */
                }
                return 0;
        }
        if (ch != ST_CH_STDIN || !s->q) {
                s->t->ops->credit(s->t, ch, len);
                return 0;
        }
        const unsigned char *p = buf;
        pthread_mutex_lock(&s->lock);
        if (s->stdin_eof) {
                pthread_mutex_unlock(&s->lock);
                return -EPIPE;
        }
        if (strict && ST_STDIN_QUEUE - s->q_len < len) {
                pthread_mutex_unlock(&s->lock);
                return -ENOBUFS;
        }
        while (len > 0) {
                while (!s->gone && s->q_len == ST_STDIN_QUEUE)
                        pthread_cond_wait(&s->cond, &s->lock);
                if (s->gone)
                        break;
                size_t tail = (s->q_head + s->q_len) % ST_STDIN_QUEUE;
                size_t n = CC_MIN(len, CC_MIN((size_t)ST_STDIN_QUEUE - s->q_len, (size_t)ST_STDIN_QUEUE - tail));
                memcpy(s->q + tail, p, n);
                s->q_len += n;
                p += n;
                len -= n;
                pthread_cond_broadcast(&s->cond);
        }
        bool gone = s->gone;
        pthread_mutex_unlock(&s->lock);
        return gone ? -EPIPE : 0;
}

void rc_session_input_eof(rc_session *s, int ch)
{
        if (ch != ST_CH_STDIN)
                return;
        pthread_mutex_lock(&s->lock);
        s->stdin_eof = true;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
}

void rc_session_client_gone(rc_session *s)
{
        pthread_mutex_lock(&s->lock);
        s->gone = true;
        bool cancel = !s->cancelled && !s->finished && s->handle;
        s->cancelled = true;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
        st_conn_kill(s->t->conn);
        if (cancel && s->tk->ops->cancel)
                s->tk->ops->cancel(s->handle);
}

bool rc_session_finished(rc_session *s)
{
        pthread_mutex_lock(&s->lock);
        bool f = s->finished;
        pthread_mutex_unlock(&s->lock);
        return f;
}

void rc_session_join_free(rc_session *s)
{
        if (!s)
                return;
        if (s->waiter_started)
                pthread_join(s->waiter, NULL);
        if (s->pump_started) {
                pthread_mutex_lock(&s->lock);
                s->gone = true;
                pthread_cond_broadcast(&s->cond);
                pthread_mutex_unlock(&s->lock);
                pthread_join(s->pump, NULL);
        }
        if (s->handle) {
                if (s->tk->ops->release)
                        s->tk->ops->release(s->handle);
                st_server_session_count(s->tk->server, -1);
        }
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->cond);
        free(s->q);
        free(s);
}
