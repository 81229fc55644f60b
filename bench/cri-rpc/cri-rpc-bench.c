/* SPDX-License-Identifier: Apache-2.0 */
/* cri-rpc-bench: closed-loop CRI unary RPC load generator.
 *
 * C threads, each with its own gRPC channel (its own connection, like separate
 * kubelet or crictl processes), call one CRI method back to back. After a
 * connect call per thread and a warm-up, every call started inside the
 * measurement window is timed; the program prints calls/s and the latency
 * distribution, plus one machine-readable "RESULT key=value..." line.
 *
 * Any call that does not end OK stops the run and exits 1, with one exception:
 * UNIMPLEMENTED ends the run with status=unimplemented and exit code 3, so a
 * runner can show "n/a" instead of timing a fast error path. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "api.pb-c.h"
#include "common/cleanup.h"
#include "common/error.h"
#include "cri-server/grpc-client.h"

#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define EXIT_UNIMPLEMENTED 3

#define GRPC_CODE_OK 0
#define GRPC_CODE_UNIMPLEMENTED 12

enum phase { PHASE_CONNECT, PHASE_WARMUP, PHASE_MEASURE, PHASE_STOP };

typedef struct bench_method {
        const char *name;
        const char *path;
        const ProtobufCMessageDescriptor *resp_desc;
} bench_method;

static const bench_method methods[] = {
        { "Version", "/runtime.v1.RuntimeService/Version", &runtime__v1__version_response__descriptor },
        { "ListPodSandbox", "/runtime.v1.RuntimeService/ListPodSandbox",
          &runtime__v1__list_pod_sandbox_response__descriptor },
};

typedef struct bench {
        const char *target;
        const bench_method *method;
        uint8_t *req;
        size_t req_len;
        int timeout_ms;
        int concurrency;
        double duration_s; /* > 0: timed run */
        long long count;   /* > 0: fixed number of measured calls */
        double warmup_s;

        atomic_int phase;
        atomic_llong remaining; /* count mode */
        atomic_int n_ready;

        pthread_mutex_t lock;
        pthread_cond_t cond; /* main waits: all connected, or a failure */
        bool failed;
        bool unimplemented;
        char *fail_msg;
} bench;

typedef struct worker {
        bench *b;
        int idx;
        pthread_t thread;
        cri_grpc_channel *ch;
        uint64_t *lat_ns; /* per measured call */
        uint64_t *end_ns; /* its completion time, CLOCK_MONOTONIC */
        size_t n, cap;
        uint64_t warmup_calls;
} worker;

static uint64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static const char *grpc_code_name(int code)
{
        static const char *const names[] = {
                "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
                "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
                "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
                "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
        };
        if (code >= 0 && (size_t)code < CC_ARRAY_SIZE(names))
                return names[code];
        return "?";
}

/* Records the first failure and stops everyone. */
static void bench_fail(bench *b, bool unimplemented, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void bench_fail(bench *b, bool unimplemented, const char *fmt, ...)
{
        pthread_mutex_lock(&b->lock);
        if (!b->failed && !b->unimplemented) {
                va_list ap;
                va_start(ap, fmt);
                if (vasprintf(&b->fail_msg, fmt, ap) < 0)
                        b->fail_msg = NULL;
                va_end(ap);
                if (unimplemented)
                        b->unimplemented = true;
                else
                        b->failed = true;
        }
        atomic_store(&b->phase, PHASE_STOP);
        pthread_cond_broadcast(&b->cond);
        pthread_mutex_unlock(&b->lock);
}

/* One call; returns 0 if it ended OK (response checked when validate). */
static int one_call(worker *w, bool validate)
{
        bench *b = w->b;
        _cleanup_free_ uint8_t *resp = NULL;
        _cleanup_free_ char *msg = NULL;
        size_t resp_len = 0;
        int code = -1;
        _cleanup_error_ cc_error *err = NULL;
        if (cri_grpc_call(w->ch, b->method->path, b->req, b->req_len, b->timeout_ms, &resp, &resp_len,
                          &code, &msg, &err) < 0) {
                bench_fail(b, false, "client %d: %s: transport error: %s", w->idx, b->method->name,
                           err->msg);
                return -EIO;
        }
        if (code == GRPC_CODE_UNIMPLEMENTED) {
                bench_fail(b, true, "%s answered UNIMPLEMENTED: %s", b->method->name, msg ? msg : "");
                return -EOPNOTSUPP;
        }
        if (code != GRPC_CODE_OK) {
                bench_fail(b, false, "client %d: %s failed: %s (%d): %s", w->idx, b->method->name,
                           grpc_code_name(code), code, msg ? msg : "");
                return -EIO;
        }
        if (validate) {
                ProtobufCMessage *m =
                        protobuf_c_message_unpack(b->method->resp_desc, NULL, resp_len, resp);
                if (!m) {
                        bench_fail(b, false, "client %d: %s: reply is not a valid %s (%zu bytes)",
                                   w->idx, b->method->name, b->method->resp_desc->name, resp_len);
                        return -EBADMSG;
                }
                protobuf_c_message_free_unpacked(m, NULL);
        }
        return 0;
}

static int record(worker *w, uint64_t lat, uint64_t end)
{
        if (w->n == w->cap) {
                size_t cap = w->cap ? w->cap * 2 : 16384;
                uint64_t *l = realloc(w->lat_ns, cap * sizeof(*l));
                if (!l)
                        return -ENOMEM;
                w->lat_ns = l;
                uint64_t *e = realloc(w->end_ns, cap * sizeof(*e));
                if (!e)
                        return -ENOMEM;
                w->end_ns = e;
                w->cap = cap;
        }
        w->lat_ns[w->n] = lat;
        w->end_ns[w->n] = end;
        w->n++;
        return 0;
}

static void *worker_main(void *arg)
{
        worker *w = arg;
        bench *b = w->b;

        /* Connect and check the reply once, outside any measurement. */
        if (one_call(w, true) < 0)
                return NULL;
        pthread_mutex_lock(&b->lock);
        atomic_fetch_add(&b->n_ready, 1);
        pthread_cond_broadcast(&b->cond);
        pthread_mutex_unlock(&b->lock);

        for (;;) {
                int ph = atomic_load(&b->phase);
                if (ph == PHASE_STOP)
                        break;
                if (ph == PHASE_CONNECT) {
                        /* Wait for the others to connect. */
                        pthread_mutex_lock(&b->lock);
                        while (atomic_load(&b->phase) == PHASE_CONNECT)
                                pthread_cond_wait(&b->cond, &b->lock);
                        pthread_mutex_unlock(&b->lock);
                        continue;
                }
                bool measured = ph == PHASE_MEASURE;
                if (measured && b->count > 0 && atomic_fetch_sub(&b->remaining, 1) <= 0)
                        break;
                uint64_t t0 = now_ns();
                if (one_call(w, false) < 0)
                        break;
                uint64_t t1 = now_ns();
                if (!measured) {
                        w->warmup_calls++;
                } else if (record(w, t1 - t0, t1) < 0) {
                        bench_fail(b, false, "client %d: out of memory", w->idx);
                        break;
                }
        }
        return NULL;
}

/* Waits until deadline (CLOCK_MONOTONIC ns) or a failure; true if failed. */
static bool wait_until(bench *b, uint64_t deadline)
{
        pthread_mutex_lock(&b->lock);
        for (;;) {
                if (b->failed || b->unimplemented)
                        break;
                uint64_t now = now_ns();
                if (now >= deadline)
                        break;
                struct timespec ts = { (time_t)(deadline / 1000000000ull), (long)(deadline % 1000000000ull) };
                pthread_cond_timedwait(&b->cond, &b->lock, &ts);
        }
        bool stop = b->failed || b->unimplemented;
        pthread_mutex_unlock(&b->lock);
        return stop;
}

static int cmp_u64(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted array. */
static uint64_t pct(const uint64_t *v, size_t n, double p)
{
        if (n == 0)
                return 0;
        size_t rank = (size_t)(p / 100.0 * (double)n + 0.999999);
        if (rank < 1)
                rank = 1;
        if (rank > n)
                rank = n;
        return v[rank - 1];
}

static double cpu_seconds(void)
{
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
               ru.ru_stime.tv_usec / 1e6;
}

/* User + system CPU seconds of process pid (all its threads), or -1. */
static double proc_cpu_seconds(long pid)
{
        char path[64], buf[1024];
        snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (!f || !fgets(buf, sizeof(buf), f))
                return -1;
        /* comm may hold spaces and parentheses: fields restart after the last ')'. */
        char *p = strrchr(buf, ')');
        if (!p)
                return -1;
        unsigned long long utime = 0, stime = 0;
        /* state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
        if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
                return -1;
        long hz = sysconf(_SC_CLK_TCK);
        return hz > 0 ? (double)(utime + stime) / (double)hz : -1;
}

static void usage(FILE *f)
{
        fprintf(f,
                "Usage: cri-rpc-bench [OPTIONS] TARGET\n"
                "Closed-loop CRI RPC benchmark; TARGET like unix:///run/cocoon/cocoon.sock\n"
                "(a bare /path means unix:///path).\n\n"
                "  -m, --method NAME      Version (default) or ListPodSandbox\n"
                "  -c, --concurrency N    client threads, one connection each (default 1, max 4096)\n"
                "  -d, --duration SECS    measure for SECS seconds (default 5)\n"
                "  -n, --calls N          measure exactly N calls instead of a duration\n"
                "  -w, --warmup SECS      unmeasured calls first (default 1)\n"
                "  -t, --timeout MS       per-call deadline (default 5000)\n"
                "  -p, --server-pid PID   also report that process's CPU time per call\n"
                "  -h, --help             this help\n\n"
                "Exit status: 0 ok, 1 a call failed, 2 usage, 3 the method is UNIMPLEMENTED.\n");
}

static int parse_double(const char *s, double min, double max, double *ret)
{
        char *end = NULL;
        errno = 0;
        double v = strtod(s, &end);
        if (errno || end == s || *end || !(v >= min && v <= max))
                return -EINVAL;
        *ret = v;
        return 0;
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                { "method", required_argument, NULL, 'm' },
                { "concurrency", required_argument, NULL, 'c' },
                { "duration", required_argument, NULL, 'd' },
                { "calls", required_argument, NULL, 'n' },
                { "warmup", required_argument, NULL, 'w' },
                { "timeout", required_argument, NULL, 't' },
                { "server-pid", required_argument, NULL, 'p' },
                { "help", no_argument, NULL, 'h' },
                { 0 },
        };
        static bench b = { .timeout_ms = 5000, .concurrency = 1, .duration_s = 5, .warmup_s = 1 };
        b.method = &methods[0];
        double v;
        long server_pid = 0;
        int c;
        while ((c = getopt_long(argc, argv, "m:c:d:n:w:t:p:h", opts, NULL)) != -1) {
                switch (c) {
                case 'm':
                        b.method = NULL;
                        for (size_t i = 0; i < CC_ARRAY_SIZE(methods); i++)
                                if (strcmp(optarg, methods[i].name) == 0)
                                        b.method = &methods[i];
                        if (!b.method) {
                                fprintf(stderr, "cri-rpc-bench: unknown method '%s'\n", optarg);
                                return EXIT_USAGE;
                        }
                        break;
                case 'c':
                        if (parse_double(optarg, 1, 4096, &v) < 0 || v != (int)v)
                                goto bad;
                        b.concurrency = (int)v;
                        break;
                case 'd':
                        if (parse_double(optarg, 0.01, 86400, &b.duration_s) < 0)
                                goto bad;
                        b.count = 0;
                        break;
                case 'n':
                        if (parse_double(optarg, 1, 1e12, &v) < 0 || v != (long long)v)
                                goto bad;
                        b.count = (long long)v;
                        break;
                case 'w':
                        if (parse_double(optarg, 0, 3600, &b.warmup_s) < 0)
                                goto bad;
                        break;
                case 't':
                        if (parse_double(optarg, 1, 3600000, &v) < 0 || v != (int)v)
                                goto bad;
                        b.timeout_ms = (int)v;
                        break;
                case 'p':
                        if (parse_double(optarg, 1, 1e9, &v) < 0 || v != (long)v)
                                goto bad;
                        server_pid = (long)v;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return EXIT_USAGE;
                }
                continue;
        bad:
                fprintf(stderr, "cri-rpc-bench: bad value '%s' for -%c\n", optarg, c);
                return EXIT_USAGE;
        }
        if (optind != argc - 1) {
                usage(stderr);
                return EXIT_USAGE;
        }
        /* A bare socket path means a unix: target. */
        _cleanup_free_ char *target = NULL;
        if (argv[optind][0] == '/') {
                if (asprintf(&target, "unix://%s", argv[optind]) < 0)
                        return EXIT_FAIL;
                b.target = target;
        } else {
                b.target = argv[optind];
        }

        /* Both requests are all-defaults messages (ListPodSandbox: no filter). */
        Runtime__V1__VersionRequest vreq = RUNTIME__V1__VERSION_REQUEST__INIT;
        vreq.version = "0.1.0";
        Runtime__V1__ListPodSandboxRequest lreq = RUNTIME__V1__LIST_POD_SANDBOX_REQUEST__INIT;
        const ProtobufCMessage *req = strcmp(b.method->name, "Version") == 0 ? &vreq.base : &lreq.base;
        b.req_len = protobuf_c_message_get_packed_size(req);
        b.req = malloc(b.req_len ? b.req_len : 1);
        if (!b.req)
                return EXIT_FAIL;
        protobuf_c_message_pack(req, b.req);

        pthread_mutex_init(&b.lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&b.cond, &ca);
        pthread_condattr_destroy(&ca);
        atomic_init(&b.phase, PHASE_CONNECT);
        atomic_init(&b.remaining, b.count);
        atomic_init(&b.n_ready, 0);

        cri_grpc_client_init();
        worker *ws = calloc((size_t)b.concurrency, sizeof(*ws));
        if (!ws)
                return EXIT_FAIL;
        int started = 0;
        for (int i = 0; i < b.concurrency; i++) {
                ws[i].b = &b;
                ws[i].idx = i;
                _cleanup_error_ cc_error *err = NULL;
                if (cri_grpc_channel_open(b.target, &ws[i].ch, &err) < 0) {
                        bench_fail(&b, false, "channel to %s: %s", b.target, err->msg);
                        break;
                }
                pthread_attr_t attr;
                pthread_attr_init(&attr);
                pthread_attr_setstacksize(&attr, 256 * 1024);
                int r = pthread_create(&ws[i].thread, &attr, worker_main, &ws[i]);
                pthread_attr_destroy(&attr);
                if (r != 0) {
                        bench_fail(&b, false, "pthread_create: %s", strerror(r));
                        break;
                }
                started++;
        }

        /* All connected (each made one checked call), or a failure. */
        pthread_mutex_lock(&b.lock);
        while (atomic_load(&b.n_ready) < started && !b.failed && !b.unimplemented)
                pthread_cond_wait(&b.cond, &b.lock);
        if (!b.failed && !b.unimplemented)
                atomic_store(&b.phase, PHASE_WARMUP);
        pthread_cond_broadcast(&b.cond);
        pthread_mutex_unlock(&b.lock);

        uint64_t m0 = 0, m1 = 0;
        double cpu0 = 0, cpu1 = 0, scpu0 = -1, scpu1 = -1;
        if (!wait_until(&b, now_ns() + (uint64_t)(b.warmup_s * 1e9))) {
                if (server_pid)
                        scpu0 = proc_cpu_seconds(server_pid);
                cpu0 = cpu_seconds();
                m0 = now_ns();
                atomic_store(&b.phase, PHASE_MEASURE);
                if (b.count == 0) {
                        wait_until(&b, m0 + (uint64_t)(b.duration_s * 1e9));
                        m1 = now_ns();
                        atomic_store(&b.phase, PHASE_STOP);
                        cpu1 = cpu_seconds();
                        if (server_pid)
                                scpu1 = proc_cpu_seconds(server_pid);
                }
        }
        /* A counted run's threads stop by themselves when the count is used up. */
        if (b.count == 0 || !m0)
                atomic_store(&b.phase, PHASE_STOP);
        pthread_mutex_lock(&b.lock);
        pthread_cond_broadcast(&b.cond);
        pthread_mutex_unlock(&b.lock);
        for (int i = 0; i < started; i++)
                pthread_join(ws[i].thread, NULL);
        if (b.count > 0 && m0) {
                cpu1 = cpu_seconds();
                if (server_pid)
                        scpu1 = proc_cpu_seconds(server_pid);
                m1 = m0;
                for (int i = 0; i < started; i++)
                        if (ws[i].n && ws[i].end_ns[ws[i].n - 1] > m1)
                                m1 = ws[i].end_ns[ws[i].n - 1];
        }
        for (int i = 0; i < b.concurrency; i++)
                cri_grpc_channel_close(ws[i].ch);
        cri_grpc_client_shutdown();

        const char *mname = b.method->name;
        if (b.unimplemented) {
                printf("cri-rpc-bench: %s %s: n/a: %s\n", b.target, mname, b.fail_msg ? b.fail_msg : "");
                printf("RESULT status=unimplemented method=%s conc=%d\n", mname, b.concurrency);
                return EXIT_UNIMPLEMENTED;
        }
        if (b.failed) {
                fprintf(stderr, "cri-rpc-bench: %s %s c=%d: FAILED: %s\n", b.target, mname,
                        b.concurrency, b.fail_msg ? b.fail_msg : "");
                printf("RESULT status=failed method=%s conc=%d\n", mname, b.concurrency);
                return EXIT_FAIL;
        }

        /* Throughput counts calls completed inside the window (a timed run
         * stops with up to C calls in flight); latencies cover them all. */
        size_t total = 0, in_window = 0;
        uint64_t warm = 0;
        for (int i = 0; i < started; i++) {
                total += ws[i].n;
                warm += ws[i].warmup_calls;
                for (size_t j = 0; j < ws[i].n; j++)
                        in_window += ws[i].end_ns[j] <= m1;
        }
        uint64_t *all = malloc((total ? total : 1) * sizeof(*all));
        if (!all)
                return EXIT_FAIL;
        size_t k = 0;
        double sum = 0;
        for (int i = 0; i < started; i++)
                for (size_t j = 0; j < ws[i].n; j++) {
                        all[k++] = ws[i].lat_ns[j];
                        sum += (double)ws[i].lat_ns[j];
                }
        qsort(all, total, sizeof(*all), cmp_u64);
        double secs = (double)(m1 - m0) / 1e9;
        double rps = secs > 0 ? (double)in_window / secs : 0;
        double mean_us = total ? sum / (double)total / 1e3 : 0;
        double p50 = (double)pct(all, total, 50) / 1e3, p90 = (double)pct(all, total, 90) / 1e3,
               p99 = (double)pct(all, total, 99) / 1e3, p999 = (double)pct(all, total, 99.9) / 1e3,
               mx = total ? (double)all[total - 1] / 1e3 : 0, mn = total ? (double)all[0] / 1e3 : 0;
        double cpu = cpu1 - cpu0;

        printf("cri-rpc-bench: %s %s concurrency=%d window=%.2fs warmup=%.2fs (%" PRIu64 " calls)\n",
               b.target, mname, b.concurrency, secs, b.warmup_s, warm);
        printf("  calls       %zu in window, %.0f calls/s\n", in_window, rps);
        printf("  latency us  min %.0f  mean %.0f  p50 %.0f  p90 %.0f  p99 %.0f  p99.9 %.0f  max %.0f\n",
               mn, mean_us, p50, p90, p99, p999, mx);
        printf("  client CPU  %.2f s (%.0f%% of one core, %.1f us/call)\n", cpu,
               secs > 0 ? 100 * cpu / secs : 0, in_window ? cpu * 1e6 / (double)in_window : 0);
        double scpu = scpu0 >= 0 && scpu1 >= 0 ? scpu1 - scpu0 : -1;
        if (scpu >= 0)
                printf("  server CPU  %.2f s (%.0f%% of one core, %.1f us/call), pid %ld\n", scpu,
                       secs > 0 ? 100 * scpu / secs : 0, in_window ? scpu * 1e6 / (double)in_window : 0,
                       server_pid);
        printf("RESULT status=ok method=%s conc=%d calls=%zu secs=%.3f rps=%.1f min_us=%.1f mean_us=%.1f "
               "p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f client_cpu_s=%.3f "
               "client_us_per_call=%.1f server_cpu_s=%.3f server_us_per_call=%.1f\n",
               mname, b.concurrency, in_window, secs, rps, mn, mean_us, p50, p90, p99, p999, mx, cpu,
               in_window ? cpu * 1e6 / (double)in_window : 0, scpu,
               scpu >= 0 && in_window ? scpu * 1e6 / (double)in_window : -1);
        free(all);
        for (int i = 0; i < b.concurrency; i++) {
                free(ws[i].lat_ns);
                free(ws[i].end_ns);
        }
        free(ws);
        free(b.req);
        free(b.fail_msg);
        return 0;
}
