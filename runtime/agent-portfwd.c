/* SPDX-License-Identifier: Apache-2.0 */
/* Port forwarding through the agent: see runtime/agent-portfwd.h. */
#include "runtime/agent-portfwd.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/thread.h"
#include "cocoon-agent.pb-c.h"

#define PF_SVC "cocoon.agent.PortForward"
#define PF_CHUNK (256u * 1024)      /* per Write */
#define PF_READ_MAX (1u << 20)      /* per Read */
#define PF_CALL_TIMEOUT_MS 30000    /* Open/Write/Close; Read blocks */

typedef struct pf_link {
        atomic_int refs;
        rt_agent *agent;
        uint64_t handle;
        uint16_t port;
        int fd;                     /* our end of the socketpair */
        atomic_bool closed;         /* Close sent */
} pf_link;

static void pf_close_handle(pf_link *l)
{
        if (atomic_exchange(&l->closed, true))
                return;
        Cocoon__Agent__PortForwardCloseRequest req = COCOON__AGENT__PORT_FORWARD_CLOSE_REQUEST__INIT;
        req.handle = l->handle;
        ProtobufCMessage *resp = NULL;
        _cleanup_error_ cc_error *err = NULL;
        if (rt_agent_call_pb(l->agent, PF_SVC, "Close", &req.base,
                             &cocoon__agent__port_forward_empty__descriptor, PF_CALL_TIMEOUT_MS, &resp,
                             &err) < 0)
                log_debug("port-forward %u: close: %s", l->port, err->msg);
        if (resp)
                protobuf_c_message_free_unpacked(resp, NULL);
}

static void pf_unref(pf_link *l)
{
        if (atomic_fetch_sub(&l->refs, 1) != 1)
                return;
        pf_close_handle(l);
        close(l->fd);
        rt_agent_unref(l->agent);
        free(l);
}

static int pf_write_call(pf_link *l, const void *buf, size_t len, bool close_write, cc_error **ret_err)
{
        Cocoon__Agent__PortForwardWriteRequest req = COCOON__AGENT__PORT_FORWARD_WRITE_REQUEST__INIT;
        req.handle = l->handle;
        req.data.data = (uint8_t *)buf;
        req.data.len = len;
        req.close_write = close_write;
        ProtobufCMessage *resp = NULL;
        /* No timeout: a server inside the pod that does not read holds the
         * writer back (flow control), like a slow TCP peer. */
        int r = rt_agent_call_pb(l->agent, PF_SVC, "Write", &req.base,
                                 &cocoon__agent__port_forward_empty__descriptor, 0, &resp, ret_err);
        if (resp)
                protobuf_c_message_free_unpacked(resp, NULL);
        return r;
}

/* local socket → agent */
static void *up_thread(void *arg)
{
        pf_link *l = arg;
        uint8_t *buf = malloc(PF_CHUNK);
        for (;;) {
                ssize_t n = buf ? read(l->fd, buf, PF_CHUNK) : -1;
                if (n < 0 && errno == EINTR)
                        continue;
                _cleanup_error_ cc_error *err = NULL;
                if (n > 0) {
                        if (pf_write_call(l, buf, (size_t)n, false, &err) < 0) {
                                log_debug("port-forward %u: write: %s", l->port, err->msg);
                                shutdown(l->fd, SHUT_RDWR);
                                break;
                        }
                        continue;
                }
                if (n == 0) {
                        /* The client half-closed: pass it on, then wait
                         * until it closes completely (POLLHUP). */
                        if (pf_write_call(l, NULL, 0, true, &err) < 0)
                                log_debug("port-forward %u: close_write: %s", l->port, err->msg);
                        struct pollfd p = { .fd = l->fd, .events = 0 };
                        while (poll(&p, 1, -1) < 0 && errno == EINTR)
                                ;
                }
                break;
        }
        free(buf);
        /* Ends the pending Read (the agent answers it NOT_FOUND). */
        pf_close_handle(l);
        pf_unref(l);
        return NULL;
}

static bool write_all(int fd, const uint8_t *p, size_t n)
{
        while (n > 0) {
                ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        return false;
                p += w;
                n -= (size_t)w;
        }
        return true;
}

/* agent → local socket */
static void *down_thread(void *arg)
{
        pf_link *l = arg;
        for (;;) {
                Cocoon__Agent__PortForwardReadRequest req = COCOON__AGENT__PORT_FORWARD_READ_REQUEST__INIT;
                req.handle = l->handle;
                req.max_len = PF_READ_MAX;
                Cocoon__Agent__PortForwardReadResponse *resp = NULL;
                _cleanup_error_ cc_error *err = NULL;
                int r = rt_agent_call_pb(l->agent, PF_SVC, "Read", &req.base,
                                         &cocoon__agent__port_forward_read_response__descriptor, 0,
                                         (ProtobufCMessage **)&resp, &err);
                if (r < 0) {
                        if (!atomic_load(&l->closed))
                                log_debug("port-forward %u: read: %s", l->port, err->msg);
                        shutdown(l->fd, SHUT_RDWR);
                        break;
                }
                bool eof = resp->eof || resp->data.len == 0;
                bool ok = resp->data.len > PF_READ_MAX ? false
                                                       : write_all(l->fd, resp->data.data, resp->data.len);
                protobuf_c_message_free_unpacked(&resp->base, NULL);
                if (!ok) {
                        shutdown(l->fd, SHUT_RDWR);
                        break;
                }
                if (eof) {
                        shutdown(l->fd, SHUT_WR);
                        break;
                }
        }
        pf_unref(l);
        return NULL;
}

int rt_agent_portfwd_connect(rt_agent *a, uint16_t port, int timeout_ms, int *ret_fd,
                             cc_error **ret_err)
{
        if (port == 0)
                return cc_error_set(ret_err, -EINVAL, "port-forward: port 0");
        Cocoon__Agent__PortForwardOpenRequest req = COCOON__AGENT__PORT_FORWARD_OPEN_REQUEST__INIT;
        req.port = port;
        Cocoon__Agent__PortForwardOpenResponse *resp = NULL;
        if (rt_agent_call_pb(a, PF_SVC, "Open", &req.base,
                             &cocoon__agent__port_forward_open_response__descriptor,
                             timeout_ms > 0 ? timeout_ms : PF_CALL_TIMEOUT_MS,
                             (ProtobufCMessage **)&resp, ret_err) < 0)
                return cc_error_prefix(ret_err, "port-forward to port %u", port);
        uint64_t handle = resp->handle;
        protobuf_c_message_free_unpacked(&resp->base, NULL);

        pf_link *l = calloc(1, sizeof(*l));
        int sv[2] = { -1, -1 };
        if (!l || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
                int e = l ? -errno : -ENOMEM;
                free(l);
                /* the handle: closed through a temporary link */
                pf_link tmp = { .agent = a, .handle = handle, .port = port };
                pf_close_handle(&tmp);
                return cc_error_set(ret_err, e, "port-forward to port %u: %s", port, strerror(-e));
        }
        atomic_init(&l->refs, 1);
        atomic_init(&l->closed, false);
        l->agent = rt_agent_ref(a);
        l->handle = handle;
        l->port = port;
        l->fd = sv[0];
        atomic_fetch_add(&l->refs, 1);
        int r = cc_thread_start_detached(up_thread, l, 256 * 1024);
        if (r < 0) {
                atomic_fetch_sub(&l->refs, 1);
                close(sv[1]);
                pf_unref(l);
                return cc_error_set(ret_err, r, "port-forward: cannot start a thread");
        }
        atomic_fetch_add(&l->refs, 1);
        r = cc_thread_start_detached(down_thread, l, 256 * 1024);
        if (r < 0) {
                atomic_fetch_sub(&l->refs, 1);
                shutdown(sv[0], SHUT_RDWR); /* ends up_thread */
                close(sv[1]);
                pf_unref(l);
                return cc_error_set(ret_err, r, "port-forward: cannot start a thread");
        }
        pf_unref(l); /* the threads hold theirs */
        log_debug("port-forward to port %u: handle %llx", port, (unsigned long long)handle);
        *ret_fd = sv[1];
        return 0;
}
