/* SPDX-License-Identifier: Apache-2.0 */
/* Starting a detached helper thread (nobody joins it; it owns what arg
 * gives it). */
#pragma once

#include <stddef.h>

/* stack_size 0: the default. Returns 0 or a negative errno. */
int cc_thread_start_detached(void *(*fn)(void *), void *arg, size_t stack_size);
