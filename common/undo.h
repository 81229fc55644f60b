/* SPDX-License-Identifier: Apache-2.0 */
/* Undo stack for multi-step creation (RunPodSandbox, CreateContainer, pull).
 *
 *     _cleanup_undo_ cc_undo undo = CC_UNDO_INIT;
 *     if (make_netns(...) < 0) return ...;
 *     cc_undo_push(&undo, remove_netns, strdup(path), free);
 *     ...
 *     cc_undo_disarm(&undo);        // success: keep everything
 *
 * Leaving the scope armed runs the steps in reverse order. */
#pragma once

#include <stddef.h>

typedef void (*cc_undo_fn)(void *arg);

typedef struct cc_undo_step {
        cc_undo_fn fn;
        void *arg;
        void (*free_arg)(void *arg);
} cc_undo_step;

typedef struct cc_undo {
        cc_undo_step *steps;
        size_t n, cap;
        int armed;
} cc_undo;

#define CC_UNDO_INIT { NULL, 0, 0, 1 }

/* Pushes a step. On allocation failure the step runs immediately (so nothing
 * is leaked) and -ENOMEM is returned. free_arg may be NULL. */
int cc_undo_push(cc_undo *u, cc_undo_fn fn, void *arg, void (*free_arg)(void *));
/* Runs every armed step in reverse order and empties the stack. */
void cc_undo_run(cc_undo *u);
/* Forgets every step (frees their args) without running them. */
void cc_undo_disarm(cc_undo *u);
/* Runs the steps if still armed; frees storage. */
void cc_undo_release(cc_undo *u);
#define _cleanup_undo_ __attribute__((cleanup(cc_undo_release)))
