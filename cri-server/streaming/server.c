/* SPDX-License-Identifier: Apache-2.0 */
/* HTTP/1.1 front end of the streaming server: listener, tokens, request
 * heads, dispatch to the SPDY or WebSocket handler. */
#include "cri-server/streaming/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/rand.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "cri-server/streaming/internal.h"

#define MAX_TOKENS 4096
#define TOKEN_BYTES 24 /* 192 bits → 32 url-safe characters */
#define HEAD_TIMEOUT_MS 10000

typedef struct token {
        char id[TOKEN_BYTES * 2];
        long long expires_ms;
        streaming_kind kind;
        streaming_opts opts;
        uint16_t ports[64];
        void *payload;
        void (*payload_free)(void *);
        struct token *next;
} token;

typedef struct conn_slot {
        st_conn conn;
        pthread_t thread;
        streaming_server *server;
        struct conn_slot *prev, *next;
} conn_slot;

struct streaming_server {
        streaming_server_config cfg;
        char *address;
        char *base_url;
        int listen_fd;
        int wake_pipe[2];
        uint16_t port;
        pthread_t accept_thread;
        bool accept_started;

        pthread_mutex_t lock;
        pthread_cond_t cond;     /* a connection thread ended */
        token *tokens;
        unsigned n_tokens;
        conn_slot *conns;
        unsigned n_conns;
        unsigned n_sessions;
        unsigned long long sessions_total;
        bool stopping;
};

static const char *const kind_names[_STREAMING_KIND_MAX] = {
        [STREAMING_EXEC] = "exec",
        [STREAMING_ATTACH] = "attach",
        [STREAMING_PORTFORWARD] = "portforward",
};

const char *streaming_kind_to_string(streaming_kind k)
{
        return (unsigned)k < _STREAMING_KIND_MAX ? kind_names[k] : NULL;
}

long long st_now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int st_thread_create(pthread_t *t, void *(*fn)(void *), void *arg)
{
        pthread_attr_t attr;
        sigset_t all, old;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 256 * 1024);
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        int r = pthread_create(t, &attr, fn, arg);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&attr);
        return -r;
}

/* ---------------- connection I/O ---------------- */

static void touch(st_conn *c) { atomic_store(&c->last_activity_ms, st_now_ms()); }

/* Waits until fd is readable, honouring the idle timeout / linger. */
static int wait_readable(st_conn *c)
{
        for (;;) {
                if (atomic_load(&c->dead))
                        return -ECONNRESET;
                int timeout = -1;
                long long now = st_now_ms();
                if (c->idle_timeout_ms > 0) {
                        long long left = atomic_load(&c->last_activity_ms) + c->idle_timeout_ms - now;
                        if (left <= 0)
                                return -ETIMEDOUT;
                        timeout = (int)CC_MIN(left, 1LL << 30);
                }
                int linger = c->linger_ms;
                if (linger > 0 && (timeout < 0 || timeout > linger))
                        timeout = linger;
                struct pollfd p = { .fd = c->fd, .events = POLLIN };
                int r = poll(&p, 1, timeout);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (r > 0)
                        return 0;
                if (linger > 0)
                        return -ETIMEDOUT;
        }
}

ssize_t st_read_some(st_conn *c, void *buf, size_t n)
{
        if (n == 0)
                return 0;
        if (c->roff < c->rlen) {
                size_t k = CC_MIN(n, c->rlen - c->roff);
                memcpy(buf, c->rbuf + c->roff, k);
                c->roff += k;
                return (ssize_t)k;
        }
        for (;;) {
                int r = wait_readable(c);
                if (r < 0)
                        return r;
                ssize_t k = recv(c->fd, buf, n, 0);
                if (k > 0) {
                        touch(c);
                        return k;
                }
                if (k == 0)
                        return -ECONNRESET;
                if (errno == EINTR || errno == EAGAIN)
                        continue;
                return -errno;
        }
}

int st_read_full(st_conn *c, void *buf, size_t n)
{
        unsigned char *p = buf;
        while (n > 0) {
                ssize_t k = st_read_some(c, p, n);
                if (k < 0)
                        return (int)k;
                p += k;
                n -= (size_t)k;
        }
        return 0;
}

int st_write_locked(st_conn *c, struct iovec *iov, int n)
{
        while (n > 0) {
                if (atomic_load(&c->dead))
                        return -EPIPE;
                struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)n };
                ssize_t k = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        int e = -errno;
                        atomic_store(&c->dead, true);
                        return e;
                }
                touch(c);
                while (n > 0 && (size_t)k >= iov->iov_len) {
                        k -= (ssize_t)iov->iov_len;
                        iov++;
                        n--;
                }
                if (n > 0) {
                        iov->iov_base = (char *)iov->iov_base + k;
                        iov->iov_len -= (size_t)k;
                }
        }
        return 0;
}

int st_writev_all(st_conn *c, struct iovec *iov, int n)
{
        pthread_mutex_lock(&c->wlock);
        int r = st_write_locked(c, iov, n);
        pthread_mutex_unlock(&c->wlock);
        return r;
}

void st_conn_kill(st_conn *c)
{
        atomic_store(&c->dead, true);
        shutdown(c->fd, SHUT_RDWR);
}

/* ---------------- HTTP ---------------- */

static char *trim(char *s)
{
        while (*s == ' ' || *s == '\t')
                s++;
        size_t n = strlen(s);
        while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
                s[--n] = 0;
        return s;
}

int st_request_parse(char *head, st_request *ret)
{
        st_request r = { 0 };
        char *save = NULL;
        char *line = strtok_r(head, "\n", &save);
        if (!line)
                return -EINVAL;
        size_t l = strlen(line);
        if (l > 0 && line[l - 1] == '\r')
                line[l - 1] = 0;
        char *sp1 = strchr(line, ' ');
        if (!sp1)
                return -EINVAL;
        *sp1 = 0;
        char *target = sp1 + 1;
        char *sp2 = strchr(target, ' ');
        if (!sp2 || strncmp(sp2 + 1, "HTTP/1.", 7) != 0)
                return -EINVAL;
        *sp2 = 0;
        r.method = line;
        if (target[0] != '/')
                return -EINVAL;
        char *q = strchr(target, '?');
        if (q) {
                *q = 0;
                r.query = q + 1;
        } else {
                r.query = (char *)"";
        }
        r.path = target;
        while ((line = strtok_r(NULL, "\n", &save))) {
                l = strlen(line);
                if (l > 0 && line[l - 1] == '\r')
                        line[--l] = 0;
                if (l == 0)
                        break;
                char *colon = strchr(line, ':');
                if (!colon || colon == line || line[0] == ' ' || line[0] == '\t')
                        return -EINVAL; /* no obsolete line folding */
                if (r.n_headers >= ST_MAX_HEADERS)
                        return -E2BIG;
                *colon = 0;
                r.headers[r.n_headers].name = line;
                r.headers[r.n_headers].value = trim(colon + 1);
                r.n_headers++;
        }
        *ret = r;
        return 0;
}

const char *st_request_header(const st_request *r, const char *name)
{
        for (int i = 0; i < r->n_headers; i++)
                if (strcasecmp(r->headers[i].name, name) == 0)
                        return r->headers[i].value;
        return NULL;
}

bool st_request_header_has_token(const st_request *r, const char *name, const char *tok)
{
        size_t tl = strlen(tok);
        for (int i = 0; i < r->n_headers; i++) {
                if (strcasecmp(r->headers[i].name, name) != 0)
                        continue;
                const char *p = r->headers[i].value;
                while (*p) {
                        while (*p == ' ' || *p == '\t' || *p == ',')
                                p++;
                        const char *e = p;
                        while (*e && *e != ',')
                                e++;
                        const char *te = e;
                        while (te > p && (te[-1] == ' ' || te[-1] == '\t'))
                                te--;
                        if ((size_t)(te - p) == tl && strncasecmp(p, tok, tl) == 0)
                                return true;
                        p = e;
                }
        }
        return false;
}

static int unhex(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

const char *st_request_query(const st_request *r, const char *key, char *buf, size_t size)
{
        size_t kl = strlen(key);
        const char *p = r->query;
        while (p && *p) {
                const char *e = strchr(p, '&');
                size_t len = e ? (size_t)(e - p) : strlen(p);
                if (len >= kl && strncmp(p, key, kl) == 0 && (len == kl || p[kl] == '=')) {
                        const char *v = len == kl ? p + len : p + kl + 1;
                        size_t o = 0;
                        for (const char *s = v; s < p + len && o + 1 < size; s++) {
                                if (*s == '%' && s + 2 < p + len + 0 + 1 && unhex(s[1]) >= 0 && unhex(s[2]) >= 0) {
                                        buf[o++] = (char)(unhex(s[1]) * 16 + unhex(s[2]));
                                        s += 2;
                                } else {
                                        buf[o++] = *s == '+' ? ' ' : *s;
                                }
                        }
                        buf[o] = 0;
                        return buf;
                }
                p = e ? e + 1 : NULL;
        }
        return NULL;
}

int st_http_respond(st_conn *c, int code, const char *reason, const char *extra, const char *body)
{
        char head[1024];
        size_t bl = body ? strlen(body) : 0;
        int n = snprintf(head, sizeof(head),
                         "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                         "X-Content-Type-Options: nosniff\r\nContent-Length: %zu\r\nConnection: close\r\n%s\r\n",
                         code, reason, bl, extra ? extra : "");
        if (n < 0 || (size_t)n >= sizeof(head))
                return -E2BIG;
        struct iovec iov[2] = { { head, (size_t)n }, { (void *)(body ? body : ""), bl } };
        return st_writev_all(c, iov, 2);
}

/* Reads the request head; leftover bytes stay in c->rbuf. */
static int read_head(st_conn *c, char **ret_head)
{
        _cleanup_free_ char *buf = malloc(ST_MAX_HEAD + 1);
        if (!buf)
                return -ENOMEM;
        size_t len = 0;
        long long deadline = st_now_ms() + HEAD_TIMEOUT_MS;
        for (;;) {
                long long left = deadline - st_now_ms();
                if (left <= 0)
                        return -ETIMEDOUT;
                struct pollfd p = { .fd = c->fd, .events = POLLIN };
                int r = poll(&p, 1, (int)left);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0)
                        return r < 0 ? -errno : -ETIMEDOUT;
                ssize_t k = recv(c->fd, buf + len, ST_MAX_HEAD - len, 0);
                if (k < 0 && (errno == EINTR || errno == EAGAIN))
                        continue;
                if (k <= 0)
                        return k == 0 ? -ECONNRESET : -errno;
                size_t from = len >= 3 ? len - 3 : 0;
                len += (size_t)k;
                buf[len] = 0;
                char *end = memmem(buf + from, len - from, "\r\n\r\n", 4);
                if (end) {
                        size_t hl = (size_t)(end - buf) + 4;
                        if (len > hl) {
                                c->rbuf = malloc(len - hl);
                                if (!c->rbuf)
                                        return -ENOMEM;
                                memcpy(c->rbuf, buf + hl, len - hl);
                                c->rlen = len - hl;
                        }
                        end[2] = 0;
                        *ret_head = TAKE_PTR(buf);
                        return 0;
                }
                if (len >= ST_MAX_HEAD)
                        return -E2BIG;
        }
}

/* ---------------- tokens ---------------- */

static void token_free(token *t)
{
        if (!t)
                return;
        if (t->payload_free && t->payload)
                t->payload_free(t->payload);
        explicit_bzero(t->id, sizeof(t->id));
        free(t);
}

/* Caller holds lock. Moves expired tokens to *graveyard (freed outside the lock). */
static void purge_expired(streaming_server *s, token **graveyard)
{
        long long now = st_now_ms();
        for (token **pp = &s->tokens; *pp;) {
                token *t = *pp;
                if (t->expires_ms <= now) {
                        *pp = t->next;
                        t->next = *graveyard;
                        *graveyard = t;
                        s->n_tokens--;
                } else {
                        pp = &t->next;
                }
        }
}

static void free_token_list(token *t)
{
        while (t) {
                token *n = t->next;
                token_free(t);
                t = n;
        }
}

static void b64url(const unsigned char *in, size_t n, char *out)
{
        static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        size_t o = 0;
        uint32_t acc = 0;
        int bits = 0;
        for (size_t i = 0; i < n; i++) {
                acc = (acc << 8) | in[i];
                bits += 8;
                while (bits >= 6) {
                        out[o++] = tbl[(acc >> (bits - 6)) & 63];
                        bits -= 6;
                }
        }
        if (bits > 0)
                out[o++] = tbl[(acc << (6 - bits)) & 63];
        out[o] = 0;
}

char *streaming_token_new(streaming_server *s, streaming_kind kind, const streaming_opts *opts,
                          void *payload, void (*payload_free)(void *), cc_error **ret_err)
{
        token *t = calloc(1, sizeof(*t));
        if (!t) {
                if (payload_free && payload)
                        payload_free(payload);
                cc_error_set(ret_err, -ENOMEM, "streaming token: out of memory");
                return NULL;
        }
        t->payload = payload;
        t->payload_free = payload_free;
        if ((unsigned)kind >= _STREAMING_KIND_MAX) {
                token_free(t);
                cc_error_set(ret_err, -EINVAL, "streaming token: invalid kind %d", (int)kind);
                return NULL;
        }
        t->kind = kind;
        if (opts) {
                t->opts = *opts;
                if (opts->n_ports > CC_ARRAY_SIZE(t->ports)) {
                        token_free(t);
                        cc_error_set(ret_err, -E2BIG, "streaming token: too many ports (%zu, max %zu)",
                                     opts->n_ports, CC_ARRAY_SIZE(t->ports));
                        return NULL;
                }
                if (opts->n_ports)
                        memcpy(t->ports, opts->ports, opts->n_ports * sizeof(uint16_t));
        }
        t->opts.ports = NULL; /* re-pointed at use */
        unsigned char raw[TOKEN_BYTES];
        if (RAND_bytes(raw, sizeof(raw)) != 1) {
                token_free(t);
                cc_error_set(ret_err, -EIO, "streaming token: no randomness");
                return NULL;
        }
        b64url(raw, sizeof(raw), t->id);
        explicit_bzero(raw, sizeof(raw));
        t->expires_ms = st_now_ms() + (long long)s->cfg.token_ttl * 1000;

        char *url = NULL;
        if (asprintf(&url, "%s/%s/%s", s->base_url, kind_names[kind], t->id) < 0) {
                token_free(t);
                cc_error_set(ret_err, -ENOMEM, "streaming token: out of memory");
                return NULL;
        }
        token *dead = NULL;
        pthread_mutex_lock(&s->lock);
        purge_expired(s, &dead);
        if (s->n_tokens >= MAX_TOKENS || s->stopping) {
                bool stopping = s->stopping;
                pthread_mutex_unlock(&s->lock);
                free_token_list(dead);
                token_free(t);
                free(url);
                cc_error_set(ret_err, stopping ? -ESHUTDOWN : -ENOSPC,
                             stopping ? "streaming server is stopping" : "too many outstanding streaming requests (%d)",
                             MAX_TOKENS);
                return NULL;
        }
        t->next = s->tokens;
        s->tokens = t;
        s->n_tokens++;
        pthread_mutex_unlock(&s->lock);
        free_token_list(dead);
        return url;
}

/* Removes and returns the token (single use), or NULL if unknown/expired/wrong kind. */
static token *token_take(streaming_server *s, streaming_kind kind, const char *id)
{
        token *dead = NULL, *found = NULL;
        size_t il = strlen(id);
        pthread_mutex_lock(&s->lock);
        purge_expired(s, &dead);
        for (token **pp = &s->tokens; *pp; pp = &(*pp)->next) {
                token *t = *pp;
                size_t tl = strlen(t->id);
                /* constant time over the candidate's length */
                unsigned char diff = (unsigned char)(il != tl);
                for (size_t i = 0; i < tl; i++)
                        diff |= (unsigned char)(t->id[i] ^ (i < il ? id[i] : 0));
                if (diff == 0) {
                        *pp = t->next;
                        s->n_tokens--;
                        found = t;
                        break;
                }
        }
        pthread_mutex_unlock(&s->lock);
        free_token_list(dead);
        if (found && found->kind != kind) {
                token_free(found);
                return NULL;
        }
        return found;
}

/* ---------------- connections ---------------- */

void st_server_session_count(streaming_server *s, int delta)
{
        pthread_mutex_lock(&s->lock);
        s->n_sessions += delta;
        if (delta > 0)
                s->sessions_total++;
        pthread_mutex_unlock(&s->lock);
}

int st_server_idle_timeout_ms(streaming_server *s) { return s->cfg.idle_timeout * 1000; }

static void handle_connection(conn_slot *slot)
{
        streaming_server *s = slot->server;
        st_conn *c = &slot->conn;
        _cleanup_free_ char *head = NULL;
        int r = read_head(c, &head);
        if (r < 0) {
                if (r == -E2BIG)
                        st_http_respond(c, 431, "Request Header Fields Too Large", NULL, "request head too large\n");
                return;
        }
        st_request req;
        if (st_request_parse(head, &req) < 0) {
                st_http_respond(c, 400, "Bad Request", NULL, "malformed request\n");
                return;
        }
        if (strcmp(req.method, "GET") != 0 && strcmp(req.method, "POST") != 0) {
                st_http_respond(c, 405, "Method Not Allowed", "Allow: GET, POST\r\n", "method not allowed\n");
                return;
        }
        streaming_kind kind;
        const char *id = NULL;
        for (kind = 0; kind < _STREAMING_KIND_MAX; kind++) {
                size_t kl = strlen(kind_names[kind]);
                if (req.path[0] == '/' && strncmp(req.path + 1, kind_names[kind], kl) == 0 && req.path[1 + kl] == '/') {
                        id = req.path + 2 + kl;
                        break;
                }
        }
        token *t = id && *id && !strchr(id, '/') ? token_take(s, kind, id) : NULL;
        if (!t) {
                log_debug("streaming: unknown or expired token for %s", req.path[0] ? "request" : "");
                st_http_respond(c, 404, "Not Found", NULL, "404 page not found\n");
                return;
        }
        st_ticket tk = {
                .kind = t->kind,
                .opts = t->opts,
                .payload = TAKE_PTR(t->payload),
                .payload_free = t->payload_free,
                .server = s,
                .ops = s->cfg.ops,
                .backend_data = s->cfg.backend_data,
                .stream_creation_timeout_ms = (s->cfg.stream_creation_timeout > 0 ? s->cfg.stream_creation_timeout : 30) * 1000,
        };
        memcpy(tk.port_storage, t->ports, sizeof(tk.port_storage));
        tk.opts.ports = tk.port_storage;
        token_free(t);

        if (st_request_header_has_token(&req, "Upgrade", "websocket"))
                ws_serve(c, &req, &tk);
        else if (st_request_header_has_token(&req, "Upgrade", "SPDY/3.1"))
                spdy_serve(c, &req, &tk);
        else
                st_http_respond(c, 400, "Bad Request",
                                NULL, "unable to upgrade: missing upgrade headers in request\n");
        if (tk.payload_free && tk.payload)
                tk.payload_free(tk.payload);
}

static void *conn_thread(void *arg)
{
        conn_slot *slot = arg;
        streaming_server *s = slot->server;
        handle_connection(slot);

        pthread_mutex_lock(&s->lock);
        if (slot->prev)
                slot->prev->next = slot->next;
        else
                s->conns = slot->next;
        if (slot->next)
                slot->next->prev = slot->prev;
        s->n_conns--;
        shutdown(slot->conn.fd, SHUT_RDWR);
        close(slot->conn.fd);
        free(slot->conn.rbuf);
        pthread_mutex_destroy(&slot->conn.wlock);
        pthread_detach(slot->thread);
        free(slot);
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
        return NULL;
}

static void *accept_thread(void *arg)
{
        streaming_server *s = arg;
        unsigned max = s->cfg.max_connections > 0 ? (unsigned)s->cfg.max_connections : 256;
        for (;;) {
                struct pollfd p[2] = { { .fd = s->listen_fd, .events = POLLIN }, { .fd = s->wake_pipe[0], .events = POLLIN } };
                if (poll(p, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        break;
                }
                if (p[1].revents)
                        break;
                int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0) {
                        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                                /* back off briefly instead of spinning */
                                poll(&p[1], 1, 100);
                        }
                        continue;
                }
                int one = 1;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                conn_slot *slot = calloc(1, sizeof(*slot));
                pthread_mutex_lock(&s->lock);
                bool full = s->n_conns >= max || s->stopping || !slot;
                pthread_mutex_unlock(&s->lock);
                if (full) {
                        static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                        (void)!send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
                        close(fd);
                        free(slot);
                        continue;
                }
                slot->server = s;
                slot->conn.fd = fd;
                pthread_mutex_init(&slot->conn.wlock, NULL);
                slot->conn.idle_timeout_ms = s->cfg.idle_timeout * 1000;
                atomic_store(&slot->conn.last_activity_ms, st_now_ms());
                pthread_mutex_lock(&s->lock);
                slot->next = s->conns;
                if (s->conns)
                        s->conns->prev = slot;
                s->conns = slot;
                s->n_conns++;
                if (st_thread_create(&slot->thread, conn_thread, slot) < 0) {
                        s->conns = slot->next;
                        if (s->conns)
                                s->conns->prev = NULL;
                        s->n_conns--;
                        pthread_mutex_unlock(&s->lock);
                        close(fd);
                        pthread_mutex_destroy(&slot->conn.wlock);
                        free(slot);
                        continue;
                }
                pthread_mutex_unlock(&s->lock);
        }
        return NULL;
}

int streaming_server_new(const streaming_server_config *cfg, streaming_server **ret, cc_error **ret_err)
{
        if (!cfg || !cfg->ops || !cfg->address)
                return cc_error_set(ret_err, -EINVAL, "streaming server: missing configuration");
        streaming_server *s = calloc(1, sizeof(*s));
        if (!s)
                return cc_error_set(ret_err, -ENOMEM, "streaming server: out of memory");
        s->cfg = *cfg;
        if (s->cfg.token_ttl <= 0)
                s->cfg.token_ttl = 30;
        s->listen_fd = -1;
        s->wake_pipe[0] = s->wake_pipe[1] = -1;
        pthread_mutex_init(&s->lock, NULL);
        pthread_cond_init(&s->cond, NULL);
        s->address = strdup(cfg->address);
        s->cfg.address = s->address;
        s->cfg.base_url = NULL;

        union {
                struct sockaddr sa;
                struct sockaddr_in in4;
                struct sockaddr_in6 in6;
        } sa = { 0 };
        socklen_t salen;
        bool v6 = strchr(cfg->address, ':') != NULL;
        if (!v6 && inet_pton(AF_INET, cfg->address, &sa.in4.sin_addr) == 1) {
                sa.in4.sin_family = AF_INET;
                sa.in4.sin_port = htons(cfg->port);
                salen = sizeof(sa.in4);
        } else if (v6 && inet_pton(AF_INET6, cfg->address, &sa.in6.sin6_addr) == 1) {
                sa.in6.sin6_family = AF_INET6;
                sa.in6.sin6_port = htons(cfg->port);
                salen = sizeof(sa.in6);
        } else {
                streaming_server_free(s);
                return cc_error_set(ret_err, -EINVAL, "streaming server: invalid address '%s'", cfg->address);
        }
        s->listen_fd = socket(sa.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        if (s->listen_fd < 0 || setsockopt(s->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
            bind(s->listen_fd, &sa.sa, salen) < 0 || listen(s->listen_fd, 128) < 0) {
                int r = cc_error_errno(ret_err, "streaming server: listen on %s%s%s:%u", v6 ? "[" : "",
                                       cfg->address, v6 ? "]" : "", cfg->port);
                streaming_server_free(s);
                return r;
        }
        getsockname(s->listen_fd, &sa.sa, &salen);
        s->port = ntohs(v6 ? sa.in6.sin6_port : sa.in4.sin_port);
        int r;
        if (cfg->base_url)
                r = asprintf(&s->base_url, "%s", cfg->base_url);
        else
                r = asprintf(&s->base_url, "http://%s%s%s:%u", v6 ? "[" : "", cfg->address, v6 ? "]" : "", s->port);
        if (r < 0 || pipe2(s->wake_pipe, O_CLOEXEC) < 0) {
                s->base_url = r < 0 ? NULL : s->base_url;
                streaming_server_free(s);
                return cc_error_set(ret_err, -ENOMEM, "streaming server: setup failed");
        }
        r = st_thread_create(&s->accept_thread, accept_thread, s);
        if (r < 0) {
                streaming_server_free(s);
                return cc_error_set(ret_err, r, "streaming server: thread: %s", strerror(-r));
        }
        s->accept_started = true;
        log_debug("streaming server listening on %s", s->base_url);
        *ret = s;
        return 0;
}

void streaming_server_free(streaming_server *s)
{
        if (!s)
                return;
        pthread_mutex_lock(&s->lock);
        s->stopping = true;
        pthread_mutex_unlock(&s->lock);
        if (s->accept_started) {
                (void)!write(s->wake_pipe[1], "x", 1);
                pthread_join(s->accept_thread, NULL);
        }
        pthread_mutex_lock(&s->lock);
        for (conn_slot *c = s->conns; c; c = c->next)
                st_conn_kill(&c->conn);
        while (s->n_conns > 0)
                pthread_cond_wait(&s->cond, &s->lock);
        token *toks = TAKE_PTR(s->tokens);
        pthread_mutex_unlock(&s->lock);
        free_token_list(toks);
        if (s->listen_fd >= 0)
                close(s->listen_fd);
        if (s->wake_pipe[0] >= 0)
                close(s->wake_pipe[0]);
        if (s->wake_pipe[1] >= 0)
                close(s->wake_pipe[1]);
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->cond);
        free(s->address);
        free(s->base_url);
        free(s);
}

uint16_t streaming_server_port(const streaming_server *s) { return s->port; }
const char *streaming_server_base_url(const streaming_server *s) { return s->base_url; }

void streaming_server_stats(streaming_server *s, streaming_stats *ret)
{
        pthread_mutex_lock(&s->lock);
        ret->active_connections = s->n_conns;
        ret->active_sessions = s->n_sessions;
        ret->outstanding_tokens = s->n_tokens;
        ret->sessions_total = s->sessions_total;
        pthread_mutex_unlock(&s->lock);
}
