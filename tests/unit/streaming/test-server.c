/* SPDX-License-Identifier: Apache-2.0 */
/* HTTP request parsing, tokens (format, single use, expiry, payload
 * ownership) and the 404 path over a real socket. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "cri-server/streaming/internal.h"

static void test_request_parse(void **state)
{
        char head[] = "GET /exec/abc?command=sh&command=-c&ports=80%2C443 HTTP/1.1\r\n"
                      "Host: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                      "X-Stream-Protocol-Version: v4.channel.k8s.io\r\n"
                      "X-Stream-Protocol-Version: v3.channel.k8s.io, v2.channel.k8s.io\r\n\r\n";
        st_request r;
        assert_int_equal(st_request_parse(head, &r), 0);
        assert_string_equal(r.method, "GET");
        assert_string_equal(r.path, "/exec/abc");
        assert_string_equal(st_request_header(&r, "host"), "x");
        assert_true(st_request_header_has_token(&r, "connection", "upgrade"));
        assert_false(st_request_header_has_token(&r, "connection", "close"));
        assert_true(st_request_header_has_token(&r, "X-Stream-Protocol-Version", "v2.channel.k8s.io"));
        assert_true(st_request_header_has_token(&r, "X-Stream-Protocol-Version", "v4.channel.k8s.io"));
        assert_false(st_request_header_has_token(&r, "X-Stream-Protocol-Version", "channel.k8s.io"));
        char buf[64];
        assert_string_equal(st_request_query(&r, "command", buf, sizeof(buf)), "sh");
        assert_string_equal(st_request_query(&r, "ports", buf, sizeof(buf)), "80,443");
        assert_null(st_request_query(&r, "port", buf, sizeof(buf)));
}

static void test_request_parse_rejects(void **state)
{
        const char *bad[] = {
                "GET\r\n",
                "GET exec HTTP/1.1\r\n",
                "GET /x FTP/1.0\r\n",
                "GET /x HTTP/1.1\r\nno colon here\r\n",
                "GET /x HTTP/1.1\r\n folded: header\r\n",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                char *h = strdup(bad[i]);
                st_request r;
                assert_true(st_request_parse(h, &r) < 0);
                free(h);
        }
        /* too many headers */
        char *many = malloc(ST_MAX_HEADERS * 8 + 64);
        strcpy(many, "GET / HTTP/1.1\r\n");
        for (int i = 0; i <= ST_MAX_HEADERS; i++)
                strcat(many, "A: b\r\n");
        st_request r;
        assert_int_equal(st_request_parse(many, &r), -E2BIG);
        free(many);
}

static int frees;
static void payload_free(void *p)
{
        __atomic_add_fetch(&frees, 1, __ATOMIC_SEQ_CST);
        free(p);
}

static int nop_start(void *b, streaming_session *s, streaming_kind k, void *p, const streaming_opts *o, void **h,
                     cc_error **e)
{
        return cc_error_set(e, -ENOTSUP, "not in this test");
}
static const streaming_backend_ops ops = { .start = nop_start };

static int http_status(uint16_t port, const char *path)
{
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        char req[512];
        int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
        assert_int_equal(write(fd, req, (size_t)n), n);
        char resp[512] = "";
        ssize_t k = read(fd, resp, sizeof(resp) - 1);
        close(fd);
        int code = 0;
        if (k > 0)
                sscanf(resp, "HTTP/1.1 %d", &code);
        return code;
}

static void test_tokens(void **state)
{
        streaming_server_config cfg = { .address = "127.0.0.1", .token_ttl = 1, .ops = &ops };
        streaming_server *s = NULL;
        assert_int_equal(streaming_server_new(&cfg, &s, NULL), 0);
        assert_true(streaming_server_port(s) > 0);

        frees = 0;
        streaming_opts o = { .stdout_ = true };
        char *u1 = streaming_token_new(s, STREAMING_EXEC, &o, malloc(1), payload_free, NULL);
        char *u2 = streaming_token_new(s, STREAMING_PORTFORWARD, &o, malloc(1), payload_free, NULL);
        assert_non_null(u1);
        assert_non_null(u2);
        char prefix[64];
        snprintf(prefix, sizeof(prefix), "http://127.0.0.1:%u/exec/", streaming_server_port(s));
        assert_memory_equal(u1, prefix, strlen(prefix));
        const char *tok = u1 + strlen(prefix);
        assert_int_equal(strlen(tok), 32); /* 192 random bits, url-safe */
        assert_int_equal(strspn(tok, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), 32);
        assert_string_not_equal(u1 + strlen(prefix), strrchr(u2, '/') + 1);

        streaming_stats st;
        streaming_server_stats(s, &st);
        assert_int_equal(st.outstanding_tokens, 2);

        /* a plain GET with the right token: consumed (no upgrade → 400) */
        char path[128];
        snprintf(path, sizeof(path), "/exec/%s", tok);
        assert_int_equal(http_status(streaming_server_port(s), path), 400);
        /* the connection's thread frees the payload after it answered: the
         * client can see the 400 first (seen under make -j load) */
        for (int i = 0; i < 200 && __atomic_load_n(&frees, __ATOMIC_SEQ_CST) < 1; i++)
                usleep(10000);
        assert_int_equal(__atomic_load_n(&frees, __ATOMIC_SEQ_CST), 1);
        assert_int_equal(http_status(streaming_server_port(s), path), 404); /* reuse */
        assert_int_equal(http_status(streaming_server_port(s), "/exec/"), 404);
        assert_int_equal(http_status(streaming_server_port(s), "/exec/../../etc"), 404);

        /* expiry frees the payload without anyone asking */
        usleep(1100 * 1000);
        char *u3 = streaming_token_new(s, STREAMING_ATTACH, &o, malloc(1), payload_free, NULL);
        assert_non_null(u3);
        assert_int_equal(frees, 2);
        snprintf(path, sizeof(path), "/portforward/%s", strrchr(u2, '/') + 1);
        assert_int_equal(http_status(streaming_server_port(s), path), 404);

        /* invalid input still takes ownership of the payload */
        cc_error *err = NULL;
        assert_null(streaming_token_new(s, (streaming_kind)42, &o, malloc(1), payload_free, &err));
        assert_non_null(err);
        cc_error_free(err);
        assert_int_equal(frees, 3);

        streaming_server_free(s); /* frees u3's payload */
        assert_int_equal(frees, 4);
        free(u1);
        free(u2);
        free(u3);
}

static void test_bad_address(void **state)
{
        streaming_server_config cfg = { .address = "not-an-ip", .ops = &ops };
        streaming_server *s = NULL;
        cc_error *err = NULL;
        assert_int_equal(streaming_server_new(&cfg, &s, &err), -EINVAL);
        assert_non_null(err);
        assert_null(s);
        cc_error_free(err);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_request_parse),
                cmocka_unit_test(test_request_parse_rejects),
                cmocka_unit_test(test_tokens),
                cmocka_unit_test(test_bad_address),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
