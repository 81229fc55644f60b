/* SPDX-License-Identifier: Apache-2.0 */
/* Process RPCs: ExecProcess, SignalProcess, WaitProcess, WriteStdin,
 * ReadStdout, ReadStderr, CloseStdin, TtyWinResize. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "agent/agent.h"
#include "common/cleanup.h"
#include "common/log.h"

#define MAX_WRITE (1u << 20)

/* Decodes, validates ids, locks and finds the process. Answers and
 * returns NULL on failure (unlocked). */
static agent_process *lookup(ttrpc_call *call, const char *rpc, const char *ctr_id, const char *exec_id)
{
        _cleanup_error_ cc_error *err = NULL;
        if (agent_validate_id("container_id", ctr_id, &err) < 0 ||
            (exec_id && *exec_id && agent_validate_id("exec_id", exec_id, &err) < 0)) {
                agent_reply_fail(call, rpc, NULL, err);
                return NULL;
        }
        pthread_mutex_lock(&agent_lock);
        agent_container *c = agent_find_container(ctr_id);
        agent_process *p = c ? agent_find_process(c, exec_id) : NULL;
        if (!p) {
                pthread_mutex_unlock(&agent_lock);
                cc_error_set(&err, -ENOENT, c ? "process %.128s not found" : "container %.128s not found",
                             c ? exec_id : ctr_id);
                agent_reply_fail(call, rpc, ctr_id, err);
        }
        return p;
}

#define UNPACK(type, desc)                                                  \
        type *req = (void *)agent_unpack(call, &desc, pl, len);            \
        if (!req)                                                          \
                return;

#define FREE_REQ() protobuf_c_message_free_unpacked(&req->base, NULL)

static void h_exec(ttrpc_call *call, const uint8_t *pl, size_t len, void *ud)
{
        UNPACK(Grpc__ExecProcessRequest, grpc__exec_process_request__descriptor);
        _cleanup_error_ cc_error *err = NULL;
        if (agent_validate_id("container_id", req->container_id, &err) < 0 ||
            agent_validate_id("exec_id", req->exec_id, &err) < 0) {
                agent_reply_fail(call, "ExecProcess", NULL, err);
                FREE_REQ();
                return;
        }
        log_info("rpc=ExecProcess container=%s exec=%s", req->container_id, req->exec_id);
        pthread_mutex_lock(&agent_lock);
        agent_container *c = agent_find_container(req->container_id);
        int r;
        if (!c)
                r = cc_error_set(&err, -ENOENT, "container %s not found", req->container_id);
        else if (strcmp(req->exec_id, c->id) == 0 || agent_find_process(c, req->exec_id))
                r = cc_error_set(&err, -EEXIST, "exec %s already exists", req->exec_id);
        else
                r = agent_exec_create(c, req, &err);
        pthread_mutex_unlock(&agent_lock);
        if (r < 0)
                agent_reply_fail(call, "ExecProcess", req->container_id, err);
        else
                agent_reply_empty(call);
        FREE_REQ();
}

static void h_signal(ttrpc_call *call, const uint8_t *pl, size_t len, void *ud)
{
        UNPACK(Grpc__SignalProcessRequest, grpc__signal_process_request__descriptor);
        if (req->signal < 1 || req->signal > (uint32_t)SIGRTMAX) {
                ttrpc_call_reply_status(call, TTRPC_CODE_INVALID_ARGUMENT, "unknown signal %u", req->signal);
                FREE_REQ();
                return;
        }
        agent_process *p = lookup(call, "SignalProcess", req->container_id, req->exec_id);
        if (!p) {
                FREE_REQ();
                return;
        }
        log_info("rpc=SignalProcess container=%s exec=%s signal=%u", req->container_id, req->exec_id,
                 req->signal);
        int r = 0;
        agent_container *c = p->ctr;
        if ((!req->exec_id || !*req->exec_id) && req->signal == SIGKILL) {
                if (c->paused)
                        agent_cgroup_freeze(c->cgroup, false, NULL);
                r = agent_cgroup_kill(c->cgroup);
                if (r < 0 && !p->exited && p->pid > 0)
                        r = kill(p->pid, SIGKILL) < 0 ? -errno : 0;
        } else if (!p->exited && p->pid > 0) {
                r = kill(p->pid, (int)req->signal) < 0 ? -errno : 0;
        }
        pthread_mutex_unlock(&agent_lock);
        if (r < 0 && r != -ESRCH)
                ttrpc_call_reply_status(call, TTRPC_CODE_INTERNAL, "signal: %s", strerror(-r));
        else
                agent_reply_empty(call);
        FREE_REQ();
}

static void h_wait(ttrpc_call *call, const uint8_t *pl, size_t len, void *ud)
{
        UNPACK(Grpc__WaitProcessRequest, grpc__wait_process_request__descriptor);
        agent_process *p = lookup(call, "WaitProcess", req->container_id, req->exec_id);
        if (p) {
                agent_process_wait(p, call); /* deferred until the exit */
                pthread_mutex_unlock(&agent_lock);
        }
        FREE_REQ();
}

static void h_write(ttrpc_call *call, const uint8_t *pl, size_t len, void *ud)
{
        UNPACK(Grpc__WriteStreamRequest, grpc__write_stream_request__descriptor);
        agent_process *p = lookup(call, "WriteStdin", req->container_id, req->exec_id);
        if (!p) {
                FREE_REQ();
                return;
        }
        /* Non-blocking: the answer says how much the pipe took, the
         * caller sends the rest later (as Kata's WriteStreamResponse.len). */
        ssize_t n = 0;
        int e = 0;
        if (p->stdin_fd < 0) {
                e = EPIPE;
        } else if (req->data.len) {
                n = write(p->stdin_fd, req->data.data, CC_MIN(req->data.len, (size_t)MAX_WRITE));
                if (n < 0) {
                        e = errno == EAGAIN ? 0 : errno;
                        n = 0;
                }
        }
        pthread_mutex_unlock(&agent_lock);
        if (e) {
                ttrpc_call_reply_status(call, e == EPIPE ? TTRPC_CODE_FAILED_PRECONDITION : TTRPC_CODE_INTERNAL,
                                        "write stdin: %s", strerror(e));
        } else {
                Grpc__WriteStreamResponse resp = GRPC__WRITE_STREAM_RESPONSE__INIT;
                resp.len = (uint32_t)n;
                ttrpc_call_reply_pb(call, &resp.base);
        }
        FREE_REQ();
}

static void do_read(ttrpc_call *call, const uint8_t *pl, size_t len, bool err_stream)
{
        UNPACK(Grpc__ReadStreamRequest, grpc__read_stream_request__descriptor);
        agent_process *p = lookup(call, err_stream ? "ReadStderr" : "ReadStdout", req->container_id, req->exec_id);
        if (p) {
                agent_stream_read(err_stream ? &p->err : &p->out, call, req->len);
                pthread_mutex_unlock(&agent_lock);
        }
        FREE_REQ();
}

static void h_read_out(ttrpc_call *call, const uint8_t *pl, size_t len, void *ud) { do_read(call, pl, len, false); }
static void h_read_err(ttrpc_call *call, const uint8_t *pl, size_t len, void *ud) { do_read(call, pl, len, true); }

static void h_close_stdin(ttrpc_call *call, const uint8_t *pl, size_t len, void *ud)
{
        UNPACK(Grpc__CloseStdinRequest, grpc__close_stdin_request__descriptor);
        agent_process *p = lookup(call, "CloseStdin", req->container_id, req->exec_id);
        if (p) {
                if (p->stdin_fd >= 0 && p->pty_fd >= 0) {
                        /* A terminal has no separate stdin: send EOF (^D). */
                        char eot = 4;
                        if (write(p->stdin_fd, &eot, 1) < 0) {
                                /* the terminal is gone already */
                        }
                }
                if (p->stdin_fd >= 0)
                        close(p->stdin_fd);
                p->stdin_fd = -1;
                pthread_mutex_unlock(&agent_lock);
                agent_reply_empty(call);
        }
        FREE_REQ();
}

static void h_resize(ttrpc_call *call, const uint8_t *pl, size_t len, void *ud)
{
        UNPACK(Grpc__TtyWinResizeRequest, grpc__tty_win_resize_request__descriptor);
        if (req->row > 0xffff || req->column > 0xffff) {
                ttrpc_call_reply_status(call, TTRPC_CODE_INVALID_ARGUMENT, "window size out of range");
                FREE_REQ();
                return;
        }
        agent_process *p = lookup(call, "TtyWinResize", req->container_id, req->exec_id);
        if (p) {
                int r = 0;
                if (p->pty_fd < 0) {
                        r = -ENOTTY;
                } else {
                        struct winsize ws = { .ws_row = (unsigned short)req->row,
                                              .ws_col = (unsigned short)req->column };
                        if (ioctl(p->pty_fd, TIOCSWINSZ, &ws) < 0)
                                r = -errno;
                }
                pthread_mutex_unlock(&agent_lock);
                if (r == -ENOTTY)
                        ttrpc_call_reply_status(call, TTRPC_CODE_FAILED_PRECONDITION, "process has no terminal");
                else if (r < 0)
                        ttrpc_call_reply_status(call, TTRPC_CODE_INTERNAL, "resize: %s", strerror(-r));
                else
                        agent_reply_empty(call);
        }
        FREE_REQ();
}

void agent_rpc_register_processes(ttrpc_server *s)
{
        static const struct { const char *method; ttrpc_handler_fn fn; } tab[] = {
                { "ExecProcess", h_exec }, { "SignalProcess", h_signal },
                { "WaitProcess", h_wait }, { "WriteStdin", h_write },
                { "ReadStdout", h_read_out }, { "ReadStderr", h_read_err },
                { "CloseStdin", h_close_stdin }, { "TtyWinResize", h_resize },
        };
        for (size_t i = 0; i < CC_ARRAY_SIZE(tab); i++)
                ttrpc_server_register(s, "grpc.AgentService", tab[i].method, tab[i].fn, NULL, NULL);
}
