/* SPDX-License-Identifier: Apache-2.0 */
/* The gRPC server wrapper with a test dispatcher: concurrency (a slow call
 * never blocks a fast one), deadlines seen by handlers as cancellation,
 * status codes and payloads, graceful shutdown with calls in flight. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "cri-server/grpc-client.h"
#include "cri-server/grpc-server.h"

static atomic_int slow_running;
static atomic_int saw_cancel;

static int64_t now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_dispatch(void *ud, const cri_call_info *info, const uint8_t *req, size_t len,
                          cri_reply *reply)
{
        if (strcmp(info->method, "/t.S/Echo") == 0) {
                reply->resp = malloc(len ? len : 1);
                memcpy(reply->resp, req, len);
                reply->resp_len = len;
        } else if (strcmp(info->method, "/t.S/Slow") == 0) {
                /* Runs until the client's deadline cancels it (or 10 s). */
                atomic_fetch_add(&slow_running, 1);
                int64_t end = now_ms() + 10000;
                while (!atomic_load(info->cancelled) && now_ms() < end)
                        usleep(5000);
                if (atomic_load(info->cancelled))
                        atomic_fetch_add(&saw_cancel, 1);
                atomic_fetch_sub(&slow_running, 1);
                reply->code = 1;
        } else if (strcmp(info->method, "/t.S/Sleep300") == 0) {
                usleep(300 * 1000);
                reply->resp = malloc(1);
                reply->resp_len = 0;
        } else {
                reply->code = 12;
                reply->msg = strdup("nope");
        }
}

typedef struct fixture {
        char dir[64];
        char addr[128];
        cri_grpc_server *srv;
} fixture;

static int setup(void **state)
{
        fixture *f = calloc(1, sizeof(*f));
        strcpy(f->dir, "/tmp/cc-grpc-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->addr, sizeof(f->addr), "unix://%s/s.sock", f->dir);
        cri_grpc_server_opts o = { .address = f->addr, .workers = 4,
                                   .max_recv_message_size = 1 << 20,
                                   .max_send_message_size = 1 << 20,
                                   .dispatch = test_dispatch };
        cc_error *err = NULL;
        assert_int_equal(cri_grpc_server_start(&o, &f->srv, &err), 0);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        fixture *f = *state;
        if (f->srv) {
                cri_grpc_server_shutdown(f->srv, 2000);
                cri_grpc_server_free(f->srv);
        }
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
        assert_int_equal(system(cmd), 0);
        free(f);
        return 0;
}

static int do_call(const char *addr, const char *method, const char *payload, int timeout_ms,
                   char **ret_resp, char **ret_msg)
{
        cri_grpc_channel *ch = NULL;
        cc_error *err = NULL;
        assert_int_equal(cri_grpc_channel_open(addr, &ch, &err), 0);
        uint8_t *resp = NULL;
        size_t len = 0;
        int code = -1;
        char *msg = NULL;
        int r = cri_grpc_call(ch, method, (const uint8_t *)payload, strlen(payload), timeout_ms, &resp,
                              &len, &code, &msg, &err);
        assert_int_equal(r, 0);
        if (ret_resp) {
                *ret_resp = calloc(1, len + 1);
                if (resp)
                        memcpy(*ret_resp, resp, len);
        }
        if (ret_msg)
                *ret_msg = msg;
        else
                free(msg);
        free(resp);
        cri_grpc_channel_close(ch);
        return code;
}

static void test_echo_and_status(void **state)
{
        fixture *f = *state;
        char *resp = NULL, *msg = NULL;
        assert_int_equal(do_call(f->addr, "/t.S/Echo", "hello", 5000, &resp, NULL), 0);
        assert_string_equal(resp, "hello");
        free(resp);
        assert_int_equal(do_call(f->addr, "/t.S/Other", "x", 5000, NULL, &msg), 12);
        assert_string_equal(msg, "nope");
        free(msg);
}

typedef struct slow_arg {
        const char *addr;
        int code;
} slow_arg;

static void *slow_thread(void *p)
{
        slow_arg *a = p;
        a->code = do_call(a->addr, "/t.S/Slow", "", 1500, NULL, NULL);
        return NULL;
}

static void test_slow_call_does_not_block_fast_ones(void **state)
{
        fixture *f = *state;
        atomic_store(&saw_cancel, 0);
        pthread_t t[2];
        slow_arg a[2] = { { f->addr, -1 }, { f->addr, -1 } };
        for (int i = 0; i < 2; i++)
                pthread_create(&t[i], NULL, slow_thread, &a[i]);
        int64_t wait_end = now_ms() + 5000;
        while (atomic_load(&slow_running) < 2 && now_ms() < wait_end)
                usleep(1000);
        assert_int_equal(atomic_load(&slow_running), 2);
        /* Two handlers are busy; fast calls still complete meanwhile: the
         * slow handlers are still running after all of them returned. */
        for (int i = 0; i < 20; i++) {
                char *resp = NULL;
                assert_int_equal(do_call(f->addr, "/t.S/Echo", "x", 5000, &resp, NULL), 0);
                free(resp);
        }
        assert_int_equal(atomic_load(&slow_running), 2);
        for (int i = 0; i < 2; i++) {
                pthread_join(t[i], NULL);
                assert_int_equal(a[i].code, 4); /* DEADLINE_EXCEEDED at the client */
        }
        /* The handlers observed the deadline as cancellation and stopped. */
        wait_end = now_ms() + 3000;
        while (atomic_load(&saw_cancel) < 2 && now_ms() < wait_end)
                usleep(1000);
        assert_int_equal(atomic_load(&saw_cancel), 2);
}

static void *sleep_thread(void *p)
{
        slow_arg *a = p;
        a->code = do_call(a->addr, "/t.S/Sleep300", "", 10000, NULL, NULL);
        return NULL;
}

static void test_shutdown_lets_inflight_calls_finish(void **state)
{
        fixture *f = *state;
        pthread_t t[3];
        slow_arg a[3] = { { f->addr, -1 }, { f->addr, -1 }, { f->addr, -1 } };
        for (int i = 0; i < 3; i++)
                pthread_create(&t[i], NULL, sleep_thread, &a[i]);
        int64_t wait_end = now_ms() + 5000;
        while (cri_grpc_server_inflight(f->srv) < 3 && now_ms() < wait_end)
                usleep(1000);
        assert_int_equal(cri_grpc_server_inflight(f->srv), 3);
        cri_grpc_server_shutdown(f->srv, 5000);
        for (int i = 0; i < 3; i++) {
                pthread_join(t[i], NULL);
                assert_int_equal(a[i].code, 0);
        }
        assert_int_equal(cri_grpc_server_inflight(f->srv), 0);
        cri_grpc_server_free(f->srv);
        f->srv = NULL;
}

int main(void)
{
        cri_grpc_init();
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_echo_and_status, setup, teardown),
                cmocka_unit_test_setup_teardown(test_slow_call_does_not_block_fast_ones, setup, teardown),
                cmocka_unit_test_setup_teardown(test_shutdown_lets_inflight_calls_finish, setup, teardown),
        };
        int r = cmocka_run_group_tests(tests, NULL, NULL);
        cri_grpc_shutdown();
        return r;
}
