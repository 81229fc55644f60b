/* SPDX-License-Identifier: Apache-2.0 */
/* Internals shared by runtime.c, pod.c, container.c and state.c. */
#pragma once
