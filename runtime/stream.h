/* SPDX-License-Identifier: Apache-2.0 */
/* The streaming server's backend over the runtime (runtime/stream.c):
 * Exec (a new process through the agent), Attach (the container's output
 * pump + its init's stdin), PortForward (runtime/agent-portfwd.h).
 *
 * cri-server registers rt_stream_backend_ops with the rt_runtime as
 * backend_data, and passes an rt_stream_req (payload_free:
 * rt_stream_req_free) to streaming_token_new(). */
#pragma once

#include <stddef.h>

#include "common/error.h"
#include "cri-server/streaming/server.h"
#include "runtime/runtime.h"

typedef struct rt_stream_req {
        char *container_id;   /* exec / attach: the full id */
        char *sandbox_id;     /* port-forward; exec/attach: the container's pod */
        char **argv;          /* exec, NULL-terminated */
        size_t argc;
} rt_stream_req;

/* argv may be NULL (attach, port-forward). */
int rt_stream_req_new(const char *container_id, const char *sandbox_id, char *const *argv,
                      size_t argc, rt_stream_req **ret, cc_error **ret_err);
void rt_stream_req_free(void *req);

extern const streaming_backend_ops rt_stream_backend_ops;
