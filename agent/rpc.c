/* SPDX-License-Identifier: Apache-2.0 */
/* RPC registration, request helpers, Health and the sandbox calls. Each
 * handler logs one line in and one out; every request is validated before
 * it touches anything. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/portfwd.h"
#include "common/cleanup.h"
#include "common/id.h"
#include "common/log.h"

int agent_validate_id(const char *what, const char *id, cc_error **ret_err)
{
        return cc_name_validate(what, id, AGENT_ID_MAX, ret_err);
}

int agent_validate_relpath(const char *what, const char *p, cc_error **ret_err)
{
        if (!p || !*p)
                return cc_error_set(ret_err, -EINVAL, "%s is empty", what);
        if (strlen(p) >= PATH_MAX / 2)
                return cc_error_set(ret_err, -EINVAL, "%s is too long", what);
        if (p[0] == '/')
                return cc_error_set(ret_err, -EINVAL, "%s '%.64s' must be relative", what, p);
        for (const char *s = p; *s;) {
                size_t n = strcspn(s, "/");
                if (n == 2 && s[0] == '.' && s[1] == '.')
                        return cc_error_set(ret_err, -EINVAL, "%s '%.64s' escapes its root", what, p);
                s += n;
                while (*s == '/')
                        s++;
        }
        return 0;
}

ProtobufCMessage *agent_unpack(ttrpc_call *call, const ProtobufCMessageDescriptor *d,
                               const uint8_t *payload, size_t len)
{
        ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, len, payload);
        if (!m)
                ttrpc_call_reply_status(call, TTRPC_CODE_INVALID_ARGUMENT, "cannot decode %s", d->name);
        return m;
}

int agent_reply_empty(ttrpc_call *call)
{
        return ttrpc_call_reply(call, NULL, 0);
}

void agent_reply_fail(ttrpc_call *call, const char *rpc, const char *ctr, cc_error *err)
{
        int code;
        switch (err->code) {
        case -EINVAL: case -E2BIG: case -ENAMETOOLONG: code = TTRPC_CODE_INVALID_ARGUMENT; break;
        case -ENOENT: case -ESRCH: code = TTRPC_CODE_NOT_FOUND; break;
        case -EEXIST: code = TTRPC_CODE_ALREADY_EXISTS; break;
        case -EBUSY: code = TTRPC_CODE_FAILED_PRECONDITION; break;
        case -EOPNOTSUPP: code = TTRPC_CODE_FAILED_PRECONDITION; break;
        case -ENOMEM: code = TTRPC_CODE_RESOURCE_EXHAUSTED; break;
        default: code = err->grpc ? err->grpc : TTRPC_CODE_INTERNAL; break;
        }
        if (err->grpc)
                code = err->grpc;
        log_warn("rpc=%s container=%s failed: %s", rpc, ctr ? ctr : "", err->msg);
        ttrpc_call_reply_status(call, code, "%s", err->msg);
}

agent_container *agent_find_container(const char *id)
{
        for (agent_container *c = agent.containers; c; c = c->next)
                if (strcmp(c->id, id) == 0)
                        return c;
        return NULL;
}

agent_process *agent_find_process(agent_container *c, const char *exec_id)
{
        if (!exec_id || !*exec_id || strcmp(exec_id, c->id) == 0)
                return c->init;
        for (agent_process *p = c->execs; p; p = p->next)
                if (strcmp(p->exec_id, exec_id) == 0)
                        return p;
        return NULL;
}

/* ---- Health -------------------------------------------------------------- */

static void h_check(ttrpc_call *call, const uint8_t *pl, size_t len, void *ud)
{
        Grpc__CheckRequest *req = (void *)agent_unpack(call, &grpc__check_request__descriptor, pl, len);
        if (!req)
                return;
        protobuf_c_message_free_unpacked(&req->base, NULL);
        Grpc__HealthCheckResponse resp = GRPC__HEALTH_CHECK_RESPONSE__INIT;
        resp.status = GRPC__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
        ttrpc_call_reply_pb(call, &resp.base);
}

static void h_version(ttrpc_call *call, const uint8_t *pl, size_t len, void *ud)
{
        Grpc__CheckRequest *req = (void *)agent_unpack(call, &grpc__check_request__descriptor, pl, len);
        if (!req)
                return;
        protobuf_c_message_free_unpacked(&req->base, NULL);
        Grpc__VersionCheckResponse resp = GRPC__VERSION_CHECK_RESPONSE__INIT;
        resp.grpc_version = (char *)"ttrpc";
        resp.agent_version = (char *)AGENT_VERSION;
        ttrpc_call_reply_pb(call, &resp.base);
}

/* ---- sandbox ------------------------------------------------------------- */

/* A process that only holds the sandbox's pid namespace (pid 1 there);
 * containers created with sandbox_pidns join it. Lock held: the reactor
 * cannot reap the helper before we do. */
static int start_pidns_holder(cc_error **ret_err)
{
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
                return cc_error_errno(ret_err, "pipe");
        pid_t helper = fork();
        if (helper < 0) {
                close(p[0]);
                close(p[1]);
                return cc_error_errno(ret_err, "fork");
        }
        if (helper == 0) {
                if (unshare(CLONE_NEWPID) < 0)
                        _exit(1);
                pid_t h = fork();
                if (h == 0) {
                        sigset_t all;
                        sigfillset(&all);
                        sigprocmask(SIG_SETMASK, &all, NULL);
                        for (;;)
                                pause();
                }
                if (h > 0 && write(p[1], &h, sizeof(h)) != sizeof(h))
                        _exit(1);
                _exit(h > 0 ? 0 : 1);
        }
        close(p[1]);
        pid_t holder = 0;
        ssize_t n = read(p[0], &holder, sizeof(holder));
        close(p[0]);
        waitpid(helper, NULL, 0);
        if (n != sizeof(holder) || holder <= 0)
                return cc_error_set(ret_err, -EIO, "cannot create the sandbox pid namespace");
        agent.sandbox_pidns_pid = holder;
        return 0;
}

static void h_create_sandbox(ttrpc_call *call, const uint8_t *pl, size_t len, void *ud)
{
        Grpc__CreateSandboxRequest *req =
                (void *)agent_unpack(call, &grpc__create_sandbox_request__descriptor, pl, len);
        if (!req)
                return;
        _cleanup_error_ cc_error *err = NULL;
        log_info("rpc=CreateSandbox pod=%s", req->sandbox_id);
        pthread_mutex_lock(&agent_lock);
        if (agent.sandbox_created) {
                cc_error_set(&err, -EEXIST, "the sandbox already exists");
        } else if (req->hostname && strlen(req->hostname) > 64) {
                cc_error_set(&err, -EINVAL, "hostname longer than 64 bytes");
        } else if (req->n_dns > 32) {
                cc_error_set(&err, -EINVAL, "too many dns entries");
        } else if (req->n_storages > 64) {
                cc_error_set(&err, -EINVAL, "too many storages");
        } else {
                for (size_t i = 0; i < req->n_dns && !err; i++)
                        if (strlen(req->dns[i]) > 256 || strchr(req->dns[i], '\n'))
                                cc_error_set(&err, -EINVAL, "bad dns entry");
                bool mounted[64] = { false };
                for (size_t i = 0; i < req->n_storages && !err; i++)
                        agent_mount_storage(req->storages[i], &mounted[i], &err);
                if (!err && req->sandbox_pidns && agent.sandbox_pidns_pid <= 0)
                        start_pidns_holder(&err);
                /* a failed call leaves nothing mounted */
                for (size_t i = req->n_storages; err && i-- > 0;)
                        if (mounted[i])
                                umount2(req->storages[i]->mount_point, MNT_DETACH);
        }
        if (!err) {
                free(agent.hostname);
                agent.hostname = req->hostname && *req->hostname ? strdup(req->hostname) : NULL;
                cc_strv_free(agent.dns);
                agent.dns = calloc(req->n_dns + 1, sizeof(char *));
                for (size_t i = 0; agent.dns && i < req->n_dns; i++)
                        agent.dns[i] = strdup(req->dns[i]);
                agent.n_dns = req->n_dns;
                if (agent.guest && agent.hostname)
                        sethostname(agent.hostname, strlen(agent.hostname));
                agent.sandbox_created = true;
        }
        pthread_mutex_unlock(&agent_lock);
        if (err) {
                agent_reply_fail(call, "CreateSandbox", NULL, err);
        } else {
                agent_reply_empty(call);
                log_info("rpc=CreateSandbox pod=%s ok", req->sandbox_id);
        }
        protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void h_destroy_sandbox(ttrpc_call *call, const uint8_t *pl, size_t len, void *ud)
{
        Grpc__DestroySandboxRequest *req =
                (void *)agent_unpack(call, &grpc__destroy_sandbox_request__descriptor, pl, len);
        if (!req)
                return;
        protobuf_c_message_free_unpacked(&req->base, NULL);
        log_info("rpc=DestroySandbox");
        pthread_mutex_lock(&agent_lock);
        agent_container_kill_all();
        if (agent.sandbox_pidns_pid > 0)
                kill(agent.sandbox_pidns_pid, SIGKILL);
        agent.sandbox_pidns_pid = 0;
        agent.sandbox_created = false;
        agent.destroyed = true;
        pthread_mutex_unlock(&agent_lock);
        agent_reply_empty(call);
        log_info("rpc=DestroySandbox ok");
        if (agent.guest)
                agent_init_poweroff();
        ttrpc_server_shutdown(agent.server);
}

int agent_rpc_register(ttrpc_server *s, cc_error **ret_err)
{
        static const struct { const char *svc, *method; ttrpc_handler_fn fn; } tab[] = {
                { "grpc.Health", "Check", h_check },
                { "grpc.Health", "Version", h_version },
                { "grpc.AgentService", "CreateSandbox", h_create_sandbox },
                { "grpc.AgentService", "DestroySandbox", h_destroy_sandbox },
        };
        for (size_t i = 0; i < CC_ARRAY_SIZE(tab); i++)
                if (ttrpc_server_register(s, tab[i].svc, tab[i].method, tab[i].fn, NULL, ret_err) < 0)
                        return -1;
        agent_rpc_register_containers(s);
        agent_rpc_register_processes(s);
        agent_rpc_register_misc(s);
        agent_rpc_register_net(s);
        if (agent_portfwd_register(s, ret_err) < 0)
                return -1;
        return 0;
}
