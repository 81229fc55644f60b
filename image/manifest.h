/* SPDX-License-Identifier: Apache-2.0 */
/* OCI / Docker v2 manifests, indexes and image configs: bounded, type-checked
 * parsing with json-c; host platform selection; layer media types; chain ids.
 * Docker schema1 manifests are rejected. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#define IMAGE_MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define IMAGE_MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define IMAGE_MT_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define IMAGE_MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define IMAGE_MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define IMAGE_MT_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"
#define IMAGE_MT_DOCKER_SCHEMA1 "application/vnd.docker.distribution.manifest.v1+json"
#define IMAGE_MT_DOCKER_SCHEMA1_SIGNED "application/vnd.docker.distribution.manifest.v1+prettyjws"
/* Value for an Accept: header when fetching a manifest by tag. */
#define IMAGE_MANIFEST_ACCEPT                                                              \
        IMAGE_MT_OCI_INDEX ", " IMAGE_MT_DOCKER_LIST ", " IMAGE_MT_OCI_MANIFEST ", "       \
                IMAGE_MT_DOCKER_MANIFEST

#define IMAGE_MANIFEST_MAX_SIZE (4u << 20) /* index or manifest document */
#define IMAGE_CONFIG_MAX_SIZE (8u << 20)
#define IMAGE_MAX_LAYERS 1024
#define IMAGE_MAX_MANIFESTS 1024
#define IMAGE_BLOB_SIZE_MAX (INT64_C(1) << 40) /* sanity bound for descriptor sizes */

typedef enum image_doc_kind {
        IMAGE_DOC_INDEX,    /* OCI index or Docker manifest list */
        IMAGE_DOC_MANIFEST, /* OCI manifest or Docker schema2 manifest */
} image_doc_kind;

typedef enum image_compression {
        IMAGE_COMPRESSION_NONE,
        IMAGE_COMPRESSION_GZIP,
        IMAGE_COMPRESSION_ZSTD,
} image_compression;
const char *image_compression_to_string(image_compression c);

typedef struct image_platform {
        char *architecture; /* normalised: amd64, arm64, arm, 386, ... */
        char *os;
        char *variant;      /* normalised: "" → NULL; arm64 v8 → NULL; arm → "v7" default */
        char *os_version;
} image_platform;

typedef struct image_descriptor {
        char *media_type;
        char *digest; /* validated sha256:<64 lowercase hex> */
        int64_t size; /* 0 <= size <= IMAGE_BLOB_SIZE_MAX */
        image_platform *platform; /* NULL if absent */
        char **urls;              /* NULL or strv (foreign layers) */
} image_descriptor;

typedef struct image_index {
        char *media_type; /* IMAGE_MT_OCI_INDEX or IMAGE_MT_DOCKER_LIST */
        image_descriptor *manifests;
        size_t n_manifests;
} image_index;

typedef struct image_manifest {
        char *media_type; /* IMAGE_MT_OCI_MANIFEST or IMAGE_MT_DOCKER_MANIFEST */
        image_descriptor config;
        image_descriptor *layers;
        size_t n_layers;
} image_manifest;

typedef struct image_kv {
        char *key;
        char *value;
} image_kv;

typedef struct image_config {
        image_platform platform; /* architecture + os required */
        char *user;
        char **entrypoint; /* NULL if unset */
        char **cmd;
        char **env;
        char *working_dir;
        char **exposed_ports; /* "80/tcp" ... */
        char **volumes;
        image_kv *labels;
        size_t n_labels;
        char *stop_signal;
        char **diff_ids; /* NULL-terminated, each a validated digest */
        size_t n_diff_ids;
} image_config;

/* Which kind a fetched document is, from its mediaType field, else the HTTP
 * Content-Type (may be NULL), else its shape. Schema1 and anything else is an
 * error (-EPROTONOSUPPORT for schema1, -EMEDIUMTYPE for unknown). */
int image_doc_detect(const char *buf, size_t len, const char *content_type,
                     image_doc_kind *ret_kind, cc_error **ret_err);

int image_index_parse(const char *buf, size_t len, image_index **ret, cc_error **ret_err);
int image_manifest_parse(const char *buf, size_t len, image_manifest **ret,
                         cc_error **ret_err);
int image_config_parse(const char *buf, size_t len, image_config **ret, cc_error **ret_err);
void image_index_free(image_index *idx);
void image_manifest_free(image_manifest *m);
void image_config_free(image_config *c);
void image_platform_free(image_platform *p);
static inline void image_index_freep(image_index **p) { image_index_free(*p); }
static inline void image_manifest_freep(image_manifest **p) { image_manifest_free(*p); }
static inline void image_config_freep(image_config **p) { image_config_free(*p); }
static inline void image_platform_freep(image_platform **p) { image_platform_free(*p); }
#define _cleanup_image_index_ __attribute__((cleanup(image_index_freep)))
#define _cleanup_image_manifest_ __attribute__((cleanup(image_manifest_freep)))
#define _cleanup_image_config_ __attribute__((cleanup(image_config_freep)))
#define _cleanup_image_platform_ __attribute__((cleanup(image_platform_freep)))

/* The platform this process runs on (linux + uname machine, normalised). */
int image_platform_host(image_platform **ret, cc_error **ret_err);
/* Parses "os/arch[/variant]". */
int image_platform_parse(const char *s, image_platform **ret, cc_error **ret_err);
/* Normalises in place (x86_64 → amd64, aarch64 → arm64, armhf → arm/v7, ...). */
int image_platform_normalize(image_platform *p);
/* Match score of `have` for host `want`: < 0 no match, larger is better. */
int image_platform_match(const image_platform *want, const image_platform *have);
/* Picks the best manifest of idx for `want` (NULL = host). -ENOENT with a list
 * of what the index offers if nothing matches. */
int image_index_select(const image_index *idx, const image_platform *want,
                       const image_descriptor **ret, cc_error **ret_err);

/* Checks that a manifest and its config agree (layer count = diff_id count)
 * and that the config matches the descriptor's media type. */
int image_manifest_check_config(const image_manifest *m, const image_config *c,
                                cc_error **ret_err);

/* Layer media types. Returns 0 and fills ret_compression/ret_foreign for a
 * known layer type; -EMEDIUMTYPE otherwise. Non-distributable / foreign
 * layers are layers too (ret_foreign = true). */
int image_layer_media_type(const char *media_type, image_compression *ret_compression,
                           bool *ret_foreign, cc_error **ret_err);

/* chainID(L0) = diffID(L0); chainID(Ln) = sha256(chainID(Ln-1) + " " + diffID(Ln)).
 * ret is a NULL-terminated strv of n entries. */
int image_chain_ids(char *const *diff_ids, size_t n, char ***ret, cc_error **ret_err);
