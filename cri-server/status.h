/* SPDX-License-Identifier: Apache-2.0 */
/* The one place where errors become gRPC status codes. */
#pragma once

#include "common/error.h"

/* gRPC status codes (values fixed by the gRPC spec). */
enum {
        CRI_OK = 0,
        CRI_CANCELLED = 1,
        CRI_UNKNOWN = 2,
        CRI_INVALID_ARGUMENT = 3,
        CRI_DEADLINE_EXCEEDED = 4,
        CRI_NOT_FOUND = 5,
        CRI_ALREADY_EXISTS = 6,
        CRI_PERMISSION_DENIED = 7,
        CRI_RESOURCE_EXHAUSTED = 8,
        CRI_FAILED_PRECONDITION = 9,
        CRI_ABORTED = 10,
        CRI_OUT_OF_RANGE = 11,
        CRI_UNIMPLEMENTED = 12,
        CRI_INTERNAL = 13,
        CRI_UNAVAILABLE = 14,
        CRI_DATA_LOSS = 15,
        CRI_UNAUTHENTICATED = 16,
};

/* negative errno → gRPC code. */
int cri_status_from_errno(int negative_errno);
/* An error's explicit grpc code if set, else derived from its errno. */
int cri_status_from_error(const cc_error *err);
/* "NOT_FOUND" etc.; "UNKNOWN" for out-of-range values. */
const char *cri_status_name(int code);
