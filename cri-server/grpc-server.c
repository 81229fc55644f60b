/* SPDX-License-Identifier: Apache-2.0 */
#include "cri-server/grpc-server.h"

#include <errno.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cleanup.h"
#include "common/log.h"

enum tag_kind { TAG_REQUEST, TAG_RECV, TAG_CLOSE, TAG_SEND, TAG_MSG, TAG_SHUTDOWN };

typedef struct srv_call srv_call;

typedef struct call_tag {
        enum tag_kind kind;
        srv_call *call;
} call_tag;

struct srv_call {
        cri_grpc_server *srv;
        grpc_call *call;
        grpc_call_details details;
        grpc_metadata_array md;
        grpc_byte_buffer *recv_buf;
        grpc_byte_buffer *send_buf;
        grpc_slice status_details;
        int cancelled_flag;
        atomic_bool cancelled;
        atomic_int refs; /* CQ thread and workers */
        call_tag t_request, t_recv, t_close, t_send, t_msg;
        /* server streaming (cri_grpc_stream_send, on a worker) */
        pthread_mutex_t msg_lock;
        pthread_cond_t msg_cond;
        bool msg_pending, msg_ok, sent_initial;
        srv_call *stream_next; /* cri_grpc_server.streams */
        char method[256];
        int64_t deadline_ms;
        bool accepted;
        uint8_t *req;
        size_t req_len;
        srv_call *next; /* worker queue */
};

struct cri_grpc_server {
        grpc_server *server;
        grpc_completion_queue *cq;
        pthread_t cq_thread;
        bool cq_thread_started;
        cri_grpc_dispatch_fn dispatch;
        bool (*is_inline)(void *userdata, const char *method);
        bool (*is_streaming)(void *userdata, const char *method);
        atomic_ulong n_inline;
        void *userdata;
        call_tag t_shutdown;

        pthread_mutex_t lock;
        pthread_cond_t cond;      /* workers wait for jobs */
        pthread_cond_t done_cond; /* shutdown waits for calls to drain */
        srv_call *q_head, *q_tail;
        pthread_t *workers;
        int n_workers, max_workers, n_idle, n_busy;
        bool stopping_workers;
        bool shutting_down;
        bool shutdown_notified;
        int inflight; /* call objects alive, incl. outstanding accept slots */
        srv_call *streams; /* streaming calls on their own threads */
        int n_stream_threads;
        int active;   /* calls accepted from clients and not yet finished */
};

static int64_t mono_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t deadline_to_mono_ms(gpr_timespec deadline)
{
        gpr_timespec d = gpr_convert_clock_type(deadline, GPR_CLOCK_MONOTONIC);
        if (gpr_time_cmp(d, gpr_inf_future(GPR_CLOCK_MONOTONIC)) == 0 || d.tv_sec > INT64_MAX / 2000)
                return INT64_MAX;
        /* gpr's monotonic clock has its own epoch: express as an offset from now. */
        gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC);
        gpr_timespec left = gpr_time_sub(d, now);
        int64_t left_ms = (int64_t)left.tv_sec * 1000 + left.tv_nsec / 1000000;
        return mono_ms() + left_ms;
}

static void call_free(srv_call *c)
{
        if (!c)
                return;
        if (c->call)
                grpc_call_unref(c->call);
        grpc_call_details_destroy(&c->details);
        grpc_metadata_array_destroy(&c->md);
        if (c->recv_buf)
                grpc_byte_buffer_destroy(c->recv_buf);
        if (c->send_buf)
                grpc_byte_buffer_destroy(c->send_buf);
        pthread_mutex_destroy(&c->msg_lock);
        pthread_cond_destroy(&c->msg_cond);
        grpc_slice_unref(c->status_details);
        free(c->req);
        free(c);
}

static void call_unref(srv_call *c)
{
        if (atomic_fetch_sub(&c->refs, 1) > 1)
                return;
        cri_grpc_server *s = c->srv;
        bool accepted = c->accepted;
        call_free(c);
        pthread_mutex_lock(&s->lock);
        s->inflight--;
        if (accepted)
                s->active--;
        pthread_cond_broadcast(&s->done_cond);
        pthread_mutex_unlock(&s->lock);
}

static int request_new_call(cri_grpc_server *s)
{
        srv_call *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->srv = s;
        c->status_details = grpc_empty_slice();
        grpc_call_details_init(&c->details);
        grpc_metadata_array_init(&c->md);
        c->t_request = (call_tag){ TAG_REQUEST, c };
        c->t_recv = (call_tag){ TAG_RECV, c };
        c->t_close = (call_tag){ TAG_CLOSE, c };
        c->t_send = (call_tag){ TAG_SEND, c };
        c->t_msg = (call_tag){ TAG_MSG, c };
        pthread_mutex_init(&c->msg_lock, NULL);
        pthread_cond_init(&c->msg_cond, NULL);
        atomic_init(&c->cancelled, false);
        pthread_mutex_lock(&s->lock);
        s->inflight++;
        pthread_mutex_unlock(&s->lock);
        grpc_call_error e = grpc_server_request_call(s->server, &c->call, &c->details, &c->md,
                                                     s->cq, s->cq, &c->t_request);
        if (e != GRPC_CALL_OK) {
                c->refs = 1;
                call_unref(c);
                return -EIO;
        }
        return 0;
}

/* The (empty) initial metadata goes with the first batch that sends
 * anything: 1 op filled in, or 0 once sent. */
static size_t initial_md_op(srv_call *c, grpc_op *op)
{
        if (c->sent_initial)
                return 0;
        op->op = GRPC_OP_SEND_INITIAL_METADATA;
        op->data.send_initial_metadata.count = 0;
        return 1;
}

/* Sends the final status (and the response message when OK). Called from a
 * worker thread, or from the CQ thread for early failures. */
static void call_finish_ex(srv_call *c, int code, const char *msg, const uint8_t *resp, size_t resp_len,
                           bool streamed)
{
        grpc_op ops[3];
        memset(ops, 0, sizeof(ops));
        size_t n = initial_md_op(c, &ops[0]);
        if (code == GRPC_STATUS_OK && !streamed) {
                grpc_slice sl = grpc_slice_from_copied_buffer((const char *)resp, resp_len);
                c->send_buf = grpc_raw_byte_buffer_create(&sl, 1);
                grpc_slice_unref(sl);
                ops[n].op = GRPC_OP_SEND_MESSAGE;
                ops[n].data.send_message.send_message = c->send_buf;
                n++;
        }
        c->status_details = grpc_slice_from_copied_string(msg ? msg : "");
        ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
        ops[n].data.send_status_from_server.trailing_metadata_count = 0;
        ops[n].data.send_status_from_server.status = (grpc_status_code)code;
        ops[n].data.send_status_from_server.status_details = msg && *msg ? &c->status_details : NULL;
        n++;
        grpc_call_error e = grpc_call_start_batch(c->call, ops, n, &c->t_send, NULL);
        if (e != GRPC_CALL_OK) {
                log_debug("grpc: start_batch(send) failed: %d", (int)e);
                /* The completion will never come: cancel (which ends
                 * RECV_CLOSE) and drop the send path's reference here. */
                grpc_call_cancel(c->call, NULL);
                call_unref(c);
        }
}

static void call_finish(srv_call *c, int code, const char *msg, const uint8_t *resp, size_t resp_len)
{
        call_finish_ex(c, code, msg, resp, resp_len, false);
}

int cri_grpc_stream_send(const cri_call_info *info, const uint8_t *msg, size_t len)
{
        srv_call *c = info->call;
        if (!c || atomic_load(&c->cancelled))
                return -ECANCELED;
        grpc_slice sl = grpc_slice_from_copied_buffer((const char *)msg, len);
        grpc_byte_buffer *buf = grpc_raw_byte_buffer_create(&sl, 1);
        grpc_slice_unref(sl);
        grpc_op ops[2];
        memset(ops, 0, sizeof(ops));
        size_t n = initial_md_op(c, &ops[0]);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = buf;
        n++;
        /* buf lives here until the batch completes: the sender waits for it */
        pthread_mutex_lock(&c->msg_lock);
        c->msg_pending = true;
        c->msg_ok = false;
        pthread_mutex_unlock(&c->msg_lock);
        atomic_fetch_add(&c->refs, 1); /* the completion's */
        if (grpc_call_start_batch(c->call, ops, n, &c->t_msg, NULL) != GRPC_CALL_OK) {
                atomic_fetch_sub(&c->refs, 1);
                pthread_mutex_lock(&c->msg_lock);
                c->msg_pending = false;
                pthread_mutex_unlock(&c->msg_lock);
                grpc_byte_buffer_destroy(buf);
                return -ECANCELED;
        }
        c->sent_initial = true;
        /* A cancelled call completes its pending batches (not ok). */
        pthread_mutex_lock(&c->msg_lock);
        while (c->msg_pending)
                pthread_cond_wait(&c->msg_cond, &c->msg_lock);
        bool ok = c->msg_ok;
        pthread_mutex_unlock(&c->msg_lock);
        grpc_byte_buffer_destroy(buf);
        return ok ? 0 : -ECANCELED;
}

static void on_msg_sent(srv_call *c, bool ok)
{
        pthread_mutex_lock(&c->msg_lock);
        c->msg_pending = false;
        c->msg_ok = ok;
        pthread_cond_broadcast(&c->msg_cond);
        pthread_mutex_unlock(&c->msg_lock);
        call_unref(c);
}

/* Runs one call's handler and sends its reply. */
static void run_call(cri_grpc_server *s, srv_call *c)
{
        cri_reply reply = { 0 };
        cri_call_info info = { c->method, c->deadline_ms, &c->cancelled, c };
        if (atomic_load(&c->cancelled)) {
                reply.code = GRPC_STATUS_CANCELLED;
        } else if (c->deadline_ms != INT64_MAX && mono_ms() >= c->deadline_ms) {
                /* Waited in the queue past its deadline: don't start work
                 * nobody waits for. */
                reply.code = GRPC_STATUS_DEADLINE_EXCEEDED;
                reply.msg = strdup("deadline exceeded before the call was handled");
        } else {
                s->dispatch(s->userdata, &info, c->req, c->req_len, &reply);
        }
        call_finish_ex(c, reply.code, reply.code ? reply.msg : NULL, reply.resp, reply.resp_len, reply.streamed);
        free(reply.msg);
        free(reply.resp);
}

static void *worker_main(void *arg)
{
        cri_grpc_server *s = arg;
        pthread_mutex_lock(&s->lock);
        for (;;) {
                while (!s->q_head && !s->stopping_workers) {
                        s->n_idle++;
                        pthread_cond_wait(&s->cond, &s->lock);
                        s->n_idle--;
                }
                if (!s->q_head && s->stopping_workers)
                        break;
                srv_call *c = s->q_head;
                s->q_head = c->next;
                if (!s->q_head)
                        s->q_tail = NULL;
                s->n_busy++;
                pthread_mutex_unlock(&s->lock);

                run_call(s, c);

                pthread_mutex_lock(&s->lock);
                s->n_busy--;
        }
        pthread_mutex_unlock(&s->lock);
        return NULL;
}

static void enqueue(cri_grpc_server *s, srv_call *c)
{
        pthread_mutex_lock(&s->lock);
        c->next = NULL;
        if (s->q_tail)
                s->q_tail->next = c;
        else
                s->q_head = c;
        s->q_tail = c;
        if (s->n_idle == 0 && s->n_workers < s->max_workers) {
                pthread_attr_t attr;
                pthread_attr_init(&attr);
                pthread_attr_setstacksize(&attr, 1024 * 1024);
                if (pthread_create(&s->workers[s->n_workers], &attr, worker_main, s) == 0)
                        s->n_workers++;
                pthread_attr_destroy(&attr);
        }
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->lock);
}

static void on_request(cri_grpc_server *s, srv_call *c, bool ok)
{
        if (!ok) { /* server shutting down: the call never existed */
                c->refs = 1;
                call_unref(c);
                return;
        }
        pthread_mutex_lock(&s->lock);
        bool again = !s->shutting_down;
        c->accepted = true;
        s->active++;
        pthread_mutex_unlock(&s->lock);
        if (again && request_new_call(s) < 0)
                log_error("grpc: cannot accept further calls");

        size_t mlen = GRPC_SLICE_LENGTH(c->details.method);
        if (mlen >= sizeof(c->method))
                mlen = sizeof(c->method) - 1;
        memcpy(c->method, GRPC_SLICE_START_PTR(c->details.method), mlen);
        c->method[mlen] = 0;
        c->deadline_ms = deadline_to_mono_ms(c->details.deadline);

        grpc_op op;
        memset(&op, 0, sizeof(op));
        op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        op.data.recv_close_on_server.cancelled = &c->cancelled_flag;
        c->refs = 2;
        if (grpc_call_start_batch(c->call, &op, 1, &c->t_close, NULL) != GRPC_CALL_OK)
                c->refs--;
        memset(&op, 0, sizeof(op));
        op.op = GRPC_OP_RECV_MESSAGE;
        op.data.recv_message.recv_message = &c->recv_buf;
        if (grpc_call_start_batch(c->call, &op, 1, &c->t_recv, NULL) != GRPC_CALL_OK) {
                c->refs--;
                grpc_call_cancel(c->call, NULL);
                if (c->refs == 0) {
                        c->refs = 1;
                        call_unref(c);
                }
        }
}

static void *stream_main(void *arg)
{
        srv_call *c = arg;
        cri_grpc_server *s = c->srv;
        run_call(s, c);
        pthread_mutex_lock(&s->lock);
        for (srv_call **p = &s->streams; *p; p = &(*p)->stream_next)
                if (*p == c) {
                        *p = c->stream_next;
                        break;
                }
        s->n_stream_threads--;
        pthread_cond_broadcast(&s->done_cond);
        pthread_mutex_unlock(&s->lock);
        call_unref(c); /* the thread's */
        return NULL;
}

/* A streaming call gets a thread of its own (see is_streaming). */
static void start_stream(cri_grpc_server *s, srv_call *c)
{
        pthread_mutex_lock(&s->lock);
        if (s->shutting_down) {
                pthread_mutex_unlock(&s->lock);
                call_finish(c, GRPC_STATUS_UNAVAILABLE, "server shutting down", NULL, 0);
                return;
        }
        atomic_fetch_add(&c->refs, 1);
        c->stream_next = s->streams;
        s->streams = c;
        s->n_stream_threads++;
        pthread_mutex_unlock(&s->lock);
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 512 * 1024);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int e = pthread_create(&t, &attr, stream_main, c);
        pthread_attr_destroy(&attr);
        if (e == 0)
                return;
        pthread_mutex_lock(&s->lock);
        s->streams = c->stream_next; /* still first: only this thread adds */
        s->n_stream_threads--;
        pthread_mutex_unlock(&s->lock);
        call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "no thread for the stream", NULL, 0);
        call_unref(c);
}

static void on_recv(cri_grpc_server *s, srv_call *c, bool ok)
{
        if (!ok || !c->recv_buf) {
                /* No request message: the client went away or sent none. */
                c->refs++; /* the send path holds its own reference */
                call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "request message missing", NULL, 0);
                call_unref(c);
                return;
        }
        grpc_byte_buffer_reader r;
        if (!grpc_byte_buffer_reader_init(&r, c->recv_buf)) {
                c->refs++;
                call_finish(c, GRPC_STATUS_INTERNAL, "cannot read request message", NULL, 0);
                call_unref(c);
                return;
        }
        grpc_slice all = grpc_byte_buffer_reader_readall(&r);
        grpc_byte_buffer_reader_destroy(&r);
        c->req_len = GRPC_SLICE_LENGTH(all);
        c->req = malloc(c->req_len ? c->req_len : 1);
        if (c->req)
                memcpy(c->req, GRPC_SLICE_START_PTR(all), c->req_len);
        grpc_slice_unref(all);
        grpc_byte_buffer_destroy(c->recv_buf);
        c->recv_buf = NULL;
        c->refs++; /* held by the send completion; this recv reference ends here */
        call_unref(c);
        if (!c->req) {
                call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", NULL, 0);
                return;
        }
        /* A handler that never blocks and costs a few microseconds runs right
         * here: handing it to a worker would cost two thread wake-ups, more
         * than the handler itself (measured with bench/cri-rpc). */
        if (s->is_inline && s->is_inline(s->userdata, c->method)) {
                atomic_fetch_add(&s->n_inline, 1);
                run_call(s, c);
                return;
        }
        if (s->is_streaming && s->is_streaming(s->userdata, c->method)) {
                start_stream(s, c);
                return;
        }
        enqueue(s, c);
}

static void *cq_main(void *arg)
{
        cri_grpc_server *s = arg;
        for (;;) {
                grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
                if (ev.type == GRPC_QUEUE_SHUTDOWN)
                        break;
                if (ev.type != GRPC_OP_COMPLETE)
                        continue;
                call_tag *t = ev.tag;
                switch (t->kind) {
                case TAG_REQUEST:
                        on_request(s, t->call, ev.success);
                        break;
                case TAG_RECV:
                        on_recv(s, t->call, ev.success);
                        break;
                case TAG_CLOSE:
                        if (t->call->cancelled_flag)
                                atomic_store(&t->call->cancelled, true);
                        call_unref(t->call);
                        break;
                case TAG_SEND:
                        call_unref(t->call);
                        break;
                case TAG_MSG:
                        on_msg_sent(t->call, ev.success);
                        break;
                case TAG_SHUTDOWN:
                        pthread_mutex_lock(&s->lock);
                        s->shutdown_notified = true;
                        pthread_cond_broadcast(&s->done_cond);
                        pthread_mutex_unlock(&s->lock);
                        break;
                }
        }
        return NULL;
}

void cri_grpc_init(void) { grpc_init(); }
void cri_grpc_shutdown(void) { grpc_shutdown(); }

int cri_grpc_server_start(const cri_grpc_server_opts *opts, cri_grpc_server **ret,
                          cc_error **ret_err)
{
        cri_grpc_server *s = calloc(1, sizeof(*s));
        if (!s)
                return cc_error_set(ret_err, -ENOMEM, "out of memory");
        s->dispatch = opts->dispatch;
        s->is_inline = opts->is_inline;
        s->is_streaming = opts->is_streaming;
        s->userdata = opts->userdata;
        s->max_workers = opts->workers > 0 ? opts->workers : 16;
        s->workers = calloc((size_t)s->max_workers, sizeof(pthread_t));
        pthread_mutex_init(&s->lock, NULL);
        pthread_cond_init(&s->cond, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&s->done_cond, &ca);
        pthread_condattr_destroy(&ca);
        s->t_shutdown = (call_tag){ TAG_SHUTDOWN, NULL };

        grpc_arg args[2];
        memset(args, 0, sizeof(args));
        args[0].type = GRPC_ARG_INTEGER;
        args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
        args[0].value.integer = opts->max_recv_message_size;
        args[1].type = GRPC_ARG_INTEGER;
        args[1].key = (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
        args[1].value.integer = opts->max_send_message_size;
        grpc_channel_args cargs = { 2, args };

        s->cq = grpc_completion_queue_create_for_next(NULL);
        s->server = grpc_server_create(&cargs, NULL);
        grpc_server_register_completion_queue(s->server, s->cq, NULL);
        grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
        int port = grpc_server_add_http2_port(s->server, opts->address, creds);
        grpc_server_credentials_release(creds);
        if (port == 0) {
                int r = cc_error_set(ret_err, -EADDRNOTAVAIL, "cannot listen on '%s'", opts->address);
                grpc_server_destroy(s->server);
                grpc_completion_queue_shutdown(s->cq);
                while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
                       GRPC_QUEUE_SHUTDOWN)
                        ;
                grpc_completion_queue_destroy(s->cq);
                free(s->workers);
                free(s);
                return r;
        }
        grpc_server_start(s->server);
        /* Several outstanding accepts so bursts of new calls don't serialise. */
        for (int i = 0; i < 8; i++)
                request_new_call(s);
        if (pthread_create(&s->cq_thread, NULL, cq_main, s) != 0) {
                cri_grpc_server_shutdown(s, 0);
                cri_grpc_server_free(s);
                return cc_error_set(ret_err, -EAGAIN, "cannot start the completion-queue thread");
        }
        s->cq_thread_started = true;
        *ret = s;
        return 0;
}

int cri_grpc_server_inflight(cri_grpc_server *s)
{
        pthread_mutex_lock(&s->lock);
        int n = s->active;
        pthread_mutex_unlock(&s->lock);
        return n;
}

static bool wait_until(cri_grpc_server *s, bool *flag, int64_t deadline_ms)
{
        /* s->lock held */
        while (!*flag) {
                if (deadline_ms != INT64_MAX) {
                        int64_t left = deadline_ms - mono_ms();
                        if (left <= 0)
                                return false;
                        struct timespec ts;
                        clock_gettime(CLOCK_MONOTONIC, &ts);
                        ts.tv_sec += left / 1000;
                        ts.tv_nsec += (left % 1000) * 1000000;
                        if (ts.tv_nsec >= 1000000000) {
                                ts.tv_sec++;
                                ts.tv_nsec -= 1000000000;
                        }
                        pthread_cond_timedwait(&s->done_cond, &s->lock, &ts);
                } else {
                        pthread_cond_wait(&s->done_cond, &s->lock);
                }
        }
        return true;
}

void cri_grpc_server_shutdown(cri_grpc_server *s, int timeout_ms)
{
        if (!s || !s->server)
                return;
        pthread_mutex_lock(&s->lock);
        s->shutting_down = true;
        /* streams end only when told: tell them now, not after timeout_ms */
        for (srv_call *c = s->streams; c; c = c->stream_next)
                atomic_store(&c->cancelled, true);
        pthread_mutex_unlock(&s->lock);
        grpc_server_shutdown_and_notify(s->server, s->cq, &s->t_shutdown);

        int64_t deadline = mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
        pthread_mutex_lock(&s->lock);
        bool clean = wait_until(s, &s->shutdown_notified, deadline);
        pthread_mutex_unlock(&s->lock);
        if (!clean) {
                log_warn("grpc: %d call(s) still running after %d ms; cancelling them",
                         cri_grpc_server_inflight(s), timeout_ms);
                grpc_server_cancel_all_calls(s->server);
                pthread_mutex_lock(&s->lock);
                wait_until(s, &s->shutdown_notified, mono_ms() + 5000);
                pthread_mutex_unlock(&s->lock);
        }
        /* Workers finish what they hold (a cancelled call answers quickly). */
        pthread_mutex_lock(&s->lock);
        s->stopping_workers = true;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
        for (int i = 0; i < s->n_workers; i++)
                pthread_join(s->workers[i], NULL);
        s->n_workers = 0;
        /* Remaining completions (sends of the last calls) drain, then the CQ ends. */
        pthread_mutex_lock(&s->lock);
        int64_t drain_deadline = mono_ms() + 5000;
        while ((s->inflight > 0 || s->n_stream_threads > 0) && mono_ms() < drain_deadline) {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                ts.tv_nsec += 50 * 1000000;
                if (ts.tv_nsec >= 1000000000) {
                        ts.tv_sec++;
                        ts.tv_nsec -= 1000000000;
                }
                pthread_cond_timedwait(&s->done_cond, &s->lock, &ts);
        }
        pthread_mutex_unlock(&s->lock);
        grpc_server_destroy(s->server);
        s->server = NULL;
        grpc_completion_queue_shutdown(s->cq);
        if (s->cq_thread_started)
                pthread_join(s->cq_thread, NULL);
        s->cq_thread_started = false;
        grpc_completion_queue_destroy(s->cq);
        s->cq = NULL;
}

void cri_grpc_server_free(cri_grpc_server *s)
{
        if (!s)
                return;
        if (s->server)
                cri_grpc_server_shutdown(s, 0);
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->cond);
        pthread_cond_destroy(&s->done_cond);
        free(s->workers);
        free(s);
}
