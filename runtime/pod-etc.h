/* SPDX-License-Identifier: Apache-2.0 */
/* A pod's /etc files: hostname, hosts and resolv.conf, written into a
 * directory the pod shares with its containers (bind-mounted over each
 * container's /etc/hostname, /etc/hosts, /etc/resolv.conf).
 *
 * As containerd 1.6's CRI plugin and the kubelet do it:
 *  - hostname: PodSandboxConfig.hostname; empty (the kubelet leaves it empty
 *    for host-network pods, crictl often does): the host's hostname.
 *  - hosts: host network: a copy of the host's /etc/hosts. Otherwise the
 *    kubelet's managed file: localhost lines (IPv4 and IPv6), the ip6-*
 *    names and, when the pod IP is known, "<ip>\t<hostname>".
 *  - resolv.conf: from DNSConfig (search, nameserver and options lines);
 *    an absent or empty DNSConfig: a copy of the host's /etc/resolv.conf.
 *
 * Everything from the request is validated before anything is written
 * (-EINVAL naming the field); each file is replaced atomically (readers see
 * the old or the new file). Nothing the call created is left on failure. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"
#include "api.pb-c.h"

#define RT_POD_HOSTNAME_MAX 63
#define RT_POD_ETC_HOST_HOSTS "/etc/hosts"
#define RT_POD_ETC_HOST_RESOLV "/etc/resolv.conf"

/* The pod's hostname (see above) into buf. -EINVAL if it is not 1..63 of
 * [A-Za-z0-9.-] starting and ending with a letter or digit. */
int rt_pod_etc_hostname(const Runtime__V1__PodSandboxConfig *cfg, char buf[RT_POD_HOSTNAME_MAX + 1],
                        cc_error **ret_err);

/* Checks DNSConfig: servers are IPv4/IPv6 literals (an IPv6 zone "%eth0" is
 * allowed), searches are domain names, options have no whitespace or control
 * characters; bounded counts and lengths. NULL is valid. */
int rt_pod_etc_check_dns(const Runtime__V1__DNSConfig *dns, cc_error **ret_err);

/* The file contents, exposed for the orchestrator (the guest agent takes the
 * resolv.conf lines) and for tests. Return malloc'd text or NULL (ret_err). */
char *rt_pod_etc_hosts(const char *hostname, const char *pod_ip, cc_error **ret_err);
/* NULL if dns is absent or empty (then the host's file is used). */
char *rt_pod_etc_resolv(const Runtime__V1__DNSConfig *dns, cc_error **ret_err);

/* Writes dir/hostname, dir/hosts and dir/resolv.conf (mode 0644). dir must
 * exist. pod_ip may be NULL or "". */
int rt_pod_etc_write(const char *dir, const Runtime__V1__PodSandboxConfig *cfg, const char *pod_ip,
                     bool host_network, cc_error **ret_err);
/* Same, with the host files to copy given explicitly (tests). */
int rt_pod_etc_write_from(const char *dir, const Runtime__V1__PodSandboxConfig *cfg, const char *pod_ip,
                          bool host_network, const char *host_hosts, const char *host_resolv,
                          cc_error **ret_err);
