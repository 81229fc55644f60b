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

#include "api.pb-c.h"
#include "common/cleanup.h"
#include "cri-server/grpc-client.h"

#define DEFAULT_ADDRESS "unix:///run/cocoon/cocoon.sock"

typedef struct ctl {
        const char *address;
        int timeout_ms;
        bool json;
        cri_grpc_channel *ch;
} ctl;

static void usage(FILE *f)
{
        fprintf(f,
                "Usage: cocoonctl [OPTIONS] COMMAND\n\n"
                "Commands:\n"
                "  version      client and daemon versions\n"
                "  info         runtime status: conditions, handlers, checks, effective config\n\n"
                "Options:\n"
                "  -a, --address ADDR   cocoond socket (default " DEFAULT_ADDRESS ",\n"
                "                       or $COCOON_ADDRESS)\n"
                "  -t, --timeout SECS   per-call timeout (default 10)\n"
                "      --json           machine-readable output\n"
                "  -h, --help           show this help\n");
}

/* Packs req, calls method, unpacks into *ret of resp_desc. Prints errors. */
static int call(ctl *c, const char *method, const ProtobufCMessage *req,
                const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **ret)
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
        if (cri_grpc_call(c->ch, method, buf, n, c->timeout_ms, &resp, &resp_len, &code, &msg, &err) < 0) {
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
