/* SPDX-License-Identifier: Apache-2.0 */
/* Process-wide state of cocoond that RPC handlers share. */
#pragma once

#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "common/config.h"
#include "image/images.h"
#include "image/registry.h"
#include "image/store.h"

typedef struct rt_runtime rt_runtime;
typedef struct rt_net rt_net;
typedef struct streaming_server streaming_server;

typedef struct cocoon_daemon {
        cc_config *cfg;
        const char *config_source; /* for Status verbose info */
        struct timespec started;    /* CLOCK_REALTIME */
        image_store *image_store;   /* blobs, unpacked layers (paths.root) */
        image_db *images;           /* image records */
        image_token_cache *tokens;  /* registry bearer tokens, shared by pulls */
        rt_net *net;                /* CNI config + pod networks (runtime/pod-net.h) */
        rt_runtime *rt;             /* pods and containers (runtime/pod.h, container.h) */
        streaming_server *streaming; /* Exec/Attach/PortForward URLs (cri-server/streaming) */

        pthread_mutex_t lock;       /* guards the fields below */
        char *pod_cidr;             /* from UpdateRuntimeConfig, persisted */
} cocoon_daemon;

int cocoon_daemon_init(cocoon_daemon *d, cc_config *cfg, cc_error **ret_err);
int cocoon_daemon_set_pod_cidr(cocoon_daemon *d, const char *cidr, cc_error **ret_err);
void cocoon_daemon_fini(cocoon_daemon *d);
