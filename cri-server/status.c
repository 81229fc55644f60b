/* SPDX-License-Identifier: Apache-2.0 */
#include "cri-server/status.h"

#include <errno.h>
#include <stddef.h>

int cri_status_from_errno(int e)
{
        switch (-e) {
        case 0:
                return CRI_OK;
        case ECANCELED:
                return CRI_CANCELLED;
        case EINVAL:
        case EBADMSG:
        case ENAMETOOLONG:
        case EDOM:
        case EILSEQ:
        case EPROTO:
        case EPROTONOSUPPORT:
        case EMEDIUMTYPE:
                return CRI_INVALID_ARGUMENT;
        case ETIMEDOUT:
        case ETIME:
                return CRI_DEADLINE_EXCEEDED;
        case ENOENT:
        case ESRCH:
        case ENXIO:
        case ENODEV:
                return CRI_NOT_FOUND;
        case EEXIST:
                return CRI_ALREADY_EXISTS;
        case EPERM:
        case EACCES:
        case EROFS:
                return CRI_PERMISSION_DENIED;
        case ENOMEM:
        case ENOSPC:
        case EFBIG:
        case E2BIG:
        case EMSGSIZE:
        case EDQUOT:
        case EMFILE:
        case ENFILE:
        case EOVERFLOW:
                return CRI_RESOURCE_EXHAUSTED;
        case EBUSY:
        case ENOTEMPTY:
        case ENOTDIR:
        case EISDIR:
        case ESTALE:
        case ENOTCONN:
                return CRI_FAILED_PRECONDITION;
        case EDEADLK:
                return CRI_ABORTED;
        case ERANGE:
                return CRI_OUT_OF_RANGE;
        case ENOSYS:
        case EOPNOTSUPP:
                return CRI_UNIMPLEMENTED;
        case EAGAIN:
        case ECONNREFUSED:
        case ECONNRESET:
        case ECONNABORTED:
        case EHOSTUNREACH:
        case ENETUNREACH:
        case ENETDOWN:
        case EPIPE:
        case ESHUTDOWN:
                return CRI_UNAVAILABLE;
        case EKEYREJECTED:
        case EKEYEXPIRED:
                return CRI_UNAUTHENTICATED;
        default:
                return CRI_INTERNAL;
        }
}

int cri_status_from_error(const cc_error *err)
{
        if (!err)
                return CRI_OK;
        if (err->grpc > 0 && err->grpc <= CRI_UNAUTHENTICATED)
                return err->grpc;
        int c = cri_status_from_errno(err->code);
        return c == CRI_OK ? CRI_UNKNOWN : c;
}

static const char *const names[] = {
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
        "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
        "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
        "UNAUTHENTICATED",
};

const char *cri_status_name(int code)
{
        if (code < 0 || (size_t)code >= sizeof(names) / sizeof(names[0]))
                return "UNKNOWN";
        return names[code];
}
