/* SPDX-License-Identifier: Apache-2.0 */
/* Image references, parsed and normalised like the docker/distribution
 * reference grammar (ParseNormalizedNamed + TagNameOnly) used by the kubelet,
 * crictl and containerd:
 *
 *   busybox                      → docker.io/library/busybox:latest
 *   user/app:1.0                 → docker.io/user/app:1.0
 *   index.docker.io/x/y          → docker.io/x/y:latest
 *   localhost:5000/a/b:tag       → localhost:5000/a/b:tag
 *   [::1]:5000/x@sha256:<64hex>  → [::1]:5000/x@sha256:<64hex>
 *
 * A reference with a digest and no tag gets no default tag; tag and digest
 * together are both kept (the digest is what gets pulled). */
#pragma once

#include "common/error.h"

#define IMAGE_REF_PATH_MAX 255 /* repository path, distribution's limit */
#define IMAGE_REF_HOST_MAX 253 /* registry host name (DNS's limit), without the port */
#define IMAGE_REF_TAG_MAX 128
#define IMAGE_REF_INPUT_MAX 1024 /* whole input string */

typedef struct image_ref {
        char *domain; /* "docker.io", "localhost:5000", "[::1]:5000", never NULL */
        char *path;   /* "library/busybox", never NULL */
        char *tag;    /* "latest" by default; NULL only if a digest was given alone */
        char *digest; /* "sha256:<64 lowercase hex>" or NULL */
} image_ref;

/* Parses and normalises s. -EINVAL with a message naming the problem. */
int image_ref_parse(const char *s, image_ref **ret, cc_error **ret_err);
void image_ref_free(image_ref *ref);
static inline void image_ref_freep(image_ref **r) { image_ref_free(*r); }
#define _cleanup_image_ref_ __attribute__((cleanup(image_ref_freep)))
image_ref *image_ref_dup(const image_ref *ref);

/* Normalised full string: domain/path[:tag][@digest]. NULL only on ENOMEM. */
char *image_ref_string(const image_ref *ref);
/* domain/path (the repository name, as in RepoTags without the tag). */
char *image_ref_name(const image_ref *ref);
/* domain/path:tag, or NULL when the reference has no tag. */
char *image_ref_tagged(const image_ref *ref);
/* domain/path@digest for a given digest (RepoDigests entries). */
char *image_ref_with_digest(const image_ref *ref, const char *digest);
/* Docker UI form: "busybox:latest", "user/app:1.0", "localhost:5000/a:b". */
char *image_ref_familiar(const image_ref *ref);
/* Host[:port] to talk the registry API to: "registry-1.docker.io" for docker.io. */
const char *image_ref_registry_host(const image_ref *ref);
/* What to ask /v2/<path>/manifests/<object> for: the digest if any, else the tag. */
const char *image_ref_object(const image_ref *ref);
