/* SPDX-License-Identifier: Apache-2.0 */
#include "cri-server/daemon.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/json.h"
#include "common/log.h"
#include "cri-server/streaming-glue.h"
#include "image/unpack.h"
#include "runtime/pod-net.h"
#include "runtime/pod.h"

static char *runtime_config_path(const cocoon_daemon *d)
{
        char *p = NULL;
        if (asprintf(&p, "%s/runtime-config.json", d->cfg->paths.root) < 0)
                return NULL;
        return p;
}

int cocoon_daemon_init(cocoon_daemon *d, cc_config *cfg, cc_error **ret_err)
{
        memset(d, 0, sizeof(*d));
        d->cfg = cfg;
        clock_gettime(CLOCK_REALTIME, &d->started);
        pthread_mutex_init(&d->lock, NULL);
        if (cc_mkdir_p(cfg->paths.root, 0700, ret_err) < 0)
                return cc_error_prefix(ret_err, "root directory");
        if (cc_mkdir_p(cfg->paths.state, 0711, ret_err) < 0)
                return cc_error_prefix(ret_err, "state directory");
        if (image_store_open(cfg->paths.root, &d->image_store, ret_err) < 0)
                return cc_error_prefix(ret_err, "image store");
        _cleanup_error_ cc_error *tmp_err = NULL;
        if (image_layer_cleanup_tmp(d->image_store, &tmp_err) < 0)
                log_warn("image store: cleaning interrupted unpacks: %s", tmp_err->msg);
        if (image_db_open(d->image_store, &d->images, ret_err) < 0)
                return cc_error_prefix(ret_err, "image records");
        if (image_registry_global_init(ret_err) < 0 || image_token_cache_new(&d->tokens, ret_err) < 0)
                return cc_error_prefix(ret_err, "registry client");

        /* Reload what UpdateRuntimeConfig persisted. A damaged file is
         * reported and ignored: the kubelet sends the CIDR again. */
        _cleanup_free_ char *path = runtime_config_path(d);
        _cleanup_error_ cc_error *err = NULL;
        _cleanup_json_ json_object *o = path ? cc_json_parse_file(path, 65536, &err) : NULL;
        if (o) {
                const char *cidr = NULL;
                if (cc_json_get_string(o, "pod_cidr", true, &cidr, &err) == 0 && cidr)
                        d->pod_cidr = strdup(cidr);
                else if (err)
                        log_warn("runtime config %s: %s (ignored)", path, err->msg);
        } else if (err && err->code != -ENOENT) {
                log_warn("runtime config: %s (ignored)", err->msg);
        }

        /* Pod networks, then the pods and containers (reloaded and
         * re-attached; the runtime sets the image in-use hook), then the
         * streaming server that serves their exec/attach/port-forward. */
        if (rt_net_new(cfg, &d->net, ret_err) < 0)
                return cc_error_prefix(ret_err, "pod network");
        if (rt_runtime_open(cfg, d->images, d->net, &d->rt, ret_err) < 0)
                return cc_error_prefix(ret_err, "runtime");
        if (cocoon_streaming_init(d, ret_err) < 0)
                return cc_error_prefix(ret_err, "streaming server");
        return 0;
}

int cocoon_daemon_set_pod_cidr(cocoon_daemon *d, const char *cidr, cc_error **ret_err)
{
        _cleanup_free_ char *path = runtime_config_path(d);
        _cleanup_json_ json_object *o = json_object_new_object();
        if (!path || !o)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        json_object_object_add(o, "version", json_object_new_int(1));
        json_object_object_add(o, "pod_cidr", json_object_new_string(cidr));
        pthread_mutex_lock(&d->lock);
        int r = 0;
        if (!d->pod_cidr || strcmp(d->pod_cidr, cidr) != 0) {
                r = cc_json_write_file(path, o, 0600, ret_err);
                if (r == 0) {
                        char *dup = strdup(cidr);
                        if (dup) {
                                free(d->pod_cidr);
                                d->pod_cidr = dup;
                        }
                }
        }
        pthread_mutex_unlock(&d->lock);
        return r;
}

void cocoon_daemon_fini(cocoon_daemon *d)
{
        /* Pods keep running (VMs, host agents): a restarted cocoond re-attaches. */
        cocoon_streaming_fini(d);
        rt_runtime_free(d->rt);
        d->rt = NULL;
        rt_net_free(d->net);
        d->net = NULL;
        image_token_cache_free(d->tokens);
        d->tokens = NULL;
        image_db_free(d->images);
        d->images = NULL;
        image_store_free(d->image_store);
        d->image_store = NULL;
        free(d->pod_cidr);
        d->pod_cidr = NULL;
        pthread_mutex_destroy(&d->lock);
}
