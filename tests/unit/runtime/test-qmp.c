/* SPDX-License-Identifier: Apache-2.0 */
/* QMP client against a scripted fake QMP server on a socketpair. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/cleanup.h"
#include "runtime/qmp.h"

#define GREETING "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}}, \"capabilities\": []}}\r\n"

/* Script actions for the fake server:
 *   "S<text>"  send text as is
 *   "R"        read one line, remember its "id" (and check it is JSON)
 *   "I<fmt>"   send fmt with the remembered id substituted for %d
 *   "B"        send 300 KiB without a newline
 *   "C"        close the connection
 *   "W"        wait until the client hangs up
 *   "F"        like R, the line's first byte carrying an fd (getfd) */
typedef struct server {
        int fd;
        const char *const *script;
        pthread_t thread;
        char last_cmd[64];
        char last_line[4096];
        int got_fd;
} server;

static int read_line(int fd, char *buf, size_t max)
{
        size_t n = 0;
        while (n < max - 1) {
                ssize_t r = read(fd, buf + n, 1);
                if (r <= 0)
                        return -1;
                if (buf[n] == '\n')
                        break;
                n++;
        }
        buf[n] = 0;
        return (int)n;
}

static void *serve(void *arg)
{
        server *s = arg;
        int id = -1;
        for (const char *const *a = s->script; *a; a++) {
                const char *act = *a;
                char line[4096];
                switch (act[0]) {
                case 'S':
                        if (send(s->fd, act + 1, strlen(act + 1), MSG_NOSIGNAL) < 0)
                                return NULL;
                        break;
                case 'R': {
                        if (read_line(s->fd, line, sizeof(line)) < 0)
                                return NULL;
                        const char *p = strstr(line, "\"id\":");
                        id = p ? atoi(p + 5) : -1;
                        const char *c = strstr(line, "\"execute\":\"");
                        if (c) {
                                c += 11;
                                size_t n = strcspn(c, "\"");
                                snprintf(s->last_cmd, sizeof(s->last_cmd), "%.*s", (int)n, c);
                        }
                        break;
                }
                case 'I': {
                        char out[4096];
                        snprintf(out, sizeof(out), act + 1, id);
                        if (send(s->fd, out, strlen(out), MSG_NOSIGNAL) < 0)
                                return NULL;
                        break;
                }
                case 'B': {
                        char *big = malloc(300 * 1024);
                        memset(big, 'x', 300 * 1024);
                        (void)send(s->fd, big, 300 * 1024, MSG_NOSIGNAL);
                        free(big);
                        break;
                }
                case 'C':
                        close(s->fd);
                        s->fd = -1;
                        return NULL;
                case 'W':
                        while (read(s->fd, line, sizeof(line)) > 0)
                                ;
                        break;
                case 'F': {
                        char first, cbuf[CMSG_SPACE(sizeof(int))];
                        struct iovec iov = { &first, 1 };
                        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                                             .msg_controllen = sizeof(cbuf) };
                        if (recvmsg(s->fd, &mh, 0) != 1)
                                return NULL;
                        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
                        if (cm && cm->cmsg_type == SCM_RIGHTS)
                                memcpy(&s->got_fd, CMSG_DATA(cm), sizeof(int));
                        line[0] = first;
                        if (read_line(s->fd, line + 1, sizeof(line) - 1) < 0)
                                return NULL;
                        snprintf(s->last_line, sizeof(s->last_line), "%s", line);
                        const char *p = strstr(line, "\"id\":");
                        id = p ? atoi(p + 5) : -1;
                        break;
                }
                }
        }
        return NULL;
}

/* Starts the server; returns the client end. */
static int start(server *s, const char *const *script)
{
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        memset(s, 0, sizeof(*s));
        s->fd = sv[1];
        s->script = script;
        assert_int_equal(pthread_create(&s->thread, NULL, serve, s), 0);
        return sv[0];
}

static void finish(server *s)
{
        pthread_join(s->thread, NULL);
        if (s->fd >= 0)
                close(s->fd);
}

#define HANDSHAKE "S" GREETING, "R", "I{\"return\": {}, \"id\": %d}\r\n"

static void test_handshake_and_execute(void **state)
{
        static const char *const script[] = {
                HANDSHAKE,
                "R",
                /* an event and a stale reply before the real one */
                "S{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"STOP\"}\r\n",
                "S{\"return\": {}, \"id\": 999}\r\n",
                "S\r\n",
                "I{\"return\": {\"status\": \"running\", \"singlestep\": false, \"running\": true}, \"id\": %d}\r\n",
                "W",
                NULL,
        };
        server s;
        int fd = start(&s, script);
        qmp *q = NULL;
        cc_error *err = NULL;
        assert_int_equal(qmp_open_fd(fd, 2000, &q, &err), 0);
        assert_null(err);
        json_object *ret = NULL;
        assert_int_equal(qmp_execute(q, "query-status", NULL, 2000, &ret, &err), 0);
        assert_null(err);
        assert_string_equal(s.last_cmd, "query-status");
        json_object *st = NULL;
        assert_true(json_object_object_get_ex(ret, "status", &st));
        assert_string_equal(json_object_get_string(st), "running");
        json_object_put(ret);
        json_object *ev = NULL;
        assert_int_equal(qmp_next_event(q, &ev), 0);
        json_object *name = NULL;
        assert_true(json_object_object_get_ex(ev, "event", &name));
        assert_string_equal(json_object_get_string(name), "STOP");
        json_object_put(ev);
        assert_int_equal(qmp_next_event(q, &ev), -ENOENT);
        qmp_free(q);
        finish(&s);
}

static void test_arguments_are_sent(void **state)
{
        static const char *const script[] = {
                HANDSHAKE, "R", "I{\"return\": {}, \"id\": %d}\n", "W", NULL,
        };
        server s;
        int fd = start(&s, script);
        qmp *q = NULL;
        assert_int_equal(qmp_open_fd(fd, 2000, &q, NULL), 0);
        json_object *args = json_object_new_object();
        json_object_object_add(args, "device", json_object_new_string("x"));
        assert_int_equal(qmp_execute(q, "device_del", args, 2000, NULL, NULL), 0);
        json_object_put(args);
        /* arguments must be an object */
        json_object *bad = json_object_new_int(1);
        cc_error *err = NULL;
        assert_int_equal(qmp_execute(q, "device_del", bad, 2000, NULL, &err), -EINVAL);
        cc_error_free(err);
        err = NULL;
        json_object_put(bad);
        /* command names are checked before anything is sent */
        assert_int_equal(qmp_execute(q, "bad\"name", NULL, 2000, NULL, &err), -EINVAL);
        cc_error_free(err);
        qmp_free(q);
        finish(&s);
}

/* getfd: the fd travels with the command's first byte; QEMU files it
 * under the name for a later "fd:name" */
static void test_getfd_passes_the_fd(void **state)
{
        static const char *const script[] = {
                HANDSHAKE, "F", "I{\"return\": {}, \"id\": %d}\n", "W", NULL,
        };
        server s;
        int fd = start(&s, script);
        s.got_fd = -1;
        qmp *q = NULL;
        assert_int_equal(qmp_open_fd(fd, 2000, &q, NULL), 0);
        FILE *f = tmpfile();
        assert_non_null(f);
        assert_int_equal(qmp_getfd(q, "state", fileno(f), 2000, NULL), 0);
        cc_error *err = NULL;
        assert_int_equal(qmp_getfd(q, "state", -1, 2000, &err), -EBADF);
        cc_error_free(err);
        qmp_free(q);
        finish(&s);
        assert_non_null(strstr(s.last_line, "\"execute\":\"getfd\""));
        assert_non_null(strstr(s.last_line, "\"fdname\":\"state\""));
        assert_true(s.got_fd >= 0);
        struct stat a, b;
        assert_int_equal(fstat(fileno(f), &a), 0);
        assert_int_equal(fstat(s.got_fd, &b), 0);
        assert_true(a.st_ino == b.st_ino && a.st_dev == b.st_dev);
        close(s.got_fd);
        fclose(f);
}

static void test_error_reply(void **state)
{
        static const char *const script[] = {
                HANDSHAKE,
                "R",
                "I{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command foo has not been found\"}, \"id\": %d}\n",
                "R",
                /* control characters from the guest are not passed on; long text is cut */
                "I{\"error\": {\"class\": \"GenericError\", \"desc\": \"bad\\u001b[31m\\nthing "
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}, \"id\": %d}\n",
                "R",
                "I{\"error\": {\"class\": \"DeviceNotFound\", \"desc\": \"no\"}, \"id\": %d}\n",
                "R",
                "I{\"id\": %d}\n",
                "W",
                NULL,
        };
        server s;
        int fd = start(&s, script);
        qmp *q = NULL;
        assert_int_equal(qmp_open_fd(fd, 2000, &q, NULL), 0);
        cc_error *err = NULL;
        assert_int_equal(qmp_execute(q, "foo", NULL, 2000, NULL, &err), -EOPNOTSUPP);
        assert_non_null(strstr(err->msg, "qmp 'foo': CommandNotFound: The command foo has not been found"));
        cc_error_free(err);
        err = NULL;
        assert_int_equal(qmp_execute(q, "bar", NULL, 2000, NULL, &err), -EIO);
        assert_non_null(strstr(err->msg, "bad?[31m?thing"));
        assert_non_null(strstr(err->msg, "..."));
        assert_true(strlen(err->msg) < 300);
        for (const char *p = err->msg; *p; p++)
                assert_true(*p >= 0x20 && *p < 0x7f);
        cc_error_free(err);
        err = NULL;
        assert_int_equal(qmp_execute(q, "baz", NULL, 2000, NULL, &err), -ENODEV);
        cc_error_free(err);
        err = NULL;
        /* neither return nor error */
        assert_int_equal(qmp_execute(q, "qux", NULL, 2000, NULL, &err), -EBADMSG);
        cc_error_free(err);
        qmp_free(q);
        finish(&s);
}

static void test_oversize_line(void **state)
{
        static const char *const script[] = { HANDSHAKE, "R", "B", NULL };
        server s;
        int fd = start(&s, script);
        qmp *q = NULL;
        assert_int_equal(qmp_open_fd(fd, 2000, &q, NULL), 0);
        cc_error *err = NULL;
        assert_int_equal(qmp_execute(q, "query-status", NULL, 5000, NULL, &err), -EMSGSIZE);
        cc_error_free(err);
        err = NULL;
        /* the connection is unusable now */
        assert_int_equal(qmp_execute(q, "query-status", NULL, 100, NULL, &err), -ENOTCONN);
        cc_error_free(err);
        qmp_free(q); /* closes the client end: the server's send fails */
        finish(&s);
}

static void test_garbage_line(void **state)
{
        static const char *const script[] = { HANDSHAKE, "R", "Sthis is not json\n", "W", NULL };
        server s;
        int fd = start(&s, script);
        qmp *q = NULL;
        assert_int_equal(qmp_open_fd(fd, 2000, &q, NULL), 0);
        cc_error *err = NULL;
        assert_int_equal(qmp_execute(q, "query-status", NULL, 2000, NULL, &err), -EINVAL);
        assert_non_null(strstr(err->msg, "query-status"));
        cc_error_free(err);
        err = NULL;
        assert_int_equal(qmp_execute(q, "query-status", NULL, 100, NULL, &err), -ENOTCONN);
        cc_error_free(err);
        qmp_free(q);
        finish(&s);
}

static void test_non_object_line(void **state)
{
        static const char *const script[] = { HANDSHAKE, "R", "S[1, 2, 3]\n", "W", NULL };
        server s;
        int fd = start(&s, script);
        qmp *q = NULL;
        assert_int_equal(qmp_open_fd(fd, 2000, &q, NULL), 0);
        cc_error *err = NULL;
        assert_int_equal(qmp_execute(q, "query-status", NULL, 2000, NULL, &err), -EBADMSG);
        cc_error_free(err);
        qmp_free(q);
        finish(&s);
}

static int64_t mono_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_timeout_then_late_reply(void **state)
{
        static const char *const script[] = {
                HANDSHAKE,
                "R",  /* never answered in time */
                "R",  /* the next command */
                /* the late reply to the first, then the reply to the second */
                "S{\"return\": {\"late\": true}, \"id\": 2}\n",
                "I{\"return\": {\"late\": false}, \"id\": %d}\n",
                "W",
                NULL,
        };
        server s;
        int fd = start(&s, script);
        qmp *q = NULL;
        assert_int_equal(qmp_open_fd(fd, 2000, &q, NULL), 0);
        cc_error *err = NULL;
        int64_t t0 = mono_ms();
        assert_int_equal(qmp_execute(q, "stop", NULL, 200, NULL, &err), -ETIMEDOUT);
        int64_t el = mono_ms() - t0;
        assert_true(el >= 190 && el < 2000);
        cc_error_free(err);
        err = NULL;
        json_object *ret = NULL;
        assert_int_equal(qmp_execute(q, "cont", NULL, 2000, &ret, &err), 0);
        json_object *late = NULL;
        assert_true(json_object_object_get_ex(ret, "late", &late));
        assert_false(json_object_get_boolean(late));
        json_object_put(ret);
        qmp_free(q);
        finish(&s);
}

static void test_bad_greeting(void **state)
{
        static const char *const script[] = { "S{\"hello\": 1}\n", "W", NULL };
        server s;
        int fd = start(&s, script);
        qmp *q = NULL;
        cc_error *err = NULL;
        assert_int_equal(qmp_open_fd(fd, 2000, &q, &err), -EBADMSG);
        assert_null(q);
        cc_error_free(err);
        finish(&s);
}

static void test_no_greeting(void **state)
{
        static const char *const script[] = { "W", NULL };
        server s;
        int fd = start(&s, script);
        qmp *q = NULL;
        cc_error *err = NULL;
        assert_int_equal(qmp_open_fd(fd, 150, &q, &err), -ETIMEDOUT);
        assert_non_null(strstr(err->msg, "greeting"));
        cc_error_free(err);
        finish(&s);
}

static void test_capabilities_refused(void **state)
{
        static const char *const script[] = {
                "S" GREETING, "R", "I{\"error\": {\"class\": \"GenericError\", \"desc\": \"no\"}, \"id\": %d}\n", "W",
                NULL,
        };
        server s;
        int fd = start(&s, script);
        qmp *q = NULL;
        cc_error *err = NULL;
        assert_int_equal(qmp_open_fd(fd, 2000, &q, &err), -EIO);
        assert_non_null(strstr(err->msg, "qmp_capabilities"));
        cc_error_free(err);
        finish(&s);
}

static void test_hangup(void **state)
{
        static const char *const script[] = { HANDSHAKE, "R", "C", NULL };
        server s;
        int fd = start(&s, script);
        qmp *q = NULL;
        assert_int_equal(qmp_open_fd(fd, 2000, &q, NULL), 0);
        cc_error *err = NULL;
        assert_int_equal(qmp_execute(q, "quit", NULL, 2000, NULL, &err), -ECONNRESET);
        cc_error_free(err);
        qmp_free(q);
        finish(&s);
}

static void test_event_queue_is_bounded(void **state)
{
        static const char *const ev = "S{\"event\": \"RESUME\", \"data\": {}}\n";
        const char *script[QMP_MAX_EVENTS + 16] = { HANDSHAKE, "R" };
        size_t n = 4;
        for (int i = 0; i < QMP_MAX_EVENTS + 5; i++)
                script[n++] = ev;
        script[n++] = "I{\"return\": {}, \"id\": %d}\n";
        script[n++] = "W";
        script[n] = NULL;
        server s;
        int fd = start(&s, script);
        qmp *q = NULL;
        assert_int_equal(qmp_open_fd(fd, 2000, &q, NULL), 0);
        assert_int_equal(qmp_execute(q, "cont", NULL, 2000, NULL, NULL), 0);
        json_object *e;
        int count = 0;
        while (qmp_next_event(q, &e) == 0) {
                json_object_put(e);
                count++;
        }
        assert_int_equal(count, QMP_MAX_EVENTS);
        qmp_free(q);
        finish(&s);
}

static void test_connect_missing_socket(void **state)
{
        qmp *q = NULL;
        cc_error *err = NULL;
        int64_t t0 = mono_ms();
        assert_int_equal(qmp_connect("/nonexistent/qmp.sock", 100, &q, &err), -ENOENT);
        assert_true(mono_ms() - t0 < 2000);
        cc_error_free(err);
        char longp[200];
        memset(longp, 'a', sizeof(longp) - 1);
        longp[0] = '/';
        longp[sizeof(longp) - 1] = 0;
        err = NULL;
        assert_int_equal(qmp_connect(longp, 100, &q, &err), -ENAMETOOLONG);
        cc_error_free(err);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_handshake_and_execute),
                cmocka_unit_test(test_arguments_are_sent),
                cmocka_unit_test(test_getfd_passes_the_fd),
                cmocka_unit_test(test_error_reply),
                cmocka_unit_test(test_oversize_line),
                cmocka_unit_test(test_garbage_line),
                cmocka_unit_test(test_non_object_line),
                cmocka_unit_test(test_timeout_then_late_reply),
                cmocka_unit_test(test_bad_greeting),
                cmocka_unit_test(test_no_greeting),
                cmocka_unit_test(test_capabilities_refused),
                cmocka_unit_test(test_hangup),
                cmocka_unit_test(test_event_queue_is_bounded),
                cmocka_unit_test(test_connect_missing_socket),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
