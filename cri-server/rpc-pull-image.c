/* SPDX-License-Identifier: Apache-2.0 */
/* PullImage: resolve on the registry, download into the store (verified),
 * unpack each layer once per chain id, record the image; returns its id. */
#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "cri-server/image-convert.h"
#include "image/commit.h"
#include "image/pull.h"
#include "image/ref.h"

/* AuthConfig.auth is base64("user:password"), as in a docker config.json. */
static int decode_basic(const char *b64, char **ret_user, char **ret_pass, cc_error **ret_err)
{
        size_t n = strlen(b64);
        if (n > 4096)
                return cc_error_set(ret_err, -EINVAL, "auth: credentials are too long");
        _cleanup_free_ unsigned char *out = malloc(n + 1);
        if (!out)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        int len = EVP_DecodeBlock(out, (const unsigned char *)b64, (int)n);
        if (len < 0)
                return cc_error_set(ret_err, -EINVAL, "auth: not valid base64");
        /* EVP_DecodeBlock counts padding as zero bytes. */
        while (n > 0 && b64[n - 1] == '=') {
                n--;
                len--;
        }
        out[len] = 0;
        if (memchr(out, 0, (size_t)len))
                return cc_error_set(ret_err, -EINVAL, "auth: credentials contain a NUL byte");
        char *colon = strchr((char *)out, ':');
        if (!colon)
                return cc_error_set(ret_err, -EINVAL, "auth: expected base64 of 'user:password'");
        *colon = 0;
        *ret_user = strdup((char *)out);
        *ret_pass = strdup(colon + 1);
        if (!*ret_user || !*ret_pass)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        return 0;
}

int cri_rpc_pull_image(cri_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **ret_resp,
                       cc_error **ret_err)
{
        const Runtime__V1__PullImageRequest *req = (const void *)in;
        const cc_config *cfg = ctx->daemon->cfg;
        const char *spec = NULL;
        if (cri_image_spec(req->image, &spec, ret_err) < 0)
                return -EINVAL;
        _cleanup_image_ref_ image_ref *ref = NULL;
        if (image_ref_parse(spec, &ref, ret_err) < 0)
                return -EINVAL;

        image_registry_config rc = { .host = ref->domain };
        const cc_config_registry *reg = cc_config_find_registry(cfg, ref->domain);
        if (reg) {
                rc.mirrors = reg->mirrors;
                rc.insecure_skip_verify = reg->insecure_skip_verify;
                rc.plain_http = reg->plain_http;
                rc.ca_file = reg->ca_file;
        }
        image_registry_auth auth = { 0 };
        _cleanup_free_ char *user = NULL, *pass = NULL;
        const Runtime__V1__AuthConfig *a = req->auth;
        if (a) {
                if (a->registry_token && *a->registry_token)
                        auth.registry_token = a->registry_token;
                else if (a->identity_token && *a->identity_token)
                        auth.identity_token = a->identity_token;
                else if (a->username && *a->username) {
                        auth.username = a->username;
                        auth.password = a->password ? a->password : "";
                } else if (a->auth && *a->auth) {
                        if (decode_basic(a->auth, &user, &pass, ret_err) < 0)
                                return -EINVAL;
                        auth.username = user;
                        auth.password = pass;
                }
        }
        image_pull_opts po = {
                .registry = {
                        .config = &rc,
                        .auth = a ? &auth : NULL,
                        .tokens = ctx->daemon->tokens,
                        .cancelled = ctx->call->cancelled,
                        .max_manifest_size = (size_t)cfg->image.max_manifest_size,
                },
                .concurrency = (unsigned)cfg->image.max_concurrent_downloads,
        };
        image_pull_result res = { 0 };
        int r = image_pull(ctx->daemon->image_store, ref, &po, &res, ret_err);
        if (r < 0)
                return r;
        _cleanup_free_ char *tagged = ref->tag ? image_ref_tagged(ref) : NULL;
        _cleanup_free_ char *digested = image_ref_with_digest(ref, res.repo_digest);
        image_commit_opts co = {
                .repo_tag = tagged,
                .repo_digest = digested,
                .cancelled = ctx->call->cancelled,
        };
        _cleanup_free_ char *id = NULL;
        r = image_commit(ctx->daemon->image_store, ctx->daemon->images, res.manifest_digest, &co, &id, ret_err);
        if (r < 0) {
                cc_error_prefix(ret_err, "pull '%s'", spec);
                image_pull_result_clear(&res);
                return r;
        }
        log_info("rpc=PullImage image=%s id=%s downloaded_bytes=%lld", spec, id, (long long)res.downloaded);
        image_pull_result_clear(&res);
        Runtime__V1__PullImageResponse *resp = CRI_NEW(ctx, runtime__v1__pull_image_response);
        resp->image_ref = cri_strdup(ctx, id);
        *ret_resp = &resp->base;
        return 0;
}
