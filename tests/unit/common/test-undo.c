/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for common/undo.c: reverse order, disarm, release, arg freeing. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/undo.h"

/* Records the order in which steps ran and which args were freed. */
static int ran[64], n_ran;
static int freed[64], n_freed;

static void reset(void)
{
        n_ran = 0;
        n_freed = 0;
}

static void step_record(void *arg) { ran[n_ran++] = *(int *)arg; }
static void free_record(void *arg)
{
        freed[n_freed++] = *(int *)arg;
        free(arg);
}

static int *boxed(int v)
{
        int *p = malloc(sizeof(*p));
        assert_non_null(p);
        *p = v;
        return p;
}

static void test_run_reverse(void **state)
{
        reset();
        cc_undo u = CC_UNDO_INIT;
        for (int i = 1; i <= 3; i++)
                assert_int_equal(cc_undo_push(&u, step_record, boxed(i), free_record), 0);
        cc_undo_run(&u);
        assert_int_equal(n_ran, 3);
        assert_int_equal(ran[0], 3);
        assert_int_equal(ran[1], 2);
        assert_int_equal(ran[2], 1);
        /* Each arg is freed right after its own step. */
        assert_int_equal(n_freed, 3);
        assert_int_equal(freed[0], 3);
        assert_int_equal(u.n, 0);
        /* Running again does nothing: the stack is empty. */
        cc_undo_run(&u);
        assert_int_equal(n_ran, 3);
        cc_undo_release(&u);
        assert_int_equal(n_ran, 3);
}

static void test_many_steps_grow(void **state)
{
        /* More steps than the initial capacity (8): order survives realloc. */
        reset();
        cc_undo u = CC_UNDO_INIT;
        for (int i = 0; i < 40; i++)
                assert_int_equal(cc_undo_push(&u, step_record, boxed(i), free_record), 0);
        cc_undo_release(&u);
        assert_int_equal(n_ran, 40);
        for (int i = 0; i < 40; i++)
                assert_int_equal(ran[i], 39 - i);
        assert_int_equal(n_freed, 40);
        assert_null(u.steps);
}

static void test_disarm(void **state)
{
        reset();
        cc_undo u = CC_UNDO_INIT;
        cc_undo_push(&u, step_record, boxed(1), free_record);
        cc_undo_push(&u, step_record, boxed(2), free_record);
        cc_undo_disarm(&u);
        assert_int_equal(n_ran, 0);
        assert_int_equal(n_freed, 2); /* args freed without running */
        cc_undo_release(&u);
        assert_int_equal(n_ran, 0);
        assert_int_equal(n_freed, 2);
}

static void test_release_runs_when_armed(void **state)
{
        reset();
        {
                _cleanup_undo_ cc_undo u = CC_UNDO_INIT;
                cc_undo_push(&u, step_record, boxed(1), free_record);
                cc_undo_push(&u, step_record, boxed(2), free_record);
        } /* scope left armed: runs 2 then 1 */
        assert_int_equal(n_ran, 2);
        assert_int_equal(ran[0], 2);
        assert_int_equal(ran[1], 1);
        assert_int_equal(n_freed, 2);
}

static void test_cleanup_disarmed(void **state)
{
        reset();
        {
                _cleanup_undo_ cc_undo u = CC_UNDO_INIT;
                cc_undo_push(&u, step_record, boxed(1), free_record);
                cc_undo_disarm(&u);
        }
        assert_int_equal(n_ran, 0);
        assert_int_equal(n_freed, 1);
}

static int plain_counter;
static void step_count(void *arg) { plain_counter += (int)(intptr_t)arg; }

static void test_null_fn_and_free(void **state)
{
        /* fn NULL: only the free_arg runs; free_arg NULL: arg not freed. */
        reset();
        plain_counter = 0;
        cc_undo u = CC_UNDO_INIT;
        cc_undo_push(&u, NULL, boxed(5), free_record);
        cc_undo_push(&u, step_count, (void *)(intptr_t)10, NULL);
        cc_undo_release(&u);
        assert_int_equal(plain_counter, 10);
        assert_int_equal(n_ran, 0);
        assert_int_equal(n_freed, 1);
        assert_int_equal(freed[0], 5);
}

static void test_release_empty_and_twice(void **state)
{
        cc_undo u = CC_UNDO_INIT;
        cc_undo_release(&u);
        cc_undo_release(&u);
        cc_undo_disarm(&u);
        cc_undo_release(&u);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_run_reverse),
                cmocka_unit_test(test_many_steps_grow),
                cmocka_unit_test(test_disarm),
                cmocka_unit_test(test_release_runs_when_armed),
                cmocka_unit_test(test_cleanup_disarmed),
                cmocka_unit_test(test_null_fn_and_free),
                cmocka_unit_test(test_release_empty_and_twice),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
