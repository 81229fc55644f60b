/* SPDX-License-Identifier: Apache-2.0 */
#include "cri-server/streaming-glue.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "runtime/stream.h"

int cocoon_streaming_init(cocoon_daemon *d, cc_error **ret_err)
{
        const cc_config *cfg = d->cfg;
        if (!d->rt)
                return cc_error_set(ret_err, -EINVAL, "streaming server: the runtime is not started");
        if (cfg->streaming.port < 0 || cfg->streaming.port > 65535)
                return cc_error_set(ret_err, -EINVAL, "streaming: port %lld is out of range",
                                    (long long)cfg->streaming.port);
        streaming_server_config sc = {
                .address = cfg->streaming.address && *cfg->streaming.address ? cfg->streaming.address
                                                                             : "127.0.0.1",
                .port = (uint16_t)cfg->streaming.port,
                .token_ttl = cfg->streaming.token_ttl > 0 ? (int)cfg->streaming.token_ttl : 60,
                .idle_timeout = cfg->streaming.idle_timeout > 0 ? (int)cfg->streaming.idle_timeout : 0,
                .ops = &rt_stream_backend_ops,
                .backend_data = d->rt,
        };
        streaming_server *s = NULL;
        if (streaming_server_new(&sc, &s, ret_err) < 0)
                return cc_error_prefix(ret_err, "streaming server");
        d->streaming = s;
        log_info("streaming server on %s", streaming_server_base_url(s));
        return 0;
}

void cocoon_streaming_fini(cocoon_daemon *d)
{
        streaming_server_free(d->streaming);
        d->streaming = NULL;
}

int cri_stream_check_opts(const streaming_opts *o, cc_error **ret_err)
{
        if (o->tty && o->stderr_)
                return cc_error_set(ret_err, -EINVAL, "tty and stderr cannot both be true");
        if (!o->stdin_ && !o->stdout_ && !o->stderr_)
                return cc_error_set(ret_err, -EINVAL, "one of stdin, stdout, or stderr must be set");
        return 0;
}

int cri_stream_container(cocoon_daemon *d, const char *container_id, char **ret_id,
                         char **ret_pod, cc_error **ret_err)
{
        if (!container_id || !*container_id)
                return cc_error_set(ret_err, -EINVAL, "container_id is empty");
        rt_exec_target *t = NULL;
        int r = rt_runtime_exec_target(d->rt, container_id, &t, ret_err);
        if (r < 0)
                return r;
        char *id = strdup(t->container_id);
        char *pod = strdup(t->sandbox_id ? t->sandbox_id : "");
        rt_exec_target_free(t);
        if (!id || !pod) {
                free(id);
                free(pod);
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        *ret_id = id;
        *ret_pod = pod;
        return 0;
}

char *cri_stream_url(cocoon_daemon *d, streaming_kind kind, const streaming_opts *opts,
                     const char *container_id, const char *sandbox_id, char *const *argv,
                     size_t argc, cc_error **ret_err)
{
        if (!d->streaming)
                return cc_error_set(ret_err, -EOPNOTSUPP, "the streaming server is not running"), NULL;
        rt_stream_req *req = NULL;
        if (rt_stream_req_new(container_id, sandbox_id, argv, argc, &req, ret_err) < 0)
                return NULL;
        return streaming_token_new(d->streaming, kind, opts, req, rt_stream_req_free, ret_err);
}
