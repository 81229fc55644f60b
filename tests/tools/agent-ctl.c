/* SPDX-License-Identifier: Apache-2.0 */
/* agent-ctl: a test driver for cocoon-agent. Connects to the agent's unix
 * socket (host mode) or to the host side of the guest's virtio-serial port
 * (a QEMU chardev socket) and runs steps through the ttRPC client, printing
 * one JSON object per step on stdout.
 *
 *   agent-ctl -s SOCKET [-t TIMEOUT_MS] [-w CONNECT_WAIT_MS] OP [KEY=VALUE...] [-- ARGS...]
 *   agent-ctl -s SOCKET [-t TIMEOUT_MS] [-w CONNECT_WAIT_MS] --script FILE|-
 *
 * After connecting, Health.Check probes (500 ms each, for up to TIMEOUT_MS)
 * make sure the agent serves this connection (see probe(); --no-probe
 * skips them).
 *
 * In script mode each input line is one JSON object {"op": ..., keys...}
 * and each answer one line (flushed), so a test can drive a long session
 * over one connection and end it (disconnect) by closing stdin or killing
 * the process. On the command line, KEY=VALUE pairs become string members
 * (numbers and booleans are parsed from strings), "a,b" for list keys, and
 * the words after "--" become "args".
 *
 * Ops and their keys (every op takes "timeout_ms"):
 *   health [count]               Health.Check; count > 1: round-trip statistics
 *   version | details            Health.Version | GetGuestDetails
 *   create-sandbox [hostname sandbox_id share_tag share_mount share_options pidns]
 *   create | run  id args [env tty user root readonly mem seccomp_deny hostname cwd rows cols
 *                 host_pid sandbox_pidns]
 *                 (run = create + start)
 *   start | pause | resume | stats  id
 *   exec  id exec args [env tty user cwd]
 *   read  id [exec stream=out|err eof len]   one ReadStdout/ReadStderr, or to EOF
 *   write id [exec] data [close]           WriteStdin (all of data), CloseStdin
 *   close-stdin | wait  id [exec]
 *   signal id [exec] signal
 *   resize id [exec] rows cols
 *   remove id [timeout]
 *   oom                                  GetOOMEvent (waits)
 *   destroy                              DestroySandbox
 *   sleep ms                             local pause
 *
 * Answers: {"op": ..., "ok": true, ...} or {"op": ..., "ok": false, "code":
 * N, "code_name": "NOT_FOUND", "error": "..."}. Exit status: 0 if every step
 * succeeded, 1 otherwise, 2 for usage or connection failures. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>


#include "common/cleanup.h"
#include "common/error.h"
#include "common/json.h"
#include "common/ttrpc.h"
#include "agent.pb-c.h"
#include "google/protobuf/empty.pb-c.h"
#include "health.pb-c.h"
#include "oci.pb-c.h"

#define SVC "grpc.AgentService"
#define MAX_LIST 256
#define MAX_READ_TOTAL (64u << 20)

static ttrpc_client *cli;
static int64_t default_timeout_ms = 60000;

/* ---- helpers ------------------------------------------------------------- */

static uint64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static const char *get_str(json_object *o, const char *key, const char *def)
{
        json_object *v;
        if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
                return def;
        return json_object_get_string(v);
}

static int64_t get_int(json_object *o, const char *key, int64_t def)
{
        json_object *v;
        if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
                return def;
        if (json_object_is_type(v, json_type_string)) {
                const char *s = json_object_get_string(v);
                char *end;
                errno = 0;
                long long n = strtoll(s, &end, 0);
                return errno || end == s || *end ? def : n;
        }
        return json_object_get_int64(v);
}

static bool get_bool(json_object *o, const char *key, bool def)
{
        json_object *v;
        if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
                return def;
        if (json_object_is_type(v, json_type_string)) {
                const char *s = json_object_get_string(v);
                return strcmp(s, "1") == 0 || strcmp(s, "true") == 0 || strcmp(s, "yes") == 0;
        }
        return json_object_get_boolean(v);
}

/* A list member: a JSON array of strings, or one comma-separated string.
 * Fills at most MAX_LIST borrowed/owned pointers into out (owned strings go
 * to *store, freed by the caller). */
static size_t get_list(json_object *o, const char *key, char **out, char **store)
{
        json_object *v;
        size_t n = 0;
        *store = NULL;
        if (!json_object_object_get_ex(o, key, &v))
                return 0;
        if (json_object_is_type(v, json_type_array)) {
                size_t len = json_object_array_length(v);
                for (size_t i = 0; i < len && n < MAX_LIST; i++)
                        out[n++] = (char *)json_object_get_string(json_object_array_get_idx(v, i));
                return n;
        }
        if (!json_object_is_type(v, json_type_string))
                return 0;
        *store = strdup(json_object_get_string(v));
        for (char *save = NULL, *t = *store ? strtok_r(*store, ",", &save) : NULL; t && n < MAX_LIST;
             t = strtok_r(NULL, ",", &save))
                out[n++] = t;
        return n;
}

static json_object *answer(const char *op)
{
        json_object *r = json_object_new_object();
        json_object_object_add(r, "op", json_object_new_string(op));
        json_object_object_add(r, "ok", json_object_new_boolean(1));
        return r;
}

static json_object *answer_error(const char *op, cc_error *err)
{
        json_object *r = json_object_new_object();
        json_object_object_add(r, "op", json_object_new_string(op));
        json_object_object_add(r, "ok", json_object_new_boolean(0));
        json_object_object_add(r, "code", json_object_new_int(err->grpc ? err->grpc : -1));
        json_object_object_add(r, "code_name",
                               json_object_new_string(err->grpc ? ttrpc_code_to_string(err->grpc) : "LOCAL"));
        json_object_object_add(r, "errno", json_object_new_int(err->code));
        json_object_object_add(r, "error", json_object_new_string(err->msg ? err->msg : ""));
        return r;
}

static void add_int(json_object *r, const char *k, int64_t v) { json_object_object_add(r, k, json_object_new_int64(v)); }

static int call(json_object *step, const char *method, const ProtobufCMessage *req,
                const ProtobufCMessageDescriptor *rd, ProtobufCMessage **resp, cc_error **ret_err)
{
        ProtobufCMessage *r = NULL;
        int64_t t = get_int(step, "timeout_ms", default_timeout_ms);
        const char *svc = strcmp(method, "Check") == 0 || strcmp(method, "Version") == 0 ? "grpc.Health" : SVC;
        int rc = ttrpc_client_call_pb(cli, svc, method, req, rd ? rd : &google__protobuf__empty__descriptor, t,
                                      &r, ret_err);
        if (rc < 0)
                return rc;
        if (resp)
                *resp = r;
        else if (r)
                protobuf_c_message_free_unpacked(r, NULL);
        return 0;
}

/* ---- spec building ------------------------------------------------------- */

typedef struct proc_parts {
        Grpc__Process proc;
        Grpc__User user;
        Grpc__Box box;
        char *args[MAX_LIST], *env[MAX_LIST];
        char *args_store, *env_store;
        char *default_env[1];
} proc_parts;

static int build_process(json_object *step, proc_parts *pp, cc_error **ret_err)
{
        memset(pp, 0, sizeof(*pp));
        grpc__process__init(&pp->proc);
        grpc__user__init(&pp->user);
        grpc__box__init(&pp->box);
        pp->proc.n_args = get_list(step, "args", pp->args, &pp->args_store);
        if (!pp->proc.n_args)
                return cc_error_set(ret_err, -EINVAL, "no args");
        pp->proc.args = pp->args;
        pp->proc.n_env = get_list(step, "env", pp->env, &pp->env_store);
        pp->proc.env = pp->env;
        if (!pp->proc.n_env) {
                pp->default_env[0] = (char *)"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
                pp->proc.env = pp->default_env;
                pp->proc.n_env = 1;
        }
        pp->proc.cwd = (char *)get_str(step, "cwd", "/");
        pp->proc.terminal = get_bool(step, "tty", false);
        if (pp->proc.terminal) {
                pp->box.height = (uint32_t)get_int(step, "rows", 24);
                pp->box.width = (uint32_t)get_int(step, "cols", 80);
                pp->proc.consolesize = &pp->box;
        }
        const char *u = get_str(step, "user", NULL);
        if (u)
                pp->user.username = (char *)u;
        pp->proc.user = &pp->user;
        return 0;
}

static void proc_parts_done(proc_parts *pp)
{
        free(pp->args_store);
        free(pp->env_store);
}

typedef struct spec_parts {
        Grpc__Spec spec;
        Grpc__Root root;
        Grpc__Linux lx;
        Grpc__LinuxResources res;
        Grpc__LinuxMemory mem;
        Grpc__LinuxSeccomp sc;
        Grpc__LinuxSyscall rule, *rules[1];
        Grpc__Mount m[5], *mp[5];
        Grpc__LinuxNamespace ns[4], *nsp[4];
        char *deny[MAX_LIST], *deny_store;
        proc_parts pp;
} spec_parts;

static int build_spec(json_object *step, spec_parts *s, cc_error **ret_err)
{
        memset(s, 0, sizeof(*s));
        if (build_process(step, &s->pp, ret_err) < 0)
                return -EINVAL;
        grpc__spec__init(&s->spec);
        grpc__root__init(&s->root);
        s->root.path = (char *)get_str(step, "root", "rootfs");
        s->root.readonly = get_bool(step, "readonly", false);
        s->spec.root = &s->root;
        s->spec.process = &s->pp.proc;
        s->spec.hostname = (char *)get_str(step, "hostname", "ctr");
        static const char *const mnt[][4] = {
                { "/proc", "proc", "proc", "nosuid,noexec,nodev" },
                { "/dev", "tmpfs", "tmpfs", "nosuid,mode=755" },
                { "/dev/pts", "devpts", "devpts", "nosuid,noexec,newinstance,ptmxmode=0666,mode=0620" },
                { "/sys", "sysfs", "sysfs", "nosuid,noexec,nodev,ro" },
                { "/tmp", "tmpfs", "tmpfs", "nosuid,nodev" },
        };
        static char *opts[5][8];
        for (size_t i = 0; i < CC_ARRAY_SIZE(mnt); i++) {
                grpc__mount__init(&s->m[i]);
                s->m[i].destination = (char *)mnt[i][0];
                s->m[i].source = (char *)mnt[i][1];
                s->m[i].type = (char *)mnt[i][2];
                if (!opts[i][0]) {
                        size_t n = 0;
                        char *dup = strdup(mnt[i][3]); /* lives for the process */
                        for (char *save = NULL, *t = dup ? strtok_r(dup, ",", &save) : NULL; t && n < 8;
                             t = strtok_r(NULL, ",", &save))
                                opts[i][n++] = t;
                }
                s->m[i].options = opts[i];
                for (s->m[i].n_options = 0; s->m[i].n_options < 8 && opts[i][s->m[i].n_options];)
                        s->m[i].n_options++;
                s->mp[i] = &s->m[i];
        }
        s->spec.mounts = s->mp;
        s->spec.n_mounts = CC_ARRAY_SIZE(mnt);
        grpc__linux__init(&s->lx);
        /* host_pid: no pid namespace, the guest's processes (the agent is
         * pid 1) are visible, as for a privileged debug container */
        static const char *const nst[] = { "mount", "ipc", "uts", "pid" };
        size_t nns = get_bool(step, "host_pid", false) ? 3 : 4;
        for (size_t i = 0; i < nns; i++) {
                grpc__linux_namespace__init(&s->ns[i]);
                s->ns[i].type = (char *)nst[i];
                s->nsp[i] = &s->ns[i];
        }
        s->lx.namespaces = s->nsp;
        s->lx.n_namespaces = nns;
        int64_t mem = get_int(step, "mem", 0);
        if (mem > 0) {
                grpc__linux_resources__init(&s->res);
                grpc__linux_memory__init(&s->mem);
                s->mem.limit = mem;
                s->mem.swap = mem; /* memory+swap == memory: no swap */
                s->res.memory = &s->mem;
                s->lx.resources = &s->res;
        }
        size_t nd = get_list(step, "seccomp_deny", s->deny, &s->deny_store);
        if (nd) {
                grpc__linux_seccomp__init(&s->sc);
                grpc__linux_syscall__init(&s->rule);
                s->sc.defaultaction = (char *)"SCMP_ACT_ALLOW";
                s->rule.names = s->deny;
                s->rule.n_names = nd;
                s->rule.action = (char *)"SCMP_ACT_ERRNO";
                s->rule.errno_ret_case = GRPC__LINUX_SYSCALL__ERRNO_RET_ERRNORET;
                s->rule.errnoret = EPERM;
                s->rules[0] = &s->rule;
                s->sc.syscalls = s->rules;
                s->sc.n_syscalls = 1;
                s->lx.seccomp = &s->sc;
        }
        s->spec.linux = &s->lx;
        return 0;
}

static void spec_parts_done(spec_parts *s)
{
        proc_parts_done(&s->pp);
        free(s->deny_store);
}

/* ---- ops ----------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return x < y ? -1 : x > y;
}

static json_object *op_health(json_object *step, const char *op, cc_error **ret_err)
{
        int64_t count = get_int(step, "count", 1);
        if (count < 1 || count > 1000000) {
                cc_error_set(ret_err, -EINVAL, "count out of range");
                return NULL;
        }
        _cleanup_free_ uint64_t *lat = calloc((size_t)count, sizeof(uint64_t));
        if (!lat) {
                cc_error_set(ret_err, -ENOMEM, "out of memory");
                return NULL;
        }
        int status = 0;
        for (int64_t i = 0; i < count; i++) {
                Grpc__CheckRequest req = GRPC__CHECK_REQUEST__INIT;
                Grpc__HealthCheckResponse *resp = NULL;
                uint64_t t0 = now_ns();
                if (call(step, "Check", &req.base, &grpc__health_check_response__descriptor,
                         (ProtobufCMessage **)&resp, ret_err) < 0)
                        return NULL;
                lat[i] = now_ns() - t0;
                status = resp->status;
                protobuf_c_message_free_unpacked(&resp->base, NULL);
        }
        json_object *r = answer(op);
        add_int(r, "status", status);
        json_object_object_add(r, "serving",
                               json_object_new_boolean(status == GRPC__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING));
        if (count > 1) {
                qsort(lat, (size_t)count, sizeof(uint64_t), cmp_u64);
                double sum = 0;
                for (int64_t i = 0; i < count; i++)
                        sum += (double)lat[i];
                add_int(r, "count", count);
                json_object_object_add(r, "p50_us", json_object_new_double(lat[(count - 1) / 2] / 1000.0));
                json_object_object_add(r, "p99_us",
                                       json_object_new_double(lat[(size_t)ceil(count * 0.99) - 1] / 1000.0));
                json_object_object_add(r, "min_us", json_object_new_double(lat[0] / 1000.0));
                json_object_object_add(r, "max_us", json_object_new_double(lat[count - 1] / 1000.0));
                json_object_object_add(r, "mean_us", json_object_new_double(sum / (double)count / 1000.0));
        } else {
                json_object_object_add(r, "rtt_us", json_object_new_double(lat[0] / 1000.0));
        }
        return r;
}

static json_object *op_version(json_object *step, const char *op, cc_error **ret_err)
{
        Grpc__CheckRequest req = GRPC__CHECK_REQUEST__INIT;
        Grpc__VersionCheckResponse *resp = NULL;
        if (call(step, "Version", &req.base, &grpc__version_check_response__descriptor, (ProtobufCMessage **)&resp,
                 ret_err) < 0)
                return NULL;
        json_object *r = answer(op);
        json_object_object_add(r, "agent_version", json_object_new_string(resp->agent_version));
        json_object_object_add(r, "grpc_version", json_object_new_string(resp->grpc_version));
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        return r;
}

static json_object *op_details(json_object *step, const char *op, cc_error **ret_err)
{
        Grpc__GuestDetailsRequest req = GRPC__GUEST_DETAILS_REQUEST__INIT;
        req.mem_block_size = true;
        Grpc__GuestDetailsResponse *resp = NULL;
        if (call(step, "GetGuestDetails", &req.base, &grpc__guest_details_response__descriptor,
                 (ProtobufCMessage **)&resp, ret_err) < 0)
                return NULL;
        json_object *r = answer(op);
        add_int(r, "mem_block_size_bytes", (int64_t)resp->mem_block_size_bytes);
        if (resp->agent_details) {
                json_object_object_add(r, "version", json_object_new_string(resp->agent_details->version));
                json_object_object_add(r, "init_daemon", json_object_new_boolean(resp->agent_details->init_daemon));
                json_object *sh = json_object_new_array();
                for (size_t i = 0; i < resp->agent_details->n_storage_handlers; i++)
                        json_object_array_add(sh, json_object_new_string(resp->agent_details->storage_handlers[i]));
                json_object_object_add(r, "storage_handlers", sh);
        }
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        return r;
}

static json_object *op_create_sandbox(json_object *step, const char *op, cc_error **ret_err)
{
        Grpc__CreateSandboxRequest req = GRPC__CREATE_SANDBOX_REQUEST__INIT;
        Grpc__Storage st = GRPC__STORAGE__INIT, *sts[1] = { &st };
        char *opts[MAX_LIST], *store = NULL;
        req.hostname = (char *)get_str(step, "hostname", "");
        req.sandbox_id = (char *)get_str(step, "sandbox_id", "pod");
        req.sandbox_pidns = get_bool(step, "pidns", false);
        const char *tag = get_str(step, "share_tag", NULL);
        if (tag) {
                st.driver = (char *)"virtio-fs";
                st.source = (char *)tag;
                st.fstype = (char *)"virtiofs";
                st.mount_point = (char *)get_str(step, "share_mount", "/run/cocoon/shared");
                st.n_options = get_list(step, "share_options", opts, &store);
                st.options = opts;
                req.storages = sts;
                req.n_storages = 1;
        }
        int r = call(step, "CreateSandbox", &req.base, NULL, NULL, ret_err);
        free(store);
        return r < 0 ? NULL : answer(op);
}

static json_object *op_create(json_object *step, const char *op, bool start, cc_error **ret_err)
{
        const char *id = get_str(step, "id", NULL);
        if (!id) {
                cc_error_set(ret_err, -EINVAL, "no id");
                return NULL;
        }
        spec_parts s;
        if (build_spec(step, &s, ret_err) < 0) {
                spec_parts_done(&s);
                return NULL;
        }
        Grpc__CreateContainerRequest req = GRPC__CREATE_CONTAINER_REQUEST__INIT;
        req.container_id = (char *)id;
        req.exec_id = (char *)id;
        req.oci = &s.spec;
        req.sandbox_pidns = get_bool(step, "sandbox_pidns", false);
        int r = call(step, "CreateContainer", &req.base, NULL, NULL, ret_err);
        spec_parts_done(&s);
        if (r < 0)
                return NULL;
        if (start) {
                Grpc__StartContainerRequest sr = GRPC__START_CONTAINER_REQUEST__INIT;
                sr.container_id = (char *)id;
                if (call(step, "StartContainer", &sr.base, NULL, NULL, ret_err) < 0)
                        return NULL;
        }
        return answer(op);
}

/* Start, Pause, Resume, Stats, Remove requests start with container_id = 1. */
static json_object *op_simple(json_object *step, const char *op, const char *method, cc_error **ret_err)
{
        Grpc__StartContainerRequest req = GRPC__START_CONTAINER_REQUEST__INIT;
        req.container_id = (char *)get_str(step, "id", "");
        return call(step, method, &req.base, NULL, NULL, ret_err) < 0 ? NULL : answer(op);
}

static json_object *op_remove(json_object *step, const char *op, cc_error **ret_err)
{
        Grpc__RemoveContainerRequest req = GRPC__REMOVE_CONTAINER_REQUEST__INIT;
        req.container_id = (char *)get_str(step, "id", "");
        req.timeout = (uint32_t)get_int(step, "timeout", 10);
        return call(step, "RemoveContainer", &req.base, NULL, NULL, ret_err) < 0 ? NULL : answer(op);
}

static json_object *op_stats(json_object *step, const char *op, cc_error **ret_err)
{
        Grpc__StatsContainerRequest req = GRPC__STATS_CONTAINER_REQUEST__INIT;
        req.container_id = (char *)get_str(step, "id", "");
        Grpc__StatsContainerResponse *resp = NULL;
        if (call(step, "StatsContainer", &req.base, &grpc__stats_container_response__descriptor,
                 (ProtobufCMessage **)&resp, ret_err) < 0)
                return NULL;
        json_object *r = answer(op);
        const Grpc__CgroupStats *cs = resp->cgroup_stats;
        if (cs && cs->memory_stats && cs->memory_stats->usage) {
                add_int(r, "memory_usage", (int64_t)cs->memory_stats->usage->usage);
                add_int(r, "memory_max_usage", (int64_t)cs->memory_stats->usage->max_usage);
                add_int(r, "memory_limit", (int64_t)cs->memory_stats->usage->limit);
                add_int(r, "oom_kills", (int64_t)cs->memory_stats->usage->failcnt);
        }
        if (cs && cs->cpu_stats && cs->cpu_stats->cpu_usage)
                add_int(r, "cpu_usage_ns", (int64_t)cs->cpu_stats->cpu_usage->total_usage);
        if (cs && cs->pids_stats)
                add_int(r, "pids_current", (int64_t)cs->pids_stats->current);
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        return r;
}

static json_object *op_exec(json_object *step, const char *op, cc_error **ret_err)
{
        proc_parts pp;
        if (build_process(step, &pp, ret_err) < 0) {
                proc_parts_done(&pp);
                return NULL;
        }
        Grpc__ExecProcessRequest req = GRPC__EXEC_PROCESS_REQUEST__INIT;
        req.container_id = (char *)get_str(step, "id", "");
        req.exec_id = (char *)get_str(step, "exec", "");
        req.process = &pp.proc;
        int r = call(step, "ExecProcess", &req.base, NULL, NULL, ret_err);
        proc_parts_done(&pp);
        return r < 0 ? NULL : answer(op);
}

static json_object *op_read(json_object *step, const char *op, cc_error **ret_err)
{
        bool err_stream = strcmp(get_str(step, "stream", "out"), "err") == 0;
        bool to_eof = get_bool(step, "eof", false);
        int64_t len = get_int(step, "len", 1 << 20);
        _cleanup_free_ char *buf = NULL;
        size_t got = 0, cap = 0;
        bool eof = false;
        int calls = 0;
        do {
                Grpc__ReadStreamRequest req = GRPC__READ_STREAM_REQUEST__INIT;
                req.container_id = (char *)get_str(step, "id", "");
                req.exec_id = (char *)get_str(step, "exec", "");
                req.len = (uint32_t)(len > 0 && len <= (1 << 20) ? len : 1 << 20);
                Grpc__ReadStreamResponse *resp = NULL;
                if (call(step, err_stream ? "ReadStderr" : "ReadStdout", &req.base,
                         &grpc__read_stream_response__descriptor, (ProtobufCMessage **)&resp, ret_err) < 0)
                        return NULL;
                calls++;
                size_t n = resp->data.len;
                if (n == 0)
                        eof = true;
                if (got + n > MAX_READ_TOTAL) {
                        protobuf_c_message_free_unpacked(&resp->base, NULL);
                        cc_error_set(ret_err, -E2BIG, "more than %u bytes of output", MAX_READ_TOTAL);
                        return NULL;
                }
                if (got + n + 1 > cap) {
                        size_t nc = (got + n + 1) * 2;
                        char *nb = realloc(buf, nc);
                        if (!nb) {
                                protobuf_c_message_free_unpacked(&resp->base, NULL);
                                cc_error_set(ret_err, -ENOMEM, "out of memory");
                                return NULL;
                        }
                        buf = nb;
                        cap = nc;
                }
                if (n)
                        memcpy(buf + got, resp->data.data, n);
                got += n;
                protobuf_c_message_free_unpacked(&resp->base, NULL);
        } while (to_eof && !eof);
        json_object *r = answer(op);
        json_object_object_add(r, "data", json_object_new_string_len(buf ? buf : "", (int)got));
        json_object_object_add(r, "eof", json_object_new_boolean(eof));
        add_int(r, "calls", calls);
        return r;
}

static json_object *op_write(json_object *step, const char *op, cc_error **ret_err)
{
        const char *data = get_str(step, "data", "");
        size_t len = strlen(data), off = 0;
        while (off < len) {
                Grpc__WriteStreamRequest req = GRPC__WRITE_STREAM_REQUEST__INIT;
                req.container_id = (char *)get_str(step, "id", "");
                req.exec_id = (char *)get_str(step, "exec", "");
                req.data.data = (uint8_t *)data + off;
                req.data.len = len - off;
                Grpc__WriteStreamResponse *resp = NULL;
                if (call(step, "WriteStdin", &req.base, &grpc__write_stream_response__descriptor,
                         (ProtobufCMessage **)&resp, ret_err) < 0)
                        return NULL;
                size_t n = CC_MIN((size_t)resp->len, len - off);
                protobuf_c_message_free_unpacked(&resp->base, NULL);
                off += n;
                if (n == 0)
                        usleep(10000); /* the pipe is full: the agent does not block */
        }
        if (get_bool(step, "close", false)) {
                Grpc__CloseStdinRequest req = GRPC__CLOSE_STDIN_REQUEST__INIT;
                req.container_id = (char *)get_str(step, "id", "");
                req.exec_id = (char *)get_str(step, "exec", "");
                if (call(step, "CloseStdin", &req.base, NULL, NULL, ret_err) < 0)
                        return NULL;
        }
        json_object *r = answer(op);
        add_int(r, "written", (int64_t)off);
        return r;
}

static json_object *op_close_stdin(json_object *step, const char *op, cc_error **ret_err)
{
        Grpc__CloseStdinRequest req = GRPC__CLOSE_STDIN_REQUEST__INIT;
        req.container_id = (char *)get_str(step, "id", "");
        req.exec_id = (char *)get_str(step, "exec", "");
        return call(step, "CloseStdin", &req.base, NULL, NULL, ret_err) < 0 ? NULL : answer(op);
}

static json_object *op_wait(json_object *step, const char *op, cc_error **ret_err)
{
        Grpc__WaitProcessRequest req = GRPC__WAIT_PROCESS_REQUEST__INIT;
        req.container_id = (char *)get_str(step, "id", "");
        req.exec_id = (char *)get_str(step, "exec", "");
        Grpc__WaitProcessResponse *resp = NULL;
        if (call(step, "WaitProcess", &req.base, &grpc__wait_process_response__descriptor,
                 (ProtobufCMessage **)&resp, ret_err) < 0)
                return NULL;
        json_object *r = answer(op);
        add_int(r, "status", resp->status);
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        return r;
}

static json_object *op_signal(json_object *step, const char *op, cc_error **ret_err)
{
        Grpc__SignalProcessRequest req = GRPC__SIGNAL_PROCESS_REQUEST__INIT;
        req.container_id = (char *)get_str(step, "id", "");
        req.exec_id = (char *)get_str(step, "exec", "");
        req.signal = (uint32_t)get_int(step, "signal", SIGTERM);
        return call(step, "SignalProcess", &req.base, NULL, NULL, ret_err) < 0 ? NULL : answer(op);
}

static json_object *op_resize(json_object *step, const char *op, cc_error **ret_err)
{
        Grpc__TtyWinResizeRequest req = GRPC__TTY_WIN_RESIZE_REQUEST__INIT;
        req.container_id = (char *)get_str(step, "id", "");
        req.exec_id = (char *)get_str(step, "exec", "");
        req.row = (uint32_t)get_int(step, "rows", 24);
        req.column = (uint32_t)get_int(step, "cols", 80);
        return call(step, "TtyWinResize", &req.base, NULL, NULL, ret_err) < 0 ? NULL : answer(op);
}

static json_object *op_oom(json_object *step, const char *op, cc_error **ret_err)
{
        Grpc__GetOOMEventRequest req = GRPC__GET_OOMEVENT_REQUEST__INIT;
        Grpc__OOMEvent *ev = NULL;
        if (call(step, "GetOOMEvent", &req.base, &grpc__oomevent__descriptor, (ProtobufCMessage **)&ev, ret_err) < 0)
                return NULL;
        json_object *r = answer(op);
        json_object_object_add(r, "container_id", json_object_new_string(ev->container_id));
        protobuf_c_message_free_unpacked(&ev->base, NULL);
        return r;
}

static json_object *op_destroy(json_object *step, const char *op, cc_error **ret_err)
{
        Grpc__DestroySandboxRequest req = GRPC__DESTROY_SANDBOX_REQUEST__INIT;
        return call(step, "DestroySandbox", &req.base, NULL, NULL, ret_err) < 0 ? NULL : answer(op);
}

static json_object *run_step(json_object *step, cc_error **ret_err)
{
        const char *op = get_str(step, "op", "");
        if (strcmp(op, "health") == 0)
                return op_health(step, op, ret_err);
        if (strcmp(op, "version") == 0)
                return op_version(step, op, ret_err);
        if (strcmp(op, "details") == 0)
                return op_details(step, op, ret_err);
        if (strcmp(op, "create-sandbox") == 0)
                return op_create_sandbox(step, op, ret_err);
        if (strcmp(op, "create") == 0 || strcmp(op, "run") == 0)
                return op_create(step, op, strcmp(op, "run") == 0, ret_err);
        if (strcmp(op, "start") == 0)
                return op_simple(step, op, "StartContainer", ret_err);
        if (strcmp(op, "pause") == 0)
                return op_simple(step, op, "PauseContainer", ret_err);
        if (strcmp(op, "resume") == 0)
                return op_simple(step, op, "ResumeContainer", ret_err);
        if (strcmp(op, "stats") == 0)
                return op_stats(step, op, ret_err);
        if (strcmp(op, "remove") == 0)
                return op_remove(step, op, ret_err);
        if (strcmp(op, "exec") == 0)
                return op_exec(step, op, ret_err);
        if (strcmp(op, "read") == 0)
                return op_read(step, op, ret_err);
        if (strcmp(op, "write") == 0)
                return op_write(step, op, ret_err);
        if (strcmp(op, "close-stdin") == 0)
                return op_close_stdin(step, op, ret_err);
        if (strcmp(op, "wait") == 0)
                return op_wait(step, op, ret_err);
        if (strcmp(op, "signal") == 0)
                return op_signal(step, op, ret_err);
        if (strcmp(op, "resize") == 0)
                return op_resize(step, op, ret_err);
        if (strcmp(op, "oom") == 0)
                return op_oom(step, op, ret_err);
        if (strcmp(op, "destroy") == 0)
                return op_destroy(step, op, ret_err);
        if (strcmp(op, "sleep") == 0) {
                int64_t ms = get_int(step, "ms", 0);
                if (ms > 0)
                        usleep((useconds_t)CC_MIN(ms, 600000) * 1000);
                return answer(op);
        }
        cc_error_set(ret_err, -EINVAL, "unknown op '%.64s'", op);
        return NULL;
}

/* Prints the answer; returns true if the step succeeded. */
static bool do_step(json_object *step)
{
        cc_error *err = NULL;
        uint64_t t0 = now_ns();
        json_object *r = run_step(step, &err);
        if (!r) {
                r = answer_error(get_str(step, "op", ""), err);
                cc_error_free(err);
        }
        json_object_object_add(r, "elapsed_ms", json_object_new_double((now_ns() - t0) / 1e6));
        bool ok = json_object_get_boolean(json_object_object_get(r, "ok"));
        printf("%s\n", json_object_to_json_string_ext(r, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        fflush(stdout);
        json_object_put(r);
        return ok;
}

/* ---- connection ---------------------------------------------------------- */

static int connect_unix(const char *path, int64_t wait_ms, cc_error **ret_err)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(path) >= sizeof(sa.sun_path))
                return cc_error_set(ret_err, -ENAMETOOLONG, "socket path too long");
        strcpy(sa.sun_path, path);
        uint64_t deadline = now_ns() + (uint64_t)CC_MAX(wait_ms, 0) * 1000000ull;
        for (;;) {
                int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fd < 0)
                        return cc_error_errno(ret_err, "socket");
                if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
                        return fd;
                int e = errno;
                close(fd);
                if ((e != ENOENT && e != ECONNREFUSED && e != EAGAIN) || now_ns() >= deadline)
                        return cc_error_set(ret_err, -e, "connect %s: %s", path, strerror(e));
                usleep(5000); /* the socket does not exist yet: nothing to wait on */
        }
}

/* The first request of a new connection to a virtio-serial port can be
 * lost: when a host reconnects before the guest noticed the previous host
 * leave, the agent reads the new request on the old session, whose stream
 * ids are higher, and drops that session as a protocol violation. So the
 * first calls are Health.Check probes with a short timeout, repeated until
 * one is answered (late answers to earlier probes are discarded). */
static int probe(int64_t budget_ms, cc_error **ret_err)
{
        uint64_t deadline = now_ns() + (uint64_t)CC_MAX(budget_ms, 1) * 1000000ull;
        for (;;) {
                Grpc__CheckRequest req = GRPC__CHECK_REQUEST__INIT;
                ProtobufCMessage *resp = NULL;
                cc_error *err = NULL;
                int r = ttrpc_client_call_pb(cli, "grpc.Health", "Check", &req.base,
                                             &grpc__health_check_response__descriptor, 500, &resp, &err);
                if (r == 0) {
                        protobuf_c_message_free_unpacked(resp, NULL);
                        return 0;
                }
                if (r != -ETIMEDOUT || now_ns() >= deadline) {
                        *ret_err = err;
                        return r;
                }
                cc_error_free(err);
        }
}

static void usage(FILE *f)
{
        fprintf(f, "usage: agent-ctl -s SOCKET [-t TIMEOUT_MS] [-w CONNECT_WAIT_MS] [--no-probe] OP [KEY=VALUE...] [-- ARGS...]\n"
                   "       agent-ctl -s SOCKET [-t TIMEOUT_MS] [-w CONNECT_WAIT_MS] [--no-probe] --script FILE|-\n"
                   "ops: health version details create-sandbox create run start pause resume stats remove\n"
                   "     exec read write close-stdin wait signal resize oom destroy sleep\n");
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                { "socket", required_argument, NULL, 's' },
                { "timeout-ms", required_argument, NULL, 't' },
                { "wait-ms", required_argument, NULL, 'w' },
                { "script", required_argument, NULL, 'S' },
                { "no-probe", no_argument, NULL, 'P' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        const char *sock = NULL, *script = NULL;
        int64_t wait_ms = 10000;
        bool do_probe = true;
        int c;
        while ((c = getopt_long(argc, argv, "+s:t:w:h", opts, NULL)) != -1) {
                switch (c) {
                case 's': sock = optarg; break;
                case 't': default_timeout_ms = strtoll(optarg, NULL, 10); break;
                case 'w': wait_ms = strtoll(optarg, NULL, 10); break;
                case 'S': script = optarg; break;
                case 'P': do_probe = false; break;
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return 2;
                }
        }
        if (!sock || (!script && optind >= argc)) {
                usage(stderr);
                return 2;
        }
        signal(SIGPIPE, SIG_IGN);

        _cleanup_json_ json_object *cli_step = NULL;
        if (!script) {
                cli_step = json_object_new_object();
                json_object_object_add(cli_step, "op", json_object_new_string(argv[optind]));
                int i;
                for (i = optind + 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
                        char *eq = strchr(argv[i], '=');
                        if (!eq) {
                                fprintf(stderr, "agent-ctl: expected KEY=VALUE, got '%s'\n", argv[i]);
                                return 2;
                        }
                        *eq = 0;
                        json_object_object_add(cli_step, argv[i], json_object_new_string(eq + 1));
                }
                if (i < argc) {
                        json_object *a = json_object_new_array();
                        for (i++; i < argc; i++)
                                json_object_array_add(a, json_object_new_string(argv[i]));
                        json_object_object_add(cli_step, "args", a);
                }
        }

        cc_error *err = NULL;
        int fd = connect_unix(sock, wait_ms, &err);
        if (fd < 0 || !(cli = ttrpc_client_new(fd, &err)) || (do_probe && probe(default_timeout_ms, &err) < 0)) {
                fprintf(stderr, "agent-ctl: %s\n", err->msg);
                cc_error_free(err);
                ttrpc_client_free(cli);
                return 2;
        }

        bool all_ok = true;
        if (cli_step) {
                all_ok = do_step(cli_step);
        } else {
                FILE *in = strcmp(script, "-") == 0 ? stdin : fopen(script, "re");
                if (!in) {
                        fprintf(stderr, "agent-ctl: %s: %s\n", script, strerror(errno));
                        ttrpc_client_free(cli);
                        return 2;
                }
                char *line = NULL;
                size_t cap = 0;
                ssize_t n;
                while ((n = getline(&line, &cap, in)) > 0) {
                        if (n > (1 << 20)) {
                                fprintf(stderr, "agent-ctl: script line too long\n");
                                all_ok = false;
                                break;
                        }
                        if (strspn(line, " \t\r\n") == (size_t)n || line[0] == '#')
                                continue;
                        json_object *step = json_tokener_parse(line);
                        if (!step || !json_object_is_type(step, json_type_object)) {
                                printf("{\"op\":\"\",\"ok\":false,\"code\":-1,\"error\":\"bad JSON line\"}\n");
                                fflush(stdout);
                                all_ok = false;
                                json_object_put(step);
                                continue;
                        }
                        if (!do_step(step))
                                all_ok = false;
                        json_object_put(step);
                }
                free(line);
                if (in != stdin)
                        fclose(in);
        }
        ttrpc_client_free(cli);
        return all_ok ? 0 : 1;
}
