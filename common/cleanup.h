/* SPDX-License-Identifier: Apache-2.0 */
/* Scope-bound cleanup: one trivial destructor per type, used through
 * __attribute__((cleanup)). Ownership leaves a scope with TAKE_PTR/TAKE_FD. */
#pragma once

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <dirent.h>

#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void cc_freep(void *p) { free(*(void **)p); }
static inline void cc_closep(int *fd)
{
        if (*fd >= 0) {
                int saved = errno;
                close(*fd);
                errno = saved;
        }
}
static inline void cc_fclosep(FILE **f) { if (*f) fclose(*f); }
static inline void cc_closedirp(DIR **d) { if (*d) closedir(*d); }
/* NULL-terminated array of strings. */
static inline void cc_strv_free(char **v)
{
        if (!v) return;
        for (char **i = v; *i; i++) free(*i);
        free(v);
}
static inline void cc_strv_freep(char ***v) { cc_strv_free(*v); }

#define _cleanup_free_ _cleanup_(cc_freep)
#define _cleanup_close_ _cleanup_(cc_closep)
#define _cleanup_fclose_ _cleanup_(cc_fclosep)
#define _cleanup_closedir_ _cleanup_(cc_closedirp)
#define _cleanup_strv_free_ _cleanup_(cc_strv_freep)

#define TAKE_PTR(p) ({ __typeof__(p) _tp = (p); (p) = NULL; _tp; })
#define TAKE_FD(fd) ({ int _tf = (fd); (fd) = -1; _tf; })

#define CC_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define CC_MIN(a, b) ((a) < (b) ? (a) : (b))
#define CC_MAX(a, b) ((a) > (b) ? (a) : (b))
