/* SPDX-License-Identifier: Apache-2.0 */
/* StreamPodSandboxes, StreamContainers, StreamImages, StreamContainerStats,
 * StreamPodSandboxStats: the answer of the matching List method, sent as a
 * stream of batches of at most ~1 MiB each (an item larger than that goes
 * alone), so that a node with many pods or images is not cut off by the
 * client's message size limit (the kubelet's is 16 MiB). Each Stream request
 * and response has the same wire form as its List twin (field 1: the
 * filter; field 1: the repeated items), which the code checks. No items: no
 * message, status OK. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cri-server/pod-convert.h"

#define BATCH_BYTES (1u << 20)

size_t cri_batch_end(ProtobufCMessage *const *items, size_t i, size_t count, size_t max_bytes)
{
        size_t bytes = 0, j = i;
        while (j < count) {
                size_t b = protobuf_c_message_get_packed_size(items[j]) + 8; /* + its tag and length */
                if (j > i && bytes + b > max_bytes)
                        break;
                bytes += b;
                j++;
        }
        return j;
}

static bool one_repeated_message(const ProtobufCMessageDescriptor *d, const ProtobufCFieldDescriptor **ret)
{
        if (d->n_fields != 1 || d->fields[0].label != PROTOBUF_C_LABEL_REPEATED ||
            d->fields[0].type != PROTOBUF_C_TYPE_MESSAGE || d->fields[0].id != 1)
                return false;
        *ret = &d->fields[0];
        return true;
}

static int stream_list(cri_ctx *ctx, const ProtobufCMessage *in, cri_handler_fn list,
                       const ProtobufCMessageDescriptor *list_req, const ProtobufCMessageDescriptor *stream_resp,
                       cc_error **ret_err)
{
        /* the Stream request, read as its List twin */
        size_t n = protobuf_c_message_get_packed_size(in);
        uint8_t *buf = cri_alloc(ctx, n ? n : 1);
        n = protobuf_c_message_pack(in, buf);
        ProtobufCMessage *req = protobuf_c_message_unpack(list_req, NULL, n, buf);
        if (!req)
                return cc_error_set(ret_err, -EINVAL, "request is not a valid %s", list_req->name);
        ProtobufCMessage *resp = NULL;
        int r = list(ctx, req, &resp, ret_err);
        protobuf_c_message_free_unpacked(req, NULL);
        if (r < 0)
                return r;
        const ProtobufCFieldDescriptor *lf, *sf;
        if (!resp || !one_repeated_message(resp->descriptor, &lf) || !one_repeated_message(stream_resp, &sf) ||
            lf->descriptor != sf->descriptor)
                return cc_error_set(ret_err, -EPROTO, "%s: no list twin", stream_resp->name);
        size_t count = *(const size_t *)((const char *)resp + lf->quantifier_offset);
        ProtobufCMessage **items = *(ProtobufCMessage ***)((char *)resp + lf->offset);
        ProtobufCMessage *out = cri_msg_new(ctx, stream_resp);
        size_t *out_n = (size_t *)((char *)out + sf->quantifier_offset);
        ProtobufCMessage ***out_v = (ProtobufCMessage ***)((char *)out + sf->offset);
        for (size_t i = 0; i < count;) {
                size_t j = cri_batch_end(items, i, count, BATCH_BYTES);
                *out_n = j - i;
                *out_v = items + i;
                r = cri_stream_send(ctx, out);
                if (r == -ECANCELED)
                        return 0; /* the client went away */
                if (r < 0)
                        return cc_error_set(ret_err, r, "%s: %s", stream_resp->name, strerror(-r));
                i = j;
        }
        return 0;
}

#define STREAM(fn, list_fn, list_lower, stream_lower)                                                           \
        int fn(cri_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **ret_resp, cc_error **ret_err)   \
        {                                                                                                   \
                (void)ret_resp;                                                                             \
                return stream_list(ctx, in, list_fn, &list_lower##__descriptor, &stream_lower##__descriptor, \
                                   ret_err);                                                                \
        }

STREAM(cri_rpc_stream_pod_sandboxes, cri_rpc_list_pod_sandbox, runtime__v1__list_pod_sandbox_request,
       runtime__v1__stream_pod_sandboxes_response)
STREAM(cri_rpc_stream_containers, cri_rpc_list_containers, runtime__v1__list_containers_request,
       runtime__v1__stream_containers_response)
STREAM(cri_rpc_stream_images, cri_rpc_list_images, runtime__v1__list_images_request,
       runtime__v1__stream_images_response)
STREAM(cri_rpc_stream_container_stats, cri_rpc_list_container_stats, runtime__v1__list_container_stats_request,
       runtime__v1__stream_container_stats_response)
STREAM(cri_rpc_stream_pod_sandbox_stats, cri_rpc_list_pod_sandbox_stats,
       runtime__v1__list_pod_sandbox_stats_request, runtime__v1__stream_pod_sandbox_stats_response)
