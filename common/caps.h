/* SPDX-License-Identifier: Apache-2.0 */
/* Linux capability names, in bit order (CAP_CHOWN = 0 ...), without the
 * "CAP_" prefix: one table for the spec builder (runtime/spec.c) and the
 * agent (agent/caps.c), so both always agree on what exists. */
#pragma once

#define CC_N_CAPS 41 /* up to CAP_CHECKPOINT_RESTORE (40) */

extern const char *const cc_cap_names[CC_N_CAPS];

/* Bit number of a capability name ("CAP_SYS_ADMIN", "sys_admin"...;
 * case-insensitive, the "CAP_" prefix optional), or -1 if unknown. */
int cc_cap_lookup(const char *name);
