/* SPDX-License-Identifier: Apache-2.0 */
/* A minimal unary gRPC client on the gRPC core C API, for cocoonctl and the
 * benchmarks. Thread-safe: one channel may be used from many threads. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

typedef struct cri_grpc_channel cri_grpc_channel;

/* target: "unix:///run/cocoon/cocoon.sock" (or any gRPC target). */
int cri_grpc_channel_open(const char *target, cri_grpc_channel **ret, cc_error **ret_err);
void cri_grpc_channel_close(cri_grpc_channel *ch);

/* One unary call. On transport success returns 0 and sets *ret_code (gRPC
 * status); *ret_resp (malloc'd) only when the code is 0, *ret_msg (malloc'd,
 * may be NULL) otherwise. */
int cri_grpc_call(cri_grpc_channel *ch, const char *method, const uint8_t *req, size_t req_len,
                  int timeout_ms, uint8_t **ret_resp, size_t *ret_len, int *ret_code,
                  char **ret_msg, cc_error **ret_err);

void cri_grpc_client_init(void);
void cri_grpc_client_shutdown(void);
