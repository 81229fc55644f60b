/* SPDX-License-Identifier: Apache-2.0 */
/* Test driver: pulls an image into a store directory and prints the result
 * as JSON. Not installed.
 *
 *   cocoon-pull --store DIR [--parallel N] [--repeat N] [--concurrency N]
 *               [--user U --password P] [--identity-token T] [--registry-token T]
 *               [--mirror URL]... [--plain-http] [--insecure] [--ca-file PEM]
 *               [--config TOML] [--platform os/arch]
 *               [--max-attempts N] [--backoff-ms N] [--connect-timeout-ms N]
 *               [--low-speed-time S] [--max-manifest-size N] [--cancel-after-ms N] REF
 *
 * One pull prints {"ok":true,"repo_digest":...,"config_digest":...,"layers":[...]}
 * or {"ok":false,"errno":"EACCES","code":-13,"message":...}; --parallel N runs N
 * pulls of REF on N threads sharing one store and token cache, --repeat N runs
 * N pulls one after the other; both print {"pulls":[...],"token_fetches":K}.
 * --config loads a cocoond configuration file and applies its
 * [image.registries."HOST"] table for REF's registry the way PullImage does
 * (mirrors, insecure_skip_verify, plain_http, ca_file); options given after
 * it override. --debug logs the client's debug lines on stderr.
 * Exit status 0 iff every pull succeeded. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "common/cleanup.h"
#include "common/config.h"
#include "common/error.h"
#include "common/log.h"
#include "image/pull.h"
#include "image/ref.h"
#include "image/store.h"

typedef struct job {
        image_store *store;
        const image_ref *ref;
        const image_pull_opts *opts;
        json_object *out;
} job;

static json_object *result_json(int r, const image_pull_result *res, cc_error *err)
{
        json_object *o = json_object_new_object();
        json_object_object_add(o, "ok", json_object_new_boolean(r >= 0));
        if (r < 0) {
                const char *name = strerrorname_np(-err->code);
                json_object_object_add(o, "errno", json_object_new_string(name ? name : "?"));
                json_object_object_add(o, "code", json_object_new_int(err->code));
                json_object_object_add(o, "message", json_object_new_string(err->msg));
                return o;
        }
        json_object_object_add(o, "repo_digest", json_object_new_string(res->repo_digest));
        json_object_object_add(o, "manifest_digest", json_object_new_string(res->manifest_digest));
        json_object_object_add(o, "manifest_media_type",
                               json_object_new_string(res->manifest_media_type));
        json_object_object_add(o, "config_digest", json_object_new_string(res->config_digest));
        json_object_object_add(o, "size", json_object_new_int64(res->size));
        json_object_object_add(o, "downloaded", json_object_new_int64(res->downloaded));
        json_object *ls = json_object_new_array();
        for (size_t i = 0; i < res->n_layers; i++) {
                json_object *l = json_object_new_object();
                json_object_object_add(l, "digest", json_object_new_string(res->layers[i].digest));
                json_object_object_add(l, "media_type",
                                       json_object_new_string(res->layers[i].media_type));
                json_object_object_add(l, "size", json_object_new_int64(res->layers[i].size));
                json_object_object_add(l, "diff_id", json_object_new_string(res->layers[i].diff_id));
                json_object_object_add(l, "chain_id", json_object_new_string(res->layers[i].chain_id));
                json_object_array_add(ls, l);
        }
        json_object_object_add(o, "layers", ls);
        return o;
}

static void *run_job(void *arg)
{
        job *j = arg;
        image_pull_result res = { 0 };
        cc_error *err = NULL;
        int r = image_pull(j->store, j->ref, j->opts, &res, &err);
        j->out = result_json(r, &res, err);
        image_pull_result_clear(&res);
        cc_error_free(err);
        return NULL;
}

static atomic_bool cancel_flag;

static void *canceller(void *arg)
{
        long ms = (long)(intptr_t)arg;
        struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
        atomic_store(&cancel_flag, true);
        return NULL;
}

static long num(const char *s, const char *what)
{
        char *e = NULL;
        errno = 0;
        long v = strtol(s, &e, 10);
        if (errno || !*s || *e || v < 0) {
                fprintf(stderr, "cocoon-pull: invalid %s '%s'\n", what, s);
                exit(2);
        }
        return v;
}

int main(int argc, char **argv)
{
        enum { O_STORE = 256, O_PARALLEL, O_REPEAT, O_CONC, O_USER, O_PASS, O_IDTOK, O_REGTOK,
               O_MIRROR, O_PLAIN, O_INSECURE, O_PLATFORM, O_ATTEMPTS, O_BACKOFF, O_CTIMEOUT,
               O_LOWSPEED, O_MAXMAN, O_CANCEL, O_DEBUG, O_CAFILE, O_CONFIG };
        static const struct option lopts[] = {
                { "store", required_argument, NULL, O_STORE },
                { "parallel", required_argument, NULL, O_PARALLEL },
                { "repeat", required_argument, NULL, O_REPEAT },
                { "concurrency", required_argument, NULL, O_CONC },
                { "user", required_argument, NULL, O_USER },
                { "password", required_argument, NULL, O_PASS },
                { "identity-token", required_argument, NULL, O_IDTOK },
                { "registry-token", required_argument, NULL, O_REGTOK },
                { "mirror", required_argument, NULL, O_MIRROR },
                { "plain-http", no_argument, NULL, O_PLAIN },
                { "insecure", no_argument, NULL, O_INSECURE },
                { "platform", required_argument, NULL, O_PLATFORM },
                { "max-attempts", required_argument, NULL, O_ATTEMPTS },
                { "backoff-ms", required_argument, NULL, O_BACKOFF },
                { "connect-timeout-ms", required_argument, NULL, O_CTIMEOUT },
                { "low-speed-time", required_argument, NULL, O_LOWSPEED },
                { "max-manifest-size", required_argument, NULL, O_MAXMAN },
                { "cancel-after-ms", required_argument, NULL, O_CANCEL },
                { "debug", no_argument, NULL, O_DEBUG },
                { "ca-file", required_argument, NULL, O_CAFILE },
                { "config", required_argument, NULL, O_CONFIG },
                { 0 },
        };
        const char *store_dir = NULL, *platform = NULL, *config_path = NULL;
        bool plain = false, insecure = false;
        const char *ca_file = NULL;
        long parallel = 0, repeat = 0, cancel_ms = -1;
        image_registry_auth auth = { 0 };
        bool have_auth = false;
        char *mirrors[17] = { 0 };
        size_t n_mirrors = 0;
        image_registry_config rcfg = { 0 };
        image_pull_opts opts = { 0 };
        int c;
        while ((c = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
                switch (c) {
                case O_STORE: store_dir = optarg; break;
                case O_PARALLEL: parallel = num(optarg, "--parallel"); break;
                case O_REPEAT: repeat = num(optarg, "--repeat"); break;
                case O_CONC: opts.concurrency = (unsigned)num(optarg, "--concurrency"); break;
                case O_USER: auth.username = optarg; have_auth = true; break;
                case O_PASS: auth.password = optarg; have_auth = true; break;
                case O_IDTOK: auth.identity_token = optarg; have_auth = true; break;
                case O_REGTOK: auth.registry_token = optarg; have_auth = true; break;
                case O_MIRROR:
                        if (n_mirrors >= 16) {
                                fprintf(stderr, "cocoon-pull: too many mirrors\n");
                                return 2;
                        }
                        mirrors[n_mirrors++] = optarg;
                        break;
                case O_PLAIN: plain = true; break;
                case O_INSECURE: insecure = true; break;
                case O_CAFILE: ca_file = optarg; break;
                case O_CONFIG: config_path = optarg; break;
                case O_PLATFORM: platform = optarg; break;
                case O_ATTEMPTS: opts.registry.max_attempts = (unsigned)num(optarg, "--max-attempts"); break;
                case O_BACKOFF: opts.registry.backoff_ms = (unsigned)num(optarg, "--backoff-ms"); break;
                case O_CTIMEOUT: opts.registry.connect_timeout_ms = num(optarg, "--connect-timeout-ms"); break;
                case O_LOWSPEED: opts.registry.low_speed_time_s = num(optarg, "--low-speed-time"); break;
                case O_MAXMAN: opts.registry.max_manifest_size = (size_t)num(optarg, "--max-manifest-size"); break;
                case O_CANCEL: cancel_ms = num(optarg, "--cancel-after-ms"); break;
                case O_DEBUG: cc_log_set_level(CC_LOG_DEBUG); break;
                default: return 2;
                }
        }
        if (!store_dir || optind != argc - 1) {
                fprintf(stderr, "usage: cocoon-pull --store DIR [options] REF\n");
                return 2;
        }
        cc_error *err = NULL;
        _cleanup_(image_ref_freep) image_ref *ref = NULL;
        _cleanup_(image_store_freep) image_store *store = NULL;
        _cleanup_(image_token_cache_freep) image_token_cache *tokens = NULL;
        _cleanup_(image_platform_freep) image_platform *plat = NULL;
        _cleanup_config_ cc_config *cfg = NULL;
        if ((config_path && cc_config_load(&cfg, config_path, NULL, true, &err) < 0) ||
            image_ref_parse(argv[optind], &ref, &err) < 0 ||
            image_store_open(store_dir, &store, &err) < 0 ||
            image_registry_global_init(&err) < 0 || image_token_cache_new(&tokens, &err) < 0 ||
            (platform && image_platform_parse(platform, &plat, &err) < 0)) {
                json_object *o = result_json(err->code, NULL, err);
                puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
                json_object_put(o);
                cc_error_free(err);
                return 1;
        }
        rcfg.host = image_ref_registry_host(ref);
        const cc_config_registry *creg = cfg ? cc_config_find_registry(cfg, rcfg.host) : NULL;
        if (creg) { /* as cri-server/rpc-pull-image.c does */
                rcfg.mirrors = creg->mirrors;
                rcfg.insecure_skip_verify = creg->insecure_skip_verify;
                rcfg.plain_http = creg->plain_http;
                rcfg.ca_file = creg->ca_file;
        }
        if (n_mirrors)
                rcfg.mirrors = mirrors;
        rcfg.plain_http |= plain;
        rcfg.insecure_skip_verify |= insecure;
        if (ca_file)
                rcfg.ca_file = ca_file;
        opts.registry.config = &rcfg;
        opts.registry.auth = have_auth ? &auth : NULL;
        opts.registry.tokens = tokens;
        opts.registry.cancelled = &cancel_flag;
        opts.platform = plat;

        pthread_t cth;
        if (cancel_ms >= 0)
                if (pthread_create(&cth, NULL, canceller, (void *)(intptr_t)cancel_ms) == 0)
                        pthread_detach(cth);

        bool multi = parallel > 0 || repeat > 0;
        long n = parallel > 0 ? parallel : repeat > 0 ? repeat : 1;
        if (n > 256)
                n = 256;
        job *jobs = calloc((size_t)n, sizeof(*jobs));
        pthread_t *th = calloc((size_t)n, sizeof(*th));
        if (!jobs || !th)
                return 1;
        for (long i = 0; i < n; i++) {
                jobs[i] = (job){ store, ref, &opts, NULL };
                if (parallel > 0)
                        pthread_create(&th[i], NULL, run_job, &jobs[i]);
                else
                        run_job(&jobs[i]);
        }
        bool ok = true;
        json_object *pulls = json_object_new_array();
        for (long i = 0; i < n; i++) {
                if (parallel > 0)
                        pthread_join(th[i], NULL);
                json_object *okv = json_object_object_get(jobs[i].out, "ok");
                ok = ok && json_object_get_boolean(okv);
                json_object_array_add(pulls, jobs[i].out);
        }
        json_object *out;
        if (multi) {
                out = json_object_new_object();
                json_object_object_add(out, "pulls", pulls);
        } else {
                out = json_object_get(json_object_array_get_idx(pulls, 0));
                json_object_put(pulls);
        }
        json_object_object_add(out, "token_fetches",
                               json_object_new_int((int)image_token_cache_fetches(tokens)));
        puts(json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN));
        json_object_put(out);
        free(jobs);
        free(th);
        return ok ? 0 : 1;
}
