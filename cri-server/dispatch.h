/* SPDX-License-Identifier: Apache-2.0 */
/* One dispatch table routes every CRI method (runtime.v1, and the same
 * handlers under runtime.v1alpha2) to one handler. Handlers see decoded
 * protobuf-c messages and build their response from a per-call arena that is
 * released after the response has been packed. */
#pragma once

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>

#include "admin.pb-c.h"
#include "api.pb-c.h"
#include "common/error.h"
#include "cri-server/daemon.h"
#include "cri-server/grpc-server.h"

typedef struct cri_ctx {
        cocoon_daemon *daemon;
        const cri_call_info *call;
        const char *api_version; /* "v1" or "v1alpha2" */
        struct cri_arena *arena;
} cri_ctx;

typedef int (*cri_handler_fn)(cri_ctx *ctx, const ProtobufCMessage *req,
                              ProtobufCMessage **ret_resp, cc_error **ret_err);

typedef struct cri_method {
        const char *service; /* "RuntimeService" or "ImageService" */
        const char *name;    /* "Version" */
        const ProtobufCMessageDescriptor *req_desc;
        const ProtobufCMessageDescriptor *resp_desc;
        cri_handler_fn handler; /* NULL: answers UNIMPLEMENTED */
        bool streaming;         /* server-streaming: the handler sends with cri_stream_send
                                   and returns no response */
        bool quiet;             /* polled read-only RPC: log at debug */
} cri_method;

/* The table and its size (for tests and `cocoonctl`). */
extern const cri_method cri_methods[];
extern const size_t cri_n_methods;

/* Resolves a gRPC path such as "/runtime.v1.RuntimeService/Version".
 * *ret_api_version is "v1" or "v1alpha2". NULL when unknown. */
const cri_method *cri_method_lookup(const char *path, bool allow_v1alpha2,
                                    const char **ret_api_version);

/* The grpc-server dispatch callback; userdata is the cocoon_daemon. */
void cri_dispatch(void *userdata, const cri_call_info *info, const uint8_t *req, size_t req_len,
                  cri_reply *reply);

/* cri_grpc_server_opts.is_inline: the cheap, never-blocking methods. */
bool cri_dispatch_is_inline(void *userdata, const char *path);
/* cri_grpc_server_opts.is_streaming: server-streaming methods that have a handler. */
bool cri_dispatch_is_streaming(void *userdata, const char *path);

/* Per-call allocation: freed when the call ends. Never returns NULL (aborts
 * on OOM: there is no sane partial reply). */
void *cri_alloc(cri_ctx *ctx, size_t size);
char *cri_strdup(cri_ctx *ctx, const char *s);
char *cri_printf(cri_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A zeroed, initialised message of the given type. */
void *cri_msg_new(cri_ctx *ctx, const ProtobufCMessageDescriptor *desc);
#define CRI_NEW(ctx, lower) ((void *)cri_msg_new((ctx), &lower##__descriptor))
/* Sets key/value map entries (map<string,string>) from pairs. */
Runtime__V1__StatusResponse__InfoEntry *cri_map_entry(cri_ctx *ctx, const char *k, const char *v);

/* Server-streaming handlers: each message is sent (and waited for, see
 * cri_grpc_stream_send) with cri_stream_send: 0, -ECANCELED (the call is
 * over), -ENOMEM. A long stream builds each message in a scratch context
 * whose allocations cri_scratch_end frees. */
int cri_stream_send(cri_ctx *ctx, const ProtobufCMessage *msg);
void cri_scratch_begin(cri_ctx *ctx, cri_ctx *scratch);
void cri_scratch_end(cri_ctx *scratch);

/* Handlers, one file each. */
int cri_rpc_version(cri_ctx *, const ProtobufCMessage *, ProtobufCMessage **, cc_error **);
int cri_rpc_status(cri_ctx *, const ProtobufCMessage *, ProtobufCMessage **, cc_error **);
int cri_rpc_runtime_config(cri_ctx *, const ProtobufCMessage *, ProtobufCMessage **, cc_error **);
int cri_rpc_update_runtime_config(cri_ctx *, const ProtobufCMessage *, ProtobufCMessage **,
                                  cc_error **);
int cri_rpc_list_images(cri_ctx *, const ProtobufCMessage *, ProtobufCMessage **, cc_error **);
int cri_rpc_image_status(cri_ctx *, const ProtobufCMessage *, ProtobufCMessage **, cc_error **);
int cri_rpc_remove_image(cri_ctx *, const ProtobufCMessage *, ProtobufCMessage **, cc_error **);
int cri_rpc_pull_image(cri_ctx *, const ProtobufCMessage *, ProtobufCMessage **, cc_error **);
int cri_rpc_import_image(cri_ctx *, const ProtobufCMessage *, ProtobufCMessage **, cc_error **);
int cri_rpc_image_fs_info(cri_ctx *, const ProtobufCMessage *, ProtobufCMessage **, cc_error **);
/* Pods and containers (cri-server/pods.am), exec and streaming (cri-server/exec.am). */
int cri_rpc_run_pod_sandbox(cri_ctx *, const ProtobufCMessage *, ProtobufCMessage **, cc_error **);
int cri_rpc_stop_pod_sandbox(cri_ctx *, const ProtobufCMessage *, ProtobufCMessage **, cc_error **);
int cri_rpc_remove_pod_sandbox(cri_ctx *, const ProtobufCMessage *, ProtobufCMessage **, cc_error **);
int cri_rpc_pod_sandbox_status(cri_ctx *, const ProtobufCMessage *, ProtobufCMessage **, cc_error **);
int cri_rpc_list_pod_sandbox(cri_ctx *, const ProtobufCMessage *, ProtobufCMessage **, cc_error **);
int cri_rpc_create_container(cri_ctx *, const ProtobufCMessage *, ProtobufCMessage **, cc_error **);
int cri_rpc_start_container(cri_ctx *, const ProtobufCMessage *, ProtobufCMessage **, cc_error **);
int cri_rpc_stop_container(cri_ctx *, const ProtobufCMessage *, ProtobufCMessage **, cc_error **);
int cri_rpc_remove_container(cri_ctx *, const ProtobufCMessage *, ProtobufCMessage **, cc_error **);
int cri_rpc_container_status(cri_ctx *, const ProtobufCMessage *, ProtobufCMessage **, cc_error **);
int cri_rpc_list_containers(cri_ctx *, const ProtobufCMessage *, ProtobufCMessage **, cc_error **);
int cri_rpc_container_stats(cri_ctx *, const ProtobufCMessage *, ProtobufCMessage **, cc_error **);
int cri_rpc_list_container_stats(cri_ctx *, const ProtobufCMessage *, ProtobufCMessage **, cc_error **);
int cri_rpc_pod_sandbox_stats(cri_ctx *, const ProtobufCMessage *, ProtobufCMessage **, cc_error **);
int cri_rpc_list_pod_sandbox_stats(cri_ctx *, const ProtobufCMessage *, ProtobufCMessage **, cc_error **);
int cri_rpc_get_container_events(cri_ctx *, const ProtobufCMessage *, ProtobufCMessage **, cc_error **);
/* The Stream* twins of the List methods (cri-server/rpc-stream-lists.c).
 * cri_batch_end: where the batch that starts at items[i] ends (exclusive):
 * as many items as fit in max_bytes packed, at least one. */
size_t cri_batch_end(ProtobufCMessage *const *items, size_t i, size_t count, size_t max_bytes);
int cri_rpc_stream_pod_sandboxes(cri_ctx *, const ProtobufCMessage *, ProtobufCMessage **, cc_error **);
int cri_rpc_stream_containers(cri_ctx *, const ProtobufCMessage *, ProtobufCMessage **, cc_error **);
int cri_rpc_stream_images(cri_ctx *, const ProtobufCMessage *, ProtobufCMessage **, cc_error **);
int cri_rpc_stream_container_stats(cri_ctx *, const ProtobufCMessage *, ProtobufCMessage **, cc_error **);
int cri_rpc_stream_pod_sandbox_stats(cri_ctx *, const ProtobufCMessage *, ProtobufCMessage **, cc_error **);
int cri_rpc_reopen_container_log(cri_ctx *, const ProtobufCMessage *, ProtobufCMessage **, cc_error **);
int cri_rpc_update_container_resources(cri_ctx *, const ProtobufCMessage *, ProtobufCMessage **, cc_error **);
int cri_rpc_exec_sync(cri_ctx *, const ProtobufCMessage *, ProtobufCMessage **, cc_error **);
int cri_rpc_exec(cri_ctx *, const ProtobufCMessage *, ProtobufCMessage **, cc_error **);
int cri_rpc_attach(cri_ctx *, const ProtobufCMessage *, ProtobufCMessage **, cc_error **);
int cri_rpc_port_forward(cri_ctx *, const ProtobufCMessage *, ProtobufCMessage **, cc_error **);
