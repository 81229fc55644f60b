/* SPDX-License-Identifier: Apache-2.0 */
/* ImageStatus: an absent image is an empty response, not an error. */
#include <errno.h>
#include <json-c/json.h>

#include "common/json.h"
#include "common/cleanup.h"
#include "cri-server/image-convert.h"

static json_object *strv_json(char *const *v)
{
        json_object *a = json_object_new_array();
        for (size_t i = 0; v && v[i]; i++)
                json_object_array_add(a, json_object_new_string(v[i]));
        return a;
}

static char *verbose_info(cri_ctx *ctx, const image_info *info)
{
        _cleanup_json_ json_object *o = json_object_new_object();
        const image_config *c = info->config;
        json_object_object_add(o, "manifestDigest", json_object_new_string(info->manifest_digest));
        json_object *layers = json_object_new_array();
        for (size_t i = 0; i < info->n_layers; i++) {
                json_object *l = json_object_new_object();
                json_object_object_add(l, "digest", json_object_new_string(info->layers[i].digest));
                json_object_object_add(l, "mediaType", json_object_new_string(info->layers[i].media_type));
                json_object_object_add(l, "size", json_object_new_int64(info->layers[i].size));
                json_object_object_add(l, "diffID", json_object_new_string(info->layers[i].diff_id));
                json_object_object_add(l, "chainID", json_object_new_string(info->layers[i].chain_id));
                json_object_array_add(layers, l);
        }
        json_object_object_add(o, "layers", layers);
        if (c) {
                json_object *cfg = json_object_new_object();
                json_object_object_add(cfg, "User", json_object_new_string(c->user ? c->user : ""));
                json_object_object_add(cfg, "Entrypoint", strv_json(c->entrypoint));
                json_object_object_add(cfg, "Cmd", strv_json(c->cmd));
                json_object_object_add(cfg, "Env", strv_json(c->env));
                json_object_object_add(cfg, "WorkingDir", json_object_new_string(c->working_dir ? c->working_dir : ""));
                json_object_object_add(cfg, "ExposedPorts", strv_json(c->exposed_ports));
                json_object_object_add(cfg, "Volumes", strv_json(c->volumes));
                json_object *labels = json_object_new_object();
                for (size_t i = 0; i < c->n_labels; i++)
                        json_object_object_add(labels, c->labels[i].key, json_object_new_string(c->labels[i].value));
                json_object_object_add(cfg, "Labels", labels);
                json_object_object_add(cfg, "StopSignal", json_object_new_string(c->stop_signal ? c->stop_signal : ""));
                json_object_object_add(o, "config", cfg);
                json_object *plat = json_object_new_object();
                json_object_object_add(plat, "os", json_object_new_string(c->platform.os ? c->platform.os : ""));
                json_object_object_add(plat, "architecture",
                                       json_object_new_string(c->platform.architecture ? c->platform.architecture : ""));
                json_object_object_add(o, "platform", plat);
        }
        return cri_strdup(ctx, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
}

int cri_rpc_image_status(cri_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **ret_resp,
                         cc_error **ret_err)
{
        const Runtime__V1__ImageStatusRequest *req = (const void *)in;
        const char *spec = NULL;
        if (cri_image_spec(req->image, &spec, ret_err) < 0)
                return -EINVAL;
        Runtime__V1__ImageStatusResponse *resp = CRI_NEW(ctx, runtime__v1__image_status_response);
        _cleanup_image_info_ image_info *info = NULL;
        _cleanup_error_ cc_error *err = NULL;
        int r = image_db_get(ctx->daemon->images, spec, &info, &err);
        if (r == -ENOENT) {
                *ret_resp = &resp->base;
                return 0;
        }
        if (r < 0)
                return cc_error_propagate(ret_err, TAKE_PTR(err));
        resp->image = cri_image_from_info(ctx, info);
        if (req->verbose) {
                resp->n_info = 1;
                resp->info = cri_alloc(ctx, sizeof(void *));
                Runtime__V1__ImageStatusResponse__InfoEntry *e =
                        CRI_NEW(ctx, runtime__v1__image_status_response__info_entry);
                e->key = cri_strdup(ctx, "info");
                e->value = verbose_info(ctx, info);
                resp->info[0] = e;
        }
        *ret_resp = &resp->base;
        return 0;
}
