/* SPDX-License-Identifier: Apache-2.0 */
#include "runtime/pod-etc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/log.h"

#define DNS_MAX_SERVERS 16
#define DNS_MAX_SEARCHES 32   /* the kubelet's limit */
#define DNS_MAX_SEARCH_LINE 2048
#define DNS_MAX_OPTIONS 32
#define DNS_MAX_ITEM 253
#define HOST_FILE_MAX (1024 * 1024)

static bool is_alnum(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static int check_hostname(const char *h, cc_error **ret_err)
{
        size_t n = strlen(h);
        if (n == 0 || n > RT_POD_HOSTNAME_MAX)
                return cc_error_set(ret_err, -EINVAL, "hostname: '%.80s' must be 1..%d characters", h,
                                    RT_POD_HOSTNAME_MAX);
        for (size_t i = 0; i < n; i++)
                if (!is_alnum(h[i]) && h[i] != '-' && h[i] != '.')
                        return cc_error_set(ret_err, -EINVAL,
                                            "hostname: '%s' has a character other than [A-Za-z0-9.-]", h);
        if (!is_alnum(h[0]) || !is_alnum(h[n - 1]) || strstr(h, ".."))
                return cc_error_set(ret_err, -EINVAL,
                                    "hostname: '%s' must start and end with a letter or digit", h);
        return 0;
}

int rt_pod_etc_hostname(const Runtime__V1__PodSandboxConfig *cfg, char buf[RT_POD_HOSTNAME_MAX + 1],
                        cc_error **ret_err)
{
        char tmp[256];
        const char *h = cfg && cfg->hostname ? cfg->hostname : "";
        if (!*h) {
                /* containerd and CRI-O: the host's name when none is given. */
                if (gethostname(tmp, sizeof tmp) < 0)
                        return cc_error_errno(ret_err, "hostname: gethostname");
                tmp[sizeof tmp - 1] = 0;
                h = tmp;
        }
        int r = check_hostname(h, ret_err);
        if (r < 0)
                return r;
        memcpy(buf, h, strlen(h) + 1); /* checked: <= RT_POD_HOSTNAME_MAX */
        return 0;
}

static bool is_ip(const char *s)
{
        char buf[INET6_ADDRSTRLEN + 32];
        unsigned char bin[16];
        if (strlen(s) >= sizeof buf)
                return false;
        if (inet_pton(AF_INET, s, bin) == 1)
                return true;
        strcpy(buf, s);
        char *zone = strchr(buf, '%');
        if (zone) {
                *zone++ = 0;
                if (!*zone || strlen(zone) >= 16)
                        return false;
                for (char *z = zone; *z; z++)
                        if (!is_alnum(*z) && *z != '-' && *z != '_' && *z != '.')
                                return false;
        }
        return inet_pton(AF_INET6, buf, bin) == 1;
}

/* No whitespace, no control characters, no '#' or ';' (comments). */
static int check_word(const char *field, size_t i, const char *s, cc_error **ret_err)
{
        size_t n = strlen(s);
        if (n == 0 || n > DNS_MAX_ITEM)
                return cc_error_set(ret_err, -EINVAL, "%s[%zu]: must be 1..%d characters", field, i, DNS_MAX_ITEM);
        for (size_t k = 0; k < n; k++) {
                unsigned char c = (unsigned char)s[k];
                if (c <= ' ' || c == 0x7f || c == '#' || c == ';')
                        return cc_error_set(ret_err, -EINVAL,
                                            "%s[%zu]: '%.64s' has whitespace, a control character or a comment",
                                            field, i, s);
        }
        return 0;
}

int rt_pod_etc_check_dns(const Runtime__V1__DNSConfig *dns, cc_error **ret_err)
{
        if (!dns)
                return 0;
        if (dns->n_servers > DNS_MAX_SERVERS)
                return cc_error_set(ret_err, -EINVAL, "dns_config.servers: %zu entries, at most %d",
                                    dns->n_servers, DNS_MAX_SERVERS);
        if (dns->n_searches > DNS_MAX_SEARCHES)
                return cc_error_set(ret_err, -EINVAL, "dns_config.searches: %zu entries, at most %d",
                                    dns->n_searches, DNS_MAX_SEARCHES);
        if (dns->n_options > DNS_MAX_OPTIONS)
                return cc_error_set(ret_err, -EINVAL, "dns_config.options: %zu entries, at most %d",
                                    dns->n_options, DNS_MAX_OPTIONS);
        int r;
        for (size_t i = 0; i < dns->n_servers; i++) {
                const char *s = dns->servers[i] ? dns->servers[i] : "";
                if ((r = check_word("dns_config.servers", i, s, ret_err)) < 0)
                        return r;
                if (!is_ip(s))
                        return cc_error_set(ret_err, -EINVAL, "dns_config.servers[%zu]: '%.64s' is not an IP address",
                                            i, s);
        }
        size_t line = 0;
        for (size_t i = 0; i < dns->n_searches; i++) {
                const char *s = dns->searches[i] ? dns->searches[i] : "";
                if ((r = check_word("dns_config.searches", i, s, ret_err)) < 0)
                        return r;
                for (const char *p = s; *p; p++)
                        if (!is_alnum(*p) && *p != '-' && *p != '.' && *p != '_')
                                return cc_error_set(ret_err, -EINVAL,
                                                    "dns_config.searches[%zu]: '%.64s' is not a domain name", i, s);
                line += strlen(s) + 1;
        }
        if (line > DNS_MAX_SEARCH_LINE)
                return cc_error_set(ret_err, -EINVAL, "dns_config.searches: %zu characters, at most %d", line,
                                    DNS_MAX_SEARCH_LINE);
        for (size_t i = 0; i < dns->n_options; i++)
                if ((r = check_word("dns_config.options", i, dns->options[i] ? dns->options[i] : "", ret_err)) < 0)
                        return r;
        return 0;
}

static char *oom(cc_error **ret_err)
{
        cc_error_set(ret_err, -ENOMEM, "out of memory");
        return NULL;
}

char *rt_pod_etc_hosts(const char *hostname, const char *pod_ip, cc_error **ret_err)
{
        if (check_hostname(hostname ? hostname : "", ret_err) < 0)
                return NULL;
        if (pod_ip && *pod_ip && !is_ip(pod_ip)) {
                cc_error_set(ret_err, -EINVAL, "pod IP: '%.64s' is not an IP address", pod_ip);
                return NULL;
        }
        char *s = NULL;
        int n = asprintf(&s,
                         "# Kubernetes-managed hosts file (written by cocoon).\n"
                         "127.0.0.1\tlocalhost\n"
                         "::1\tlocalhost ip6-localhost ip6-loopback\n"
                         "fe00::0\tip6-localnet\n"
                         "ff00::0\tip6-mcastprefix\n"
                         "ff02::1\tip6-allnodes\n"
                         "ff02::2\tip6-allrouters\n"
                         "%s%s%s%s",
                         pod_ip && *pod_ip ? pod_ip : "", pod_ip && *pod_ip ? "\t" : "",
                         pod_ip && *pod_ip ? hostname : "", pod_ip && *pod_ip ? "\n" : "");
        return n < 0 ? oom(ret_err) : s;
}

static bool dns_empty(const Runtime__V1__DNSConfig *dns)
{
        return !dns || (dns->n_servers == 0 && dns->n_searches == 0 && dns->n_options == 0);
}

char *rt_pod_etc_resolv(const Runtime__V1__DNSConfig *dns, cc_error **ret_err)
{
        if (rt_pod_etc_check_dns(dns, ret_err) < 0)
                return NULL;
        if (dns_empty(dns)) {
                cc_error_set(ret_err, -ENOENT, "dns_config: empty");
                return NULL;
        }
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        if (!f)
                return oom(ret_err);
        if (dns->n_searches) {
                fputs("search", f);
                for (size_t i = 0; i < dns->n_searches; i++)
                        fprintf(f, " %s", dns->searches[i]);
                fputc('\n', f);
        }
        for (size_t i = 0; i < dns->n_servers; i++)
                fprintf(f, "nameserver %s\n", dns->servers[i]);
        if (dns->n_options) {
                fputs("options", f);
                for (size_t i = 0; i < dns->n_options; i++)
                        fprintf(f, " %s", dns->options[i]);
                fputc('\n', f);
        }
        if (fclose(f) != 0) {
                free(buf);
                return oom(ret_err);
        }
        return buf;
}

/* The host's file, or "" if it does not exist. */
static int read_host_file(const char *path, char **ret, size_t *ret_len, cc_error **ret_err)
{
        cc_error *err = NULL;
        int r = cc_read_file(path, HOST_FILE_MAX, ret, ret_len, &err);
        if (r == -ENOENT) {
                cc_error_free(err);
                *ret = strdup("");
                *ret_len = 0;
                return *ret ? 0 : cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        if (r < 0)
                return cc_error_propagate(ret_err, err);
        return 0;
}

typedef struct etc_file {
        const char *name;
        char *data;
        size_t len;
} etc_file;

int rt_pod_etc_write_from(const char *dir, const Runtime__V1__PodSandboxConfig *cfg, const char *pod_ip,
                          bool host_network, const char *host_hosts, const char *host_resolv,
                          cc_error **ret_err)
{
        if (!dir || !*dir || !cfg)
                return cc_error_set(ret_err, -EINVAL, "pod etc: no directory or config");
        char hostname[RT_POD_HOSTNAME_MAX + 1];
        int r = rt_pod_etc_hostname(cfg, hostname, ret_err);
        if (r < 0)
                return r;
        if ((r = rt_pod_etc_check_dns(cfg->dns_config, ret_err)) < 0)
                return r;

        etc_file files[3] = { { "hostname", NULL, 0 }, { "hosts", NULL, 0 }, { "resolv.conf", NULL, 0 } };
        r = 0;
        if (asprintf(&files[0].data, "%s\n", hostname) < 0) {
                files[0].data = NULL;
                r = cc_error_set(ret_err, -ENOMEM, "out of memory");
        } else
                files[0].len = strlen(files[0].data);
        if (r == 0) {
                if (host_network)
                        r = read_host_file(host_hosts, &files[1].data, &files[1].len, ret_err);
                else if ((files[1].data = rt_pod_etc_hosts(hostname, pod_ip, ret_err)))
                        files[1].len = strlen(files[1].data);
                else
                        r = -EINVAL;
        }
        if (r == 0) {
                if (dns_empty(cfg->dns_config))
                        r = read_host_file(host_resolv, &files[2].data, &files[2].len, ret_err);
                else if ((files[2].data = rt_pod_etc_resolv(cfg->dns_config, ret_err)))
                        files[2].len = strlen(files[2].data);
                else
                        r = -EINVAL;
        }

        /* Everything is known to be valid: write; on failure remove what this
         * call created. */
        bool created[3] = { false, false, false };
        for (size_t i = 0; r == 0 && i < CC_ARRAY_SIZE(files); i++) {
                _cleanup_free_ char *path = NULL;
                if (asprintf(&path, "%s/%s", dir, files[i].name) < 0) {
                        path = NULL;
                        r = cc_error_set(ret_err, -ENOMEM, "out of memory");
                        break;
                }
                created[i] = access(path, F_OK) < 0;
                r = cc_write_file_atomic(path, files[i].data, files[i].len, 0644, ret_err);
                if (r < 0) {
                        created[i] = false;
                        cc_error_prefix(ret_err, "pod etc");
                }
        }
        for (size_t i = 0; r < 0 && i < CC_ARRAY_SIZE(files); i++) {
                if (!created[i])
                        continue;
                _cleanup_free_ char *path = NULL;
                if (asprintf(&path, "%s/%s", dir, files[i].name) >= 0)
                        unlink(path);
                else
                        path = NULL;
        }
        for (size_t i = 0; i < CC_ARRAY_SIZE(files); i++)
                free(files[i].data);
        if (r == 0)
                log_debug("pod etc: wrote %s/{hostname,hosts,resolv.conf} hostname=%s ip=%s", dir, hostname,
                          pod_ip && *pod_ip ? pod_ip : "-");
        return r;
}

int rt_pod_etc_write(const char *dir, const Runtime__V1__PodSandboxConfig *cfg, const char *pod_ip,
                     bool host_network, cc_error **ret_err)
{
        return rt_pod_etc_write_from(dir, cfg, pod_ip, host_network, RT_POD_ETC_HOST_HOSTS,
                                     RT_POD_ETC_HOST_RESOLV, ret_err);
}
