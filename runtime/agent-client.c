/* SPDX-License-Identifier: Apache-2.0 */
/* The agent client: the dialer (connect + Health.Check probes with bounded
 * backoff) and one typed wrapper per Kata agent RPC over the ttRPC client.
 * Every reply field that comes from the guest is checked before use. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <linux/vm_sockets.h>

#include "common/cleanup.h"
#include "common/id.h"
#include "common/log.h"
#include "common/ttrpc.h"
#include "runtime/agent.h"
#include "agent.pb-c.h"
#include "google/protobuf/empty.pb-c.h"
#include "health.pb-c.h"
#include "types.pb-c.h"

#define SVC "grpc.AgentService"
#define HEALTH_SVC "grpc.Health"

#define DEFAULT_TIMEOUT_MS 30000
/* One Health.Check probe while dialing. A probe sent before the guest has
 * opened its end of the virtio-serial port is lost, and the next one only
 * goes out when it times out: during a boot a long probe timeout is added,
 * whole, to the pod's start (measured: agent ready 750-960 ms after QEMU
 * started with 500 ms probes, for a guest that serves at ~600 ms). So the
 * probes are short while the guest boots and grow afterwards, for an agent
 * that is up but slow to answer (a loaded host, a re-attach). */
#define PROBE_MIN_MS 25
#define PROBE_MS 500
#define PROBE_SHORT_FOR_MS 5000 /* probes stay at PROBE_MIN_MS this long */
#define BACKOFF_MIN_MS 10
#define BACKOFF_MAX_MS 200
#define VERSION_MAX 256
#define ID_MAX 128            /* the agent's id limit */
#define WRITE_CHUNK (1u << 20)
#define MAX_STORAGES 64
#define MAX_LIST 1024         /* routes, neighbours, addresses, dns lines */

struct rt_agent {
        unsigned refs;          /* atomic */
        int default_timeout_ms; /* atomic */
        ttrpc_client *cli;
};

static uint64_t now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- lifetime ------------------------------------------------------------ */

static rt_agent *agent_new(ttrpc_client *cli)
{
        rt_agent *a = calloc(1, sizeof(*a));
        if (!a)
                return NULL;
        a->refs = 1;
        a->default_timeout_ms = DEFAULT_TIMEOUT_MS;
        a->cli = cli;
        return a;
}

rt_agent *rt_agent_ref(rt_agent *a)
{
        if (a)
                __atomic_add_fetch(&a->refs, 1, __ATOMIC_RELAXED);
        return a;
}

void rt_agent_unref(rt_agent *a)
{
        if (!a || __atomic_sub_fetch(&a->refs, 1, __ATOMIC_ACQ_REL) != 0)
                return;
        ttrpc_client_free(a->cli); /* closes; waits for calls in flight */
        free(a);
}

void rt_agent_close(rt_agent *a)
{
        if (a)
                ttrpc_client_close(a->cli);
}

bool rt_agent_is_closed(rt_agent *a)
{
        return !a || ttrpc_client_is_closed(a->cli);
}

int rt_agent_closed_fd(rt_agent *a)
{
        return ttrpc_client_closed_fd(a->cli);
}

void rt_agent_set_default_timeout(rt_agent *a, int timeout_ms)
{
        __atomic_store_n(&a->default_timeout_ms, timeout_ms > 0 ? timeout_ms : DEFAULT_TIMEOUT_MS,
                         __ATOMIC_RELAXED);
}

/* ---- calls --------------------------------------------------------------- */

static int64_t eff_timeout(rt_agent *a, int timeout_ms)
{
        return timeout_ms > 0 ? timeout_ms : __atomic_load_n(&a->default_timeout_ms, __ATOMIC_RELAXED);
}

/* One unary call; the ttRPC error already names service/method. */
static int call_pb(rt_agent *a, const char *svc, const char *method, const ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *rd, int64_t timeout_ms, ProtobufCMessage **ret,
                   cc_error **ret_err)
{
        if (!a)
                return cc_error_set(ret_err, -EINVAL, "agent %s: no agent connection", method);
        int r = ttrpc_client_call_pb(a->cli, svc, method, req, rd ? rd : &google__protobuf__empty__descriptor,
                                     timeout_ms, ret, ret_err);
        if (r < 0)
                cc_error_prefix(ret_err, "agent");
        return r;
}

int rt_agent_call_pb(rt_agent *a, const char *service, const char *method, const ProtobufCMessage *req,
                     const ProtobufCMessageDescriptor *resp_desc, int timeout_ms, ProtobufCMessage **ret_resp,
                     cc_error **ret_err)
{
        /* timeout_ms <= 0: none (the blocking reads of protocol extensions). */
        return call_pb(a, service, method, req, resp_desc, timeout_ms, ret_resp, ret_err);
}

static int call_empty(rt_agent *a, const char *method, const ProtobufCMessage *req, int timeout_ms,
                      cc_error **ret_err)
{
        return call_pb(a, SVC, method, req, NULL, eff_timeout(a, timeout_ms), NULL, ret_err);
}

/* Ids we send: non-empty, bounded (the agent validates the charset). */
static int check_id(const char *what, const char *id, bool may_be_empty, cc_error **ret_err)
{
        if (!id || !*id) {
                if (may_be_empty)
                        return 0;
                return cc_error_set(ret_err, -EINVAL, "agent: %s is empty", what);
        }
        if (strlen(id) > ID_MAX)
                return cc_error_set(ret_err, -EINVAL, "agent: %s is longer than %d bytes", what, ID_MAX);
        return 0;
}

static bool printable(const char *s, size_t max)
{
        size_t n = strnlen(s, max + 1);
        if (n > max)
                return false;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
                        return false;
        return true;
}

/* ---- dialer -------------------------------------------------------------- */

typedef struct dial_ctx {
        pthread_mutex_t mu;
        ttrpc_client *cur; /* the connection being probed */
        bool cancelled;
        int cancel_fd;
        int stop_fd;       /* eventfd: ends the watcher */
} dial_ctx;

/* Watches cancel_fd while probing, so that a cancel ends a probe in flight
 * at once (the probe itself waits up to PROBE_MS). */
static void *cancel_watcher(void *arg)
{
        dial_ctx *d = arg;
        struct pollfd p[2] = { { .fd = d->cancel_fd, .events = POLLIN }, { .fd = d->stop_fd, .events = POLLIN } };
        while (poll(p, 2, -1) < 0 && errno == EINTR)
                ;
        if (p[0].revents) {
                pthread_mutex_lock(&d->mu);
                d->cancelled = true;
                if (d->cur)
                        ttrpc_client_close(d->cur);
                pthread_mutex_unlock(&d->mu);
        }
        return NULL;
}

static bool dial_cancelled(dial_ctx *d)
{
        if (d->cancel_fd < 0)
                return false;
        struct pollfd p = { .fd = d->cancel_fd, .events = POLLIN };
        if (poll(&p, 1, 0) > 0)
                return true;
        pthread_mutex_lock(&d->mu);
        bool c = d->cancelled;
        pthread_mutex_unlock(&d->mu);
        return c;
}

/* Waits up to ms for cancel_fd (the backoff between tries). true if
 * cancelled. */
static bool dial_pause(dial_ctx *d, int ms)
{
        struct pollfd p = { .fd = d->cancel_fd, .events = POLLIN };
        int n = poll(&p, d->cancel_fd >= 0 ? 1 : 0, ms);
        return n > 0 || dial_cancelled(d);
}

static void ep_describe(const vmm_endpoint *ep, char *buf, size_t size)
{
        if (ep->kind == VMM_EP_VSOCK)
                snprintf(buf, size, "vsock:%" PRIu32 ":%" PRIu32, ep->cid, ep->port);
        else
                snprintf(buf, size, "unix:%s", ep->path);
}

/* One connect attempt, bounded by deadline_ms and cancel_fd. Returns the
 * connected fd, or -errno with *err describing the failure. */
static int dial_connect(const vmm_endpoint *ep, dial_ctx *d, uint64_t deadline_ms, cc_error **ret_err)
{
        struct sockaddr_storage ss = { 0 };
        socklen_t sl;
        int family;

        if (ep->kind == VMM_EP_VSOCK) {
                struct sockaddr_vm *vm = (struct sockaddr_vm *)&ss;
                vm->svm_family = AF_VSOCK;
                vm->svm_cid = ep->cid;
                vm->svm_port = ep->port;
                sl = sizeof(*vm);
                family = AF_VSOCK;
        } else {
                struct sockaddr_un *un = (struct sockaddr_un *)&ss;
                size_t n = strnlen(ep->path, sizeof(ep->path));
                if (n == 0 || n >= sizeof(un->sun_path))
                        return cc_error_set(ret_err, -EINVAL, "bad unix socket path");
                un->sun_family = AF_UNIX;
                memcpy(un->sun_path, ep->path, n);
                sl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
                family = AF_UNIX;
        }
        _cleanup_close_ int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return cc_error_errno(ret_err, "socket");
        if (connect(fd, (struct sockaddr *)&ss, sl) == 0)
                return TAKE_FD(fd);
        if (errno != EINPROGRESS)
                return cc_error_errno(ret_err, "connect"); /* EAGAIN: unix backlog full, retried */
        for (;;) {
                uint64_t now = now_ms();
                if (now >= deadline_ms)
                        return cc_error_set(ret_err, -ETIMEDOUT, "connect: timed out");
                struct pollfd p[2] = { { .fd = fd, .events = POLLOUT }, { .fd = d->cancel_fd, .events = POLLIN } };
                int n = poll(p, d->cancel_fd >= 0 ? 2 : 1, (int)CC_MIN(deadline_ms - now, (uint64_t)INT_MAX));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return cc_error_errno(ret_err, "poll");
                if (d->cancel_fd >= 0 && p[1].revents)
                        return cc_error_set(ret_err, -ECANCELED, "cancelled");
                if (p[0].revents)
                        break;
        }
        int soerr = 0;
        socklen_t el = sizeof(soerr);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &el) < 0)
                return cc_error_errno(ret_err, "getsockopt");
        if (soerr)
                return cc_error_set(ret_err, -soerr, "connect: %s", strerror(soerr));
        return TAKE_FD(fd);
}

/* Health.Check probes on one connection until one is answered: a
 * virtio-serial port the guest has not opened yet swallows requests, so a
 * probe that times out is repeated (its late answer is discarded by the
 * client). 0 served; -ETIMEDOUT deadline; other: the connection failed. */
static int dial_probe(ttrpc_client *cli, dial_ctx *d, uint64_t deadline_ms, cc_error **ret_err)
{
        uint64_t start = now_ms(), probe = PROBE_MIN_MS;
        for (;;) {
                uint64_t now = now_ms();
                if (now >= deadline_ms)
                        return cc_error_set(ret_err, -ETIMEDOUT, "Health.Check: no answer");
                Grpc__CheckRequest req = GRPC__CHECK_REQUEST__INIT;
                ProtobufCMessage *resp = NULL;
                _cleanup_error_ cc_error *err = NULL;
                if (now - start >= PROBE_SHORT_FOR_MS)
                        probe = CC_MIN(probe * 2, (uint64_t)PROBE_MS);
                int64_t t = (int64_t)CC_MIN(probe, deadline_ms - now);
                int r = ttrpc_client_call_pb(cli, HEALTH_SVC, "Check", &req.base,
                                             &grpc__health_check_response__descriptor, CC_MAX(t, 1), &resp, &err);
                if (r == 0) {
                        Grpc__HealthCheckResponse *h = (Grpc__HealthCheckResponse *)resp;
                        bool serving = h->status == GRPC__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
                        protobuf_c_message_free_unpacked(resp, NULL);
                        if (serving)
                                return 0;
                        /* answered, not ready yet: ask again after a pause */
                        if (dial_pause(d, BACKOFF_MAX_MS))
                                return cc_error_set(ret_err, -ECANCELED, "cancelled");
                        continue;
                }
                if (dial_cancelled(d))
                        return cc_error_set(ret_err, -ECANCELED, "cancelled");
                if (r != -ETIMEDOUT)
                        return cc_error_propagate(ret_err, TAKE_PTR(err));
        }
}

int rt_agent_dial(const vmm_endpoint *ep, int timeout_ms, int cancel_fd, rt_agent **ret, cc_error **ret_err)
{
        char where[160];
        dial_ctx d = { .cancel_fd = cancel_fd, .stop_fd = -1 };
        pthread_t watcher;
        bool watching = false;
        _cleanup_error_ cc_error *last = NULL;
        int backoff = BACKOFF_MIN_MS, r;

        if (!ep || !ret || (ep->kind != VMM_EP_UNIX && ep->kind != VMM_EP_VSOCK))
                return cc_error_set(ret_err, -EINVAL, "dial agent: bad endpoint");
        ep_describe(ep, where, sizeof(where));
        if (timeout_ms <= 0)
                timeout_ms = DEFAULT_TIMEOUT_MS;
        uint64_t deadline = now_ms() + (uint64_t)timeout_ms;

        pthread_mutex_init(&d.mu, NULL);
        if (cancel_fd >= 0) {
                d.stop_fd = eventfd(0, EFD_CLOEXEC);
                if (d.stop_fd < 0) {
                        r = cc_error_errno(ret_err, "dial agent at %s: eventfd", where);
                        pthread_mutex_destroy(&d.mu);
                        return r;
                }
                r = -pthread_create(&watcher, NULL, cancel_watcher, &d);
                if (r < 0) {
                        close(d.stop_fd);
                        pthread_mutex_destroy(&d.mu);
                        return cc_error_set(ret_err, r, "dial agent at %s: thread: %s", where, strerror(-r));
                }
                watching = true;
        }

        ttrpc_client *cli = NULL;
        for (;;) {
                if (dial_cancelled(&d)) {
                        r = -ECANCELED;
                        break;
                }
                if (now_ms() >= deadline) {
                        r = -ETIMEDOUT;
                        break;
                }
                cc_error_free(TAKE_PTR(last));
                int fd = dial_connect(ep, &d, deadline, &last);
                if (fd == -ECANCELED) {
                        r = -ECANCELED;
                        break;
                }
                if (fd >= 0) {
                        cli = ttrpc_client_new(fd, &last);
                        if (cli) {
                                pthread_mutex_lock(&d.mu);
                                d.cur = cli;
                                if (d.cancelled)
                                        ttrpc_client_close(cli);
                                pthread_mutex_unlock(&d.mu);
                                r = dial_probe(cli, &d, deadline, &last);
                                pthread_mutex_lock(&d.mu);
                                d.cur = NULL;
                                pthread_mutex_unlock(&d.mu);
                                if (r == 0)
                                        break;
                                ttrpc_client_free(TAKE_PTR(cli));
                                if (r == -ECANCELED || dial_cancelled(&d)) {
                                        r = -ECANCELED;
                                        break;
                                }
                                if (r == -ETIMEDOUT)
                                        break;
                                /* a peer that answers with an error status
                                 * is not the agent we expect: give up */
                                if (last && last->grpc > 0)
                                        break;
                        }
                }
                log_debug("dial agent at %s: %s; retrying in %d ms", where, last ? last->msg : "failed", backoff);
                uint64_t now = now_ms();
                int wait = (int)CC_MIN((uint64_t)backoff, deadline > now ? deadline - now : 0);
                if (dial_pause(&d, wait)) {
                        r = -ECANCELED;
                        break;
                }
                backoff = CC_MIN(backoff * 2, BACKOFF_MAX_MS);
        }

        if (watching) {
                uint64_t one = 1;
                (void)!write(d.stop_fd, &one, sizeof(one));
                pthread_join(watcher, NULL);
                close(d.stop_fd);
        }
        pthread_mutex_destroy(&d.mu);

        if (r == 0) {
                rt_agent *a = agent_new(cli);
                if (!a) {
                        ttrpc_client_free(cli);
                        return cc_error_set(ret_err, -ENOMEM, "dial agent at %s: out of memory", where);
                }
                *ret = a;
                return 0;
        }
        if (r == -ECANCELED)
                return cc_error_set(ret_err, r, "dial agent at %s: cancelled", where);
        if (r == -ETIMEDOUT)
                return cc_error_set(ret_err, r, "dial agent at %s: no answer within %d ms (last: %s)", where,
                                    timeout_ms, last ? last->msg : "timed out");
        return cc_error_set(ret_err, last ? last->code : r, "dial agent at %s: %s", where,
                            last ? last->msg : strerror(-r));
}

/* ---- health -------------------------------------------------------------- */

int rt_agent_check(rt_agent *a, int timeout_ms, cc_error **ret_err)
{
        Grpc__CheckRequest req = GRPC__CHECK_REQUEST__INIT;
        ProtobufCMessage *resp = NULL;
        int r = call_pb(a, HEALTH_SVC, "Check", &req.base, &grpc__health_check_response__descriptor,
                        eff_timeout(a, timeout_ms), &resp, ret_err);
        if (r < 0)
                return r;
        Grpc__HealthCheckResponse *h = (Grpc__HealthCheckResponse *)resp;
        bool ok = h->status == GRPC__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
        int st = h->status;
        protobuf_c_message_free_unpacked(resp, NULL);
        if (!ok)
                return cc_error_set(ret_err, -EAGAIN, "agent Health.Check: not serving (status %d)", st);
        return 0;
}

int rt_agent_version(rt_agent *a, int timeout_ms, char **ret, cc_error **ret_err)
{
        Grpc__CheckRequest req = GRPC__CHECK_REQUEST__INIT;
        ProtobufCMessage *resp = NULL;
        int r = call_pb(a, HEALTH_SVC, "Version", &req.base, &grpc__version_check_response__descriptor,
                        eff_timeout(a, timeout_ms), &resp, ret_err);
        if (r < 0)
                return r;
        Grpc__VersionCheckResponse *v = (Grpc__VersionCheckResponse *)resp;
        const char *s = v->agent_version ? v->agent_version : "";
        if (!*s || !printable(s, VERSION_MAX)) {
                protobuf_c_message_free_unpacked(resp, NULL);
                return cc_error_set(ret_err, -EBADMSG, "agent Health.Version: bad version string");
        }
        char *out = strdup(s);
        protobuf_c_message_free_unpacked(resp, NULL);
        if (!out)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        *ret = out;
        return 0;
}

/* ---- sandbox / storages -------------------------------------------------- */

static size_t strv_len(const char *const *v)
{
        size_t n = 0;
        while (v && v[n])
                n++;
        return n;
}

/* Fills msgs[i]/ptrs[i] from in[i]; the strings stay borrowed. */
static int fill_storages(const rt_agent_storage *in, size_t n, Grpc__Storage *msgs, Grpc__Storage **ptrs,
                         cc_error **ret_err)
{
        for (size_t i = 0; i < n; i++) {
                const rt_agent_storage *s = &in[i];
                if (!s->driver || !*s->driver || !s->mount_point || s->mount_point[0] != '/')
                        return cc_error_set(ret_err, -EINVAL,
                                            "agent: storage %zu needs a driver and an absolute mount point", i);
                grpc__storage__init(&msgs[i]);
                msgs[i].driver = (char *)s->driver;
                msgs[i].source = (char *)(s->source ? s->source : "");
                msgs[i].fstype = (char *)(s->fstype ? s->fstype : "");
                msgs[i].mount_point = (char *)s->mount_point;
                msgs[i].options = (char **)s->options;
                msgs[i].n_options = strv_len(s->options);
                ptrs[i] = &msgs[i];
        }
        return 0;
}

int rt_agent_create_sandbox(rt_agent *a, const rt_agent_sandbox *sb, int timeout_ms, cc_error **ret_err)
{
        Grpc__CreateSandboxRequest req = GRPC__CREATE_SANDBOX_REQUEST__INIT;
        Grpc__Storage st[MAX_STORAGES], *stp[MAX_STORAGES];

        if (!sb)
                return cc_error_set(ret_err, -EINVAL, "agent CreateSandbox: no sandbox");
        if (check_id("sandbox id", sb->sandbox_id, false, ret_err) < 0)
                return -EINVAL;
        if (sb->n_storages > MAX_STORAGES || (sb->n_storages && !sb->storages))
                return cc_error_set(ret_err, -EINVAL, "agent CreateSandbox: too many storages (%zu)",
                                    sb->n_storages);
        if (strv_len(sb->dns) > 32)
                return cc_error_set(ret_err, -EINVAL, "agent CreateSandbox: too many dns lines");
        int r = fill_storages(sb->storages, sb->n_storages, st, stp, ret_err);
        if (r < 0)
                return r;
        req.sandbox_id = (char *)sb->sandbox_id;
        req.hostname = (char *)(sb->hostname ? sb->hostname : "");
        req.dns = (char **)sb->dns;
        req.n_dns = strv_len(sb->dns);
        req.storages = sb->n_storages ? stp : NULL;
        req.n_storages = sb->n_storages;
        req.sandbox_pidns = sb->sandbox_pidns;
        return call_empty(a, "CreateSandbox", &req.base, timeout_ms, ret_err);
}

int rt_agent_destroy_sandbox(rt_agent *a, int timeout_ms, cc_error **ret_err)
{
        Grpc__DestroySandboxRequest req = GRPC__DESTROY_SANDBOX_REQUEST__INIT;
        return call_empty(a, "DestroySandbox", &req.base, timeout_ms, ret_err);
}

int rt_agent_set_time(rt_agent *a, int64_t sec, int64_t usec, int timeout_ms, cc_error **ret_err)
{
        Grpc__SetGuestDateTimeRequest req = GRPC__SET_GUEST_DATE_TIME_REQUEST__INIT;
        req.sec = sec;
        req.usec = usec;
        return call_empty(a, "SetGuestDateTime", &req.base, timeout_ms, ret_err);
}

int rt_agent_reseed(rt_agent *a, const void *data, size_t len, int timeout_ms, cc_error **ret_err)
{
        Grpc__ReseedRandomDevRequest req = GRPC__RESEED_RANDOM_DEV_REQUEST__INIT;
        req.data.data = (uint8_t *)data;
        req.data.len = len;
        return call_empty(a, "ReseedRandomDev", &req.base, timeout_ms, ret_err);
}

/* ---- containers ---------------------------------------------------------- */

int rt_agent_create_container(rt_agent *a, const char *ctr_id, const Grpc__Spec *spec,
                              const rt_agent_storage *storages, size_t n_storages, bool sandbox_pidns,
                              int timeout_ms, cc_error **ret_err)
{
        Grpc__CreateContainerRequest req = GRPC__CREATE_CONTAINER_REQUEST__INIT;
        Grpc__Storage st[MAX_STORAGES], *stp[MAX_STORAGES];

        if (check_id("container id", ctr_id, false, ret_err) < 0)
                return -EINVAL;
        if (!spec)
                return cc_error_set(ret_err, -EINVAL, "agent CreateContainer %s: no spec", ctr_id);
        if (n_storages > MAX_STORAGES || (n_storages && !storages))
                return cc_error_set(ret_err, -EINVAL, "agent CreateContainer %s: too many storages", ctr_id);
        int r = fill_storages(storages, n_storages, st, stp, ret_err);
        if (r < 0)
                return r;
        req.container_id = (char *)ctr_id;
        req.exec_id = (char *)ctr_id;
        req.oci = (Grpc__Spec *)spec;
        req.storages = n_storages ? stp : NULL;
        req.n_storages = n_storages;
        req.sandbox_pidns = sandbox_pidns;
        return call_empty(a, "CreateContainer", &req.base, timeout_ms, ret_err);
}

/* Start/Remove/Pause/Resume requests start with {string container_id = 1}. */
static int ctr_call(rt_agent *a, const char *method, const char *ctr_id, int timeout_ms, cc_error **ret_err)
{
        Grpc__StartContainerRequest req = GRPC__START_CONTAINER_REQUEST__INIT;
        if (check_id("container id", ctr_id, false, ret_err) < 0)
                return -EINVAL;
        req.container_id = (char *)ctr_id;
        return call_empty(a, method, &req.base, timeout_ms, ret_err);
}

int rt_agent_start_container(rt_agent *a, const char *ctr_id, int timeout_ms, cc_error **ret_err)
{
        return ctr_call(a, "StartContainer", ctr_id, timeout_ms, ret_err);
}

int rt_agent_pause_container(rt_agent *a, const char *ctr_id, int timeout_ms, cc_error **ret_err)
{
        return ctr_call(a, "PauseContainer", ctr_id, timeout_ms, ret_err);
}

int rt_agent_resume_container(rt_agent *a, const char *ctr_id, int timeout_ms, cc_error **ret_err)
{
        return ctr_call(a, "ResumeContainer", ctr_id, timeout_ms, ret_err);
}

int rt_agent_update_container(rt_agent *a, const char *ctr_id, Grpc__LinuxResources *res, int timeout_ms,
                              cc_error **ret_err)
{
        Grpc__UpdateContainerRequest req = GRPC__UPDATE_CONTAINER_REQUEST__INIT;
        if (check_id("container id", ctr_id, false, ret_err) < 0)
                return -EINVAL;
        req.container_id = (char *)ctr_id;
        req.resources = res;
        return call_pb(a, SVC, "UpdateContainer", &req.base, NULL, eff_timeout(a, timeout_ms), NULL, ret_err);
}

int rt_agent_remove_container(rt_agent *a, const char *ctr_id, uint32_t timeout_s, int timeout_ms,
                              cc_error **ret_err)
{
        Grpc__RemoveContainerRequest req = GRPC__REMOVE_CONTAINER_REQUEST__INIT;
        if (check_id("container id", ctr_id, false, ret_err) < 0)
                return -EINVAL;
        req.container_id = (char *)ctr_id;
        req.timeout = timeout_s;
        /* the call must outlive the agent's grace period */
        int64_t t = eff_timeout(a, timeout_ms);
        if (timeout_ms <= 0 && timeout_s > 0)
                t = CC_MAX(t, (int64_t)timeout_s * 1000 + 5000);
        return call_pb(a, SVC, "RemoveContainer", &req.base, NULL, t, NULL, ret_err);
}

/* ---- processes ----------------------------------------------------------- */

int rt_agent_exec(rt_agent *a, const char *ctr_id, const char *exec_id, const Grpc__Process *process,
                  int timeout_ms, cc_error **ret_err)
{
        Grpc__ExecProcessRequest req = GRPC__EXEC_PROCESS_REQUEST__INIT;
        if (check_id("container id", ctr_id, false, ret_err) < 0 || check_id("exec id", exec_id, false, ret_err) < 0)
                return -EINVAL;
        if (!process)
                return cc_error_set(ret_err, -EINVAL, "agent ExecProcess %s: no process", exec_id);
        req.container_id = (char *)ctr_id;
        req.exec_id = (char *)exec_id;
        req.process = (Grpc__Process *)process;
        return call_empty(a, "ExecProcess", &req.base, timeout_ms, ret_err);
}

int rt_agent_signal(rt_agent *a, const char *ctr_id, const char *exec_id, int signo, bool all, int timeout_ms,
                    cc_error **ret_err)
{
        Grpc__SignalProcessRequest req = GRPC__SIGNAL_PROCESS_REQUEST__INIT;
        if (check_id("container id", ctr_id, false, ret_err) < 0 || check_id("exec id", exec_id, true, ret_err) < 0)
                return -EINVAL;
        if (signo < 1 || signo > 64)
                return cc_error_set(ret_err, -EINVAL, "agent SignalProcess: bad signal %d", signo);
        req.container_id = (char *)ctr_id;
        /* The agent reads an empty exec id as "the whole container" (SIGKILL
         * kills the cgroup); the container's own id names its init alone. */
        req.exec_id = (char *)(all ? "" : exec_id && *exec_id ? exec_id : ctr_id);
        req.signal = (uint32_t)signo;
        return call_empty(a, "SignalProcess", &req.base, timeout_ms, ret_err);
}

int rt_agent_wait(rt_agent *a, const char *ctr_id, const char *exec_id, int timeout_ms, int *ret_status,
                  cc_error **ret_err)
{
        Grpc__WaitProcessRequest req = GRPC__WAIT_PROCESS_REQUEST__INIT;
        ProtobufCMessage *resp = NULL;
        if (check_id("container id", ctr_id, false, ret_err) < 0 || check_id("exec id", exec_id, true, ret_err) < 0)
                return -EINVAL;
        req.container_id = (char *)ctr_id;
        req.exec_id = (char *)(exec_id ? exec_id : "");
        int r = call_pb(a, SVC, "WaitProcess", &req.base, &grpc__wait_process_response__descriptor,
                        timeout_ms > 0 ? timeout_ms : 0, &resp, ret_err);
        if (r < 0)
                return r;
        int st = ((Grpc__WaitProcessResponse *)resp)->status;
        protobuf_c_message_free_unpacked(resp, NULL);
        if (st < 0 || st > 255)
                return cc_error_set(ret_err, -EBADMSG, "agent WaitProcess: exit status %d out of range", st);
        if (ret_status)
                *ret_status = st;
        return 0;
}

ssize_t rt_agent_read(rt_agent *a, const char *ctr_id, const char *exec_id, rt_agent_stream s, void *buf,
                      size_t len, int timeout_ms, cc_error **ret_err)
{
        Grpc__ReadStreamRequest req = GRPC__READ_STREAM_REQUEST__INIT;
        ProtobufCMessage *resp = NULL;
        if (check_id("container id", ctr_id, false, ret_err) < 0 || check_id("exec id", exec_id, true, ret_err) < 0)
                return -EINVAL;
        if (!buf || len == 0 || (s != RT_AGENT_STDOUT && s != RT_AGENT_STDERR))
                return cc_error_set(ret_err, -EINVAL, "agent read: bad arguments");
        req.container_id = (char *)ctr_id;
        req.exec_id = (char *)(exec_id ? exec_id : "");
        req.len = (uint32_t)CC_MIN(len, (size_t)UINT32_MAX);
        const char *method = s == RT_AGENT_STDOUT ? "ReadStdout" : "ReadStderr";
        int r = call_pb(a, SVC, method, &req.base, &grpc__read_stream_response__descriptor,
                        timeout_ms > 0 ? timeout_ms : 0, &resp, ret_err);
        if (r < 0)
                return r;
        Grpc__ReadStreamResponse *rs = (Grpc__ReadStreamResponse *)resp;
        size_t n = rs->data.len;
        if (n > req.len) {
                protobuf_c_message_free_unpacked(resp, NULL);
                return cc_error_set(ret_err, -EBADMSG, "agent %s: %zu bytes returned for %" PRIu32 " requested",
                                    method, n, req.len);
        }
        if (n)
                memcpy(buf, rs->data.data, n);
        protobuf_c_message_free_unpacked(resp, NULL);
        return (ssize_t)n;
}

int rt_agent_write_stdin(rt_agent *a, const char *ctr_id, const char *exec_id, const void *buf, size_t len,
                         int timeout_ms, cc_error **ret_err)
{
        if (check_id("container id", ctr_id, false, ret_err) < 0 || check_id("exec id", exec_id, true, ret_err) < 0)
                return -EINVAL;
        if (len && !buf)
                return cc_error_set(ret_err, -EINVAL, "agent WriteStdin: no data");
        uint64_t deadline = now_ms() + (uint64_t)eff_timeout(a, timeout_ms);
        size_t off = 0;
        int pause_ms = 1;
        while (off < len) {
                Grpc__WriteStreamRequest req = GRPC__WRITE_STREAM_REQUEST__INIT;
                ProtobufCMessage *resp = NULL;
                uint64_t now = now_ms();
                if (now >= deadline)
                        return cc_error_set(ret_err, -ETIMEDOUT, "agent WriteStdin: timed out with %zu of %zu bytes written",
                                            off, len);
                size_t chunk = CC_MIN(len - off, (size_t)WRITE_CHUNK);
                req.container_id = (char *)ctr_id;
                req.exec_id = (char *)(exec_id ? exec_id : "");
                req.data.data = (uint8_t *)buf + off;
                req.data.len = chunk;
                int r = call_pb(a, SVC, "WriteStdin", &req.base, &grpc__write_stream_response__descriptor,
                                (int64_t)(deadline - now), &resp, ret_err);
                if (r < 0)
                        return r;
                uint32_t took = ((Grpc__WriteStreamResponse *)resp)->len;
                protobuf_c_message_free_unpacked(resp, NULL);
                if (took > chunk)
                        return cc_error_set(ret_err, -EBADMSG, "agent WriteStdin: %" PRIu32 " bytes taken of %zu sent",
                                            took, chunk);
                off += took;
                if (took) {
                        pause_ms = 1;
                        continue;
                }
                /* The agent's pipe is full and the protocol has no event for
                 * "writable again": back off (bounded) and retry. */
                now = now_ms();
                poll(NULL, 0, (int)CC_MIN((uint64_t)pause_ms, deadline > now ? deadline - now : 0));
                pause_ms = CC_MIN(pause_ms * 2, 50);
        }
        return 0;
}

int rt_agent_close_stdin(rt_agent *a, const char *ctr_id, const char *exec_id, int timeout_ms, cc_error **ret_err)
{
        Grpc__CloseStdinRequest req = GRPC__CLOSE_STDIN_REQUEST__INIT;
        if (check_id("container id", ctr_id, false, ret_err) < 0 || check_id("exec id", exec_id, true, ret_err) < 0)
                return -EINVAL;
        req.container_id = (char *)ctr_id;
        req.exec_id = (char *)(exec_id ? exec_id : "");
        return call_empty(a, "CloseStdin", &req.base, timeout_ms, ret_err);
}

int rt_agent_tty_resize(rt_agent *a, const char *ctr_id, const char *exec_id, uint32_t rows, uint32_t cols,
                        int timeout_ms, cc_error **ret_err)
{
        Grpc__TtyWinResizeRequest req = GRPC__TTY_WIN_RESIZE_REQUEST__INIT;
        if (check_id("container id", ctr_id, false, ret_err) < 0 || check_id("exec id", exec_id, true, ret_err) < 0)
                return -EINVAL;
        if (rows > 0xffff || cols > 0xffff)
                return cc_error_set(ret_err, -EINVAL, "agent TtyWinResize: %" PRIu32 "x%" PRIu32 " out of range",
                                    rows, cols);
        req.container_id = (char *)ctr_id;
        req.exec_id = (char *)(exec_id ? exec_id : "");
        req.row = rows;
        req.column = cols;
        return call_empty(a, "TtyWinResize", &req.base, timeout_ms, ret_err);
}

int rt_agent_get_oom_event(rt_agent *a, int timeout_ms, char **ret, cc_error **ret_err)
{
        Grpc__GetOOMEventRequest req = GRPC__GET_OOMEVENT_REQUEST__INIT;
        ProtobufCMessage *resp = NULL;
        int r = call_pb(a, SVC, "GetOOMEvent", &req.base, &grpc__oomevent__descriptor, timeout_ms > 0 ? timeout_ms : 0,
                        &resp, ret_err);
        if (r < 0)
                return r;
        Grpc__OOMEvent *ev = (Grpc__OOMEvent *)resp;
        _cleanup_error_ cc_error *err = NULL;
        if (cc_name_validate("container id", ev->container_id, ID_MAX, &err) < 0) {
                protobuf_c_message_free_unpacked(resp, NULL);
                return cc_error_set(ret_err, -EBADMSG, "agent GetOOMEvent: %s", err->msg);
        }
        char *id = strdup(ev->container_id);
        protobuf_c_message_free_unpacked(resp, NULL);
        if (!id)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        *ret = id;
        return 0;
}

/* ---- network ------------------------------------------------------------- */

static Types__IPFamily ip_family(int family)
{
        return family == AF_INET6 ? TYPES__IPFAMILY__v6 : TYPES__IPFAMILY__v4;
}

int rt_agent_update_interface(rt_agent *a, const rt_agent_iface *iface, int timeout_ms, cc_error **ret_err)
{
        if (!iface || !iface->name || !*iface->name || strlen(iface->name) >= 16)
                return cc_error_set(ret_err, -EINVAL, "agent UpdateInterface: bad interface name");
        if (iface->n_ips > 16 || (iface->n_ips && !iface->ips))
                return cc_error_set(ret_err, -EINVAL, "agent UpdateInterface: too many addresses");
        Types__IPAddress ips[16], *ipp[16];
        char masks[16][4];
        for (size_t i = 0; i < iface->n_ips; i++) {
                const rt_agent_ip *ip = &iface->ips[i];
                int max = ip->family == AF_INET6 ? 128 : 32;
                if ((ip->family != AF_INET && ip->family != AF_INET6) || ip->prefixlen < 0 || ip->prefixlen > max ||
                    !memchr(ip->addr, 0, sizeof(ip->addr)))
                        return cc_error_set(ret_err, -EINVAL, "agent UpdateInterface: bad address %zu", i);
                types__ipaddress__init(&ips[i]);
                ips[i].family = ip_family(ip->family);
                ips[i].address = (char *)ip->addr;
                snprintf(masks[i], sizeof(masks[i]), "%d", ip->prefixlen);
                ips[i].mask = masks[i];
                ipp[i] = &ips[i];
        }
        Types__Interface ifc = TYPES__INTERFACE__INIT;
        ifc.name = (char *)iface->name;
        ifc.hwaddr = (char *)(iface->mac ? iface->mac : "");
        ifc.mtu = iface->mtu;
        ifc.ipaddresses = iface->n_ips ? ipp : NULL;
        ifc.n_ipaddresses = iface->n_ips;
        Grpc__UpdateInterfaceRequest req = GRPC__UPDATE_INTERFACE_REQUEST__INIT;
        req.interface = &ifc;
        ProtobufCMessage *resp = NULL;
        int r = call_pb(a, SVC, "UpdateInterface", &req.base, &types__interface__descriptor,
                        eff_timeout(a, timeout_ms), &resp, ret_err);
        if (r < 0)
                return r;
        /* The reply describes the link as configured; nothing in it is
         * needed, only that it decoded. */
        protobuf_c_message_free_unpacked(resp, NULL);
        return 0;
}

int rt_agent_update_routes(rt_agent *a, const rt_agent_route *routes, size_t n, int timeout_ms, cc_error **ret_err)
{
        if (n > MAX_LIST || (n && !routes))
                return cc_error_set(ret_err, -EINVAL, "agent UpdateRoutes: too many routes (%zu)", n);
        _cleanup_free_ Types__Route *rt = calloc(n ? n : 1, sizeof(*rt));
        _cleanup_free_ Types__Route **rtp = calloc(n ? n : 1, sizeof(*rtp));
        if (!rt || !rtp)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                types__route__init(&rt[i]);
                const char *dest = routes[i].dest && strcmp(routes[i].dest, "default") != 0 ? routes[i].dest : "";
                rt[i].dest = (char *)dest;
                rt[i].gateway = (char *)(routes[i].gateway ? routes[i].gateway : "");
                rt[i].device = (char *)(routes[i].device ? routes[i].device : "");
                rt[i].family = ip_family(routes[i].family);
                rtp[i] = &rt[i];
        }
        Grpc__Routes list = GRPC__ROUTES__INIT;
        list.routes = rtp;
        list.n_routes = n;
        Grpc__UpdateRoutesRequest req = GRPC__UPDATE_ROUTES_REQUEST__INIT;
        req.routes = &list;
        ProtobufCMessage *resp = NULL;
        int r = call_pb(a, SVC, "UpdateRoutes", &req.base, &grpc__routes__descriptor, eff_timeout(a, timeout_ms),
                        &resp, ret_err);
        if (r < 0)
                return r;
        protobuf_c_message_free_unpacked(resp, NULL);
        return 0;
}

int rt_agent_add_arp_neighbors(rt_agent *a, const rt_agent_neigh *nb, size_t count, int timeout_ms,
                               cc_error **ret_err)
{
        if (count > MAX_LIST || (count && !nb))
                return cc_error_set(ret_err, -EINVAL, "agent AddARPNeighbors: too many neighbours (%zu)", count);
        _cleanup_free_ Types__ARPNeighbor *v = calloc(count ? count : 1, sizeof(*v));
        _cleanup_free_ Types__ARPNeighbor **vp = calloc(count ? count : 1, sizeof(*vp));
        _cleanup_free_ Types__IPAddress *ips = calloc(count ? count : 1, sizeof(*ips));
        if (!v || !vp || !ips)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < count; i++) {
                if (!nb[i].ip || !nb[i].lladdr || !nb[i].device)
                        return cc_error_set(ret_err, -EINVAL, "agent AddARPNeighbors: neighbour %zu incomplete", i);
                types__ipaddress__init(&ips[i]);
                ips[i].address = (char *)nb[i].ip;
                ips[i].family = strchr(nb[i].ip, ':') ? TYPES__IPFAMILY__v6 : TYPES__IPFAMILY__v4;
                types__arpneighbor__init(&v[i]);
                v[i].toipaddress = &ips[i];
                v[i].lladdr = (char *)nb[i].lladdr;
                v[i].device = (char *)nb[i].device;
                v[i].state = 0x80; /* NUD_PERMANENT */
                vp[i] = &v[i];
        }
        Grpc__ARPNeighbors list = GRPC__ARPNEIGHBORS__INIT;
        list.arpneighbors = vp;
        list.n_arpneighbors = count;
        Grpc__AddARPNeighborsRequest req = GRPC__ADD_ARPNEIGHBORS_REQUEST__INIT;
        req.neighbors = &list;
        return call_empty(a, "AddARPNeighbors", &req.base, timeout_ms, ret_err);
}

/* ---- stats --------------------------------------------------------------- */

int rt_agent_stats_container(rt_agent *a, const char *ctr_id, int timeout_ms, rt_agent_stats *ret,
                             cc_error **ret_err)
{
        Grpc__StatsContainerRequest req = GRPC__STATS_CONTAINER_REQUEST__INIT;
        ProtobufCMessage *resp = NULL;
        if (check_id("container id", ctr_id, false, ret_err) < 0)
                return -EINVAL;
        req.container_id = (char *)ctr_id;
        int r = call_pb(a, SVC, "StatsContainer", &req.base, &grpc__stats_container_response__descriptor,
                        eff_timeout(a, timeout_ms), &resp, ret_err);
        if (r < 0)
                return r;
        const Grpc__StatsContainerResponse *sr = (Grpc__StatsContainerResponse *)resp;
        const Grpc__CgroupStats *cs = sr->cgroup_stats;
        rt_agent_stats st = { 0 };
        if (cs && cs->cpu_stats && cs->cpu_stats->cpu_usage)
                st.cpu_usage_ns = cs->cpu_stats->cpu_usage->total_usage;
        if (cs && cs->pids_stats)
                st.pids = cs->pids_stats->current;
        if (cs && cs->memory_stats) {
                const Grpc__MemoryStats *ms = cs->memory_stats;
                uint64_t inactive_file = 0;
                if (ms->usage)
                        st.memory_usage = ms->usage->usage;
                for (size_t i = 0; i < ms->n_stats && i < 256; i++)
                        if (ms->stats[i] && ms->stats[i]->key && strcmp(ms->stats[i]->key, "inactive_file") == 0)
                                inactive_file = ms->stats[i]->value;
                st.memory_working_set = st.memory_usage > inactive_file ? st.memory_usage - inactive_file : 0;
        }
        protobuf_c_message_free_unpacked(resp, NULL);
        *ret = st;
        return 0;
}
