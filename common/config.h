/* SPDX-License-Identifier: Apache-2.0 */
/* cocoond's configuration: embedded defaults overlaid by TOML files.
 *
 * The effective configuration is the embedded defaults, then the main file
 * (CC_CONFIG_DEFAULT_FILE), then each CC_CONFIG_DEFAULT_DROPIN_DIR/ *.toml in
 * lexical (byte-wise) order of file name. Later files win key by key; an
 * array value replaces the earlier array as a whole. Per-registry and
 * per-handler tables are merged by name: a later file changes only the keys
 * it sets. Unknown keys, wrong types and invalid values are errors that name
 * the key and its FILE:LINE:COLUMN.
 *
 * The schema lives in one descriptor table in config.c (dotted key, type,
 * field offset, default, range/validator, one-line doc); conf/cocoon.toml
 * documents every key and a unit test keeps the two in sync. To add a key:
 * add a field here, a row there, and a commented default in conf/cocoon.toml.
 *
 * Integers are int64_t and already range-checked (see conf/cocoon.toml for the
 * ranges), so callers may narrow them. Durations are whole seconds. Strings
 * are never NULL; string arrays are NULL-terminated and never NULL. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/error.h"
#include "common/log.h"

#define CC_CONFIG_DEFAULT_FILE "/etc/cocoon/cocoon.toml"
#define CC_CONFIG_DEFAULT_DROPIN_DIR "/etc/cocoon/cocoon.d"

typedef enum cc_config_accel {
        CC_CONFIG_ACCEL_AUTO,
        CC_CONFIG_ACCEL_KVM,
        CC_CONFIG_ACCEL_TCG,
} cc_config_accel;

typedef enum cc_config_mode {
        CC_CONFIG_MODE_VM,
        CC_CONFIG_MODE_HOST,
} cc_config_mode;

/* [image.registries."HOST[:PORT]"] */
typedef struct cc_config_registry {
        char *host;                /* the table name, "HOST[:PORT]" */
        char **mirrors;            /* http(s) URLs, tried in order before host */
        bool insecure_skip_verify; /* do not verify the TLS certificate */
        bool plain_http;           /* speak HTTP instead of HTTPS */
        char *ca_file;             /* PEM CA bundle trusted for this registry; "" = system CAs only */
} cc_config_registry;

/* [runtime.handlers.NAME] */
typedef struct cc_config_handler {
        char *name;          /* CRI runtime handler name */
        cc_config_mode mode; /* "vm" (default) or "host" */
} cc_config_handler;

typedef struct cc_config {
        struct {
                char *listen;          /* "unix:///abs/path" */
                char *socket_mode;     /* octal string, e.g. "0660" */
                mode_t socket_mode_bits; /* socket_mode parsed (derived) */
                char *socket_group;    /* "" = leave the group alone */
                int64_t workers;
                int64_t max_recv_message_size;
                int64_t max_send_message_size;
                int64_t shutdown_timeout;
                bool enable_v1alpha2;
        } server;
        struct {
                cc_log_level level;
        } log;
        struct {
                char *root;
                char *state;
        } paths;
        struct {
                int64_t max_concurrent_downloads;
                int64_t pull_timeout; /* 0 = none */
                int64_t max_manifest_size;
                char *default_registry;
                cc_config_registry *registries; /* in order of first appearance */
                size_t n_registries;
        } image;
        struct {
                char *default_handler; /* "" = the unnamed VM-mode default */
                bool allow_host_mode;
                char *host_agent;   /* cocoon-agent binary for host-mode pods */
                char *seccomp_dir;  /* holds default.json (RuntimeDefault) */
                cc_config_handler *handlers;
                size_t n_handlers;
        } runtime;
        struct {
                char *qemu;
                char *virtiofsd;
                char *kernel;
                char *initrd;
                cc_config_accel accel;
                char *machine;
                int64_t default_vcpus;
                int64_t default_memory_mib;
                int64_t max_vcpus;
                int64_t max_memory_mib;
                int64_t memory_overhead_mib;
                int64_t tcg_tb_size_mib;
                char *kernel_params; /* appended to the guest kernel command line */
                int64_t agent_timeout;
                bool console_log;
                int64_t pool_size;
                bool template_start; /* [vm] template */
        } vm;
        struct {
                char *conf_dir;
                char **bin_dirs;
                char *netns_dir;
                int64_t plugin_timeout;
                char *cache_dir;
        } cni;
        struct {
                char *address; /* IPv4 or IPv6 literal */
                int64_t port;  /* 0 = pick a free port */
                int64_t token_ttl;
                int64_t idle_timeout; /* 0 = none */
        } streaming;
} cc_config;

/* The embedded defaults. Never NULL (aborts on OOM). */
cc_config *cc_config_new_default(void);
/* Overlays one file onto cfg. On failure cfg is unchanged. A missing file
 * fails with code -ENOENT. Does not run the cross-key checks of
 * cc_config_validate(). */
int cc_config_load_file(cc_config *cfg, const char *path, cc_error **ret_err);
/* Cross-key checks (default_vcpus <= max_vcpus, default_handler names a
 * configured handler, ...). */
int cc_config_validate(const cc_config *cfg, cc_error **ret_err);
/* Defaults, then main_path (a missing file is fine unless must_exist; NULL
 * skips it), then dropin_dir/ *.toml in lexical order (a missing directory is
 * fine; NULL skips it; names starting with '.' are ignored), then
 * cc_config_validate(). *ret is set only on success. */
int cc_config_load(cc_config **ret, const char *main_path, const char *dropin_dir, bool must_exist,
                   cc_error **ret_err);
/* The effective configuration as TOML that loads back to the same values.
 * Never NULL (aborts on OOM); free() it. */
char *cc_config_dump(const cc_config *cfg);
void cc_config_free(cc_config *cfg);
static inline void cc_config_freep(cc_config **c) { cc_config_free(*c); }
#define _cleanup_config_ __attribute__((cleanup(cc_config_freep)))

/* Lookups in the dynamic tables; NULL if absent. */
const cc_config_registry *cc_config_find_registry(const cc_config *cfg, const char *host);
const cc_config_handler *cc_config_find_handler(const cc_config *cfg, const char *name);

const char *cc_config_accel_to_string(cc_config_accel a);
const char *cc_config_mode_to_string(cc_config_mode m);

/* The schema, for documentation and tests: the i-th static key ("server.listen")
 * or the i-th key of a dynamic table ("image.registries.*.mirrors"), with its
 * one-line doc. Returns false past the end. */
bool cc_config_schema_key(size_t i, const char **ret_key, const char **ret_doc);
