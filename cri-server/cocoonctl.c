/* SPDX-License-Identifier: Apache-2.0 */
/* cocoonctl: the admin CLI. Talks to cocoond over its CRI socket. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.pb-c.h"
#include "api.pb-c.h"
#include "common/cleanup.h"
#include "cri-server/cocoonctl.h"
#include "cri-server/grpc-client.h"

#define DEFAULT_ADDRESS "unix:///run/cocoon/cocoon.sock"

static void usage(FILE *f)
{
        fprintf(f,
                "Usage: cocoonctl [OPTIONS] COMMAND\n\n"
                "Commands:\n"
                "  version      client and daemon versions\n"
                "  info         runtime status: conditions, handlers, checks, effective config\n"
                "  image import [--name REPO] PATH\n"
                "               load an OCI image layout (directory or tar) into cocoond's store\n"
                "  image ls     list images\n"
                "  image rm IMAGE...\n"
                "               remove images (by id, tag or digest)\n"
                "  run [--name NAME] [--pod POD] [--host-network] [--env K=V]... [--tty]\n"
                "      [--log-dir DIR] IMAGE [-- CMD...]\n"
                "               start a container (in a new pod unless --pod; its log under DIR,\n"
                "               default /var/log/cocoon/pods); prints the ids\n"
                "  pod ls | pod inspect POD | pod rm POD...\n"
                "               list pods, show one (verbose), stop and remove pods\n"
                "  ps [-a]      list running (-a: all) containers\n"
                "  exec CTR [--timeout SECS] -- CMD...\n"
                "               run a command in a container (ExecSync); exits with its code\n"
                "  logs CTR     print a container's log\n"
                "  rm CTR...    stop and remove containers\n\n"
                "Options:\n"
                "  -a, --address ADDR   cocoond socket (default " DEFAULT_ADDRESS ",\n"
                "                       or $COCOON_ADDRESS)\n"
                "  -t, --timeout SECS   per-call timeout (default 10)\n"
                "      --json           machine-readable output\n"
                "  -h, --help           show this help\n");
}

int ctl_call(ctl *c, const char *method, const ProtobufCMessage *req,
             const ProtobufCMessageDescriptor *resp_desc, int timeout_ms, ProtobufCMessage **ret)
{
        size_t n = protobuf_c_message_get_packed_size(req);
        _cleanup_free_ uint8_t *buf = malloc(n ? n : 1);
        if (!buf)
                return -ENOMEM;
        protobuf_c_message_pack(req, buf);
        _cleanup_free_ uint8_t *resp = NULL;
        _cleanup_free_ char *msg = NULL;
        size_t resp_len = 0;
        int code = 0;
        _cleanup_error_ cc_error *err = NULL;
        if (cri_grpc_call(c->ch, method, buf, n, timeout_ms > 0 ? timeout_ms : c->timeout_ms, &resp, &resp_len, &code, &msg, &err) < 0) {
                fprintf(stderr, "cocoonctl: %s: %s\n", c->address, err->msg);
                return -EIO;
        }
        if (code != 0) {
                fprintf(stderr, "cocoonctl: %s: %s (gRPC code %d)\n", c->address,
                        msg ? msg : "call failed", code);
                return -EIO;
        }
        *ret = protobuf_c_message_unpack(resp_desc, NULL, resp_len, resp);
        if (!*ret) {
                fprintf(stderr, "cocoonctl: malformed %s response\n", method);
                return -EBADMSG;
        }
        return 0;
}

static int call(ctl *c, const char *method, const ProtobufCMessage *req,
                const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **ret)
{
        return ctl_call(c, method, req, resp_desc, 0, ret);
}

static int cmd_version(ctl *c)
{
        Runtime__V1__VersionRequest req = RUNTIME__V1__VERSION_REQUEST__INIT;
        req.version = (char *)"0.1.0";
        Runtime__V1__VersionResponse *resp = NULL;
        if (call(c, "/runtime.v1.RuntimeService/Version", &req.base, &runtime__v1__version_response__descriptor,
                 (ProtobufCMessage **)&resp) < 0)
                return 1;
        if (c->json) {
                printf("{\"client\":\"%s\",\"runtime_name\":\"%s\",\"runtime_version\":\"%s\","
                       "\"runtime_api_version\":\"%s\"}\n",
                       PACKAGE_VERSION, resp->runtime_name, resp->runtime_version, resp->runtime_api_version);
        } else {
                printf("Client:            cocoonctl %s\n", PACKAGE_VERSION);
                printf("RuntimeName:       %s\n", resp->runtime_name);
                printf("RuntimeVersion:    %s\n", resp->runtime_version);
                printf("RuntimeApiVersion: %s\n", resp->runtime_api_version);
        }
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        return 0;
}

static int cmd_info(ctl *c)
{
        Runtime__V1__StatusRequest req = RUNTIME__V1__STATUS_REQUEST__INIT;
        req.verbose = 1;
        Runtime__V1__StatusResponse *resp = NULL;
        if (call(c, "/runtime.v1.RuntimeService/Status", &req.base, &runtime__v1__status_response__descriptor,
                 (ProtobufCMessage **)&resp) < 0)
                return 1;
        bool all_ok = true;
        json_object *out = json_object_new_object();
        json_object *conds = json_object_new_array();
        for (size_t i = 0; resp->status && i < resp->status->n_conditions; i++) {
                Runtime__V1__RuntimeCondition *k = resp->status->conditions[i];
                all_ok &= k->status;
                if (c->json) {
                        json_object *o = json_object_new_object();
                        json_object_object_add(o, "type", json_object_new_string(k->type));
                        json_object_object_add(o, "status", json_object_new_boolean(k->status));
                        json_object_object_add(o, "reason", json_object_new_string(k->reason));
                        json_object_object_add(o, "message", json_object_new_string(k->message));
                        json_object_array_add(conds, o);
                } else {
                        printf("%-13s %-5s %s%s%s\n", k->type, k->status ? "true" : "false", k->reason,
                               *k->message ? ": " : "", k->message);
                }
        }
        json_object_object_add(out, "conditions", conds);
        for (size_t i = 0; i < resp->n_info; i++) {
                json_object *v = json_tokener_parse(resp->info[i]->value);
                if (c->json) {
                        json_object_object_add(out, resp->info[i]->key, v ? v : json_object_new_string(resp->info[i]->value));
                        continue;
                }
                if (strcmp(resp->info[i]->key, "config") == 0 && v && json_object_is_type(v, json_type_string))
                        printf("\n# effective configuration\n%s", json_object_get_string(v));
                else
                        printf("%s: %s\n", resp->info[i]->key,
                               v ? json_object_to_json_string_ext(v, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE) : resp->info[i]->value);
                json_object_put(v);
        }
        if (!c->json) {
                printf("handlers:");
                for (size_t i = 0; i < resp->n_runtime_handlers; i++)
                        printf(" %s", *resp->runtime_handlers[i]->name ? resp->runtime_handlers[i]->name : "(default)");
                printf("\n");
        } else {
                printf("%s\n", json_object_to_json_string_ext(out, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        }
        json_object_put(out);
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        return all_ok ? 0 : 3; /* 3: daemon reachable but not ready */
}

static int cmd_image_import(ctl *c)
{
        const char *name = NULL, *path = NULL;
        for (int i = 1; i < c->argc; i++) {
                if (strcmp(c->argv[i], "--name") == 0 && i + 1 < c->argc)
                        name = c->argv[++i];
                else if (!path && c->argv[i][0] != '-')
                        path = c->argv[i];
                else {
                        fprintf(stderr, "cocoonctl: image import: unexpected argument '%s'\n", c->argv[i]);
                        return 2;
                }
        }
        if (!path) {
                fprintf(stderr, "cocoonctl: image import: PATH missing\n");
                return 2;
        }
        _cleanup_free_ char *abs = realpath(path, NULL);
        if (!abs) {
                fprintf(stderr, "cocoonctl: image import: %s: %s\n", path, strerror(errno));
                return 1;
        }
        Cocoon__Admin__V1__ImportImageRequest req = COCOON__ADMIN__V1__IMPORT_IMAGE_REQUEST__INIT;
        req.path = abs;
        req.name = (char *)(name ? name : "");
        Cocoon__Admin__V1__ImportImageResponse *resp = NULL;
        if (call(c, "/cocoon.admin.v1.Admin/ImportImage", &req.base,
                 &cocoon__admin__v1__import_image_response__descriptor, (ProtobufCMessage **)&resp) < 0)
                return 1;
        for (size_t i = 0; i < resp->n_image_ids; i++)
                printf("%s\n", resp->image_ids[i]);
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        return 0;
}

static int cmd_image_ls(ctl *c)
{
        Runtime__V1__ListImagesRequest req = RUNTIME__V1__LIST_IMAGES_REQUEST__INIT;
        Runtime__V1__ListImagesResponse *resp = NULL;
        if (call(c, "/runtime.v1.ImageService/ListImages", &req.base,
                 &runtime__v1__list_images_response__descriptor, (ProtobufCMessage **)&resp) < 0)
                return 1;
        if (!c->json)
                printf("%-60s %-15s %s\n", "IMAGE", "IMAGE ID", "SIZE");
        json_object *arr = json_object_new_array();
        for (size_t i = 0; i < resp->n_images; i++) {
                Runtime__V1__Image *im = resp->images[i];
                const char *id = strncmp(im->id, "sha256:", 7) == 0 ? im->id + 7 : im->id;
                if (c->json) {
                        json_object *o = json_object_new_object();
                        json_object_object_add(o, "id", json_object_new_string(im->id));
                        json_object *tags = json_object_new_array();
                        for (size_t t = 0; t < im->n_repo_tags; t++)
                                json_object_array_add(tags, json_object_new_string(im->repo_tags[t]));
                        json_object_object_add(o, "repoTags", tags);
                        json_object_object_add(o, "size", json_object_new_int64((int64_t)im->size));
                        json_object_array_add(arr, o);
                        continue;
                }
                if (im->n_repo_tags == 0)
                        printf("%-60s %-15.13s %.1fMB\n", "<none>", id, im->size / 1e6);
                for (size_t t = 0; t < im->n_repo_tags; t++)
                        printf("%-60s %-15.13s %.1fMB\n", im->repo_tags[t], id, im->size / 1e6);
        }
        if (c->json)
                printf("%s\n", json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(arr);
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        return 0;
}

static int cmd_image_rm(ctl *c)
{
        if (c->argc < 2) {
                fprintf(stderr, "cocoonctl: image rm: IMAGE missing\n");
                return 2;
        }
        int rc = 0;
        for (int i = 1; i < c->argc; i++) {
                Runtime__V1__ImageSpec spec = RUNTIME__V1__IMAGE_SPEC__INIT;
                spec.image = c->argv[i];
                Runtime__V1__RemoveImageRequest req = RUNTIME__V1__REMOVE_IMAGE_REQUEST__INIT;
                req.image = &spec;
                ProtobufCMessage *resp = NULL;
                if (call(c, "/runtime.v1.ImageService/RemoveImage", &req.base,
                         &runtime__v1__remove_image_response__descriptor, &resp) < 0) {
                        rc = 1;
                        continue;
                }
                printf("Deleted: %s\n", c->argv[i]);
                protobuf_c_message_free_unpacked(resp, NULL);
        }
        return rc;
}

static int cmd_image(ctl *c)
{
        if (c->argc < 2) {
                fprintf(stderr, "cocoonctl: image: import, ls or rm?\n");
                return 2;
        }
        c->argc--;
        c->argv++;
        if (strcmp(c->argv[0], "import") == 0)
                return cmd_image_import(c);
        if (strcmp(c->argv[0], "ls") == 0 || strcmp(c->argv[0], "list") == 0)
                return cmd_image_ls(c);
        if (strcmp(c->argv[0], "rm") == 0 || strcmp(c->argv[0], "remove") == 0)
                return cmd_image_rm(c);
        fprintf(stderr, "cocoonctl: image: unknown subcommand '%s'\n", c->argv[0]);
        return 2;
}

int main(int argc, char **argv)
{
        enum { OPT_JSON = 256 };
        static const struct option opts[] = {
                { "address", required_argument, NULL, 'a' },
                { "timeout", required_argument, NULL, 't' },
                { "json", no_argument, NULL, OPT_JSON },
                { "help", no_argument, NULL, 'h' },
                { 0 },
        };
        ctl c = { .address = getenv("COCOON_ADDRESS"), .timeout_ms = 10000 };
        if (!c.address || !*c.address)
                c.address = DEFAULT_ADDRESS;
        int o;
        while ((o = getopt_long(argc, argv, "+a:t:h", opts, NULL)) != -1) {
                switch (o) {
                case 'a':
                        c.address = optarg;
                        break;
                case 't': {
                        char *end;
                        long s = strtol(optarg, &end, 10);
                        if (*end || s <= 0 || s > 86400) {
                                fprintf(stderr, "cocoonctl: bad timeout '%s'\n", optarg);
                                return 2;
                        }
                        c.timeout_ms = (int)s * 1000;
                        c.timeout_set = true;
                        break;
                }
                case OPT_JSON:
                        c.json = true;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (optind >= argc) {
                usage(stderr);
                return 2;
        }
        const char *cmd = argv[optind];
        int (*fn)(ctl *) = NULL;
        if (strcmp(cmd, "version") == 0)
                fn = cmd_version;
        else if (strcmp(cmd, "info") == 0)
                fn = cmd_info;
        else if (strcmp(cmd, "image") == 0 || strcmp(cmd, "images") == 0)
                fn = cmd_image;
        else if (strcmp(cmd, "run") == 0)
                fn = ctl_cmd_run;
        else if (strcmp(cmd, "pod") == 0 || strcmp(cmd, "pods") == 0)
                fn = ctl_cmd_pod;
        else if (strcmp(cmd, "ps") == 0)
                fn = ctl_cmd_ps;
        else if (strcmp(cmd, "exec") == 0)
                fn = ctl_cmd_exec;
        else if (strcmp(cmd, "logs") == 0)
                fn = ctl_cmd_logs;
        else if (strcmp(cmd, "rm") == 0)
                fn = ctl_cmd_rm;
        c.argc = argc - optind;
        c.argv = argv + optind;
        if (!fn) {
                fprintf(stderr, "cocoonctl: unknown command '%s'\n", cmd);
                usage(stderr);
                return 2;
        }
        cri_grpc_client_init();
        _cleanup_error_ cc_error *err = NULL;
        if (cri_grpc_channel_open(c.address, &c.ch, &err) < 0) {
                fprintf(stderr, "cocoonctl: %s\n", err->msg);
                return 1;
        }
        int r = fn(&c);
        cri_grpc_channel_close(c.ch);
        cri_grpc_client_shutdown();
        return r;
}
