/* SPDX-License-Identifier: Apache-2.0 */
#include "common/undo.h"

#include <errno.h>
#include <stdlib.h>

int cc_undo_push(cc_undo *u, cc_undo_fn fn, void *arg, void (*free_arg)(void *))
{
        if (u->n == u->cap) {
                size_t cap = u->cap ? u->cap * 2 : 8;
                cc_undo_step *s = realloc(u->steps, cap * sizeof(*s));
                if (!s) {
                        if (fn)
                                fn(arg);
                        if (free_arg)
                                free_arg(arg);
                        return -ENOMEM;
                }
                u->steps = s;
                u->cap = cap;
        }
        u->steps[u->n++] = (cc_undo_step){ fn, arg, free_arg };
        return 0;
}

static void drain(cc_undo *u, int run)
{
        while (u->n > 0) {
                cc_undo_step *s = &u->steps[--u->n];
                if (run && s->fn)
                        s->fn(s->arg);
                if (s->free_arg)
                        s->free_arg(s->arg);
        }
}

void cc_undo_run(cc_undo *u) { drain(u, 1); }

void cc_undo_disarm(cc_undo *u)
{
        drain(u, 0);
        u->armed = 0;
}

void cc_undo_release(cc_undo *u)
{
        drain(u, u->armed);
        free(u->steps);
        u->steps = NULL;
        u->cap = 0;
}
