/* SPDX-License-Identifier: Apache-2.0 */
/* Errors with context.
 *
 * A fallible function returns int (>= 0 ok, negative errno on failure) or a
 * pointer (NULL on failure) and takes `cc_error **ret_err` as its last
 * argument; *ret_err is set if and only if the function fails. Callers add
 * context at module boundaries with cc_error_prefix(). */
#pragma once

#include <stdarg.h>

typedef struct cc_error {
        int code;  /* negative errno, e.g. -ENOENT */
        int grpc;  /* optional explicit gRPC status code, 0 = derive from code */
        char *msg; /* human readable, never NULL */
} cc_error;

/* Sets *ret_err (if ret_err != NULL) to a new error. Returns code (negative).
 * code must be negative; a non-negative code is turned into -EIO. */
int cc_error_set(cc_error **ret_err, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
int cc_error_setv(cc_error **ret_err, int code, const char *fmt, va_list ap);
/* Like cc_error_set with code = -errno (errno read at call time). */
int cc_error_errno(cc_error **ret_err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prepends "context: " to an existing error's message. Returns its code.
 * With err or *err NULL it does nothing and returns -EIO. */
int cc_error_prefix(cc_error **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Moves src into *ret_err (if ret_err) or frees it; returns src's code. */
int cc_error_propagate(cc_error **ret_err, cc_error *src);
void cc_error_free(cc_error *err);
static inline void cc_error_freep(cc_error **e) { cc_error_free(*e); }
#define _cleanup_error_ __attribute__((cleanup(cc_error_freep)))
