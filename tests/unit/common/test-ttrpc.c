/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for common/ttrpc.c: framing golden bytes, client <-> server over
 * socketpairs, and a hostile raw peer on either side. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>
#include <pty.h>

#include <cmocka.h>

#include "common/ttrpc.h"
#include "common/ttrpc-internal.h"
#include "agent.pb-c.h"
#include "health.pb-c.h"
#include "ttrpc.pb-c.h"

#define SVC "test.Svc"

static uint64_t mono_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- raw peer helpers (blocking fd) ------------------------------------- */

static void write_all(int fd, const void *buf, size_t n)
{
        const uint8_t *p = buf;
        while (n > 0) {
                ssize_t k = write(fd, p, n);
                assert_true(k > 0);
                p += k;
                n -= (size_t)k;
        }
}

static int read_all(int fd, void *buf, size_t n)
{
        uint8_t *p = buf;
        while (n > 0) {
                ssize_t k = read(fd, p, n);
                if (k <= 0)
                        return -1;
                p += k;
                n -= (size_t)k;
        }
        return 0;
}

static void raw_write_frame(int fd, uint8_t type, uint32_t id, const void *payload, uint32_t len)
{
        uint8_t hdr[TTRPC_HEADER_SIZE];
        ttrpc_header_encode(&(ttrpc_header){ .length = len, .stream_id = id, .type = type }, hdr);
        write_all(fd, hdr, sizeof(hdr));
        if (len)
                write_all(fd, payload, len);
}

/* Reads a request frame; returns its envelope (free with
 * ttrpc__request__free_unpacked). */
static Ttrpc__Request *raw_read_request(int fd, uint32_t *ret_id)
{
        uint8_t hdr[TTRPC_HEADER_SIZE];
        ttrpc_header h;
        assert_int_equal(read_all(fd, hdr, sizeof(hdr)), 0);
        assert_int_equal(ttrpc_header_decode(hdr, &h, NULL), 0);
        assert_int_equal(h.type, TTRPC_TYPE_REQUEST);
        uint8_t *buf = malloc(h.length + 1);
        assert_non_null(buf);
        assert_int_equal(read_all(fd, buf, h.length), 0);
        Ttrpc__Request *rq = ttrpc__request__unpack(NULL, h.length, buf);
        free(buf);
        assert_non_null(rq);
        *ret_id = h.stream_id;
        return rq;
}

static void raw_write_response(int fd, uint32_t id, const void *payload, size_t len)
{
        Ttrpc__Response rs = TTRPC__RESPONSE__INIT;
        rs.payload.data = (uint8_t *)payload;
        rs.payload.len = len;
        uint8_t buf[256];
        size_t n = ttrpc__response__get_packed_size(&rs);
        assert_true(n <= sizeof(buf));
        ttrpc__response__pack(&rs, buf);
        raw_write_frame(fd, TTRPC_TYPE_RESPONSE, id, buf, (uint32_t)n);
}

/* ---- framing ------------------------------------------------------------ */

static void test_header_golden(void **state)
{
        uint8_t out[TTRPC_HEADER_SIZE];
        static const uint8_t golden[TTRPC_HEADER_SIZE] = { 0x00, 0x00, 0x01, 0x02, 0x81, 0x02, 0x03, 0x05, 0x02, 0x01 };
        ttrpc_header h = { .length = 0x102, .stream_id = 0x81020305, .type = TTRPC_TYPE_RESPONSE, .flags = 1 };

        ttrpc_header_encode(&h, out);
        assert_memory_equal(out, golden, sizeof(golden));

        ttrpc_header d = { 0 };
        assert_int_equal(ttrpc_header_decode(golden, &d, NULL), 0);
        assert_int_equal(d.length, 0x102);
        assert_int_equal(d.stream_id, 0x81020305);
        assert_int_equal(d.type, TTRPC_TYPE_RESPONSE);
        assert_int_equal(d.flags, 1);

        /* Exactly 4 MiB is fine, one more byte is not. */
        static const uint8_t max[TTRPC_HEADER_SIZE] = { 0x00, 0x40, 0x00, 0x00, 0, 0, 0, 1, 1, 0 };
        static const uint8_t over[TTRPC_HEADER_SIZE] = { 0x00, 0x40, 0x00, 0x01, 0, 0, 0, 1, 1, 0 };
        static const uint8_t huge[TTRPC_HEADER_SIZE] = { 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 1, 0 };
        static const uint8_t badtype[TTRPC_HEADER_SIZE] = { 0, 0, 0, 0, 0, 0, 0, 1, 4, 0 };
        static const uint8_t zerotype[TTRPC_HEADER_SIZE] = { 0, 0, 0, 0, 0, 0, 0, 1, 0, 0 };
        cc_error *err = NULL;
        assert_int_equal(ttrpc_header_decode(max, &d, NULL), 0);
        assert_int_equal(d.length, TTRPC_MAX_PAYLOAD);
        assert_int_equal(ttrpc_header_decode(over, &d, &err), -EMSGSIZE);
        assert_non_null(err);
        cc_error_free(err);
        err = NULL;
        assert_int_equal(ttrpc_header_decode(huge, &d, NULL), -EMSGSIZE);
        assert_int_equal(ttrpc_header_decode(badtype, &d, NULL), -EBADMSG);
        assert_int_equal(ttrpc_header_decode(zerotype, &d, NULL), -EBADMSG);
}

static void test_envelope_golden(void **state)
{
        Ttrpc__Request rq = TTRPC__REQUEST__INIT;
        uint8_t one = 1, buf[64];
        static const uint8_t golden[] = { 0x0a, 0x01, 's', 0x12, 0x01, 'm', 0x1a, 0x01, 0x01, 0x20, 0x05 };

        rq.service = "s";
        rq.method = "m";
        rq.payload.data = &one;
        rq.payload.len = 1;
        rq.timeout_nano = 5;
        assert_int_equal(ttrpc__request__get_packed_size(&rq), sizeof(golden));
        ttrpc__request__pack(&rq, buf);
        assert_memory_equal(buf, golden, sizeof(golden));

        /* Response{status{code 12, message "x"}}: google.rpc.Status layout. */
        Ttrpc__Status st = TTRPC__STATUS__INIT;
        Ttrpc__Response rs = TTRPC__RESPONSE__INIT;
        static const uint8_t golden_rs[] = { 0x0a, 0x05, 0x08, 0x0c, 0x12, 0x01, 'x' };
        st.code = 12;
        st.message = "x";
        rs.status = &st;
        assert_int_equal(ttrpc__response__get_packed_size(&rs), sizeof(golden_rs));
        ttrpc__response__pack(&rs, buf);
        assert_memory_equal(buf, golden_rs, sizeof(golden_rs));
}

static void test_codes(void **state)
{
        assert_string_equal(ttrpc_code_to_string(TTRPC_CODE_UNIMPLEMENTED), "UNIMPLEMENTED");
        assert_string_equal(ttrpc_code_to_string(99), "UNKNOWN_CODE");
        assert_int_equal(ttrpc_code_from_errno(-ENOENT), TTRPC_CODE_NOT_FOUND);
        assert_int_equal(ttrpc_code_to_errno(TTRPC_CODE_NOT_FOUND), -ENOENT);
        assert_int_equal(ttrpc_code_to_errno(TTRPC_CODE_UNIMPLEMENTED), -EOPNOTSUPP);
        assert_int_equal(ttrpc_code_from_errno(-12345), TTRPC_CODE_UNKNOWN);
        assert_int_equal(ttrpc_code_to_errno(12345), -EIO);
}

/* ---- a real server ------------------------------------------------------ */

typedef struct fixture {
        ttrpc_server *server;
        ttrpc_client *client;
        pthread_t serve_thread;
        int serve_result;

        /* Deferred calls, answered out of order by the replier thread. */
        pthread_mutex_t mu;
        pthread_cond_t cond;
        ttrpc_call *queue[256];
        uint8_t *queue_data[256];
        size_t queue_len[256];
        unsigned nqueue;
        bool stop;
        pthread_t replier;

        ttrpc_call *parked; /* "Never": answered by the test */
} fixture;

static fixture *F;

static void h_echo(ttrpc_call *call, const uint8_t *p, size_t n, void *ud)
{
        ttrpc_call_reply(call, p, n);
}

static void h_fail(ttrpc_call *call, const uint8_t *p, size_t n, void *ud)
{
        ttrpc_call_reply_status(call, TTRPC_CODE_NOT_FOUND, "nope \x01 %s", "here");
}

static void h_defer(ttrpc_call *call, const uint8_t *p, size_t n, void *ud)
{
        fixture *f = ud;
        pthread_mutex_lock(&f->mu);
        assert_true(f->nqueue < 256);
        f->queue[f->nqueue] = call;
        f->queue_data[f->nqueue] = malloc(n + 1);
        memcpy(f->queue_data[f->nqueue], p, n);
        f->queue_len[f->nqueue] = n;
        f->nqueue++;
        pthread_cond_signal(&f->cond);
        pthread_mutex_unlock(&f->mu);
}

static void h_never(ttrpc_call *call, const uint8_t *p, size_t n, void *ud)
{
        fixture *f = ud;
        pthread_mutex_lock(&f->mu);
        assert_null(f->parked);
        f->parked = call;
        pthread_cond_broadcast(&f->cond);
        pthread_mutex_unlock(&f->mu);
}

static void h_check(ttrpc_call *call, const uint8_t *p, size_t n, void *ud)
{
        Grpc__CheckRequest *rq = grpc__check_request__unpack(NULL, n, p);
        if (!rq) {
                ttrpc_call_reply_status(call, TTRPC_CODE_INVALID_ARGUMENT, "bad CheckRequest");
                return;
        }
        Grpc__HealthCheckResponse rs = GRPC__HEALTH_CHECK_RESPONSE__INIT;
        rs.status = strcmp(rq->service, "agent") == 0 ? GRPC__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                                                      : GRPC__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
        grpc__check_request__free_unpacked(rq, NULL);
        ttrpc_call_reply_pb(call, &rs.base);
}

static void h_create(ttrpc_call *call, const uint8_t *p, size_t n, void *ud)
{
        Grpc__CreateContainerRequest *rq = grpc__create_container_request__unpack(NULL, n, p);
        if (!rq || !rq->oci || !rq->oci->linux || rq->oci->linux->n_namespaces != 1) {
                if (rq)
                        grpc__create_container_request__free_unpacked(rq, NULL);
                ttrpc_call_reply_status(call, TTRPC_CODE_INVALID_ARGUMENT, "bad CreateContainerRequest");
                return;
        }
        bool ok = strcmp(rq->container_id, "c1") == 0 && strcmp(rq->oci->linux->namespaces[0]->type, "pid") == 0 &&
                  rq->stdout_port == 1025;
        grpc__create_container_request__free_unpacked(rq, NULL);
        if (!ok) {
                ttrpc_call_reply_status(call, TTRPC_CODE_INVALID_ARGUMENT, "wrong contents");
                return;
        }
        Google__Protobuf__Empty e = GOOGLE__PROTOBUF__EMPTY__INIT;
        ttrpc_call_reply_pb(call, &e.base);
}

/* Answers deferred calls in batches, last first. */
static void *replier(void *arg)
{
        fixture *f = arg;
        pthread_mutex_lock(&f->mu);
        for (;;) {
                while (f->nqueue == 0 && !f->stop)
                        pthread_cond_wait(&f->cond, &f->mu);
                if (f->stop && f->nqueue == 0)
                        break;
                /* Let a batch build up: wait (bounded) for more calls. */
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += 20 * 1000000;
                if (ts.tv_nsec >= 1000000000) {
                        ts.tv_sec++;
                        ts.tv_nsec -= 1000000000;
                }
                while (f->nqueue < 16 && !f->stop)
                        if (pthread_cond_timedwait(&f->cond, &f->mu, &ts) == ETIMEDOUT)
                                break;
                while (f->nqueue > 0) {
                        unsigned i = --f->nqueue;
                        ttrpc_call *call = f->queue[i];
                        uint8_t *d = f->queue_data[i];
                        size_t len = f->queue_len[i];
                        pthread_mutex_unlock(&f->mu);
                        ttrpc_call_reply(call, d, len);
                        free(d);
                        pthread_mutex_lock(&f->mu);
                }
        }
        pthread_mutex_unlock(&f->mu);
        return NULL;
}

typedef struct serve_args {
        ttrpc_server *s;
        int fd;
        int *result;
} serve_args;

static void *serve_main(void *arg)
{
        serve_args *a = arg;
        cc_error *err = NULL;
        *a->result = ttrpc_server_serve_fd(a->s, a->fd, &err);
        if (*a->result < 0) {
                assert_non_null(err);
                cc_error_free(err);
        } else
                assert_null(err);
        free(a);
        return NULL;
}

static void start_serving(ttrpc_server *s, int fd, pthread_t *t, int *result)
{
        serve_args *a = malloc(sizeof(*a));
        *a = (serve_args){ .s = s, .fd = fd, .result = result };
        *result = 1;
        assert_int_equal(pthread_create(t, NULL, serve_main, a), 0);
}

static int setup(void **state)
{
        int sv[2];
        fixture *f = calloc(1, sizeof(*f));
        cc_error *err = NULL;

        pthread_mutex_init(&f->mu, NULL);
        pthread_cond_init(&f->cond, NULL);
        f->server = ttrpc_server_new(&err);
        assert_non_null(f->server);
        assert_int_equal(ttrpc_server_register(f->server, SVC, "Echo", h_echo, f, NULL), 0);
        assert_int_equal(ttrpc_server_register(f->server, SVC, "Fail", h_fail, f, NULL), 0);
        assert_int_equal(ttrpc_server_register(f->server, SVC, "Defer", h_defer, f, NULL), 0);
        assert_int_equal(ttrpc_server_register(f->server, SVC, "Never", h_never, f, NULL), 0);
        assert_int_equal(ttrpc_server_register(f->server, "grpc.Health", "Check", h_check, f, NULL), 0);
        assert_int_equal(ttrpc_server_register(f->server, "grpc.AgentService", "CreateContainer", h_create, f,
                                               NULL),
                         0);
        assert_int_equal(ttrpc_server_register(f->server, SVC, "Echo", h_echo, f, NULL), -EEXIST);
        assert_int_equal(pthread_create(&f->replier, NULL, replier, f), 0);

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        start_serving(f->server, sv[1], &f->serve_thread, &f->serve_result);
        f->client = ttrpc_client_new(sv[0], &err);
        assert_non_null(f->client);
        F = f;
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        fixture *f = *state;

        ttrpc_client_free(f->client);
        pthread_join(f->serve_thread, NULL);
        assert_int_equal(f->serve_result, 0); /* the client closed: EOF */
        pthread_mutex_lock(&f->mu);
        f->stop = true;
        pthread_cond_broadcast(&f->cond);
        pthread_mutex_unlock(&f->mu);
        pthread_join(f->replier, NULL);
        if (f->parked)
                assert_int_equal(ttrpc_call_reply(f->parked, NULL, 0), -ENOTCONN);
        ttrpc_server_free(f->server);
        pthread_cond_destroy(&f->cond);
        pthread_mutex_destroy(&f->mu);
        free(f);
        F = NULL;
        return 0;
}

static void test_round_trip(void **state)
{
        fixture *f = *state;
        uint8_t *resp = NULL;
        size_t len = 0;
        cc_error *err = NULL;

        assert_int_equal(ttrpc_client_call(f->client, SVC, "Echo", "hello", 5, 5000, &resp, &len, &err), 0);
        assert_null(err);
        assert_int_equal(len, 5);
        assert_memory_equal(resp, "hello", 5);
        free(resp);

        /* Empty request and reply. */
        resp = (uint8_t *)"x";
        assert_int_equal(ttrpc_client_call(f->client, SVC, "Echo", NULL, 0, 5000, &resp, &len, &err), 0);
        assert_null(resp);
        assert_int_equal(len, 0);

        /* A large payload, close to the limit. */
        size_t big = TTRPC_MAX_PAYLOAD - 1024;
        uint8_t *b = malloc(big);
        for (size_t i = 0; i < big; i++)
                b[i] = (uint8_t)(i * 7);
        assert_int_equal(ttrpc_client_call(f->client, SVC, "Echo", b, big, 10000, &resp, &len, &err), 0);
        assert_int_equal(len, big);
        assert_memory_equal(resp, b, big);
        free(resp);

        /* Too large to send: fails locally, connection still fine. */
        assert_int_equal(ttrpc_client_call(f->client, SVC, "Echo", b, TTRPC_MAX_PAYLOAD, 1000, &resp, &len, &err),
                         -EMSGSIZE);
        cc_error_free(err);
        err = NULL;
        free(b);
        assert_false(ttrpc_client_is_closed(f->client));
}

static void test_status_and_unimplemented(void **state)
{
        fixture *f = *state;
        cc_error *err = NULL;

        assert_int_equal(ttrpc_client_call(f->client, SVC, "Fail", "", 0, 5000, NULL, NULL, &err), -ENOENT);
        assert_non_null(err);
        assert_int_equal(err->grpc, TTRPC_CODE_NOT_FOUND);
        assert_non_null(strstr(err->msg, "NOT_FOUND"));
        assert_non_null(strstr(err->msg, "nope ? here")); /* control byte sanitised */
        cc_error_free(err);
        err = NULL;

        assert_int_equal(ttrpc_client_call(f->client, SVC, "Bogus", "", 0, 5000, NULL, NULL, &err), -EOPNOTSUPP);
        assert_non_null(err);
        assert_int_equal(err->grpc, TTRPC_CODE_UNIMPLEMENTED);
        assert_non_null(strstr(err->msg, "method " SVC "/Bogus not implemented"));
        cc_error_free(err);
        err = NULL;

        assert_int_equal(ttrpc_client_call(f->client, "no.Such", "Echo", "", 0, 5000, NULL, NULL, &err), -EOPNOTSUPP);
        assert_int_equal(err->grpc, TTRPC_CODE_UNIMPLEMENTED);
        cc_error_free(err);
}

#define THREADS 8
#define CALLS 100

static void *concurrent_worker(void *arg)
{
        intptr_t t = (intptr_t)arg;
        for (int i = (int)t; i < CALLS; i += THREADS) {
                char req[32];
                int n = snprintf(req, sizeof(req), "call-%d", i);
                uint8_t *resp = NULL;
                size_t len = 0;
                cc_error *err = NULL;
                int r = ttrpc_client_call(F->client, SVC, i % 3 ? "Defer" : "Echo", req, (size_t)n, 10000, &resp,
                                          &len, &err);
                if (r < 0) {
                        fprintf(stderr, "call %d: %s\n", i, err->msg);
                        cc_error_free(err);
                        return (void *)1;
                }
                if (len != (size_t)n || memcmp(resp, req, len) != 0) {
                        free(resp);
                        return (void *)2;
                }
                free(resp);
        }
        return NULL;
}

static void test_concurrent_out_of_order(void **state)
{
        pthread_t t[THREADS];
        for (intptr_t i = 0; i < THREADS; i++)
                assert_int_equal(pthread_create(&t[i], NULL, concurrent_worker, (void *)i), 0);
        for (int i = 0; i < THREADS; i++) {
                void *r;
                pthread_join(t[i], &r);
                assert_null(r);
        }
}

static void test_timeout_and_late_reply(void **state)
{
        fixture *f = *state;
        cc_error *err = NULL;

        uint64_t t0 = mono_ms();
        assert_int_equal(ttrpc_client_call(f->client, SVC, "Never", "x", 1, 100, NULL, NULL, &err), -ETIMEDOUT);
        uint64_t dt = mono_ms() - t0;
        assert_true(dt >= 100 && dt < 2000);
        assert_non_null(strstr(err->msg, "timed out"));
        cc_error_free(err);
        err = NULL;

        /* The late reply is discarded; the connection keeps working. */
        pthread_mutex_lock(&f->mu);
        ttrpc_call *late = f->parked;
        f->parked = NULL;
        pthread_mutex_unlock(&f->mu);
        assert_non_null(late);
        assert_true(ttrpc_call_is_alive(late));
        assert_true(ttrpc_call_timeout_ns(late) == 100 * 1000000LL);
        assert_string_equal(ttrpc_call_method(late), "Never");
        assert_string_equal(ttrpc_call_service(late), SVC);
        assert_int_equal(ttrpc_call_reply(late, "late", 4), 0);

        uint8_t *resp = NULL;
        size_t len;
        assert_int_equal(ttrpc_client_call(f->client, SVC, "Echo", "ok", 2, 5000, &resp, &len, &err), 0);
        assert_memory_equal(resp, "ok", 2);
        free(resp);
}

typedef struct bg_call {
        ttrpc_client *c;
        const char *method;
        int64_t timeout_ms;
        int result;
        int grpc;
        uint64_t elapsed_ms;
        pthread_t t;
} bg_call;

static void *bg_call_main(void *arg)
{
        bg_call *b = arg;
        cc_error *err = NULL;
        uint64_t t0 = mono_ms();
        b->result = ttrpc_client_call(b->c, SVC, b->method, "x", 1, b->timeout_ms, NULL, NULL, &err);
        b->elapsed_ms = mono_ms() - t0;
        if (err) {
                b->grpc = err->grpc;
                cc_error_free(err);
        }
        return NULL;
}

static void bg_start(bg_call *b, ttrpc_client *c, const char *method, int64_t timeout_ms)
{
        *b = (bg_call){ .c = c, .method = method, .timeout_ms = timeout_ms, .result = 1 };
        assert_int_equal(pthread_create(&b->t, NULL, bg_call_main, b), 0);
}

static void test_close_wakes_waiters(void **state)
{
        fixture *f = *state;
        bg_call b;

        bg_start(&b, f->client, "Never", 0);
        /* Wait until the server holds the call, so the client is waiting. */
        pthread_mutex_lock(&f->mu);
        while (!f->parked)
                pthread_cond_wait(&f->cond, &f->mu);
        pthread_mutex_unlock(&f->mu);

        ttrpc_client_close(f->client);
        pthread_join(b.t, NULL);
        assert_int_equal(b.result, -ECONNABORTED);
        assert_true(ttrpc_client_is_closed(f->client));
        struct pollfd p = { .fd = ttrpc_client_closed_fd(f->client), .events = POLLIN };
        assert_int_equal(poll(&p, 1, 0), 1);

        cc_error *err = NULL;
        assert_int_equal(ttrpc_client_call(f->client, SVC, "Echo", "x", 1, 1000, NULL, NULL, &err), -ECONNABORTED);
        cc_error_free(err);
}

static void test_protobuf_messages(void **state)
{
        fixture *f = *state;
        cc_error *err = NULL;
        ProtobufCMessage *out = NULL;

        Grpc__CheckRequest rq = GRPC__CHECK_REQUEST__INIT;
        rq.service = "agent";
        assert_int_equal(ttrpc_client_call_pb(f->client, "grpc.Health", "Check", &rq.base,
                                              &grpc__health_check_response__descriptor, 5000, &out, &err),
                         0);
        Grpc__HealthCheckResponse *hc = (Grpc__HealthCheckResponse *)out;
        assert_int_equal(hc->status, GRPC__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
        protobuf_c_message_free_unpacked(out, NULL);

        /* A nested agent message: CreateContainerRequest with an OCI spec. */
        Grpc__CreateContainerRequest cc = GRPC__CREATE_CONTAINER_REQUEST__INIT;
        Grpc__Spec spec = GRPC__SPEC__INIT;
        Grpc__Linux lx = GRPC__LINUX__INIT;
        Grpc__LinuxNamespace ns = GRPC__LINUX_NAMESPACE__INIT;
        Grpc__LinuxNamespace *nss[] = { &ns };
        ns.type = "pid";
        lx.n_namespaces = 1;
        lx.namespaces = nss;
        spec.linux = &lx;
        cc.container_id = "c1";
        cc.oci = &spec;
        cc.stdout_port = 1025;
        assert_int_equal(ttrpc_client_call_pb(f->client, "grpc.AgentService", "CreateContainer", &cc.base,
                                              &google__protobuf__empty__descriptor, 5000, &out, &err),
                         0);
        assert_non_null(out);
        protobuf_c_message_free_unpacked(out, NULL);

        /* proto3 optional fields are one-field oneofs: presence round-trips. */
        Grpc__MemAgentMemcgConfig mc = GRPC__MEM_AGENT_MEMCG_CONFIG__INIT;
        uint8_t buf[32];
        mc._swappiness_max_case = GRPC__MEM_AGENT_MEMCG_CONFIG___SWAPPINESS_MAX_SWAPPINESS_MAX;
        mc.swappiness_max = 0;
        size_t n = grpc__mem_agent_memcg_config__pack(&mc, buf);
        static const uint8_t golden[] = { 0x18, 0x00 }; /* field 3 varint 0: present */
        assert_int_equal(n, sizeof(golden));
        assert_memory_equal(buf, golden, n);
        Grpc__MemAgentMemcgConfig *mc2 = grpc__mem_agent_memcg_config__unpack(NULL, n, buf);
        assert_non_null(mc2);
        assert_int_equal(mc2->_swappiness_max_case, GRPC__MEM_AGENT_MEMCG_CONFIG___SWAPPINESS_MAX_SWAPPINESS_MAX);
        assert_int_equal(mc2->_disabled_case, GRPC__MEM_AGENT_MEMCG_CONFIG___DISABLED__NOT_SET);
        grpc__mem_agent_memcg_config__free_unpacked(mc2, NULL);
}

/* ---- a hostile server: raw peer on the client -------------------------- */

typedef struct raw_fixture {
        ttrpc_client *client;
        int peer;
} raw_fixture;

static int raw_setup(void **state)
{
        int sv[2];
        raw_fixture *r = calloc(1, sizeof(*r));
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        r->client = ttrpc_client_new(sv[0], NULL);
        assert_non_null(r->client);
        r->peer = sv[1];
        *state = r;
        return 0;
}

static int raw_teardown(void **state)
{
        raw_fixture *r = *state;
        ttrpc_client_free(r->client);
        if (r->peer >= 0)
                close(r->peer);
        free(r);
        return 0;
}

static void test_client_oversize_frame(void **state)
{
        raw_fixture *r = *state;
        bg_call a, b;
        uint32_t id1, id2;

        bg_start(&a, r->client, "A", 10000);
        Ttrpc__Request *rq = raw_read_request(r->peer, &id1);
        ttrpc__request__free_unpacked(rq, NULL);
        bg_start(&b, r->client, "B", 10000);
        rq = raw_read_request(r->peer, &id2);
        assert_int_equal(id1 % 2, 1);
        assert_true(id2 > id1);
        ttrpc__request__free_unpacked(rq, NULL);

        /* Announce 4 MiB + 1: both pending calls fail at once. */
        uint8_t hdr[TTRPC_HEADER_SIZE];
        ttrpc_header_encode(&(ttrpc_header){ .length = TTRPC_MAX_PAYLOAD + 1, .stream_id = id1,
                                             .type = TTRPC_TYPE_RESPONSE },
                            hdr);
        write_all(r->peer, hdr, sizeof(hdr));
        pthread_join(a.t, NULL);
        pthread_join(b.t, NULL);
        assert_int_equal(a.result, -EPROTO);
        assert_int_equal(b.result, -EPROTO);
        assert_true(a.elapsed_ms < 5000 && b.elapsed_ms < 5000);
        assert_true(ttrpc_client_is_closed(r->client));
        /* The client shut its end: the peer sees EOF. */
        char c;
        assert_int_equal(read(r->peer, &c, 1), 0);
}

static void test_client_garbage(void **state)
{
        raw_fixture *r = *state;
        bg_call a;
        uint32_t id;

        bg_start(&a, r->client, "A", 10000);
        Ttrpc__Request *rq = raw_read_request(r->peer, &id);
        ttrpc__request__free_unpacked(rq, NULL);
        static const char garbage[] = "HTTP/1.1 400 Bad Request\r\n\r\n";
        write_all(r->peer, garbage, sizeof(garbage));
        pthread_join(a.t, NULL);
        assert_int_equal(a.result, -EPROTO);
        assert_true(a.elapsed_ms < 5000);
}

static void test_client_bad_envelope(void **state)
{
        raw_fixture *r = *state;
        bg_call a;
        uint32_t id;

        bg_start(&a, r->client, "A", 10000);
        Ttrpc__Request *rq = raw_read_request(r->peer, &id);
        ttrpc__request__free_unpacked(rq, NULL);
        /* Well framed, but not a Response message. */
        static const uint8_t junk[] = { 0xff, 0xff, 0xff, 0xff };
        raw_write_frame(r->peer, TTRPC_TYPE_RESPONSE, id, junk, sizeof(junk));
        pthread_join(a.t, NULL);
        assert_int_equal(a.result, -EBADMSG);
        assert_false(ttrpc_client_is_closed(r->client));
}

static void test_client_unexpected_stream(void **state)
{
        raw_fixture *r = *state;
        bg_call a;
        uint32_t id;

        bg_start(&a, r->client, "A", 10000);
        Ttrpc__Request *rq = raw_read_request(r->peer, &id);
        assert_string_equal(rq->service, SVC);
        assert_string_equal(rq->method, "A");
        assert_true(rq->timeout_nano == 10000 * 1000000LL);
        ttrpc__request__free_unpacked(rq, NULL);

        /* A response for a stream nobody waits on is dropped... */
        raw_write_response(r->peer, id + 100, "zz", 2);
        /* ...and the right one still lands. */
        raw_write_response(r->peer, id, "ok", 2);
        pthread_join(a.t, NULL);
        assert_int_equal(a.result, 0);
        assert_false(ttrpc_client_is_closed(r->client));

        /* A request frame from the server is a protocol violation. */
        bg_start(&a, r->client, "A", 10000);
        rq = raw_read_request(r->peer, &id);
        ttrpc__request__free_unpacked(rq, NULL);
        raw_write_frame(r->peer, TTRPC_TYPE_REQUEST, id, NULL, 0);
        pthread_join(a.t, NULL);
        assert_int_equal(a.result, -EPROTO);
}

static void test_client_peer_close_mid_call(void **state)
{
        raw_fixture *r = *state;
        bg_call a;
        uint32_t id;

        bg_start(&a, r->client, "A", 0); /* no timeout: only EOF can end it */
        Ttrpc__Request *rq = raw_read_request(r->peer, &id);
        ttrpc__request__free_unpacked(rq, NULL);
        /* Half a frame, then hang up. */
        uint8_t hdr[4] = { 0, 0, 0, 9 };
        write_all(r->peer, hdr, sizeof(hdr));
        close(r->peer);
        r->peer = -1;
        pthread_join(a.t, NULL);
        assert_int_equal(a.result, -ECONNRESET);
}

static void test_client_stalled_peer(void **state)
{
        raw_fixture *r = *state;
        bg_call a, b;

        /* The peer never reads: once the socket buffer is full, sends time
         * out too, and the call returns at its deadline. */
        bg_start(&a, r->client, "A", 300);
        pthread_join(a.t, NULL);
        assert_int_equal(a.result, -ETIMEDOUT);
        size_t big = 3u << 20;
        uint8_t *p = calloc(1, big);
        cc_error *err = NULL;
        uint64_t t0 = mono_ms();
        int ret = ttrpc_client_call(r->client, SVC, "Big", p, big, 300, NULL, NULL, &err);
        assert_int_equal(ret, -ETIMEDOUT);
        assert_true(mono_ms() - t0 < 3000);
        cc_error_free(err);
        free(p);
        /* A frame cut short breaks the stream: the client is closed now, or
         * the frame was never started and later calls still time out. */
        bg_start(&b, r->client, "B", 300);
        pthread_join(b.t, NULL);
        assert_true(b.result == -ETIMEDOUT || b.result == -EPIPE);
}

/* ---- a hostile client: raw peer on the server -------------------------- */

static void test_server_drops_malformed(void **state)
{
        fixture *f = *state; /* only its server is used */
        int sv[2], result;
        pthread_t t;

        /* Garbage: the connection is dropped with an error. */
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        start_serving(f->server, sv[1], &t, &result);
        write_all(sv[0], "\xff\xff\xff\xff garbage", 12);
        pthread_join(t, NULL);
        assert_int_equal(result, -EMSGSIZE);
        char ch; /* EOF, or ECONNRESET as our bytes were left unread */
        assert_true(read(sv[0], &ch, 1) <= 0);
        close(sv[0]);

        /* Even stream id. */
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        start_serving(f->server, sv[1], &t, &result);
        raw_write_frame(sv[0], TTRPC_TYPE_REQUEST, 2, NULL, 0);
        pthread_join(t, NULL);
        assert_int_equal(result, -EPROTO);
        close(sv[0]);

        /* Bad envelope. */
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        start_serving(f->server, sv[1], &t, &result);
        raw_write_frame(sv[0], TTRPC_TYPE_REQUEST, 1, "\x0a\x7f", 2);
        pthread_join(t, NULL);
        assert_int_equal(result, -EBADMSG);
        close(sv[0]);

        /* Stream ids must increase. */
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        start_serving(f->server, sv[1], &t, &result);
        Ttrpc__Request rq = TTRPC__REQUEST__INIT;
        uint8_t buf[64];
        rq.service = SVC;
        rq.method = "Echo";
        size_t n = ttrpc__request__pack(&rq, buf);
        raw_write_frame(sv[0], TTRPC_TYPE_REQUEST, 5, buf, (uint32_t)n);
        raw_write_frame(sv[0], TTRPC_TYPE_REQUEST, 3, buf, (uint32_t)n);
        pthread_join(t, NULL);
        assert_int_equal(result, -EPROTO);
        close(sv[0]);

        /* Afterwards the same server still serves a well-behaved client. */
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        start_serving(f->server, sv[1], &t, &result);
        ttrpc_client *c = ttrpc_client_new(sv[0], NULL);
        uint8_t *resp = NULL;
        size_t len;
        assert_int_equal(ttrpc_client_call(c, SVC, "Echo", "hi", 2, 5000, &resp, &len, NULL), 0);
        assert_memory_equal(resp, "hi", 2);
        free(resp);
        ttrpc_client_free(c);
        pthread_join(t, NULL);
        assert_int_equal(result, 0); /* EOF */
}

/* The reader's buffer: frames that arrive together (pipelined, in one
 * write), a frame bigger than the buffer (read straight into place), and one
 * dribbled a byte at a time are all served, in order. */
static Ttrpc__Response *raw_read_resp(int fd, uint32_t *ret_id)
{
        uint8_t hdr[TTRPC_HEADER_SIZE];
        ttrpc_header h;
        if (read_all(fd, hdr, sizeof(hdr)) < 0 || ttrpc_header_decode(hdr, &h, NULL) < 0)
                return NULL;
        uint8_t *p = malloc(h.length + 1);
        if (!p || read_all(fd, p, h.length) < 0) {
                free(p);
                return NULL;
        }
        *ret_id = h.stream_id;
        Ttrpc__Response *rs = ttrpc__response__unpack(NULL, h.length, p);
        free(p);
        return rs;
}

/* One Echo request frame for stream id, header and all, into out. */
static size_t pack_echo(uint8_t *out, uint32_t id, const void *payload, size_t len)
{
        Ttrpc__Request rq = TTRPC__REQUEST__INIT;
        rq.service = SVC;
        rq.method = "Echo";
        rq.payload.data = (uint8_t *)payload;
        rq.payload.len = len;
        size_t n = ttrpc__request__pack(&rq, out + TTRPC_HEADER_SIZE);
        ttrpc_header_encode(&(ttrpc_header){ .length = (uint32_t)n, .stream_id = id, .type = TTRPC_TYPE_REQUEST },
                            out);
        return n + TTRPC_HEADER_SIZE;
}

static void test_server_buffered_reads(void **state)
{
        fixture *f = *state;
        int sv[2], result;
        pthread_t t;
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        start_serving(f->server, sv[1], &t, &result);

        size_t big_len = 20000;
        uint8_t *big = malloc(big_len);
        for (size_t i = 0; i < big_len; i++)
                big[i] = (uint8_t)(i * 7);
        uint8_t *out = malloc(big_len + 1024);
        size_t n = 0;
        n += pack_echo(out + n, 1, "one", 3);
        n += pack_echo(out + n, 3, big, big_len);
        n += pack_echo(out + n, 5, "three", 5);
        write_all(sv[0], out, n);
        static const struct { uint32_t id; const char *p; size_t len; } want[] = {
                { 1, "one", 3 }, { 3, NULL, 0 }, { 5, "three", 5 },
        };
        for (size_t i = 0; i < 3; i++) {
                uint32_t id = 0;
                Ttrpc__Response *rs = raw_read_resp(sv[0], &id);
                assert_non_null(rs);
                assert_int_equal(id, want[i].id);
                if (want[i].p) {
                        assert_int_equal(rs->payload.len, want[i].len);
                        assert_memory_equal(rs->payload.data, want[i].p, want[i].len);
                } else {
                        assert_int_equal(rs->payload.len, big_len);
                        assert_memory_equal(rs->payload.data, big, big_len);
                }
                ttrpc__response__free_unpacked(rs, NULL);
        }
        /* one byte at a time */
        n = pack_echo(out, 7, "slow", 4);
        for (size_t i = 0; i < n; i++) {
                write_all(sv[0], out + i, 1);
                usleep(200);
        }
        uint32_t id = 0;
        Ttrpc__Response *rs = raw_read_resp(sv[0], &id);
        assert_non_null(rs);
        assert_int_equal(id, 7);
        assert_int_equal(rs->payload.len, 4);
        assert_memory_equal(rs->payload.data, "slow", 4);
        ttrpc__response__free_unpacked(rs, NULL);
        close(sv[0]);
        pthread_join(t, NULL);
        assert_int_equal(result, 0); /* EOF at a frame boundary */
        free(big);
        free(out);
}

static void test_server_streaming_rejected(void **state)
{
        fixture *f = *state;
        int sv[2], result;
        pthread_t t;

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        start_serving(f->server, sv[1], &t, &result);
        Ttrpc__Request rq = TTRPC__REQUEST__INIT;
        uint8_t buf[64];
        rq.service = SVC;
        rq.method = "Echo";
        size_t n = ttrpc__request__pack(&rq, buf);
        uint8_t hdr[TTRPC_HEADER_SIZE];
        ttrpc_header_encode(&(ttrpc_header){ .length = (uint32_t)n, .stream_id = 1, .type = TTRPC_TYPE_REQUEST,
                                             .flags = TTRPC_FLAG_REMOTE_OPEN },
                            hdr);
        write_all(sv[0], hdr, sizeof(hdr));
        write_all(sv[0], buf, n);

        ttrpc_header h;
        assert_int_equal(read_all(sv[0], hdr, sizeof(hdr)), 0);
        assert_int_equal(ttrpc_header_decode(hdr, &h, NULL), 0);
        assert_int_equal(h.type, TTRPC_TYPE_RESPONSE);
        assert_int_equal(h.stream_id, 1);
        uint8_t *p = malloc(h.length + 1);
        assert_int_equal(read_all(sv[0], p, h.length), 0);
        Ttrpc__Response *rs = ttrpc__response__unpack(NULL, h.length, p);
        free(p);
        assert_non_null(rs);
        assert_non_null(rs->status);
        assert_int_equal(rs->status->code, TTRPC_CODE_UNIMPLEMENTED);
        ttrpc__response__free_unpacked(rs, NULL);
        close(sv[0]);
        pthread_join(t, NULL);
        assert_int_equal(result, 0);
}

static void test_server_shutdown(void **state)
{
        cc_error *err = NULL;
        ttrpc_server *s = ttrpc_server_new(&err);
        int sv[2], result;
        pthread_t t;

        assert_int_equal(ttrpc_server_register(s, SVC, "Echo", h_echo, NULL, NULL), 0);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        start_serving(s, sv[1], &t, &result);
        ttrpc_client *c = ttrpc_client_new(sv[0], NULL);
        assert_int_equal(ttrpc_client_call(c, SVC, "Echo", "a", 1, 5000, NULL, NULL, NULL), 0);
        ttrpc_server_shutdown(s);
        pthread_join(t, NULL);
        assert_int_equal(result, -ECANCELED);
        /* The client notices: its next call fails quickly. */
        assert_true(ttrpc_client_call(c, SVC, "Echo", "a", 1, 5000, NULL, NULL, NULL) < 0);
        ttrpc_client_free(c);
        ttrpc_server_free(s);
}

typedef struct listen_args {
        ttrpc_server *s;
        int fd;
        int result;
} listen_args;

static void *listen_main(void *arg)
{
        listen_args *a = arg;
        cc_error *err = NULL;
        a->result = ttrpc_server_serve_listener(a->s, a->fd, &err);
        assert_non_null(err);
        cc_error_free(err);
        return NULL;
}

static void test_server_listener(void **state)
{
        ttrpc_server *s = ttrpc_server_new(NULL);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        listen_args a = { .s = s };
        pthread_t t;

        assert_int_equal(ttrpc_server_register(s, SVC, "Echo", h_echo, NULL, NULL), 0);
        /* Abstract socket: nothing to clean up on disk. */
        int n = snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1, "cocoon-test-ttrpc-%d", (int)getpid());
        socklen_t sl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
        a.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(a.fd >= 0);
        assert_int_equal(bind(a.fd, (struct sockaddr *)&sa, sl), 0);
        assert_int_equal(listen(a.fd, 8), 0);
        assert_int_equal(pthread_create(&t, NULL, listen_main, &a), 0);

        ttrpc_client *c[3];
        for (int i = 0; i < 3; i++) {
                int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                assert_int_equal(connect(fd, (struct sockaddr *)&sa, sl), 0);
                c[i] = ttrpc_client_new(fd, NULL);
                assert_non_null(c[i]);
        }
        for (int i = 0; i < 3; i++) {
                uint8_t *resp = NULL;
                size_t len;
                assert_int_equal(ttrpc_client_call(c[i], SVC, "Echo", "abc", 3, 5000, &resp, &len, NULL), 0);
                assert_memory_equal(resp, "abc", 3);
                free(resp);
        }
        ttrpc_client_free(c[0]); /* one leaves early: its thread ends */
        ttrpc_server_shutdown(s);
        pthread_join(t, NULL);
        assert_int_equal(a.result, -ECANCELED);
        for (int i = 1; i < 3; i++) {
                assert_true(ttrpc_client_call(c[i], SVC, "Echo", "x", 1, 5000, NULL, NULL, NULL) < 0);
                ttrpc_client_free(c[i]);
        }
        close(a.fd);
        ttrpc_server_free(s);
}

static void test_deferred_after_disconnect(void **state)
{
        fixture *f = *state;
        bg_call a;

        bg_start(&a, f->client, "Never", 0);
        pthread_mutex_lock(&f->mu);
        while (!f->parked)
                pthread_cond_wait(&f->cond, &f->mu);
        ttrpc_call *call = f->parked;
        f->parked = NULL;
        pthread_mutex_unlock(&f->mu);

        ttrpc_client_close(f->client);
        pthread_join(a.t, NULL);
        assert_int_equal(a.result, -ECONNABORTED);
        pthread_join(f->serve_thread, NULL); /* the server sees EOF */
        assert_int_equal(f->serve_result, 0);
        assert_false(ttrpc_call_is_alive(call));
        assert_int_equal(ttrpc_call_reply_status(call, TTRPC_CODE_INTERNAL, "too late"), -ENOTCONN);
        f->serve_result = 0;
        /* teardown joins serve_thread again: give it a finished thread. */
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        start_serving(f->server, sv[1], &f->serve_thread, &f->serve_result);
        close(sv[0]);
}

/* Reads one Response frame from a raw peer; returns its payload (malloc'd,
 * NUL-terminated) and checks the stream id. */
static char *raw_read_response(int fd, uint32_t want_id)
{
        uint8_t hdr[TTRPC_HEADER_SIZE];
        ttrpc_header h;
        assert_int_equal(read_all(fd, hdr, sizeof(hdr)), 0);
        assert_int_equal(ttrpc_header_decode(hdr, &h, NULL), 0);
        assert_int_equal(h.type, TTRPC_TYPE_RESPONSE);
        assert_int_equal(h.stream_id, want_id);
        uint8_t *p = malloc(h.length + 1);
        assert_int_equal(read_all(fd, p, h.length), 0);
        Ttrpc__Response *rs = ttrpc__response__unpack(NULL, h.length, p);
        free(p);
        assert_non_null(rs);
        assert_null(rs->status);
        char *out = calloc(1, rs->payload.len + 1);
        memcpy(out, rs->payload.data, rs->payload.len);
        ttrpc__response__free_unpacked(rs, NULL);
        return out;
}

static void raw_request(int fd, uint32_t id, const char *method, const char *payload)
{
        Ttrpc__Request rq = TTRPC__REQUEST__INIT;
        uint8_t buf[256];
        rq.service = SVC;
        rq.method = (char *)method;
        rq.payload.data = (uint8_t *)payload;
        rq.payload.len = payload ? strlen(payload) : 0;
        size_t n = ttrpc__request__pack(&rq, buf);
        raw_write_frame(fd, TTRPC_TYPE_REQUEST, id, buf, (uint32_t)n);
}

/* Regression: a host that reconnects over virtio-serial is not a new
 * connection for the guest; the new client starts again at stream 1. That
 * starts a new session (it used to drop the connection as a protocol
 * violation, losing the first request), and a deferred call of the old
 * session can no longer answer: its stream id belongs to the new client. */
static void test_server_new_session_on_same_stream(void **state)
{
        fixture *f = *state; /* only its server is used */
        int sv[2], result;
        pthread_t t;

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        start_serving(f->server, sv[1], &t, &result);
        /* Old session: stream 1 parks, stream 3 answers. */
        raw_request(sv[0], 1, "Never", NULL);
        raw_request(sv[0], 3, "Echo", "old");
        char *r = raw_read_response(sv[0], 3);
        assert_string_equal(r, "old");
        free(r);
        pthread_mutex_lock(&f->mu);
        while (!f->parked)
                pthread_cond_wait(&f->cond, &f->mu);
        ttrpc_call *old = f->parked;
        f->parked = NULL;
        pthread_mutex_unlock(&f->mu);
        assert_true(ttrpc_call_is_alive(old));

        /* New session on the same stream: its first request is served. */
        raw_request(sv[0], 1, "Echo", "new");
        r = raw_read_response(sv[0], 1);
        assert_string_equal(r, "new");
        free(r);
        /* The old session's call is over: its reply is dropped, never
         * written on the stream id the new client now uses. */
        assert_false(ttrpc_call_is_alive(old));
        assert_int_equal(ttrpc_call_reply(old, "stale", 5), -ENOTCONN);
        struct pollfd p = { .fd = sv[0], .events = POLLIN };
        assert_int_equal(poll(&p, 1, 100), 0);
        /* The new session goes on with increasing ids; going back is
         * still a protocol violation. */
        raw_request(sv[0], 3, "Echo", "three");
        r = raw_read_response(sv[0], 3);
        assert_string_equal(r, "three");
        free(r);
        raw_request(sv[0], 3, "Echo", "again");
        pthread_join(t, NULL);
        assert_int_equal(result, -EPROTO);
        close(sv[0]);
}

/* Regression: a writer used to treat POLLHUP as "writable" and spin, past
 * its deadline too, on an fd that polls POLLHUP but keeps saying EAGAIN (a
 * guest virtio-serial port without a host does exactly that; so does a pty
 * master whose slave is closed, once its buffer is full). Now the write
 * fails at once with -EPIPE. The write runs on a thread so that a
 * regression fails the test instead of hanging it. */
typedef struct hup_writer {
        ttrpc_conn *c;
        pthread_mutex_t mu;
        pthread_cond_t cond;
        bool done;
        int result;
        double cpu_ms;
} hup_writer;

static void *hup_writer_main(void *arg)
{
        hup_writer *w = arg;
        size_t len = 1u << 20; /* far more than the pty buffers */
        uint8_t *payload = calloc(1, len);
        ttrpc_header h = { .length = (uint32_t)len, .stream_id = 1, .type = TTRPC_TYPE_REQUEST };
        struct timespec c0, c1;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
        int r = ttrpc_conn_write_frame(w->c, &h, payload, ttrpc_now_ns() + 3000ull * 1000000);
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
        free(payload);
        pthread_mutex_lock(&w->mu);
        w->result = r;
        w->cpu_ms = (double)(c1.tv_sec - c0.tv_sec) * 1e3 + (double)(c1.tv_nsec - c0.tv_nsec) / 1e6;
        w->done = true;
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->mu);
        return NULL;
}

static void test_write_hangup_does_not_spin(void **state)
{
        int m, sl;
        struct termios raw;
        assert_int_equal(openpty(&m, &sl, NULL, NULL, NULL), 0);
        assert_int_equal(tcgetattr(sl, &raw), 0);
        cfmakeraw(&raw); /* no echo back into the master */
        assert_int_equal(tcsetattr(sl, TCSANOW, &raw), 0);
        close(sl);

        hup_writer w = { .result = 1 };
        pthread_mutex_init(&w.mu, NULL);
        pthread_cond_init(&w.cond, NULL);
        assert_int_equal(ttrpc_conn_new(m, -1, &w.c, NULL), 0);
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, hup_writer_main, &w), 0);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 5;
        pthread_mutex_lock(&w.mu);
        while (!w.done)
                if (pthread_cond_timedwait(&w.cond, &w.mu, &ts) == ETIMEDOUT)
                        break;
        bool done = w.done;
        pthread_mutex_unlock(&w.mu);
        if (!done)
                fail_msg("the write still spins 5 s later (deadline was 3 s)");
        pthread_join(t, NULL);
        assert_int_equal(w.result, -EPIPE);
        assert_true(w.cpu_ms < 500);
        assert_true(ttrpc_conn_is_dead(w.c)); /* a frame cut short kills it */
        ttrpc_conn_close_fd(w.c);
        ttrpc_conn_unref(w.c);
        pthread_cond_destroy(&w.cond);
        pthread_mutex_destroy(&w.mu);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_header_golden),
                cmocka_unit_test(test_envelope_golden),
                cmocka_unit_test(test_codes),
                cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
                cmocka_unit_test_setup_teardown(test_status_and_unimplemented, setup, teardown),
                cmocka_unit_test_setup_teardown(test_concurrent_out_of_order, setup, teardown),
                cmocka_unit_test_setup_teardown(test_timeout_and_late_reply, setup, teardown),
                cmocka_unit_test_setup_teardown(test_close_wakes_waiters, setup, teardown),
                cmocka_unit_test_setup_teardown(test_protobuf_messages, setup, teardown),
                cmocka_unit_test_setup_teardown(test_server_drops_malformed, setup, teardown),

                cmocka_unit_test_setup_teardown(test_server_buffered_reads, setup, teardown),
                cmocka_unit_test_setup_teardown(test_server_streaming_rejected, setup, teardown),
                cmocka_unit_test_setup_teardown(test_deferred_after_disconnect, setup, teardown),
                cmocka_unit_test_setup_teardown(test_server_new_session_on_same_stream, setup, teardown),
                cmocka_unit_test(test_write_hangup_does_not_spin),
                cmocka_unit_test(test_server_shutdown),
                cmocka_unit_test(test_server_listener),
                cmocka_unit_test_setup_teardown(test_client_oversize_frame, raw_setup, raw_teardown),
                cmocka_unit_test_setup_teardown(test_client_garbage, raw_setup, raw_teardown),
                cmocka_unit_test_setup_teardown(test_client_bad_envelope, raw_setup, raw_teardown),
                cmocka_unit_test_setup_teardown(test_client_unexpected_stream, raw_setup, raw_teardown),
                cmocka_unit_test_setup_teardown(test_client_peer_close_mid_call, raw_setup, raw_teardown),
                cmocka_unit_test_setup_teardown(test_client_stalled_peer, raw_setup, raw_teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
