/* SPDX-License-Identifier: Apache-2.0 */
/* cocoonctl's pod and container commands: a small crictl for operators who
 * have only cocoon on the node (Debian 12 packages no crictl). Everything
 * goes through the CRI socket, exactly as the kubelet's calls do. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "api.pb-c.h"
#include "common/cleanup.h"
#include "common/id.h"
#include "cri-server/cocoonctl.h"

#define RS "/runtime.v1.RuntimeService/"
#define SLOW_MS (300 * 1000) /* pod start, stop: a VM boot under TCG */
#define MAX_ENV 256
#define MAX_ARGS 256

static int slow(const ctl *c)
{
        return c->timeout_set ? c->timeout_ms : SLOW_MS;
}

/* The first 13 characters (crictl's width). Two buffers in turn: a line
 * may show two ids. */
static const char *short_id(const char *id)
{
        static __thread char buf[2][14];
        static __thread int turn;
        turn ^= 1;
        snprintf(buf[turn], sizeof(buf[turn]), "%.13s", id ? id : "");
        return buf[turn];
}

static void fmt_age(int64_t created_ns, char *buf, size_t n)
{
        int64_t s = (int64_t)time(NULL) - created_ns / 1000000000;
        if (s < 0)
                s = 0;
        if (s < 120)
                snprintf(buf, n, "%" PRId64 "s", s);
        else if (s < 7200)
                snprintf(buf, n, "%" PRId64 "m", s / 60);
        else if (s < 2 * 86400)
                snprintf(buf, n, "%" PRId64 "h", s / 3600);
        else
                snprintf(buf, n, "%" PRId64 "d", s / 86400);
}

/* ---- run ------------------------------------------------------------------ */

static int run_pod(ctl *c, const char *name, bool host_network, const char *log_base, char **ret_id)
{
        char uid[CC_ID_LEN + 1];
        _cleanup_error_ cc_error *err = NULL;
        if (cc_id_new(uid, &err) < 0) {
                fprintf(stderr, "cocoonctl: %s\n", err->msg);
                return -EIO;
        }
        uid[32] = '\0';
        Runtime__V1__PodSandboxMetadata md = RUNTIME__V1__POD_SANDBOX_METADATA__INIT;
        md.name = (char *)name;
        md.namespace_ = (char *)"default";
        md.uid = uid;
        _cleanup_free_ char *logdir = NULL;
        if (asprintf(&logdir, "%s/default_%s_%s", log_base, name, uid) < 0)
                return -ENOMEM;
        Runtime__V1__NamespaceOption ns = RUNTIME__V1__NAMESPACE_OPTION__INIT;
        ns.network = host_network ? RUNTIME__V1__NAMESPACE_MODE__NODE : RUNTIME__V1__NAMESPACE_MODE__POD;
        ns.pid = RUNTIME__V1__NAMESPACE_MODE__CONTAINER;
        ns.ipc = RUNTIME__V1__NAMESPACE_MODE__POD;
        Runtime__V1__LinuxSandboxSecurityContext sc = RUNTIME__V1__LINUX_SANDBOX_SECURITY_CONTEXT__INIT;
        sc.namespace_options = &ns;
        Runtime__V1__LinuxPodSandboxConfig lx = RUNTIME__V1__LINUX_POD_SANDBOX_CONFIG__INIT;
        lx.security_context = &sc;
        Runtime__V1__PodSandboxConfig cfg = RUNTIME__V1__POD_SANDBOX_CONFIG__INIT;
        cfg.metadata = &md;
        cfg.hostname = (char *)name;
        cfg.log_directory = logdir;
        cfg.linux = &lx;
        Runtime__V1__RunPodSandboxRequest req = RUNTIME__V1__RUN_POD_SANDBOX_REQUEST__INIT;
        req.config = &cfg;
        Runtime__V1__RunPodSandboxResponse *resp = NULL;
        if (ctl_call(c, RS "RunPodSandbox", &req.base, &runtime__v1__run_pod_sandbox_response__descriptor,
                     slow(c), (ProtobufCMessage **)&resp) < 0)
                return -EIO;
        *ret_id = strdup(resp->pod_sandbox_id);
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        return *ret_id ? 0 : -ENOMEM;
}

static int pod_config(ctl *c, const char *pod, Runtime__V1__PodSandboxStatusResponse **ret)
{
        Runtime__V1__PodSandboxStatusRequest req = RUNTIME__V1__POD_SANDBOX_STATUS_REQUEST__INIT;
        req.pod_sandbox_id = (char *)pod;
        return ctl_call(c, RS "PodSandboxStatus", &req.base, &runtime__v1__pod_sandbox_status_response__descriptor,
                        0, (ProtobufCMessage **)ret);
}

static int stop_remove_pod(ctl *c, const char *id)
{
        Runtime__V1__StopPodSandboxRequest sreq = RUNTIME__V1__STOP_POD_SANDBOX_REQUEST__INIT;
        sreq.pod_sandbox_id = (char *)id;
        ProtobufCMessage *resp = NULL;
        if (ctl_call(c, RS "StopPodSandbox", &sreq.base, &runtime__v1__stop_pod_sandbox_response__descriptor,
                     slow(c), &resp) < 0)
                return -EIO;
        protobuf_c_message_free_unpacked(resp, NULL);
        Runtime__V1__RemovePodSandboxRequest rreq = RUNTIME__V1__REMOVE_POD_SANDBOX_REQUEST__INIT;
        rreq.pod_sandbox_id = (char *)id;
        if (ctl_call(c, RS "RemovePodSandbox", &rreq.base, &runtime__v1__remove_pod_sandbox_response__descriptor,
                     slow(c), &resp) < 0)
                return -EIO;
        protobuf_c_message_free_unpacked(resp, NULL);
        return 0;
}

int ctl_cmd_run(ctl *c)
{
        const char *name = "demo", *pod = NULL, *image = NULL, *log_base = "/var/log/cocoon/pods";
        bool host_network = false, tty = false;
        Runtime__V1__KeyValue envs[MAX_ENV], *envp[MAX_ENV];
        size_t n_env = 0;
        char *cmd[MAX_ARGS + 1];
        size_t n_cmd = 0;
        int i;
        for (i = 1; i < c->argc; i++) {
                const char *a = c->argv[i];
                if (strcmp(a, "--") == 0) {
                        i++;
                        break;
                } else if (strcmp(a, "--name") == 0 && i + 1 < c->argc) {
                        name = c->argv[++i];
                } else if (strcmp(a, "--pod") == 0 && i + 1 < c->argc) {
                        pod = c->argv[++i];
                } else if (strcmp(a, "--log-dir") == 0 && i + 1 < c->argc) {
                        log_base = c->argv[++i];
                        if (log_base[0] != '/') {
                                fprintf(stderr, "cocoonctl: run: --log-dir must be absolute\n");
                                return 2;
                        }
                } else if (strcmp(a, "--host-network") == 0) {
                        host_network = true;
                } else if (strcmp(a, "--tty") == 0) {
                        tty = true;
                } else if (strcmp(a, "--env") == 0 && i + 1 < c->argc) {
                        char *kv = c->argv[++i], *eq = strchr(kv, '=');
                        if (!eq || eq == kv || n_env == MAX_ENV) {
                                fprintf(stderr, "cocoonctl: run: bad --env '%s' (KEY=VALUE)\n", kv);
                                return 2;
                        }
                        *eq = '\0';
                        envs[n_env] = (Runtime__V1__KeyValue)RUNTIME__V1__KEY_VALUE__INIT;
                        envs[n_env].key = kv;
                        envs[n_env].value = eq + 1;
                        envp[n_env] = &envs[n_env];
                        n_env++;
                } else if (!image && a[0] != '-') {
                        image = a;
                } else {
                        fprintf(stderr, "cocoonctl: run: unexpected argument '%s'\n", a);
                        return 2;
                }
        }
        for (; i < c->argc && n_cmd < MAX_ARGS; i++)
                cmd[n_cmd++] = c->argv[i];
        if (!image) {
                fprintf(stderr, "cocoonctl: run: IMAGE missing\n");
                return 2;
        }
        _cleanup_error_ cc_error *err = NULL;
        if (cc_name_validate("--name", name, 63, &err) < 0) {
                fprintf(stderr, "cocoonctl: run: %s\n", err->msg);
                return 2;
        }

        _cleanup_free_ char *pod_id = NULL, *ctr_id = NULL, *log_path = NULL;
        bool new_pod = !pod;
        if (new_pod) {
                if (run_pod(c, name, host_network, log_base, &pod_id) < 0)
                        return 1;
        } else {
                pod_id = strdup(pod);
        }
        Runtime__V1__PodSandboxStatusResponse *st = NULL;
        if (pod_config(c, pod_id, &st) < 0 || !st->status) {
                if (st)
                        protobuf_c_message_free_unpacked(&st->base, NULL);
                goto fail;
        }
        free(pod_id);
        pod_id = strdup(st->status->id);

        Runtime__V1__ContainerMetadata md = RUNTIME__V1__CONTAINER_METADATA__INIT;
        md.name = (char *)name;
        Runtime__V1__ImageSpec is = RUNTIME__V1__IMAGE_SPEC__INIT;
        is.image = (char *)image;
        if (asprintf(&log_path, "%s/0.log", name) < 0)
                abort();
        Runtime__V1__ContainerConfig cc = RUNTIME__V1__CONTAINER_CONFIG__INIT;
        cc.metadata = &md;
        cc.image = &is;
        cc.command = n_cmd ? cmd : NULL;
        cc.n_command = n_cmd;
        cc.envs = n_env ? envp : NULL;
        cc.n_envs = n_env;
        cc.log_path = log_path;
        cc.tty = tty;
        /* The pod's own config, as the kubelet sends it with CreateContainer. */
        Runtime__V1__PodSandboxMetadata pmd = RUNTIME__V1__POD_SANDBOX_METADATA__INIT;
        Runtime__V1__PodSandboxConfig pcfg = RUNTIME__V1__POD_SANDBOX_CONFIG__INIT;
        if (st->status->metadata) {
                pmd = *st->status->metadata;
                pcfg.metadata = &pmd;
        }
        Runtime__V1__CreateContainerRequest req = RUNTIME__V1__CREATE_CONTAINER_REQUEST__INIT;
        req.pod_sandbox_id = pod_id;
        req.config = &cc;
        req.sandbox_config = &pcfg;
        Runtime__V1__CreateContainerResponse *cresp = NULL;
        int r = ctl_call(c, RS "CreateContainer", &req.base, &runtime__v1__create_container_response__descriptor,
                         slow(c), (ProtobufCMessage **)&cresp);
        protobuf_c_message_free_unpacked(&st->base, NULL);
        if (r < 0)
                goto fail;
        ctr_id = strdup(cresp->container_id);
        protobuf_c_message_free_unpacked(&cresp->base, NULL);
        Runtime__V1__StartContainerRequest sreq = RUNTIME__V1__START_CONTAINER_REQUEST__INIT;
        sreq.container_id = ctr_id;
        ProtobufCMessage *sresp = NULL;
        if (ctl_call(c, RS "StartContainer", &sreq.base, &runtime__v1__start_container_response__descriptor,
                     slow(c), &sresp) < 0)
                goto fail;
        protobuf_c_message_free_unpacked(sresp, NULL);
        if (c->json)
                printf("{\"pod_id\":\"%s\",\"container_id\":\"%s\"}\n", pod_id, ctr_id);
        else
                printf("pod       %s\ncontainer %s\n", pod_id, ctr_id);
        return 0;
fail:
        if (new_pod && pod_id)
                (void)stop_remove_pod(c, pod_id); /* leave nothing of a failed run */
        return 1;
}

/* ---- pods --------------------------------------------------------------------- */

static int pod_ls(ctl *c)
{
        Runtime__V1__ListPodSandboxRequest req = RUNTIME__V1__LIST_POD_SANDBOX_REQUEST__INIT;
        Runtime__V1__ListPodSandboxResponse *resp = NULL;
        if (ctl_call(c, RS "ListPodSandbox", &req.base, &runtime__v1__list_pod_sandbox_response__descriptor, 0,
                     (ProtobufCMessage **)&resp) < 0)
                return 1;
        json_object *arr = json_object_new_array();
        if (!c->json)
                printf("%-13s  %-8s  %-10s  %-24s  %-16s  %s\n", "POD ID", "CREATED", "STATE", "NAME", "NAMESPACE",
                       "HANDLER");
        for (size_t i = 0; i < resp->n_items; i++) {
                Runtime__V1__PodSandbox *p = resp->items[i];
                const char *state = p->state == RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_READY ? "Ready" : "NotReady";
                const char *nm = p->metadata ? p->metadata->name : "", *ns = p->metadata ? p->metadata->namespace_ : "";
                if (c->json) {
                        json_object *o = json_object_new_object();
                        json_object_object_add(o, "id", json_object_new_string(p->id));
                        json_object_object_add(o, "name", json_object_new_string(nm));
                        json_object_object_add(o, "namespace", json_object_new_string(ns));
                        json_object_object_add(o, "state", json_object_new_string(state));
                        json_object_object_add(o, "createdAt", json_object_new_int64(p->created_at));
                        json_object_object_add(o, "runtimeHandler", json_object_new_string(p->runtime_handler));
                        json_object_array_add(arr, o);
                        continue;
                }
                char age[32];
                fmt_age(p->created_at, age, sizeof(age));
                printf("%-13s  %-8s  %-10s  %-24s  %-16s  %s\n", short_id(p->id), age, state, nm, ns,
                       *p->runtime_handler ? p->runtime_handler : "(default)");
        }
        if (c->json)
                printf("%s\n", json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(arr);
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        return 0;
}

static int pod_inspect(ctl *c, const char *id)
{
        Runtime__V1__PodSandboxStatusRequest req = RUNTIME__V1__POD_SANDBOX_STATUS_REQUEST__INIT;
        req.pod_sandbox_id = (char *)id;
        req.verbose = true;
        Runtime__V1__PodSandboxStatusResponse *resp = NULL;
        if (ctl_call(c, RS "PodSandboxStatus", &req.base, &runtime__v1__pod_sandbox_status_response__descriptor, 0,
                     (ProtobufCMessage **)&resp) < 0)
                return 1;
        Runtime__V1__PodSandboxStatus *s = resp->status;
        if (!s) {
                fprintf(stderr, "cocoonctl: pod %s: no status\n", id);
                protobuf_c_message_free_unpacked(&resp->base, NULL);
                return 1;
        }
        printf("id:       %s\n", s->id);
        if (s->metadata)
                printf("name:     %s/%s (uid %s, attempt %u)\n", s->metadata->namespace_, s->metadata->name,
                       s->metadata->uid, s->metadata->attempt);
        printf("state:    %s\n", s->state == RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_READY ? "Ready" : "NotReady");
        if (s->network)
                printf("ip:       %s\n", *s->network->ip ? s->network->ip : "(none)");
        for (size_t i = 0; i < resp->n_info; i++)
                printf("%s: %s\n", resp->info[i]->key, resp->info[i]->value);
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        return 0;
}

int ctl_cmd_pod(ctl *c)
{
        const char *sub = c->argc > 1 ? c->argv[1] : "ls";
        if (strcmp(sub, "ls") == 0 || strcmp(sub, "list") == 0)
                return pod_ls(c);
        if (strcmp(sub, "inspect") == 0 && c->argc == 3)
                return pod_inspect(c, c->argv[2]);
        if ((strcmp(sub, "rm") == 0 || strcmp(sub, "remove") == 0) && c->argc >= 3) {
                int rc = 0;
                for (int i = 2; i < c->argc; i++) {
                        if (stop_remove_pod(c, c->argv[i]) < 0)
                                rc = 1;
                        else
                                printf("Removed pod %s\n", c->argv[i]);
                }
                return rc;
        }
        fprintf(stderr, "cocoonctl: pod: ls, inspect POD or rm POD...?\n");
        return 2;
}

/* ---- containers ---------------------------------------------------------------- */

static const char *ctr_state(Runtime__V1__ContainerState s)
{
        switch (s) {
        case RUNTIME__V1__CONTAINER_STATE__CONTAINER_CREATED:
                return "Created";
        case RUNTIME__V1__CONTAINER_STATE__CONTAINER_RUNNING:
                return "Running";
        case RUNTIME__V1__CONTAINER_STATE__CONTAINER_EXITED:
                return "Exited";
        default:
                return "Unknown";
        }
}

int ctl_cmd_ps(ctl *c)
{
        bool all = c->argc > 1 && strcmp(c->argv[1], "-a") == 0;
        Runtime__V1__ListContainersRequest req = RUNTIME__V1__LIST_CONTAINERS_REQUEST__INIT;
        Runtime__V1__ContainerFilter f = RUNTIME__V1__CONTAINER_FILTER__INIT;
        Runtime__V1__ContainerStateValue sv = RUNTIME__V1__CONTAINER_STATE_VALUE__INIT;
        if (!all) {
                sv.state = RUNTIME__V1__CONTAINER_STATE__CONTAINER_RUNNING;
                f.state = &sv;
                req.filter = &f;
        }
        Runtime__V1__ListContainersResponse *resp = NULL;
        if (ctl_call(c, RS "ListContainers", &req.base, &runtime__v1__list_containers_response__descriptor, 0,
                     (ProtobufCMessage **)&resp) < 0)
                return 1;
        json_object *arr = json_object_new_array();
        if (!c->json)
                printf("%-13s  %-30s  %-8s  %-8s  %-20s  %s\n", "CONTAINER", "IMAGE", "CREATED", "STATE", "NAME",
                       "POD ID");
        for (size_t i = 0; i < resp->n_containers; i++) {
                Runtime__V1__Container *k = resp->containers[i];
                const char *img = k->image && *k->image->image ? k->image->image : k->image_ref;
                const char *nm = k->metadata ? k->metadata->name : "";
                if (c->json) {
                        json_object *o = json_object_new_object();
                        json_object_object_add(o, "id", json_object_new_string(k->id));
                        json_object_object_add(o, "podSandboxId", json_object_new_string(k->pod_sandbox_id));
                        json_object_object_add(o, "name", json_object_new_string(nm));
                        json_object_object_add(o, "image", json_object_new_string(img ? img : ""));
                        json_object_object_add(o, "state", json_object_new_string(ctr_state(k->state)));
                        json_object_object_add(o, "createdAt", json_object_new_int64(k->created_at));
                        json_object_array_add(arr, o);
                        continue;
                }
                char age[32];
                fmt_age(k->created_at, age, sizeof(age));
                printf("%-13s  %-30.30s  %-8s  %-8s  %-20s  %s\n", short_id(k->id), img ? img : "", age,
                       ctr_state(k->state), nm, short_id(k->pod_sandbox_id));
        }
        if (c->json)
                printf("%s\n", json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(arr);
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        return 0;
}

int ctl_cmd_exec(ctl *c)
{
        const char *id = NULL;
        int64_t timeout = 0;
        int i;
        for (i = 1; i < c->argc; i++) {
                if (strcmp(c->argv[i], "--") == 0) {
                        i++;
                        break;
                }
                if (strcmp(c->argv[i], "--timeout") == 0 && i + 1 < c->argc) {
                        char *end;
                        timeout = strtoll(c->argv[++i], &end, 10);
                        if (*end || timeout < 0) {
                                fprintf(stderr, "cocoonctl: exec: bad --timeout\n");
                                return 2;
                        }
                } else if (!id) {
                        id = c->argv[i];
                } else {
                        break; /* the command starts here (no "--") */
                }
        }
        if (!id || i >= c->argc) {
                fprintf(stderr, "cocoonctl: exec: usage: exec CTR [--timeout SECS] -- CMD...\n");
                return 2;
        }
        Runtime__V1__ExecSyncRequest req = RUNTIME__V1__EXEC_SYNC_REQUEST__INIT;
        req.container_id = (char *)id;
        req.cmd = c->argv + i;
        req.n_cmd = (size_t)(c->argc - i);
        req.timeout = timeout;
        int call_ms = timeout > 0 ? (int)(timeout * 1000 + 30000) : 24 * 3600 * 1000;
        Runtime__V1__ExecSyncResponse *resp = NULL;
        if (ctl_call(c, RS "ExecSync", &req.base, &runtime__v1__exec_sync_response__descriptor, call_ms,
                     (ProtobufCMessage **)&resp) < 0)
                return 1;
        fwrite(resp->stdout.data, 1, resp->stdout.len, stdout);
        fwrite(resp->stderr.data, 1, resp->stderr.len, stderr);
        int code = resp->exit_code;
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        return code;
}

/* Prints the text of CRI log records ("TIME STREAM P|F TEXT"): P records
 * continue the line, F ends it. */
static int print_cri_log(FILE *in)
{
        _cleanup_free_ char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        while ((n = getline(&line, &cap, in)) > 0) {
                char *p = line, *tag;
                if (!(p = strchr(p, ' ')) || !(tag = strchr(p + 1, ' ')) || !tag[1] || tag[2] != ' ') {
                        fputs(line, stdout); /* not a CRI record: as is */
                        continue;
                }
                char *text = tag + 3;
                size_t len = strlen(text);
                if (len && text[len - 1] == '\n')
                        text[--len] = '\0';
                FILE *out = strncmp(p + 1, "stderr", 6) == 0 ? stderr : stdout;
                fputs(text, out);
                if (tag[1] == 'F')
                        fputc('\n', out);
        }
        return 0;
}

int ctl_cmd_logs(ctl *c)
{
        if (c->argc != 2) {
                fprintf(stderr, "cocoonctl: logs: usage: logs CTR\n");
                return 2;
        }
        Runtime__V1__ContainerStatusRequest req = RUNTIME__V1__CONTAINER_STATUS_REQUEST__INIT;
        req.container_id = c->argv[1];
        Runtime__V1__ContainerStatusResponse *resp = NULL;
        if (ctl_call(c, RS "ContainerStatus", &req.base, &runtime__v1__container_status_response__descriptor, 0,
                     (ProtobufCMessage **)&resp) < 0)
                return 1;
        _cleanup_free_ char *path = resp->status && resp->status->log_path ? strdup(resp->status->log_path) : NULL;
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        if (!path || !*path) {
                fprintf(stderr, "cocoonctl: logs: container %s has no log path\n", c->argv[1]);
                return 1;
        }
        FILE *f = fopen(path, "re");
        if (!f) {
                fprintf(stderr, "cocoonctl: logs: %s: %s\n", path, strerror(errno));
                return 1;
        }
        print_cri_log(f);
        fclose(f);
        return 0;
}

int ctl_cmd_rm(ctl *c)
{
        if (c->argc < 2) {
                fprintf(stderr, "cocoonctl: rm: CTR missing\n");
                return 2;
        }
        int rc = 0;
        for (int i = 1; i < c->argc; i++) {
                Runtime__V1__StopContainerRequest sreq = RUNTIME__V1__STOP_CONTAINER_REQUEST__INIT;
                sreq.container_id = c->argv[i];
                sreq.timeout = 10;
                ProtobufCMessage *resp = NULL;
                if (ctl_call(c, RS "StopContainer", &sreq.base, &runtime__v1__stop_container_response__descriptor,
                             slow(c), &resp) < 0) {
                        rc = 1;
                        continue;
                }
                protobuf_c_message_free_unpacked(resp, NULL);
                Runtime__V1__RemoveContainerRequest rreq = RUNTIME__V1__REMOVE_CONTAINER_REQUEST__INIT;
                rreq.container_id = c->argv[i];
                if (ctl_call(c, RS "RemoveContainer", &rreq.base,
                             &runtime__v1__remove_container_response__descriptor, slow(c), &resp) < 0) {
                        rc = 1;
                        continue;
                }
                protobuf_c_message_free_unpacked(resp, NULL);
                printf("Removed container %s\n", c->argv[i]);
        }
        return rc;
}
