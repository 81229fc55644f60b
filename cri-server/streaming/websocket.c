/* SPDX-License-Identifier: Apache-2.0 */
/* WebSocket transport for exec/attach (channel.k8s.io family) and
 * port-forward (channel pairs per port, first message = the port). */
#include "cri-server/streaming/websocket.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "cri-server/streaming/internal.h"
#include "cri-server/streaming/remotecommand.h"

/* ---------------- codec ---------------- */

int ws_parse_frame_header(const uint8_t *b, size_t len, ws_frame_header *h)
{
        if (len < 2)
                return 0;
        memset(h, 0, sizeof(*h));
        h->fin = (b[0] & 0x80) != 0;
        h->rsv = (b[0] >> 4) & 7;
        h->opcode = b[0] & 0x0f;
        h->masked = (b[1] & 0x80) != 0;
        uint64_t l = b[1] & 0x7f;
        size_t need = 2;
        if (l == 126)
                need += 2;
        else if (l == 127)
                need += 8;
        if (h->masked)
                need += 4;
        if (len < need)
                return 0;
        size_t o = 2;
        if (l == 126) {
                l = (uint64_t)b[2] << 8 | b[3];
                o = 4;
        } else if (l == 127) {
                if (b[2] & 0x80)
                        return -EBADMSG;
                l = 0;
                for (int i = 0; i < 8; i++)
                        l = l << 8 | b[2 + i];
                o = 10;
        }
        h->length = l;
        if (h->masked) {
                memcpy(h->mask, b + o, 4);
                o += 4;
        }
        h->header_len = o;
        return (int)o;
}

size_t ws_put_frame_header(uint8_t *b, bool fin, uint8_t opcode, uint64_t length)
{
        b[0] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0f));
        if (length < 126) {
                b[1] = (uint8_t)length;
                return 2;
        }
        if (length <= 0xffff) {
                b[1] = 126;
                b[2] = (uint8_t)(length >> 8);
                b[3] = (uint8_t)length;
                return 4;
        }
        b[1] = 127;
        for (int i = 0; i < 8; i++)
                b[2 + i] = (uint8_t)(length >> (56 - 8 * i));
        return 10;
}

void ws_mask(uint8_t *data, size_t n, const uint8_t mask[4], uint64_t offset)
{
        for (size_t i = 0; i < n; i++)
                data[i] ^= mask[(offset + i) & 3];
}

static const char b64tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t ws_base64_encode(const uint8_t *in, size_t n, char *out)
{
        size_t o = 0, i = 0;
        for (; i + 3 <= n; i += 3) {
                uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
                out[o++] = b64tbl[v >> 18];
                out[o++] = b64tbl[(v >> 12) & 63];
                out[o++] = b64tbl[(v >> 6) & 63];
                out[o++] = b64tbl[v & 63];
        }
        if (n - i == 1) {
                uint32_t v = (uint32_t)in[i] << 16;
                out[o++] = b64tbl[v >> 18];
                out[o++] = b64tbl[(v >> 12) & 63];
                out[o++] = '=';
                out[o++] = '=';
        } else if (n - i == 2) {
                uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
                out[o++] = b64tbl[v >> 18];
                out[o++] = b64tbl[(v >> 12) & 63];
                out[o++] = b64tbl[(v >> 6) & 63];
                out[o++] = '=';
        }
        out[o] = 0;
        return o;
}

int ws_base64_decode(ws_b64_decoder *d, const char *in, size_t n, uint8_t *out)
{
        int o = 0;
        for (size_t i = 0; i < n; i++) {
                char c = in[i];
                int v;
                if (c >= 'A' && c <= 'Z')
                        v = c - 'A';
                else if (c >= 'a' && c <= 'z')
                        v = c - 'a' + 26;
                else if (c >= '0' && c <= '9')
                        v = c - '0' + 52;
                else if (c == '+')
                        v = 62;
                else if (c == '/')
                        v = 63;
                else if (c == '=') {
                        d->pad++;
                        if (d->pad > 2)
                                return -EBADMSG;
                        continue;
                } else if (c == '\r' || c == '\n')
                        continue;
                else
                        return -EBADMSG;
                if (d->pad)
                        return -EBADMSG; /* data after padding */
                d->acc = (d->acc << 6) | (uint32_t)v;
                d->nbits += 6;
                if (d->nbits >= 8) {
                        d->nbits -= 8;
                        out[o++] = (uint8_t)(d->acc >> d->nbits);
                        d->acc &= (1u << d->nbits) - 1;
                }
        }
        return o;
}

int ws_accept_key(const char *key, char out[29])
{
        char buf[128];
        int n = snprintf(buf, sizeof(buf), "%s%s", key, WS_GUID);
        if (n < 0 || (size_t)n >= sizeof(buf))
                return -EINVAL;
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        if (EVP_Digest(buf, (size_t)n, md, &mdlen, EVP_sha1(), NULL) != 1 || mdlen != 20)
                return -EIO;
        ws_base64_encode(md, 20, out);
        return 0;
}

/* ================= connection handler ================= */

#define SEND_CHUNK (64 * 1024)
#define MAX_PF_PORTS 64

typedef struct ws_conn ws_conn;

typedef struct ws_pf {
        ws_conn *wc;
        int index;
        uint16_t port;
        int fd;
        pthread_t thread;
        bool thread_started;
} ws_pf;

struct ws_conn {
        st_transport t; /* first */
        st_conn *c;
        st_ticket *tk;
        bool base64;
        bool v5;
        bool close_sent; /* under c->wlock */
        rc_session *rc;
        /* port-forward */
        ws_pf pf[MAX_PF_PORTS];
        int n_pf;
        pthread_mutex_t lock;
        int pf_active;
};

/* One message: frame header + channel + payload (binary) or + base64 (text). */
static int ws_send_msg(ws_conn *wc, int ch, const void *buf, size_t len)
{
        const uint8_t *p = buf;
        _cleanup_free_ char *enc = NULL;
        if (wc->base64) {
                enc = malloc(SEND_CHUNK / 3 * 4 + 8);
                if (!enc)
                        return -ENOMEM;
        }
        do {
                size_t n = CC_MIN(len, wc->base64 ? (size_t)(SEND_CHUNK / 4 * 3) : (size_t)SEND_CHUNK);
                uint8_t h[16];
                uint8_t chb = wc->base64 ? (uint8_t)('0' + ch) : (uint8_t)ch;
                const void *body = p;
                size_t blen = n;
                if (wc->base64) {
                        blen = ws_base64_encode(p, n, enc);
                        body = enc;
                }
                size_t hl = ws_put_frame_header(h, true, wc->base64 ? WS_OP_TEXT : WS_OP_BINARY, blen + 1);
                h[hl++] = chb;
                struct iovec iov[2] = { { h, hl }, { (void *)body, blen } };
                pthread_mutex_lock(&wc->c->wlock);
                int r = wc->close_sent ? -EPIPE : st_write_locked(wc->c, iov, 2);
                pthread_mutex_unlock(&wc->c->wlock);
                if (r < 0)
                        return r;
                p += n;
                len -= n;
        } while (len > 0);
        return 0;
}

static int ws_send_control(ws_conn *wc, uint8_t op, const void *payload, size_t len)
{
        uint8_t h[16];
        if (len > 125)
                len = 125;
        size_t hl = ws_put_frame_header(h, true, op, len);
        struct iovec iov[2] = { { h, hl }, { (void *)payload, len } };
        pthread_mutex_lock(&wc->c->wlock);
        int r = wc->close_sent ? -EPIPE : st_write_locked(wc->c, iov, 2);
        if (op == WS_OP_CLOSE)
                wc->close_sent = true;
        pthread_mutex_unlock(&wc->c->wlock);
        return r;
}

static void ws_close(ws_conn *wc, uint16_t code)
{
        uint8_t b[2] = { (uint8_t)(code >> 8), (uint8_t)code };
        ws_send_control(wc, WS_OP_CLOSE, b, 2);
        wc->c->linger_ms = 5000;
}

static int t_send(st_transport *t, int ch, const void *buf, size_t len)
{
        if (len == 0)
                return 0;
        return ws_send_msg((ws_conn *)t, ch, buf, len);
}

static int t_close_channel(st_transport *t, int ch) { return 0; }
static void t_credit(st_transport *t, int ch, size_t n) {}

static void t_finish(st_transport *t)
{
        ws_conn *wc = (ws_conn *)t;
        ws_close(wc, WS_CLOSE_NORMAL);
}

static const st_transport_ops ws_transport_ops = {
        .send = t_send,
        .close_channel = t_close_channel,
        .credit = t_credit,
        .finish = t_finish,
};

/* ---- port-forward ---- */

static void *pf_thread(void *arg)
{
        ws_pf *p = arg;
        ws_conn *wc = p->wc;
        _cleanup_free_ uint8_t *buf = malloc(SEND_CHUNK);
        while (buf) {
                ssize_t n = read(p->fd, buf, SEND_CHUNK);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                if (ws_send_msg(wc, 2 * p->index, buf, (size_t)n) < 0)
                        break;
        }
        pthread_mutex_lock(&wc->lock);
        bool last = --wc->pf_active == 0;
        pthread_mutex_unlock(&wc->lock);
        if (last)
                ws_close(wc, WS_CLOSE_NORMAL);
        return NULL;
}

static int parse_ports(const st_request *req, st_ticket *tk, uint16_t *ports, int max)
{
        char buf[1024];
        const char *q = st_request_query(req, "ports", buf, sizeof(buf));
        if (!q)
                q = st_request_query(req, "port", buf, sizeof(buf));
        int n = 0;
        if (q) {
                char *save = NULL;
                for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                        char *end;
                        unsigned long v = strtoul(tok, &end, 10);
                        if (*end || v == 0 || v > 65535 || n >= max)
                                return -EINVAL;
                        ports[n++] = (uint16_t)v;
                }
        } else {
                for (size_t i = 0; i < tk->opts.n_ports && n < max; i++)
                        ports[n++] = tk->opts.ports[i];
        }
        return n > 0 ? n : -EINVAL;
}

static void pf_open(ws_conn *wc, const uint16_t *ports, int n)
{
        wc->n_pf = n;
        for (int i = 0; i < n; i++) {
                ws_pf *p = &wc->pf[i];
                p->wc = wc;
                p->index = i;
                p->port = ports[i];
                p->fd = -1;
                uint8_t pb[2] = { (uint8_t)ports[i], (uint8_t)(ports[i] >> 8) }; /* little endian */
                ws_send_msg(wc, 2 * i, pb, 2);
                ws_send_msg(wc, 2 * i + 1, pb, 2);
        }
        for (int i = 0; i < n; i++) {
                ws_pf *p = &wc->pf[i];
                _cleanup_error_ cc_error *err = NULL;
                int fd = wc->tk->ops->port_connect ? wc->tk->ops->port_connect(wc->tk->backend_data, wc->tk->payload, p->port, &err)
                                                   : cc_error_set(&err, -EOPNOTSUPP, "port forwarding is not supported");
                if (fd >= 0) {
                        p->fd = fd;
                        pthread_mutex_lock(&wc->lock);
                        wc->pf_active++;
                        pthread_mutex_unlock(&wc->lock);
                        if (st_thread_create(&p->thread, pf_thread, p) == 0) {
                                p->thread_started = true;
                                continue;
                        }
                        pthread_mutex_lock(&wc->lock);
                        wc->pf_active--;
                        pthread_mutex_unlock(&wc->lock);
                        cc_error_set(&err, -EAGAIN, "out of threads");
                }
                char msg[512];
                snprintf(msg, sizeof(msg), "error forwarding port %u to pod: %s", p->port, err ? err->msg : "failed");
                ws_send_msg(wc, 2 * i + 1, msg, strlen(msg));
        }
        pthread_mutex_lock(&wc->lock);
        bool none = wc->pf_active == 0;
        pthread_mutex_unlock(&wc->lock);
        if (none)
                ws_close(wc, WS_CLOSE_NORMAL);
}

/* ---- incoming messages ---- */

typedef struct msg_state {
        bool active;
        int channel;   /* -1 until the first payload byte */
        bool close_cmd; /* v5 channel 255: next byte names the channel to close */
        ws_b64_decoder b64;
} msg_state;

static void deliver(ws_conn *wc, msg_state *m, const uint8_t *p, size_t n)
{
        if (n == 0)
                return;
        if (wc->tk->kind == STREAMING_PORTFORWARD) {
                int i = m->channel / 2;
                if (m->channel % 2 == 0 && i < wc->n_pf && wc->pf[i].fd >= 0) {
                        while (n > 0) {
                                ssize_t w = send(wc->pf[i].fd, p, n, MSG_NOSIGNAL);
                                if (w < 0 && errno == EINTR)
                                        continue;
                                if (w <= 0)
                                        break;
                                p += w;
                                n -= (size_t)w;
                        }
                }
                return;
        }
        if (!wc->rc)
                return;
        if (m->close_cmd) {
                rc_session_input_eof(wc->rc, p[0]);
                m->close_cmd = false;
                return;
        }
        if (m->channel == ST_CH_STDIN || m->channel == ST_CH_RESIZE)
                (void)rc_session_input(wc->rc, m->channel, p, n, false);
}

/* Feeds (unmasked) payload bytes of the current message. */
static int feed(ws_conn *wc, msg_state *m, uint8_t *p, size_t n)
{
        if (n == 0)
                return 0;
        if (m->channel < 0) {
                uint8_t ch = p[0];
                if (wc->base64) {
                        if (ch < '0' || ch > '9')
                                return -EBADMSG;
                        ch = (uint8_t)(ch - '0');
                }
                m->channel = ch;
                if (wc->v5 && ch == 255)
                        m->close_cmd = true;
                p++;
                n--;
        }
        if (n == 0)
                return 0;
        if (wc->base64) {
                /* decode in place: output never exceeds input */
                int k = ws_base64_decode(&m->b64, (const char *)p, n, p);
                if (k < 0)
                        return -EBADMSG;
                n = (size_t)k;
        }
        deliver(wc, m, p, n);
        return 0;
}

static const struct {
        const char *name;
        bool base64;
        int version;
} exec_protos[] = {
        { RC_PROTO_V5, false, 5 },
        { RC_PROTO_V4, false, 4 },
        { "v4.base64.channel.k8s.io", true, 4 },
        { "base64.channel.k8s.io", true, 1 },
        { RC_PROTO_V1, false, 1 },
}, pf_protos[] = {
        { RC_PROTO_V4, false, 4 },
        { "v4.base64.channel.k8s.io", true, 4 },
        { PF_PROTO_V1, false, 4 },
        { RC_PROTO_V1, false, 1 },
        { "base64.channel.k8s.io", true, 1 },
};

void ws_serve(st_conn *c, const st_request *req, st_ticket *tk)
{
        const char *key = st_request_header(req, "Sec-WebSocket-Key");
        const char *ver = st_request_header(req, "Sec-WebSocket-Version");
        if (!key || !ver || strcmp(ver, "13") != 0 || !st_request_header_has_token(req, "Connection", "upgrade") ||
            strlen(key) > 64) {
                st_http_respond(c, 400, "Bad Request", "Sec-WebSocket-Version: 13\r\n", "bad websocket handshake\n");
                return;
        }
        bool pf = tk->kind == STREAMING_PORTFORWARD;
        const char *proto = NULL;
        bool base64 = false;
        int version = pf ? 4 : 1;
        size_t np = pf ? CC_ARRAY_SIZE(pf_protos) : CC_ARRAY_SIZE(exec_protos);
        for (size_t i = 0; i < np && !proto; i++) {
                const char *name = pf ? pf_protos[i].name : exec_protos[i].name;
                if (st_request_header_has_token(req, "Sec-WebSocket-Protocol", name)) {
                        proto = name;
                        base64 = pf ? pf_protos[i].base64 : exec_protos[i].base64;
                        version = pf ? pf_protos[i].version : exec_protos[i].version;
                }
        }
        if (!proto && st_request_header(req, "Sec-WebSocket-Protocol")) {
                st_http_respond(c, 403, "Forbidden", NULL, "requested protocol(s) are not supported\n");
                return;
        }
        uint16_t ports[MAX_PF_PORTS];
        int n_ports = 0;
        if (pf) {
                n_ports = parse_ports(req, tk, ports, MAX_PF_PORTS);
                if (n_ports < 0) {
                        st_http_respond(c, 400, "Bad Request", NULL, "port-forward: missing or invalid ports\n");
                        return;
                }
        }
        char accept[29];
        if (ws_accept_key(key, accept) < 0) {
                st_http_respond(c, 400, "Bad Request", NULL, "bad websocket key\n");
                return;
        }
        char resp[512];
        int n = snprintf(resp, sizeof(resp),
                         "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         "Sec-WebSocket-Accept: %s\r\n%s%s%s\r\n",
                         accept, proto ? "Sec-WebSocket-Protocol: " : "", proto ? proto : "", proto ? "\r\n" : "");
        struct iovec iov = { resp, (size_t)n };
        if (st_writev_all(c, &iov, 1) < 0)
                return;

        ws_conn *wc = calloc(1, sizeof(*wc));
        _cleanup_free_ uint8_t *buf = malloc(SEND_CHUNK);
        if (!wc || !buf) {
                free(wc);
                return;
        }
        wc->t.ops = &ws_transport_ops;
        wc->t.conn = c;
        wc->t.version = version;
        wc->c = c;
        wc->tk = tk;
        wc->base64 = base64;
        wc->v5 = version >= 5;
        pthread_mutex_init(&wc->lock, NULL);

        if (pf) {
                st_server_session_count(tk->server, +1);
                pf_open(wc, ports, n_ports);
        } else {
                /* an empty message on the lowest writable channel says "ready" */
                int ch = tk->opts.stdout_ ? ST_CH_STDOUT : tk->opts.stderr_ ? ST_CH_STDERR : ST_CH_ERROR;
                uint8_t h[4];
                size_t hl = ws_put_frame_header(h, true, base64 ? WS_OP_TEXT : WS_OP_BINARY, 1);
                h[hl++] = base64 ? (uint8_t)('0' + ch) : (uint8_t)ch;
                struct iovec hv = { h, hl };
                if (st_writev_all(c, &hv, 1) == 0)
                        (void)rc_session_start(tk, &wc->t, &wc->rc);
        }

        msg_state m = { .channel = -1 };
        uint16_t close_code = 0;
        for (;;) {
                uint8_t hb[14];
                if (st_read_full(c, hb, 2) < 0)
                        break;
                ws_frame_header fh;
                size_t need = 2 + ((hb[1] & 0x7f) == 126 ? 2 : (hb[1] & 0x7f) == 127 ? 8 : 0) + ((hb[1] & 0x80) ? 4 : 0);
                if (st_read_full(c, hb + 2, need - 2) < 0)
                        break;
                if (ws_parse_frame_header(hb, need, &fh) <= 0) {
                        close_code = WS_CLOSE_PROTOCOL_ERROR;
                        break;
                }
                if (fh.rsv || !fh.masked) {
                        close_code = WS_CLOSE_PROTOCOL_ERROR;
                        break;
                }
                if (fh.opcode & 0x8) {
                        uint8_t cp[125];
                        if (!fh.fin || fh.length > 125 || fh.opcode > WS_OP_PONG) {
                                close_code = WS_CLOSE_PROTOCOL_ERROR;
                                break;
                        }
                        if (st_read_full(c, cp, fh.length) < 0)
                                break;
                        ws_mask(cp, fh.length, fh.mask, 0);
                        if (fh.opcode == WS_OP_CLOSE) {
                                /* echo the code, then we are done */
                                ws_send_control(wc, WS_OP_CLOSE, cp, fh.length >= 2 ? 2 : 0);
                                break;
                        }
                        if (fh.opcode == WS_OP_PING)
                                ws_send_control(wc, WS_OP_PONG, cp, fh.length);
                        continue;
                }
                if (fh.opcode != WS_OP_CONT && fh.opcode != WS_OP_TEXT && fh.opcode != WS_OP_BINARY) {
                        close_code = WS_CLOSE_PROTOCOL_ERROR;
                        break;
                }
                if ((fh.opcode == WS_OP_CONT) != m.active) {
                        close_code = WS_CLOSE_PROTOCOL_ERROR; /* continuation without start, or interleaved start */
                        break;
                }
                if (fh.length > WS_MAX_FRAME_PAYLOAD) {
                        close_code = WS_CLOSE_TOO_BIG;
                        break;
                }
                if (!m.active) {
                        m = (msg_state){ .active = true, .channel = -1 };
                }
                uint64_t left = fh.length, off = 0;
                int r = 0;
                while (left > 0) {
                        size_t k = (size_t)CC_MIN(left, (uint64_t)SEND_CHUNK);
                        r = st_read_full(c, buf, k);
                        if (r < 0)
                                break;
                        ws_mask(buf, k, fh.mask, off);
                        off += k;
                        left -= k;
                        if (feed(wc, &m, buf, k) < 0) {
                                r = -EBADMSG;
                                close_code = WS_CLOSE_INVALID_DATA;
                                break;
                        }
                }
                if (r < 0)
                        break;
                if (fh.fin)
                        m.active = false;
        }
        if (close_code)
                ws_close(wc, close_code);
        if (wc->rc) {
                if (!rc_session_finished(wc->rc))
                        rc_session_client_gone(wc->rc);
                rc_session_join_free(wc->rc);
        }
        st_conn_kill(c);
        for (int i = 0; i < wc->n_pf; i++) {
                if (wc->pf[i].fd >= 0)
                        shutdown(wc->pf[i].fd, SHUT_RDWR);
                if (wc->pf[i].thread_started)
                        pthread_join(wc->pf[i].thread, NULL);
                if (wc->pf[i].fd >= 0)
                        close(wc->pf[i].fd);
        }
        if (pf)
                st_server_session_count(tk->server, -1);
        pthread_mutex_destroy(&wc->lock);
        free(wc);
}
