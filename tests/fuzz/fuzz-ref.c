/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for image references (from CRI requests: PullImage,
 * ImageStatus, RemoveImage, CreateContainer) and platform strings. A
 * malformed reference must give an -EINVAL error naming the problem, never a
 * crash; an accepted one must print back to a string that parses to itself.
 * Build and run: tests/fuzz/run.sh BUILDDIR [SECONDS] */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image/manifest.h"
#include "image/ref.h"
#include "image/util.h"

static char *must(char *s)
{
        if (!s)
                abort();
        return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *s = malloc(size + 1);
        if (!s)
                return 0;
        memcpy(s, data, size);
        s[size] = 0;

        cc_error *err = NULL;
        image_ref *ref = NULL;
        int r = image_ref_parse(s, &ref, &err);
        if (r < 0) {
                if (!err || err->code != -EINVAL || !err->msg || ref)
                        abort();
                cc_error_free(err);
        } else {
                if (err || !ref || !ref->domain || !ref->path || (!ref->tag && !ref->digest))
                        abort();
                if (ref->digest && !image_digest_valid(ref->digest))
                        abort();
                if (strlen(ref->path) > IMAGE_REF_PATH_MAX)
                        abort();
                char *full = must(image_ref_string(ref));
                char *name = must(image_ref_name(ref));
                char *fam = must(image_ref_familiar(ref));
                char *tagged = image_ref_tagged(ref);
                if (!tagged != !ref->tag)
                        abort();
                if (!image_ref_registry_host(ref) || !image_ref_object(ref))
                        abort();
                /* Normalised form and familiar form both parse back to it. */
                image_ref *again = NULL;
                if (image_ref_parse(full, &again, NULL) < 0)
                        abort();
                char *full2 = must(image_ref_string(again));
                if (strcmp(full, full2) != 0)
                        abort();
                image_ref *fref = NULL;
                if (image_ref_parse(fam, &fref, NULL) < 0)
                        abort();
                char *full3 = must(image_ref_string(fref));
                if (strcmp(full, full3) != 0)
                        abort();
                image_ref *dup = image_ref_dup(ref);
                if (!dup)
                        abort();
                char *with = must(image_ref_with_digest(dup, "sha256:0123456789abcdef0123456789abcdef"
                                                             "0123456789abcdef0123456789abcdef"));
                image_ref *wref = NULL;
                if (image_ref_parse(with, &wref, NULL) < 0)
                        abort();
                free(with);
                image_ref_free(wref);
                image_ref_free(dup);
                free(full3);
                image_ref_free(fref);
                free(full2);
                image_ref_free(again);
                free(tagged);
                free(fam);
                free(name);
                free(full);
                image_ref_free(ref);
        }

        image_platform *p = NULL;
        err = NULL;
        r = image_platform_parse(s, &p, &err);
        if ((r < 0) != (err != NULL))
                abort();
        cc_error_free(err);
        image_platform_free(p);
        free(s);
        return 0;
}
