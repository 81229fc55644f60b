/* SPDX-License-Identifier: Apache-2.0 */
/* The streaming server inside cocoond: started from [streaming] with the
 * runtime's backend (runtime/stream.h), and the helpers Exec/Attach/
 * PortForward use to mint their URLs. */
#pragma once

#include <stddef.h>

#include "common/error.h"
#include "cri-server/daemon.h"
#include "cri-server/streaming/server.h"

/* Starts the server on cfg->streaming.address:port and stores it in
 * d->streaming. d->rt must be set. */
int cocoon_streaming_init(cocoon_daemon *d, cc_error **ret_err);
/* Stops it (cancels every session, joins its threads). Idempotent. */
void cocoon_streaming_fini(cocoon_daemon *d);

/* The streams an Exec/Attach asks for, as the kubelet validates them: not
 * tty together with stderr, and at least one stream. -EINVAL otherwise. */
int cri_stream_check_opts(const streaming_opts *o, cc_error **ret_err);
/* Validates that the container exists and runs; *ret_id and *ret_pod: its full
 * id and pod (malloc'd). */
int cri_stream_container(cocoon_daemon *d, const char *container_id, char **ret_id,
                         char **ret_pod, cc_error **ret_err);
/* Registers a token (payload naming container/pod/argv) and returns the URL
 * (malloc'd). */
char *cri_stream_url(cocoon_daemon *d, streaming_kind kind, const streaming_opts *opts,
                     const char *container_id, const char *sandbox_id, char *const *argv,
                     size_t argc, cc_error **ret_err);
