/* SPDX-License-Identifier: Apache-2.0 */
/* cocoon.agent.PortForward (proto/cocoon-agent.proto): TCP connections to
 * loopback ports inside the pod, for the CRI PortForward.
 *
 * Network namespace: the agent's own (in the guest, the VM's, which is the
 * pod's), unless a running container of the sandbox sits in another one
 * (a host-mode pod without host networking): then the socket is created in
 * that container's network namespace (setns on the serving thread, and back).
 *
 * Handles are 64-bit: slot index + a generation, so a stale or forged handle
 * is NOT_FOUND, never another connection. At most PORTFWD_MAX_HANDLES open;
 * per handle at most PORTFWD_BUF bytes buffered each way; one Read and one
 * Write in flight. When the host's connection goes away (its pending calls
 * are no longer alive) or nothing was asked of a handle for
 * PORTFWD_IDLE_S seconds, the handle is closed. A connect that does not
 * complete within PORTFWD_CONNECT_TIMEOUT_S fails the Open (UNAVAILABLE). */
#pragma once

#include "common/error.h"
#include "common/ttrpc.h"

#define PORTFWD_MAX_HANDLES 256
#define PORTFWD_BUF (1u << 20)
#define PORTFWD_IDLE_S 600
#define PORTFWD_SWEEP_S 5
#define PORTFWD_CONNECT_TIMEOUT_S 10 /* checked by the sweep: 10..15 s */

/* Registers Open/Write/Read/Close on s. The I/O thread starts with the first
 * Open. */
int agent_portfwd_register(ttrpc_server *s, cc_error **ret_err);
/* Number of open handles (tests). */
unsigned agent_portfwd_count(void);
