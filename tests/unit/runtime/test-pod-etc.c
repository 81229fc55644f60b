/* SPDX-License-Identifier: Apache-2.0 */
/* runtime/pod-etc.c: the pod's hostname, hosts and resolv.conf. */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "common/fs.h"
#include "runtime/pod-etc.h"

static char dir[64], host_hosts[256], host_resolv[256];

static int setup(void **state)
{
        strcpy(dir, "/tmp/cocoon-test-podetc-XXXXXX");
        assert_non_null(mkdtemp(dir));
        char hostdir[128];
        snprintf(hostdir, sizeof hostdir, "%s/host", dir);
        assert_int_equal(mkdir(hostdir, 0755), 0);
        snprintf(host_hosts, sizeof host_hosts, "%s/hosts", hostdir);
        snprintf(host_resolv, sizeof host_resolv, "%s/resolv.conf", hostdir);
        assert_int_equal(cc_write_file_atomic(host_hosts, "127.0.0.1 localhost\n10.0.0.5 node1\n", 35, 0644, NULL), 0);
        assert_int_equal(cc_write_file_atomic(host_resolv, "nameserver 192.0.2.53\nsearch example.org\n", 41, 0644, NULL),
                         0);
        char pod[128];
        snprintf(pod, sizeof pod, "%s/pod", dir);
        assert_int_equal(mkdir(pod, 0755), 0);
        return 0;
}

static int teardown(void **state)
{
        cc_rm_rf(dir, NULL);
        return 0;
}

static char *slurp(const char *name)
{
        char p[256];
        snprintf(p, sizeof p, "%s/pod/%s", dir, name);
        char *buf = NULL;
        size_t len;
        if (cc_read_file(p, 1 << 20, &buf, &len, NULL) < 0)
                return NULL;
        return buf;
}

static char *pod_dir(void)
{
        static char p[128];
        snprintf(p, sizeof p, "%s/pod", dir);
        return p;
}

/* Entries in the pod dir (temp files left behind would show here). */
static size_t n_entries(void)
{
        DIR *d = opendir(pod_dir());
        assert_non_null(d);
        size_t n = 0;
        struct dirent *e;
        while ((e = readdir(d)))
                if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
                        n++;
        closedir(d);
        return n;
}

static void clear_pod_dir(void)
{
        const char *names[] = { "hostname", "hosts", "resolv.conf" };
        for (size_t i = 0; i < 3; i++) {
                char p[256];
                snprintf(p, sizeof p, "%s/%s", pod_dir(), names[i]);
                unlink(p);
        }
}

static void test_write_pod_network(void **state)
{
        char *servers[] = { "10.96.0.10", "fd00::a" }, *searches[] = { "default.svc.cluster.local", "svc.cluster.local" },
             *options[] = { "ndots:5", "edns0" };
        Runtime__V1__DNSConfig dns = RUNTIME__V1__DNSCONFIG__INIT;
        dns.n_servers = 2;
        dns.servers = servers;
        dns.n_searches = 2;
        dns.searches = searches;
        dns.n_options = 2;
        dns.options = options;
        Runtime__V1__PodSandboxConfig cfg = RUNTIME__V1__POD_SANDBOX_CONFIG__INIT;
        cfg.hostname = "web-0";
        cfg.dns_config = &dns;
        cc_error *err = NULL;
        assert_int_equal(rt_pod_etc_write_from(pod_dir(), &cfg, "10.88.0.7", false, host_hosts, host_resolv, &err), 0);
        assert_null(err);
        _cleanup_free_ char *h = slurp("hostname"), *hosts = slurp("hosts"), *resolv = slurp("resolv.conf");
        assert_string_equal(h, "web-0\n");
        assert_string_equal(hosts, "# Kubernetes-managed hosts file (written by cocoon).\n"
                                   "127.0.0.1\tlocalhost\n"
                                   "::1\tlocalhost ip6-localhost ip6-loopback\n"
                                   "fe00::0\tip6-localnet\n"
                                   "ff00::0\tip6-mcastprefix\n"
                                   "ff02::1\tip6-allnodes\n"
                                   "ff02::2\tip6-allrouters\n"
                                   "10.88.0.7\tweb-0\n");
        assert_string_equal(resolv, "search default.svc.cluster.local svc.cluster.local\n"
                                    "nameserver 10.96.0.10\n"
                                    "nameserver fd00::a\n"
                                    "options ndots:5 edns0\n");
        struct stat st;
        char p[256];
        snprintf(p, sizeof p, "%s/hosts", pod_dir());
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0644);
        assert_int_equal(n_entries(), 3);
        clear_pod_dir();
}

static void test_no_ip_no_dns_copies_host_resolv(void **state)
{
        Runtime__V1__DNSConfig dns = RUNTIME__V1__DNSCONFIG__INIT; /* present but empty */
        Runtime__V1__PodSandboxConfig cfg = RUNTIME__V1__POD_SANDBOX_CONFIG__INIT;
        cfg.hostname = "solo";
        cfg.dns_config = &dns;
        assert_int_equal(rt_pod_etc_write_from(pod_dir(), &cfg, NULL, false, host_hosts, host_resolv, NULL), 0);
        _cleanup_free_ char *hosts = slurp("hosts"), *resolv = slurp("resolv.conf");
        assert_null(strstr(hosts, "solo"));
        assert_non_null(strstr(hosts, "127.0.0.1\tlocalhost\n"));
        assert_string_equal(resolv, "nameserver 192.0.2.53\nsearch example.org\n");
        clear_pod_dir();
}

static void test_host_network_copies_hosts(void **state)
{
        Runtime__V1__PodSandboxConfig cfg = RUNTIME__V1__POD_SANDBOX_CONFIG__INIT;
        cfg.hostname = ""; /* the kubelet leaves it empty for host-network pods */
        assert_int_equal(rt_pod_etc_write_from(pod_dir(), &cfg, "10.0.0.5", true, host_hosts, host_resolv, NULL), 0);
        _cleanup_free_ char *h = slurp("hostname"), *hosts = slurp("hosts");
        char me[256] = "";
        gethostname(me, sizeof me);
        char want[300];
        snprintf(want, sizeof want, "%s\n", me);
        assert_string_equal(h, want);
        assert_string_equal(hosts, "127.0.0.1 localhost\n10.0.0.5 node1\n");
        clear_pod_dir();
}

static void test_missing_host_resolv_is_empty(void **state)
{
        Runtime__V1__PodSandboxConfig cfg = RUNTIME__V1__POD_SANDBOX_CONFIG__INIT;
        cfg.hostname = "a1";
        char missing[256];
        snprintf(missing, sizeof missing, "%s/host/nope", dir);
        assert_int_equal(rt_pod_etc_write_from(pod_dir(), &cfg, NULL, false, host_hosts, missing, NULL), 0);
        _cleanup_free_ char *resolv = slurp("resolv.conf");
        assert_string_equal(resolv, "");
        clear_pod_dir();
}

/* Each bad input fails with -EINVAL naming the field, and writes nothing. */
static void expect_invalid(Runtime__V1__PodSandboxConfig *cfg, const char *pod_ip, const char *field)
{
        cc_error *err = NULL;
        assert_int_equal(rt_pod_etc_write_from(pod_dir(), cfg, pod_ip, false, host_hosts, host_resolv, &err), -EINVAL);
        assert_non_null(err);
        if (!strstr(err->msg, field))
                fail_msg("'%s' does not name '%s'", err->msg, field);
        cc_error_free(err);
        assert_int_equal(n_entries(), 0);
}

static void test_validation(void **state)
{
        Runtime__V1__PodSandboxConfig cfg = RUNTIME__V1__POD_SANDBOX_CONFIG__INIT;
        char long_name[80];
        memset(long_name, 'a', 64);
        long_name[64] = 0;
        const char *bad_hosts[] = { long_name, "-lead", "trail-", "has space", "new\nline", "a..b", "under_score",
                                    "x/y" };
        for (size_t i = 0; i < CC_ARRAY_SIZE(bad_hosts); i++) {
                cfg.hostname = (char *)bad_hosts[i];
                expect_invalid(&cfg, NULL, "hostname");
        }
        long_name[63] = 0;
        cfg.hostname = long_name; /* 63: fine */
        assert_int_equal(rt_pod_etc_write_from(pod_dir(), &cfg, NULL, false, host_hosts, host_resolv, NULL), 0);
        clear_pod_dir();
        cfg.hostname = "ok";
        expect_invalid(&cfg, "10.0.0.300", "pod IP");

        Runtime__V1__DNSConfig dns = RUNTIME__V1__DNSCONFIG__INIT;
        cfg.dns_config = &dns;
        char *bad_servers[] = { "not-an-ip" }, *nl_server[] = { "10.0.0.1\nnameserver 6.6.6.6" };
        dns.n_servers = 1;
        dns.servers = bad_servers;
        expect_invalid(&cfg, NULL, "dns_config.servers[0]");
        dns.servers = nl_server;
        expect_invalid(&cfg, NULL, "dns_config.servers[0]");
        char *zoned[] = { "fe80::1%eth0" };
        dns.servers = zoned;
        assert_int_equal(rt_pod_etc_write_from(pod_dir(), &cfg, NULL, false, host_hosts, host_resolv, NULL), 0);
        clear_pod_dir();
        dns.n_servers = 0;

        char *bad_search[] = { "ok.example", "evil\noptions debug" };
        dns.n_searches = 2;
        dns.searches = bad_search;
        expect_invalid(&cfg, NULL, "dns_config.searches[1]");
        char *space_search[] = { "a b" };
        dns.n_searches = 1;
        dns.searches = space_search;
        expect_invalid(&cfg, NULL, "dns_config.searches[0]");
        dns.n_searches = 0;

        char *bad_opt[] = { "ndots:5", "x\ty" }, *ctl_opt[] = { "a\x01" }, *empty_opt[] = { "" };
        dns.n_options = 2;
        dns.options = bad_opt;
        expect_invalid(&cfg, NULL, "dns_config.options[1]");
        dns.n_options = 1;
        dns.options = ctl_opt;
        expect_invalid(&cfg, NULL, "dns_config.options[0]");
        dns.options = empty_opt;
        expect_invalid(&cfg, NULL, "dns_config.options[0]");
        dns.n_options = 0;

        char *many[40];
        for (size_t i = 0; i < 40; i++)
                many[i] = "a.example";
        dns.n_searches = 40;
        dns.searches = many;
        expect_invalid(&cfg, NULL, "dns_config.searches");
}

/* A rewrite replaces the file whole (rename): an fd opened on the old file
 * still sees the old content, and no temp file is left. */
static void test_atomic_replace(void **state)
{
        Runtime__V1__PodSandboxConfig cfg = RUNTIME__V1__POD_SANDBOX_CONFIG__INIT;
        cfg.hostname = "first";
        assert_int_equal(rt_pod_etc_write_from(pod_dir(), &cfg, "10.1.1.1", false, host_hosts, host_resolv, NULL), 0);
        char p[256];
        snprintf(p, sizeof p, "%s/hosts", pod_dir());
        FILE *old = fopen(p, "re");
        assert_non_null(old);
        struct stat st1, st2;
        assert_int_equal(stat(p, &st1), 0);
        cfg.hostname = "second";
        assert_int_equal(rt_pod_etc_write_from(pod_dir(), &cfg, "10.1.1.2", false, host_hosts, host_resolv, NULL), 0);
        assert_int_equal(stat(p, &st2), 0);
        assert_int_not_equal(st1.st_ino, st2.st_ino);
        char buf[1024] = "";
        size_t n = fread(buf, 1, sizeof buf - 1, old);
        buf[n] = 0;
        fclose(old);
        assert_non_null(strstr(buf, "10.1.1.1\tfirst\n"));
        _cleanup_free_ char *now = slurp("hosts");
        assert_non_null(strstr(now, "10.1.1.2\tsecond\n"));
        assert_null(strstr(now, "first"));
        assert_int_equal(n_entries(), 3);

        /* A failed rewrite (invalid input) keeps the previous files. */
        cfg.hostname = "bad name";
        assert_int_equal(rt_pod_etc_write_from(pod_dir(), &cfg, NULL, false, host_hosts, host_resolv, NULL), -EINVAL);
        _cleanup_free_ char *h = slurp("hostname");
        assert_string_equal(h, "second\n");
        clear_pod_dir();
}

static void test_missing_dir_leaves_nothing(void **state)
{
        Runtime__V1__PodSandboxConfig cfg = RUNTIME__V1__POD_SANDBOX_CONFIG__INIT;
        cfg.hostname = "x";
        char p[256];
        snprintf(p, sizeof p, "%s/nodir", dir);
        cc_error *err = NULL;
        assert_true(rt_pod_etc_write_from(p, &cfg, NULL, false, host_hosts, host_resolv, &err) < 0);
        assert_non_null(err);
        cc_error_free(err);
        assert_int_equal(access(p, F_OK), -1);
}

static void test_resolv_and_hosts_text(void **state)
{
        assert_null(rt_pod_etc_resolv(NULL, NULL));
        char *servers[] = { "1.1.1.1" };
        Runtime__V1__DNSConfig dns = RUNTIME__V1__DNSCONFIG__INIT;
        dns.n_servers = 1;
        dns.servers = servers;
        _cleanup_free_ char *r = rt_pod_etc_resolv(&dns, NULL);
        assert_string_equal(r, "nameserver 1.1.1.1\n");
        _cleanup_free_ char *h = rt_pod_etc_hosts("p", "fd00::5", NULL);
        assert_non_null(strstr(h, "\nfd00::5\tp\n"));
        cc_error *err = NULL;
        assert_null(rt_pod_etc_hosts("p", "nope", &err));
        assert_non_null(err);
        cc_error_free(err);
        char name[RT_POD_HOSTNAME_MAX + 1];
        Runtime__V1__PodSandboxConfig cfg = RUNTIME__V1__POD_SANDBOX_CONFIG__INIT;
        cfg.hostname = "Mixed-Case.example";
        assert_int_equal(rt_pod_etc_hostname(&cfg, name, NULL), 0);
        assert_string_equal(name, "Mixed-Case.example");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_write_pod_network),
                cmocka_unit_test(test_no_ip_no_dns_copies_host_resolv),
                cmocka_unit_test(test_host_network_copies_hosts),
                cmocka_unit_test(test_missing_host_resolv_is_empty),
                cmocka_unit_test(test_validation),
                cmocka_unit_test(test_atomic_replace),
                cmocka_unit_test(test_missing_dir_leaves_nothing),
                cmocka_unit_test(test_resolv_and_hosts_text),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
