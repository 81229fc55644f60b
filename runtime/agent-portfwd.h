/* SPDX-License-Identifier: Apache-2.0 */
/* The daemon side of cocoon.agent.PortForward (proto/cocoon-agent.proto):
 * one TCP connection to a loopback port inside the pod, carried over the
 * agent's ttRPC connection, presented as a local socket.
 *
 * rt_agent_portfwd_connect() asks the agent to connect (Open), then returns
 * one end of a socketpair (O_CLOEXEC; the caller owns it, e.g. the streaming
 * server). Two detached threads pump between the other end and the agent:
 * local → Write (EOF → Write{close_write}), Read → local (eof → SHUT_WR).
 * When the caller closes its end, or the agent connection dies, the handle is
 * Closed and everything is released (the threads hold an agent reference). */
#pragma once

#include <stdint.h>

#include "common/error.h"
#include "runtime/agent.h"

int rt_agent_portfwd_connect(rt_agent *a, uint16_t port, int timeout_ms, int *ret_fd,
                             cc_error **ret_err);

