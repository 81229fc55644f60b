/* SPDX-License-Identifier: Apache-2.0 */
#include "cri-server/dispatch.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "cri-server/status.h"

#define M(svc, Name, req, resp, handler, streaming, quiet) \
        { svc, #Name, &runtime__v1__##req##__descriptor, &runtime__v1__##resp##__descriptor, handler, streaming, quiet }

/* Every method of runtime.v1 RuntimeService and ImageService, in the order of
 * proto/api.proto. A NULL handler answers UNIMPLEMENTED naming the method. */
const cri_method cri_methods[] = {
        M("RuntimeService", Version, version_request, version_response, cri_rpc_version, false, true),
        M("RuntimeService", RunPodSandbox, run_pod_sandbox_request, run_pod_sandbox_response, cri_rpc_run_pod_sandbox, false, false),
        M("RuntimeService", StopPodSandbox, stop_pod_sandbox_request, stop_pod_sandbox_response, cri_rpc_stop_pod_sandbox, false, false),
        M("RuntimeService", RemovePodSandbox, remove_pod_sandbox_request, remove_pod_sandbox_response, cri_rpc_remove_pod_sandbox, false, false),
        M("RuntimeService", PodSandboxStatus, pod_sandbox_status_request, pod_sandbox_status_response, cri_rpc_pod_sandbox_status, false, true),
        M("RuntimeService", ListPodSandbox, list_pod_sandbox_request, list_pod_sandbox_response, cri_rpc_list_pod_sandbox, false, true),
        M("RuntimeService", StreamPodSandboxes, stream_pod_sandboxes_request, stream_pod_sandboxes_response, cri_rpc_stream_pod_sandboxes, true, true),
        M("RuntimeService", CreateContainer, create_container_request, create_container_response, cri_rpc_create_container, false, false),
        M("RuntimeService", StartContainer, start_container_request, start_container_response, cri_rpc_start_container, false, false),
        M("RuntimeService", StopContainer, stop_container_request, stop_container_response, cri_rpc_stop_container, false, false),
        M("RuntimeService", RemoveContainer, remove_container_request, remove_container_response, cri_rpc_remove_container, false, false),
        M("RuntimeService", ListContainers, list_containers_request, list_containers_response, cri_rpc_list_containers, false, true),
        M("RuntimeService", StreamContainers, stream_containers_request, stream_containers_response, cri_rpc_stream_containers, true, true),
        M("RuntimeService", ContainerStatus, container_status_request, container_status_response, cri_rpc_container_status, false, true),
        M("RuntimeService", UpdateContainerResources, update_container_resources_request, update_container_resources_response, cri_rpc_update_container_resources, false, false),
        M("RuntimeService", ReopenContainerLog, reopen_container_log_request, reopen_container_log_response, cri_rpc_reopen_container_log, false, false),
        M("RuntimeService", ExecSync, exec_sync_request, exec_sync_response, cri_rpc_exec_sync, false, false),
        M("RuntimeService", Exec, exec_request, exec_response, cri_rpc_exec, false, false),
        M("RuntimeService", Attach, attach_request, attach_response, cri_rpc_attach, false, false),
        M("RuntimeService", PortForward, port_forward_request, port_forward_response, cri_rpc_port_forward, false, false),
        M("RuntimeService", ContainerStats, container_stats_request, container_stats_response, cri_rpc_container_stats, false, true),
        M("RuntimeService", ListContainerStats, list_container_stats_request, list_container_stats_response, cri_rpc_list_container_stats, false, true),
        M("RuntimeService", StreamContainerStats, stream_container_stats_request, stream_container_stats_response, cri_rpc_stream_container_stats, true, true),
        M("RuntimeService", PodSandboxStats, pod_sandbox_stats_request, pod_sandbox_stats_response, cri_rpc_pod_sandbox_stats, false, true),
        M("RuntimeService", ListPodSandboxStats, list_pod_sandbox_stats_request, list_pod_sandbox_stats_response, cri_rpc_list_pod_sandbox_stats, false, true),
        M("RuntimeService", StreamPodSandboxStats, stream_pod_sandbox_stats_request, stream_pod_sandbox_stats_response, cri_rpc_stream_pod_sandbox_stats, true, true),
        M("RuntimeService", UpdateRuntimeConfig, update_runtime_config_request, update_runtime_config_response, cri_rpc_update_runtime_config, false, false),
        M("RuntimeService", Status, status_request, status_response, cri_rpc_status, false, true),
        M("RuntimeService", CheckpointContainer, checkpoint_container_request, checkpoint_container_response, NULL, false, false),
        M("RuntimeService", GetContainerEvents, get_events_request, container_event_response, cri_rpc_get_container_events, true, false),
        M("RuntimeService", ListMetricDescriptors, list_metric_descriptors_request, list_metric_descriptors_response, NULL, false, true),
        M("RuntimeService", ListPodSandboxMetrics, list_pod_sandbox_metrics_request, list_pod_sandbox_metrics_response, NULL, false, true),
        M("RuntimeService", StreamPodSandboxMetrics, stream_pod_sandbox_metrics_request, stream_pod_sandbox_metrics_response, NULL, true, false),
        M("RuntimeService", RuntimeConfig, runtime_config_request, runtime_config_response, cri_rpc_runtime_config, false, true),
        M("RuntimeService", UpdatePodSandboxResources, update_pod_sandbox_resources_request, update_pod_sandbox_resources_response, NULL, false, false),
        M("ImageService", ListImages, list_images_request, list_images_response, cri_rpc_list_images, false, true),
        M("ImageService", StreamImages, stream_images_request, stream_images_response, cri_rpc_stream_images, true, true),
        M("ImageService", ImageStatus, image_status_request, image_status_response, cri_rpc_image_status, false, true),
        M("ImageService", PullImage, pull_image_request, pull_image_response, cri_rpc_pull_image, false, false),
        M("ImageService", RemoveImage, remove_image_request, remove_image_response, cri_rpc_remove_image, false, false),
        M("ImageService", ImageFsInfo, image_fs_info_request, image_fs_info_response, cri_rpc_image_fs_info, false, true),
};
const size_t cri_n_methods = sizeof(cri_methods) / sizeof(cri_methods[0]);

/* cocoon.admin.v1.Admin: cocoonctl's verbs the CRI has no name for. */
static const cri_method admin_methods[] = {
        { "Admin", "ImportImage", &cocoon__admin__v1__import_image_request__descriptor,
          &cocoon__admin__v1__import_image_response__descriptor, cri_rpc_import_image, false, false },
};

const cri_method *cri_method_lookup(const char *path, bool allow_v1alpha2,
                                    const char **ret_api_version)
{
        static const char prefix[] = "/runtime.";
        static const char admin[] = "/cocoon.admin.v1.Admin/";
        if (path && strncmp(path, admin, sizeof(admin) - 1) == 0) {
                for (size_t i = 0; i < CC_ARRAY_SIZE(admin_methods); i++)
                        if (strcmp(admin_methods[i].name, path + sizeof(admin) - 1) == 0) {
                                if (ret_api_version)
                                        *ret_api_version = "admin";
                                return &admin_methods[i];
                        }
                return NULL;
        }
        if (!path || strncmp(path, prefix, sizeof(prefix) - 1) != 0)
                return NULL;
        const char *p = path + sizeof(prefix) - 1;
        const char *version;
        if (strncmp(p, "v1.", 3) == 0) {
                version = "v1";
                p += 3;
        } else if (allow_v1alpha2 && strncmp(p, "v1alpha2.", 9) == 0) {
                version = "v1alpha2";
                p += 9;
        } else {
                return NULL;
        }
        const char *slash = strchr(p, '/');
        if (!slash)
                return NULL;
        size_t svc_len = (size_t)(slash - p);
        for (size_t i = 0; i < cri_n_methods; i++) {
                const cri_method *m = &cri_methods[i];
                if (strlen(m->service) == svc_len && strncmp(m->service, p, svc_len) == 0 &&
                    strcmp(m->name, slash + 1) == 0) {
                        if (ret_api_version)
                                *ret_api_version = version;
                        return m;
                }
        }
        return NULL;
}

/* ---- per-call arena ---------------------------------------------------- */

typedef struct cri_arena {
        struct arena_block *head;
} cri_arena;

typedef struct arena_block {
        struct arena_block *next;
        size_t used, cap;
        max_align_t data[];
} arena_block;

void *cri_alloc(cri_ctx *ctx, size_t size)
{
        cri_arena *a = ctx->arena;
        size = (size + _Alignof(max_align_t) - 1) & ~(_Alignof(max_align_t) - 1);
        if (!a->head || a->head->cap - a->head->used < size) {
                size_t cap = size > 16384 ? size : 16384;
                arena_block *b = malloc(sizeof(*b) + cap);
                if (!b)
                        abort();
                b->next = a->head;
                b->used = 0;
                b->cap = cap;
                a->head = b;
        }
        void *p = (char *)a->head->data + a->head->used;
        a->head->used += size;
        memset(p, 0, size);
        return p;
}

char *cri_strdup(cri_ctx *ctx, const char *s)
{
        if (!s)
                s = "";
        size_t n = strlen(s) + 1;
        char *d = cri_alloc(ctx, n);
        memcpy(d, s, n);
        return d;
}

char *cri_printf(cri_ctx *ctx, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        _cleanup_free_ char *s = NULL;
        int r = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (r < 0)
                abort();
        return cri_strdup(ctx, s);
}

void *cri_msg_new(cri_ctx *ctx, const ProtobufCMessageDescriptor *desc)
{
        void *m = cri_alloc(ctx, desc->sizeof_message);
        protobuf_c_message_init(desc, m);
        return m;
}

Runtime__V1__StatusResponse__InfoEntry *cri_map_entry(cri_ctx *ctx, const char *k, const char *v)
{
        Runtime__V1__StatusResponse__InfoEntry *e = CRI_NEW(ctx, runtime__v1__status_response__info_entry);
        e->key = cri_strdup(ctx, k);
        e->value = cri_strdup(ctx, v);
        return e;
}

static void arena_free(cri_arena *a)
{
        while (a->head) {
                arena_block *b = a->head;
                a->head = b->next;
                free(b);
        }
}

/* ---- dispatch ---------------------------------------------------------- */

static int64_t mono_us(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void reply_error(cri_reply *reply, int code, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        reply->code = code;
        if (vasprintf(&reply->msg, fmt, ap) < 0)
                reply->msg = NULL;
        va_end(ap);
}

void cri_dispatch(void *userdata, const cri_call_info *info, const uint8_t *req, size_t req_len,
                  cri_reply *reply)
{
        cocoon_daemon *d = userdata;
        const char *api_version = NULL;
        bool v1alpha2 = d && d->cfg ? d->cfg->server.enable_v1alpha2 : true;
        const cri_method *m = cri_method_lookup(info->method, v1alpha2, &api_version);
        if (!m) {
                log_debug("rpc=%s code=UNIMPLEMENTED unknown method", info->method);
                reply_error(reply, CRI_UNIMPLEMENTED, "unknown method %s", info->method);
                return;
        }
        cc_log_level lvl = m->quiet ? CC_LOG_DEBUG : CC_LOG_INFO;
        reply->streamed = m->streaming && m->handler;
        if (!m->handler) {
                cc_log(lvl, "rpc=%s api=%s code=UNIMPLEMENTED", m->name, api_version);
                reply_error(reply, CRI_UNIMPLEMENTED, "method %s is not implemented by cocoon yet",
                            m->name);
                return;
        }
        ProtobufCMessage *in = protobuf_c_message_unpack(m->req_desc, NULL, req_len, req);
        if (!in) {
                log_info("rpc=%s api=%s code=INVALID_ARGUMENT malformed request (%zu bytes)", m->name,
                         api_version, req_len);
                reply_error(reply, CRI_INVALID_ARGUMENT, "%s: request is not a valid %s message",
                            m->name, m->req_desc->name);
                return;
        }
        cc_log(lvl, "rpc=%s api=%s start", m->name, api_version);
        int64_t t0 = mono_us();
        cri_arena arena = { NULL };
        cri_ctx ctx = { .daemon = d, .call = info, .api_version = api_version, .arena = &arena };
        ProtobufCMessage *out = NULL;
        _cleanup_error_ cc_error *err = NULL;
        int r = m->handler(&ctx, in, &out, &err);
        protobuf_c_message_free_unpacked(in, NULL);
        int64_t dt = mono_us() - t0;
        if (r < 0) {
                int code = cri_status_from_error(err);
                const char *msg = err ? err->msg : "internal error";
                /* The failure is handled (reported to the caller) here: log it once. */
                log_info("rpc=%s api=%s code=%s duration_us=%lld error=\"%s\"", m->name, api_version,
                         cri_status_name(code), (long long)dt, msg);
                reply_error(reply, code, "%s", msg);
        } else if (m->streaming) {
                reply->code = CRI_OK; /* the messages went out as they came */
                cc_log(lvl, "rpc=%s api=%s code=OK duration_us=%lld", m->name, api_version, (long long)dt);
        } else if (!out || out->descriptor != m->resp_desc) {
                log_error("rpc=%s handler returned no or a wrong response type", m->name);
                reply_error(reply, CRI_INTERNAL, "%s: internal error", m->name);
        } else {
                size_t n = protobuf_c_message_get_packed_size(out);
                reply->resp = malloc(n ? n : 1);
                if (!reply->resp) {
                        reply_error(reply, CRI_RESOURCE_EXHAUSTED, "out of memory");
                } else {
                        reply->resp_len = protobuf_c_message_pack(out, reply->resp);
                        reply->code = CRI_OK;
                        cc_log(lvl, "rpc=%s api=%s code=OK duration_us=%lld", m->name, api_version,
                               (long long)dt);
                }
        }
        arena_free(&arena);
}

/* ---- server streaming ---------------------------------------------------- */

int cri_stream_send(cri_ctx *ctx, const ProtobufCMessage *msg)
{
        size_t n = protobuf_c_message_get_packed_size(msg);
        uint8_t *buf = malloc(n ? n : 1);
        if (!buf)
                return -ENOMEM;
        n = protobuf_c_message_pack(msg, buf);
        int r = cri_grpc_stream_send(ctx->call, buf, n);
        free(buf);
        return r;
}

void cri_scratch_begin(cri_ctx *ctx, cri_ctx *scratch)
{
        *scratch = *ctx;
        scratch->arena = calloc(1, sizeof(cri_arena));
        if (!scratch->arena)
                abort(); /* as cri_alloc: no sane partial message */
}

void cri_scratch_end(cri_ctx *scratch)
{
        arena_free(scratch->arena);
        free(scratch->arena);
        scratch->arena = NULL;
}

/* Methods whose handler only formats constant or configuration data: they
 * run on the gRPC completion-queue thread (cri_grpc_server_opts.is_inline).
 * Anything that takes a lock another RPC may hold for long, touches the disk
 * or the network must NOT be listed here. */
bool cri_dispatch_is_inline(void *userdata, const char *path)
{
        static const char *const cheap[] = { "Version", "RuntimeConfig" };
        const char *api = NULL;
        const cri_method *m = cri_method_lookup(path, true, &api);
        if (!m || !m->handler)
                return false;
        for (size_t i = 0; i < sizeof(cheap) / sizeof(cheap[0]); i++)
                if (strcmp(m->name, cheap[i]) == 0)
                        return true;
        return false;
}

bool cri_dispatch_is_streaming(void *userdata, const char *path)
{
        (void)userdata;
        const char *api = NULL;
        const cri_method *m = cri_method_lookup(path, true, &api);
        return m && m->handler && m->streaming;
}
