/* SPDX-License-Identifier: Apache-2.0 */
#include "common/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"

static char *vformat(const char *fmt, va_list ap)
{
        char *s = NULL;
        if (vasprintf(&s, fmt, ap) < 0)
                return NULL;
        return s;
}

int cc_error_setv(cc_error **ret_err, int code, const char *fmt, va_list ap)
{
        if (code >= 0)
                code = -EIO;
        if (!ret_err)
                return code;
        cc_error *e = calloc(1, sizeof(*e));
        if (!e)
                abort(); /* nothing sensible left to report with */
        e->code = code;
        e->msg = vformat(fmt, ap);
        if (!e->msg)
                e->msg = strdup(strerror(-code));
        if (!e->msg)
                abort();
        if (*ret_err) /* never leak an earlier error: keep the newest */
                cc_error_free(*ret_err);
        *ret_err = e;
        return code;
}

int cc_error_set(cc_error **ret_err, int code, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int r = cc_error_setv(ret_err, code, fmt, ap);
        va_end(ap);
        return r;
}

int cc_error_errno(cc_error **ret_err, const char *fmt, ...)
{
        int code = errno > 0 ? -errno : -EIO;
        _cleanup_free_ char *prefix = NULL;
        va_list ap;
        va_start(ap, fmt);
        prefix = vformat(fmt, ap);
        va_end(ap);
        return cc_error_set(ret_err, code, "%s: %s", prefix ? prefix : "error", strerror(-code));
}

int cc_error_prefix(cc_error **err, const char *fmt, ...)
{
        if (!err || !*err)
                return -EIO;
        va_list ap;
        va_start(ap, fmt);
        _cleanup_free_ char *prefix = vformat(fmt, ap);
        va_end(ap);
        char *joined = NULL;
        if (prefix && asprintf(&joined, "%s: %s", prefix, (*err)->msg) >= 0) {
                free((*err)->msg);
                (*err)->msg = joined;
        }
        return (*err)->code;
}

int cc_error_propagate(cc_error **ret_err, cc_error *src)
{
        if (!src)
                return -EIO;
        int code = src->code;
        if (ret_err) {
                if (*ret_err)
                        cc_error_free(*ret_err);
                *ret_err = src;
        } else {
                cc_error_free(src);
        }
        return code;
}

void cc_error_free(cc_error *err)
{
        if (!err)
                return;
        free(err->msg);
        free(err);
}
