/* SPDX-License-Identifier: Apache-2.0 */
/* ImageFsInfo: bytes and inodes used by the image store (blobs, unpacked
 * layers, records), measured by walking it like du(1) (hard links counted
 * once), cached for a few seconds because the kubelet polls it. */
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cri-server/dispatch.h"
#include "image/store.h"

#define CACHE_NS (5LL * 1000000000LL)

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t cache_at_ns, cache_bytes, cache_inodes;
static char cache_root[4096];

/* nftw has no user pointer: the walk runs under cache_lock. */
static int64_t walk_bytes, walk_inodes;
static struct {
        dev_t dev;
        ino_t ino;
} *walk_seen;
static size_t walk_n, walk_cap;

static int seen_before(const struct stat *st)
{
        if (st->st_nlink <= 1 || S_ISDIR(st->st_mode))
                return 0;
        for (size_t i = 0; i < walk_n; i++)
                if (walk_seen[i].dev == st->st_dev && walk_seen[i].ino == st->st_ino)
                        return 1;
        if (walk_n == walk_cap) {
                size_t cap = walk_cap ? walk_cap * 2 : 256;
                void *n = realloc(walk_seen, cap * sizeof(*walk_seen));
                if (!n)
                        return 0;
                walk_seen = n;
                walk_cap = cap;
        }
        walk_seen[walk_n].dev = st->st_dev;
        walk_seen[walk_n].ino = st->st_ino;
        walk_n++;
        return 0;
}

static int visit(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        if (flag == FTW_NS)
                return 0;
        if (seen_before(st))
                return 0;
        walk_bytes += (int64_t)st->st_blocks * 512;
        walk_inodes++;
        return 0;
}

static int64_t now_ns(clockid_t c)
{
        struct timespec ts;
        clock_gettime(c, &ts);
        return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static Runtime__V1__FilesystemUsage *usage(cri_ctx *ctx, const char *root, int64_t bytes, int64_t inodes)
{
        Runtime__V1__FilesystemUsage *u = CRI_NEW(ctx, runtime__v1__filesystem_usage);
        u->timestamp = now_ns(CLOCK_REALTIME);
        u->fs_id = CRI_NEW(ctx, runtime__v1__filesystem_identifier);
        u->fs_id->mountpoint = cri_strdup(ctx, root);
        u->used_bytes = CRI_NEW(ctx, runtime__v1__uint64_value);
        u->used_bytes->value = (uint64_t)bytes;
        u->inodes_used = CRI_NEW(ctx, runtime__v1__uint64_value);
        u->inodes_used->value = (uint64_t)inodes;
        return u;
}

int cri_rpc_image_fs_info(cri_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **ret_resp,
                          cc_error **ret_err)
{
        const char *root = image_store_root(ctx->daemon->image_store);
        int64_t bytes, inodes;
        pthread_mutex_lock(&cache_lock);
        int64_t now = now_ns(CLOCK_MONOTONIC);
        if (cache_at_ns == 0 || now - cache_at_ns > CACHE_NS || strcmp(cache_root, root) != 0) {
                walk_bytes = walk_inodes = 0;
                walk_n = 0;
                if (nftw(root, visit, 32, FTW_PHYS | FTW_MOUNT) != 0) {
                        pthread_mutex_unlock(&cache_lock);
                        return cc_error_errno(ret_err, "measure image store '%s'", root);
                }
                cache_bytes = walk_bytes;
                cache_inodes = walk_inodes;
                cache_at_ns = now;
                snprintf(cache_root, sizeof(cache_root), "%s", root);
        }
        bytes = cache_bytes;
        inodes = cache_inodes;
        pthread_mutex_unlock(&cache_lock);

        Runtime__V1__ImageFsInfoResponse *resp = CRI_NEW(ctx, runtime__v1__image_fs_info_response);
        resp->n_image_filesystems = 1;
        resp->image_filesystems = cri_alloc(ctx, sizeof(void *));
        resp->image_filesystems[0] = usage(ctx, root, bytes, inodes);
        /* Container writable layers live in the same store for now. */
        resp->n_container_filesystems = 1;
        resp->container_filesystems = cri_alloc(ctx, sizeof(void *));
        resp->container_filesystems[0] = usage(ctx, root, bytes, inodes);
        *ret_resp = &resp->base;
        return 0;
}
