/* SPDX-License-Identifier: Apache-2.0 */
/* Status: RuntimeReady and NetworkReady conditions; verbose info as JSON. */
#include "config.h"

#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/json.h"
#include "cri-server/dispatch.h"
#include "runtime/pod-net.h"
#include "runtime/runtime.h"

typedef struct check {
        const char *name;
        bool ok;
        char detail[512];
} check;

static void check_exec(check *c, const char *name, const char *path)
{
        c->name = name;
        c->ok = access(path, X_OK) == 0;
        snprintf(c->detail, sizeof(c->detail), c->ok ? "%s" : "%s is missing or not executable", path);
}

static void check_file(check *c, const char *name, const char *path)
{
        struct stat st;
        c->name = name;
        c->ok = stat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0;
        snprintf(c->detail, sizeof(c->detail), c->ok ? "%s" : "%s is missing or empty", path);
}

static const char *accel_in_use(const cc_config *cfg)
{
        if (cfg->vm.accel == CC_CONFIG_ACCEL_TCG)
                return "tcg";
        int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        if (fd >= 0) {
                close(fd);
                return "kvm";
        }
        return cfg->vm.accel == CC_CONFIG_ACCEL_KVM ? "kvm-unavailable" : "tcg";
}

static Runtime__V1__RuntimeCondition *condition(cri_ctx *ctx, const char *type, bool ok,
                                                const char *reason, const char *msg)
{
        Runtime__V1__RuntimeCondition *c = CRI_NEW(ctx, runtime__v1__runtime_condition);
        c->type = cri_strdup(ctx, type);
        c->status = ok;
        c->reason = cri_strdup(ctx, ok ? "" : reason);
        c->message = cri_strdup(ctx, ok ? "" : msg);
        return c;
}

int cri_rpc_status(cri_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **ret_resp,
                   cc_error **ret_err)
{
        const Runtime__V1__StatusRequest *req = (const void *)in;
        const cc_config *cfg = ctx->daemon->cfg;

        /* RuntimeReady: everything a pod VM needs is present on this host. */
        check checks[4];
        check_exec(&checks[0], "qemu", cfg->vm.qemu);
        check_exec(&checks[1], "virtiofsd", cfg->vm.virtiofsd);
        check_file(&checks[2], "kernel", cfg->vm.kernel);
        check_file(&checks[3], "initrd", cfg->vm.initrd);
        const char *accel = accel_in_use(cfg);
        char runtime_msg[2048] = "";
        bool runtime_ok = true;
        for (size_t i = 0; i < CC_ARRAY_SIZE(checks); i++) {
                if (checks[i].ok)
                        continue;
                runtime_ok = false;
                size_t n = strlen(runtime_msg);
                snprintf(runtime_msg + n, sizeof(runtime_msg) - n, "%s%s", n ? "; " : "", checks[i].detail);
        }
        if (strcmp(accel, "kvm-unavailable") == 0) {
                runtime_ok = false;
                size_t n = strlen(runtime_msg);
                snprintf(runtime_msg + n, sizeof(runtime_msg) - n,
                         "%svm.accel is \"kvm\" but /dev/kvm cannot be opened", n ? "; " : "");
        }

        /* NetworkReady: a valid CNI configuration whose plugins are all
         * installed. Without the network module (d->net NULL) it cannot be. */
        bool network_ok = false;
        char network_msg[1024] = "cocoon: CNI pod networking is not implemented yet";
        if (ctx->daemon->net) {
                _cleanup_error_ cc_error *net_err = NULL;
                network_ok = rt_net_ready(ctx->daemon->net, &net_err) == 0;
                if (!network_ok)
                        snprintf(network_msg, sizeof(network_msg), "%s", net_err ? net_err->msg : "CNI not ready");
        }

        Runtime__V1__StatusResponse *resp = CRI_NEW(ctx, runtime__v1__status_response);
        resp->status = CRI_NEW(ctx, runtime__v1__runtime_status);
        resp->status->n_conditions = 2;
        resp->status->conditions = cri_alloc(ctx, 2 * sizeof(void *));
        resp->status->conditions[0] =
                condition(ctx, "RuntimeReady", runtime_ok, "VMPrerequisitesMissing", runtime_msg);
        resp->status->conditions[1] =
                condition(ctx, "NetworkReady", network_ok, "NetworkPluginNotReady", network_msg);

        /* The default handler ("") and every configured one. */
        size_t nh = 1 + cfg->runtime.n_handlers;
        resp->n_runtime_handlers = nh;
        resp->runtime_handlers = cri_alloc(ctx, nh * sizeof(void *));
        for (size_t i = 0; i < nh; i++) {
                Runtime__V1__RuntimeHandler *h = CRI_NEW(ctx, runtime__v1__runtime_handler);
                h->name = cri_strdup(ctx, i == 0 ? "" : cfg->runtime.handlers[i - 1].name);
                h->features = CRI_NEW(ctx, runtime__v1__runtime_handler_features);
                resp->runtime_handlers[i] = h;
        }

        if (req->verbose) {
                _cleanup_json_ json_object *checks_json = json_object_new_object();
                for (size_t i = 0; i < CC_ARRAY_SIZE(checks); i++) {
                        json_object *c = json_object_new_object();
                        json_object_object_add(c, "ok", json_object_new_boolean(checks[i].ok));
                        json_object_object_add(c, "detail", json_object_new_string(checks[i].detail));
                        json_object_object_add(checks_json, checks[i].name, c);
                }
                _cleanup_json_ json_object *ver = json_object_new_object();
                json_object_object_add(ver, "version", json_object_new_string(PACKAGE_VERSION));
                json_object_object_add(ver, "accel", json_object_new_string(accel));
                json_object_object_add(ver, "config_source",
                                       json_object_new_string(ctx->daemon->config_source ? ctx->daemon->config_source : "defaults"));
                pthread_mutex_lock(&ctx->daemon->lock);
                json_object_object_add(ver, "pod_cidr",
                                       json_object_new_string(ctx->daemon->pod_cidr ? ctx->daemon->pod_cidr : ""));
                pthread_mutex_unlock(&ctx->daemon->lock);
                if (ctx->daemon->rt) {
                        int size = 0, ready = 0;
                        rt_runtime_pool_status(ctx->daemon->rt, &size, &ready);
                        json_object *pool = json_object_new_object();
                        json_object_object_add(pool, "size", json_object_new_int(size));
                        json_object_object_add(pool, "ready", json_object_new_int(ready));
                        json_object_object_add(ver, "vm_pool", pool);
                        json_object *tmpl = rt_runtime_template_status(ctx->daemon->rt);
                        if (tmpl)
                                json_object_object_add(ver, "vm_template", tmpl);
                }
                _cleanup_free_ char *dump = cc_config_dump(cfg);
                _cleanup_json_ json_object *cfg_json = json_object_new_string(dump ? dump : "");

                resp->n_info = 3;
                resp->info = cri_alloc(ctx, 3 * sizeof(void *));
                resp->info[0] = cri_map_entry(ctx, "checks", json_object_to_json_string_ext(checks_json, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
                resp->info[1] = cri_map_entry(ctx, "runtime", json_object_to_json_string_ext(ver, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
                resp->info[2] = cri_map_entry(ctx, "config", json_object_to_json_string_ext(cfg_json, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        }
        *ret_resp = &resp->base;
        return 0;
}
