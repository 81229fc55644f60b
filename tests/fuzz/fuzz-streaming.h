/* SPDX-License-Identifier: Apache-2.0 */
/* Shared harness of fuzz-spdy.c and fuzz-websocket.c: runs one upgraded
 * connection handler on a socketpair whose peer has already sent `data`
 * (after the first byte, which picks the session kind and options) and then
 * shut down; a thread drains what the server writes. The backend is a stub
 * whose process "exits" at once with status 3. */
#pragma once

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cri-server/streaming/internal.h"

static int stub_start(void *b, streaming_session *s, streaming_kind k, void *p, const streaming_opts *o, void **h,
                      cc_error **e)
{
        *h = s;
        if (o->stdout_)
                (void)streaming_session_write(s, STREAMING_STDOUT, "out", 3);
        return 0;
}
static int stub_write(void *h, const void *b, size_t n) { return 0; }
static int stub_close(void *h) { return 0; }
static int stub_resize(void *h, uint16_t w, uint16_t hh) { return 0; }
static int stub_wait(void *h, int *code, cc_error **e)
{
        *code = 3;
        return 0;
}
static void stub_cancel(void *h) {}
static void stub_release(void *h) {}
static int stub_connect(void *b, void *p, uint16_t port, cc_error **e)
{
        if (port % 2)
                return cc_error_set(e, -ECONNREFUSED, "refused");
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                return -errno;
        close(sv[1]); /* the "pod" hangs up at once */
        return sv[0];
}
static const streaming_backend_ops stub_ops = {
        stub_start, stub_write, stub_close, stub_resize, stub_wait, stub_cancel, stub_release, stub_connect,
};

static void *drain(void *arg)
{
        int fd = *(int *)arg;
        char buf[65536];
        while (read(fd, buf, sizeof(buf)) > 0)
                ;
        return NULL;
}

static void fuzz_run_connection(const uint8_t *data, size_t size, bool websocket)
{
        static streaming_server *server;
        if (!server) {
                signal(SIGPIPE, SIG_IGN);
                streaming_server_config cfg = { .address = "127.0.0.1", .ops = &stub_ops };
                if (streaming_server_new(&cfg, &server, NULL) < 0)
                        abort();
        }
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                return;
        shutdown(sv[1], SHUT_WR); /* after `data`, the peer sends nothing more */
        pthread_t t;
        pthread_create(&t, NULL, drain, &sv[1]);

        uint8_t mode = data[0];
        st_conn c = { .fd = sv[0] };
        pthread_mutex_init(&c.wlock, NULL);
        c.rbuf = malloc(size);
        memcpy(c.rbuf, data + 1, size - 1);
        c.rlen = size - 1;

        uint16_t port = 80;
        st_ticket tk = {
                .kind = (mode & 3) == 3 ? STREAMING_PORTFORWARD : (mode & 1) ? STREAMING_ATTACH : STREAMING_EXEC,
                .opts = { .stdin_ = mode & 4, .stdout_ = mode & 8, .stderr_ = mode & 16, .tty = mode & 32,
                          .ports = &port, .n_ports = 1 },
                .server = server,
                .ops = &stub_ops,
                .stream_creation_timeout_ms = 1000,
        };
        char h0[] = "Connection", v0[] = "Upgrade", h1[] = "Upgrade", h2[] = "X-Stream-Protocol-Version",
             h3[] = "Sec-WebSocket-Key", v3[] = "dGhlIHNhbXBsZSBub25jZQ==", h4[] = "Sec-WebSocket-Version", v4[] = "13",
             h5[] = "Sec-WebSocket-Protocol";
        char v1s[] = "SPDY/3.1", v1w[] = "websocket";
        char *protos[] = { "v4.channel.k8s.io", "v5.channel.k8s.io", "v4.base64.channel.k8s.io", "channel.k8s.io" };
        char pf[] = "portforward.k8s.io";
        st_request req = { .method = "GET", .path = "/", .query = (mode & 64) ? "ports=80,81" : "" };
        req.headers[0] = (st_header){ h0, v0 };
        req.headers[1] = (st_header){ h1, websocket ? v1w : v1s };
        req.headers[2] = (st_header){ websocket ? h5 : h2, tk.kind == STREAMING_PORTFORWARD && !websocket ? pf : protos[(mode >> 6) & 3] };
        req.headers[3] = (st_header){ h3, v3 };
        req.headers[4] = (st_header){ h4, v4 };
        req.n_headers = 5;
        if (websocket)
                ws_serve(&c, &req, &tk);
        else
                spdy_serve(&c, &req, &tk);
        shutdown(sv[0], SHUT_RDWR);
        pthread_join(t, NULL);
        close(sv[0]);
        close(sv[1]);
        free(c.rbuf);
        pthread_mutex_destroy(&c.wlock);
}
