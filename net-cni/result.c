/* SPDX-License-Identifier: Apache-2.0 */
#include "net-cni/result.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/cleanup.h"
#include "common/json.h"

#define RESULT_MAX_DEPTH 32
#define RESULT_MAX_ITEMS 1024

void cni_result_free(cni_result *r)
{
        if (!r)
                return;
        free(r->cni_version);
        for (size_t i = 0; i < r->n_interfaces; i++) {
                free(r->interfaces[i].name);
                free(r->interfaces[i].mac);
                free(r->interfaces[i].sandbox);
        }
        free(r->interfaces);
        for (size_t i = 0; i < r->n_ips; i++) {
                free(r->ips[i].address);
                free(r->ips[i].gateway);
        }
        free(r->ips);
        for (size_t i = 0; i < r->n_routes; i++) {
                free(r->routes[i].dst);
                free(r->routes[i].gw);
        }
        free(r->routes);
        cc_strv_free(r->dns.nameservers);
        free(r->dns.domain);
        cc_strv_free(r->dns.search);
        cc_strv_free(r->dns.options);
        if (r->raw)
                json_object_put(r->raw);
        free(r);
}

/* Address family of a plain IP literal, 0 if it is none. */
static int ip_family(const char *s)
{
        unsigned char buf[16];
        if (inet_pton(AF_INET, s, buf) == 1)
                return AF_INET;
        if (inet_pton(AF_INET6, s, buf) == 1)
                return AF_INET6;
        return 0;
}

/* Address family of "IP/PREFIX", 0 if invalid. */
static int cidr_family(const char *s)
{
        const char *slash = strchr(s, '/');
        if (!slash || slash == s || (size_t)(slash - s) >= INET6_ADDRSTRLEN)
                return 0;
        char ip[INET6_ADDRSTRLEN];
        memcpy(ip, s, (size_t)(slash - s));
        ip[slash - s] = '\0';
        int fam = ip_family(ip);
        char *end;
        errno = 0;
        long p = strtol(slash + 1, &end, 10);
        if (!fam || errno || end == slash + 1 || *end || p < 0 || p > (fam == AF_INET ? 32 : 128))
                return 0;
        return fam;
}

static int opt_string(json_object *o, const char *key, const char *what, char **ret, cc_error **ret_err)
{
        json_object *v = NULL;
        if (json_object_object_get_ex(o, key, &v) && v && !json_object_is_type(v, json_type_string))
                return cc_error_set(ret_err, -EINVAL, "%s: \"%s\" is not a string", what, key);
        *ret = strdup(v ? json_object_get_string(v) : "");
        return *ret ? 0 : cc_error_set(ret_err, -ENOMEM, "out of memory");
}

static json_object *opt_array(json_object *o, const char *key, const char *what, size_t *ret_n, cc_error **ret_err)
{
        json_object *v = NULL;
        *ret_n = 0;
        if (!json_object_object_get_ex(o, key, &v) || !v)
                return NULL;
        if (!json_object_is_type(v, json_type_array)) {
                cc_error_set(ret_err, -EINVAL, "%s: \"%s\" is not an array", what, key);
                return NULL;
        }
        *ret_n = json_object_array_length(v);
        if (*ret_n > RESULT_MAX_ITEMS) {
                cc_error_set(ret_err, -EINVAL, "%s: \"%s\" has too many entries", what, key);
                return NULL;
        }
        return v;
}

static int string_array(json_object *o, const char *key, char ***ret, cc_error **ret_err)
{
        size_t n;
        cc_error *err = NULL;
        json_object *a = opt_array(o, key, "result dns", &n, &err);
        if (!a && err)
                return cc_error_propagate(ret_err, err);
        char **v = calloc(n + 1, sizeof(char *));
        if (!v)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                json_object *e = json_object_array_get_idx(a, i);
                if (!json_object_is_type(e, json_type_string)) {
                        cc_strv_free(v);
                        return cc_error_set(ret_err, -EINVAL, "result dns: %s[%zu] is not a string", key, i);
                }
                if (!(v[i] = strdup(json_object_get_string(e)))) {
                        cc_strv_free(v);
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
                }
        }
        *ret = v;
        return 0;
}

static int parse_interfaces(cni_result *r, json_object *o, cc_error **ret_err)
{
        size_t n;
        cc_error *err = NULL;
        json_object *a = opt_array(o, "interfaces", "result", &n, &err);
        if (err)
                return cc_error_propagate(ret_err, err);
        if (!a)
                return 0;
        r->interfaces = calloc(n ? n : 1, sizeof *r->interfaces);
        if (!r->interfaces)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                json_object *e = json_object_array_get_idx(a, i);
                char what[48];
                snprintf(what, sizeof what, "result interfaces[%zu]", i);
                if (!json_object_is_type(e, json_type_object))
                        return cc_error_set(ret_err, -EINVAL, "%s: not an object", what);
                cni_interface *it = &r->interfaces[i];
                r->n_interfaces = i + 1;
                int rr;
                if ((rr = opt_string(e, "name", what, &it->name, ret_err)) < 0 ||
                    (rr = opt_string(e, "mac", what, &it->mac, ret_err)) < 0 ||
                    (rr = opt_string(e, "sandbox", what, &it->sandbox, ret_err)) < 0)
                        return rr;
                if (!it->name[0])
                        return cc_error_set(ret_err, -EINVAL, "%s: no name", what);
                int64_t mtu = 0;
                if ((rr = cc_json_get_int64(e, "mtu", true, &mtu, ret_err)) < 0)
                        return rr;
                if (mtu < 0 || mtu > 65535)
                        return cc_error_set(ret_err, -EINVAL, "%s: invalid mtu %lld", what, (long long)mtu);
                it->mtu = (int)mtu;
        }
        return 0;
}

static int parse_ips(cni_result *r, json_object *o, cc_error **ret_err)
{
        size_t n;
        cc_error *err = NULL;
        json_object *a = opt_array(o, "ips", "result", &n, &err);
        if (err)
                return cc_error_propagate(ret_err, err);
        if (!a)
                return 0;
        r->ips = calloc(n ? n : 1, sizeof *r->ips);
        if (!r->ips)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                json_object *e = json_object_array_get_idx(a, i);
                char what[48];
                snprintf(what, sizeof what, "result ips[%zu]", i);
                if (!json_object_is_type(e, json_type_object))
                        return cc_error_set(ret_err, -EINVAL, "%s: not an object", what);
                cni_ip *ip = &r->ips[i];
                r->n_ips = i + 1;
                ip->interface = -1;
                int rr;
                if ((rr = opt_string(e, "address", what, &ip->address, ret_err)) < 0 ||
                    (rr = opt_string(e, "gateway", what, &ip->gateway, ret_err)) < 0)
                        return rr;
                if (!(ip->family = cidr_family(ip->address)))
                        return cc_error_set(ret_err, -EINVAL, "%s: invalid address '%s'", what, ip->address);
                if (ip->gateway[0] && ip_family(ip->gateway) != ip->family)
                        return cc_error_set(ret_err, -EINVAL, "%s: invalid gateway '%s'", what, ip->gateway);
                /* 0.3.x/0.4.0 carry "version": "4" or "6"; it must agree. */
                json_object *v = cc_json_get_typed(e, "version", json_type_string);
                if (v) {
                        const char *vs = json_object_get_string(v);
                        if (!((!strcmp(vs, "4") && ip->family == AF_INET) || (!strcmp(vs, "6") && ip->family == AF_INET6)))
                                return cc_error_set(ret_err, -EINVAL, "%s: version '%s' does not match '%s'",
                                                    what, vs, ip->address);
                }
                json_object *idx = NULL;
                if (json_object_object_get_ex(e, "interface", &idx) && idx) {
                        if (!json_object_is_type(idx, json_type_int))
                                return cc_error_set(ret_err, -EINVAL, "%s: \"interface\" is not an integer", what);
                        int64_t k = json_object_get_int64(idx);
                        if (k < 0 || (size_t)k >= r->n_interfaces)
                                return cc_error_set(ret_err, -EINVAL, "%s: interface index %lld out of range",
                                                    what, (long long)k);
                        ip->interface = (int)k;
                }
        }
        return 0;
}

static int parse_routes(cni_result *r, json_object *o, cc_error **ret_err)
{
        size_t n;
        cc_error *err = NULL;
        json_object *a = opt_array(o, "routes", "result", &n, &err);
        if (err)
                return cc_error_propagate(ret_err, err);
        if (!a)
                return 0;
        r->routes = calloc(n ? n : 1, sizeof *r->routes);
        if (!r->routes)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                json_object *e = json_object_array_get_idx(a, i);
                char what[48];
                snprintf(what, sizeof what, "result routes[%zu]", i);
                if (!json_object_is_type(e, json_type_object))
                        return cc_error_set(ret_err, -EINVAL, "%s: not an object", what);
                cni_route *rt = &r->routes[i];
                r->n_routes = i + 1;
                int rr;
                if ((rr = opt_string(e, "dst", what, &rt->dst, ret_err)) < 0 ||
                    (rr = opt_string(e, "gw", what, &rt->gw, ret_err)) < 0)
                        return rr;
                if (!(rt->family = cidr_family(rt->dst)))
                        return cc_error_set(ret_err, -EINVAL, "%s: invalid dst '%s'", what, rt->dst);
                if (rt->gw[0] && ip_family(rt->gw) != rt->family)
                        return cc_error_set(ret_err, -EINVAL, "%s: invalid gw '%s'", what, rt->gw);
        }
        return 0;
}

static int parse_dns(cni_result *r, json_object *o, cc_error **ret_err)
{
        json_object *d = NULL;
        int rr;
        if (json_object_object_get_ex(o, "dns", &d) && d && !json_object_is_type(d, json_type_object))
                return cc_error_set(ret_err, -EINVAL, "result: \"dns\" is not an object");
        _cleanup_json_ json_object *empty = NULL;
        if (!d) {
                /* Absent: empty but well-formed. */
                if (!(d = empty = json_object_new_object()))
                        return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        if ((rr = string_array(d, "nameservers", &r->dns.nameservers, ret_err)) < 0 ||
            (rr = string_array(d, "search", &r->dns.search, ret_err)) < 0 ||
            (rr = string_array(d, "options", &r->dns.options, ret_err)) < 0 ||
            (rr = opt_string(d, "domain", "result dns", &r->dns.domain, ret_err)) < 0)
                return rr;
        for (char **ns = r->dns.nameservers; *ns; ns++)
                if (!ip_family(*ns))
                        return cc_error_set(ret_err, -EINVAL, "result dns: invalid nameserver '%s'", *ns);
        return 0;
}

cni_result *cni_result_from_json(json_object *o, cc_error **ret_err)
{
        if (!json_object_is_type(o, json_type_object)) {
                cc_error_set(ret_err, -EINVAL, "result: not a JSON object");
                return NULL;
        }
        json_object *ver = cc_json_get_typed(o, "cniVersion", json_type_string);
        if (!ver) {
                cc_error_set(ret_err, -EINVAL, "result: no \"cniVersion\" string");
                return NULL;
        }
        const char *v = json_object_get_string(ver);
        if (strcmp(v, "0.3.0") && strcmp(v, "0.3.1") && strcmp(v, "0.4.0") && strcmp(v, "1.0.0")) {
                cc_error_set(ret_err, -EINVAL, "result: unsupported cniVersion '%s'", v);
                return NULL;
        }
        cni_result *r = calloc(1, sizeof *r);
        if (!r || !(r->cni_version = strdup(v))) {
                free(r);
                cc_error_set(ret_err, -ENOMEM, "out of memory");
                return NULL;
        }
        r->raw = json_object_get(o);
        if (parse_interfaces(r, o, ret_err) < 0 || parse_ips(r, o, ret_err) < 0 ||
            parse_routes(r, o, ret_err) < 0 || parse_dns(r, o, ret_err) < 0) {
                cni_result_free(r);
                return NULL;
        }
        return r;
}

cni_result *cni_result_parse(const char *buf, size_t len, cc_error **ret_err)
{
        _cleanup_json_ json_object *o = cc_json_parse(buf, len, CNI_RESULT_MAX_SIZE, RESULT_MAX_DEPTH,
                                                      "result", ret_err);
        if (!o)
                return NULL;
        return cni_result_from_json(o, ret_err);
}

const cni_ip *cni_result_first_ip(const cni_result *r, int family)
{
        for (size_t i = 0; i < r->n_ips; i++) {
                const cni_ip *ip = &r->ips[i];
                if (ip->family != family)
                        continue;
                if (ip->interface < 0 || r->interfaces[ip->interface].sandbox[0])
                        return ip;
        }
        return NULL;
}

/* Keeps printable ASCII only: plugin output ends up in logs and RPC replies. */
static void sanitize(char *s)
{
        for (; *s; s++)
                if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
                        *s = '?';
}

int cni_error_reply_parse(const char *buf, size_t len, unsigned *ret_code, char **ret_msg)
{
        _cleanup_json_ json_object *o = cc_json_parse(buf, len, CNI_RESULT_MAX_SIZE, RESULT_MAX_DEPTH,
                                                      "error", NULL);
        if (!o || !json_object_is_type(o, json_type_object))
                return -EINVAL;
        json_object *code = cc_json_get_typed(o, "code", json_type_int);
        json_object *msg = cc_json_get_typed(o, "msg", json_type_string);
        json_object *details = cc_json_get_typed(o, "details", json_type_string);
        if (!code && !msg)
                return -EINVAL;
        const char *m = msg ? json_object_get_string(msg) : "";
        const char *d = details ? json_object_get_string(details) : "";
        char *out = NULL;
        if (asprintf(&out, "%s%s%s", m[0] ? m : "(no message)", d[0] ? ": " : "", d) < 0)
                return -ENOMEM;
        if (strlen(out) > 4096)
                strcpy(out + 4093, "...");
        sanitize(out);
        int64_t c = code ? json_object_get_int64(code) : 0;
        *ret_code = c < 0 || c > UINT_MAX ? 0 : (unsigned)c;
        *ret_msg = out;
        return 0;
}
