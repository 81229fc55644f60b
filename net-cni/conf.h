/* SPDX-License-Identifier: Apache-2.0 */
/* CNI network configuration: the first valid *.conflist, *.conf or *.json
 * file of a directory, in lexical (byte-wise) order of file name, as
 * containerd and CRI-O pick it. A single-plugin .conf is wrapped into a list.
 * Files that are not valid are skipped; the reason is kept for Status. */
#pragma once

#include <json-c/json.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"

typedef struct cni_plugin_conf {
        char *type;           /* plugin binary name, a plain file name */
        char **capabilities;  /* enabled capabilities, NULL-terminated, never NULL */
        json_object *conf;    /* the plugin's JSON object (borrowed from the list's raw) */
} cni_plugin_conf;

typedef struct cni_skipped {
        char *file;   /* file name inside the directory */
        char *reason;
} cni_skipped;

typedef struct cni_netconf {
        int refs;
        char *path;        /* the file it came from */
        char *name;
        char *cni_version;
        bool disable_check;
        cni_plugin_conf *plugins;
        size_t n_plugins;
        json_object *raw;  /* the conflist (a wrapped .conf is a conflist too) */
        cni_skipped *skipped; /* files before it that were skipped */
        size_t n_skipped;
} cni_netconf;

/* The CNI spec versions whose results we parse. */
bool cni_version_supported(const char *v);
/* Compares "a.b.c" versions: <0, 0, >0. Unparseable sorts lowest. */
int cni_version_compare(const char *a, const char *b);

/* Parses one configuration document. `conflist` false: a single plugin
 * configuration (.conf), wrapped into a list (a .conf document that has a
 * "plugins" array is taken as a list). `what` names it in errors. */
cni_netconf *cni_netconf_parse(const char *buf, size_t len, bool conflist, const char *what,
                               cc_error **ret_err);
/* Builds a list from a conflist JSON object (takes a reference of its own). */
cni_netconf *cni_netconf_from_json(json_object *list, const char *what, cc_error **ret_err);
/* The first valid configuration in dir. None: -ENOENT "no network config
 * found in DIR" followed by the reasons files were skipped. */
int cni_conf_load_dir(const char *dir, cni_netconf **ret, cc_error **ret_err);

cni_netconf *cni_netconf_ref(cni_netconf *n);
void cni_netconf_unref(cni_netconf *n);
static inline void cni_netconf_unrefp(cni_netconf **n) { cni_netconf_unref(*n); }
#define _cleanup_netconf_ __attribute__((cleanup(cni_netconf_unrefp)))
/* True if the plugin advertises capability cap. */
bool cni_plugin_has_capability(const cni_plugin_conf *p, const char *cap);

/* A cached loader for the daemon: each get re-reads the directory only when a
 * cheap fingerprint (the directory's and each candidate's inode, size and
 * mtime) changed. Thread-safe. */
typedef struct cni_conf_loader cni_conf_loader;
cni_conf_loader *cni_conf_loader_new(const char *dir);
void cni_conf_loader_free(cni_conf_loader *l);
/* A new reference to the current network (unref it), or the load error. */
int cni_conf_loader_get(cni_conf_loader *l, cni_netconf **ret, cc_error **ret_err);
