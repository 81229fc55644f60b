/* SPDX-License-Identifier: Apache-2.0 */
/* CNI plugin results (spec 0.3.0, 0.3.1, 0.4.0, 1.0.0) and error replies,
 * parsed into our own structs. Plugin output is hostile: bounded, and every
 * address is checked. */
#pragma once

#include <json-c/json.h>
#include <stddef.h>

#include "common/error.h"

#define CNI_RESULT_MAX_SIZE (1024 * 1024)

typedef struct cni_interface {
        char *name;
        char *mac;     /* "" if absent */
        char *sandbox; /* "" if absent: a host interface */
        int mtu;       /* 0 if absent (1.0.0+) */
} cni_interface;

typedef struct cni_ip {
        int family;      /* AF_INET or AF_INET6 */
        char *address;   /* CIDR, "10.1.2.3/24" */
        char *gateway;   /* "" if absent */
        int interface;   /* index into interfaces, -1 if absent */
} cni_ip;

typedef struct cni_route {
        int family;
        char *dst; /* CIDR */
        char *gw;  /* "" if absent */
} cni_route;

typedef struct cni_dns {
        char **nameservers; /* NULL-terminated, never NULL */
        char *domain;       /* "" if absent */
        char **search;
        char **options;
} cni_dns;

typedef struct cni_result {
        char *cni_version;
        cni_interface *interfaces;
        size_t n_interfaces;
        cni_ip *ips;
        size_t n_ips;
        cni_route *routes;
        size_t n_routes;
        cni_dns dns;
        json_object *raw; /* the result as the plugin returned it */
} cni_result;

/* Parses a result document (a plugin's stdout). */
cni_result *cni_result_parse(const char *buf, size_t len, cc_error **ret_err);
/* Parses a result object (takes a reference of its own). */
cni_result *cni_result_from_json(json_object *o, cc_error **ret_err);
void cni_result_free(cni_result *r);
static inline void cni_result_freep(cni_result **r) { cni_result_free(*r); }
#define _cleanup_result_ __attribute__((cleanup(cni_result_freep)))
/* The first IP of the given family assigned to a sandbox interface (or with no
 * interface index), NULL if none. */
const cni_ip *cni_result_first_ip(const cni_result *r, int family);

/* Formats a plugin error reply ({"code", "msg", "details"}) as "MSG: DETAILS"
 * into *ret_msg (free()) and the code into *ret_code. -EINVAL if buf is not an
 * error reply. */
int cni_error_reply_parse(const char *buf, size_t len, unsigned *ret_code, char **ret_msg);
