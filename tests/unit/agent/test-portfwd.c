/* SPDX-License-Identifier: Apache-2.0 */
/* agent/portfwd.c served over a real ttRPC connection (socketpair) to real
 * loopback servers: data both ways, half-close, EOF, handle validation
 * (zero, forged, stale, out of range), bounds, and clean-up when the host
 * disconnects. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/agent.h"
#include "agent/portfwd.h"
#include "common/ttrpc.h"
#include "cocoon-agent.pb-c.h"

/* What agent/portfwd.c uses of the rest of the agent. */
agent_state agent;
pthread_mutex_t agent_lock = PTHREAD_MUTEX_INITIALIZER;

ProtobufCMessage *agent_unpack(ttrpc_call *call, const ProtobufCMessageDescriptor *d,
                               const uint8_t *payload, size_t len)
{
        ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, len, payload);
        if (!m)
                ttrpc_call_reply_status(call, TTRPC_CODE_INVALID_ARGUMENT, "cannot decode %s", d->name);
        return m;
}

#define SVC "cocoon.agent.PortForward"
#define T_MS 10000

static ttrpc_server *srv;
static ttrpc_client *cli;
static pthread_t serve_thread;

static void *serve(void *arg)
{
        ttrpc_server_serve_fd(srv, (int)(intptr_t)arg, NULL);
        return NULL;
}

static void connect_host(void)
{
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(pthread_create(&serve_thread, NULL, serve, (void *)(intptr_t)sv[0]), 0);
        cli = ttrpc_client_new(sv[1], NULL);
        assert_non_null(cli);
}

static void disconnect_host(void)
{
        ttrpc_client_free(cli);
        cli = NULL;
        pthread_join(serve_thread, NULL);
}

static int setup(void **state)
{
        srv = ttrpc_server_new(NULL);
        assert_non_null(srv);
        assert_int_equal(agent_portfwd_register(srv, NULL), 0);
        connect_host();
        return 0;
}

static int teardown(void **state)
{
        disconnect_host();
        ttrpc_server_shutdown(srv);
        ttrpc_server_free(srv);
        return 0;
}

/* A listening socket on loopback; returns its port. */
static int listener(int family, uint16_t *ret_port)
{
        int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        struct sockaddr_storage ss = { 0 };
        socklen_t l;
        if (family == AF_INET) {
                struct sockaddr_in *s = (void *)&ss;
                s->sin_family = AF_INET;
                s->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                l = sizeof(*s);
        } else {
                struct sockaddr_in6 *s = (void *)&ss;
                s->sin6_family = AF_INET6;
                s->sin6_addr = in6addr_loopback;
                setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
                l = sizeof(*s);
        }
        if (bind(fd, (void *)&ss, l) < 0) {
                close(fd);
                return -1;
        }
        assert_int_equal(listen(fd, 8), 0);
        getsockname(fd, (void *)&ss, &l);
        *ret_port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                            : ((struct sockaddr_in6 *)&ss)->sin6_port);
        return fd;
}

static int pf_open(uint32_t port, uint64_t *ret_handle, cc_error **err)
{
        Cocoon__Agent__PortForwardOpenRequest req = COCOON__AGENT__PORT_FORWARD_OPEN_REQUEST__INIT;
        req.port = port;
        ProtobufCMessage *resp = NULL;
        int r = ttrpc_client_call_pb(cli, SVC, "Open", &req.base,
                                     &cocoon__agent__port_forward_open_response__descriptor, T_MS, &resp, err);
        if (r == 0) {
                *ret_handle = ((Cocoon__Agent__PortForwardOpenResponse *)resp)->handle;
                protobuf_c_message_free_unpacked(resp, NULL);
        }
        return r;
}

static int pf_write(uint64_t h, const void *data, size_t len, bool close_write, cc_error **err)
{
        Cocoon__Agent__PortForwardWriteRequest req = COCOON__AGENT__PORT_FORWARD_WRITE_REQUEST__INIT;
        req.handle = h;
        req.data.data = (uint8_t *)data;
        req.data.len = len;
        req.close_write = close_write;
        ProtobufCMessage *resp = NULL;
        int r = ttrpc_client_call_pb(cli, SVC, "Write", &req.base,
                                     &cocoon__agent__port_forward_empty__descriptor, T_MS, &resp, err);
        if (resp)
                protobuf_c_message_free_unpacked(resp, NULL);
        return r;
}

/* Returns bytes read into buf, 0 at eof, <0 error. */
static int pf_read(uint64_t h, void *buf, size_t cap, cc_error **err)
{
        Cocoon__Agent__PortForwardReadRequest req = COCOON__AGENT__PORT_FORWARD_READ_REQUEST__INIT;
        req.handle = h;
        req.max_len = (uint32_t)cap;
        ProtobufCMessage *resp = NULL;
        int r = ttrpc_client_call_pb(cli, SVC, "Read", &req.base,
                                     &cocoon__agent__port_forward_read_response__descriptor, T_MS, &resp, err);
        if (r < 0)
                return r;
        Cocoon__Agent__PortForwardReadResponse *rr = (void *)resp;
        assert_true(rr->data.len <= cap);
        memcpy(buf, rr->data.data, rr->data.len);
        r = (int)rr->data.len;
        if (rr->eof)
                assert_int_equal(r, 0);
        protobuf_c_message_free_unpacked(resp, NULL);
        return r;
}

static int pf_close(uint64_t h, cc_error **err)
{
        Cocoon__Agent__PortForwardCloseRequest req = COCOON__AGENT__PORT_FORWARD_CLOSE_REQUEST__INIT;
        req.handle = h;
        ProtobufCMessage *resp = NULL;
        int r = ttrpc_client_call_pb(cli, SVC, "Close", &req.base,
                                     &cocoon__agent__port_forward_empty__descriptor, T_MS, &resp, err);
        if (resp)
                protobuf_c_message_free_unpacked(resp, NULL);
        return r;
}

static void expect_code(int r, cc_error **err, int grpc)
{
        assert_true(r < 0);
        assert_non_null(*err);
        assert_int_equal((*err)->grpc, grpc);
        cc_error_free(*err);
        *err = NULL;
}

static void test_data_both_ways(void **state)
{
        uint16_t port;
        int lfd = listener(AF_INET, &port);
        uint64_t h = 0;
        cc_error *err = NULL;
        assert_int_equal(pf_open(port, &h, &err), 0);
        int s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        assert_true(s >= 0);
        assert_int_equal(pf_write(h, "hello", 5, false, &err), 0);
        char buf[4096];
        assert_int_equal(read(s, buf, sizeof(buf)), 5);
        assert_memory_equal(buf, "hello", 5);
        assert_int_equal(write(s, "world!", 6), 6);
        int n = pf_read(h, buf, sizeof(buf), &err);
        assert_int_equal(n, 6);
        assert_memory_equal(buf, "world!", 6);
        /* half-close towards the server: it reads EOF, can still answer */
        assert_int_equal(pf_write(h, NULL, 0, true, &err), 0);
        assert_int_equal(read(s, buf, sizeof(buf)), 0);
        assert_int_equal(write(s, "bye", 3), 3);
        close(s);
        size_t got = 0;
        for (;;) {
                n = pf_read(h, buf + got, sizeof(buf) - got, &err);
                assert_true(n >= 0);
                if (n == 0)
                        break;
                got += (size_t)n;
        }
        assert_int_equal(got, 3);
        assert_memory_equal(buf, "bye", 3);
        /* writes after close_write are refused */
        expect_code(pf_write(h, "x", 1, false, &err), &err, TTRPC_CODE_FAILED_PRECONDITION);
        err = NULL;
        assert_int_equal(pf_close(h, &err), 0);
        assert_int_equal(agent_portfwd_count(), 0);
        close(lfd);
}

static void test_big_transfer(void **state)
{
        uint16_t port;
        int lfd = listener(AF_INET, &port);
        uint64_t h = 0;
        cc_error *err = NULL;
        assert_int_equal(pf_open(port, &h, &err), 0);
        int s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        /* 8 MiB from the server: more than the agent buffers; the server
         * blocks until the host reads (flow control). */
        size_t total = 8u << 20;
        pid_t pid = fork();
        if (pid == 0) {
                char chunk[65536];
                for (size_t i = 0; i < sizeof(chunk); i++)
                        chunk[i] = (char)(i * 7);
                for (size_t off = 0; off < total; off += sizeof(chunk))
                        if (write(s, chunk, sizeof(chunk)) != (ssize_t)sizeof(chunk))
                                _exit(1);
                _exit(0);
        }
        close(s);
        static char buf[1 << 20];
        size_t got = 0;
        bool ok = true;
        for (;;) {
                int n = pf_read(h, buf, sizeof(buf), &err);
                assert_true(n >= 0);
                if (n == 0)
                        break;
                for (int i = 0; i < n; i++)
                        if (buf[i] != (char)(((got + (size_t)i) % 65536) * 7))
                                ok = false;
                got += (size_t)n;
        }
        assert_true(ok);
        assert_int_equal(got, total);
        assert_int_equal(pf_close(h, &err), 0);
        close(lfd);
}

static void test_ipv6_fallback(void **state)
{
        uint16_t port;
        int lfd = listener(AF_INET6, &port);
        if (lfd < 0) {
                skip();
                return;
        }
        uint64_t h = 0;
        cc_error *err = NULL;
        assert_int_equal(pf_open(port, &h, &err), 0);
        int s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        assert_true(s >= 0);
        assert_int_equal(pf_write(h, "v6", 2, false, &err), 0);
        char buf[8];
        assert_int_equal(read(s, buf, sizeof(buf)), 2);
        close(s);
        assert_int_equal(pf_close(h, &err), 0);
        close(lfd);
}

static void test_bad_requests(void **state)
{
        cc_error *err = NULL;
        uint64_t h = 0;
        expect_code(pf_open(0, &h, &err), &err, TTRPC_CODE_INVALID_ARGUMENT);
        err = NULL;
        expect_code(pf_open(65536, &h, &err), &err, TTRPC_CODE_INVALID_ARGUMENT);
        err = NULL;
        /* a closed port: refused on both families */
        uint16_t port;
        int lfd = listener(AF_INET, &port);
        close(lfd);
        expect_code(pf_open(port, &h, &err), &err, TTRPC_CODE_UNAVAILABLE);
        err = NULL;
        assert_int_equal(agent_portfwd_count(), 0);
        /* garbage payload */
        uint8_t junk[] = { 0xff, 0xff, 0xff };
        uint8_t *resp = NULL;
        size_t rl = 0;
        int r = ttrpc_client_call(cli, SVC, "Open", junk, sizeof(junk), T_MS, &resp, &rl, &err);
        expect_code(r, &err, TTRPC_CODE_INVALID_ARGUMENT);
}

static void test_handle_validation(void **state)
{
        uint16_t port;
        int lfd = listener(AF_INET, &port);
        uint64_t h = 0;
        cc_error *err = NULL;
        assert_int_equal(pf_open(port, &h, &err), 0);
        int s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        char buf[16];
        const uint64_t forged[] = {
                0,                                  /* no slot */
                h & 0xffffffffu,                    /* right slot, generation 0 */
                h ^ (1ull << 32),                   /* wrong generation */
                (h & ~0xffffffffull) | (PORTFWD_MAX_HANDLES + 1), /* slot out of range */
                UINT64_MAX,
        };
        for (size_t i = 0; i < sizeof(forged) / sizeof(forged[0]); i++) {
                if (forged[i] == h)
                        continue;
                expect_code(pf_read(forged[i], buf, sizeof(buf), &err), &err, TTRPC_CODE_NOT_FOUND);
                err = NULL;
                expect_code(pf_write(forged[i], "x", 1, false, &err), &err, TTRPC_CODE_NOT_FOUND);
                err = NULL;
                expect_code(pf_close(forged[i], &err), &err, TTRPC_CODE_NOT_FOUND);
                err = NULL;
        }
        /* too big a write */
        size_t big = (1u << 20) + 1;
        char *p = calloc(1, big);
        expect_code(pf_write(h, p, big, false, &err), &err, TTRPC_CODE_INVALID_ARGUMENT);
        err = NULL;
        free(p);
        /* the real handle still works */
        assert_int_equal(pf_write(h, "ok", 2, false, &err), 0);
        assert_int_equal(read(s, buf, sizeof(buf)), 2);
        assert_int_equal(pf_close(h, &err), 0);
        /* closed: stale, and stays stale when the slot is reused */
        expect_code(pf_close(h, &err), &err, TTRPC_CODE_NOT_FOUND);
        err = NULL;
        uint64_t h2 = 0;
        assert_int_equal(pf_open(port, &h2, &err), 0);
        assert_int_not_equal(h2, h);
        expect_code(pf_write(h, "x", 1, false, &err), &err, TTRPC_CODE_NOT_FOUND);
        err = NULL;
        assert_int_equal(pf_close(h2, &err), 0);
        close(s);
        close(lfd);
}

static void test_host_disconnect_closes(void **state)
{
        uint16_t port;
        int lfd = listener(AF_INET, &port);
        uint64_t h = 0;
        cc_error *err = NULL;
        assert_int_equal(pf_open(port, &h, &err), 0);
        int s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        assert_int_equal(agent_portfwd_count(), 1);
        /* a Read in flight, then the host goes away */
        Cocoon__Agent__PortForwardReadRequest req = COCOON__AGENT__PORT_FORWARD_READ_REQUEST__INIT;
        req.handle = h;
        ProtobufCMessage *resp = NULL;
        int r = ttrpc_client_call_pb(cli, SVC, "Read", &req.base,
                                     &cocoon__agent__port_forward_read_response__descriptor, 200, &resp, &err);
        assert_int_equal(r, -ETIMEDOUT); /* on our side; the agent still holds it */
        cc_error_free(err);
        err = NULL;
        disconnect_host();
        /* the agent's sweep notices within PORTFWD_SWEEP_S and closes the
         * connection to the server */
        struct pollfd p = { .fd = s, .events = POLLIN };
        assert_int_equal(poll(&p, 1, (PORTFWD_SWEEP_S * 2 + 2) * 1000), 1);
        char c;
        assert_int_equal(read(s, &c, 1), 0);
        assert_int_equal(agent_portfwd_count(), 0);
        close(s);
        close(lfd);
        connect_host();
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_data_both_ways),
                cmocka_unit_test(test_big_transfer),
                cmocka_unit_test(test_ipv6_fallback),
                cmocka_unit_test(test_bad_requests),
                cmocka_unit_test(test_handle_validation),
                cmocka_unit_test(test_host_disconnect_closes),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
