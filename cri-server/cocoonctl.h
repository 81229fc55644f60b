/* SPDX-License-Identifier: Apache-2.0 */
/* cocoonctl internals shared by its command files. */
#pragma once

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>

#include "cri-server/grpc-client.h"

typedef struct ctl {
        int argc;     /* the command's own arguments (after COMMAND) */
        char **argv;
        const char *address;
        int timeout_ms;
        bool timeout_set; /* -t given: also bounds the slow calls */
        bool json;
        cri_grpc_channel *ch;
} ctl;

/* Packs req, calls method (with timeout_ms, or c->timeout_ms when <= 0),
 * unpacks into *ret of resp_desc. Prints errors; returns < 0 on failure. */
int ctl_call(ctl *c, const char *method, const ProtobufCMessage *req,
             const ProtobufCMessageDescriptor *resp_desc, int timeout_ms, ProtobufCMessage **ret);

/* Pod and container commands (cocoonctl-pod.c). */
int ctl_cmd_run(ctl *c);
int ctl_cmd_pod(ctl *c);
int ctl_cmd_ps(ctl *c);
int ctl_cmd_exec(ctl *c);
int ctl_cmd_logs(ctl *c);
int ctl_cmd_rm(ctl *c);
