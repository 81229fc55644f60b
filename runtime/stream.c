/* SPDX-License-Identifier: Apache-2.0 */
/* streaming_backend_ops over the runtime: see runtime/stream.h. */
#include "runtime/stream.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "runtime/agent-portfwd.h"
#include "runtime/exec-proc.h"

#define ATTACH_DRAIN_SLICE_MS 1000

int rt_stream_req_new(const char *container_id, const char *sandbox_id, char *const *argv,
                      size_t argc, rt_stream_req **ret, cc_error **ret_err)
{
        rt_stream_req *r = calloc(1, sizeof(*r));
        if (!r)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        bool oom = false;
        if (container_id && !(r->container_id = strdup(container_id)))
                oom = true;
        if (sandbox_id && !(r->sandbox_id = strdup(sandbox_id)))
                oom = true;
        if (argv) {
                r->argv = calloc(argc + 1, sizeof(char *));
                if (!r->argv)
                        oom = true;
                for (size_t i = 0; !oom && i < argc; i++)
                        if (!(r->argv[i] = strdup(argv[i])))
                                oom = true;
                r->argc = argc;
        }
        if (oom) {
                rt_stream_req_free(r);
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        }
        *ret = r;
        return 0;
}

void rt_stream_req_free(void *p)
{
        rt_stream_req *r = p;
        if (!r)
                return;
        free(r->container_id);
        free(r->sandbox_id);
        cc_strv_free(r->argv);
        free(r);
}

typedef struct rs_handle {
        streaming_kind kind;
        streaming_session *session;
        /* exec */
        rt_exec_proc *proc;
        /* attach */
        rt_exec_target *t;
        int attach_id;           /* > 0 while attached */
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool cancelled;
} rs_handle;

static streaming_channel channel_of(rt_agent_stream s)
{
        return s == RT_AGENT_STDERR ? STREAMING_STDERR : STREAMING_STDOUT;
}

/* Output of an exec or of the attached container, to the client. */
static int sink(void *userdata, rt_agent_stream s, const void *buf, size_t len)
{
        rs_handle *h = userdata;
        return streaming_session_write(h->session, channel_of(s), buf, len) < 0 ? -1 : 0;
}

static void handle_free(rs_handle *h)
{
        if (!h)
                return;
        rt_exec_proc_unref(h->proc);
        rt_exec_target_free(h->t);
        pthread_mutex_destroy(&h->lock);
        pthread_cond_destroy(&h->cond);
        free(h);
}

static int start_exec(rs_handle *h, rt_runtime *rt, const rt_stream_req *req,
                      const streaming_opts *opts, cc_error **ret_err)
{
        rt_exec_target *t = NULL;
        int r = rt_runtime_exec_target(rt, req->container_id, &t, ret_err);
        if (r < 0)
                return r;
        uint16_t w = 0, hh = 0;
        streaming_session_get_size(h->session, &w, &hh);
        rt_exec_proc_opts o = {
                .argv = req->argv, .argc = req->argc, .tty = opts->tty, .stdin_ = opts->stdin_,
                .rows = hh, .cols = w, .fn = sink, .userdata = h,
        };
        r = rt_exec_proc_start(t, &o, &h->proc, ret_err);
        rt_exec_target_free(t);
        return r;
}

static int start_attach(rs_handle *h, rt_runtime *rt, const rt_stream_req *req, cc_error **ret_err)
{
        int r = rt_runtime_exec_target(rt, req->container_id, &h->t, ret_err);
        if (r < 0)
                return r;
        if (!h->t->io)
                return cc_error_set(ret_err, -ENOTCONN, "container %s has no output stream to attach to",
                                    req->container_id);
        r = rt_ctr_io_attach(h->t->io, sink, h, ret_err);
        if (r < 0)
                return cc_error_prefix(ret_err, "attach to container %s", req->container_id);
        h->attach_id = r;
        return 0;
}

static int rs_start(void *backend, streaming_session *session, streaming_kind kind, void *payload,
                    const streaming_opts *opts, void **ret_handle, cc_error **ret_err)
{
        rt_runtime *rt = backend;
        const rt_stream_req *req = payload;
        if (!req || !req->container_id)
                return cc_error_set(ret_err, -EINVAL, "stream: no container");
        rs_handle *h = calloc(1, sizeof(*h));
        if (!h)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        h->kind = kind;
        h->session = session;
        pthread_mutex_init(&h->lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&h->cond, &ca);
        pthread_condattr_destroy(&ca);
        int r;
        if (kind == STREAMING_EXEC)
                r = start_exec(h, rt, req, opts, ret_err);
        else if (kind == STREAMING_ATTACH)
                r = start_attach(h, rt, req, ret_err);
        else
                r = cc_error_set(ret_err, -EINVAL, "stream: %s has no process", streaming_kind_to_string(kind));
        if (r < 0) {
                handle_free(h);
                return r;
        }
        log_debug("stream: %s in container %s started", streaming_kind_to_string(kind), req->container_id);
        *ret_handle = h;
        return 0;
}

static int rs_write_stdin(void *handle, const void *buf, size_t len)
{
        rs_handle *h = handle;
        _cleanup_error_ cc_error *err = NULL;
        int r;
        if (h->kind == STREAMING_EXEC) {
                r = rt_exec_proc_write_stdin(h->proc, buf, len, &err);
        } else {
                /* The container keeps stdin open only if created with it. */
                if (!h->t->stdin_)
                        return 0;
                r = rt_agent_write_stdin(h->t->agent, h->t->container_id, "", buf, len, 0, &err);
        }
        if (r < 0)
                log_debug("stream: stdin: %s", err->msg);
        return r;
}

static int rs_close_stdin(void *handle)
{
        rs_handle *h = handle;
        /* Attach: the container's stdin belongs to the container (other
         * attachers may come); a client leaving does not close it. */
        if (h->kind != STREAMING_EXEC)
                return 0;
        _cleanup_error_ cc_error *err = NULL;
        int r = rt_exec_proc_close_stdin(h->proc, &err);
        if (r < 0)
                log_debug("stream: close stdin: %s", err->msg);
        return r;
}

static int rs_resize(void *handle, uint16_t width, uint16_t height)
{
        rs_handle *h = handle;
        if (width == 0 || height == 0)
                return 0;
        _cleanup_error_ cc_error *err = NULL;
        int r;
        if (h->kind == STREAMING_EXEC) {
                r = rt_exec_proc_resize(h->proc, height, width, &err);
        } else {
                if (!h->t->tty)
                        return 0;
                r = rt_agent_tty_resize(h->t->agent, h->t->container_id, "", height, width, 0, &err);
        }
        if (r < 0)
                log_debug("stream: resize: %s", err->msg);
        return r;
}

static int rs_wait(void *handle, int *ret_exit_code, cc_error **ret_err)
{
        rs_handle *h = handle;
        if (h->kind == STREAMING_EXEC)
                return rt_exec_proc_wait(h->proc, true, 0, ret_exit_code, ret_err);
        /* Attach: until the container's main process exited and its output
         * was drained. ctr-io's wait has no cancel hook, so it is taken in
         * slices and cancel() is checked in between. */
        for (;;) {
                pthread_mutex_lock(&h->lock);
                bool cancelled = h->cancelled;
                pthread_mutex_unlock(&h->lock);
                if (cancelled)
                        return cc_error_set(ret_err, -ECANCELED, "attach cancelled");
                _cleanup_error_ cc_error *err = NULL;
                int r = rt_ctr_io_wait_drained(h->t->io, ATTACH_DRAIN_SLICE_MS, &err);
                if (r == 0)
                        break;
                if (r != -ETIMEDOUT)
                        return cc_error_propagate(ret_err, TAKE_PTR(err));
        }
        *ret_exit_code = 0;
        return 0;
}

static void detach(rs_handle *h)
{
        pthread_mutex_lock(&h->lock);
        int id = h->attach_id;
        h->attach_id = 0;
        pthread_mutex_unlock(&h->lock);
        if (id > 0)
                rt_ctr_io_detach(h->t->io, id);
}

static void rs_cancel(void *handle)
{
        rs_handle *h = handle;
        pthread_mutex_lock(&h->lock);
        h->cancelled = true;
        pthread_cond_broadcast(&h->cond);
        pthread_mutex_unlock(&h->lock);
        if (h->kind == STREAMING_EXEC) {
                _cleanup_error_ cc_error *err = NULL;
                if (rt_exec_proc_kill(h->proc, &err) < 0)
                        log_debug("stream: kill exec %s: %s", rt_exec_proc_id(h->proc), err->msg);
                rt_exec_proc_cancel(h->proc);
        } else {
                detach(h);
        }
}

static void rs_release(void *handle)
{
        rs_handle *h = handle;
        if (h->kind == STREAMING_EXEC)
                rt_exec_proc_cancel(h->proc); /* no more calls into the session */
        else
                detach(h);
        handle_free(h);
}

static int rs_port_connect(void *backend, void *payload, uint16_t port, cc_error **ret_err)
{
        rt_runtime *rt = backend;
        const rt_stream_req *req = payload;
        if (!req || !req->sandbox_id)
                return cc_error_set(ret_err, -EINVAL, "port-forward: no pod");
        _cleanup_rt_agent_ rt_agent *a = NULL;
        bool host_network = false;
        int r = rt_runtime_pod_agent(rt, req->sandbox_id, &a, &host_network, ret_err);
        if (r < 0)
                return r;
        int fd = -1;
        r = rt_agent_portfwd_connect(a, port, 0, &fd, ret_err);
        if (r < 0)
                return cc_error_prefix(ret_err, "pod %s", req->sandbox_id);
        return fd;
}

const streaming_backend_ops rt_stream_backend_ops = {
        .start = rs_start,
        .write_stdin = rs_write_stdin,
        .close_stdin = rs_close_stdin,
        .resize = rs_resize,
        .wait = rs_wait,
        .cancel = rs_cancel,
        .release = rs_release,
        .port_connect = rs_port_connect,
};
