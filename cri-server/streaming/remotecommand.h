/* SPDX-License-Identifier: Apache-2.0 */
/* The protocol-independent exec/attach session (Kubernetes remotecommand).
 * The entry points used by the SPDY and WebSocket handlers are declared in
 * internal.h (rc_session_*); the backend-facing ones in server.h
 * (streaming_session_write, streaming_session_get_size). This header holds
 * the protocol version names both transports negotiate. */
#pragma once

/* Newest first: the order in which the server prefers them. */
#define RC_PROTO_V5 "v5.channel.k8s.io"
#define RC_PROTO_V4 "v4.channel.k8s.io"
#define RC_PROTO_V3 "v3.channel.k8s.io"
#define RC_PROTO_V2 "v2.channel.k8s.io"
#define RC_PROTO_V1 "channel.k8s.io"
#define PF_PROTO_V1 "portforward.k8s.io"

/* Version number (1..5) for a remotecommand protocol name, 0 if unknown. */
int rc_protocol_version(const char *name);
